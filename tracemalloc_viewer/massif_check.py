"""A strict reader of massif.out files: it accepts what valgrind's massif writes and rejects the
rest, naming the line. Use it to validate a file before handing it to ``ms_print`` or
massif-visualizer::

    python -m tracemalloc_viewer.massif_check massif.out.1234 [...]

Rules (each violation is a :class:`MassifFormatError` naming the line):

* the header is exactly one ``desc: ...`` line, one ``cmd: ...`` line and ``time_unit: i|ms|B``;
* each snapshot is ``#-----------``, ``snapshot=N`` (N counting from 0), ``#-----------``, then
  ``time=``, ``mem_heap_B=``, ``mem_heap_extra_B=``, ``mem_stacks_B=`` (non-negative integers, in
  that order) and ``heap_tree=empty|detailed|peak``; times never decrease;
* a detailed or peak snapshot is followed by its tree: ``nK: BYTES LABEL`` lines, each indented one
  space more than its parent, K being the number of child lines that follow; the root's bytes equal
  ``mem_heap_B``; a node with children has exactly the sum of their bytes, the below-threshold line
  included; children are sorted by bytes, largest first; at most one child per node is the merged
  ``in 1 place, below massif's threshold (X.XX%)`` / ``in K places, all below massif's threshold
  (X.XX%)`` node (K >= 2), and it has no children; other child labels start ``0xHEX: ``, and no two
  children of one node have the same label (one node per frame, as massif groups by code address);
* the threshold rule, as valgrind applies it (``coregrind/m_xtree.c``): the file has one threshold T
  (``--threshold=T`` on the ``desc:`` line, else the one the merged nodes state, else massif's
  default 1%), every merged node states it, and in each snapshot, with S its significance limit
  (:func:`~.massif_tree.significant_bytes`: T percent of heap + extra + stacks, rounded down), every
  named node below the root has at least S bytes and a merged node of K places at most K * (S - 1)
  (each place had fewer than S). A threshold known only from the labels' two decimals is taken as the
  interval they round from;
* exactly one snapshot is the peak, and no snapshot's total (heap + extra + stacks) exceeds it
  (massif itself records a new peak only after a 1% rise: pass ``peak_tolerance=0.01`` for files
  written by valgrind);
* no blank lines, no comments, and the file ends with a newline.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .errors import ViewerInputError
from .massif_tree import significant_bytes, tree_depth
from .untrusted import MASSIF_MAX_BYTES, read_text

SEPARATOR = "#-----------"
TIME_UNITS = ("i", "ms", "B")
HEAP_TREE_KINDS = ("empty", "detailed", "peak")

_NODE = re.compile(r"^( *)n(0|[1-9][0-9]{0,18}): (0|[1-9][0-9]{0,18}) (\S.*)$")
_BELOW_ONE = re.compile(r"^in 1 place, below massif's threshold \(([0-9]+\.[0-9]{2})%\)$")
_BELOW_MANY = re.compile(r"^in ([2-9]|[1-9][0-9]+) places, all below massif's threshold \(([0-9]+\.[0-9]{2})%\)$")
_CODE_LABEL = re.compile(r"^0x[0-9A-F]+: \S")
_NUMBER = re.compile(r"^(0|[1-9][0-9]{0,18})$")
#: Every number in the file (times, sizes, counts) is below this: what massif itself can write.
NUMBER_LIMIT = 2**63
#: ``--threshold=T`` among the ``desc:`` line's options (valgrind's, or this viewer's export).
_DESC_THRESHOLD = re.compile(r"(?:^| )--threshold=([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?: |$)")
#: massif's default --threshold, in percent.
MASSIF_DEFAULT_THRESHOLD = 1.0
#: Half a unit of the labels' last decimal: a threshold read from a label is known to this much.
_LABEL_ROUNDING = 0.005


class MassifFormatError(ValueError):
    """The file breaks a rule; ``line`` is the 1-based line number (0 when it is about the file)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


@dataclass
class TreeNode:
    """A parsed tree line: ``size`` bytes, ``label``, ``children``, and its 1-based ``line``."""

    size: int
    label: str
    line: int
    children: list["TreeNode"] = field(default_factory=list)

    @property
    def below_threshold(self) -> bool:
        return bool(_BELOW_ONE.match(self.label) or _BELOW_MANY.match(self.label))

    @property
    def places(self) -> int:
        """The number of places a below-threshold node merges (0 for any other node)."""
        if _BELOW_ONE.match(self.label):
            return 1
        many = _BELOW_MANY.match(self.label)
        return int(many.group(1)) if many else 0

    @property
    def stated_threshold(self) -> float | None:
        """The threshold (percent) a below-threshold node's label states; None for any other node."""
        match = _BELOW_ONE.match(self.label) or _BELOW_MANY.match(self.label)
        return float(match.groups()[-1]) if match else None


@dataclass
class Snapshot:
    number: int
    time: int
    heap: int
    heap_extra: int
    stacks: int
    kind: str
    line: int
    tree: TreeNode | None = None

    @property
    def total(self) -> int:
        """Bytes as ms_print counts them: heap + extra heap + stacks."""
        return self.heap + self.heap_extra + self.stacks

    @property
    def depth(self) -> int:
        """Levels of the tree below its root (0 without a tree; 1: the allocating lines, no callers)."""
        return tree_depth(self.tree) if self.tree is not None else 0


@dataclass
class MassifFile:
    """A checked file. ``threshold``: the percent its trees were cut at (see the threshold rule)."""

    desc: str
    cmd: str
    time_unit: str
    snapshots: list[Snapshot]
    threshold: float = MASSIF_DEFAULT_THRESHOLD

    @property
    def peak(self) -> Snapshot:
        return next(snapshot for snapshot in self.snapshots if snapshot.kind == "peak")

    @property
    def detailed(self) -> list[Snapshot]:
        return [snapshot for snapshot in self.snapshots if snapshot.kind != "empty"]


def parse(text: str, peak_tolerance: float = 0.0) -> MassifFile:
    """Parse and validate massif.out ``text``; raise :class:`MassifFormatError` on the first fault."""
    return _Parser(text, peak_tolerance).parse()


def check_file(path: str | Path, peak_tolerance: float = 0.0) -> MassifFile:
    """:func:`parse` the file at ``path``: a regular file of at most 256 MiB of strict UTF-8 (raises
    :class:`~.errors.ViewerInputError` otherwise, naming the bad byte)."""
    return parse(read_text(Path(path), MASSIF_MAX_BYTES), peak_tolerance)


class _Parser:
    def __init__(self, text: str, peak_tolerance: float) -> None:
        if not text:
            raise MassifFormatError(0, "empty file")
        if not text.endswith("\n"):
            raise MassifFormatError(text.count("\n") + 1, "the file does not end with a newline")
        self.lines = text[:-1].split("\n")
        self.position = 0  # index of the next line
        self.peak_tolerance = peak_tolerance

    # -- line access --
    def _next(self, what: str) -> str:
        if self.position >= len(self.lines):
            raise MassifFormatError(self.position, f"file ends where {what} was expected")
        line = self.lines[self.position]
        self.position += 1
        if not line.strip():
            raise MassifFormatError(self.position, "blank line")
        return line

    def _field(self, name: str) -> int:
        line = self._next(f"{name}=")
        prefix = f"{name}="
        if not line.startswith(prefix) or not _NUMBER.match(line[len(prefix):]):
            raise MassifFormatError(self.position, f"expected {prefix}<non-negative integer below 2**63>")
        value = int(line[len(prefix):])
        if value >= NUMBER_LIMIT:
            raise MassifFormatError(self.position, f"{name}= is 2**63 or more")
        return value

    # -- structure --
    def parse(self) -> MassifFile:
        desc = self._next("desc:")
        if not desc.startswith("desc: "):
            raise MassifFormatError(self.position, f"expected 'desc: ...'")
        cmd = self._next("cmd:")
        if not cmd.startswith("cmd: "):
            raise MassifFormatError(self.position, f"expected 'cmd: ...' (one desc line only)")
        unit_line = self._next("time_unit:")
        unit = unit_line[len("time_unit: "):] if unit_line.startswith("time_unit: ") else None
        if unit not in TIME_UNITS:
            raise MassifFormatError(self.position, f"expected 'time_unit: i|ms|B'")
        snapshots: list[Snapshot] = []
        while self.position < len(self.lines):
            snapshots.append(self._snapshot(len(snapshots), snapshots[-1].time if snapshots else 0))
        if not snapshots:
            raise MassifFormatError(self.position, "no snapshot")
        self._check_peak(snapshots)
        threshold = self._check_threshold(desc[len("desc: "):], snapshots)
        return MassifFile(desc[len("desc: "):], cmd[len("cmd: "):], unit, snapshots, threshold)

    def _snapshot(self, expected_number: int, previous_time: int) -> Snapshot:
        if self._next(SEPARATOR) != SEPARATOR:
            raise MassifFormatError(self.position, f"expected {SEPARATOR!r} before a snapshot")
        start = self.position
        number = self._field("snapshot")
        if number != expected_number:
            raise MassifFormatError(self.position, f"snapshot={number}, expected snapshot={expected_number}")
        if self._next(SEPARATOR) != SEPARATOR:
            raise MassifFormatError(self.position, f"expected {SEPARATOR!r} after snapshot={number}")
        time = self._field("time")
        if time < previous_time:
            raise MassifFormatError(self.position, f"time={time} is before the previous snapshot's {previous_time}")
        heap = self._field("mem_heap_B")
        extra = self._field("mem_heap_extra_B")
        stacks = self._field("mem_stacks_B")
        kind_line = self._next("heap_tree=")
        kind = kind_line[len("heap_tree="):] if kind_line.startswith("heap_tree=") else None
        if kind not in HEAP_TREE_KINDS:
            raise MassifFormatError(self.position, f"expected 'heap_tree=empty|detailed|peak'")
        snapshot = Snapshot(number, time, heap, extra, stacks, kind, start)
        if kind != "empty":
            snapshot.tree = self._tree()
            if snapshot.tree.size != heap:
                raise MassifFormatError(snapshot.tree.line,
                                        f"tree root has {snapshot.tree.size} B, mem_heap_B is {heap}")
        return snapshot

    def _tree(self) -> TreeNode:
        # Iterative: each entry is (node, depth, children still to read).
        root = self._node(0)
        pending: list[tuple[TreeNode, int, int]] = [(root[0], 0, root[1])]
        while pending:
            node, depth, remaining = pending[-1]
            if remaining == 0:
                pending.pop()
                self._check_children(node)
                continue
            pending[-1] = (node, depth, remaining - 1)
            child, count = self._node(depth + 1)
            node.children.append(child)
            pending.append((child, depth + 1, count))
        return root[0]

    def _node(self, depth: int) -> tuple[TreeNode, int]:
        line = self._next(f"a tree line at depth {depth}")
        match = _NODE.match(line)
        if not match:
            raise MassifFormatError(self.position, f"expected a tree line 'nK: BYTES LABEL'")
        indent, count, size, label = match.groups()
        if int(size) >= NUMBER_LIMIT or int(count) >= NUMBER_LIMIT:
            raise MassifFormatError(self.position, "a tree line's size or child count is 2**63 or more")
        if len(indent) != depth:
            raise MassifFormatError(self.position, f"indented {len(indent)} spaces, expected {depth}")
        node = TreeNode(int(size), label, self.position)
        if depth == 0 and not label.startswith("("):
            raise MassifFormatError(self.position, f"root label should be massif's '(heap allocation functions) ...'")
        if "below massif's threshold" in label and not node.below_threshold:
            raise MassifFormatError(self.position, "malformed below-threshold label")
        if depth > 0 and not node.below_threshold and not _CODE_LABEL.match(label):
            raise MassifFormatError(self.position, f"label should start '0xADDRESS: '")
        if node.below_threshold and int(count):
            raise MassifFormatError(self.position, "a below-threshold node cannot have children")
        return node, int(count)

    def _check_children(self, node: TreeNode) -> None:
        if not node.children:
            return
        total = sum(child.size for child in node.children)
        if total != node.size:
            raise MassifFormatError(node.line, f"node has {node.size} B, its children add up to {total} B")
        for earlier, later in zip(node.children, node.children[1:]):
            if later.size > earlier.size:
                raise MassifFormatError(later.line, f"children not sorted: {later.size} B after {earlier.size} B")
        merged = [child for child in node.children if child.below_threshold]
        if len(merged) > 1:
            raise MassifFormatError(merged[1].line, "more than one below-threshold node under one parent")
        seen: dict[str, int] = {}
        for child in node.children:
            if not child.below_threshold and seen.setdefault(child.label, child.line) != child.line:
                raise MassifFormatError(child.line, f"a sibling on line {seen[child.label]} has the same label "
                                                    "one frame is one node under its parent")

    def _check_threshold(self, desc: str, snapshots: Sequence[Snapshot]) -> float:
        """Check every tree against the file's threshold (see the module's rules); return it."""
        merged = [node for snapshot in snapshots if snapshot.tree is not None
                  for node in _nodes(snapshot.tree) if node.below_threshold]
        stated = _DESC_THRESHOLD.search(desc)
        if stated:
            threshold, rounding = float(stated.group(1)), 0.0
        elif merged:
            threshold, rounding = merged[0].stated_threshold, _LABEL_ROUNDING
        else:
            threshold, rounding = MASSIF_DEFAULT_THRESHOLD, 0.0
        for node in merged:
            if abs(node.stated_threshold - round(threshold, 2)) > 1e-9:
                raise MassifFormatError(node.line, f"the label states a threshold of {node.stated_threshold:.2f}%, "
                                                   f"the file's is {threshold:g}%")
        for snapshot in snapshots:
            if snapshot.tree is None:
                continue
            lowest = significant_bytes(snapshot.total, max(0.0, threshold - rounding))
            highest = significant_bytes(snapshot.total, threshold + rounding)
            for node in _nodes(snapshot.tree):
                if node is snapshot.tree:
                    continue
                if node.below_threshold:
                    if node.size > node.places * (highest - 1):
                        raise MassifFormatError(node.line, f"{node.size} B in {node.places} place(s) below the "
                                                           f"threshold: each place has under {highest} B "
                                                           f"({threshold:g}% of snapshot {snapshot.number}'s "
                                                           f"{snapshot.total} B), so at most {node.places * (highest - 1)} B")
                elif node.size < lowest:
                    raise MassifFormatError(node.line, f"{node.size} B is below the threshold ({threshold:g}% of "
                                                       f"snapshot {snapshot.number}'s {snapshot.total} B is {lowest} B): "
                                                       f"it belongs in the merged node")
        return threshold

    def _check_peak(self, snapshots: Sequence[Snapshot]) -> None:
        peaks = [snapshot for snapshot in snapshots if snapshot.kind == "peak"]
        if len(peaks) != 1:
            raise MassifFormatError(0, f"{len(peaks)} peak snapshots, expected exactly one")
        peak = peaks[0]
        allowed = peak.total * (1 + self.peak_tolerance)
        larger = next((snapshot for snapshot in snapshots if snapshot.total > allowed), None)
        if larger is not None:
            raise MassifFormatError(larger.line, f"snapshot {larger.number} ({larger.total} B) exceeds the "
                                                 f"peak snapshot {peak.number} ({peak.total} B)")


def _nodes(root: TreeNode):
    """Every node of a tree, the root first (iterative: trees can be deeper than the recursion limit)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracemalloc_viewer.massif_check",
                                     description="Validate massif.out files strictly.")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--peak-tolerance", type=float, default=0.0,
                        help="fraction by which a snapshot may exceed the peak (0.01 for valgrind's files)")
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        try:
            massif = check_file(path, args.peak_tolerance)
        except ViewerInputError as error:
            print(error, file=sys.stderr)
            status = max(status, 2)
        except MassifFormatError as error:
            print(f"{path}: {error}", file=sys.stderr)
            status = max(status, 1)
        else:
            peak = massif.peak
            deepest = max(snapshot.depth for snapshot in massif.snapshots)
            print(f"{path}: ok ({len(massif.snapshots)} snapshots, {len(massif.detailed)} detailed, "
                  f"peak snapshot {peak.number}: {peak.heap} B, trees {deepest} level{'' if deepest == 1 else 's'} "
                  f"deep at most)")
    return status


if __name__ == "__main__":
    sys.exit(main())
