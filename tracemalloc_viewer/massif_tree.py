"""Massif's view of a series: numbered snapshots in ms, and heap trees built the way massif builds them.

A heap tree starts at a root holding the whole heap; its children are the allocating lines (the
most recent frame of each traceback), their children the callers, and so on, so a node's bytes are
the sum of its children's. At each node the children below ``threshold`` percent of the snapshot's
heap are merged into one ``in K places, below massif's threshold`` node; children are sorted by
bytes, largest first. Both the ``massif`` export and the ``chart`` output draw from these objects,
so the chart shows exactly what ``ms_print`` shows for the exported file.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Sequence

from .model import Detail, Frame, Series, Site, detailed_indices
from .names import function_name

#: The root label massif writes for heap trees (massif-visualizer and ms_print show it as is).
ROOT_LABEL = "(heap allocation functions) malloc/new/new[], --alloc-fns, etc."
#: Label of the node holding bytes whose recorded traceback stops at the parent (native caller, or cut).
NO_FURTHER_FRAMES = "0x0: ??? (no further Python frames)"
#: massif's default --threshold (percent) and --depth.
DEFAULT_THRESHOLD = 1.0
DEFAULT_DEPTH = 30


@dataclass
class Node:
    """A heap-tree node: ``size`` bytes, ``label`` (text after the byte count), ``children``.
    ``places`` > 0 marks the merged below-threshold node (the number of places merged)."""

    size: int
    label: str
    children: list["Node"] = field(default_factory=list)
    places: int = 0


@dataclass
class MassifSnapshot:
    """One ``snapshot=N`` entry: ``time`` in the file's unit (ms), ``heap`` bytes, ``kind`` one of
    ``empty``, ``detailed``, ``peak``, and ``tree`` for the last two."""

    number: int
    time: int
    heap: int
    kind: str
    tree: Node | None = None


def threshold_label(places: int, threshold: float) -> str:
    """massif's wording, singular and plural as valgrind writes them."""
    if places == 1:
        return f"in 1 place, below massif's threshold ({threshold:.2f}%)"
    return f"in {places} places, all below massif's threshold ({threshold:.2f}%)"


def frame_label(frame: Frame) -> str:
    """``0xADDR: function (file:line)``. Python frames have no code address: ADDR is a stable hash of
    the site, so one site has one address in every snapshot and every file."""
    function = function_name(frame) or "???"
    location = f"{frame.filename}:{frame.lineno}"
    address = zlib.crc32(f"{function}\0{location}".encode("utf-8", "surrogateescape"))
    return _one_line(f"0x{address:X}: {function} ({location})")


def build_tree(sites: Sequence[Site], total: int, threshold: float = DEFAULT_THRESHOLD,
               depth: int = DEFAULT_DEPTH) -> Node:
    """The heap tree of ``sites`` (whose sizes add up to ``total``), frames cut at ``depth``."""
    trie = _Trie()
    for site in sites:
        trie.add(site.frames[:depth], site.size)
    if trie.size != total:
        raise ValueError(f"sites add up to {trie.size} B, the heap is {total} B")
    limit = total * threshold / 100
    return _convert(trie, ROOT_LABEL, limit, threshold, is_root=True)


def massif_times(series: Series) -> list[int]:
    """Sample times in whole milliseconds (the sample index when the series has no clock)."""
    if not series.has_clock:
        return list(range(len(series)))
    return [round(sample.time_s * 1000) for sample in series.samples]


def massif_snapshots(series: Series, detail: Detail, threshold: float = DEFAULT_THRESHOLD,
                     depth: int = DEFAULT_DEPTH) -> list[MassifSnapshot]:
    """The series as massif snapshots: the ones ``detail`` selects (and the peak) with trees."""
    detailed = set(detailed_indices(series, detail))
    peak = series.peak_index
    if peak not in detailed:
        raise ValueError("the peak sample has no allocation sites")
    snapshots = []
    for number, (sample, time) in enumerate(zip(series.samples, massif_times(series))):
        if number in detailed:
            kind = "peak" if number == peak else "detailed"
            tree = build_tree(sample.sites or (), sample.total_bytes, threshold, depth)
            snapshots.append(MassifSnapshot(number, time, sample.total_bytes, kind, tree))
        else:
            snapshots.append(MassifSnapshot(number, time, sample.total_bytes, "empty"))
    return snapshots


# --- building ------------------------------------------------------------------------------------
class _Trie:
    __slots__ = ("size", "own", "children")

    def __init__(self) -> None:
        self.size = 0  # bytes of every traceback through this node
        self.own = 0  # bytes of tracebacks that end here
        self.children: dict[Frame, _Trie] = {}

    def add(self, frames: Sequence[Frame], size: int) -> None:
        node = self
        node.size += size
        for frame in frames:
            child = node.children.get(frame)
            if child is None:
                child = node.children[frame] = _Trie()
            child.size += size
            node = child
        node.own += size


def _convert(trie: _Trie, label: str, limit: float, threshold: float, is_root: bool = False) -> Node:
    node = Node(trie.size, label)
    if not trie.children and not is_root:
        return node  # a leaf: its bytes are its own
    candidates: list[tuple[int, str, _Trie | None]] = [
        (child.size, frame_label(frame), child) for frame, child in trie.children.items()
    ]
    if trie.own and (trie.children or is_root):
        candidates.append((trie.own, NO_FURTHER_FRAMES, None))
    below = [candidate for candidate in candidates if candidate[0] < limit]
    for size, child_label, child_trie in candidates:
        if size >= limit:
            node.children.append(Node(size, child_label) if child_trie is None
                                 else _convert(child_trie, child_label, limit, threshold))
    if below:
        places = len(below)
        node.children.append(Node(sum(size for size, _, _ in below), threshold_label(places, threshold),
                                  places=places))
    # Largest first; on a tie, named places before the merged node, then by label for a stable file.
    node.children.sort(key=lambda child: (-child.size, child.places > 0, child.label))
    return node


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())
