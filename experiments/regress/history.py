"""The regression history: one record per ``memdiet regress`` run, appended to a JSON-lines file,
read back as per-figure trends over commits, with slow creeps found.

Rules:

- A record (:func:`history_record`) is one line of JSON, schema :data:`HISTORY_SCHEMA`: when the
  check ran, the commit and machine the runs were made on, the matrix parameters, the baseline
  compared with, whether it passed, and for every figure of every layout its value, the baseline's,
  the change its tolerance allowed, its noise band (a learned baseline) and its verdict, with the
  tolerance each metric was judged by. A record holds all it needs to be drawn: the baseline may have
  been remade since.
- Records are appended (:func:`append_record`, one ``write`` of one line) and read in file order,
  which is the order the checks ran (:func:`read_history`); a line that is not a record is
  :class:`HistoryError` (exit 2) naming the file and line.
- A trend (:func:`trends`) is one figure over the records. Its points are compared in *series*: runs
  on one machine with one matrix (:data:`~.baseline.MACHINE_FIELDS`, the compared parameters); a
  change of either starts a new series.
- The creep rule (:func:`find_creeps`): within a series, a run of consecutive steps each inside the
  tolerance (``|step| <= allowed``, the tolerance of the later point applied to the earlier value)
  whose sum, from the best point of the run so far to a later point, goes beyond the tolerance in
  the worse direction is a creep, reported from that best point to the last point still beyond.
  A step beyond the tolerance either way ends the run: it was judged as a regression or improvement
  of its own. The tolerance is the one each record was judged by, so a baseline remade at every step
  (each step passing) still shows the sum.

Data only: nothing here decides a path or renders; ``memdiet regress --history`` appends and
``memdiet history`` (:mod:`experiments.render.history_md`, :mod:`experiments.render.history_chart`)
draws.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from tracemalloc_viewer.untrusted import CSV_MAX_BYTES, loads_json, read_text, shown

from ..dataset.selection import layout_order
from ..errors import BadInput
from ..paths import REPORTS_DIR
from .baseline import COMPARED_PARAMETERS, MACHINE_FIELDS, metric_order
from .compare import FAILING, Comparison, worse_sign
from .tolerances import Tolerance

HISTORY_SCHEMA = "memdiet.history/1"
HISTORY_FILE = "history.jsonl"
DEFAULT_HISTORY = REPORTS_DIR / HISTORY_FILE
#: The figures ``memdiet history`` draws unless asked for others: the slot, the held connection, RSS.
DEFAULT_TREND_METRICS = ("bytes_per_slot", "heap_bytes_per_held_connection", "idle_rss_bytes", "held_rss_bytes")


class HistoryError(BadInput):
    """The history file cannot be read; the message is one line naming the file (and line)."""


@dataclass(frozen=True)
class Point:
    """One figure in one record: ``value`` now, the ``baseline``'s, the change its tolerance
    ``allowed``, its ``noise`` band (or None) and its ``verdict``."""

    value: float | None
    baseline: float | None
    allowed: float | None
    noise: float | None
    verdict: str


@dataclass(frozen=True)
class Record:
    """One line of the history: ``index`` its position (0 = the oldest)."""

    index: int
    time_utc: str
    commit: str | None
    dirty: bool | None
    machine: dict[str, Any]
    parameters: dict[str, Any]
    passed: bool
    baseline: dict[str, Any]
    tolerances: dict[str, Tolerance]
    figures: dict[str, dict[str, Point]]

    @property
    def label(self) -> str:
        """The short commit (``+`` for uncommitted changes), or ``?`` when the runs recorded none."""
        commit = str(self.commit)[:7] if self.commit and self.commit != "mixed" else (self.commit or "?")
        return f"{commit}+" if self.dirty is True else commit

    @property
    def series_key(self) -> str:
        """Records with equal keys were made on one machine with one matrix: their figures compare."""
        return json.dumps([self.machine.get(name) for name in MACHINE_FIELDS]
                          + [self.parameters.get(name) for name in COMPARED_PARAMETERS])

    def regressed(self) -> list[tuple[str, str]]:
        """(layout, metric) of every figure that failed in this record."""
        return [(layout, name) for layout, by_name in self.figures.items() for name, point in by_name.items()
                if point.verdict in FAILING]


@dataclass(frozen=True)
class Creep:
    """A slow creep of one figure: from point ``start`` (the best of its run) to point ``end`` (record
    indexes), ``steps`` steps each inside the tolerance, ``drift`` in the worse direction (the metric's
    unit, > 0) against ``allowed``, the tolerance at ``end`` applied to the start's value."""

    layout: str
    metric: str
    start: int
    end: int
    steps: int
    drift: float
    allowed: float


@dataclass
class Trend:
    """One figure (layout, metric) over the records: ``points[i]`` is record i's (None where it has
    no such figure); ``creeps`` found by :func:`find_creeps` within each series."""

    layout: str
    metric: str
    points: list[Point | None]
    creeps: list[Creep] = field(default_factory=list)

    @property
    def worse(self) -> int:
        return worse_sign(self.metric)


def history_record(comparison: Comparison, *, time_utc: str, baseline_path: Path) -> dict[str, Any]:
    """The history line for one comparison (see the module's rules)."""
    environment = comparison.environment
    baseline = comparison.baseline
    figures: dict[str, dict[str, Any]] = {}
    tolerances: dict[str, Any] = {}
    for row in comparison.rows:
        figures.setdefault(row.layout, {})[row.metric] = {
            "value": row.now, "baseline": row.baseline, "allowed": row.allowed, "noise": row.noise,
            "verdict": row.verdict}
        if row.tolerance is not None and row.metric not in tolerances:
            tolerances[row.metric] = {"relative": row.tolerance.relative, "absolute": row.tolerance.absolute,
                                      "rule": row.rule}
    parameters = {name: baseline.parameters.get(name) for name in COMPARED_PARAMETERS}
    return {
        "schema": HISTORY_SCHEMA,
        "time_utc": time_utc,
        "commit": environment.get("commit"),
        "dirty": environment.get("dirty"),
        "machine": {name: environment.get(name) for name in (*MACHINE_FIELDS, "machine")},
        "parameters": parameters,
        "passed": comparison.passed,
        "baseline": {"path": str(baseline_path), "created_utc": baseline.created_utc,
                     "commit": baseline.environment.get("commit"), "repeat": baseline.repeat},
        "tolerances": tolerances,
        "figures": figures,
    }


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` to the history file at ``path`` (made, with its folder, if absent) as one
    line, in one write; a file whose last line lacks its newline gets one first. :class:`HistoryError`
    when the file cannot be opened for appending."""
    path = Path(path)
    line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as error:
        raise HistoryError(f"{path}: cannot append to the history: {error.strerror}") from None
    try:
        size = os.fstat(descriptor).st_size
        if size and os.pread(descriptor, 1, size - 1) != b"\n":
            line = "\n" + line
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


def read_history(path: Path) -> list[Record]:
    """The records of the history file at ``path``, oldest first; :class:`HistoryError` if it is
    missing, empty or holds a line that is not a record."""
    path = Path(path)
    if not os.path.lexists(path):
        raise HistoryError(f"{path}: no such history file (`memdiet regress` appends one record per run)")
    # A regular file, strict UTF-8, size capped; each line JSON without NaN and with bounded integers.
    text = read_text(path, CSV_MAX_BYTES, error=HistoryError)
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = loads_json(line, f"{path}:{number}", error=HistoryError)
        except HistoryError as error:
            raise HistoryError(f"{path}:{number}: not a JSON record ({str(error).split(': ', 1)[-1]})") from None
        records.append(_read_record(data, len(records), f"{path}:{number}"))
    if not records:
        raise HistoryError(f"{path}: the history holds no records")
    return records


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise HistoryError(f"{where} should be a number, found {shown(value)}")
    return float(value)


def _read_record(data: Any, index: int, where: str) -> Record:
    if not isinstance(data, dict) or data.get("schema") != HISTORY_SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise HistoryError(f"{where}: not a history record (schema {found!r}, expected {HISTORY_SCHEMA!r})")
    for key in ("figures", "tolerances", "machine", "parameters"):
        if not isinstance(data.get(key), dict):
            raise HistoryError(f"{where}: field {key!r} is missing or not an object")
    tolerances = {}
    for name, entry in data["tolerances"].items():
        if not isinstance(entry, dict):
            raise HistoryError(f"{where}: tolerances.{name} should be an object")
        relative = _number(entry.get("relative"), f"{where}: tolerances.{name}.relative") or 0.0
        absolute = _number(entry.get("absolute"), f"{where}: tolerances.{name}.absolute") or 0.0
        tolerances[name] = Tolerance(relative, absolute, "", str(entry.get("rule") or ""))
    figures: dict[str, dict[str, Point]] = {}
    for layout, by_name in data["figures"].items():
        if not isinstance(by_name, dict):
            raise HistoryError(f"{where}: figures.{layout} should be an object of metrics")
        figures[layout] = {}
        for name, entry in by_name.items():
            at = f"{where}: figures.{layout}.{name}"
            if not isinstance(entry, dict) or not isinstance(entry.get("verdict"), str):
                raise HistoryError(f"{at} should be an object with a verdict")
            figures[layout][name] = Point(_number(entry.get("value"), f"{at}.value"),
                                          _number(entry.get("baseline"), f"{at}.baseline"),
                                          _number(entry.get("allowed"), f"{at}.allowed"),
                                          _number(entry.get("noise"), f"{at}.noise"), entry["verdict"])
    return Record(index, str(data.get("time_utc", "?")), data.get("commit"), data.get("dirty"), data["machine"],
                  data["parameters"], bool(data.get("passed")), data.get("baseline") or {}, tolerances, figures)


def find_creeps(values: Sequence[float | None], tolerances: Sequence[Tolerance | None], worse: int,
                *, layout: str = "", metric: str = "") -> list[Creep]:
    """The creeps of one series (the module's rule): ``values[i]`` and ``tolerances[i]`` of point i
    (None where the point is absent; it neither breaks nor extends a run), ``worse`` +1 when a rise
    is worse. Indexes in the result are positions in ``values``."""
    creeps: list[Creep] = []
    present = [i for i, value in enumerate(values) if value is not None and tolerances[i] is not None]
    run_start = 0  # position in `present` where the current run of steps inside tolerance begins
    current: Creep | None = None
    for k in range(1, len(present)):
        i, j = present[k - 1], present[k]
        step = values[j] - values[i]  # type: ignore[operator]
        if abs(step) > tolerances[j].allowed(values[i]):  # type: ignore[union-attr, arg-type]
            run_start, current = k, _closed(current, creeps)
            continue
        best = min(present[run_start:k], key=lambda p: worse * values[p])  # type: ignore[operator]
        drift = worse * (values[j] - values[best])  # type: ignore[operator]
        allowed = tolerances[j].allowed(values[best])  # type: ignore[union-attr, arg-type]
        if drift > allowed:
            if current is not None and current.start == best:
                current = Creep(layout, metric, best, j, sum(1 for p in present if best < p <= j), drift, allowed)
            else:
                _closed(current, creeps)
                current = Creep(layout, metric, best, j, sum(1 for p in present if best < p <= j), drift, allowed)
        else:
            current = _closed(current, creeps)
    _closed(current, creeps)
    return creeps


def _closed(creep: Creep | None, creeps: list[Creep]) -> None:
    if creep is not None:
        creeps.append(creep)
    return None


def trends(records: Sequence[Record], *, layouts: Iterable[str] | None = None,
           metrics: Iterable[str] | None = None) -> list[Trend]:
    """Every figure's trend over ``records`` (or those of ``layouts`` and ``metrics``), in study and
    metric order, with its creeps found within each series of comparable records."""
    all_layouts = layout_order({layout for record in records for layout in record.figures})
    all_metrics = metric_order({name for record in records for by_name in record.figures.values() for name in by_name})
    chosen_layouts = [l for l in all_layouts if layouts is None or l in set(layouts)]
    chosen_metrics = [m for m in all_metrics if metrics is None or m in set(metrics)]
    out = []
    for name in chosen_metrics:
        for layout in chosen_layouts:
            points = [record.figures.get(layout, {}).get(name) for record in records]
            if all(point is None for point in points):
                continue
            trend = Trend(layout, name, points)
            for series in _series(records):
                values = [points[i].value if points[i] is not None else None for i in series]
                tolerances = [records[i].tolerances.get(name) for i in series]
                for creep in find_creeps(values, tolerances, trend.worse, layout=layout, metric=name):
                    trend.creeps.append(Creep(layout, name, series[creep.start], series[creep.end], creep.steps,
                                              creep.drift, creep.allowed))
            out.append(trend)
    return out


def _series(records: Sequence[Record]) -> list[list[int]]:
    """Record indexes split where the machine or the matrix changes."""
    series: list[list[int]] = []
    for index, record in enumerate(records):
        if series and records[series[-1][-1]].series_key == record.series_key:
            series[-1].append(index)
        else:
            series.append([index])
    return series
