"""Per-slot anatomy chart: each layout's bytes per slot split into parts, beside its C size.

One horizontal bar per layout on a log x axis, so a 16 B slot and a 6 KB slot are both readable;
under it a thin grey bar for the same slot as a C struct. Each bar ends at the slot's total size,
and the parts (object header, GC header, attribute storage, buffer...) divide the bar *in proportion
to their bytes*: stacking them at their own log positions would make the first 16 B look as long as
the next 1,000. Every part wide enough is labelled with its bytes; the total and its ratio to C end
the bar. Optionally a black tick marks the bytes per slot a run measured (tracemalloc), to show the
anatomy adds up.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..dataset.anatomy import PART_NAMES, SlotAnatomy
from .figures import new_figure, save_figure
from .units import exact_bytes, whole_bytes

PART_COLOURS = dict(zip(PART_NAMES, ("#6baed6", "#9e9ac8", "#fd8d3c", "#e6550d", "#74c476", "#bdbdbd", "#fdd0a2")))
C_COLOUR = "#636363"
#: Bars start at 1 B: a log axis has no zero.
AXIS_START = 1.0
_WIDTH_IN = 13.0
_PLOT_SHARE = 0.72  # share of the figure's width the axes get, to decide which parts have room for a label


def render_anatomy(anatomies: list[SlotAnatomy], out_stem: Path,
                   measured: dict[str, float] | None = None) -> list[Path]:
    """Draw ``anatomies`` (in the order given, first on top) to ``<out_stem>.png`` and ``.svg``.
    ``measured`` maps a layout to the bytes per slot a run measured, drawn as a tick."""
    measured = measured or {}
    figure = new_figure(_WIDTH_IN, 1.2 + 1.05 * len(anatomies))
    axes = figure.add_subplot()
    largest = max([a.total for a in anatomies] + [a.c_bytes_per_slot for a in anatomies] + [10.0])
    x_max = 10 ** math.ceil(math.log10(largest) + 0.9)  # a decade or so of room for the end labels
    decades = math.log10(x_max / AXIS_START)
    points_per_decade = _WIDTH_IN * _PLOT_SHARE * 72 / decades

    drawn_parts: set[str] = set()
    for row, anatomy in enumerate(anatomies):
        total = anatomy.total
        done = 0.0
        left = AXIS_START
        for name, size in anatomy.nonzero_parts():
            done += size
            # This part's share of the bar's visual (logarithmic) length is its share of the bytes.
            right = AXIS_START * (total / AXIS_START) ** (done / total)
            axes.barh(row, right - left, left=left, height=0.5, color=PART_COLOURS[name], edgecolor="white",
                      linewidth=0.8, label=name if name not in drawn_parts else None, zorder=3)
            drawn_parts.add(name)
            room_pt = math.log10(right / left) * points_per_decade
            # The part's name and bytes where they fit, else its bytes, else nothing (the legend names it).
            label = next((text for text in (f"{name}\n{exact_bytes(size)}", exact_bytes(size))
                          if room_pt > 6.2 * max(map(len, text.split("\n")))), None)
            if label:
                axes.text(math.sqrt(left * right), row, label, ha="center", va="center", fontsize=7.5, zorder=4)
            left = right
        c_size = anatomy.c_bytes_per_slot
        axes.barh(row + 0.38, c_size - AXIS_START, left=AXIS_START, height=0.16, color=C_COLOUR, zorder=3,
                  label="C struct (ctypes.sizeof)" if row == 0 else None)
        axes.text(c_size * 1.08, row + 0.38, f"C: {c_size:,} B", va="center", fontsize=8, color=C_COLOUR)
        ratio = anatomy.total / c_size if c_size else float("nan")
        axes.text(left * 1.12, row, f"{exact_bytes(round(anatomy.total, 1))} in Python  ({ratio:.1f}× C)", va="center",
                  fontsize=9, fontweight="bold", zorder=4)
        if anatomy.layout in measured:
            axes.plot([measured[anatomy.layout]] * 2, [row - 0.32, row + 0.32], color="black", linewidth=1.6, zorder=5,
                      label="measured by tracemalloc" if "measured" not in drawn_parts else None)
            drawn_parts.add("measured")

    axes.set_xscale("log")
    axes.set_xlim(AXIS_START, x_max)
    axes.set_yticks(range(len(anatomies)), [a.layout for a in anatomies], fontsize=11)
    axes.set_ylim(len(anatomies) - 0.4, -0.6)  # first layout on top
    axes.set_xlabel("bytes per slot (log scale; bars start at 1 B)")
    axes.grid(axis="x", which="major", color="#dddddd", linewidth=0.6, zorder=0)
    axes.xaxis.set_major_formatter(_byte_ticks())
    python = anatomies[0].python if anatomies else "?"
    axes.set_title(f"What one preallocated slot costs, by part (CPython {python}, 64-bit), beside its C struct",
                   fontsize=12, loc="left")
    handles, labels = axes.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: PART_NAMES.index(labels[i]) if labels[i] in PART_NAMES else 99)
    axes.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper left", bbox_to_anchor=(1.01, 1.0),
                fontsize=8, frameon=False, title="parts (share of the bar = share of bytes)", title_fontsize=8)
    return save_figure(figure, out_stem)


def _byte_ticks():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: whole_bytes(value))
