"""Output: a massif-style stacked-area chart (PNG or SVG) of the largest sites across a series.

The samples that have sites are stacked: the ``top`` sites (by the most bytes each reaches in any
sample, grouped ``by`` lineno or filename; sites that never reach 1% of the peak are left in
``other``, as massif's threshold would) from the bottom up, then ``other`` for the rest of the heap.
When some samples have only a total (memray's memory records between detailed ones), the total is
drawn over the stack as a line. The peak is marked. x is seconds since the first sample (or the
sample index when the series has no clock), y is MiB.
"""

from __future__ import annotations

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
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    indices, keys, sizes, other = site_matrix(series, top, by)
    times = [sample.time_s for sample in series.samples]
    figure, axes = plt.subplots(figsize=(11, 5.5), dpi=100)
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
        axes.set_title(title or f"{series.source}: {' '.join(series.command.split())}"[:100], fontsize=10)
        axes.set_ylim(bottom=0)
        if len(indices) > 1:
            axes.margins(x=0)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)
    return path


def _label(frame: Frame) -> str:
    if frame.lineno == 0:
        return short_path(frame.filename)
    name = function_name(frame)
    text = f"{short_path(frame.filename)}:{frame.lineno}"
    return f"{text} ({name})" if name else text
