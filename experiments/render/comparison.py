"""Comparison across layouts: what the whole server holds, and what one slot costs.

Left: idle, held and loaded-peak RSS per layout, in study order, each bar labelled with its size and
its change versus naive. RSS comes from each layout's rss-probe run (no tracer inside); a bar taken
from a tracing probe's run, for want of an rss run, is hatched, and gets no change versus naive
unless naive's figure came from the same probe. Right: bytes per slot on the heap (deterministic)
beside the slot's C size, on a log scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..dataset.results import RunResult
from ..dataset.selection import BASELINE_LAYOUT, Figure, merged_metrics, reductions
from .figures import new_figure, save_figure
from .units import MIB, exact_bytes, human_bytes, percent_change

#: (metric, bar label, colour, whether the bar shows its change versus naive) of each panel.
RSS_BARS = (
    ("idle_rss_bytes", "idle, no clients", "#9ecae1", True),
    ("held_rss_bytes", "C connections held idle", "#4292c6", True),
    ("loaded_peak_rss_bytes", "peak under load", "#08519c", True),
)
SLOT_BARS = (
    ("bytes_per_slot", "Python heap per slot (tracemalloc)", "#e6550d", True),
    ("c_bytes_per_slot", "C struct per slot (ctypes.sizeof)", "#636363", False),
)


def _common_parameter(runs: Sequence[RunResult], name: str) -> str:
    values = {run.parameters.get(name) for run in runs if run.parameters.get(name) is not None}
    if not values:
        return "?"
    return f"{int(next(iter(values))):,}" if len(values) == 1 else "mixed"


def _bar_label(figure: Figure | None, change: float | None, layout: str, as_slot: bool) -> str:
    if figure is None:
        return ""
    if as_slot:
        size = exact_bytes(figure.value)
    else:
        size = human_bytes(figure.value)
    if layout == BASELINE_LAYOUT or change is None:
        return size
    return f"{size}\n{percent_change(change)}"


def _grouped_bars(axes: Any, merged: dict[str, dict[str, Figure]], bars: Sequence[tuple[str, str, str, bool]], *,
                  scale: float, as_slot: bool, preferred_probe: str | None) -> None:
    layouts = list(merged)
    width = 0.8 / len(bars)
    in_legend: set[str] = set()
    for index, (metric, label, colour, with_change) in enumerate(bars):
        changes = reductions(merged, metric) if with_change else {}
        for position, layout in enumerate(layouts):
            figure = merged[layout].get(metric)
            if figure is None:
                continue
            x = position + (index - (len(bars) - 1) / 2) * width
            fallback = preferred_probe is not None and figure.probe != preferred_probe
            axes.bar(x, figure.value / scale, width * 0.92, color=colour, edgecolor="black" if fallback else "white",
                     hatch="//" if fallback else None, label=None if label in in_legend else label, zorder=3)
            in_legend.add(label)
            axes.annotate(_bar_label(figure, changes.get(layout), layout, as_slot), (x, figure.value / scale),
                          xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=7.5 if not as_slot else 7,
                          rotation=90 if not as_slot else 0, fontweight="bold" if changes.get(layout) else None)
    axes.set_xticks(range(len(layouts)), layouts, fontsize=10)
    axes.grid(axis="y", color="#dddddd", linewidth=0.6, zorder=0)
    axes.set_axisbelow(True)


def render_comparison(runs: list[RunResult], out_stem: Path) -> list[Path]:
    """Draw the comparison of the complete ``runs`` to ``<out_stem>.png`` and ``.svg``."""
    merged = merged_metrics(runs)
    figure = new_figure(14, 6.4)
    rss_axes, slot_axes = figure.subplots(1, 2, width_ratios=(3, 2))

    _grouped_bars(rss_axes, merged, RSS_BARS, scale=MIB, as_slot=False, preferred_probe="rss")
    rss_axes.set_ylabel("RSS, MiB (whole process)")
    rss_axes.set_ylim(top=rss_axes.get_ylim()[1] * 1.3)  # room for the rotated labels
    rss_axes.set_title("Server RSS per layout; change versus naive on the bars", fontsize=11, loc="left")
    rss_axes.legend(fontsize=8, loc="upper right", frameon=False)
    fallback = any(f.probe != "rss" for figures in merged.values() for m, *_ in RSS_BARS
                   for f in [figures.get(m)] if f is not None)
    if fallback:
        rss_axes.text(0.0, -0.12, "hatched: no rss-probe run for this layout, figure from a tracing probe's run "
                      "(its RSS includes the tracer)", transform=rss_axes.transAxes, fontsize=8, va="top")

    _grouped_bars(slot_axes, merged, SLOT_BARS, scale=1, as_slot=True, preferred_probe=None)
    slot_axes.set_yscale("log")
    slot_axes.set_ylabel("bytes per slot (log scale)")
    slot_axes.set_ylim(1, slot_axes.get_ylim()[1] * 4)  # bars start at 1 B, so small slots still show
    slot_axes.set_title("One preallocated slot: Python heap beside C", fontsize=11, loc="left")
    slot_axes.legend(fontsize=8, loc="upper right", frameon=False)

    complete = [run for run in runs if run.status == "complete"]
    figure.suptitle(f"memdiet: connection-table layouts compared · max_conns {_common_parameter(complete, 'max_conns')}"
                    f" · C = {_common_parameter(complete, 'connections')}", fontsize=13, x=0.01, ha="left")
    return save_figure(figure, out_stem)
