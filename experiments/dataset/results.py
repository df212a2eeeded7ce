"""The result dataset: one folder per run, written atomically, read back with validation.

This is the middle of the experiments package: runners write it, renderers and notebooks read it, and
nothing reads a live run. A run folder (``reports/runs/<UTC time>-<layout>-<probe>/``) holds:

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

from ..errors import BadInput

SCHEMA = "memdiet.run/1"
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
    write_atomic(path, json.dumps(document, indent=2, sort_keys=False, default=_json_default) + "\n")


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
    def layout(self) -> str:
        return self.document["layout"]

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
        """Path of a raw file listed under ``files`` in result.json, or None."""
        name = self.document.get("files", {}).get(key)
        return self.path / name if name else None


_REQUIRED = {"schema": str, "status": str, "layout": str, "probe": str, "parameters": dict, "phases": list}


def validate_document(document: Any, source: str) -> dict[str, Any]:
    """Check a result.json document's shape; raise :class:`ResultError` naming ``source`` if wrong."""
    if not isinstance(document, dict):
        raise ResultError(f"{source}: not a JSON object")
    for key, kind in _REQUIRED.items():
        if key not in document:
            raise ResultError(f"{source}: missing field {key!r}")
        if not isinstance(document[key], kind):
            raise ResultError(f"{source}: field {key!r} should be {kind.__name__}")
    if document["schema"] != SCHEMA:
        raise ResultError(f"{source}: schema {document['schema']!r} is not {SCHEMA!r}")
    if document["status"] not in STATUSES:
        raise ResultError(f"{source}: unknown status {document['status']!r}")
    for phase in document["phases"]:
        if not (isinstance(phase, dict) and isinstance(phase.get("name"), str)
                and isinstance(phase.get("start_s"), (int, float)) and isinstance(phase.get("end_s"), (int, float))):
            raise ResultError(f"{source}: malformed phase entry {phase!r}")
    summary = document.get("summary", {})
    if not isinstance(summary, dict):
        raise ResultError(f"{source}: field 'summary' should be an object")
    for key, value in summary.items():
        if value is not None and not isinstance(value, (int, float)):
            raise ResultError(f"{source}: summary metric {key!r} is not a number")
    return document


def _read_series(path: Path, columns: Sequence[str]) -> Series:
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or tuple(header) != tuple(columns):
                raise ResultError(f"{path}: expected columns {','.join(columns)}, found {header}")
            data: dict[str, list[float | None]] = {name: [] for name in columns}
            for line_number, row in enumerate(reader, start=2):
                if len(row) != len(columns):
                    raise ResultError(f"{path}:{line_number}: expected {len(columns)} fields, found {len(row)}")
                for name, text in zip(columns, row):
                    data[name].append(float(text) if text != "" else None)
    except ValueError as error:
        raise ResultError(f"{path}: not a number ({error})") from None
    except OSError as error:
        raise ResultError(f"{path}: {error.strerror}") from None
    return Series(data)


def _read_sites(path: Path) -> list[tuple[float, str, int, int]]:
    rows = []
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or tuple(header) != SITES_COLUMNS:
                raise ResultError(f"{path}: expected columns {','.join(SITES_COLUMNS)}, found {header}")
            for line_number, row in enumerate(reader, start=2):
                if len(row) != 4:
                    raise ResultError(f"{path}:{line_number}: expected 4 fields, found {len(row)}")
                rows.append((float(row[0]), row[1], int(row[2]), int(row[3])))
    except ValueError as error:
        raise ResultError(f"{path}: not a number ({error})") from None
    except OSError as error:
        raise ResultError(f"{path}: {error.strerror}") from None
    return rows


def read_json_file(path: Path, error: type[Exception], *, missing: str) -> Any:
    """Parse the JSON file ``path``; raise ``error`` with one readable line when it is absent
    (``missing``), unreadable or not valid JSON."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise error(missing) from None
    except OSError as os_error:
        raise error(f"{path}: cannot read it ({os_error.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as json_error:
        raise error(f"{path}: not valid JSON ({json_error.msg} at line {json_error.lineno}), truncated or hand-edited?") from None


def load_run(path: str | os.PathLike[str]) -> RunResult:
    """Read and validate the run folder ``path`` (or its result.json)."""
    path = Path(path)
    if path.name == RESULT_FILE:
        path = path.parent
    result_path = path / RESULT_FILE
    document = read_json_file(result_path, ResultError, missing=f"{path}: no {RESULT_FILE} (not a memdiet run folder)")
    validate_document(document, str(result_path))
    rss = _read_series(path / RSS_FILE, RSS_COLUMNS) if (path / RSS_FILE).exists() else Series({c: [] for c in RSS_COLUMNS})
    heap = _read_series(path / HEAP_FILE, HEAP_COLUMNS) if (path / HEAP_FILE).exists() else None
    sites = _read_sites(path / SITES_FILE) if (path / SITES_FILE).exists() else []
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
