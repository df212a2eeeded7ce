"""Tolerances learned from noise: the spread of every figure over K matrices of the same code, and
the tolerance each figure that depends on the machine gets from it (``memdiet baseline --repeat K``).

Rules (:data:`RULE`, written into every learned baseline):

- K >= :data:`~.tolerances.MIN_REPEAT` complete matrices of one plan, on one machine; a figure's
  baseline value is the median of its K values, its spread their range (max - min).
- A metric's noise band is :data:`~.tolerances.NOISE_MULTIPLE` times the largest range any layout
  showed, never below the floor measured on this project's machine (:func:`~.tolerances.noise_floor`).
  The largest of the layouts' ranges is taken because five layouts of K values each say more about
  the noise than one layout's K values: with K = 3 and normal noise, a new figure lands more than
  4 ranges of its own layout from the median 2% of the time (simulated, 200,000 draws), more than 4
  times the largest of five layouts' ranges practically never. The range is taken in bytes for the
  figures whose noise has a size of its own (whole-process pages, the probe's bookkeeping, per
  connection), in a fraction of the figure for the others (:func:`~.tolerances.noise_scale`).
- Figures that depend on the machine (not ``deterministic`` in
  :data:`experiments.dataset.metrics.METRICS`) get the noise band as their tolerance (rule
  ``learned``); where a drop is worse (req/s) it is capped at the fixed policy's drop, since a drop
  past it is a collapse whatever the noise. Each keeps the fixed policy as ``other_machine``: learned
  noise holds on the machine it was learned on.
- Deterministic heap figures keep their fixed rule (exact, 1%, or 1% with an absolute floor); the
  band is recorded beside it and reported (a change beyond it is *beyond the noise* even while
  within tolerance). One whose range over the K matrices already exceeds its fixed tolerance did not
  reproduce: :class:`NotReproducible`, and no baseline is made.

Data only: nothing here runs a matrix or prints.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..dataset.metrics import METRICS
from ..dataset.selection import Figure
from ..errors import ExperimentError
from .tolerances import (
    ABSOLUTE,
    LEARNED,
    NOISE_MULTIPLE,
    THROUGHPUT_DROP,
    Tolerance,
    noise_floor,
    noise_scale,
    tolerance_policy,
)

RULE = (f"baseline = median of the K matrices; noise band = max({NOISE_MULTIPLE:g} x the largest range "
        "(max - min) any layout showed over the K matrices, the floor measured on this project's machine), in bytes "
        "or as a fraction of the figure by metric; figures that depend on the machine: tolerance = the noise band "
        f"(a drop at most {THROUGHPUT_DROP:.0%}), the fixed policy on another machine; deterministic heap figures: "
        "the fixed rule, the band reported beside it")


class NotReproducible(ExperimentError):
    """A deterministic figure moved across the repeated matrices by more than its fixed tolerance:
    exit 1, no baseline written."""


@dataclass(frozen=True)
class Spread:
    """One figure's K values (one per matrix, in the order the matrices ran)."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def range(self) -> float:
        """max - min, in the metric's unit."""
        return max(self.values) - min(self.values)

    @property
    def relative_range(self) -> float | None:
        """The range as a fraction of the median; None for a median of 0."""
        median = self.median
        return self.range / abs(median) if median else None


@dataclass(frozen=True)
class MetricNoise:
    """What the K matrices showed of one metric: the largest range of any layout (``worst_range``,
    in bytes or a fraction of the figure as ``scale`` says), which layout showed it, and the band."""

    scale: str
    worst_range: float
    worst_layout: str | None
    band: Tolerance

    def to_json(self) -> dict[str, Any]:
        return {"scale": self.scale, "worst_range": self.worst_range, "worst_layout": self.worst_layout,
                "band": {"relative": self.band.relative, "absolute": self.band.absolute}}


def spreads(matrices: Sequence[Mapping[str, Mapping[str, Figure]]]) -> dict[str, dict[str, Spread]]:
    """``{layout: {metric: Spread}}`` over the merged figures of each matrix
    (:func:`experiments.dataset.selection.merged_metrics` of its runs); a figure some matrix lacks
    has fewer values."""
    layouts = list(dict.fromkeys(layout for merged in matrices for layout in merged))
    out: dict[str, dict[str, Spread]] = {}
    for layout in layouts:
        names = list(dict.fromkeys(name for merged in matrices for name in merged.get(layout, {})))
        out[layout] = {name: Spread(tuple(merged[layout][name].value for merged in matrices
                                          if name in merged.get(layout, {})))
                       for name in names}
    return out


def metric_noise(name: str, by_layout: Mapping[str, Spread], connections: int) -> MetricNoise:
    """The noise band of metric ``name`` from its spreads in every layout (the module's rule)."""
    scale = noise_scale(name)
    floor = noise_floor(name, connections)
    ranges = {layout: (spread.range if scale == ABSOLUTE else spread.relative_range or 0.0)
              for layout, spread in by_layout.items() if len(spread.values) >= 2}
    worst_layout = max(ranges, key=lambda layout: ranges[layout]) if ranges else None
    worst = ranges[worst_layout] if worst_layout is not None else 0.0
    learned = NOISE_MULTIPLE * worst
    if scale == ABSOLUTE:
        band = Tolerance(floor.relative, max(learned, floor.absolute), "")
    else:
        band = Tolerance(max(learned, floor.relative), floor.absolute, "")
    if scale == ABSOLUTE:
        shown = f"{worst:,.0f} B" if worst >= 100 else f"{worst:.3g} B"
    else:
        shown = f"{worst * 100:.3g}%"
    where = f" ({worst_layout})" if worst_layout else ""
    won = "the floor" if (band.absolute if scale == ABSOLUTE else band.relative) > learned else f"{NOISE_MULTIPLE:g} x range"
    why = f"largest range {shown}{where}; band = {won}; {floor.why}"
    return MetricNoise(scale, worst, worst_layout, Tolerance(band.relative, band.absolute, why))


def learn_tolerances(by_layout: Mapping[str, Mapping[str, Spread]], names: Sequence[str],
                     connections: int) -> tuple[dict[str, Tolerance], dict[str, MetricNoise]]:
    """``({metric: Tolerance}, {metric: MetricNoise})`` for ``names`` from the spreads of every
    layout (the module's rule); :class:`NotReproducible` when a deterministic figure's range
    exceeds its fixed tolerance."""
    fixed = tolerance_policy(names, connections)
    tolerances: dict[str, Tolerance] = {}
    noise: dict[str, MetricNoise] = {}
    for name in names:
        spreads_of = {layout: figures[name] for layout, figures in by_layout.items() if name in figures}
        measured = metric_noise(name, spreads_of, connections)
        noise[name] = measured
        policy = fixed[name]
        metric = METRICS.get(name)
        if metric is not None and metric.deterministic:
            _check_reproduced(name, spreads_of, policy)
            tolerances[name] = Tolerance(policy.relative, policy.absolute, policy.why, policy.rule, noise=measured.band)
            continue
        band = measured.band
        relative = band.relative
        if metric is not None and not metric.lower_is_better:
            relative = min(relative, THROUGHPUT_DROP)
        tolerances[name] = Tolerance(relative, band.absolute, f"learned: {band.why}", LEARNED,
                                     noise=band, other_machine=policy)
    return tolerances, noise


def _check_reproduced(name: str, by_layout: Mapping[str, Spread], policy: Tolerance) -> None:
    for layout, spread in by_layout.items():
        if spread.range > policy.allowed(spread.median):
            raise NotReproducible(
                f"{layout} {name} moved by {spread.range:,.6g} across the {len(spread.values)} matrices "
                f"({', '.join(f'{v:,.6g}' for v in spread.values)}), more than its fixed tolerance allows "
                f"({policy.allowed(spread.median):,.6g}): a deterministic figure did not reproduce; no baseline written")


@dataclass(frozen=True)
class Noise:
    """What a learned baseline records of its matrices: K (``repeat``), the rule, the noise of every
    metric and the run folders of each matrix."""

    repeat: int
    rule: str
    metrics: dict[str, MetricNoise]
    matrices: list[list[str]]

    def to_json(self) -> dict[str, Any]:
        return {"repeat": self.repeat, "multiple": NOISE_MULTIPLE, "rule": self.rule,
                "spread": {name: noise.to_json() for name, noise in self.metrics.items()},
                "matrices": self.matrices}
