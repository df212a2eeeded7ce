"""Ground truths of the heap graph and its analysis on synthetic programs with known graphs.

Each program runs in a child interpreter, builds objects whose sizes it reads with sys.getsizeof,
writes its heap graph with server/heapgraph.py and prints the expected figures; the test reads the
graph (experiments.owners) and checks the retained sizes exactly: an object shared by two owners is
kept by neither, a cycle is kept by the one object through which it is entered, a large bytes object
by the object that alone refers to it. Then the per-connection owners between two graphs, and the
reader's refusals of bad files.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from experiments.errors import BadInput
from experiments.owners.dominators import dominators
from experiments.owners.graphfile import MAGIC, read_graph
from experiments.owners.owners import owners
from tests.fixtures import REPO

PRELUDE = f"""
import gc, json, sys
sys.path.insert(0, {str(REPO)!r})
from server.heapgraph import write_graph
class Node:
    __slots__ = ("a", "b")
    def __init__(self, a=None, b=None):
        self.a, self.b = a, b
size = sys.getsizeof
"""


def run_program(body: str, tmp_path: Path, tracemalloc_frames: int = 0) -> dict:
    program = PRELUDE + textwrap.dedent(body)
    argv = [sys.executable, *(["-X", f"tracemalloc={tracemalloc_frames}"] if tracemalloc_frames else []), "-c", program]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def node_of(graph, address: int) -> int:
    hit = np.flatnonzero(graph.address == np.uint64(address))
    assert len(hit) == 1, f"address {address:#x} is {len(hit)} nodes"
    return int(hit[0])


def test_shared_object_cycle_and_large_bytes_have_exact_retained_sizes(tmp_path: Path) -> None:
    expected = run_program("""
        def build():  # in a function: only the list is a global, the module's dict refers to nothing else
            shared = Node()
            left, right = Node(shared, bytearray(100)), Node(shared)
            cycle_a = Node(); cycle_b = Node(cycle_a); cycle_c = Node(cycle_b); cycle_a.a = cycle_c
            entry = Node(cycle_a)
            blob = Node(b"x" * 1_000_000)
            figures = {
                "left": id(left), "right": id(right), "shared": id(shared), "entry": id(entry),
                "cycle_a": id(cycle_a), "blob": id(blob),
                "left_retained": size(left) + size(left.b), "right_retained": size(right),
                "entry_retained": size(entry) + size(cycle_a) + size(cycle_b) + size(cycle_c),
                "cycle_retained": size(cycle_a) + size(cycle_b) + size(cycle_c),
                "blob_retained": size(blob) + size(blob.a), "shared_size": size(shared)}
            return [left, right, entry, blob], figures
        holder, figures = build()
        write_graph("g.graph")
        print(json.dumps(figures))
    """, tmp_path)
    graph = read_graph(tmp_path / "g.graph")
    dom = dominators(graph)
    retained = {name: int(dom.retained[node_of(graph, expected[name])])
                for name in ("left", "right", "entry", "cycle_a", "blob", "shared")}
    assert retained["left"] == expected["left_retained"]  # the shared Node is not in it
    assert retained["right"] == expected["right_retained"]
    assert retained["shared"] == expected["shared_size"]
    assert retained["entry"] == expected["entry_retained"]  # the whole cycle, entered through it
    assert retained["cycle_a"] == expected["cycle_retained"]
    assert retained["blob"] == expected["blob_retained"] > 1_000_000
    # Neither owner dominates the shared object: its dominator is the list that holds both.
    shared = node_of(graph, expected["shared"])
    assert dom.idom[shared] not in (node_of(graph, expected["left"]), node_of(graph, expected["right"]))
    # Retained sizes add up: the virtual root keeps everything.
    assert dom.retained[dom.root] == graph.size.sum()


CONNECTIONS = 50
OWNER_PROGRAM = """
import asyncio
class Conn:
    def __init__(self):
        self.events = [asyncio.Event() for _ in range(2)]
        self.buffer = bytearray(300)
        self.peer = ("127.0.0.1", 1234)
class Table:
    __slots__ = ("shared",)
table = Table(); table.shared = Node()
conns = []
write_graph("empty.graph")
for _ in range(K):
    conn = Conn(); conn.shared = table.shared  # a shared object: no connection keeps it
    conns.append(conn)
write_graph("held.graph")
one = conns[0]
print(json.dumps({"retained": size(one) + size(one.__dict__) + size(one.events) + sum(size(e) for e in one.events)
                  + sum(size(e.__dict__) + size(e._waiters) for e in one.events) + size(one.buffer)}))
"""


def test_owners_between_two_graphs_find_the_connection_object(tmp_path: Path) -> None:
    expected = run_program(f"K = {CONNECTIONS}\n" + OWNER_PROGRAM, tmp_path, tracemalloc_frames=1)
    empty, held = read_graph(tmp_path / "empty.graph"), read_graph(tmp_path / "held.graph")
    result = owners(empty, held, CONNECTIONS, None)
    top = result["owners"][0]
    assert top["type"] == "__main__.Conn" and top["count"] == CONNECTIONS
    assert result["per_connection_types"]["asyncio.locks.Event"] == 2
    # Only Conn owns: its Events, lists and buffer are under it, the shared Node under none.
    assert [row["type"] for row in result["owners"]] == ["__main__.Conn"]
    children = {row["type"]: row for row in top["tree"]}
    assert "builtins.bytearray" in children and children["builtins.bytearray"]["count_per_connection"] == 1
    # tracemalloc gives the line of the objects it can find (on CPython 3.11 not an instance with a
    # managed __dict__: its traceback is looked up 16 bytes past where its block begins).
    assert children["builtins.bytearray"]["site"].startswith("<string>:")
    # Every Conn's retained size is the same, and what the child program summed (its dict and the
    # Events' dicts are materialized by the sums, so the child reads them after the graph: the graph
    # has no dict for them, and the retained size is at most the child's).
    assert top["retained_bytes_per_connection"] <= expected["retained"]
    assert top["retained_bytes_per_connection"] > 300
    # Conn's attributes are in a managed values array (its dict was never made): a candidate whose
    # saving the graph cannot measure, listed as such.
    diet = result["diet"]
    candidates = [item["type"] for item in diet["slots_candidates"] + diet["slots_candidates_unmeasured"]]
    assert "__main__.Conn" in candidates


def test_packed_like_program_keeps_no_owner(tmp_path: Path) -> None:
    """Records in one preallocated bytearray (packed's way): nothing grows per connection, no owner."""
    run_program("""
        table = bytearray(16 * 4096)
        write_graph("empty.graph")
        for fd in range(50):
            table[fd * 16:(fd + 1) * 16] = bytes(range(16))
        write_graph("held.graph")
        print("{}")
    """, tmp_path)
    result = owners(read_graph(tmp_path / "empty.graph"), read_graph(tmp_path / "held.graph"), 50, None)
    assert result["owners"] == [] and result["owned_bytes_per_connection"] == 0


def _file(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / "bad.graph"
    path.write_bytes(body)
    return path


@pytest.mark.parametrize("body, message", [
    (b"not a graph", "wrong magic"),
    (MAGIC + b"\x10\x00\x00\x00abc", "runs past the file"),
    (MAGIC + (5).to_bytes(4, "little") + b"xxxxx" + (0).to_bytes(4, "little"), "not zlib data"),
    (MAGIC + (0).to_bytes(4, "little") + (2).to_bytes(4, "little") + b"{}", "trailer version"),
])
def test_bad_files_give_one_line(tmp_path: Path, body: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message) as caught:
        read_graph(_file(tmp_path, body))
    assert "\n" not in str(caught.value)


def test_record_out_of_range_is_refused(tmp_path: Path) -> None:
    words = np.array([0x1000, 7, 16, 0, 1, 0], dtype="<u8").tobytes()  # type index 7 of 1 type
    chunk = zlib.compress(words)
    trailer = json.dumps({"version": 1, "nodes": 1, "types": ["builtins.list"], "sites": [],
                          "roots": {"modules": [], "frames": []}}).encode()
    body = MAGIC + len(chunk).to_bytes(4, "little") + chunk + (0).to_bytes(4, "little") + len(trailer).to_bytes(4, "little") + trailer
    with pytest.raises(BadInput, match="out of range"):
        read_graph(_file(tmp_path, body))
    # A record whose referent count runs past the words.
    words = np.array([0x1000, 0, 16, 0, 1, 5, 1], dtype="<u8").tobytes()
    chunk = zlib.compress(words)
    body = MAGIC + len(chunk).to_bytes(4, "little") + chunk + (0).to_bytes(4, "little") + len(trailer).to_bytes(4, "little") + trailer
    with pytest.raises(BadInput, match="past the end"):
        read_graph(_file(tmp_path, body))


def test_the_walk_leaves_no_heap_behind(tmp_path: Path) -> None:
    """What a graph's walk made is gone once it returns (exact tracemalloc deltas): a second and third
    walk leave 0 B. The first leaves what is made once per process: CPython 3.11's line arrays of the
    walk's code objects (:func:`server.heapgraph._index_lines`, which makes the traced walk 4 to 7 times
    faster) and the first thread's state, 5,362 B here. The runs' graphs are walked by a forked copy
    of the subject (server/tracing.py), so even those bytes never reach the process measured.)"""
    deltas = run_program("""
        import threading, tracemalloc
        class Holder:
            def __init__(self):
                self.event = threading.Event(); self.items = [1, 2]
        caller = Holder()
        keep = [Holder() for _ in range(200)]
        deltas = []
        for _ in range(3):
            gc.collect(); before = tracemalloc.get_traced_memory()[0]
            write_graph("g.graph", exclude=(caller, caller.event))
            gc.collect(); deltas.append(tracemalloc.get_traced_memory()[0] - before)
        print(json.dumps(deltas))
    """, tmp_path, tracemalloc_frames=1)
    assert -256 <= deltas[0] <= 8192 and deltas[1:] == [0, 0], deltas
