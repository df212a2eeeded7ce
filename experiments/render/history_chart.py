"""The history chart: chosen figures over the recorded regression checks, one panel per metric (row)
and layout (column).

In each panel: the figure at each check (dots joined in file order, a gap where a check lacks it),
the baseline it was compared with (a step line: it moves when the baseline is remade), the tolerance
band around it (shaded; its worse edge dashed), failing checks as red crosses and slow creeps as an
orange line from their best point to their last. The x axis is the checks in the order they ran,
labelled with their short commits (``+`` when the tree had uncommitted changes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..dataset.metrics import METRICS
from ..regress.compare import FAILING
from ..regress.history import Point, Record, Trend
from .figures import new_figure, save_figure
from .units import KIB, MIB

PANEL_WIDTH_IN, PANEL_HEIGHT_IN = 3.4, 2.5
VALUE_COLOUR, BASELINE_COLOUR, BAND_COLOUR, NOISE_COLOUR = "#1f77b4", "#444444", "#cfe3f3", "#9cc3e4"
REGRESSED_COLOUR, CREEP_COLOUR = "#d62728", "#ff7f0e"
#: At most this many commit labels on an axis; beyond, every n-th.
MAX_LABELS = 16


def render_history_chart(records: Sequence[Record], shown: Sequence[Trend], out_stem: Path) -> list[Path]:
    """Draw the trends ``shown`` (of ``records``) to ``<out_stem>.png`` and ``.svg``."""
    metrics = list(dict.fromkeys(trend.metric for trend in shown))
    layouts = list(dict.fromkeys(trend.layout for trend in shown))
    by_key = {(trend.metric, trend.layout): trend for trend in shown}
    rows, columns = max(len(metrics), 1), max(len(layouts), 1)
    figure = new_figure(max(PANEL_WIDTH_IN * columns, 6.8), PANEL_HEIGHT_IN * rows + 1.0)
    axes_grid = figure.subplots(rows, columns, squeeze=False)
    labels = [record.label for record in records]
    step = max(1, -(-len(labels) // MAX_LABELS))
    for row, metric in enumerate(metrics):
        for column, layout in enumerate(layouts):
            axes = axes_grid[row][column]
            trend = by_key.get((metric, layout))
            if trend is None:
                axes.set_axis_off()
                continue
            _panel(axes, trend)
            axes.set_title(f"{layout} · {metric}", fontsize=8.5, loc="left")
            axes.set_xticks(range(0, len(labels), step), labels[::step], rotation=90, fontsize=6.5)
            axes.set_xlim(-0.5, len(labels) - 0.5)
    first, last = (records[0].time_utc, records[-1].time_utc) if records else ("?", "?")
    figure.suptitle(f"memdiet history: {len(records)} regression checks, {first} to {last}\n"
                    "grey line: baseline; shaded: tolerance (dashed: its worse edge), darker: noise band\n"
                    "✕ failed; orange: slow creep", fontsize=9, x=0.01, ha="left")
    return save_figure(figure, out_stem)


def _scale(trend: Trend) -> tuple[float, str]:
    """(divisor, unit) for a panel's axis: bytes in B, KiB or MiB by the largest value; else the metric's unit."""
    unit = METRICS[trend.metric].unit if trend.metric in METRICS else ""
    if unit != "bytes":
        return 1.0, unit
    largest = max((abs(p.value) for p in trend.points if p is not None and p.value is not None), default=0.0)
    return (MIB, "MiB") if largest >= MIB else (KIB, "KiB") if largest >= KIB else (1.0, "B")


def _panel(axes: Any, trend: Trend) -> None:
    divisor, unit = _scale(trend)
    scaled = [None if p is None else Point(*(None if v is None else v / divisor for v in (p.value, p.baseline, p.allowed, p.noise)),
                                           p.verdict) for p in trend.points]
    present = [(i, p) for i, p in enumerate(scaled) if p is not None]
    banded = [(i, p) for i, p in present if p.baseline is not None and p.allowed is not None]
    if banded:
        xs = [i for i, _ in banded]
        base = [p.baseline for _, p in banded]
        low = [p.baseline - p.allowed for _, p in banded]
        high = [p.baseline + p.allowed for _, p in banded]
        worse_edge = high if trend.worse > 0 else low
        axes.fill_between(xs, low, high, step="mid", color=BAND_COLOUR, linewidth=0, zorder=1)
        noisy = [(i, p) for i, p in banded if p.noise is not None]
        if noisy:
            axes.fill_between([i for i, _ in noisy], [p.baseline - p.noise for _, p in noisy],
                              [p.baseline + p.noise for _, p in noisy], step="mid", color=NOISE_COLOUR, linewidth=0,
                              zorder=1.5)
        axes.step(xs, base, where="mid", color=BASELINE_COLOUR, linewidth=1.0, zorder=2)
        axes.step(xs, worse_edge, where="mid", color=REGRESSED_COLOUR, linewidth=0.8, linestyle="--", zorder=2)
    values = [(i, p.value) for i, p in present if p.value is not None]
    # A gap (a check without the figure) breaks the line.
    segment: list[tuple[int, float]] = []
    for i, value in values:
        if segment and i != segment[-1][0] + 1:
            _line(axes, segment)
            segment = []
        segment.append((i, value))
    _line(axes, segment)
    failed = [(i, p.value) for i, p in present if p.verdict in FAILING and p.value is not None]
    if failed:
        axes.scatter([i for i, _ in failed], [v for _, v in failed], marker="x", s=46, color=REGRESSED_COLOUR,
                     linewidths=1.8, zorder=5)
    for creep in trend.creeps:
        inside = [(i, v) for i, v in values if creep.start <= i <= creep.end]
        axes.plot([i for i, _ in inside], [v for _, v in inside], color=CREEP_COLOUR, linewidth=3.2, alpha=0.75,
                  zorder=4, solid_capstyle="round")
    axes.set_ylabel(unit, fontsize=7.5)
    axes.ticklabel_format(axis="y", useOffset=False, style="plain")
    axes.tick_params(axis="y", labelsize=7)
    axes.grid(axis="y", color="#e4e4e4", linewidth=0.6)
    axes.margins(y=0.25)


def _line(axes: Any, segment: list[tuple[int, float]]) -> None:
    if segment:
        axes.plot([i for i, _ in segment], [v for _, v in segment], color=VALUE_COLOUR, marker="o", markersize=3.2,
                  linewidth=1.2, zorder=3)
