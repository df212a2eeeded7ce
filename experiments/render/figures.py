"""Shared pieces of every chart: a figure without pyplot's global state, phase shading, saving.

matplotlib is imported inside the functions, so importing the renderers costs nothing until a
chart is drawn, and no GUI backend is ever touched: figures are ``matplotlib.figure.Figure``
objects rendered by the Agg (PNG) and SVG backends directly.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from ..dataset.results import Phase, write_atomic

FORMATS = ("png", "svg")
PNG_DPI = 110
PHASE_SHADES = ("#f0f0f0", "#ffffff")
#: Per-site colours (matplotlib's tab20 with the greys left out) and the colour of "other".
SITE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
                "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2")
OTHER_COLOUR = "#c7c7c7"
#: One colour per layout, in study order, shared by the charts that compare layouts.
LAYOUT_COLOURS = ("#d62728", "#ff7f0e", "#bcbd22", "#2ca02c", "#1f77b4", "#9467bd", "#8c564b")


def new_figure(width_in: float, height_in: float) -> Any:
    """A matplotlib Figure of that size in inches, detached from pyplot."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout="constrained")


def save_figure(figure: Any, out_stem: Path) -> list[Path]:
    """Write ``<out_stem>.png`` and ``<out_stem>.svg`` atomically (each rendered in memory, then
    written to a temporary file and renamed); return their paths."""
    paths = []
    for fmt in FORMATS:
        path = Path(f"{out_stem}.{fmt}")
        buffer = io.BytesIO()
        # No creation date or version in the files: the same results give the same bytes.
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        figure.savefig(buffer, format=fmt, dpi=PNG_DPI, metadata=metadata)
        write_atomic(path, buffer.getvalue())
        paths.append(path)
    return paths


def shade_phases(axes: Any, phases: Sequence[Phase]) -> None:
    """Shade ``phases`` alternately on ``axes`` and name each at the top, staggered on two rows so
    short phases (ramp, drain) do not overprint their neighbours."""
    for index, phase in enumerate(phases):
        axes.axvspan(phase.start_s, phase.end_s, color=PHASE_SHADES[index % 2], zorder=0, linewidth=0)
        axes.axvline(phase.start_s, color="#b0b0b0", linewidth=0.6, zorder=0.5)
        axes.text((phase.start_s + phase.end_s) / 2, 0.985 if index % 2 == 0 else 0.935, phase.name,
                  transform=axes.get_xaxis_transform(), ha="center", va="top", fontsize=8, color="#404040",
                  bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
                  zorder=5)


def title_of(run: Any) -> str:
    """``naive · tracemalloc probe · max_conns 65,536 · C = 1,000``, and ``(incomplete)`` if so."""
    parameters = run.parameters
    parts = [run.layout, f"{run.probe} probe"]
    if parameters.get("max_conns") is not None:
        parts.append(f"max_conns {int(parameters['max_conns']):,}")
    if parameters.get("connections") is not None:
        parts.append(f"C = {int(parameters['connections']):,}")
    title = " · ".join(parts)
    return title if run.status == "complete" else f"{title} ({run.status})"


def series_column(series: Any, name: str) -> tuple[list[float], list[float]]:
    """(times, values) of a run's CSV column (``rss.csv``, ``heap.csv``) as every curve of a run draws
    it, the PNG and the interactive page alike: rows with a blank left out, and a zero RSS, USS or PSS,
    which is no sample (a live process always has resident pages: it was read after the server
    exited)."""
    if series is None or name not in series.columns:
        return [], []
    no_sample = name.endswith("ss_bytes")  # rss_bytes, uss_bytes, pss_bytes
    pairs = [(t, v) for t, v in zip(series["time_s"], series[name])
             if t is not None and v is not None and not (no_sample and v == 0)]
    return [t for t, _ in pairs], [v for _, v in pairs]
