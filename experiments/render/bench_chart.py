"""``bench.png``: RSS with the most connections held, bytes per held connection, keep-alive req/s
and the server's CPU per request (steadier than req/s on a busy machine), one horizontal bar per
subject (the median) with a whisker from min to max, memdiet's layouts in
blue and the peers in orange."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ..dataset.bench_format import held_key
from ..dataset.results import write_atomic
from .figures import PNG_DPI, new_figure

MEMDIET_COLOUR = "#1f77b4"
PEER_COLOUR = "#ff7f0e"
#: (multiplier, axis label, label format) of each panel's unit.
_MIB = (1 / 2**20, "MiB", "{:,.1f}")
_BYTES = (1.0, "bytes", "{:,.0f}")
_THOUSANDS = (1 / 1000, "thousand req/s", "{:,.1f}k")
_MICROSECONDS = (1.0, "microseconds", "{:,.1f}")


def render_chart(document: dict[str, Any], path: Path) -> Path:
    """Draw the chart of a bench document to ``path`` (PNG, written atomically)."""
    n = max(document["plan"]["held"])
    panels = [
        (held_key("held_rss_bytes", n), f"RSS with {n:,} held connections", _MIB),
        (held_key("bytes_per_connection", n), f"Bytes per held connection (N = {n:,})", _BYTES),
        ("req_per_s", f"Keep-alive throughput ({document['throughput_tool']['name']})", _THOUSANDS),
        ("cpu_us_per_request", "Server CPU per request", _MICROSECONDS),
    ]
    subjects = document["subjects"]
    figure = new_figure(17, 1.4 + 0.42 * len(subjects))
    rows = list(range(len(subjects)))[::-1]  # first subject on top
    for column, (key, title, (scale, unit_label, label_format)) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), column + 1)
        for row, subject in zip(rows, subjects):
            summary = subject["summary"].get(key)
            if summary is None:
                axes.text(0, row, " not measured", va="center", fontsize=8, color="#808080")
                continue
            median = summary["median"] * scale
            colour = MEMDIET_COLOUR if subject["kind"] == "memdiet" else PEER_COLOUR
            axes.barh(row, median, color=colour, height=0.6, zorder=2)
            if summary["n"] > 1:
                axes.errorbar(median, row, xerr=[[median - summary["min"] * scale], [summary["max"] * scale - median]],
                              fmt="none", ecolor="#303030", capsize=3, linewidth=1, zorder=3)
            axes.text(summary["max"] * scale, row, "  " + label_format.format(median), va="center", fontsize=8, zorder=4)
        axes.set_yticks(rows, [subject["label"] for subject in subjects] if column == 0 else [""] * len(rows))
        axes.set_title(title, fontsize=10)
        axes.set_xlabel(unit_label)
        axes.margins(x=0.22)
        lowest = min([0.0] + [s["summary"][key]["min"] * scale for s in subjects if key in s["summary"]])
        axes.set_xlim(left=lowest * 1.22)  # 0, unless a noisy figure went below it
        axes.grid(axis="x", color="#e0e0e0", zorder=0)
    trials = document["plan"]["trials"]
    figure.suptitle(f"memdiet bench: medians of {trials} trial(s), whiskers min-max", fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
    write_atomic(path, buffer.getvalue())
    return path
