"""The loading API of the notebooks: the latest results, one row of metrics per layout, a small sweep.

Notebooks read results only through this module and :mod:`experiments.dataset.results`, never by parsing
files themselves, so a change of file format is made in one place.

Where results live: ``$MEMDIET_REPORTS`` when set (the tests point it at a temporary matrix), else
the repository's ``reports/`` folder, whatever the notebook's working directory. A matrix writes
``matrix.json`` naming its run folders: the full one (``make experiment``) into ``<reports>/latest/``,
the quick one (``make experiment QUICK=1``, or :func:`ensure_results`) into ``<reports>/quick/``.
:func:`latest_runs` reads back the newest of them whose run folders are all present (run folders
are never committed, so on a fresh clone the committed report's matrix counts as no results), and
:func:`ensure_results` makes a quick matrix first when there is none. ``$MEMDIET_NOTEBOOK_QUICK=1``
shrinks the notebooks' own work (the sweep of notebook 02) for tests and CI.

Notebook 05 reads the scaling-law sweep (``sweep.json``, :func:`latest_sweep`), and makes one when there
is none (:func:`ensure_sweep`: a tiny one under ``$MEMDIET_NOTEBOOK_QUICK=1``).
"""

from __future__ import annotations

import os
import tracemalloc
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .dataset.metrics import METRICS
from .dataset.results import OTHER_SITE, PROBE_SITE, RunResult, load_run, write_json
from .dataset.selection import CURVE_PROBES, merged_metrics, pick_run
from .dataset.selection import latest_runs as runs_by_layout
from .dataset.fit import ols
from .dataset.sweep import SWEEP_DIR, SWEEP_FILE, Sweep, read_sweep
from .measure.matrix import MATRIX_FILE, MatrixPlan, MatrixRecord, default_plan, read_matrix, run_matrix
from .measure.probes import site_label
from .measure.scenario import DEFAULT_LATEST_DIR, QUICK_LATEST_DIR
from .measure.sweep import TINY_PLAN, SweepPlan, Sweeper, check_plan, plan_for
from .paths import REPO_ROOT, REPORTS_DIR
from .render.markdown import table

REPORTS_ENV = "MEMDIET_REPORTS"
QUICK_ENV = "MEMDIET_NOTEBOOK_QUICK"
#: The folders under the reports folder where a matrix leaves its matrix.json: the full study's, the
#: quick one's.
MATRIX_DIRS = (DEFAULT_LATEST_DIR.name, QUICK_LATEST_DIR.name)
BASELINE_FILE = "baseline.json"


class NoResults(Exception):
    """No matrix has been run where the notebooks look; the message says where and what to run,
    ``reason`` only what is missing."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(f"{reason}: {hint}" if hint else reason)
        self.reason = reason


# --- where results are ------------------------------------------------------------------------------
def reports_dir() -> Path:
    """The reports folder: ``$MEMDIET_REPORTS`` if set, else the repository's ``reports/``."""
    configured = os.environ.get(REPORTS_ENV)
    return Path(configured).resolve() if configured else REPO_ROOT / REPORTS_DIR


def quick_mode() -> bool:
    """True when ``$MEMDIET_NOTEBOOK_QUICK`` asks the notebooks to keep their own runs small."""
    return os.environ.get(QUICK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def latest_matrix(root: str | os.PathLike[str] | None = None) -> MatrixRecord:
    """The newest matrix under ``root`` (default :func:`reports_dir`) whose run folders are all
    there, of ``<root>/latest/matrix.json`` and ``<root>/quick/matrix.json``; raises
    :class:`NoResults` when neither qualifies (none made yet, or made on another machine: the
    committed report names run folders that are not committed)."""
    root = Path(root) if root is not None else reports_dir()
    usable, without_runs = [], []
    for name in MATRIX_DIRS:
        matrix_file = root / name / MATRIX_FILE
        if not matrix_file.is_file():
            continue
        record = read_matrix(matrix_file)
        missing = record.missing_runs()
        if missing:
            without_runs.append(f"{matrix_file} names {len(missing)} run folder(s) not here, e.g. {missing[0].name}")
        elif record.run_paths:
            usable.append(record)
    if not usable:
        why = "; ".join(without_runs) or "no matrix.json"
        raise NoResults(f"no results under {root} ({why})",
                        "run `make experiment QUICK=1` or call experiments.study.ensure_results()")
    # ISO 8601 UTC stamps of one format sort as text; a file without one counts as oldest.
    return max(usable, key=lambda record: record.created_utc)


def latest_runs(root: str | os.PathLike[str] | None = None) -> list[RunResult]:
    """Every run of :func:`latest_matrix` under ``root`` (default :func:`reports_dir`); raises
    :class:`NoResults` when there is no matrix with its run folders there."""
    return [load_run(path) for path in latest_matrix(root).run_paths]


def ensure_results(quick: bool = True, root: str | os.PathLike[str] | None = None,
                   progress: Callable[[str], None] | None = print, plan: MatrixPlan | None = None) -> list[RunResult]:
    """The latest matrix's runs (:func:`latest_runs`); when there is none yet, run a matrix first
    into ``<root>/runs``, with its report in ``<root>/quick`` (``<root>/latest`` for the full one,
    ``quick=False``). The quick one by default: every layout under the rss and tracemalloc probes,
    about 40 s on 2 cores; ``plan`` replaces it (its ``runs_dir`` is set to ``<root>/runs``)."""
    root = Path(root) if root is not None else reports_dir()
    try:
        return latest_runs(root)
    except NoResults as no_results:
        reason = no_results.reason
    plan = plan or default_plan(quick)
    plan = MatrixPlan(base=replace(plan.base, runs_dir=root / "runs"), layouts=plan.layouts, probes=plan.probes)
    latest_dir = root / (QUICK_LATEST_DIR.name if quick else DEFAULT_LATEST_DIR.name)
    if progress:
        progress(f"{reason}: running the {'quick ' if quick else ''}matrix ({len(plan.configs())} runs) "
                 f"into {latest_dir}")
    on_start = (lambda i, n, c: progress(f"  run {i + 1}/{n}: {c.subject}/{c.probe}")) if progress else None
    outcome = run_matrix(plan, latest_dir=latest_dir, on_run_start=on_start)
    if outcome.failures:
        raise RuntimeError("the matrix had failed runs: " + "; ".join(outcome.failures))
    return latest_runs(root)


# --- one row per layout -----------------------------------------------------------------------------
def metrics_frame(runs: Iterable[RunResult]) -> list[dict[str, Any]]:
    """One row per layout (study order) of the complete runs: ``{"layout": name, metric: value, ...,
    "probes": {metric: probe it was taken from}}``, each metric from the probe that measures it best
    (see :mod:`experiments.dataset.selection`); a metric no run has is absent from the row."""
    rows = []
    for layout, figures in merged_metrics(runs).items():
        row: dict[str, Any] = {"layout": layout}
        row.update({name: figures[name].value for name in METRICS if name in figures})
        row["probes"] = {name: figure.probe for name, figure in figures.items()}
        rows.append(row)
    return rows


def curve_run(runs: Iterable[RunResult], layout: str = "nofd") -> RunResult:
    """The run whose massif-style curve best shows ``layout``: its tracemalloc run if there is one
    (per-site series, cheapest tracer), else memray, else rss. Any layout if ``layout`` has no run."""
    by_layout = runs_by_layout(runs)
    if not by_layout:
        raise NoResults("no complete run to draw")
    by_probe = by_layout.get(layout) or next(iter(by_layout.values()))
    run = pick_run(by_probe, CURVE_PROBES)
    assert run is not None  # every layout in runs_by_layout has at least one run
    return run


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table as one string, for ``IPython.display.Markdown``: the reports' table
    (:func:`experiments.render.markdown.table`); ``align`` has one letter per column, ``l`` or ``r``
    (default: the first column left, the others right, as for figures)."""
    return "\n".join(table(header, rows, align))


# --- the full snapshot dumps of a tracemalloc run ---------------------------------------------------
def phase_snapshots(run: RunResult) -> list[tuple[str, tracemalloc.Snapshot]]:
    """(phase, full tracemalloc snapshot taken when it ended) for every phase of ``run`` that has a
    dump, in scenario order; empty for a run of another probe. Dumps are pickles, loaded with
    :func:`tracemalloc_viewer.load_snapshot`, which runs no code: a dump naming anything but
    tracemalloc's own classes raises :class:`tracemalloc_viewer.ViewerInputError` (one line)."""
    from tracemalloc_viewer import load_snapshot

    snapshots = []
    for name in run.document.get("files", {}).get("snapshots", []):
        path = run.path / name
        if path.is_file():
            # The tracemalloc probe names each dump <index>-<phase>.tmsnap.
            snapshots.append((path.stem.split("-", 1)[-1], load_snapshot(path)))
    return snapshots


#: Frames of the tracer itself (the server's sampler and tracemalloc): its allocations are the
#: probe's, not the server's, as in sites.csv.
_PROBE_FILTERS = (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "*/server/tracing.py"))


def snapshot_sites(snapshot: tracemalloc.Snapshot, top_n: int = 10) -> list[tuple[str, int, int]]:
    """The ``top_n`` biggest allocation sites of ``snapshot`` by line, as (``file:line (function)``,
    bytes, blocks), biggest first; then ``(other)`` with what the smaller sites hold and ``(probe)``
    with what the tracer allocated, each if not empty. Labels and groups are those of sites.csv, and
    the rows add up to the snapshot's total."""
    stats = snapshot.filter_traces(_PROBE_FILTERS).statistics("lineno")
    rows = [(site_label(s.traceback[0].filename, s.traceback[0].lineno), s.size, s.count) for s in stats[:top_n]]
    rest = stats[top_n:]
    if rest:
        rows.append((OTHER_SITE, sum(s.size for s in rest), sum(s.count for s in rest)))
    probe_bytes = sum(trace.size for trace in snapshot.traces) - sum(s.size for s in stats)
    probe_blocks = len(snapshot.traces) - sum(s.count for s in stats)
    if probe_blocks:
        rows.append((PROBE_SITE, probe_bytes, probe_blocks))
    return rows


@dataclass
class PeakSnapshot:
    """The full dump taken at the end of the phase in which the traced heap peaked.

    ``peak_time_s`` and ``peak_bytes``: the highest sample of the heap total (seconds since server
    start, bytes); ``phase``: the phase it fell in, or that had just ended; ``snapshot``: the dump
    made when that phase ended, whose total ``snapshot_bytes`` may differ from the peak (memory
    freed before the dump, or allocated by the dump itself).
    """

    phase: str
    peak_time_s: float
    peak_bytes: int
    snapshot: tracemalloc.Snapshot
    #: False when the peak fell outside the phase's marks (after its end, while its dump was taken).
    inside_phase: bool

    @property
    def snapshot_bytes(self) -> int:
        return sum(trace.size for trace in self.snapshot.traces)


def peak_snapshot(run: RunResult) -> PeakSnapshot:
    """The dump of ``run``'s peak phase (see :class:`PeakSnapshot`). Raises ``ValueError`` when the
    run has no heap series or no dump for that phase (only tracemalloc runs have both)."""
    if run.heap is None or not len(run.heap):
        raise ValueError(f"{run.path.name}: no heap series (probe {run.probe}); use a tracemalloc run")
    samples = [(t, v) for t, v in zip(run.heap["time_s"], run.heap["heap_bytes"]) if t is not None and v is not None]
    peak_time, peak_bytes = max(samples, key=lambda sample: sample[1])
    if not run.phases:
        raise ValueError(f"{run.path.name}: no phases recorded")
    # The phase under way at the peak; for a sample between two phases, the one that just ended (its
    # dump is being taken right then); for one before the first phase (building the table), the first.
    begun = [p for p in run.phases if p.start_s <= peak_time]
    phase = begun[-1] if begun else run.phases[0]
    snapshot = dict(phase_snapshots(run)).get(phase.name)
    if snapshot is None:
        raise ValueError(f"{run.path.name}: no snapshot dump for phase {phase.name}")
    return PeakSnapshot(phase.name, peak_time, int(peak_bytes), snapshot,
                        phase.start_s <= peak_time < phase.end_s)


# --- the sweep of notebook 02 -----------------------------------------------------------------------
def sweep_plan(quick: bool | None = None) -> SweepPlan:
    """The sweep notebook 02 runs: naive (the biggest slot) against nofd (Lwan's final struct), a grid
    of table sizes × C of ``rss`` runs (a :class:`~experiments.measure.sweep.SweepPlan` without its
    tracemalloc runs and allocator). Full: 3 × 3 runs a layout; quick (default: :func:`quick_mode`):
    2 × 2. C stays at or below 800 so the load generator fits a CI machine's file-descriptor limit."""
    quick = quick_mode() if quick is None else quick
    if quick:
        return SweepPlan(("naive", "nofd"), (2048, 8192), (50, 400), idle_s=0.25, load_s=0.3,
                         heap_runs=False, allocator=False)
    return SweepPlan(("naive", "nofd"), (2048, 8192, 16384), (100, 400, 800), idle_s=0.25, load_s=0.3,
                     heap_runs=False, allocator=False)


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: the layout, its table size and C, the run's summary metrics (bytes, req/s)
    and its folder."""

    layout: str
    max_conns: int
    connections: int
    summary: dict[str, float]
    run_dir: Path


def sweep(plan: SweepPlan, runs_dir: str | os.PathLike[str],
          progress: Callable[[str], None] | None = print) -> list[SweepPoint]:
    """Make every run of ``plan`` into ``runs_dir`` (:class:`~experiments.measure.sweep.Sweeper`, after
    :func:`~experiments.measure.sweep.check_plan`); a failed run raises
    :class:`experiments.measure.runner.RunFailed`."""
    points: list[SweepPoint] = []

    def keep(run: RunResult) -> None:
        parameters = run.parameters
        points.append(SweepPoint(run.layout, int(parameters["max_conns"]), int(parameters["connections"]),
                                 dict(run.summary), run.path))

    def step(index: int, total: int, label: str) -> None:
        if progress:
            progress(f"run {index + 1}/{total}: {label}")

    Sweeper(plan, Path(runs_dir), Path(runs_dir), check_plan(plan)).run(step, on_run=keep)
    return points


@dataclass(frozen=True)
class LineFit:
    """A least-squares line ``y = slope * x + intercept``; ``r2`` its coefficient of determination."""

    slope: float
    intercept: float
    r2: float


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> LineFit:
    """Fit a line through at least three points, two of them with distinct x (ordinary least squares:
    :func:`experiments.dataset.fit.ols`; a third point gives the fit its error estimate)."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values but {len(ys)} y values")
    if len(set(xs)) < 2:
        raise ValueError("need points with at least two distinct x")
    fit = ols([(1.0, float(x)) for x in xs], ys, ("intercept", "slope"))
    intercept, slope = fit.coefficients
    return LineFit(slope, intercept, fit.r2)


# --- the baseline of notebook 04 --------------------------------------------------------------------
def baseline_path(root: str | os.PathLike[str] | None = None) -> Path:
    """Where the committed baseline is: ``<reports>/baseline.json``, falling back to the repository's
    when ``$MEMDIET_REPORTS`` points at a folder without one (the baseline is committed; results
    are not)."""
    root = Path(root) if root is not None else reports_dir()
    own = root / BASELINE_FILE
    return own if own.is_file() else REPO_ROOT / REPORTS_DIR / BASELINE_FILE


# --- the scaling-law sweep of notebook 05 -----------------------------------------------------------
#: The sweep notebook 05 makes under :func:`quick_mode` when it finds none: the tests' tiny grid for
#: nofd alone (4 runs and the allocator, about 12 s), so the notebook's test stays short.
NOTEBOOK_QUICK_SWEEP = replace(TINY_PLAN, layouts=("nofd",))


def latest_sweep(root: str | os.PathLike[str] | None = None) -> Sweep:
    """The newest complete ``sweep.json`` under ``root`` (default :func:`reports_dir`), of
    ``<root>/latest/sweep/`` (``memdiet sweep``, committed) and ``<root>/quick/sweep/`` (``memdiet
    sweep --quick``, or :func:`ensure_sweep`). A sweep.json holds every point it fitted, so unlike a
    matrix it needs no run folder: the committed one reads on a fresh clone. Raises
    :class:`NoResults` when there is none."""
    root = Path(root) if root is not None else reports_dir()
    found = []
    for name in MATRIX_DIRS:
        path = root / name / SWEEP_DIR / SWEEP_FILE
        if path.is_file():
            sweep = read_sweep(path)
            if sweep.status == "complete":
                found.append(sweep)
    if not found:
        raise NoResults(f"no complete sweep under {root}", "run `memdiet sweep --quick` or call "
                                                           "experiments.study.ensure_sweep()")
    return max(found, key=lambda sweep: str(sweep.document.get("created_utc") or ""))


def ensure_sweep(quick: bool | None = None, root: str | os.PathLike[str] | None = None,
                 progress: Callable[[str], None] | None = print) -> Sweep:
    """:func:`latest_sweep`; when there is none, run a sweep first: with ``quick`` (default
    :func:`quick_mode`) :data:`NOTEBOOK_QUICK_SWEEP`, else ``memdiet sweep --quick``'s (every
    layout, about 2 minutes). Its runs go to ``<root>/runs/sweep``, its sweep.json to
    ``<root>/quick/sweep/``. A failed run raises :class:`experiments.measure.runner.RunFailed`."""
    root = Path(root) if root is not None else reports_dir()
    try:
        return latest_sweep(root)
    except NoResults as no_results:
        reason = no_results.reason
    quick = quick_mode() if quick is None else quick
    plan = NOTEBOOK_QUICK_SWEEP if quick else plan_for(quick=True)
    out_dir = root / QUICK_LATEST_DIR.name / SWEEP_DIR
    if progress:
        progress(f"{reason}: running a sweep ({', '.join(plan.layouts)}; {plan.steps()} steps) into {out_dir}")
    # Its runs in a folder of their own (runs/sweep/): a matrix's run folder list never takes them in.
    sweeper = Sweeper(plan, root / "runs" / "sweep", out_dir, check_plan(plan))
    sweeper.run((lambda i, n, label: progress(f"  {i + 1}/{n}: {label}")) if progress else None)
    write_json(out_dir / SWEEP_FILE, sweeper.document())
    return read_sweep(out_dir / SWEEP_FILE)
