"""The scaling-law sweep: per layout, a grid of table sizes and held connections, each point a real run.

For every layout of a :class:`SweepPlan`: one ``rss`` run (nothing traced in the server) per
(max_conns, C) of the grid, through :func:`.runner.run_once` with short phases; then a
``tracemalloc`` run at the smallest and at the largest max_conns (the table's heap as the server's
table.json reports it, and heap per held connection); then the allocator measured at those two sizes
(:mod:`.pymalloc`). What is made of them (the points, the fits, the predictions) is
:mod:`experiments.dataset.sweep`'s arithmetic; the command writes sweep.json and renders it.

Rules:

- The grid stays within RLIMIT_NOFILE's hard limit (20,000 on the machine the committed sweep was
  made on; read with :func:`server.fdlimit.hard_limit`, the limit the server raises its soft limit
  to): the largest max_conns plus the largest C plus :data:`NOFILE_MARGIN` must fit under it, so
  every slot of the table is one the process could really use, with room for the C sockets and the
  processes' own descriptors. The default plans drop the table sizes that do not fit
  (:func:`plan_for`); an explicit plan that does not fit is refused (:class:`BadInput`, exit 2).
- C also fits the smallest table with :data:`SERVER_FDS_MARGIN` to spare: a slot's index is its fd,
  and the server's own descriptors take the lowest slots.
- Runs go one after another, grouped by layout (its rss runs, C outer and max_conns inner, so slow
  drift of the machine is not confounded with table size; its tracemalloc runs; its allocator).
  The first failed run stops the sweep; the runs made before it are kept (:class:`Sweeper` keeps
  them for the command to write, marked incomplete).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from server.fdlimit import hard_limit
from server.layouts import LAYOUTS

from ..dataset.results import RunResult, load_run
from ..dataset.sweep import KERNEL_METRIC, AllocatorDelta, HeapRun, RssRun, build_document
from ..errors import BadInput
from ..paths import relative_posix
from . import environment
from .pymalloc import AllocatorUnavailable, measure_table
from .runner import run_once
from .scenario import QUICK, RunConfig

#: Descriptors kept free beside the largest table and the largest C (the runner, the sampler, the
#: load generator's own files, the server's stdio, listener and epoll).
NOFILE_MARGIN = 64
#: Slots of the smallest table left beside the largest C: the server's own descriptors take the
#: lowest fds (7 untraced here, more with the tracer's files), and a slot's index is its fd.
SERVER_FDS_MARGIN = 32
HEAP_PROBE = "tracemalloc"


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep runs: ``layouts``, the grid ``max_conns_values`` × ``connections_values`` (C),
    each idle phase ``idle_s`` and the load phase ``load_s`` seconds long; ``heap_runs``: a
    tracemalloc run at the smallest and largest max_conns; ``allocator``: the allocator measured at
    the same two sizes."""

    layouts: tuple[str, ...]
    max_conns_values: tuple[int, ...]
    connections_values: tuple[int, ...]
    idle_s: float
    load_s: float
    heap_runs: bool = True
    allocator: bool = True

    def _base(self, runs_dir: Path) -> RunConfig:
        # QUICK's scenario (sampling, detail interval, keep-alive) with this plan's phases.
        return replace(QUICK, idle_s=self.idle_s, load_s=self.load_s, runs_dir=Path(runs_dir))

    def rss_configs(self, layout: str, runs_dir: Path) -> list[RunConfig]:
        """The rss runs of ``layout``, C outer and max_conns inner."""
        base = replace(self._base(runs_dir), subject=layout, probe="rss")
        return [replace(base, max_conns=size, connections=c)
                for c in self.connections_values for size in self.max_conns_values]

    def heap_sizes(self) -> tuple[int, ...]:
        """The two table sizes of the tracemalloc runs and the allocator: the smallest and the largest."""
        return (min(self.max_conns_values), max(self.max_conns_values))

    def heap_configs(self, layout: str, runs_dir: Path) -> list[RunConfig]:
        """The tracemalloc runs of ``layout`` (C the grid's largest: heap per held connection)."""
        if not self.heap_runs:
            return []
        base = replace(self._base(runs_dir), subject=layout, probe=HEAP_PROBE, connections=max(self.connections_values))
        return [replace(base, max_conns=size) for size in self.heap_sizes()]

    def configs(self, runs_dir: Path) -> list[RunConfig]:
        """Every run, in the order they are made."""
        return [config for layout in self.layouts
                for config in (*self.rss_configs(layout, runs_dir), *self.heap_configs(layout, runs_dir))]

    def steps(self) -> int:
        """Runs plus allocator measurements: what a progress bar counts."""
        return len(self.configs(Path("."))) + (len(self.layouts) * len(self.heap_sizes()) if self.allocator else 0)

    def describe(self) -> dict[str, Any]:
        return asdict(self) | {"probe": "rss", "heap_probe": HEAP_PROBE if self.heap_runs else None}


#: ``memdiet sweep``: every layout, 3 table sizes × 3 C: 45 rss and 10 tracemalloc runs, about 4 minutes on 2 cores.
FULL_PLAN = SweepPlan(tuple(LAYOUTS), (2048, 8192, 16384), (250, 1000, 2000), idle_s=0.5, load_s=0.5)
#: ``memdiet sweep --quick``: every layout, the two extreme sizes × 2 C, shorter phases (about 2 minutes).
QUICK_PLAN = SweepPlan(tuple(LAYOUTS), (2048, 16384), (100, 1000), idle_s=0.3, load_s=0.3)
#: The tests' tiny sweep: two layouts, 2 × 2 rss runs each and the allocator, no tracemalloc runs (5 s
#: each: the allocator child's tracemalloc gives the requested bytes instead); about 20 s. Notebook 05's
#: quick mode is its nofd half (:data:`experiments.study.NOTEBOOK_QUICK_SWEEP`).
TINY_PLAN = SweepPlan(("nofd", "packed"), (2048, 16384), (50, 500), idle_s=0.25, load_s=0.25, heap_runs=False)


def nofile_needed(plan: SweepPlan) -> int:
    """Descriptors the grid's largest point needs by the rule of the module's docstring."""
    return max(plan.max_conns_values) + max(plan.connections_values) + NOFILE_MARGIN


def check_plan(plan: SweepPlan, hard: int | None = None) -> dict[str, Any]:
    """Refuse (:class:`BadInput`) a plan that breaks a rule of the module's docstring; else return
    what sweep.json records of the limit (``hard_limit``, ``needed`` and the parts of it)."""
    hard = hard_limit() if hard is None else hard
    unknown = [name for name in plan.layouts if name not in LAYOUTS]
    if unknown:
        raise BadInput(f"unknown layout {', '.join(unknown)}; choose from {', '.join(LAYOUTS)}")
    if len(set(plan.max_conns_values)) < 2:
        raise BadInput("a sweep needs at least two table sizes (max_conns) to fit bytes per slot")
    if not plan.connections_values or min(plan.connections_values) < 1:
        raise BadInput("every C of a sweep must be at least 1 (the runner holds C clients)")
    needed = nofile_needed(plan)
    if needed > hard:
        raise BadInput(f"the grid needs {needed:,} file descriptors (max_conns {max(plan.max_conns_values):,} + C "
                       f"{max(plan.connections_values):,} + margin {NOFILE_MARGIN}), above this machine's RLIMIT_NOFILE "
                       f"hard limit of {hard:,}")
    room = min(plan.max_conns_values) - SERVER_FDS_MARGIN
    if max(plan.connections_values) > room:
        raise BadInput(f"C {max(plan.connections_values):,} does not fit the smallest table ({min(plan.max_conns_values):,} "
                       f"slots, {SERVER_FDS_MARGIN} of them left to the server's own descriptors)")
    return {"hard_limit": hard, "needed": needed, "largest_max_conns": max(plan.max_conns_values),
            "largest_connections": max(plan.connections_values), "margin": NOFILE_MARGIN}


def plan_for(quick: bool, layouts: Sequence[str] | None = None, hard: int | None = None) -> SweepPlan:
    """The full or quick plan for ``layouts`` (default: all), without the table sizes that would
    not fit this machine's RLIMIT_NOFILE (:func:`check_plan` refuses it when fewer than two remain)."""
    plan = QUICK_PLAN if quick else FULL_PLAN
    hard = hard_limit() if hard is None else hard
    fitting = tuple(size for size in plan.max_conns_values
                    if size + max(plan.connections_values) + NOFILE_MARGIN <= hard)
    plan = replace(plan, layouts=tuple(layouts or plan.layouts), max_conns_values=fitting or plan.max_conns_values)
    check_plan(plan, hard)
    return plan


def rss_run_of(run: RunResult, relative_to: Path) -> RssRun:
    """What the fits take from one rss run (see :class:`~experiments.dataset.sweep.RssRun`)."""
    summary, parameters = run.summary, run.parameters
    connections = int(parameters["connections"])
    per_active = summary.get("rss_bytes_per_active_connection")
    return RssRun(
        layout=run.layout, run=relative_posix(run.path, relative_to), max_conns=int(parameters["max_conns"]),
        connections=connections, idle_rss_bytes=summary["idle_rss_bytes"], held_rss_bytes=summary["held_rss_bytes"],
        # The load phase's median, as the summary defines rss_bytes_per_active_connection from it.
        load_rss_bytes=summary["idle_rss_bytes"] + per_active * connections if per_active is not None else None,
        rss_bytes_per_held_connection=summary.get("rss_bytes_per_held_connection"),
        c_bytes_per_slot=(run.document.get("table") or {}).get("c_bytes_per_slot"),
        kernel_bytes_per_held_connection=summary.get(KERNEL_METRIC),
    )


def heap_run_of(run: RunResult, relative_to: Path) -> HeapRun:
    summary, parameters = run.summary, run.parameters
    return HeapRun(layout=run.layout, run=relative_posix(run.path, relative_to), max_conns=int(parameters["max_conns"]),
                   connections=int(parameters["connections"]), table_heap_bytes=int(summary["table_heap_bytes"]),
                   heap_bytes_per_held_connection=summary.get("heap_bytes_per_held_connection"))


StepStart = Callable[[int, int, str], None]


@dataclass
class Sweeper:
    """One sweep in progress: what it measured so far, and :meth:`document` at any moment (the
    command writes it whether the sweep completed, failed or was interrupted)."""

    plan: SweepPlan
    runs_dir: Path
    out_dir: Path
    nofile: dict[str, Any]
    rss_runs: list[RssRun] = field(default_factory=list)
    heap_runs: list[HeapRun] = field(default_factory=list)
    allocator: list[AllocatorDelta] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    finished: bool = False

    def run(self, on_step: StepStart | None = None, on_phase: Callable[[str], None] | None = None,
            on_run: Callable[[RunResult], None] | None = None) -> None:
        """Make every run and measurement of the plan; the first failure (or an interrupt) is
        recorded in :attr:`error` and raised again. ``on_run`` is handed each run as it is made
        (the notebooks read more of a run than the fits take)."""
        total, index = self.plan.steps(), 0

        def measured(config: RunConfig) -> RunResult:
            run = load_run(run_once(config, on_phase))
            if on_run:
                on_run(run)
            return run

        def step(label: str) -> None:
            nonlocal index
            if on_step:
                on_step(index, total, label)
            index += 1

        try:
            for layout in self.plan.layouts:
                for config in self.plan.rss_configs(layout, self.runs_dir):
                    step(f"{layout}/rss max_conns {config.max_conns:,} C {config.connections:,}")
                    self.rss_runs.append(rss_run_of(measured(config), self.out_dir))
                for config in self.plan.heap_configs(layout, self.runs_dir):
                    step(f"{layout}/{config.probe} max_conns {config.max_conns:,}")
                    self.heap_runs.append(heap_run_of(measured(config), self.out_dir))
                if self.plan.allocator:
                    for size in self.plan.heap_sizes():
                        step(f"{layout}/allocator {size:,} slots")
                        try:
                            self.allocator.append(measure_table(layout, size))
                        except AllocatorUnavailable as unavailable:
                            # The allocator explains the gap where it can be measured; the sweep's
                            # own figures stand without it.
                            self.notes.append(str(unavailable))
        except BaseException as error:
            self.error = str(error) or type(error).__name__
            raise
        self.finished = True

    def document(self) -> dict[str, Any]:
        """sweep.json's document for what was measured so far (:func:`~experiments.dataset.sweep.build_document`)."""
        return build_document(
            status="complete" if self.finished else "incomplete", error=self.error,
            created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"), plan=self.plan.describe(),
            nofile=self.nofile, environment=environment.describe(), layouts=self.plan.layouts, runs=self.rss_runs, heap_runs=self.heap_runs, allocator=self.allocator,
            notes=self.notes)


__all__ = ["SweepPlan", "Sweeper", "FULL_PLAN", "QUICK_PLAN", "TINY_PLAN", "NOFILE_MARGIN", "SERVER_FDS_MARGIN",
           "check_plan", "plan_for", "nofile_needed", "rss_run_of", "heap_run_of"]
