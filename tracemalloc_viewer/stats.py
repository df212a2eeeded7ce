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
from .names import FileKeys, chosen_names, is_pseudo_site

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
    """``{key frames: [size, count]}`` over ``sites``.

    A frame's key is its file and line (the whole file for ``by="filename"``): its function name is
    shown, not compared, so a line that one tracer names ``<listcomp>`` and another
    ``Table.__init__`` is one key, named as :func:`~.names.chosen_names` names it."""
    sites = tuple(sites)
    groups = _group_sites(sites, by, cumulative)
    names = _names(sites, by, cumulative)
    return {_named(key, names): entry for key, entry in groups.items()}


def statistics(sites: Iterable[Site], by: str = "lineno", cumulative: bool = False) -> list[Stat]:
    """Groups, largest first (by size, then count, then key), like ``Snapshot.statistics``."""
    stats = [Stat(frames, size, count) for frames, (size, count) in group(sites, by, cumulative).items()]
    stats.sort(key=lambda stat: (stat.size, stat.count, sort_key(stat.frames)), reverse=True)
    return stats


def compare(old_sites: Iterable[Site], new_sites: Iterable[Site], by: str = "lineno",
            cumulative: bool = False, order: str = "change") -> list[StatDiff]:
    """Differences per group, like ``new.compare_to(old, by, cumulative)``, on the two sides'
    :func:`common_basis` (which changes nothing for two tracemalloc dumps).

    ``order``: ``change`` (tracemalloc's: largest absolute size change first) or ``growth``
    (largest growth first, largest shrinkage last).
    """
    basis = common_basis(old_sites, new_sites)
    old = _group_sites(basis.old, by, cumulative)
    new = _group_sites(basis.new, by, cumulative)
    names = _names(basis.old + basis.new, by, cumulative)
    diffs = []
    for key, (size, count) in new.items():
        old_size, old_count = old.pop(key, (0, 0))
        diffs.append(StatDiff(_named(key, names), size, size - old_size, count, count - old_count))
    for key, (size, count) in old.items():
        diffs.append(StatDiff(_named(key, names), 0, -size, 0, -count))
    if order == "change":
        diffs.sort(key=lambda diff: (abs(diff.size_diff), diff.size, abs(diff.count_diff), diff.count,
                                     sort_key(diff.frames)), reverse=True)
    elif order == "growth":
        diffs.sort(key=lambda diff: (diff.size_diff, diff.size, diff.count_diff, diff.count,
                                     sort_key(diff.frames)), reverse=True)
    else:
        raise ValueError(f"unknown order {order!r} (change or growth)")
    return diffs


# --- the common basis of two samples ---------------------------------------------------------------
#: What a side's sites fold into when the other side cannot name them.
OTHER = "(other)"


@dataclass(frozen=True)
class Basis:
    """Two samples' sites made comparable (see :func:`common_basis`), and one-line notes saying how."""

    old: tuple[Site, ...]
    new: tuple[Site, ...]
    notes: tuple[str, ...] = ()


def common_basis(old_sites: Iterable[Site], new_sites: Iterable[Site]) -> Basis:
    """The two samples' sites keyed alike, so that a diff between two forms of one heap is empty.

    - File names: when one side holds shortened paths (a memdiet run's ``sites.csv``) and the other
      absolute ones (a tracemalloc dump, a memray capture), every path takes one form
      (:class:`~.names.FileKeys`), and each line one function name (:func:`~.names.chosen_names`).
    - Pseudo-sites (``(other)``, ``(probe)``, ``(not attributed)``, ...) stand for bytes whose lines
      a side does not name. When a side has them, the sites it names are the basis: on each side,
      a line not named by every side that has pseudo-sites, and a pseudo-site the other side lacks,
      is counted in ``(other)``. A sites.csv snapshot (its top lines, ``(other)``, ``(probe)``)
      against a full dump then compares those top lines one by one and the rest as a whole.

    Two samples with one path form and no pseudo-site (two tracemalloc dumps) are returned as given.
    """
    old, new = tuple(old_sites), tuple(new_sites)
    notes: list[str] = []
    keys = FileKeys(frame.filename for site in old + new for frame in site.frames)
    if keys.shortening:
        names = chosen_names((frame for site in old + new for frame in site.frames), keys.key)
        rekeyed: dict[Frame, Frame] = {}

        def rekey(frame: Frame) -> Frame:
            done = rekeyed.get(frame)
            if done is None:
                filename = keys.key(frame.filename)
                done = rekeyed[frame] = Frame(filename, frame.lineno, names.get((filename, frame.lineno)))
            return done

        old, new = (tuple(Site(tuple(map(rekey, site.frames)), site.size, site.count) for site in side)
                    for side in (old, new))
        roots = ", ".join(keys.roots[:3]) + (f" (+{len(keys.roots) - 3})" if len(keys.roots) > 3 else "")
        notes.append("file names: absolute paths shortened to the other side's form"
                     + (f" (relative to {roots})" if roots else ""))
    heads = [[_head(site) for site in side] for side in (old, new)]
    pseudo = [{frame.filename for frame in side if is_pseudo_site(frame)} for side in heads]
    if not any(pseudo):
        return Basis(old, new, tuple(notes))
    named = [{(frame.filename, frame.lineno) for frame in side if not is_pseudo_site(frame)} for side in heads]
    basis = set.intersection(*(side_named for side_named, side_pseudo in zip(named, pseudo) if side_pseudo))
    shared_pseudo = pseudo[0] & pseudo[1]
    folded_sides = []
    counts = []
    for side, side_heads in zip((old, new), heads):
        kept, folded, folded_bytes = [], 0, 0
        other = Frame(OTHER, 0, "sites not named on both sides")
        for site, head in zip(side, side_heads):
            if head.filename in shared_pseudo if is_pseudo_site(head) else (head.filename, head.lineno) in basis:
                kept.append(site)
            else:
                kept.append(Site((other,), site.size, site.count))
                folded += 1
                folded_bytes += site.size
        folded_sides.append(tuple(kept))
        counts.append((folded, folded_bytes))
    only_one = sorted((pseudo[0] | pseudo[1]) - shared_pseudo - {OTHER})
    has = "; ".join(f"{label} has {', '.join(sorted(side))}" for label, side in zip(("old", "new"), pseudo) if side)
    notes.append(f"common basis ({has}): counted in {OTHER} are the lines not named on both sides"
                 + (f" and {', '.join(only_one)}" if only_one else "")
                 + f" (old: {counts[0][0]:,} sites, {counts[0][1]:,} B; new: {counts[1][0]:,} sites, {counts[1][1]:,} B)")
    return Basis(folded_sides[0], folded_sides[1], tuple(notes))


def _head(site: Site) -> Frame:
    return site.frames[0] if site.frames else _UNKNOWN


# --- grouping ------------------------------------------------------------------------------------------
_UNKNOWN = Frame("<unknown>", 0)
#: A group's key before its frames are named: ``((file, line), ...)``, most recent first.
_Key = tuple[tuple[str, int], ...]


def _group_sites(sites: Iterable[Site], by: str, cumulative: bool) -> dict[_Key, list[int]]:
    if by not in KEYS:
        raise ValueError(f"unknown grouping {by!r} (choose from {', '.join(KEYS)})")
    if cumulative and by == "traceback":
        raise ValueError("cumulative statistics group by lineno or filename, not traceback")
    groups: dict[_Key, list[int]] = {}

    def add(key: _Key, site: Site) -> None:
        entry = groups.get(key)
        if entry is None:
            groups[key] = [site.size, site.count]
        else:
            entry[0] += site.size
            entry[1] += site.count

    line = by != "filename"
    for site in sites:
        frames = site.frames or (_UNKNOWN,)
        if by == "traceback":
            add(tuple((frame.filename, frame.lineno) for frame in frames), site)
        elif not cumulative:
            add(((frames[0].filename, frames[0].lineno if line else 0),), site)
        else:
            for frame in frames:
                add(((frame.filename, frame.lineno if line else 0),), site)
    return groups


def _names(sites: Sequence[Site], by: str, cumulative: bool) -> dict[tuple[str, int], str | None]:
    """The function name of every line a grouping's keys hold (none for files)."""
    if by == "filename":
        return {}
    if by == "traceback" or cumulative:
        return chosen_names(frame for site in sites for frame in site.frames)
    return chosen_names(site.frames[0] for site in sites if site.frames)


def _named(key: _Key, names: dict[tuple[str, int], str | None]) -> tuple[Frame, ...]:
    return tuple(Frame(filename, lineno, names.get((filename, lineno))) for filename, lineno in key)


def sort_key(frames: Sequence[Frame]) -> tuple:
    """Tie-break on keys as tracemalloc orders tracebacks: frame tuples compared oldest first."""
    return tuple((frame.filename, frame.lineno, frame.function or "") for frame in reversed(frames))

