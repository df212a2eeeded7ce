"""Regression check: compare a matrix's summary metrics with a committed baseline.

    memdiet baseline [--quick] [-o reports/baseline.json] [RUN_DIR...]
    memdiet regress [--baseline reports/baseline.json] [--quick] [-o reports] [RUN_DIR...]

``baseline`` writes ``reports/baseline.json`` deliberately, from a fresh matrix or from given run
folders: every summary metric of every layout, merged per layout as the report does (each figure from
the probe that measures it best, :func:`experiments.dataset.selection.merged_metrics`), the tolerance of
each metric with the reason for it, the matrix parameters and the machine the runs were made on.

``regress`` runs the matrix again (``--quick``, or the matrix the baseline records) or reads given run
folders, compares every figure with the baseline within the baseline's own tolerances, and writes
``regression.md`` (table and comparison chart) and ``regression.json``. Only a change in the worse
direction (:attr:`~experiments.dataset.metrics.Metric.lower_is_better`) beyond the tolerance fails; a change as
large in the better direction is reported as *improved*. A figure in the baseline but missing now
fails; a figure new since the baseline is reported and passes.

Exit codes: 0 every figure holds, 1 a regression (or a missing figure), 2 bad input (baseline missing
or malformed, run folders unreadable or made with other parameters than the baseline's, or on another
interpreter minor: a baseline holds for the CPython X.Y its ``environment.python`` names).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..dataset.metrics import METRICS, Metric
from ..dataset.results import RunResult, load_run, read_json_file, write_json

BASELINE_SCHEMA = "memdiet.baseline/1"
REGRESSION_SCHEMA = "memdiet.regression/1"
DEFAULT_BASELINE = Path("reports/baseline.json")
DEFAULT_OUTPUT_DIR = Path("reports")
REGRESSION_JSON = "regression.json"

EXIT_OK, EXIT_REGRESSION, EXIT_BAD_INPUT = 0, 1, 2

#: Run parameters that must be equal for two matrices' figures to be compared (sizes, times, rates).
COMPARED_PARAMETERS = ("max_conns", "connections", "idle_s", "load_s", "sample_hz", "detail_interval_s",
                       "path", "keep_alive_timeout_s")
#: Environment fields recorded in the baseline: the machine and software its figures came from.
ENVIRONMENT_FIELDS = ("cpu_model", "cpu_count", "memory_total_bytes", "kernel", "machine", "python",
                      "python_implementation", "memray", "psutil", "commit", "dirty")


class BaselineError(Exception):
    """The baseline (or the runs to compare with it) cannot be used; the message is one line."""


# --- tolerances ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tolerance:
    """How far a figure may move in its worse direction before it is a regression: the larger of
    ``relative`` (a fraction of the baseline figure) and ``absolute`` (in the metric's unit).
    ``why`` says where the numbers come from."""

    relative: float
    absolute: float
    why: str

    def allowed(self, baseline: float) -> float:
        """The largest change from ``baseline`` (in the metric's unit) that still holds."""
        return max(self.relative * abs(baseline), self.absolute)

    def to_json(self) -> dict[str, Any]:
        return {"relative": self.relative, "absolute": self.absolute, "why": self.why}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Tolerance:
        if not isinstance(data, dict):
            raise BaselineError(f"{where} should be an object with relative, absolute and why")
        values = []
        for key in ("relative", "absolute"):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise BaselineError(f"{where}.{key} should be a number >= 0, found {value!r}")
            values.append(float(value))
        return cls(values[0], values[1], str(data.get("why", "")))


# Measured on this project's machine (2 cores, CPython 3.11): seven quick matrices (max_conns 8,192,
# C = 100) over half an hour, other work running beside them. Spread = (max - min) / median of a
# layout's figure, for the worst layout:
#   table_heap_bytes, bytes_per_slot 0.04%; c_bytes_per_slot 0; errors always 0;
#   idle/held heap 0.33% / 0.54% (ranges of 5.0 / 7.6 KB); after heap 3.4% and loaded-peak heap 4.3%
#     (ranges of 79 / 82 KB: the tracemalloc probe's own retained snapshot data is in the heap total,
#     and how much depends on when its last detailed snapshot fell);
#   RSS (idle, held, loaded peak, after) 0.65% (110 KB), idle USS 1.1%; tracer_bytes 0.47%;
#   per held connection: RSS 1 page / C (41 B), heap 35 B (3.5 KB in total); per active connection:
#     RSS 2 pages / C (82 B), heap 809 B (81 KB in total, the probe again);
#   req/s: the slowest run made 36% of the fastest's (a neighbour busy on the other core);
#   latency: p50 0.02-4.5 ms (bimodal), p99 4-20 ms.
# Four more matrices after the tracemalloc probe changed when it takes its first detailed snapshot
# agreed more closely (after / loaded-peak heap ranges 19 / 12 KB, req/s 77% of the fastest); the
# tolerances below keep the wider margins of the first seven.
#: Heap figures the same code reproduces: 1% is 25x the spread of table_heap_bytes and bytes_per_slot,
#: and less than one more 8-byte field per slot adds in any layout but naive: those are the precise gate.
DETERMINISTIC_RELATIVE = 0.01
#: Whole-heap totals also carry the probe's own data: a floor of twice the largest range measured
#: (after and loaded-peak heap, 79-82 KB) and, for idle and held heap, four times theirs (7.6 KB).
HEAP_PROBE_NOISE_BYTES, STEADY_HEAP_NOISE_BYTES = 160 * 1024, 32 * 1024
#: Heap figures that depend on timing (peak under load, the tracer's own bookkeeping).
TIMING_HEAP_RELATIVE = 0.05
#: RSS and USS: 10%, nine times the spread measured side by side, because CI runs on another machine
#: of the same kind (other page cache, library mappings, allocator arenas) and RSS counts the whole
#: process. A layout's own growth is caught by the heap figures, not by RSS.
RSS_RELATIVE = 0.10
#: Per-connection figures are (a figure in one phase - in another) / C, so the whole-process noise
#: lands on them divided by C: RSS moves in 4 KiB pages (measured up to 2 pages between runs, allowed
#: 4); active-connection heap carries the probe's noise (HEAP_PROBE_NOISE_BYTES). Held-connection heap
#: is the live heap at two phase ends, the probe's leftovers collected: four quick runs each of nofd,
#: split and packed (8,192 slots, C = 100) moved by at most 154 B in total (packed 4.31-5.85 B per
#: connection, nofd 517.18-518.17, split 663.16-663.85); 512 B, 3.3 times that, keeps one more 8-byte
#: field per held connection a regression at C = 100.
RSS_PAGES_NOISE_BYTES, HELD_HEAP_NOISE_BYTES = 4 * 4096, 512
#: Throughput may drop to a fifth of the baseline (the slowest run here made 36% of the fastest's);
#: a real slowdown of the loop (say an O(max_conns) scan per event) costs far more than that.
THROUGHPUT_DROP = 0.80
#: CPU time per request is throughput seen from the server's side: the mirror of THROUGHPUT_DROP, it
#: may grow to 5x the baseline (+400%) before it fails. It moves less than req/s (the load generator's
#: own limits are not in it), but a neighbour on the other core still slows every instruction.
CPU_RISE = 4.0
#: Latency on 2 shared cores is bimodal: only a rise past 11x the baseline and past 20 ms fails,
#: which is a stall (a delayed-ACK wait is 40 ms), not noise (p99 measured up to 20 ms, 5x its low).
LATENCY_RISE, LATENCY_FLOOR_MS = 10.0, 20.0

_WHY_RSS = "whole process: 0.65% (RSS) and 1.1% (USS) spread side by side; other machines differ more"
_WHY_CPU = "throughput seen from the server: only a rise to 5x fails, as only a drop to a fifth does for req/s"
_WHY_HEAP_TOTAL = "heap total: includes the probe's own data, which moved by up to 82 KB between runs"


def tolerance_policy(names: Iterable[str], connections: int) -> dict[str, Tolerance]:
    """``{metric: Tolerance}`` for ``names``, for a matrix with ``connections`` clients (C), from
    the spreads measured above."""
    per_connection = 1 / max(connections, 1)
    known = {
        "idle_rss_bytes": Tolerance(RSS_RELATIVE, 0.0, _WHY_RSS),
        "held_rss_bytes": Tolerance(RSS_RELATIVE, 0.0, _WHY_RSS),
        "loaded_peak_rss_bytes": Tolerance(RSS_RELATIVE, 0.0, _WHY_RSS),
        "after_rss_bytes": Tolerance(RSS_RELATIVE, 0.0, _WHY_RSS),
        "idle_uss_bytes": Tolerance(RSS_RELATIVE, 0.0, _WHY_RSS),
        "rss_bytes_per_held_connection": Tolerance(RSS_RELATIVE, RSS_PAGES_NOISE_BYTES * per_connection,
                                                   "RSS moves in 4 KiB pages: 4 pages / C of noise allowed"),
        "rss_bytes_per_active_connection": Tolerance(RSS_RELATIVE, RSS_PAGES_NOISE_BYTES * per_connection,
                                                     "RSS moves in 4 KiB pages: 4 pages / C of noise allowed"),
        "table_heap_bytes": Tolerance(DETERMINISTIC_RELATIVE, 0.0, "deterministic: 0.04% spread measured"),
        "bytes_per_slot": Tolerance(DETERMINISTIC_RELATIVE, 0.0, "deterministic: 0.04% spread measured"),
        "idle_heap_bytes": Tolerance(DETERMINISTIC_RELATIVE, STEADY_HEAP_NOISE_BYTES,
                                     "heap total in a steady phase: 7.6 KB largest range measured"),
        "held_heap_bytes": Tolerance(DETERMINISTIC_RELATIVE, STEADY_HEAP_NOISE_BYTES,
                                     "heap total in a steady phase: 7.6 KB largest range measured"),
        "after_heap_bytes": Tolerance(DETERMINISTIC_RELATIVE, HEAP_PROBE_NOISE_BYTES, _WHY_HEAP_TOTAL),
        "loaded_peak_heap_bytes": Tolerance(TIMING_HEAP_RELATIVE, HEAP_PROBE_NOISE_BYTES, _WHY_HEAP_TOTAL),
        "heap_bytes_per_held_connection": Tolerance(DETERMINISTIC_RELATIVE, HELD_HEAP_NOISE_BYTES * per_connection,
                                                    "live heap at two phase ends, / C: 154 B / C largest range measured"),
        "heap_bytes_per_active_connection": Tolerance(TIMING_HEAP_RELATIVE, HEAP_PROBE_NOISE_BYTES * per_connection,
                                                      "heap under load minus idle, / C: 81 KB / C measured"),
        "tracer_bytes": Tolerance(TIMING_HEAP_RELATIVE, 0.0, "tracemalloc's own memory: 0.47% spread measured"),
        "c_bytes_per_slot": Tolerance(0.0, 0.0, "ctypes.sizeof of the slot's C struct: exact"),
        "requests": Tolerance(THROUGHPUT_DROP, 0.0, "the slowest run made 36% of the fastest's: only a collapse fails"),
        "req_per_s": Tolerance(THROUGHPUT_DROP, 0.0, "the slowest run made 36% of the fastest's: only a collapse fails"),
        "errors": Tolerance(0.0, 0.0, "a loopback load test has no reason to fail a request: any error fails"),
        "cpu_us_per_request": Tolerance(CPU_RISE, 0.0, _WHY_CPU),
        "main_thread_cpu_us_per_request": Tolerance(CPU_RISE, 0.0, _WHY_CPU),
        "latency_p50_ms": Tolerance(LATENCY_RISE, LATENCY_FLOOR_MS, "bimodal on 2 shared cores: only a stall fails"),
        "latency_p99_ms": Tolerance(LATENCY_RISE, LATENCY_FLOOR_MS, "bimodal on 2 shared cores: only a stall fails"),
    }
    return {name: known.get(name) or _fallback_tolerance(METRICS.get(name)) for name in names}


def _fallback_tolerance(metric: Metric | None) -> Tolerance:
    """For a metric added to METRICS after this policy was written: by its kind, loosely."""
    if metric is not None and metric.deterministic:
        return Tolerance(DETERMINISTIC_RELATIVE, HEAP_PROBE_NOISE_BYTES if metric.unit == "bytes" else 0.0,
                         "new deterministic metric: the heap-total default")
    return Tolerance(RSS_RELATIVE if metric is None or metric.lower_is_better else THROUGHPUT_DROP, 0.0,
                     "new metric: the loose default")


def worse_sign(name: str) -> int:
    """+1 when a rise of metric ``name`` is worse (memory, latency, errors), -1 when a drop is."""
    metric = METRICS.get(name)
    return 1 if metric is None or metric.lower_is_better else -1


# --- the baseline --------------------------------------------------------------------------------
@dataclass(frozen=True)
class BaselineFigure:
    value: float
    probe: str


@dataclass
class Baseline:
    """A baseline file read back: ``figures[layout][metric]``, ``tolerances[metric]``, the matrix
    ``parameters`` (with ``layouts`` and ``probes``) and the ``environment`` it was made in."""

    figures: dict[str, dict[str, BaselineFigure]]
    tolerances: dict[str, Tolerance]
    parameters: dict[str, Any]
    environment: dict[str, Any]
    created_utc: str
    runs: list[str]
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": BASELINE_SCHEMA,
            "created_utc": self.created_utc,
            "note": "Written by `memdiet baseline`; compared by `memdiet regress`. A figure fails when it moves "
                    "in its worse direction by more than max(relative x baseline, absolute).",
            "parameters": self.parameters,
            "environment": self.environment,
            "runs": self.runs,
            "tolerances": {name: tolerance.to_json() for name, tolerance in self.tolerances.items()},
            "layouts": {layout: {name: {"value": figure.value, "probe": figure.probe} for name, figure in figures.items()}
                        for layout, figures in self.figures.items()},
        }


def matrix_parameters(runs: Sequence[RunResult]) -> dict[str, Any]:
    """The parameters shared by ``runs`` (those of :data:`COMPARED_PARAMETERS`), with the layouts
    and probes they cover; :class:`BaselineError` if the runs disagree on one."""
    parameters: dict[str, Any] = {}
    for name in COMPARED_PARAMETERS:
        values = {json.dumps(run.parameters.get(name)) for run in runs}
        if len(values) > 1:
            raise BaselineError(f"the runs were made with different {name} ({', '.join(sorted(values))}): "
                                "give the run folders of one matrix")
        parameters[name] = runs[0].parameters.get(name) if runs else None
    from ..dataset.selection import layout_order

    parameters["layouts"] = layout_order({run.layout for run in runs})
    parameters["probes"] = sorted({run.probe for run in runs})
    return parameters


def common_environment(runs: Sequence[RunResult]) -> dict[str, Any]:
    """The environment fields of :data:`ENVIRONMENT_FIELDS` the runs recorded: one value each, or
    ``"mixed"`` where runs differ."""
    environment: dict[str, Any] = {}
    for name in ENVIRONMENT_FIELDS:
        values = {json.dumps(run.document.get("environment", {}).get(name)): run.document.get("environment", {}).get(name)
                  for run in runs}
        environment[name] = next(iter(values.values())) if len(values) == 1 else "mixed"
    return environment


def make_baseline(runs: Sequence[RunResult]) -> Baseline:
    """A baseline from the complete ``runs`` of one matrix; :class:`BaselineError` if a run is not
    complete (a baseline must not lack a layout by accident) or the runs mix parameters."""
    from ..dataset.selection import merged_metrics

    if not runs:
        raise BaselineError("no runs to make a baseline from")
    unfinished = [run.path.name for run in runs if run.status != "complete"]
    if unfinished:
        raise BaselineError(f"refusing to make a baseline from runs that did not complete: {', '.join(unfinished)}")
    parameters = matrix_parameters(runs)
    merged = merged_metrics(runs)
    figures = {layout: {name: BaselineFigure(figure.value, figure.probe) for name, figure in _in_metric_order(by_name)}
               for layout, by_name in merged.items()}
    names = {name for by_name in figures.values() for name in by_name}
    tolerances = tolerance_policy(_metric_order(names), int(parameters.get("connections") or 0))
    return Baseline(figures, tolerances, parameters, common_environment(runs),
                    datetime.now(timezone.utc).isoformat(timespec="seconds"), sorted(run.path.name for run in runs))


def _metric_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    return [n for n in METRICS if n in names] + sorted(names - set(METRICS))


def _in_metric_order(by_name: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(name, by_name[name]) for name in _metric_order(by_name)]


def load_baseline(path: Path) -> Baseline:
    """Read and check the baseline file at ``path``; :class:`BaselineError` (one line) if it is
    missing or malformed."""
    data = read_json_file(path, BaselineError,
                          missing=f"{path}: no such baseline file (make one with `memdiet baseline --quick`)")
    if not isinstance(data, dict):
        raise BaselineError(f"{path}: not a baseline (a JSON object is expected)")
    if data.get("schema") != BASELINE_SCHEMA:
        raise BaselineError(f"{path}: schema {data.get('schema')!r} is not {BASELINE_SCHEMA!r}")
    for key, kind in (("layouts", dict), ("tolerances", dict), ("parameters", dict)):
        if not isinstance(data.get(key), kind):
            raise BaselineError(f"{path}: field {key!r} is missing or not an object")
    tolerances = {name: Tolerance.from_json(value, f"{path}: tolerances.{name}") for name, value in data["tolerances"].items()}
    figures: dict[str, dict[str, BaselineFigure]] = {}
    for layout, by_name in data["layouts"].items():
        if not isinstance(by_name, dict):
            raise BaselineError(f"{path}: layouts.{layout} should be an object of metrics")
        figures[layout] = {}
        for name, entry in by_name.items():
            where = f"{path}: layouts.{layout}.{name}"
            value = entry.get("value") if isinstance(entry, dict) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BaselineError(f"{where} should be an object with a numeric value, found {entry!r}")
            if name not in tolerances:
                raise BaselineError(f"{where} has no tolerance under 'tolerances'")
            figures[layout][name] = BaselineFigure(float(value), str(entry.get("probe", "?")))
    if not any(figures.values()):
        raise BaselineError(f"{path}: the baseline holds no figures")
    environment = data.get("environment") if isinstance(data.get("environment"), dict) else {}
    runs = data.get("runs") if isinstance(data.get("runs"), list) else []
    return Baseline(figures, tolerances, data["parameters"], environment, str(data.get("created_utc", "?")), runs, Path(path))


def interpreter_minor(environment: dict[str, Any]) -> str | None:
    """``"CPython 3.11"`` from an environment record (``python`` 3.11.7, ``python_implementation``
    CPython); None when it records no version."""
    version = environment.get("python")
    if not isinstance(version, str) or version.count(".") < 1:
        return None
    major, minor = version.split(".")[:2]
    return f"{environment.get('python_implementation') or 'CPython'} {major}.{minor}"


def current_interpreter() -> dict[str, str]:
    """The environment fields of :func:`interpreter_minor` for the Python running this code."""
    import platform

    return {"python": platform.python_version(), "python_implementation": platform.python_implementation()}


def check_same_interpreter(baseline: Baseline, environments: Iterable[dict[str, Any]], what: str) -> None:
    """:class:`BaselineError` when ``environments`` (of the runs, or of this process) name another
    interpreter minor than the baseline's: object and dict sizes change between CPython minors, so
    the deterministic heap figures (compared at 1%) and C sizes would fail or pass for no reason of
    the code's. A patch release (3.11.7 -> 3.11.9) compares."""
    made = interpreter_minor(baseline.environment)
    now = sorted({minor for environment in environments if (minor := interpreter_minor(environment))})
    if made is None or not now or now == [made]:
        return
    raise BaselineError(f"the baseline was made on {made} but {what} on {', '.join(now)}: heap figures differ between "
                        f"interpreter versions, so they are not compared; make a baseline on this interpreter "
                        f"(`memdiet baseline --quick -o FILE`, or `make baseline` to replace the committed one)")


def check_comparable(baseline: Baseline, runs: Sequence[RunResult]) -> None:
    """:class:`BaselineError` unless ``runs`` were made with the baseline's matrix parameters, on
    the baseline's interpreter minor."""
    if not runs:
        raise BaselineError("no runs to compare with the baseline")
    check_same_interpreter(baseline, (run.document.get("environment") or {} for run in runs), "the runs")
    now = matrix_parameters(runs)
    for name in COMPARED_PARAMETERS:
        if name in baseline.parameters and now.get(name) != baseline.parameters[name]:
            raise BaselineError(f"the runs were made with {name} = {now.get(name)!r} but the baseline with "
                                f"{baseline.parameters[name]!r}: not comparable (run `memdiet regress` without "
                                "run folders to repeat the baseline's matrix, or make a new baseline)")


# --- the comparison --------------------------------------------------------------------------------
OK, IMPROVED, NEW = "ok", "improved", "new"
REGRESSED, MISSING, PROBE_CHANGED = "REGRESSED", "MISSING", "PROBE CHANGED"
#: Verdicts that fail the check.
FAILING = (REGRESSED, MISSING, PROBE_CHANGED)


@dataclass(frozen=True)
class Row:
    """One figure compared: ``baseline`` and ``now`` in the metric's unit (None where absent),
    ``allowed`` the tolerance in that unit, ``worse`` +1 if a rise is worse, -1 if a drop is."""

    layout: str
    metric: str
    baseline: float | None
    now: float | None
    tolerance: Tolerance | None
    allowed: float | None
    worse: int
    verdict: str
    probe: str | None
    note: str = ""

    @property
    def change(self) -> float | None:
        """now - baseline, in the metric's unit."""
        return None if self.baseline is None or self.now is None else self.now - self.baseline

    @property
    def relative_change(self) -> float | None:
        """(now - baseline) / |baseline|, None when the baseline is 0 or a figure is absent."""
        change = self.change
        return None if change is None or not self.baseline else change / abs(self.baseline)

    @property
    def severity(self) -> float:
        """How far past its tolerance a failing figure is (for naming the worst): the worse-direction
        change over the allowed change, infinite for exact tolerances, missing figures first."""
        if self.verdict in (MISSING, PROBE_CHANGED):
            return math.inf
        change = (self.change or 0.0) * self.worse
        return math.inf if not self.allowed else change / self.allowed

    def to_json(self) -> dict[str, Any]:
        metric = METRICS.get(self.metric)
        return {
            "layout": self.layout, "metric": self.metric, "unit": metric.unit if metric else None,
            "baseline": self.baseline, "now": self.now, "change": self.change, "relative_change": self.relative_change,
            "allowed_change": self.allowed, "worse_when": "higher" if self.worse > 0 else "lower",
            "tolerance": self.tolerance.to_json() if self.tolerance else None,
            "verdict": self.verdict, "probe": self.probe, "note": self.note or None,
        }


def judge(baseline: float, now: float, tolerance: Tolerance, worse: int) -> str:
    """``REGRESSED`` if ``now`` moved past the tolerance in the ``worse`` direction, ``IMPROVED`` if
    as far the other way, else ``OK``."""
    allowed = tolerance.allowed(baseline)
    worse_by = (now - baseline) * worse
    if worse_by > allowed:
        return REGRESSED
    if -worse_by > allowed:
        return IMPROVED
    return OK


@dataclass
class Comparison:
    """Every figure of the baseline and of the runs, compared; ``rows`` in study then metric order."""

    rows: list[Row]
    baseline: Baseline
    runs: list[RunResult]
    run_failures: list[str]

    @property
    def failures(self) -> list[Row]:
        return [row for row in self.rows if row.verdict in FAILING]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def worst(self) -> Row | None:
        """The failing row furthest past its tolerance (ties: the larger relative change)."""
        failures = self.failures
        if not failures:
            return None
        return max(failures, key=lambda row: (row.severity, abs(row.relative_change or 0.0)))

    def count(self, verdict: str) -> int:
        return sum(row.verdict == verdict for row in self.rows)


def compare(baseline: Baseline, runs: Sequence[RunResult], run_failures: Sequence[str] = ()) -> Comparison:
    """Compare the complete ``runs`` (merged per layout) with ``baseline``."""
    from ..dataset.selection import layout_order, merged_metrics

    merged = merged_metrics(runs)
    rows = []
    for layout in layout_order(set(baseline.figures) | set(merged)):
        before = baseline.figures.get(layout, {})
        after = merged.get(layout, {})
        for name in _metric_order(set(before) | set(after)):
            base, figure = before.get(name), after.get(name)
            worse = worse_sign(name)
            if base is None:
                rows.append(Row(layout, name, None, figure.value, None, None, worse, NEW, figure.probe,
                                "not in the baseline"))
                continue
            tolerance = baseline.tolerances[name]
            allowed = tolerance.allowed(base.value)
            if figure is None:
                rows.append(Row(layout, name, base.value, None, tolerance, allowed, worse, MISSING, None,
                                "in the baseline but not in these runs"))
            elif figure.probe != base.probe:
                rows.append(Row(layout, name, base.value, figure.value, tolerance, allowed, worse, PROBE_CHANGED,
                                figure.probe, f"baseline from the {base.probe} probe, now from {figure.probe}"))
            else:
                rows.append(Row(layout, name, base.value, figure.value, tolerance, allowed, worse,
                                judge(base.value, figure.value, tolerance, worse), figure.probe))
    return Comparison(rows, baseline, list(runs), list(run_failures))


# --- output --------------------------------------------------------------------------------------
def summary_line(comparison: Comparison) -> str:
    """One line: the verdict, and on failure the worst figure (layout, metric, change vs tolerance)."""
    from ..render.regression_md import change_text, tolerance_text

    compared = sum(row.verdict != NEW for row in comparison.rows)
    extras = [f"{n} {verdict}" for verdict in (IMPROVED, NEW) if (n := comparison.count(verdict))]
    extra = f" ({', '.join(extras)})" if extras else ""
    worst = comparison.worst
    if worst is None:
        return f"memdiet regress: PASS: all {compared} figures within tolerance{extra}"
    if worst.verdict == REGRESSED:
        what = f"{change_text(worst)} vs tolerance {tolerance_text(worst)}"
    else:
        what = f"{worst.verdict.lower()}: {worst.note}"
    return (f"memdiet regress: FAIL: {len(comparison.failures)} of {compared} figures failed; worst: "
            f"{worst.layout} {worst.metric} {what}")


def regression_document(comparison: Comparison, baseline_path: Path, exit_code: int) -> dict[str, Any]:
    """What ``regression.json`` holds: the verdict, where the baseline and the runs came from, every row."""
    baseline = comparison.baseline
    worst = comparison.worst
    return {
        "schema": REGRESSION_SCHEMA,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "passed": comparison.passed,
        "exit_code": exit_code,
        "summary": summary_line(comparison),
        "worst": worst.to_json() if worst else None,
        "counts": {verdict: comparison.count(verdict) for verdict in (OK, IMPROVED, NEW, *FAILING)},
        "baseline": {"path": str(baseline_path), "created_utc": baseline.created_utc,
                     "parameters": baseline.parameters, "environment": baseline.environment},
        "runs": [str(run.path) for run in comparison.runs],
        "run_failures": comparison.run_failures,
        "environment": common_environment(comparison.runs) if comparison.runs else {},
        "rows": [row.to_json() for row in comparison.rows],
    }


def write_outputs(comparison: Comparison, baseline_path: Path, out_dir: Path, exit_code: int) -> Path:
    """Write ``regression.md`` (with the comparison chart) and ``regression.json`` to ``out_dir``,
    each atomically; return the markdown's path."""
    from ..render.regression_md import build_regression_report

    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_regression_report(comparison, out_dir, baseline_path=baseline_path)
    write_json(out_dir / REGRESSION_JSON, regression_document(comparison, baseline_path, exit_code))
    return report


# --- running the matrix --------------------------------------------------------------------------
def run_plan(plan: Any, latest_dir: Path) -> tuple[list[RunResult], list[str]]:
    """Run the matrix ``plan`` with a progress line on stderr; (its runs, its failures)."""
    from rich.console import Console

    from ..cli import install_interrupt_handlers
    from ..measure.matrix import run_matrix

    console = Console(stderr=True)
    install_interrupt_handlers()
    total = len(plan.configs())
    with console.status("matrix: starting") as status:
        label = {"text": ""}

        def on_run_start(index: int, _total: int, config: Any) -> None:
            label["text"] = f"matrix run {index + 1}/{total}: {config.layout}/{config.probe}"
            status.update(label["text"])

        def on_phase(phase: str) -> None:
            status.update(f"{label['text']}: {phase}")

        outcome = run_matrix(plan, latest_dir=latest_dir, on_run_start=on_run_start, on_phase=on_phase)
    for failure in outcome.failures:
        console.print(f"matrix: run failed: {failure}", markup=False, highlight=False)
    return outcome.runs, outcome.failures


def plan_from_baseline(baseline: Baseline, runs_dir: Path) -> Any:
    """The matrix the baseline was made from (its parameters, layouts and probes)."""
    from ..measure.matrix import QUICK, MatrixPlan

    known = {name: baseline.parameters[name] for name in COMPARED_PARAMETERS if baseline.parameters.get(name) is not None}
    try:
        base = replace(QUICK, runs_dir=runs_dir, **known)
    except TypeError as error:
        raise BaselineError(f"{baseline.path}: parameters cannot make a matrix ({error})") from None
    layouts = baseline.parameters.get("layouts") or list(baseline.figures)
    probes = baseline.parameters.get("probes") or ["rss", "tracemalloc"]
    return MatrixPlan(base=base, layouts=layouts, probes=probes)


def _quick_plan(runs_dir: Path) -> Any:
    from ..measure.matrix import default_plan

    plan = default_plan(quick=True)
    plan.base = replace(plan.base, runs_dir=runs_dir)
    return plan


def _error(command: str, message: str) -> int:
    print(f"memdiet {command}: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


# --- the commands --------------------------------------------------------------------------------
def cmd_regress(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.quick and args.runs:
        parser.error("give --quick (run the quick matrix) or run folders, not both")
    try:
        baseline = load_baseline(args.baseline)
        if args.runs:
            runs, failures = [load_run(path) for path in args.runs], []
        else:
            # Before the matrix runs: its runs would be made on this interpreter.
            check_same_interpreter(baseline, [current_interpreter()], "this run is")
            plan = _quick_plan(args.runs_dir) if args.quick else plan_from_baseline(baseline, args.runs_dir)
            runs, failures = run_plan(plan, args.latest_dir)
        check_comparable(baseline, [run for run in runs if run.status == "complete"] or runs)
    except BaselineError as error:
        return _error("regress", str(error))
    comparison = compare(baseline, [run for run in runs if run.status == "complete"], failures)
    exit_code = EXIT_OK if comparison.passed else EXIT_REGRESSION
    report = write_outputs(comparison, args.baseline, args.output_dir, exit_code)
    from ..render.regression_md import text_table

    print(text_table(comparison))
    print()
    print(f"report: {report} (and {report.with_name(REGRESSION_JSON)})")
    print(summary_line(comparison))
    return exit_code


def cmd_baseline(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..cli import config_from
    from ..measure.matrix import FULL, QUICK, default_plan

    overrides = ("max_conns", "connections", "idle", "load", "sample_hz")
    if args.runs and any(getattr(args, name) is not None for name in overrides):
        parser.error("run options (--max-conns, --connections, --idle, --load, --sample-hz) apply to a new matrix, "
                     "not to given run folders")
    try:
        if args.runs:
            runs = [load_run(path) for path in args.runs]
        else:
            plan = default_plan(args.quick)
            try:
                plan.base = config_from(args, QUICK if args.quick else FULL)
            except argparse.ArgumentTypeError as error:
                parser.error(str(error))
            runs, failures = run_plan(plan, args.latest_dir)
            if failures:
                raise BaselineError(f"{len(failures)} run(s) of the matrix failed; no baseline written")
        baseline = make_baseline(runs)
    except BaselineError as error:
        return _error("baseline", str(error))
    write_json(args.output, baseline.to_json())
    figures = sum(len(by_name) for by_name in baseline.figures.values())
    env = baseline.environment
    print(f"baseline: {args.output}: {figures} figures of {len(baseline.figures)} layouts, max_conns "
          f"{baseline.parameters.get('max_conns')}, C = {baseline.parameters.get('connections')}, made on "
          f"{env.get('cpu_model')} ({env.get('cpu_count')} cores), Python {env.get('python')}, commit "
          f"{str(env.get('commit'))[:10]}{' (with uncommitted changes)' if env.get('dirty') is True else ''}")
    return EXIT_OK


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``regress`` and ``baseline`` to memdiet's subcommands."""
    from ..cli import add_run_options
    from ..measure.matrix import FULL
    from ..measure.runner import DEFAULT_RUNS_DIR

    regress = commands.add_parser("regress", help="compare a matrix with reports/baseline.json; exit 1 on a regression")
    regress.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR",
                         help="run folders to compare (default: run the matrix again)")
    regress.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help=f"default: {DEFAULT_BASELINE}")
    regress.add_argument("--quick", action="store_true",
                         help="run the quick matrix (default without RUN_DIR: the matrix the baseline records)")
    regress.add_argument("-o", "--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR,
                         help="where regression.md and regression.json go (default: reports)")
    regress.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="where new run folders go")
    regress.add_argument("--latest-dir", type=Path, default=Path("reports/regress-latest"), help="where the new matrix's report goes (kept apart from reports/latest)")
    regress.set_defaults(func=cmd_regress)

    baseline = commands.add_parser("baseline", help="write a new regression baseline from a matrix or run folders")
    baseline.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR",
                          help="run folders of one matrix (default: run a new matrix)")
    baseline.add_argument("--quick", action="store_true", help="run the quick matrix")
    baseline.add_argument("-o", "--output", type=Path, default=DEFAULT_BASELINE, help=f"default: {DEFAULT_BASELINE}")
    baseline.add_argument("--latest-dir", type=Path, default=Path("reports/regress-latest"), help="where the new matrix's report goes (kept apart from reports/latest)")
    add_run_options(baseline, FULL)
    baseline.set_defaults(func=cmd_baseline)
