"""The call stacks under a ``top`` or ``diff`` row (``--frames N``): who called the allocating line.

A row of ``top``/``diff`` groups sites by their allocating line, their file, or their whole traceback
(:mod:`.stats`); its stacks are those sites' tracebacks, most recent frame first. Rules:

- ``--by traceback``: a row *is* one traceback; :func:`caller_lines` lists its callers under it, at
  most ``frames`` of them and then how many more, as tracemalloc's ``Traceback.format()`` lists them.
- ``--by lineno`` or ``filename`` (not ``--cumulative``, whose rows count every frame of a traceback):
  :func:`row_stacks` groups a row's sites by their first ``frames`` callers (for a file's row, the
  allocating line first, then its callers), equal ones merged; :func:`stack_lines` lists the
  :data:`STACKS_PER_ROW` largest under the row and sums the rest on one line. ``diff`` compares the
  stacks of the two sides (:func:`stack_changes`), ordered as its rows are: largest absolute change
  first, or largest growth first.
- A site recorded without callers (a memdiet run's ``sites.csv`` rows, a dump taken with
  ``tracemalloc.start(1)``) is one ``(no callers recorded)`` stack; a row none of whose sites has a
  caller lists nothing, since there is nothing to tell.
- Frames are keyed by file and line, as rows are; shown as :func:`~.units.frame_label` names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from .model import Frame, Site
from .units import frame_label, share

#: Stacks listed under one row; the rest are summed on one line.
STACKS_PER_ROW = 3
#: What a site without callers shows as its stack.
NO_CALLERS = Frame("(no callers recorded)", 0)
#: The frame of a site recorded without any (as :mod:`.stats` keys it).
_UNKNOWN = Frame("<unknown>", 0)

#: A row's key, as :mod:`.stats` keys rows: (file, line), line 0 for a whole file.
RowKey = tuple[str, int]
#: A stack's key: its frames as (file, line), most recent first.
_StackKey = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Stack:
    """One call stack under a row: ``frames`` shown (the callers, most recent first; for a file's row
    the allocating line first), ``size`` bytes and ``count`` blocks live (in the new sample, for a
    diff), ``size_diff``/``count_diff`` = new - old (0 for ``top``)."""

    frames: tuple[Frame, ...]
    size: int
    count: int
    size_diff: int = 0
    count_diff: int = 0


def row_key(frames: Sequence[Frame], by: str) -> RowKey:
    """The key of the row a traceback falls in (``by``: ``lineno`` or ``filename``)."""
    head = frames[0] if frames else _UNKNOWN
    return head.filename, head.lineno if by == "lineno" else 0


def row_stacks(sites: Iterable[Site], by: str, frames: int) -> dict[RowKey, list[Stack]]:
    """Every row's stacks, ``frames`` callers deep, largest first (bytes, then blocks, then frames)."""
    stacks = {key: list(by_stack.values()) for key, by_stack in _grouped(sites, by, frames).items()}
    for row in stacks.values():
        row.sort(key=lambda stack: (stack.size, stack.count, _order(stack.frames)), reverse=True)
    return stacks


def stack_changes(old_sites: Iterable[Site], new_sites: Iterable[Site], by: str, frames: int,
                  order: str = "change") -> dict[RowKey, list[Stack]]:
    """Every row's stacks in two samples, compared: ``size`` and ``count`` in the new one, the
    differences new - old, ordered as :func:`~.stats.compare` orders rows (``change`` or ``growth``)."""
    old, new = _grouped(old_sites, by, frames), _grouped(new_sites, by, frames)
    changes: dict[RowKey, list[Stack]] = {}
    for key in old.keys() | new.keys():
        before, after = old.get(key, {}), new.get(key, {})
        row = changes[key] = []
        for stack_key in before.keys() | after.keys():
            was, now = before.get(stack_key), after.get(stack_key)
            shown = (now or was).frames
            size, count = (now.size, now.count) if now else (0, 0)
            row.append(Stack(shown, size, count, size - (was.size if was else 0), count - (was.count if was else 0)))
        if order == "change":
            row.sort(key=lambda s: (abs(s.size_diff), s.size, abs(s.count_diff), s.count, _order(s.frames)),
                     reverse=True)
        elif order == "growth":
            row.sort(key=lambda s: (s.size_diff, s.size, s.count_diff, s.count, _order(s.frames)), reverse=True)
        else:
            raise ValueError(f"unknown order {order!r} (change or growth)")
    return changes


def stack_lines(stacks: Sequence[Stack], indent: int, size: Callable[..., str], by: str,
                diff: bool = False) -> list[str]:
    """The lines under a row: its :data:`STACKS_PER_ROW` first stacks, then the rest summed. ``size``
    formats bytes (``size(n)``, and ``size(n, signed=True)`` for a change); ``diff`` shows changes."""
    if not have_callers(stacks, by):
        return []
    if diff:  # a diff tells what changed: a stack that holds what it held is left out
        stacks = [stack for stack in stacks if stack.size_diff or stack.count_diff]
    pad = " " * indent
    total = sum(stack.size for stack in stacks)
    lines = []
    shown = stacks[:STACKS_PER_ROW]
    what = "line" if by == "lineno" else "file"
    for number, stack in enumerate(shown, 1):
        if diff:
            heading = f"stack {number} of {len(stacks)} that changed"
            figures = f"{size(stack.size_diff, signed=True)} (now {size(stack.size)}), {_blocks(stack.count_diff, True)}"
        else:
            heading = f"stack {number} of {len(stacks)}"
            figures = f"{size(stack.size)}, {share(stack.size, total)} of the {what}, {_blocks(stack.count)}"
        lines.append(f"{pad}{heading}: {figures}")
        for position, frame in enumerate(stack.frames):
            if frame == NO_CALLERS:
                lines.append(f"{pad}  {frame.filename}")
            else:
                verb = "at" if by == "filename" and position == 0 else "called from"
                lines.append(f"{pad}  {verb} {frame_label(frame)}")
    rest = stacks[len(shown):]
    if rest:
        figure = (size(sum(stack.size_diff for stack in rest), signed=True) if diff
                  else size(sum(stack.size for stack in rest)))
        lines.append(f"{pad}{len(rest)} more stack{'s' if len(rest) > 1 else ''}: {figure}")
    return lines


def have_callers(stacks: Sequence[Stack], by: str) -> bool:
    """True when some of a row's stacks name a caller (else its sites were recorded without them)."""
    # A line's stack holds its callers alone; a file's, the allocating line and then its callers.
    first_caller = 0 if by == "lineno" else 1
    return any(len(stack.frames) > first_caller and stack.frames[0] != NO_CALLERS for stack in stacks)


def caller_lines(traceback: Sequence[Frame], frames: int, indent: int) -> list[str]:
    """The callers of a whole traceback (``--by traceback``): at most ``frames``, then how many more."""
    callers = traceback[1:]
    pad = " " * indent
    lines = [f"{pad}called from {frame_label(frame)}" for frame in callers[:frames]]
    if len(callers) > frames:
        hidden = len(callers) - frames
        lines.append(f"{pad}... {hidden} more frame{'s' if hidden > 1 else ''}")
    return lines


def _grouped(sites: Iterable[Site], by: str, frames: int) -> dict[RowKey, dict[_StackKey, Stack]]:
    if by not in ("lineno", "filename"):
        raise ValueError(f"stacks are listed under a line's or a file's row, not by {by!r}")
    grouped: dict[RowKey, dict[_StackKey, Stack]] = {}
    for site in sites:
        traceback = site.frames or (_UNKNOWN,)
        shown = traceback[1:1 + frames] if by == "lineno" else traceback[:1 + frames]
        if by == "lineno" and not shown:
            shown = (NO_CALLERS,)
        stack_key = tuple((frame.filename, frame.lineno) for frame in shown)
        row = grouped.setdefault(row_key(traceback, by), {})
        entry = row.get(stack_key)
        row[stack_key] = Stack(shown, site.size, site.count) if entry is None else \
            Stack(entry.frames, entry.size + site.size, entry.count + site.count)
    return grouped


def _blocks(count: int, signed: bool = False) -> str:
    return (f"{count:+,}" if signed else f"{count:,}") + f" block{'' if abs(count) == 1 else 's'}"


def _order(frames: Sequence[Frame]) -> tuple:
    """Tie-break as tracemalloc orders tracebacks: frame tuples compared oldest first."""
    return tuple((frame.filename, frame.lineno) for frame in reversed(frames))
