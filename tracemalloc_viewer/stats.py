"""Per-site statistics of a sample's allocations, computed as tracemalloc's ``Snapshot.statistics``
and ``Snapshot.compare_to`` compute them, so ``top`` and ``diff`` agree with tracemalloc figure for
figure and in the same order, and work the same on sites from any source.

Keys (``by``): ``lineno`` groups by the allocating line (the most recent frame), ``filename`` by its
file, ``traceback`` by the whole traceback. ``cumulative`` (lineno and filename only) credits every
frame of a traceback instead of only the most recent one; as in tracemalloc, a traceback passing
through the same key twice (recursion, or two frames in one file) credits it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .model import Frame, Site

KEYS = ("lineno", "filename", "traceback")


@dataclass(frozen=True)
class Stat:
    """One group: ``frames`` is its key (most recent first; one frame unless ``by`` is traceback;
    lineno 0 for a file), ``size`` bytes and ``count`` memory blocks."""

    frames: tuple[Frame, ...]
    size: int
    count: int

    @property
    def average(self) -> float:
        """Average block size in bytes (0 when there is no block)."""
        return self.size / self.count if self.count else 0.0


@dataclass(frozen=True)
class StatDiff:
    """A group in two samples: ``size``/``count`` in the new one, ``size_diff``/``count_diff`` = new - old."""

    frames: tuple[Frame, ...]
    size: int
    size_diff: int
    count: int
    count_diff: int


def group(sites: Iterable[Site], by: str = "lineno", cumulative: bool = False) -> dict[tuple[Frame, ...], list[int]]:
    """``{key frames: [size, count]}`` over ``sites``."""
    if by not in KEYS:
        raise ValueError(f"unknown grouping {by!r} (choose from {', '.join(KEYS)})")
    if cumulative and by == "traceback":
        raise ValueError("cumulative statistics group by lineno or filename, not traceback")
    groups: dict[tuple[Frame, ...], list[int]] = {}

    def add(key: tuple[Frame, ...], site: Site) -> None:
        entry = groups.get(key)
        if entry is None:
            groups[key] = [site.size, site.count]
        else:
            entry[0] += site.size
            entry[1] += site.count

    for site in sites:
        frames = site.frames or (Frame("<unknown>", 0),)
        if by == "traceback":
            add(frames, site)
        elif not cumulative:
            add((_key(frames[0], by),), site)
        else:
            for frame in frames:
                add((_key(frame, by),), site)
    return groups


def statistics(sites: Iterable[Site], by: str = "lineno", cumulative: bool = False) -> list[Stat]:
    """Groups, largest first (by size, then count, then key), like ``Snapshot.statistics``."""
    stats = [Stat(frames, size, count) for frames, (size, count) in group(sites, by, cumulative).items()]
    stats.sort(key=lambda stat: (stat.size, stat.count, sort_key(stat.frames)), reverse=True)
    return stats


def compare(old_sites: Iterable[Site], new_sites: Iterable[Site], by: str = "lineno",
            cumulative: bool = False, order: str = "change") -> list[StatDiff]:
    """Differences per group, like ``new.compare_to(old, by, cumulative)``.

    ``order``: ``change`` (tracemalloc's: largest absolute size change first) or ``growth``
    (largest growth first, largest shrinkage last).
    """
    old = group(old_sites, by, cumulative)
    new = group(new_sites, by, cumulative)
    diffs = []
    for frames, (size, count) in new.items():
        old_size, old_count = old.pop(frames, (0, 0))
        diffs.append(StatDiff(frames, size, size - old_size, count, count - old_count))
    for frames, (size, count) in old.items():
        diffs.append(StatDiff(frames, 0, -size, 0, -count))
    if order == "change":
        diffs.sort(key=lambda diff: (abs(diff.size_diff), diff.size, abs(diff.count_diff), diff.count,
                                     sort_key(diff.frames)), reverse=True)
    elif order == "growth":
        diffs.sort(key=lambda diff: (diff.size_diff, diff.size, diff.count_diff, diff.count,
                                     sort_key(diff.frames)), reverse=True)
    else:
        raise ValueError(f"unknown order {order!r} (change or growth)")
    return diffs


def sort_key(frames: Sequence[Frame]) -> tuple:
    """Tie-break on keys as tracemalloc orders tracebacks: frame tuples compared oldest first."""
    return tuple((frame.filename, frame.lineno, frame.function or "") for frame in reversed(frames))


def _key(frame: Frame, by: str) -> Frame:
    return Frame(frame.filename, 0) if by == "filename" else frame
