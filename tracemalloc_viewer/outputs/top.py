"""Output: ``top``, a table of allocation sites (what tracemallocqt shows, in a terminal).

Columns: rank, size, blocks, average block size, share of the total, and the site
(``file:line (function)``, or the file with ``--by filename``). Under each row, its call stacks when
asked (:mod:`..stacks`): with ``--by traceback`` the row's callers, most recent first (``frames`` of
them, 6 unless given); with ``--by lineno`` or ``filename`` and ``frames`` given, the row's largest
call stacks, ``frames`` callers deep, each with its bytes, share of the row and blocks. Sizes are in
KiB/MiB, or exact bytes with ``exact=True``.
"""

from __future__ import annotations

from typing import Sequence

from ..model import Site
from ..stacks import caller_lines, have_callers, row_key, row_stacks, stack_lines
from ..stats import statistics
from ..units import exact_bytes, frame_label, share, tracemalloc_bytes

#: Callers shown under a ``--by traceback`` row when ``frames`` is not given.
TRACEBACK_FRAMES = 6
#: Where the site column starts: stacks are indented one more.
_SITE_COLUMN = 50
#: Said under a table whose rows were asked for their stacks and had none to show.
NO_STACKS = ("(no call stacks: these sites were recorded without their callers, as a memdiet run's sites.csv "
             "snapshots are; its phase-end dumps, snapshots/NN-PHASE.tmsnap, hold them)")


def render(sites: Sequence[Site], title: str, by: str = "lineno", limit: int = 10, cumulative: bool = False,
           exact: bool = False, frames: int | None = None) -> str:
    """The table; ``frames``: callers per stack (None: 6 under ``--by traceback`` rows, no stacks under
    the others). Stacks need a non-cumulative grouping (a cumulative row counts every frame)."""
    if frames is not None and cumulative:
        raise ValueError("call stacks are listed under non-cumulative rows only")
    stats = statistics(sites, by, cumulative)
    total = sum(site.size for site in sites)
    blocks = sum(site.count for site in sites)
    mode = f"by {by}" + (", cumulative" if cumulative else "")
    stacks = row_stacks(sites, by, frames) if frames is not None and by != "traceback" else None
    lines = [
        f"{title}",
        f"total {_size(total, exact)} in {blocks:,} blocks, {len(stats):,} sites {mode}"
        + (f", call stacks {frames} callers deep" if stacks is not None else ""),
        "",
        f"{'#':>4} {'size':>12} {'blocks':>10} {'average':>10} {'% total':>8}  site",
    ]
    shown = stats[:limit] if limit > 0 else stats
    callers_recorded = False
    for rank, stat in enumerate(shown, 1):
        lines.append(f"{rank:>4} {_size(stat.size, exact):>12} {stat.count:>10,} "
                     f"{_size(stat.average, exact, average=True):>10} {share(stat.size, total):>8}  "
                     f"{frame_label(stat.frames[0])}")
        if by == "traceback":
            lines.extend(caller_lines(stat.frames, TRACEBACK_FRAMES if frames is None else frames, _SITE_COLUMN + 1))
        elif stacks is not None:
            row = stacks.get(row_key(stat.frames, by), [])
            lines.extend(stack_lines(row, _SITE_COLUMN + 1, lambda size, signed=False: _size(size, exact), by))
            callers_recorded = callers_recorded or have_callers(row, by)
    rest = stats[len(shown):]
    if rest:
        rest_size = sum(stat.size for stat in rest)
        lines.append(f"{'':>4} {_size(rest_size, exact):>12} {sum(s.count for s in rest):>10,} "
                     f"{'':>10} {share(rest_size, total):>8}  ({len(rest):,} more sites)")
    if stacks is not None and shown and not callers_recorded:
        lines.append(NO_STACKS)
    return "\n".join(lines) + "\n"


def _size(size: float, exact: bool, average: bool = False) -> str:
    if exact:
        return f"{size:.1f}" if average else exact_bytes(size)
    return tracemalloc_bytes(size)
