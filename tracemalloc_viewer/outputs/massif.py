"""Output: a massif.out file, written as valgrind's massif writes it (``ms_print`` and
massif-visualizer read it).

Layout: ``desc:``, ``cmd:``, ``time_unit: ms``, then per snapshot a ``#-----------`` /
``snapshot=N`` / ``#-----------`` header, ``time=`` (ms since the first sample, or the sample index
when the series has no clock), ``mem_heap_B=``, ``mem_heap_extra_B=0``, ``mem_stacks_B=0``
(Python tracers see neither allocator overhead nor stacks) and ``heap_tree=empty|detailed|peak``,
followed for detailed snapshots by the tree: ``nK: BYTES LABEL`` lines indented one space per level,
each node's children the callers of its frame, down each call stack the source recorded (a
tracemalloc dump's ``tracemalloc.start(N)`` frames, a memray capture's whole Python stack), built by
:mod:`..massif_tree` with massif's threshold rule. ``desc:`` states the exact ``--threshold`` and
``--depth`` the trees were built with (the tree labels round the threshold to two decimals, as massif
does), so :mod:`..massif_check` can check every node against them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

from ..massif_tree import DEFAULT_DEPTH, DEFAULT_THRESHOLD, MassifSnapshot, Node, massif_snapshots
from ..model import Detail, Series

SEPARATOR = "#-----------"


def render(series: Series, detail: Detail, threshold: float = DEFAULT_THRESHOLD,
           depth: int = DEFAULT_DEPTH) -> str:
    """The massif.out text of ``series``."""
    desc = (f"--tool=tracemalloc_viewer --source={series.source} --time={series.time_source} "
            f"--threshold={threshold:g} --detailed-freq={detail.every} --depth={depth}")
    lines = [f"desc: {desc}", f"cmd: {' '.join(series.command.split()) or '(unknown)'}", "time_unit: ms"]
    for snapshot in massif_snapshots(series, detail, threshold, depth):
        lines.extend(_snapshot_lines(snapshot))
    return "\n".join(lines) + "\n"


def write(series: Series, path: str | Path, detail: Detail, threshold: float = DEFAULT_THRESHOLD,
          depth: int = DEFAULT_DEPTH) -> Path:
    """Write the massif.out file to ``path`` (through a temporary file and a rename)."""
    path = Path(path)
    text = render(series, detail, threshold, depth)
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def _snapshot_lines(snapshot: MassifSnapshot) -> Iterator[str]:
    yield SEPARATOR
    yield f"snapshot={snapshot.number}"
    yield SEPARATOR
    yield f"time={snapshot.time}"
    yield f"mem_heap_B={snapshot.heap}"
    yield "mem_heap_extra_B=0"
    yield "mem_stacks_B=0"
    yield f"heap_tree={snapshot.kind}"
    if snapshot.tree is not None:
        yield from _tree_lines(snapshot.tree)


def _tree_lines(root: Node) -> Iterator[str]:
    # Iterative depth-first walk: memray stacks can be deeper than Python's recursion limit.
    stack: list[tuple[Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        yield f"{' ' * depth}n{len(node.children)}: {node.size} {node.label}"
        stack.extend((child, depth + 1) for child in reversed(node.children))
