"""Which run each figure of a report comes from.

A matrix runs every layout under several probes. Each probe disturbs what it does not measure: the
tracemalloc and memray runs carry their tracer in RSS and run slower, the rss run sees no heap. So a
report takes each metric from the probe that measures it best, falling back to another probe when a
layout lacks that run, and says which probe every figure came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from .metrics import reduction
from .results import COMPARED_PARAMETERS, RunResult

BASELINE_LAYOUT = "naive"
#: The layouts in the order the study presents them: that of ``server.layouts.LAYOUTS``, from the most
#: memory per slot to the least. Named here because the dataset reads no server code; the tests check
#: that the two agree.
STUDY_ORDER = ("naive", "split", "bitfields", "nofd", "packed")

#: Probes by preference, for RSS and load-generator figures (measured from outside, least disturbed
#: by the rss probe), and for heap figures (only the in-process tracers see the heap).
RSS_PROBES = ("rss", "tracemalloc", "memray")
HEAP_PROBES = ("tracemalloc", "memray", "rss")
#: Probes by preference for a massif-style curve: the one with per-site series and the cheapest tracer.
CURVE_PROBES = HEAP_PROBES


def probes_for(metric: str) -> tuple[str, ...]:
    """The probes ``metric`` is best taken from, best first."""
    heap_metric = "heap" in metric or metric in ("bytes_per_slot", "tracer_bytes", "c_bytes_per_slot")
    return HEAP_PROBES if heap_metric else RSS_PROBES


def layout_order(layouts: Iterable[str]) -> list[str]:
    """``layouts`` in the study's order (:data:`STUDY_ORDER`), unknown ones last."""
    names = set(layouts)
    return [n for n in STUDY_ORDER if n in names] + sorted(names - set(STUDY_ORDER))


def split_by_status(runs: Iterable[RunResult]) -> tuple[list[RunResult], list[RunResult]]:
    """(complete runs, all other runs: incomplete or still marked running)."""
    complete, other = [], []
    for run in runs:
        (complete if run.status == "complete" else other).append(run)
    return complete, other


def latest_runs(runs: Iterable[RunResult]) -> dict[str, dict[str, RunResult]]:
    """Complete runs by layout then probe; of repeated runs the latest folder (names start with
    the UTC time) wins."""
    chosen: dict[str, dict[str, RunResult]] = {}
    complete, _ = split_by_status(runs)
    for run in sorted(complete, key=lambda r: r.path.name):
        chosen.setdefault(run.layout, {})[run.probe] = run
    return {layout: chosen[layout] for layout in layout_order(chosen)}


def chosen_runs(runs: Iterable[RunResult]) -> list[RunResult]:
    """The runs a report's tables are made from: of the complete runs, the latest of each layout
    and probe (:func:`latest_runs`)."""
    return [run for by_probe in latest_runs(runs).values() for run in by_probe.values()]


def parameter_key(run: RunResult) -> tuple[tuple[str, Any], ...]:
    """``run``'s values of :data:`~experiments.dataset.results.COMPARED_PARAMETERS`: runs with equal keys
    may share a table."""
    return tuple((name, run.parameters.get(name)) for name in COMPARED_PARAMETERS)


def differing_parameters(runs: Iterable[RunResult]) -> dict[str, dict[Any, list[RunResult]]]:
    """``{parameter: {value: runs with it}}`` for each compared parameter on which ``runs``
    disagree; empty when they may share a table."""
    by_name: dict[str, dict[Any, list[RunResult]]] = {}
    for run in runs:
        for name, value in parameter_key(run):
            by_name.setdefault(name, {}).setdefault(value, []).append(run)
    return {name: by_value for name, by_value in by_name.items() if len(by_value) > 1}


def parameter_sets(runs: Iterable[RunResult]) -> list[list[RunResult]]:
    """``runs`` split into groups of equal :func:`parameter_key`, most complete runs first (ties:
    the group with the latest run first)."""
    groups: dict[tuple, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(parameter_key(run), []).append(run)
    newest_first = sorted(groups.values(), key=lambda group: max(r.path.name for r in group), reverse=True)
    return sorted(newest_first, key=lambda group: -sum(r.status == "complete" for r in group))  # stable sort


def pick_run(by_probe: dict[str, RunResult], probes: tuple[str, ...]) -> RunResult | None:
    """The first run of ``probes`` present in ``by_probe``, else any run, else None."""
    for probe in probes:
        if probe in by_probe:
            return by_probe[probe]
    return next(iter(by_probe.values()), None)


@dataclass(frozen=True)
class Figure:
    """A metric's value for one layout, with the probe and run it was taken from."""

    value: float
    probe: str
    run: RunResult


def merged_metrics(runs: Iterable[RunResult]) -> dict[str, dict[str, Figure]]:
    """``{layout: {metric: Figure}}``: every summary metric of every layout's complete runs, each
    taken from the best probe that has it (:func:`probes_for`)."""
    merged: dict[str, dict[str, Figure]] = {}
    for layout, by_probe in latest_runs(runs).items():
        figures: dict[str, Figure] = {}
        names = {name for run in by_probe.values() for name in run.summary}
        for name in names:
            ordered = [p for p in probes_for(name) if p in by_probe] + sorted(set(by_probe) - set(probes_for(name)))
            for probe in ordered:
                value = by_probe[probe].summary.get(name)
                if value is not None:
                    figures[name] = Figure(float(value), probe, by_probe[probe])
                    break
        merged[layout] = figures
    return merged


def reductions(merged: dict[str, dict[str, Figure]], metric: str) -> dict[str, float | None]:
    """``{layout: fraction saved versus naive}`` for ``metric`` (0.94 = 94% less). None where either
    figure is missing or the two come from different probes (a tracer's RSS is not comparable with
    an untraced one)."""
    base = merged.get(BASELINE_LAYOUT, {}).get(metric)
    out: dict[str, float | None] = {}
    for layout, figures in merged.items():
        if layout == BASELINE_LAYOUT:
            continue
        figure = figures.get(metric)
        comparable = base is not None and figure is not None and figure.probe == base.probe
        out[layout] = reduction(figure.value, base.value) if comparable else None
    return out
