"""Output: ``diff``, size and block-count changes per site between two samples.

Rows are sorted as tracemalloc's ``compare_to`` sorts them (largest absolute size change first) or,
with ``order="growth"``, largest growth first and largest shrinkage last. The two samples are compared
on their common basis (:func:`~..stats.common_basis`: one form of file name, one row per line, a
breakdown only as fine as the coarser side's); the lines under the title say when that changed
anything.
"""

from __future__ import annotations

from typing import Sequence

from ..model import Site
from ..stats import common_basis, compare
from ..units import frame_label, human_bytes


def render(old: Sequence[Site], new: Sequence[Site], title: str, by: str = "lineno", limit: int = 10,
           cumulative: bool = False, exact: bool = False, order: str = "change") -> str:
    diffs = compare(old, new, by, cumulative, order)
    old_total = sum(site.size for site in old)
    new_total = sum(site.size for site in new)
    lines = [
        title,
        *common_basis(old, new).notes,
        f"total {_size(old_total, exact)} -> {_size(new_total, exact)} "
        f"({_size(new_total - old_total, exact, signed=True)}), {len(diffs):,} sites by {by}"
        + (", cumulative" if cumulative else ""),
        "",
        f"{'#':>4} {'size diff':>12} {'size':>12} {'blocks diff':>12} {'blocks':>10}  site",
    ]
    shown = diffs[:limit] if limit > 0 else diffs
    for rank, diff in enumerate(shown, 1):
        lines.append(f"{rank:>4} {_size(diff.size_diff, exact, signed=True):>12} {_size(diff.size, exact):>12} "
                     f"{diff.count_diff:>+12,} {diff.count:>10,}  {frame_label(diff.frames[0])}")
    if len(diffs) > len(shown):
        lines.append(f"{'':>4} ({len(diffs) - len(shown):,} more sites)")
    return "\n".join(lines) + "\n"


def _size(size: int, exact: bool, signed: bool = False) -> str:
    if exact:
        return f"{size:+d} B" if signed else f"{size:d} B"
    return human_bytes(size, signed=signed)
