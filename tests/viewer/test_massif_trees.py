"""Massif trees with call stacks: a real nofd run traced with ``--frames 8`` exports a massif.out whose
trees nest each allocating line's callers (checked in ms_print's own printout, against tracemalloc's
own traces, and by the strict checker), a memray capture's trees nest its Python stacks, and ``top``
and ``diff --frames`` list each row's call stacks with tracemalloc's figures. The builder's threshold
rule is massif's (valgrind's ``m_xtree.c``), down to the byte.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tracemalloc
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.viewer_support import (  # noqa: F401 (fixtures)
    REPO,
    session_run,
    memray_capture,
    ms_print,
    viewer,
)
from tracemalloc_viewer.massif_check import check_file
from tracemalloc_viewer.massif_tree import build_tree, significant_bytes, tree_depth
from tracemalloc_viewer.model import Frame, Site

RUN_TIMEOUT_S = 180
#: The tiny nofd run (about 3 s of scenario), tracemalloc keeping 8 frames per traceback.
FRAMES = 8
RUN_ARGS = ("run", "--layout", "nofd", "--probe", "tracemalloc", "--max-conns", "4096", "--connections", "50",
            "--idle", "0.4", "--load", "0.6", "--frames", str(FRAMES))


@pytest.fixture(scope="session")
def nofd_run(tmp_path_factory) -> Path:
    return session_run(tmp_path_factory, "memdiet-run-nofd-frames", RUN_ARGS, RUN_TIMEOUT_S)


@pytest.fixture(scope="module")
def nofd_massif(nofd_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trees") / "massif.out.nofd-tracemalloc"
    result = viewer("massif", nofd_run, "-o", out)
    assert result.returncode == 0, result.stderr
    return out


def _dump(run: Path, phase: str) -> Path:
    [path] = (run / "snapshots").glob(f"*-{phase}.tmsnap")
    return path


# --- ms_print's printout, parsed ------------------------------------------------------------------
@dataclass
class PrintedNode:
    """A node of a tree as ms_print prints it: ``->12.34% (1,234B) LABEL``, two columns per level."""

    level: int
    size: int
    label: str
    children: list["PrintedNode"] = field(default_factory=list)


_PRINTED_ROOT = re.compile(r"^\d+\.\d+% \(([\d,]+)B\) (\(heap allocation functions\).*)$")
_PRINTED_NODE = re.compile(r"^((?:[| ] )*)->\d+\.\d+% \(([\d,]+)B\) (.*)$")


def printed_trees(text: str) -> list[PrintedNode]:
    """Every heap tree ms_print printed, in order."""
    trees: list[PrintedNode] = []
    path: list[PrintedNode] = []
    for line in text.splitlines():
        root = _PRINTED_ROOT.match(line)
        if root:
            path = [PrintedNode(0, int(root.group(1).replace(",", "")), root.group(2))]
            trees.append(path[0])
            continue
        node = _PRINTED_NODE.match(line)
        if node and path:
            printed = PrintedNode(len(node.group(1)) // 2 + 1, int(node.group(2).replace(",", "")), node.group(3))
            del path[printed.level:]
            assert len(path) == printed.level, f"ms_print skipped a level at {line!r}"
            path[-1].children.append(printed)
            path.append(printed)
    return trees


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)


def _location(label: str) -> tuple[str, int] | None:
    match = re.search(r"\((.+):(\d+)\)$", label)
    return (match.group(1), int(match.group(2))) if match else None


def _same_file(recorded: str, shown: str) -> bool:
    """A dump's path against the export's short form (relative to the server, or from pythonX.Y/)."""
    return recorded == shown or recorded.endswith("/" + shown)


# --- the nofd run ----------------------------------------------------------------------------------
def test_the_run_traced_the_frames_it_was_given(nofd_run):
    document = json.loads((nofd_run / "result.json").read_text())
    assert document["parameters"]["trace_frames"] == FRAMES
    command = document["server_command"]
    assert command[command.index("--trace-frames") + 1] == str(FRAMES)
    for name in document["files"]["snapshots"]:
        assert tracemalloc.Snapshot.load(str(nofd_run / name)).traceback_limit == FRAMES


def test_nofd_massif_trees_are_call_stacks_in_ms_print(nofd_massif):
    """The acceptance check of issue 13: ms_print shows trees at least three levels deep, each node's
    bytes the sum of its children's as ms_print prints them, and the table's slots under the caller
    that builds the table; the strict checker passes the file."""
    massif = check_file(nofd_massif)
    assert massif.threshold == 1.0
    printed = ms_print(nofd_massif)
    assert printed.returncode == 0, printed.stderr
    trees = printed_trees(printed.stdout)
    assert len(trees) == len(massif.detailed)
    depths = [max(node.level for node in _walk(tree)) for tree in trees]
    # sites.csv snapshots are one frame deep (the allocating line); the phase-end dumps carry stacks,
    # cut at the run's 8 frames (the server's stacks are deeper: runpy, main, the loop, the coroutine).
    assert max(depths) == FRAMES and sum(depth >= 3 for depth in depths) >= 5, depths
    # ms_print prints massif's nodes as they are (it may fold one into its own "below ms_print's
    # threshold" line, with its children, when 1% of the total rounds below a whole byte).
    assert all(shown <= snapshot.depth for shown, snapshot in zip(depths, massif.detailed))
    for tree in trees:
        for node in _walk(tree):
            if node.children:
                assert sum(child.size for child in node.children) == node.size, node.label
    # The connection table: allocated in server/layouts/, called (two or more levels down) from cli.py.
    table_stacks = [
        node for tree in trees for node in tree.children if "server/layouts/" in node.label
        and any("server/cli.py" in deeper.label and deeper.level >= 3 for deeper in _walk(node))
    ]
    assert table_stacks, "no tree holds the table's slots under their callers"


def test_nofd_massif_callers_hold_tracemallocs_own_bytes(nofd_run, nofd_massif):
    """In the idle-held dump's tree, every named caller of an allocating line holds exactly the bytes
    of the traces whose first two frames are that line and that caller (tracemalloc's own traces)."""
    document = json.loads((nofd_run / "result.json").read_text())
    name = str(_dump(nofd_run, "idle-held").relative_to(nofd_run))
    snapshot = tracemalloc.Snapshot.load(str(nofd_run / name))
    by_two: dict[tuple, int] = defaultdict(int)
    for trace in snapshot.traces:
        frames = [(frame.filename, frame.lineno) for frame in reversed(trace.traceback)]  # most recent first
        by_two[tuple(frames[:2])] += trace.size
    massif = check_file(nofd_massif)
    time_ms = round(document["files"]["snapshot_times_s"][name] * 1000)
    [tree] = [s.tree for s in massif.detailed if s.time == time_ms and s.heap == sum(t.size for t in snapshot.traces)]
    checked = 0
    for line_node in tree.children:
        line = _location(line_node.label)
        if line is None or line_node.label.startswith("0x0:") or "(probe)" in line_node.label:
            continue
        for caller_node in line_node.children:
            caller = _location(caller_node.label)
            if caller is None or caller_node.below_threshold or caller_node.label.startswith("0x0:"):
                continue
            expected = sum(size for key, size in by_two.items() if len(key) == 2
                           and _same_file(key[0][0], line[0]) and key[0][1] == line[1]
                           and _same_file(key[1][0], caller[0]) and key[1][1] == caller[1])
            assert caller_node.size == expected, (line_node.label, caller_node.label)
            checked += 1
    assert checked >= 5


def test_view_top_frames_lists_each_lines_stacks_as_tracemalloc_groups_them(nofd_run):
    dump = _dump(nofd_run, "idle-held")
    result = subprocess.run([sys.executable, "-m", "experiments", "view", "top", str(dump), "--frames", "3", "--bytes",
                             "--limit", "6"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    expected: dict[tuple, dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
    for trace in tracemalloc.Snapshot.load(str(dump)).traces:
        frames = [(frame.filename, frame.lineno) for frame in reversed(trace.traceback)]
        expected[frames[0]][tuple(frames[1:4])] += trace.size
    rows = _rows_with_stacks(result.stdout, r"^\s*\d+\s+(\d+) B\s+", TOP_SITE_COLUMN)
    assert len(rows) == 6 and sum(bool(stacks) for _row, stacks in rows) >= 4
    for (location, size), stacks in rows:
        groups = sorted(expected[location].values(), reverse=True)
        assert size == sum(groups)
        assert [stack_size for stack_size, _callers in stacks] == groups[:len(stacks)]
        for stack_size, callers in stacks:
            assert expected[location][tuple(callers)] == stack_size, (location, callers)
    assert "called from" in result.stdout and "of the line" in result.stdout


def test_view_diff_frames_lists_the_stacks_that_changed(nofd_run):
    old, new = _dump(nofd_run, "idle-empty"), _dump(nofd_run, "idle-held")
    result = viewer("diff", old, new, "--frames", "2", "--bytes", "--limit", "5")
    assert result.returncode == 0, result.stderr
    changes: dict[tuple, dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
    for sign, dump in ((-1, old), (1, new)):
        for trace in tracemalloc.Snapshot.load(str(dump)).traces:
            frames = [(frame.filename, frame.lineno) for frame in reversed(trace.traceback)]
            changes[frames[0]][tuple(frames[1:3])] += sign * trace.size
    rows = _rows_with_stacks(result.stdout, r"^\s*\d+\s+([+-]\d+) B\s+", DIFF_SITE_COLUMN)
    assert len(rows) == 5 and any(stacks for _row, stacks in rows)
    for (location, size_diff), stacks in rows:
        assert size_diff == sum(changes[location].values())
        moved = sorted((abs(change) for change in changes[location].values() if change), reverse=True)
        assert [abs(change) for change, _callers in stacks] == moved[:len(stacks)]
        for change, callers in stacks:
            assert changes[location][tuple(callers)] == change
    # --by traceback: each row's callers follow it, as in top.
    by_traceback = viewer("diff", old, new, "--by", "traceback", "--limit", "2", "--frames", "4")
    assert by_traceback.returncode == 0, by_traceback.stderr
    assert 1 <= by_traceback.stdout.count("called from") <= 2 * 4


def test_frames_with_cumulative_is_one_error_line(nofd_run):
    result = viewer("top", _dump(nofd_run, "idle-held"), "--frames", "3", "--cumulative")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--cumulative" in result.stderr


#: Where top's and diff's site column starts (file names may hold spaces: "<frozen importlib._bootstrap>").
TOP_SITE_COLUMN, DIFF_SITE_COLUMN = 50, 56
_STACK_HEADER = re.compile(r"^\s+stack \d+ of \d+(?: that changed)?: ([+-]?\d+) B")
_CALLER = re.compile(r"^\s+called from (.+):(\d+)(?: \(.*\))?$")
_SITE = re.compile(r"^(.+):(\d+)(?: \(.*\))?$")


def _rows_with_stacks(text: str, row_pattern: str, site_column: int):
    """``[((location, first figure), [(stack figure, [caller locations])])]`` of a top or diff table."""
    row_start = re.compile(row_pattern)
    rows = []
    for line in text.splitlines():
        row, header, caller = row_start.match(line), _STACK_HEADER.match(line), _CALLER.match(line)
        site = _SITE.match(line[site_column:]) if row else None
        if site:
            rows.append((((site.group(1), int(site.group(2))), int(row.group(1))), []))
        elif header and rows:
            rows[-1][1].append((int(header.group(1)), []))
        elif caller and rows and rows[-1][1]:
            rows[-1][1][-1][1].append((caller.group(1), int(caller.group(2))))
    return rows


# --- memray -----------------------------------------------------------------------------------------
def test_memray_massif_trees_nest_its_python_stacks(memray_capture, tmp_path):
    out = tmp_path / "massif.out.memray"
    result = viewer("massif", memray_capture, "-o", out)
    assert result.returncode == 0, result.stderr
    massif = check_file(out)
    assert max(snapshot.depth for snapshot in massif.detailed) >= 3
    printed = ms_print(out)
    assert printed.returncode == 0, printed.stderr
    trees = printed_trees(printed.stdout)
    assert max(max(node.level for node in _walk(tree)) for tree in trees) >= 3
    for tree in trees:
        for node in _walk(tree):
            if node.children:
                assert sum(child.size for child in node.children) == node.size, node.label
    # The workload's buffers: allocated in grow_buffers, called from the module's body.
    assert any("grow_buffers" in node.label and any("<module>" in child.label for child in node.children)
               for tree in trees for node in _walk(tree))


# --- the builder's rules, against valgrind's -------------------------------------------------------
def _site(size: int, *lines: int) -> Site:
    return Site(tuple(Frame("app.c", line, f"f{line}") for line in lines), size, 1)


def test_the_threshold_is_massifs_whole_byte_rule():
    """As valgrind 3.19 does (checked on a C program): 1% of a snapshot of 100,001 B is 1000.01 B,
    rounded down to 1000, so a node of 1000 B stands on its own; of 100,152 B (heap + extra), 1001 B,
    so it is merged."""
    assert significant_bytes(100_001, 1.0) == 1000 and significant_bytes(100_152, 1.0) == 1001
    assert significant_bytes(0, 1.0) == 1 and significant_bytes(0, 0.0) == 0
    kept = build_tree([_site(99_001, 3, 4), _site(1000, 3, 7)], 100_001)
    assert [child.label.split(": ", 1)[1] for child in kept.children[0].children] == ["f4 (app.c:4)", "f7 (app.c:7)"]
    merged = build_tree([_site(99_000, 3, 4), _site(999, 3, 7), _site(1, 5)], 100_000)
    assert [(child.size, child.places) for child in merged.children] == [(99_999, 0), (1, 1)]
    assert [(child.size, child.places) for child in merged.children[0].children] == [(99_000, 0), (999, 1)]


def test_siblings_are_one_node_per_frame_in_massifs_order():
    """Equal sizes: massif orders them by code address, the merged node's being 0; a frame named twice
    (once by the tracer, once from the source) is one node."""
    tree = build_tree([_site(500, 1, 2), _site(500, 1, 3), _site(2, 1, 8), _site(2, 1, 9)], 1004, threshold=1.0)
    [line] = tree.children
    addresses = [0 if child.places else int(child.label[2:child.label.index(":")], 16) for child in line.children]
    assert [child.size for child in line.children] == [500, 500, 4] and addresses[:2] == sorted(addresses[:2])
    # 0.5% of 2000 B is 10 B: f2's 10 B stand alone, f3's and f4's 5 B merge into 10 B, listed first.
    tied = build_tree([_site(1980, 6), _site(10, 1, 2), _site(5, 1, 3), _site(5, 1, 4)], 2000, threshold=0.5)
    assert [(child.size, child.places) for child in tied.children[1].children] == [(10, 2), (10, 0)]
    # A line this file holds, once without a name (tracemalloc) and once named (memray): one node.
    line = _site.__code__.co_firstlineno + 1
    named_twice = build_tree([Site((Frame(__file__, line),), 3, 1), Site((Frame(__file__, line, "_site"),), 4, 1)], 7)
    assert [(child.size, child.label.split(": ", 1)[1]) for child in named_twice.children] == \
        [(7, f"_site ({__file__}:{line})")]
    assert tree_depth(named_twice) == 1


def test_rows_recorded_without_callers_say_so_instead_of_listing_stacks():
    from tracemalloc_viewer.outputs import diff, top

    flat = (_site(100, 1), _site(50, 2))
    assert top.NO_STACKS in top.render(flat, "flat", frames=3)
    assert top.NO_STACKS in diff.render(flat[:1], flat, "flat", frames=3)
    deep = (_site(100, 1, 9), _site(50, 2))
    listed = top.render(deep, "deep", frames=3)
    assert top.NO_STACKS not in listed
    assert "called from app.c:9 (f9)" in listed and "stack 1 of 1: 100 B, 100.0% of the line, 1 block" in listed
    # Nothing changed: no stack listed, and none said missing either.
    unchanged = diff.render(deep, deep, "same", frames=3)
    assert "stack 1" not in unchanged and top.NO_STACKS not in unchanged


def test_the_frames_reach_an_injected_program_and_the_server(tmp_path):
    """``--frames`` goes to memdiet's server as ``--trace-frames`` (the run above checks it end to end)
    and to any other Python program as MEMDIET_TRACE_FRAMES (the bootstrap's tracemalloc.start(N))."""
    from experiments.measure.inject import environment
    from experiments.measure.probes.tracemalloc import TracemallocProbe
    from experiments.measure.scenario import QUICK, RunConfig

    # memdiet run keeps 8 frames; the matrices 1 (8 cost 7x the CPU per request: scenario.FULL).
    assert RunConfig(subject="nofd", probe="tracemalloc").trace_frames == FRAMES and QUICK.trace_frames == 1
    config = RunConfig(subject="x", probe="tracemalloc", trace_frames=3)
    assert environment("tracemalloc", tmp_path, config)["MEMDIET_TRACE_FRAMES"] == "3"
    argv, _env = TracemallocProbe().wrap(["python", "-m", "server"], {}, tmp_path, config, in_server=True)
    assert argv[-2:] == ["--trace-frames", "3"]
