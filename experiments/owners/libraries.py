"""``python -m experiments.owners.libraries [--nodes N]``: the dominator libraries side by side.

Rules: a random graph (a random tree from node 0, so every node is reachable, plus two random edges
per node: the hard case for a dominator algorithm), or copies of a real heap graph file under one
root (``--graph FILE --copies N``: a heap is nearly a tree), built once per library from the same edge
list, timed side by side in one run; the libraries' answers are checked against each other. networkx
(pure Python) is timed only up to 200,000 nodes. The one the analysis uses is igraph (see
:mod:`.dominators` for why); rustworkx and networkx are not dependencies, so they are timed only when
installed.
"""

from __future__ import annotations

import argparse
import time

from pathlib import Path

import numpy as np

from .graphfile import read_graph

NETWORKX_MAX_NODES = 200_000


def random_graph(nodes: int, seed: int = 1) -> list[tuple[int, int]]:
    """A random tree from node 0 plus two random edges a node."""
    rng = np.random.default_rng(seed)
    parent = rng.integers(0, np.arange(1, nodes))
    extra = rng.integers(0, nodes, size=(2 * nodes, 2))
    edges = np.concatenate([np.stack([parent, np.arange(1, nodes)], axis=1), extra])
    return list(zip(edges[:, 0].tolist(), edges[:, 1].tolist()))


def heap_graph(path: Path, copies: int) -> tuple[int, list[tuple[int, int]]]:
    """``copies`` disjoint copies of a real heap graph file under one root (node 0): its modules and
    every object nothing refers to are the root's edges, as :mod:`.dominators` makes them."""
    graph = read_graph(path)
    n = graph.nodes
    entry = np.unique(np.concatenate([graph.roots, np.flatnonzero(np.bincount(graph.target, minlength=n) == 0)]))
    pairs: list[tuple[int, int]] = []
    for copy in range(copies):
        base = 1 + copy * n
        pairs += zip((graph.source + base).tolist(), (graph.target + base).tolist())
        pairs += [(0, node) for node in (entry + base).tolist()]
    return 1 + copies * n, pairs


def measure(nodes: int, pairs: list[tuple[int, int]]) -> list[tuple[str, float, float]]:
    """``(library, build seconds, dominator seconds)`` from node 0, for each library installed."""
    results, answers = [], {}
    import igraph

    started = time.perf_counter()
    graph = igraph.Graph(n=nodes, edges=pairs, directed=True)
    built = time.perf_counter()
    answers["igraph"] = graph.dominator(0, mode="out")
    results.append(("igraph", built - started, time.perf_counter() - built))
    try:
        import rustworkx
    except ImportError:
        rustworkx = None
    if rustworkx is not None:
        started = time.perf_counter()
        rx_graph = rustworkx.PyDiGraph()
        rx_graph.add_nodes_from(range(nodes))
        rx_graph.add_edges_from_no_data(pairs)
        built = time.perf_counter()
        answers["rustworkx"] = rustworkx.immediate_dominators(rx_graph, 0)
        results.append(("rustworkx", built - started, time.perf_counter() - built))
    try:
        import networkx
    except ImportError:
        networkx = None
    if networkx is not None and nodes <= NETWORKX_MAX_NODES:
        started = time.perf_counter()
        nx_graph = networkx.DiGraph(pairs)
        built = time.perf_counter()
        answers["networkx"] = networkx.immediate_dominators(nx_graph, 0)
        results.append(("networkx", built - started, time.perf_counter() - built))
    reference = answers["igraph"]
    for name, answer in answers.items():
        sample = range(1, nodes, max(1, nodes // 1000))
        if any(answer[node] != reference[node] for node in sample):
            raise AssertionError(f"{name}'s dominators differ from igraph's")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.owners.libraries")
    parser.add_argument("--nodes", type=int, default=1_000_000, help="a random graph of this many nodes")
    parser.add_argument("--graph", type=Path, help="a heap graph file instead (graphs/NN-PHASE.graph of a run)")
    parser.add_argument("--copies", type=int, default=1, help="disjoint copies of --graph under one root")
    args = parser.parse_args()
    if args.graph is not None:
        nodes, pairs = heap_graph(args.graph, args.copies)
        print(f"{nodes:,} nodes, {len(pairs):,} edges ({args.copies} copies of {args.graph})")
    else:
        nodes, pairs = args.nodes, random_graph(args.nodes)
        print(f"{nodes:,} nodes, {len(pairs):,} edges (a random tree plus two random edges a node)")
    for name, build_s, dominator_s in measure(nodes, pairs):
        print(f"{name:<10} build {build_s:6.2f} s   dominators {dominator_s:6.2f} s")


if __name__ == "__main__":
    main()
