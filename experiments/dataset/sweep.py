"""``sweep.json``: the scaling-law sweep as a file, and the arithmetic that turns its runs into laws.

``memdiet sweep`` (:mod:`experiments.measure.sweep`) makes the runs and measures the allocator; this
module holds what is made of them, so the renderers and the notebooks read one file and never
measure. Rules: data only (no process, no clock); a figure is computed here once and stored, and
readers take it from the file.

The model, per layout, fitted by ordinary least squares (:mod:`.fit`) with 95% intervals:

- **idle**: ``RSS = a + b·slots + c·held``. Each rss run gives two points: ``idle-empty`` at
  (max_conns, 0) and ``idle-held`` at (max_conns, C), each the phase's median RSS as the run's
  summary has it. ``b`` is RSS per slot, ``c`` RSS per held connection, ``a`` what neither explains
  (the interpreter, the server's modules).
- **load**: the same plus ``d·active``, with the load phase's median RSS as a third point per run
  at (max_conns, C, active C): ``d`` is what a connection adds while its requests are in flight,
  beyond what it costs held. (The load-phase median is the run's ``idle_rss_bytes +
  rss_bytes_per_active_connection × C``, from its summary.)

Beside ``b``: the **two-size slope**, the mean idle-empty RSS at the largest max_conns minus that at
the smallest over the difference in slots (the issue's "RSS bytes per slot from two table sizes");
**bytes_per_slot**, tracemalloc's table heap over max_conns from the sweep's tracemalloc runs, and the
heap's own slope between the same two sizes; and the **allocator's share** that explains the gap
(:class:`AllocatorDelta`, measured at both sizes in a child interpreter). Per slot, between the two
sizes, RSS = requested (tracemalloc) + size-class rounding (pymalloc's blocks over the requests of
512 B or less) + pool slack (free blocks, pool headers and tails in the pools in use) + the rest
(requests above 512 B go to the system malloc: its chunk headers, and page rounding).

Caveat, stated in the report too: a run's two (three) points share that process's own offset, so
they are not independent as OLS assumes; the intervals are those of OLS.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

from .fit import Fit, FitError, ols
from .results import IDLE_EMPTY, IDLE_HELD, LOAD, ResultError, read_json_file

SWEEP_SCHEMA = "memdiet.sweep/1"
SWEEP_FILE = "sweep.json"
#: The folder a sweep writes into, inside the report folder (``reports/latest/sweep``).
SWEEP_DIR = "sweep"
INDEX_FILE = "index.md"
CHART_STEM = "sweep"

IDLE_TERMS = ("intercept", "slots", "held")
LOAD_TERMS = ("intercept", "slots", "held", "active")
#: The issue's question: each layout at a million slots and a hundred thousand held connections.
TARGET_SLOTS = 1_000_000
TARGET_HELD = 100_000
#: How close the fitted b must come to the two-size slope (the issue's "done when").
AGREEMENT = 0.05
#: The hook for the kernel's share: the summary metric, per held connection, that a run's result.json
#: will carry once the kernel's socket memory is measured (issue 13, another part). Until then no run
#: has it, and every prediction is of user-space RSS only.
KERNEL_METRIC = "kernel_bytes_per_held_connection"
#: The largest request pymalloc serves from its pools; larger ones go to the system malloc.
SMALL_REQUEST_MAX_BYTES = 512


class SweepError(ResultError):
    """A sweep.json that cannot be read; the message names the file and the fault."""


# --- what was measured ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RssRun:
    """One rss-probe run of the grid: its folder (``run``, relative to the sweep's folder), its
    parameters, the median RSS of its idle-empty, idle-held and load phases (bytes), and the figures
    per held connection its summary has (``kernel_bytes_per_held_connection``: None until measured)."""

    layout: str
    run: str
    max_conns: int
    connections: int
    idle_rss_bytes: float
    held_rss_bytes: float
    load_rss_bytes: float | None
    rss_bytes_per_held_connection: float | None
    c_bytes_per_slot: int | None
    kernel_bytes_per_held_connection: float | None = None


@dataclass(frozen=True)
class HeapRun:
    """One tracemalloc run: the table's heap as the server's table.json reports it, and its heap
    per held connection (from the phase-end dumps)."""

    layout: str
    run: str
    max_conns: int
    connections: int
    table_heap_bytes: int
    heap_bytes_per_held_connection: float | None

    @property
    def bytes_per_slot(self) -> float:
        return self.table_heap_bytes / self.max_conns


@dataclass(frozen=True)
class AllocatorDelta:
    """What building a table of ``slots`` slots added in a fresh interpreter (bytes): ``rss_bytes``
    (VmRSS), pymalloc's ``block_bytes`` (blocks handed out, rounded up to their size class),
    ``pool_bytes`` (pools in use: blocks, free blocks, headers, tails) and ``arena_bytes`` (arenas
    mapped, touched or not), and what was asked for: ``requested_small_bytes`` (requests of 512 B or
    less, which pymalloc serves) and ``requested_large_bytes`` (the rest, the system malloc's)."""

    layout: str
    slots: int
    rss_bytes: int
    requested_small_bytes: int
    requested_large_bytes: int
    block_bytes: int
    pool_bytes: int
    arena_bytes: int


@dataclass(frozen=True)
class Point:
    """One observation of the fits: RSS (bytes) in one phase of one run, at (slots, held, active)."""

    layout: str
    run: str
    phase: str
    slots: int
    held: int
    active: int
    rss_bytes: float


def points_of(runs: Sequence[RssRun]) -> list[Point]:
    """The points of the fits: per run, idle-empty at (max_conns, 0, 0), idle-held at (max_conns, C,
    0) and, where the run has it, load at (max_conns, C, C)."""
    points = []
    for run in runs:
        points.append(Point(run.layout, run.run, IDLE_EMPTY, run.max_conns, 0, 0, run.idle_rss_bytes))
        points.append(Point(run.layout, run.run, IDLE_HELD, run.max_conns, run.connections, 0, run.held_rss_bytes))
        if run.load_rss_bytes is not None:
            points.append(Point(run.layout, run.run, LOAD, run.max_conns, run.connections, run.connections,
                                run.load_rss_bytes))
    return points


# --- the analysis ----------------------------------------------------------------------------------
def fit_record(fit: Fit) -> dict[str, Any]:
    """A fit as sweep.json stores it: every coefficient with its standard error and 95% interval,
    the covariance (for intervals at other points), n, degrees of freedom, residual SD, r²."""
    intervals = [fit.coefficient(term) for term in fit.terms]
    return {
        "terms": list(fit.terms),
        "coefficients": list(fit.coefficients),
        "standard_errors": list(fit.standard_errors),
        "ci95": [[interval.low, interval.high] for interval in intervals],
        "t975": fit.t_value(),
        "covariance": [list(row) for row in fit.covariance],
        "n": fit.n,
        "dof": fit.dof,
        "residual_sd": fit.residual_sd,
        "r2": fit.r2,
    }


def fit_from_record(record: dict[str, Any]) -> Fit:
    """The :class:`~.fit.Fit` a sweep.json fit record holds (to compute intervals elsewhere)."""
    return Fit(tuple(record["terms"]), tuple(record["coefficients"]), tuple(record["standard_errors"]),
               tuple(tuple(row) for row in record["covariance"]), int(record["n"]), int(record["dof"]),
               float(record["residual_sd"]), float(record["r2"]))


def _fit(points: Sequence[Point], terms: Sequence[str]) -> tuple[Fit | None, str | None]:
    columns = {"intercept": lambda p: 1.0, "slots": lambda p: float(p.slots), "held": lambda p: float(p.held),
               "active": lambda p: float(p.active)}
    try:
        return ols([[columns[t](p) for t in terms] for p in points], [p.rss_bytes for p in points], terms), None
    except FitError as error:
        return None, str(error)


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _two_size(runs: Sequence[RssRun]) -> dict[str, Any] | None:
    """The idle-empty RSS slope between the smallest and the largest max_conns (mean over the runs
    at each size), or None with fewer than two sizes."""
    sizes = sorted({run.max_conns for run in runs})
    if len(sizes) < 2:
        return None
    small, large = sizes[0], sizes[-1]
    at_small = [run.idle_rss_bytes for run in runs if run.max_conns == small]
    at_large = [run.idle_rss_bytes for run in runs if run.max_conns == large]
    small_rss, large_rss = _mean(at_small), _mean(at_large)
    return {"small_slots": small, "large_slots": large, "small_idle_rss_bytes": small_rss,
            "large_idle_rss_bytes": large_rss, "runs_small": len(at_small), "runs_large": len(at_large),
            "small_spread_bytes": max(at_small) - min(at_small), "large_spread_bytes": max(at_large) - min(at_large),
            "rss_bytes_per_slot": (large_rss - small_rss) / (large - small)}


def _heap(heap_runs: Sequence[HeapRun], runs: Sequence[RssRun]) -> dict[str, Any]:
    """tracemalloc's figures: bytes_per_slot at each size (the largest is the headline), the heap's
    slope between the smallest and largest, heap per held connection; c_bytes_per_slot from any run
    (every run's table.json has it)."""
    by_size: dict[int, list[float]] = {}
    for run in heap_runs:
        by_size.setdefault(run.max_conns, []).append(run.table_heap_bytes)
    sizes = sorted(by_size)
    heap = {"bytes_per_slot_by_size": {str(size): _mean(by_size[size]) / size for size in sizes},
            "bytes_per_slot": _mean(by_size[sizes[-1]]) / sizes[-1] if sizes else None,
            "bytes_per_slot_at": sizes[-1] if sizes else None,
            "heap_slope_bytes_per_slot": None,
            "heap_bytes_per_held_connection": _mean([r.heap_bytes_per_held_connection for r in heap_runs
                                                     if r.heap_bytes_per_held_connection is not None]),
            "c_bytes_per_slot": next((r.c_bytes_per_slot for r in runs if r.c_bytes_per_slot is not None), None)}
    if len(sizes) >= 2:
        heap["heap_slope_bytes_per_slot"] = ((_mean(by_size[sizes[-1]]) - _mean(by_size[sizes[0]]))
                                             / (sizes[-1] - sizes[0]))
    return heap


def _allocator(deltas: Sequence[AllocatorDelta]) -> dict[str, Any] | None:
    """Per slot between the smallest and largest table the child built: RSS split into requested,
    size-class rounding, pool slack and the rest (see the module's docstring); None without two sizes."""
    if len({d.slots for d in deltas}) < 2:
        return None
    small = min(deltas, key=lambda d: d.slots)
    large = max(deltas, key=lambda d: d.slots)
    span = large.slots - small.slots

    def per_slot(name: str) -> float:
        return (getattr(large, name) - getattr(small, name)) / span

    rss, req_small, req_large = per_slot("rss_bytes"), per_slot("requested_small_bytes"), per_slot("requested_large_bytes")
    blocks, pools, arenas = per_slot("block_bytes"), per_slot("pool_bytes"), per_slot("arena_bytes")
    return {"small_slots": small.slots, "large_slots": large.slots, "rss_bytes_per_slot": rss,
            "requested_bytes_per_slot": req_small + req_large, "requested_small_bytes_per_slot": req_small,
            "requested_large_bytes_per_slot": req_large, "block_bytes_per_slot": blocks,
            "pool_bytes_per_slot": pools, "arena_bytes_per_slot": arenas,
            "size_class_rounding_bytes_per_slot": blocks - req_small, "pool_slack_bytes_per_slot": pools - blocks,
            "malloc_and_pages_bytes_per_slot": rss - pools - req_large}


def _prediction(fit: Fit | None, row: Sequence[float], held: int, kernel_per_held: float | None) -> dict[str, Any] | None:
    if fit is None:
        return None
    predicted = fit.predict(row)
    kernel_bytes = kernel_per_held * held if kernel_per_held is not None else None
    return {"row": list(row), "rss_bytes": predicted.value,
            "mean95": [predicted.mean.low, predicted.mean.high],
            "prediction95": [predicted.new.low, predicted.new.high],
            "kernel_bytes_per_held_connection": kernel_per_held, "kernel_bytes": kernel_bytes,
            "total_bytes": predicted.value + kernel_bytes if kernel_bytes is not None else None}


def analyse_layout(runs: Sequence[RssRun], heap_runs: Sequence[HeapRun] = (),
                   allocator: Sequence[AllocatorDelta] = ()) -> dict[str, Any]:
    """Everything sweep.json says of one layout, from its runs (see the module's docstring)."""
    points = points_of(runs)
    idle_fit, idle_error = _fit([p for p in points if p.phase in (IDLE_EMPTY, IDLE_HELD)], IDLE_TERMS)
    load_points = [p for p in points if p.phase == LOAD]
    load_fit, load_error = (_fit(points, LOAD_TERMS) if load_points else (None, "no load-phase RSS in these runs"))
    two_size = _two_size(runs)
    b = idle_fit.coefficients[IDLE_TERMS.index("slots")] if idle_fit else None
    slope = two_size["rss_bytes_per_slot"] if two_size else None
    agreement = None
    if b is not None and slope:
        relative = (b - slope) / slope
        agreement = {"relative_difference": relative, "within": abs(relative) <= AGREEMENT, "tolerance": AGREEMENT}
    kernel = [run.kernel_bytes_per_held_connection for run in runs]
    kernel_per_held = _mean(kernel) if kernel and all(k is not None for k in kernel) else None
    held_rss = [run.rss_bytes_per_held_connection for run in runs if run.rss_bytes_per_held_connection is not None]
    return {
        "idle_fit": fit_record(idle_fit) if idle_fit else None,
        "idle_fit_error": idle_error,
        "load_fit": fit_record(load_fit) if load_fit else None,
        "load_fit_error": load_error,
        "two_size": two_size,
        "b_vs_two_size": agreement,
        "heap": _heap(heap_runs, runs),
        "rss_bytes_per_held_connection": _mean(held_rss),
        "allocator": _allocator(allocator),
        "predictions": {
            "idle": _prediction(idle_fit, (1.0, TARGET_SLOTS, TARGET_HELD), TARGET_HELD, kernel_per_held),
            "load": _prediction(load_fit, (1.0, TARGET_SLOTS, TARGET_HELD, TARGET_HELD), TARGET_HELD, kernel_per_held),
        },
    }


def build_document(*, status: str, error: str | None, created_utc: str, plan: dict[str, Any],
                   nofile: dict[str, Any], environment: dict[str, Any], layouts: Sequence[str],
                   runs: Sequence[RssRun], heap_runs: Sequence[HeapRun],
                   allocator: Sequence[AllocatorDelta], notes: Sequence[str] = ()) -> dict[str, Any]:
    """The whole sweep.json document: what was asked (``plan``, ``nofile``: the RLIMIT_NOFILE the
    grid stays within), what was measured, the points and, per layout with runs, its analysis;
    ``notes``: what could not be measured, one line each."""
    analysed = {}
    for layout in layouts:
        mine = [run for run in runs if run.layout == layout]
        if mine:
            analysed[layout] = analyse_layout(mine, [r for r in heap_runs if r.layout == layout],
                                              [d for d in allocator if d.layout == layout])
    kernel_found = any(run.kernel_bytes_per_held_connection is not None for run in runs)
    return {
        "schema": SWEEP_SCHEMA,
        "status": status,
        "error": error,
        "created_utc": created_utc,
        "plan": plan,
        "nofile": nofile,
        "environment": environment,
        "target": {"slots": TARGET_SLOTS, "held": TARGET_HELD, "active": TARGET_HELD},
        "kernel": {"metric": KERNEL_METRIC, "measured": kernel_found,
                   "note": ("kernel socket memory per held connection from the runs' summaries, added to the predictions"
                            if kernel_found else
                            f"no run's result.json has {KERNEL_METRIC}: the predictions are of user-space RSS only "
                            "(the kernel's socket buffers are not in RSS)")},
        "runs": [asdict(run) for run in runs],
        "heap_runs": [asdict(run) | {"bytes_per_slot": run.bytes_per_slot} for run in heap_runs],
        "allocator": [asdict(delta) for delta in allocator],
        "points": [asdict(point) for point in points_of(runs)],
        "layouts": analysed,
        "notes": list(notes),
    }


# --- reading it back --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sweep:
    """A sweep.json read back: ``document`` as stored, ``path`` the file."""

    path: Path
    document: dict[str, Any]

    @property
    def status(self) -> str:
        return self.document["status"]

    @property
    def layouts(self) -> list[str]:
        """The layouts with an analysis, in the plan's order."""
        return [name for name in self.document["plan"].get("layouts", []) if name in self.document["layouts"]]

    def analysis(self, layout: str) -> dict[str, Any]:
        return self.document["layouts"][layout]

    def points(self, layout: str) -> list[Point]:
        return [Point(**p) for p in self.document["points"] if p["layout"] == layout]

    def runs(self, layout: str) -> list[RssRun]:
        known = {f.name for f in fields(RssRun)}
        return [RssRun(**{k: v for k, v in r.items() if k in known}) for r in self.document["runs"] if r["layout"] == layout]

    def fit(self, layout: str, model: str = "idle") -> Fit | None:
        """The ``idle`` or ``load`` fit of ``layout``, or None when it could not be made."""
        record = self.analysis(layout).get(f"{model}_fit")
        return fit_from_record(record) if record else None


_REQUIRED = {"schema": str, "status": str, "plan": dict, "nofile": dict, "runs": list, "points": list,
             "layouts": dict, "target": dict, "kernel": dict}


def read_sweep(path: str | Path) -> Sweep:
    """Read and check ``path`` (a sweep.json, or the folder holding one); :class:`SweepError` (one
    line) when it is absent or malformed."""
    path = Path(path)
    if path.is_dir():
        path = path / SWEEP_FILE
    document = read_json_file(path, SweepError, missing=f"{path}: no such sweep file (run `memdiet sweep`)")
    if not isinstance(document, dict):
        raise SweepError(f"{path}: not a JSON object")
    for key, kind in _REQUIRED.items():
        if not isinstance(document.get(key), kind):
            raise SweepError(f"{path}: field {key!r} missing or not a {kind.__name__}")
    if document["schema"] != SWEEP_SCHEMA:
        raise SweepError(f"{path}: schema {document['schema']!r} is not {SWEEP_SCHEMA!r}")
    for point in document["points"]:
        if not (isinstance(point, dict) and {f.name for f in fields(Point)} <= point.keys()):
            raise SweepError(f"{path}: malformed point {point!r}")
    return Sweep(path, document)


__all__ = ["SWEEP_SCHEMA", "SWEEP_FILE", "SWEEP_DIR", "INDEX_FILE", "CHART_STEM", "IDLE_TERMS", "LOAD_TERMS",
           "TARGET_SLOTS", "TARGET_HELD", "AGREEMENT", "KERNEL_METRIC", "SMALL_REQUEST_MAX_BYTES", "SweepError",
           "RssRun", "HeapRun", "AllocatorDelta", "Point", "points_of", "fit_record", "fit_from_record",
           "analyse_layout", "build_document", "Sweep", "read_sweep"]
