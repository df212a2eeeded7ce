"""Output: ``top``, a table of allocation sites (what tracemallocqt shows, in a terminal).

Columns: rank, size, blocks, average block size, share of the total, and the site
(``file:line (function)``, or the file with ``--by filename``); with ``--by traceback`` the callers
follow each row, most recent first. Sizes are in KiB/MiB, or exact bytes with ``exact=True``.
"""

from __future__ import annotations

from typing import Sequence

from ..model import Site
from ..stats import Stat, statistics
from ..units import frame_label, human_bytes


def render(sites: Sequence[Site], title: str, by: str = "lineno", limit: int = 10, cumulative: bool = False,
           exact: bool = False, frames: int = 6) -> str:
    stats = statistics(sites, by, cumulative)
    total = sum(site.size for site in sites)
    blocks = sum(site.count for site in sites)
    mode = f"by {by}" + (", cumulative" if cumulative else "")
    lines = [
        f"{title}",
        f"total {_size(total, exact)} in {blocks:,} blocks, {len(stats):,} sites {mode}",
        "",
        f"{'#':>4} {'size':>12} {'blocks':>10} {'average':>10} {'% total':>8}  site",
    ]
    shown = stats[:limit] if limit > 0 else stats
    for rank, stat in enumerate(shown, 1):
        lines.append(f"{rank:>4} {_size(stat.size, exact):>12} {stat.count:>10,} "
                     f"{_size(stat.average, exact, average=True):>10} {_share(stat.size, total):>8}  "
                     f"{frame_label(stat.frames[0])}")
        if by == "traceback":
            lines.extend(_callers(stat, frames))
    rest = stats[len(shown):]
    if rest:
        rest_size = sum(stat.size for stat in rest)
        lines.append(f"{'':>4} {_size(rest_size, exact):>12} {sum(s.count for s in rest):>10,} "
                     f"{'':>10} {_share(rest_size, total):>8}  ({len(rest):,} more sites)")
    return "\n".join(lines) + "\n"


def _callers(stat: Stat, frames: int) -> list[str]:
    callers = stat.frames[1:]
    lines = [f"{'':>49}  called from {frame_label(frame)}" for frame in callers[:frames]]
    if len(callers) > frames:
        hidden = len(callers) - frames
        lines.append(f"{'':>49}  ... {hidden} more frame{'s' if hidden > 1 else ''}")
    return lines


def _size(size: float, exact: bool, average: bool = False) -> str:
    if exact:
        return f"{size:.1f}" if average else f"{int(size)} B"
    return human_bytes(size)


def _share(size: int, total: int) -> str:
    return f"{100 * size / total:.1f}%" if total else "-"
