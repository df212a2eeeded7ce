"""The result dataset: one folder per run, written atomically, read back with validation.

This is the middle of the experiments package: runners write it, renderers and notebooks read it, and
nothing reads a live run. A run folder (``reports/runs/<UTC time>-<subject>-<probe>/``) holds:

``result.json``
    parameters, phase marks, summary metrics, load-generator figures, probe notes, environment,
    ``status`` (``running`` | ``complete`` | ``incomplete``) and the names of the files below.
``rss.csv``
    ``time_s,rss_bytes,uss_bytes,pss_bytes``: the server sampled from outside (every probe records it).
``heap.csv``
    ``time_s,heap_bytes,peak_bytes,tracer_bytes``: heap totals from inside (tracemalloc or memray runs).
``sites.csv``
    ``time_s,site,bytes,count``: per-allocation-site bytes at each detailed snapshot (long format).
    ``site`` is ``file:line (function)``; the row with site ``(other)`` holds what the top sites leave,
    and ``(probe)`` what the probe itself allocated (tracemalloc's sampler), so the rows of one time
    add up to the heap total.
``snapshots/``, ``memray.bin``, ``flamegraph.html``
    raw captures, when the probe makes them.

Times are seconds since the server process was started. Sizes are bytes. Every file is written to a
temporary name and renamed into place, so a reader sees the old version or the new one, never half.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from tracemalloc_viewer.untrusted import (CSV_MAX_BYTES, JSON_MAX_BYTES, SIZE_LIMIT, check_name, check_number, check_time,
                                          member, parse_size, parse_time, read_json, read_text, shown)

from ..errors import BadInput

#: result.json's format. ``memdiet.run/2`` names what was run in ``subject.name`` only; ``memdiet.run/1``
#: named it in ``layout`` too (whatever it was: a layout, a peer, a --cmd), and is still read.
SCHEMA = "memdiet.run/2"
SCHEMA_WITH_LAYOUT = "memdiet.run/1"
READABLE_SCHEMAS = (SCHEMA_WITH_LAYOUT, SCHEMA)
RESULT_FILE = "result.json"
RSS_FILE = "rss.csv"
HEAP_FILE = "heap.csv"
SITES_FILE = "sites.csv"
OTHER_SITE = "(other)"
PROBE_SITE = "(probe)"

#: The scenario's phases (what each does: experiments/measure/runner.py). Named here, the lowest layer
#: that needs them (a result file's phases); every other module imports them.
IDLE_EMPTY = "idle-empty"
RAMP = "ramp"
IDLE_HELD = "idle-held"
LOAD = "load"
DRAIN = "drain"
IDLE_AFTER = "idle-after"
#: Phase names in scenario order.
PHASES = (IDLE_EMPTY, RAMP, IDLE_HELD, LOAD, DRAIN, IDLE_AFTER)
#: The phases without traffic, whose levels the summary takes.
IDLE_PHASES = (IDLE_EMPTY, IDLE_HELD, IDLE_AFTER)
#: The phases in which the load generator works, and reports its clients' errors.
CLIENT_PHASES = (RAMP, LOAD, DRAIN)
STATUSES = ("running", "complete", "incomplete")

#: Run parameters that must be equal for runs' figures to share a table or be compared (the report,
#: regress): the table size and the number of clients (every memory and load figure scales with
#: them), the phase lengths (requests counted, peaks reached, time to settle), the sampling (peaks
#: are sampled maxima; detailed snapshots cost the tracer time and memory) and the workload (the
#: request path, the keep-alive timeout). Where the files went (``runs_dir``) does not count.
COMPARED_PARAMETERS = ("max_conns", "connections", "idle_s", "load_s", "sample_hz", "detail_interval_s",
                       "path", "keep_alive_timeout_s", "trace_frames")

RSS_COLUMNS = ("time_s", "rss_bytes", "uss_bytes", "pss_bytes")
HEAP_COLUMNS = ("time_s", "heap_bytes", "peak_bytes", "tracer_bytes")
SITES_COLUMNS = ("time_s", "site", "bytes", "count")
#: Per-process memory over time (every process of the subject's tree), beside rss.csv: one row per
#: process on every full-info sample.
PROCESSES_FILE = "processes.csv"
PROCESS_COLUMNS = ("time_s", "pid", "ppid", "name", "rss_bytes", "uss_bytes", "pss_bytes", "rss_anon_bytes",
                   "rss_file_bytes", "rss_shmem_bytes")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class ResultError(BadInput):
    """A run folder or result file that cannot be read; the message names the file and the fault."""


# --- atomic writes -----------------------------------------------------------------------------
def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, fsynced,
    so ``path`` is always either the old content or the new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as temp:
            temp.write(payload)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise


def write_json(path: Path, document: Any) -> None:
    """Write ``document`` as JSON, a NaN or infinite float stored as null (JSON has no such number,
    and every reader refuses them): ``allow_nan=False`` after that, so none gets through."""
    text = json.dumps(_finite(document), indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    write_atomic(path, text + "\n")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth of dicts, lists and tuples) made None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a result file")


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


# --- the dataset -------------------------------------------------------------------------------
@dataclass
class Phase:
    """One phase of the scenario: ``name`` and its start and end, seconds since server start."""

    name: str
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Series:
    """Columns of a CSV time series: ``columns[name]`` is a list of floats (None where empty)."""

    columns: dict[str, list[float | None]] = field(default_factory=dict)

    def __len__(self) -> int:
        first = next(iter(self.columns.values()), [])
        return len(first)

    def __getitem__(self, name: str) -> list[float | None]:
        return self.columns[name]

    def between(self, name: str, start_s: float, end_s: float) -> list[float]:
        """Values of column ``name`` sampled at ``start_s <= time_s < end_s``, blanks left out."""
        times = self.columns["time_s"]
        values = self.columns[name]
        return [v for t, v in zip(times, values) if t is not None and start_s <= t < end_s and v is not None]


@dataclass
class RunResult:
    """A run folder read back: ``document`` is result.json, series are loaded when present."""

    path: Path
    document: dict[str, Any]
    rss: Series
    heap: Series | None
    sites: list[tuple[float, str, int, int]]

    # Shortcuts for what every reader wants.
    @property
    def subject(self) -> str:
        """What was run: one of memdiet's layouts, a peer, or a --cmd's name (:func:`subject_name`)."""
        return subject_name(self.document)

    #: The name the readers written before ``subject`` use: the same.
    layout = subject

    @property
    def probe(self) -> str:
        return self.document["probe"]

    @property
    def status(self) -> str:
        return self.document["status"]

    @property
    def summary(self) -> dict[str, Any]:
        return self.document.get("summary", {})

    @property
    def parameters(self) -> dict[str, Any]:
        return self.document.get("parameters", {})

    @property
    def phases(self) -> list[Phase]:
        return [Phase(p["name"], p["start_s"], p["end_s"]) for p in self.document.get("phases", [])]

    def site_series(self) -> tuple[list[float], dict[str, list[int]]]:
        """Per-site bytes at each detailed snapshot: (times, {site: bytes at each time}); a site absent
        from a snapshot counts 0 there."""
        times = sorted({row[0] for row in self.sites})
        index = {t: i for i, t in enumerate(times)}
        by_site: dict[str, list[int]] = {}
        for time_s, site, size, _count in self.sites:
            by_site.setdefault(site, [0] * len(times))[index[time_s]] += size
        return times, by_site

    def file(self, key: str) -> Path | None:
        """Path of a raw file listed under ``files`` in result.json (one name, checked to stay inside the
        run folder), or None (none listed, or a list of them)."""
        name = self.document.get("files", {}).get(key)
        if not name or not isinstance(name, str):
            return None
        return member(self.path, name, f"{self.path / RESULT_FILE}: files.{key}", error=ResultError)


_REQUIRED = {"schema": str, "status": str, "probe": str, "parameters": dict, "phases": list}


def subject_name(document: dict[str, Any]) -> str:
    """The name of what a validated result.json's run ran: ``subject.name``, or, in a
    ``memdiet.run/1`` document, its ``layout``."""
    if document["schema"] == SCHEMA_WITH_LAYOUT:
        return document["layout"]
    return document["subject"]["name"]


def validate_document(document: Any, source: str) -> dict[str, Any]:
    """Check a result.json document's shape and bounds; raise :class:`ResultError` naming ``source``
    and the field if wrong: the required fields and their types (``subject.name``, or ``layout`` in a
    ``memdiet.run/1`` document), the subject's name and the probe by the rule of ``--name`` (they name
    files and folders), phase times finite,
    summary metrics finite numbers (or null), ``files`` an object of plain relative names."""
    if not isinstance(document, dict):
        raise ResultError(f"{source}: not a JSON object")
    for key, kind in _REQUIRED.items():
        if key not in document:
            raise ResultError(f"{source}: missing field {key!r}")
        if not isinstance(document[key], kind):
            raise ResultError(f"{source}: field {key!r} should be {kind.__name__}")
    if document["schema"] not in READABLE_SCHEMAS:
        raise ResultError(f"{source}: schema {shown(document['schema'])} is not {SCHEMA!r}")
    if document["status"] not in STATUSES:
        raise ResultError(f"{source}: unknown status {shown(document['status'])}")
    if document["schema"] == SCHEMA_WITH_LAYOUT:  # what was run, named by the older field
        if not isinstance(document.get("layout"), str):
            raise ResultError(f"{source}: missing field 'layout'" if "layout" not in document
                              else f"{source}: field 'layout' should be str")
        check_name(document["layout"], f"{source}: layout", error=ResultError)
    elif not (isinstance(document.get("subject"), dict) and isinstance(document["subject"].get("name"), str)):
        raise ResultError(f"{source}: field 'subject' should be an object with a name")
    check_name(document["probe"], f"{source}: probe", error=ResultError)
    subject = document.get("subject")
    if isinstance(subject, dict) and "name" in subject:
        check_name(subject["name"], f"{source}: subject.name", error=ResultError)
    for index, phase in enumerate(document["phases"]):
        if not (isinstance(phase, dict) and isinstance(phase.get("name"), str) and "start_s" in phase and "end_s" in phase):
            raise ResultError(f"{source}: phases[{index}]: expected an object with name, start_s and end_s")
        for key in ("start_s", "end_s"):
            check_time(phase[key], f"{source}: phases[{index}].{key}", error=ResultError, non_negative=True)
    summary = document.get("summary", {})
    if not isinstance(summary, dict):
        raise ResultError(f"{source}: field 'summary' should be an object")
    for key, value in summary.items():
        if value is not None:
            check_number(value, f"{source}: summary.{key}", error=ResultError)
    _check_shapes(document, source)
    files = document.get("files", {})
    if not isinstance(files, dict):
        raise ResultError(f"{source}: field 'files' should be an object, got {type(files).__name__}")
    for key, value in files.items():
        if key == "snapshots" and not isinstance(value, list):
            raise ResultError(f"{source}: files.snapshots should be a list")
        if isinstance(value, list):  # several files of one kind (one per process)
            for index, name in enumerate(value):
                member(Path("."), name, f"{source}: files.{key}[{index}]", error=ResultError)
        elif key == "snapshot_times_s":
            if not isinstance(value, dict):
                raise ResultError(f"{source}: files.snapshot_times_s should be an object")
            for name, time_s in value.items():
                check_time(time_s, f"{source}: files.snapshot_times_s[{shown(name)}]", error=ResultError)
        elif isinstance(value, str):
            member(Path("."), value, f"{source}: files.{key}", error=ResultError)
    return document


#: The optional top-level fields the renderers read, with their type when present (null allowed).
_OPTIONAL = {"summary": dict, "load": dict, "environment": dict, "subject": dict, "table": dict, "kernel": dict,
             "probe_info": dict, "probe_notes": dict, "rss_ledger": dict, "held_connection_sites": dict,
             "phase_end_heap_bytes": dict, "server_cpu_s": dict, "process_tree": dict, "listening": dict,
             "warnings": list, "error": str, "started_utc": str, "finished_utc": str}
#: environment fields that are text when present (the report slices and joins them).
_ENVIRONMENT_TEXT = ("commit", "python", "python_implementation", "memray", "psutil", "cpu_model", "kernel", "machine")
#: Of the compared parameters, those that are text; the others are finite numbers (or null).
_PARAMETER_TEXT = ("path",)


def _check_shapes(document: dict[str, Any], source: str) -> None:
    """Types of the fields the renderers read (see :data:`_OPTIONAL`): the compared parameters
    numbers (but :data:`_PARAMETER_TEXT`), environment text where it is text, load phases objects
    whose figures are numbers (flags and text aside)."""
    for key, kind in _OPTIONAL.items():
        if document.get(key) is not None and not isinstance(document[key], kind):
            raise ResultError(f"{source}: field {key!r} should be {kind.__name__}, got {type(document[key]).__name__}")
    for key in COMPARED_PARAMETERS:  # what the report compares and draws
        value = document["parameters"].get(key)
        if value is None:
            continue
        if key in _PARAMETER_TEXT:
            if not isinstance(value, str):
                raise ResultError(f"{source}: parameters.{key} should be text, got {type(value).__name__}")
        else:
            check_number(value, f"{source}: parameters.{key}", error=ResultError)
    environment = document.get("environment") or {}
    for key in _ENVIRONMENT_TEXT:
        if environment.get(key) is not None and not isinstance(environment[key], str):
            raise ResultError(f"{source}: environment.{key} should be text, got {type(environment[key]).__name__}")
    for key, value in environment.items():
        if key not in _ENVIRONMENT_TEXT and value is not None and not isinstance(value, (bool, int, float, dict)):
            raise ResultError(f"{source}: environment.{key} should be a number, a flag or an object")
    for phase, figures in (document.get("load") or {}).items():
        if not isinstance(figures, dict):
            raise ResultError(f"{source}: load.{shown(phase)} should be an object")
        for key, value in figures.items():
            if value is not None and not isinstance(value, (bool, str, dict, list)):
                check_number(value, f"{source}: load.{shown(phase)}.{shown(key)}", error=ResultError)


def _cell(text: str, where: str) -> float | None:
    """A CSV cell of a series: blank (None), or a finite number >= 0 below 2**63 (times, bytes)."""
    if text == "":
        return None
    value = parse_time(text, where, error=ResultError)
    if value >= SIZE_LIMIT:
        raise ResultError(f"{where}: {value!r} is not a size (0 <= n < 2**63)")
    return value


def _csv_rows(path: Path, columns: Sequence[str]):
    """(line number, row) of the CSV ``path``, a regular file in its run folder of at most
    ``CSV_MAX_BYTES``, whose header is ``columns``; rows checked for width. Quotes nothing of it."""
    text = read_text(path, CSV_MAX_BYTES, inside=path.parent, error=ResultError)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None or tuple(header) != tuple(columns):
            raise ResultError(f"{path}:1: expected the columns {','.join(columns)} (the header line is not that)")
        for line_number, row in enumerate(reader, start=2):
            if len(row) != len(columns):
                raise ResultError(f"{path}:{line_number}: expected {len(columns)} fields, found {len(row)}")
            yield line_number, row
    except csv.Error as error:
        raise ResultError(f"{path}: not a CSV file ({' '.join(str(error).split())})") from None


def _read_series(path: Path, columns: Sequence[str]) -> Series:
    data: dict[str, list[float | None]] = {name: [] for name in columns}
    for line_number, row in _csv_rows(path, columns):
        for name, text in zip(columns, row):
            data[name].append(_cell(text, f"{path}:{line_number}: {name}"))
    return Series(data)


def _read_sites(path: Path) -> list[tuple[float, str, int, int]]:
    rows = []
    for line_number, row in _csv_rows(path, SITES_COLUMNS):
        where = f"{path}:{line_number}"
        rows.append((parse_time(row[0], f"{where}: time_s", error=ResultError), row[1],
                     parse_size(row[2], f"{where}: bytes", error=ResultError),
                     parse_size(row[3], f"{where}: count", error=ResultError)))
    return rows


def read_json_file(path: Path, error: type[Exception], *, missing: str) -> Any:
    """Parse the JSON file ``path`` (a regular file, through no symlink, of at most 64 MiB; NaN and
    Infinity refused, integers of at most 20 digits); raise ``error`` with one readable line when
    it is absent (``missing``), unreadable, not valid JSON or out of those bounds."""
    if not os.path.lexists(path):
        raise error(missing)
    return read_json(Path(path), JSON_MAX_BYTES, error=error)


def load_run(path: str | os.PathLike[str]) -> RunResult:
    """Read and validate the run folder ``path`` (or its result.json)."""
    path = Path(path)
    if path.name == RESULT_FILE:
        path = path.parent
    result_path = path / RESULT_FILE
    document = read_json_file(result_path, ResultError, missing=f"{path}: no {RESULT_FILE} (not a memdiet run folder)")
    validate_document(document, str(result_path))
    present = os.path.lexists  # a symlink counts as present, and is then refused by the reader
    rss = _read_series(path / RSS_FILE, RSS_COLUMNS) if present(path / RSS_FILE) else Series({c: [] for c in RSS_COLUMNS})
    heap = _read_series(path / HEAP_FILE, HEAP_COLUMNS) if present(path / HEAP_FILE) else None
    sites = _read_sites(path / SITES_FILE) if present(path / SITES_FILE) else []
    return RunResult(path, document, rss, heap, sites)


def find_runs(root: str | os.PathLike[str]) -> list[Path]:
    """Run folders directly under ``root`` (those holding a result.json), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / RESULT_FILE).is_file())


def load_runs(paths: Iterable[str | os.PathLike[str]], *, complete_only: bool = False) -> list[RunResult]:
    """Load several run folders; with ``complete_only``, skip those not marked complete."""
    runs = [load_run(p) for p in paths]
    return [r for r in runs if r.status == "complete"] if complete_only else runs
