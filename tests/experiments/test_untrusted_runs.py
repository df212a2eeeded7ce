"""Crafted and damaged run folders given to ``memdiet report``, ``export`` and ``history``, and a crafted
dump given to the RSS ledger (issue 26): one error line and exit 2 on a strict UTF-8 terminal, nothing
written outside the folder named with ``-o``, no content of a linked file in the output, names from
files escaped in Markdown."""

from __future__ import annotations

import json
import os
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.crafted import one_error_line, run_cli
from tests.fixtures.fake_runs import write_fake_run

MEMDIET = "experiments"


def _edit(run, **changes):
    document = json.loads((run / "result.json").read_text())
    document.update(changes)
    (run / "result.json").write_text(json.dumps(document))
    return run


def _files(root):
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


@pytest.mark.parametrize("changes, field", [
    ({"subject": {"name": "x/../../outside/escaped"}}, "subject.name"),
    ({"schema": "memdiet.run/1", "layout": "x/../../outside/escaped"}, "layout"),  # a run folder of the older format
])
def test_a_subject_that_is_a_path_writes_nothing_outside_the_output_folder(tmp_path, changes, field):
    runs = tmp_path / "runs"
    run = _edit(write_fake_run(runs, "naive", "tracemalloc"), **changes)
    before = _files(tmp_path)
    line = one_error_line(run_cli(MEMDIET, "report", run, "-o", tmp_path / "out" / "report"))
    assert field in line and "refused" in line
    assert _files(tmp_path) == before  # not even the output folder


def test_a_backtick_in_a_run_folder_name_stays_inside_its_code_span(tmp_path):
    stamp = "20260101T000000Z`<img src=x onerror=alert(1)>`"
    run = write_fake_run(tmp_path / "runs", "naive", "rss", stamp=stamp)
    out = tmp_path / "out"
    ran = run_cli(MEMDIET, "report", run, "-o", out)
    assert ran.code == 0, ran.stderr[-2000:]
    index = (out / "index.md").read_text()
    name = os.path.relpath(run, out)
    # The name holds single backticks: only a fence of two keeps it one span (CommonMark), where <img is text.
    assert f"``{name}``" in index
    assert "<img" not in index.replace(f"``{name}``", "")


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_nan_in_a_summary_metric_is_one_line(tmp_path, value):
    run = write_fake_run(tmp_path / "runs", "naive", "rss")
    text = (run / "result.json").read_text()
    document = json.loads(text)
    key = next(iter(document["summary"]))
    document["summary"][key] = "@@"
    (run / "result.json").write_text(json.dumps(document).replace('"@@"', value))
    line = one_error_line(run_cli(MEMDIET, "report", run, "-o", tmp_path / "out"))
    assert value in line and "result.json" in line


def test_bytes_that_are_not_utf8_in_result_json_name_the_byte(tmp_path):
    run = write_fake_run(tmp_path / "runs", "naive", "rss")
    data = (run / "result.json").read_bytes().replace(b'"made up"', b'"made \xff up"')
    (run / "result.json").write_bytes(data)
    line = one_error_line(run_cli(MEMDIET, "report", run, "-o", tmp_path / "out"))
    assert "0xff" in line


def test_a_number_of_thousands_of_digits_in_a_csv_is_one_line(tmp_path):
    run = write_fake_run(tmp_path / "runs", "naive", "rss")
    rows = (run / "rss.csv").read_text().splitlines()
    rows[2] = "0.1," + "9" * 5000 + ",1,1"
    (run / "rss.csv").write_text("\n".join(rows) + "\n")
    line = one_error_line(run_cli(MEMDIET, "report", run, "-o", tmp_path / "out"))
    assert "rss.csv:3" in line and len(line) < 400


def test_files_that_is_a_list_is_one_line(tmp_path):
    run = _edit(write_fake_run(tmp_path / "runs", "naive", "rss"), files=[])
    line = one_error_line(run_cli(MEMDIET, "export", run))
    assert "files" in line


def test_an_absolute_path_in_files_is_refused(tmp_path):
    run = _edit(write_fake_run(tmp_path / "runs", "naive", "rss"), files={"rss": "rss.csv", "massif": "/etc/passwd"})
    line = one_error_line(run_cli(MEMDIET, "report", run, "-o", tmp_path / "out"))
    assert "files.massif" in line and "refused" in line


def test_a_symlink_to_the_environment_is_not_followed(tmp_path):
    run = write_fake_run(tmp_path / "runs", "naive", "rss")
    (run / "rss.csv").unlink()
    (run / "rss.csv").symlink_to("/proc/self/environ")
    ran = run_cli(MEMDIET, "export", run)
    line = one_error_line(ran)
    assert "symlink" in line and "PATH=" not in ran.stderr + ran.stdout


def test_a_huge_number_in_the_history_is_one_line(tmp_path):
    history = tmp_path / "history.jsonl"
    history.write_text('{"schema": "memdiet.history/1", "figures": {"naive": {"rss": {"verdict": "ok", "value": '
                       + "9" * 400 + '}}}, "tolerances": {}, "machine": {}, "parameters": {}}\n')
    line = one_error_line(run_cli(MEMDIET, "history", "--history", history, "-o", tmp_path / "out"))
    assert str(history) in line


class _RunsCode:
    """A pickle that runs ``open(marker, "w")`` when unpickled by an unrestricted loader."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_ledger_loads_dumps_with_the_restricted_loader(tmp_path):
    from experiments.measure.ledger import rounding_bytes
    from tracemalloc_viewer import ViewerInputError

    marker = tmp_path / "ran"
    dump = tmp_path / "00-idle-empty.tmsnap"
    dump.write_bytes(pickle.dumps(_RunsCode(str(marker)), protocol=pickle.HIGHEST_PROTOCOL))
    with pytest.raises(ViewerInputError, match="refused"):
        rounding_bytes(dump)
    assert not marker.exists()


# --- fuzzing: one field of a real-shaped result.json replaced, then report and export -------------
SOAK = os.environ.get("MEMDIET_SOAK") == "1"
_VALUES = st.sampled_from([None, True, -1, 0, 10**18, 2**63, 1.5, -1e300, 1e300, "x", "", [], {}, [1], {"a": 1},
                           "../x", "a`b<i>c"])


def _paths(value, prefix=()):
    """Every key path of a JSON document (the first three items of a list)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield prefix + (key,)
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            yield prefix + (index,)
            yield from _paths(item, prefix + (index,))


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    run = write_fake_run(tmp_path_factory.mktemp("base"), "naive", "tracemalloc")
    return run, json.loads((run / "result.json").read_text())


def _report_and_export(tmp_path_factory, base_run, choice, value):
    import contextlib
    import io
    import shutil

    from experiments.cli import main

    run, document = base_run
    document = json.loads(json.dumps(document))
    path = sorted(_paths(document), key=repr)[choice % len(list(_paths(document)))]
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    folder = tmp_path_factory.mktemp("fuzzed")
    shutil.copytree(run, folder / run.name)
    (folder / run.name / "result.json").write_text(json.dumps(document))
    for argv in (["report", str(folder / run.name), "-o", str(folder / "out")],
                 ["export", str(folder / run.name), "-o", str(folder / "export.csv")]):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)  # an exception here is a traceback a user would see
        assert code in (0, 2), (path, value, stderr.getvalue())
        if code == 2:
            assert len(stderr.getvalue().splitlines()) == 1, stderr.getvalue()


_SETTINGS = dict(deadline=None, derandomize=not SOAK,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=10, **_SETTINGS)
@given(choice=st.integers(0, 10**6), value=_VALUES)
def test_a_field_of_any_type_gives_a_report_or_one_line(tmp_path_factory, base_run, choice, value):
    _report_and_export(tmp_path_factory, base_run, choice, value)


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason="long version: set MEMDIET_SOAK=1 (make soak)")
@settings(max_examples=400, **_SETTINGS)
@given(choice=st.integers(0, 10**6), value=_VALUES)
def test_a_field_of_any_type_soak(tmp_path_factory, base_run, choice, value):
    _report_and_export(tmp_path_factory, base_run, choice, value)
