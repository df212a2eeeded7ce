"""Massif-style memory curve of one run: heap by allocation site over time, with RSS on top.

Like massif-visualizer: the top N allocation sites (by their peak over the run) as stacked areas,
every other site as one grey "other" band, the phases of the scenario shaded and named, the peak
marked with its size. The process's RSS is drawn as a line over the heap: it includes the
interpreter, the tracer and allocator slack, so it sits above the heap stack. One y axis, MiB.

A run without per-site data (the rss probe) gets RSS and USS over time with its phases.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..dataset.results import OTHER_SITE, RunResult
from .figures import (
    OTHER_COLOUR,
    SITE_COLOURS,
    new_figure,
    save_figure,
    series_column,
    shade_phases,
    title_of,
)
from .units import MIB, human_bytes

DEFAULT_TOP_N = 8


_SITE = re.compile(r"^(?P<path>.*?):(?P<line>\d+)(?P<rest>(?: .*)?)$")


def short_site(site: str) -> str:
    """``/srv/memdiet/server/layouts/naive.py:44 (__init__)`` -> ``layouts/naive.py:44 (__init__)``:
    the file's last two path components, its line and function. Other names are kept whole."""
    match = _SITE.match(site)
    if not match or match["path"].startswith("<"):
        return site
    tail = "/".join(match["path"].replace("\\", "/").split("/")[-2:])
    return f"{tail}:{match['line']}{match['rest']}"


def top_sites(run: RunResult, top_n: int) -> tuple[list[float], list[tuple[str, list[int]]], list[int]]:
    """(snapshot times, [(site, bytes at each time)] for the ``top_n`` sites with the highest peak,
    biggest first, bytes of every other site at each time, the ``(other)`` rows included)."""
    times, by_site = run.site_series()
    ranked = sorted((site for site in by_site if site != OTHER_SITE), key=lambda s: (-max(by_site[s]), s))
    top = [(site, by_site[site]) for site in ranked[:top_n]]
    kept = {site for site, _ in top}
    rest = [sum(values[i] for site, values in by_site.items() if site not in kept) for i in range(len(times))]
    return times, top, rest


def _mark_peak(axes: Any, time_s: float, size: float, what: str) -> None:
    axes.plot([time_s], [size / MIB], marker="v", markersize=9, color="#d62728", zorder=6, linestyle="none")
    axes.annotate(f"{what} peak {human_bytes(size)}", (time_s, size / MIB), xytext=(0, 10), textcoords="offset points",
                  ha="center", va="bottom", fontsize=9, color="#d62728", fontweight="bold", zorder=6,
                  bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})


class _HeapData:
    """What a run holds about its heap: per-site bands (MiB), the traced total, the tracer's own
    memory, and the heap peak (time, bytes)."""

    def __init__(self, run: RunResult, top_n: int) -> None:
        self.times, top, rest = top_sites(run, top_n)
        named_sites = {row[1] for row in run.sites} - {OTHER_SITE}
        remainder = " + the rest" if any(row[1] == OTHER_SITE for row in run.sites) else ""
        self.bands = [[v / MIB for v in values] for _, values in top] + [[v / MIB for v in rest]]
        self.labels = [short_site(site) for site, _ in top] + [f"other: {len(named_sites) - len(top)} smaller sites{remainder}"]
        self.colours = list(SITE_COLOURS[: len(top)]) + [OTHER_COLOUR]
        self.total_times, self.total_bytes = series_column(run.heap, "heap_bytes")
        self.tracer_times, self.tracer_bytes = series_column(run.heap, "tracer_bytes")
        self.peak: tuple[float, float] | None = None
        if self.total_times:
            best = max(range(len(self.total_bytes)), key=self.total_bytes.__getitem__)
            self.peak = (self.total_times[best], self.total_bytes[best])
        elif self.times:
            sums = [sum(band[i] for band in self.bands) * MIB for i in range(len(self.times))]
            best = max(range(len(sums)), key=sums.__getitem__)
            self.peak = (self.times[best], sums[best])

    @property
    def present(self) -> bool:
        return bool(self.times or self.total_times)

    def draw(self, axes: Any, *, with_labels: bool) -> None:
        """Stacked site bands, the traced total and the peak on ``axes``; legend labels only once."""
        if self.times:
            axes.stackplot(self.times, *self.bands, labels=self.labels if with_labels else (), colors=self.colours,
                           alpha=0.9, linewidth=0.3, edgecolor="white", zorder=2)
        if self.total_times:
            axes.plot(self.total_times, [v / MIB for v in self.total_bytes], color="#08306b", linewidth=1.4,
                      linestyle="--", label="heap total (traced)" if with_labels else None, zorder=4)
        if self.peak is not None:
            _mark_peak(axes, *self.peak, "heap")


def _draw_process(axes: Any, run: RunResult, heap: _HeapData) -> None:
    """RSS (and the tracer's bookkeeping) on ``axes``; for a run without heap data also USS, and
    the RSS peak."""
    if heap.tracer_times and any(heap.tracer_bytes):
        axes.plot(heap.tracer_times, [v / MIB for v in heap.tracer_bytes], color="#6a51a3", linewidth=1.1,
                  linestyle=":", label="tracer's own bookkeeping", zorder=4)
    rss_times, rss_bytes = series_column(run.rss, "rss_bytes")
    if rss_times:
        axes.plot(rss_times, [v / MIB for v in rss_bytes], color="black", linewidth=1.6, zorder=5,
                  label="RSS, whole process (interpreter + heap" + (" + tracer)" if heap.present else ")"))
    if heap.present:
        return
    uss_times, uss_bytes = series_column(run.rss, "uss_bytes")
    if uss_times:
        axes.plot(uss_times, [v / MIB for v in uss_bytes], color="#2ca02c", linewidth=1.3, zorder=5,
                  label="USS (pages unique to the server)")
    if rss_times:
        best = max(range(len(rss_bytes)), key=rss_bytes.__getitem__)
        _mark_peak(axes, rss_times[best], rss_bytes[best], "RSS")


def _finish(axes: Any, run: RunResult, last_s: float) -> None:
    shade_phases(axes, run.phases)
    axes.set_ylabel("MiB")
    axes.set_xlim(0, last_s)
    axes.set_ylim(bottom=0, top=max(axes.get_ylim()[1], 1e-3) * 1.15)  # headroom for phase names and peak label
    axes.grid(axis="y", color="#dddddd", linewidth=0.6, zorder=0.5)


#: Below this share of the RSS peak the heap is drawn again in a zoomed panel under the main one.
ZOOM_BELOW = 0.3


def render_massif_curve(run: RunResult, out_stem: Path, top_n: int = DEFAULT_TOP_N) -> list[Path]:
    """Draw ``run``'s curve (:func:`draw_massif_curve`) to ``<out_stem>.png`` and ``<out_stem>.svg``;
    return both paths."""
    return save_figure(draw_massif_curve(run, top_n), out_stem)


def draw_massif_curve(run: RunResult, top_n: int = DEFAULT_TOP_N) -> Any:
    """``run``'s curve as a matplotlib Figure. The site stack spans the run's detailed snapshots:
    the sampler's, and one at every phase end (the tracemalloc probe turns each phase-end dump into
    sites.csv rows), so it reaches the end of idle-after whatever the detail interval became.

    When the heap is small beside the RSS (a compact layout: the interpreter dominates), a second
    panel below shows the heap alone at its own scale, so its sites stay readable."""
    heap = _HeapData(run, top_n)
    rss_times, rss_bytes = series_column(run.rss, "rss_bytes")
    zoom = heap.peak is not None and bool(rss_bytes) and heap.peak[1] < ZOOM_BELOW * max(rss_bytes)
    figure = new_figure(12, 8.5 if zoom else 6.2)
    if zoom:
        main, detail = figure.subplots(2, 1, sharex=True, height_ratios=(1, 1))
    else:
        main, detail = figure.add_subplot(), None
    heap.draw(main, with_labels=True)
    _draw_process(main, run, heap)
    last_s = max([p.end_s for p in run.phases] + rss_times[-1:] + heap.total_times[-1:] + [1e-3])
    _finish(main, run, last_s)
    main.set_title(title_of(run), fontsize=12, loc="left")
    if detail is not None:
        heap.draw(detail, with_labels=False)
        _finish(detail, run, last_s)
        detail.set_title("heap only, zoomed", fontsize=10, loc="left")
    (detail or main).set_xlabel("seconds since server start")
    handles, labels = main.get_legend_handles_labels()
    if handles:
        main.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                    title="heap by allocation site (stacked)" if heap.times else None, title_fontsize=8)
    return figure
