"""Output: a massif-style stacked-area chart (PNG or SVG) of the largest sites across a series.

The samples that have sites are stacked: the ``top`` sites (by the most bytes each reaches in any
sample, grouped ``by`` lineno or filename; sites that never reach 1% of the peak are left in
``other``, as massif's threshold would) from the bottom up, then ``other`` for the rest of the heap.
When some samples have only a total (memray's memory records between detailed ones), the total is
drawn over the stack as a line. The peak is marked. x is seconds since the first sample (or the
sample index when the series has no clock), y is MiB.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from ..model import Frame, Series
from ..names import function_name
from ..stats import group
from ..units import short_path

FORMATS = (".png", ".svg")
MIB = 1024 * 1024
#: Percent of the peak a site must reach at some sample to get its own layer.
LAYER_THRESHOLD = 1.0


def site_matrix(series: Series, top: int = 10, by: str = "lineno") -> tuple[list[int], list[tuple[Frame, ...]], list[list[int]], list[int]]:
    """(indices of the samples with sites, the ``top`` keys, bytes[key][sample], other[sample])."""
    indices = [index for index, sample in enumerate(series.samples) if sample.sites is not None]
    grouped = [group(series.samples[index].sites or (), by) for index in indices]
    largest: dict[tuple[Frame, ...], int] = {}
    for groups in grouped:
        for key, (size, _count) in groups.items():
            largest[key] = max(largest.get(key, 0), size)
    floor = series.peak.total_bytes * LAYER_THRESHOLD / 100 if series.samples else 0
    ranked = sorted(largest, key=lambda key: (-largest[key], key[0].filename, key[0].lineno))
    keys = [key for key in ranked if largest[key] >= floor and largest[key] > 0][:top]
    sizes = [[groups.get(key, (0, 0))[0] for groups in grouped] for key in keys]
    other = [series.samples[index].total_bytes - sum(column) for index, column in zip(indices, zip(*sizes))] \
        if keys else [series.samples[index].total_bytes for index in indices]
    return indices, keys, sizes, other


def render(series: Series, path: str | Path, top: int = 10, by: str = "lineno", title: str | None = None) -> Path:
    """Draw the chart into ``path`` (``.png`` or ``.svg``, chosen by its suffix)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{path}: the timeline is written as .png or .svg")
    import matplotlib.pyplot as plt

    chart = figure(series, top, by, title)
    try:
        chart.savefig(path)
    finally:
        plt.close(chart)
    return path


def figure(series: Series, top: int = 10, by: str = "lineno", title: str | None = None):
    """The chart as a matplotlib ``Figure`` (the caller closes it with ``pyplot.close``). ``title``
    defaults to the series' source and command; a long one is wrapped (and shrunk if need be) to fit
    inside the figure."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    indices, keys, sizes, other = site_matrix(series, top, by)
    times = [sample.time_s for sample in series.samples]
    chart, axes = plt.subplots(figsize=(11, 5.5), dpi=100, layout="constrained")
    try:
        if indices:
            x = [times[index] for index in indices]
            layers = [[size / MIB for size in row] for row in sizes] + [[size / MIB for size in other]]
            labels = [_label(key[0]) for key in keys] + ["other"]
            palette = matplotlib.colormaps["tab20"]
            colors = [palette(index % 20) for index in range(len(keys))] + ["#bbbbbb"]  # other: grey
            if len(x) > 1:
                axes.stackplot(x, layers, labels=labels, colors=colors, alpha=0.9)
            else:  # one sample has no area: draw it as one stacked bar
                bottom = 0.0
                for layer, label, color in zip(layers, labels, colors):
                    axes.bar(x, layer, bottom=bottom, width=1.0, label=label, color=color, alpha=0.9)
                    bottom += layer[0]
        if len(indices) < len(series.samples):
            axes.plot(times, [sample.total_bytes / MIB for sample in series.samples],
                      color="black", linewidth=1, label="total heap")
        peak = series.peak
        axes.axvline(peak.time_s, color="red", linestyle="--", linewidth=0.8)
        right_half = peak.time_s > (times[0] + times[-1]) / 2
        axes.annotate(f"peak {peak.total_bytes / MIB:.2f} MiB", (peak.time_s, peak.total_bytes / MIB),
                      textcoords="offset points", xytext=(-4 if right_half else 4, 4),
                      ha="right" if right_half else "left", fontsize=8, color="red")
        axes.set_xlabel("time (s)" if series.has_clock else "snapshot index")
        axes.set_ylabel("heap (MiB)")
        axes.set_ylim(bottom=0)
        if len(indices) > 1:
            axes.margins(x=0)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
        _fit_title(chart, axes, title or f"{series.source}: {series.command}")
    except BaseException:
        plt.close(chart)
        raise
    return chart


#: The title's font size (points), the smallest it shrinks to, and the most lines it wraps to.
TITLE_FONT_PT = 10.0
TITLE_MIN_FONT_PT = 6.0
TITLE_MAX_LINES = 3


def _fit_title(chart, axes, text: str) -> None:
    """Set ``text`` as the axes' title, wrapped to the width it has (the title is centred on the
    axes, which the legend pushes left) in at most :data:`TITLE_MAX_LINES` lines, smaller type before
    a cut; the constrained layout then makes room above the axes for every line. Measured, not
    guessed: the figure is drawn and the title's box checked against the figure's."""
    words = " ".join(text.split())
    renderer = chart.canvas.get_renderer()
    font_pt = TITLE_FONT_PT
    # Characters per line, first guessed from the figure's width (a glyph is about 0.6 em), then
    # corrected by what the drawn title measures.
    per_line = max(10, int(chart.bbox.width / (font_pt * chart.dpi / 72 * 0.6)))
    for _attempt in range(12):
        lines = textwrap.wrap(words, per_line, break_long_words=True, break_on_hyphens=False) or [""]
        if len(lines) > TITLE_MAX_LINES and font_pt > TITLE_MIN_FONT_PT:
            font_pt = max(TITLE_MIN_FONT_PT, font_pt - 1)
            per_line = int(per_line * (font_pt + 1) / font_pt)
            continue
        if len(lines) > TITLE_MAX_LINES:
            lines = lines[:TITLE_MAX_LINES]
            lines[-1] = lines[-1][: max(1, per_line - 1)] + "\u2026"
        axes.set_title("\n".join(lines), fontsize=font_pt)
        chart.canvas.draw()
        box, whole = axes.title.get_window_extent(renderer), chart.bbox
        # The title is centred on the axes: it may reach as far as the nearer figure edge allows.
        centre = (box.x0 + box.x1) / 2
        room = 2 * min(centre - whole.x0, whole.x1 - centre) - 4  # px, a small margin
        if box.width <= room and box.y1 <= whole.y1:
            return
        per_line = max(10, min(per_line - 1, int(per_line * room / box.width)))


def _label(frame: Frame) -> str:
    if frame.lineno == 0:
        return short_path(frame.filename)
    name = function_name(frame)
    text = f"{short_path(frame.filename)}:{frame.lineno}"
    return f"{text} ({name})" if name else text
