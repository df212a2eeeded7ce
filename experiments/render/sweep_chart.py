"""The sweep's chart: per layout (a column), the data and the fitted laws.

Top row: RSS (MiB) against slots; each point one phase of one run, coloured by its held connections
(idle-empty at 0, idle-held at each C), and the fitted ``a + b·slots + c·held`` drawn for each held
value. Bottom row: RSS minus the fitted ``b·slots`` against held connections: the same points with the
slot term taken out, the fitted ``a + c·held`` and the 95% band of that mean (at the grid's mean
table size). The load-phase points are left out: they belong to the load model, reported as a table.

Rules: reads :class:`~experiments.dataset.sweep.Sweep` only; draws with :mod:`.figures` (no pyplot);
the command decides where the files go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..dataset.results import LOAD
from ..dataset.sweep import Sweep
from .figures import LAYOUT_COLOURS, new_figure, save_figure
from .units import MIB

PANEL_WIDTH_IN, PANEL_HEIGHT_IN = 3.0, 2.8
#: One colour per held-connection value, 0 first (idle-empty).
HELD_COLOURS = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


def render_sweep_chart(sweep: Sweep, out_stem: Path) -> list[Path]:
    """Draw the chart of the module's docstring to ``<out_stem>.png`` and ``.svg``; return the paths."""
    layouts = sweep.layouts or ["(none)"]
    figure = new_figure(max(PANEL_WIDTH_IN * len(layouts), 6.0), PANEL_HEIGHT_IN * 2 + 0.9)
    grid = figure.subplots(2, len(layouts), squeeze=False)
    for column, layout in enumerate(layouts):
        top, bottom = grid[0][column], grid[1][column]
        if layout not in sweep.layouts:
            top.set_axis_off()
            bottom.set_axis_off()
            continue
        _panels(sweep, layout, top, bottom, LAYOUT_COLOURS[column % len(LAYOUT_COLOURS)])
    target = sweep.document["target"]
    figure.suptitle(f"memdiet sweep ({sweep.status}): RSS = a + b·slots + c·held per layout, 95% intervals\n"
                    f"(predictions at {target['slots']:,} slots and {target['held']:,} held: index.md)",
                    fontsize=9, x=0.01, ha="left")
    return save_figure(figure, out_stem)


def _panels(sweep: Sweep, layout: str, top: Any, bottom: Any, colour: str) -> None:
    points = [p for p in sweep.points(layout) if p.phase != LOAD]
    fit = sweep.fit(layout)
    held_values = sorted({p.held for p in points})
    colours = {held: HELD_COLOURS[i % len(HELD_COLOURS)] for i, held in enumerate(held_values)}
    for held in held_values:
        chosen = [p for p in points if p.held == held]
        top.scatter([p.slots for p in chosen], [p.rss_bytes / MIB for p in chosen], s=16, color=colours[held],
                    label=f"held {held:,}", zorder=3)
    slots = sorted({p.slots for p in points})
    if fit is not None and slots:
        a, b, c = fit.coefficients
        xs = [min(slots), max(slots)]
        for held in held_values:
            top.plot(xs, [(a + b * x + c * held) / MIB for x in xs], color=colours[held], linewidth=1.0, alpha=0.8,
                     zorder=2)
        mean_slots = sum(p.slots for p in points) / len(points)
        bottom.scatter([p.held for p in points], [(p.rss_bytes - b * p.slots) / MIB for p in points], s=16,
                       color=[colours[p.held] for p in points], zorder=3)
        hs = [held_values[0] + (held_values[-1] - held_values[0]) * i / 40 for i in range(41)]
        # The band of the fitted mean at the grid's mean table size, shifted by that size's b·slots.
        bands = [fit.predict((1.0, mean_slots, h)).mean for h in hs]
        shift = b * mean_slots
        bottom.fill_between(hs, [(band.low - shift) / MIB for band in bands], [(band.high - shift) / MIB for band in bands],
                            color=colour, alpha=0.2, linewidth=0, zorder=1)
        bottom.plot(hs, [(a + c * h) / MIB for h in hs], color=colour, linewidth=1.2, zorder=2)
        b_ci = fit.coefficient("slots")
        c_ci = fit.coefficient("held")
        top.set_title(f"{layout}: b = {b:,.1f} B/slot\n[{b_ci.low:,.1f}, {b_ci.high:,.1f}]", fontsize=8.5, loc="left")
        bottom.set_title(f"c = {c:,.0f} B/held conn [{c_ci.low:,.0f}, {c_ci.high:,.0f}]", fontsize=8.5, loc="left")
    else:
        top.set_title(f"{layout}: no fit", fontsize=8.5, loc="left")
        bottom.set_axis_off()
    if slots:
        top.set_xticks(slots, [f"{value:,}" for value in slots])
    top.set_xlabel("slots (max_conns)", fontsize=7.5)
    top.set_ylabel("RSS (MiB)", fontsize=7.5)
    bottom.set_xlabel("held connections", fontsize=7.5)
    bottom.set_ylabel("RSS − b·slots (MiB)", fontsize=7.5)
    for axes in (top, bottom):
        axes.tick_params(labelsize=7)
        axes.ticklabel_format(axis="y", useOffset=False, style="plain")
        axes.grid(color="#e4e4e4", linewidth=0.6)
    top.legend(fontsize=6.5, loc="upper left")


__all__ = ["render_sweep_chart"]
