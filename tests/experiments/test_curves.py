"""Every curve shows its sites over the whole run (issue 16, item 2).

A detailed per-site snapshot can take longer than a whole phase (seconds for naive's table at 65,536
slots), and the sampler then stretches its interval past the run: naive's sites.csv had one time,
and a stack of one point has no width. The phase-end dumps are per-site records too: each one gives
sites.csv a row set, so every run has sites at least at every phase end, and the curve's stack
spans the run from the first detailed snapshot to the end of idle-after.

The run here keeps the default detail interval (2 s) in a run of about 2 s of phases, so the sampler
takes its first snapshot only, as naive's does at full size.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.collections import PolyCollection

from experiments.dataset.results import PHASES, RunResult, load_run
from experiments.measure.runner import RunConfig, run_once
from experiments.render.massif_curve import draw_massif_curve


@pytest.fixture(scope="module")
def short_tracemalloc_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """One real nofd run under tracemalloc, phases shorter than the detail interval."""
    runs_dir = tmp_path_factory.mktemp("runs")
    config = RunConfig(subject="nofd", probe="tracemalloc", max_conns=2048, connections=20, idle_s=0.2,
                       load_s=0.3, runs_dir=runs_dir)
    run = load_run(run_once(config))
    assert run.status == "complete", run.document.get("error")
    return run


def test_sites_csv_has_a_row_set_at_every_phase_end(short_tracemalloc_run: RunResult):
    run = short_tracemalloc_run
    phases = run.phases
    assert [phase.name for phase in phases] == list(PHASES)
    times = sorted({time_s for time_s, _site, _size, _count in run.sites})
    for phase, following in zip(phases, [*phases[1:], None]):
        # Taken once the phase has ended and before the next one starts (the runner waits for it).
        until = following.start_s if following is not None else float("inf")
        at_end = [t for t in times if phase.end_s <= t < until]
        assert at_end, f"no sites between the end of {phase.name} ({phase.end_s:.3f} s) and {until:.3f} s: {times}"
        rows = [row for row in run.sites if row[0] == at_end[0]]
        assert any(site.startswith("server/") for _t, site, _size, _count in rows), rows


def test_phase_end_rows_add_up_to_that_moments_heap(short_tracemalloc_run: RunResult):
    """A phase-end row set is a whole snapshot: its sites (the (probe) and (other) rows included)
    sum to what tracemalloc traced then, within the few allocations between the sample and the dump."""
    run = short_tracemalloc_run
    heap_times, heap_bytes = run.heap["time_s"], run.heap["heap_bytes"]
    for phase in run.phases:
        after = [t for t, _site, _size, _count in run.sites if t >= phase.end_s]
        assert after, f"no sites after the end of {phase.name}"
        when = min(after)
        total = sum(size for t, _site, size, _count in run.sites if t == when)
        sampled = [b for t, b in zip(heap_times, heap_bytes) if t == when]
        assert sampled, f"no heap row at the dump of {phase.name}"
        assert abs(total - sampled[0]) <= 0.01 * sampled[0], (phase.name, total, sampled[0])


def _stack_extents(axes) -> list[tuple[float, float]]:
    """(first x, last x) of each stacked band (stackplot's PolyCollections) on ``axes``."""
    extents = []
    for artist in axes.collections:
        if isinstance(artist, PolyCollection):
            xs = [x for path in artist.get_paths() for x, _y in path.vertices]
            if xs:
                extents.append((min(xs), max(xs)))
    return extents


def test_curve_stack_spans_the_run_from_first_to_last_phase(short_tracemalloc_run: RunResult, tmp_path: Path):
    run = short_tracemalloc_run
    figure = draw_massif_curve(run)
    first, last = run.phases[0], run.phases[-1]
    for axes in figure.axes:
        extents = _stack_extents(axes)
        assert extents, "no site stack drawn"
        for start, end in extents:
            assert start <= first.start_s, f"stack starts at {start:.3f} s, after {first.name} starts ({first.start_s:.3f} s)"
            assert end >= last.end_s, f"stack ends at {end:.3f} s, before {last.name} ends ({last.end_s:.3f} s)"
