"""Output: ``diff``, size and block-count changes per site between two samples.

Rows are sorted as tracemalloc's ``compare_to`` sorts them (largest absolute size change first) or,
with ``order="growth"``, largest growth first and largest shrinkage last. The two samples are compared
on their common basis (:func:`~..stats.common_basis`: one form of file name, one row per line, a
breakdown only as fine as the coarser side's); the lines under the title say when that changed
anything. Under each row, its call stacks when asked (:mod:`..stacks`), as ``top`` shows them: with
``--by traceback`` the row's callers (``frames`` of them, 6 unless given); with ``--by lineno`` or
``filename`` and ``frames`` given, the row's stacks that changed most, ``frames`` callers deep,
ordered as the rows are.
"""

from __future__ import annotations

from typing import Sequence

from ..model import Site
from ..stacks import caller_lines, have_callers, row_key, stack_changes, stack_lines
from ..stats import common_basis, compare
from ..units import exact_bytes, frame_label, tracemalloc_bytes
from .top import NO_STACKS, TRACEBACK_FRAMES

#: Where the site column starts: stacks are indented one more.
_SITE_COLUMN = 56


def render(old: Sequence[Site], new: Sequence[Site], title: str, by: str = "lineno", limit: int = 10,
           cumulative: bool = False, exact: bool = False, order: str = "change", frames: int | None = None) -> str:
    """The table; ``frames``: callers per stack (None: 6 under ``--by traceback`` rows, no stacks under
    the others). Stacks need a non-cumulative grouping (a cumulative row counts every frame)."""
    if frames is not None and cumulative:
        raise ValueError("call stacks are listed under non-cumulative rows only")
    diffs = compare(old, new, by, cumulative, order)
    basis = common_basis(old, new)
    old_total = sum(site.size for site in old)
    new_total = sum(site.size for site in new)
    # The stacks of the sites the rows were made of: the common basis, so both sides key frames alike.
    stacks = stack_changes(basis.old, basis.new, by, frames, order) if frames is not None and by != "traceback" else None
    lines = [
        title,
        *basis.notes,
        f"total {_size(old_total, exact)} -> {_size(new_total, exact)} "
        f"({_size(new_total - old_total, exact, signed=True)}), {len(diffs):,} sites by {by}"
        + (", cumulative" if cumulative else "") + (f", call stacks {frames} callers deep" if stacks is not None else ""),
        "",
        f"{'#':>4} {'size diff':>12} {'size':>12} {'blocks diff':>12} {'blocks':>10}  site",
    ]
    shown = diffs[:limit] if limit > 0 else diffs
    callers_recorded = False
    for rank, diff in enumerate(shown, 1):
        lines.append(f"{rank:>4} {_size(diff.size_diff, exact, signed=True):>12} {_size(diff.size, exact):>12} "
                     f"{diff.count_diff:>+12,} {diff.count:>10,}  {frame_label(diff.frames[0])}")
        if by == "traceback":
            lines.extend(caller_lines(diff.frames, TRACEBACK_FRAMES if frames is None else frames, _SITE_COLUMN + 1))
        elif stacks is not None:
            row = stacks.get(row_key(diff.frames, by), [])
            lines.extend(stack_lines(row, _SITE_COLUMN + 1, lambda size, signed=False: _size(size, exact, signed), by,
                                     diff=True))
            callers_recorded = callers_recorded or have_callers(row, by)
    if len(diffs) > len(shown):
        lines.append(f"{'':>4} ({len(diffs) - len(shown):,} more sites)")
    if stacks is not None and shown and not callers_recorded:
        lines.append(NO_STACKS)
    return "\n".join(lines) + "\n"


def _size(size: int, exact: bool, signed: bool = False) -> str:
    return exact_bytes(size, signed) if exact else tracemalloc_bytes(size, signed=signed)
