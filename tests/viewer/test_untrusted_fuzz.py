"""Property tests of the readers of untrusted files (issue 26): hypothesis generates and mutates each
format (tracemalloc dumps, massif.out, run folders: result.json and the CSVs) with random bytes,
truncations, byte flips, absurd numbers and deep nesting, and every reader must give either a correct
result or one error line (:class:`ViewerInputError` / ``ResultError``) naming the file, within a few
seconds and a bounded amount of memory (tracemalloc's peak over the call).

Short here (``make test``); ``MEMDIET_SOAK=1`` (``make soak``) runs the same properties far longer.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.dataset.results import ResultError, load_run
from tests.fixtures.crafted import massif_text, run_document, snapshot_bytes, write_run
from tracemalloc_viewer import LoadOptions, ViewerInputError, open_series
from tracemalloc_viewer.sources.tracemalloc_dumps import load_sites

SOAK = os.environ.get("MEMDIET_SOAK") == "1"
#: A reader's bound per input, in memory traced while it runs (the files here are at most a few KiB).
MAX_TRACED_BYTES = 64 * 2**20
_COMMON = dict(deadline=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                     HealthCheck.function_scoped_fixture], derandomize=not SOAK)
SHORT = settings(max_examples=30, **_COMMON)
LONG = settings(max_examples=3000, **_COMMON)
SOAK_REASON = "long version: set MEMDIET_SOAK=1 (make soak)"


def _bounded(call):
    """``call()``'s result, or the ViewerInputError/ResultError it raised; checks the traced peak."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        return call()
    except (ViewerInputError, ResultError) as error:
        return error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        if not tracing:
            tracemalloc.stop()
        assert peak - before < MAX_TRACED_BYTES, peak - before


def _one_line(error: Exception, path: Path) -> None:
    text = str(error)
    assert "\n" not in text and "\r" not in text, text
    assert str(path) in text or str(path.parent) in text, text
    text.encode("utf-8", "strict")  # survives a strict UTF-8 terminal


class _Folder:
    """A scratch folder emptied before each example (hypothesis runs many examples per test)."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="memdiet-fuzz-"))

    def fresh(self) -> Path:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir()
        return self.path


@pytest.fixture(scope="module")
def scratch():
    folder = _Folder()
    yield folder
    shutil.rmtree(folder.path, ignore_errors=True)


# --- strategies ----------------------------------------------------------------------------------
ABSURD_INTS = st.one_of(st.integers(-2**70, 2**70), st.sampled_from([0, 2**63 - 1, 2**63, -1, 10**400]))
NAMES = st.one_of(st.text(max_size=12), st.integers(), st.none(), st.binary(max_size=4))
FRAMES = st.lists(st.tuples(st.one_of(st.sampled_from(["app.py", "/dev/zero", "<frozen>"]), NAMES),
                            st.one_of(st.integers(0, 5000), ABSURD_INTS, st.text(max_size=3))), max_size=4)
TRACES = st.lists(st.tuples(st.integers(0, 2), ABSURD_INTS, FRAMES.map(tuple), st.integers(0, 10)), max_size=6)
VALID_TRACES = st.lists(st.tuples(st.just(0), st.integers(0, 2**40),
                                  st.lists(st.tuples(st.sampled_from(["a.py", "b.py"]), st.integers(1, 99)),
                                           min_size=1, max_size=3).map(tuple), st.just(1)), min_size=1, max_size=6)


def _mutations(data: bytes):
    """A strategy of ``data`` damaged: truncated, bytes flipped, inserted or deleted, or pure noise."""
    size = max(len(data), 1)
    flips = st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 255)), min_size=1, max_size=8)

    def flip(changes):
        out = bytearray(data)
        for at, value in changes:
            if at < len(out):
                out[at] = value
        return bytes(out)

    return st.one_of(
        st.integers(0, len(data)).map(lambda cut: data[:cut]),
        flips.map(flip),
        st.tuples(st.integers(0, len(data)), st.binary(min_size=1, max_size=16)).map(
            lambda pair: data[:pair[0]] + pair[1] + data[pair[0]:]),
        st.tuples(st.integers(0, len(data)), st.integers(1, 16)).map(lambda pair: data[:pair[0]] + data[pair[0] + pair[1]:]),
        st.binary(max_size=64).map(lambda noise: data[:1] + noise),
    )


BASE_DUMP = snapshot_bytes([(0, 64, (("a.py", 1), ("b.py", 2)), 2), (0, 32, (("a.py", 1), ("b.py", 2)), 2)], 2)


# --- tracemalloc dumps ---------------------------------------------------------------------------
def _check_dump(scratch: _Folder, data: bytes) -> None:
    path = scratch.fresh() / "fuzz.tmsnap"
    path.write_bytes(data)
    outcome = _bounded(lambda: load_sites(path))
    if isinstance(outcome, Exception):
        _one_line(outcome, path)
    else:
        assert all(site.size >= 0 and site.count >= 0 for site in outcome)


def _check_traces(scratch: _Folder, traces) -> None:
    path = scratch.fresh() / "fuzz.tmsnap"
    path.write_bytes(snapshot_bytes(traces))
    outcome = _bounded(lambda: load_sites(path))
    if isinstance(outcome, Exception):
        _one_line(outcome, path)
        return
    # Accepted: then every trace was within the bounds, and the sites add up to the traces.
    assert sum(site.size for site in outcome) == sum(trace[1] for trace in traces)
    assert all(0 <= trace[1] < 2**63 for trace in traces)


@SHORT
@given(data=_mutations(BASE_DUMP))
def test_mutated_dumps(scratch, data):
    _check_dump(scratch, data)


@SHORT
@given(traces=st.one_of(TRACES, VALID_TRACES))
def test_generated_dumps(scratch, traces):
    _check_traces(scratch, traces)


@SHORT
@given(depth=st.integers(1, 20_000))
def test_deeply_nested_file_names(scratch, depth):
    # The file name "@@" (BINUNICODE, protocol 3) replaced by () wrapped in ``depth`` one-tuples.
    data = snapshot_bytes([(0, 8, (("@@", 1),), 1)], protocol=3)
    _check_dump(scratch, data.replace(b"X\x02\x00\x00\x00@@", b")" + b"\x85" * depth, 1))


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason=SOAK_REASON)
@LONG
@given(data=_mutations(BASE_DUMP), traces=st.one_of(TRACES, VALID_TRACES))
def test_dumps_soak(scratch, data, traces):
    _check_dump(scratch, data)
    _check_traces(scratch, traces)


# --- massif.out ----------------------------------------------------------------------------------
BASE_MASSIF = massif_text(kinds=("empty", "detailed", "peak")).encode()
NUMBERS_TEXT = st.one_of(st.integers(-10, 2**64).map(str), st.sampled_from(["9" * 5000, "1e9", "-0", "", "nan"]))


def _check_massif(scratch: _Folder, data: bytes) -> None:
    path = scratch.fresh() / "massif.out.1"
    path.write_bytes(data)
    outcome = _bounded(lambda: open_series([path], LoadOptions()))
    if isinstance(outcome, Exception):
        _one_line(outcome, path)
    else:
        assert all(0 <= sample.total_bytes < 2**63 for sample in outcome.samples)


@SHORT
@given(data=_mutations(BASE_MASSIF).filter(lambda data: data.startswith(b"desc: ")))
def test_mutated_massif_files(scratch, data):
    _check_massif(scratch, data)


@SHORT
@given(heap=NUMBERS_TEXT, label=st.text(max_size=20), kinds=st.lists(st.sampled_from(["empty", "detailed", "peak"]),
                                                                     min_size=1, max_size=4))
def test_generated_massif_files(scratch, heap, label, kinds):
    _check_massif(scratch, massif_text(heap=heap, label=f"0x1: {label}", kinds=kinds).encode("utf-8", "surrogatepass"))


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason=SOAK_REASON)
@LONG
@given(data=_mutations(BASE_MASSIF).filter(lambda data: data.startswith(b"desc: ")))
def test_massif_soak(scratch, data):
    _check_massif(scratch, data)


# --- run folders ---------------------------------------------------------------------------------
BASE_RESULT = json.dumps(run_document()).encode()
JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), ABSURD_INTS, st.floats(), st.text(max_size=8)),
                           lambda children: st.one_of(st.lists(children, max_size=3),
                                                      st.dictionaries(st.text(max_size=6), children, max_size=3)),
                           max_leaves=12)
FIELDS = st.sampled_from(["layout", "probe", "status", "phases", "summary", "files", "parameters", "server_command"])
CELLS = st.one_of(NUMBERS_TEXT, st.text(max_size=8), st.floats().map(repr))


def _check_run(scratch: _Folder, result: bytes | None = None, heap_rows=None) -> None:
    folder = scratch.fresh() / "run"
    write_run(folder, raw_result=result if result is not None else BASE_RESULT,
              **({"heap_rows": heap_rows} if heap_rows is not None else {}))
    for reader in (lambda: open_series([folder], LoadOptions()), lambda: load_run(folder)):
        outcome = _bounded(reader)
        if isinstance(outcome, Exception):
            _one_line(outcome, folder / "result.json")


@SHORT
@given(data=_mutations(BASE_RESULT))
def test_mutated_result_json(scratch, data):
    _check_run(scratch, result=data)


@SHORT
@given(field=FIELDS, value=JSON_VALUES)
def test_generated_result_json(scratch, field, value):
    text = json.dumps(run_document(**{field: value}), allow_nan=True)
    _check_run(scratch, result=text.encode())


@SHORT
@given(cells=st.lists(st.tuples(CELLS, CELLS, CELLS, CELLS), min_size=1, max_size=4))
def test_generated_csv_rows(scratch, cells):
    rows = [tuple(cell.replace(",", "").replace("\n", "").replace("\r", "").replace('"', "") for cell in row)
            for row in cells]
    _check_run(scratch, heap_rows=rows)


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason=SOAK_REASON)
@LONG
@given(data=_mutations(BASE_RESULT), field=FIELDS, value=JSON_VALUES)
def test_run_folders_soak(scratch, data, field, value):
    _check_run(scratch, result=data)
    _check_run(scratch, result=json.dumps(run_document(**{field: value}), allow_nan=True).encode())
