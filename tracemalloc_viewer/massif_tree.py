"""Massif's view of a series: numbered snapshots in ms, and heap trees built the way massif builds them.

A heap tree starts at a root holding the whole heap; its children are the allocating lines (the
most recent frame of each traceback), their children the callers, and so on down each call stack
(``depth`` frames at most, massif's ``--depth``), so a node's bytes are the sum of its children's.
The rules are valgrind's own (``coregrind/m_xtree.c``, which writes massif's trees since 3.13):

- one significance limit per snapshot, :func:`significant_bytes`: ``threshold`` percent of the
  snapshot's total, rounded down to whole bytes; a child with fewer bytes is insignificant;
- at each node, every insignificant child is merged into one ``in K places, all below massif's
  threshold (T%)`` node (``in 1 place, below ...`` for one), which has no children;
- children are sorted by bytes, largest first; equal ones by code address (the merged node's is 0);
- sibling nodes are distinct frames: one label (``0xADDR: function (file:line)``) appears once under
  a parent, whatever the traceback's function names (they are looked up once per frame).

Where this differs from massif, it is because a Python traceback is not a C stack: bytes whose
traceback stops at a node that also has callers below it (a native caller, a thread's first frame)
go to a ``0x0: ??? (no further Python frames)`` child, so sums stay exact (massif leaves them out of
the children). Both the ``massif`` export and the ``chart`` output draw from these objects, so the
chart shows exactly what ``ms_print`` shows for the exported file.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Protocol, Sequence

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


def significant_bytes(total_bytes: int, threshold: float) -> int:
    """The fewest bytes a node needs to stand on its own in a snapshot of ``total_bytes`` (heap, extra
    heap and stacks: what ms_print calls the total), as massif computes it: ``threshold`` percent,
    rounded down to a whole byte; 1 when the snapshot is empty (everything is then insignificant),
    unless ``threshold`` is 0 (everything is shown)."""
    if total_bytes == 0 and threshold != 0:
        return 1
    return int(total_bytes * threshold / 100)


def build_tree(sites: Sequence[Site], total: int, threshold: float = DEFAULT_THRESHOLD,
               depth: int = DEFAULT_DEPTH) -> Node:
    """The heap tree of ``sites`` (whose sizes add up to ``total``): each traceback cut at ``depth``
    frames, the callers of a frame its children (see the module docstring for massif's rules)."""
    trie = _Trie()
    labels: dict[Frame, str] = {}  # one label per frame: function names are looked up in the source
    for site in sites:
        path = []
        for frame in site.frames[:depth]:
            label = labels.get(frame)
            if label is None:
                label = labels[frame] = frame_label(frame)
            path.append(label)
        trie.add(path, site.size)
    if trie.size != total:
        raise ValueError(f"sites add up to {trie.size} B, the heap is {total} B")
    return _convert(trie, ROOT_LABEL, significant_bytes(total, threshold), threshold, is_root=True)


class _Tree(Protocol):
    children: Sequence["_Tree"]


def tree_depth(root: _Tree) -> int:
    """Levels below the root of the deepest branch (0 for a root alone; 1 when the root's children are
    leaves, as in a tree of allocating lines without their callers). ``root``: a :class:`Node`, or any
    node with ``children`` (:mod:`.massif_check` reads files into its own)."""
    deepest = 0
    stack = [(root, 0)]
    while stack:  # iterative: memray stacks can be deeper than Python's recursion limit
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in node.children)
    return deepest


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
        self.children: dict[str, _Trie] = {}  # by frame label: siblings are distinct frames

    def add(self, labels: Sequence[str], size: int) -> None:
        node = self
        node.size += size
        for label in labels:
            child = node.children.get(label)
            if child is None:
                child = node.children[label] = _Trie()
            child.size += size
            node = child
        node.own += size


def _convert(root: _Trie, root_label: str, limit: int, threshold: float, is_root: bool = False) -> Node:
    """The trie as massif's nodes (iterative: memray stacks can be deeper than the recursion limit)."""
    top = Node(root.size, root_label)
    pending: list[tuple[_Trie, Node, bool]] = [(root, top, is_root)]
    while pending:
        trie, node, at_root = pending.pop()
        if not trie.children and not at_root:
            continue  # a leaf: its bytes are its own
        candidates: list[tuple[int, str, _Trie | None]] = [
            (child.size, label, child) for label, child in trie.children.items()
        ]
        if trie.own and (trie.children or at_root):
            candidates.append((trie.own, NO_FURTHER_FRAMES, None))
        below = [candidate for candidate in candidates if candidate[0] < limit]
        for size, label, child_trie in candidates:
            if size >= limit:
                child = Node(size, label)
                node.children.append(child)
                if child_trie is not None:
                    pending.append((child_trie, child, False))
        if below:
            places = len(below)
            node.children.append(Node(sum(size for size, _, _ in below), threshold_label(places, threshold),
                                      places=places))
        node.children.sort(key=_massif_order)
    return top


def _massif_order(node: Node) -> tuple[int, int, str]:
    """massif's order of siblings: largest first; equal sizes by code address, the merged node's 0
    (``ms_group_revcmp_total``); then by label, for a stable file when two hashes collide."""
    address = 0 if node.places else int(node.label[2:node.label.index(":")], 16)
    return -node.size, address, node.label


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())
