"""Dominators and retained sizes of a heap graph, with igraph's ``Graph.dominator``.

Rules: one virtual root (node N) refers to the graph's roots (modules, the threads' frames) and, for
what those do not reach (objects kept alive only from C: a running loop, a C extension's objects), to
every member of each strongly connected component that nothing else refers to; so every node is
reachable and has an immediate dominator. An object's retained size is its own size plus the retained
sizes of the objects it immediately dominates: the bytes freed if it alone were no longer referred to.

Why igraph (``python -m experiments.owners.libraries``, docs/owners.md, on a 2-core machine shared with
other work, so seconds are noisy; each pair side by side in one run): on 1,050,358 nodes made of seven
copies of aiohttp's idle-held heap graph, igraph's dominators took 1.39 and 2.27 s, rustworkx's 1.76
and 5.18 s; on a random graph of 10^6 nodes and 3x10^6 edges (a harder shape than a heap's) rustworkx
was faster (6.9 and 18.4 s against 8.3 and 29.9 s); networkx is pure Python, far slower. A heap is
nearly a tree, and igraph also gives the reachability, strong components and breadth-first order used
here from the same graph object.
"""

from __future__ import annotations

from dataclasses import dataclass

import igraph
import numpy as np

from .graphfile import HeapGraph


@dataclass(slots=True)
class Dominators:
    """``idom[i]``: node ``i``'s immediate dominator (``root`` for the nodes the virtual root
    dominates directly); ``retained[i]``: its retained bytes; ``order``: the nodes from the root down
    (each after its dominator); ``root``: the virtual root's index (N)."""

    idom: np.ndarray
    retained: np.ndarray
    order: np.ndarray
    root: int


def dominators(graph: HeapGraph) -> Dominators:
    n = graph.nodes
    root = n
    entry = np.asarray(graph.roots, dtype=np.int64)
    # igraph takes Python lists far faster than a numpy edge array.
    edges = list(zip(graph.source.tolist(), graph.target.tolist()))
    edges += [(root, node) for node in entry.tolist()]
    g = igraph.Graph(n=n + 1, edges=edges, directed=True)
    reached = np.zeros(n + 1, dtype=bool)
    reached[g.subcomponent(root, mode="out")] = True
    if not reached.all():
        g.add_edges([(root, node) for node in _unreached_entries(g, reached).tolist()])
    idom = np.asarray(g.dominator(root, mode="out"), dtype=np.int64)
    idom[root] = -1
    # A node's dominator is on every path to it, so breadth-first from the root reaches it first:
    # that order, reversed, adds each retained size into its dominator's after all of its own.
    order = g.bfs(root, mode="out")[0]
    parent, retained = idom.tolist(), [*graph.size.tolist(), 0]
    for node in reversed(order[1:]):
        retained[parent[node]] += retained[node]
    order, retained = np.asarray(order, dtype=np.int64), np.asarray(retained, dtype=np.int64)
    return Dominators(idom, retained, order, root)


def _unreached_entries(g: igraph.Graph, reached: np.ndarray) -> np.ndarray:
    """Every member of each strongly connected component of the unreached nodes that no other node
    refers to: entering the others from these reaches them all."""
    membership = np.asarray(g.connected_components(mode="strong").membership, dtype=np.int64)
    edges = np.asarray(g.get_edgelist(), dtype=np.int64).reshape(-1, 2)
    source, target = edges[:, 0], edges[:, 1]
    unreached = ~reached
    entered = np.zeros(membership.max() + 1, dtype=bool)
    crossing = unreached[target] & (membership[source] != membership[target])
    entered[membership[target[crossing]]] = True
    candidates = np.flatnonzero(unreached)
    return candidates[~entered[membership[candidates]]]
