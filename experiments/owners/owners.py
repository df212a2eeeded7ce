"""Who keeps each held connection's bytes: the per-connection owners between two heap graphs.

Rules, in order:

- the **per-connection types** are those whose instance count grows between the end of idle-empty
  and the end of idle-held by about m x k, k the held connections, m a whole number >= 1 (within
  :data:`PER_CONNECTION_TOLERANCE` of one instance per connection);
- the **per-connection objects** are the idle-held graph's instances of those types that the
  idle-empty graph did not have (an address not there, or there with another type);
- an **owner** is a per-connection object that no other per-connection object dominates; its
  retained size (:mod:`.dominators`) is what it keeps alive alone. Owners of one type are summed,
  per held connection; a type with fewer than one such object per connection is listed as
  ``partial`` (some connections' objects held by a shared container), and counted in the sum;
- the owner's **tree** groups the objects it dominates by their type path from the owner (owner ->
  Event -> deque), with the count, bytes and allocation line of each group, per held connection;
- the **reconciliation** sets the owners' retained bytes per held connection beside the heap per
  held connection tracemalloc reports, and splits the difference into what the graph shows (growth of
  objects that existed before, new objects no owner keeps) and what it cannot (bytes tracemalloc
  traces outside any object's ``sys.getsizeof``: buffers C code allocates, an instance's managed
  attribute values on CPython 3.11, objects no gc-tracked object refers to); the allocator's rounding
  of each object to pymalloc's 16-byte size classes is shown beside it (tracemalloc counts the bytes
  asked for, not the rounding: the RSS ledger has that);
- **what a diet would save**: each tree row's retained bytes per connection, ranked; ``__slots__``
  candidates are per-connection instances of Python classes with an instance ``__dict__``, with the
  saving measured from the graph (the instance and the dict only it refers to, less a slotted
  instance's size: 32 bytes of header and one pointer per attribute) where the dict is an object of
  the graph; where the attributes are in CPython 3.11's values array instead (outside the graph) the
  candidate is listed without a saving.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import numpy as np

from .dominators import Dominators, dominators
from .graphfile import HAS_DICT, HeapGraph

#: How far from a whole number of instances per held connection a type's growth may be.
PER_CONNECTION_TOLERANCE = 0.1
#: Tree rows smaller than this share of one connection's object count are left out of the tree.
MIN_TREE_COUNT_PER_CONNECTION = 0.05
MAX_TREE_DEPTH = 8
#: pymalloc's alignment (CPython 3.8+), and the largest request it serves.
PYMALLOC_ALIGNMENT = 16
PYMALLOC_MAX = 512
#: A slotted instance: its gc head and object header (32 B on 64-bit CPython) and a pointer per slot.
SLOTTED_HEADER_BYTES = 32
POINTER_BYTES = 8

Label = Callable[[str], str]


def owners(empty: HeapGraph, held: HeapGraph, connections: int, heap_per_held_bytes: float | None,
           label: Label = lambda site: site) -> dict[str, Any]:
    """The owners document of one process (see the module docstring); JSON-ready."""
    if connections <= 0:
        raise ValueError("no held connections to divide by")
    k = connections
    dom = dominators(held)
    empty_names, held_names = empty.type_names(), held.type_names()
    before = Counter(empty_names.tolist())
    after = Counter(held_names.tolist())
    per_connection_types = {}
    for name, count in after.items():
        each = (count - before.get(name, 0)) / k
        if each >= 1 - PER_CONNECTION_TOLERANCE and abs(each - round(each)) <= PER_CONNECTION_TOLERANCE:
            per_connection_types[name] = round(each)
    new = _new_objects(empty, empty_names, held, held_names)
    candidate = new & np.isin(held_names, list(per_connection_types)) if per_connection_types else np.zeros(held.nodes, bool)
    top = _top_candidates(dom, candidate)
    owners_by_type: dict[str, list[int]] = {}
    for node in np.flatnonzero(top).tolist():
        owners_by_type.setdefault(held_names[node], []).append(node)
    # A type with a few such objects in all (the probe's own call, one connection's leftover) is no
    # owner: its objects count as new objects no owner keeps.
    for name in [name for name, nodes in owners_by_type.items() if len(nodes) / k < MIN_TREE_COUNT_PER_CONNECTION]:
        top[owners_by_type.pop(name)] = False
    owned = _owned_by(dom, top)  # each node's owner (-1: none)
    rows = []
    for name, nodes in sorted(owners_by_type.items(), key=lambda item: -int(dom.retained[item[1]].sum())):
        retained = int(dom.retained[nodes].sum())
        rows.append({
            "type": name, "count": len(nodes), "per_connection": round(len(nodes) / k, 3),
            # An owner has one or more per held connection; fewer is a part of some connections'
            # objects that no owner dominates (an int a shared table holds for most of them).
            "kind": "owner" if len(nodes) / k >= 1 - PER_CONNECTION_TOLERANCE else "partial",
            "retained_bytes": retained, "retained_bytes_per_connection": round(retained / k, 1),
            "shallow_bytes_per_connection": round(int(held.size[nodes].sum()) / k, 1),
            "site": _common_site(held, nodes, label),
            "tree": _tree(held, held_names, dom, owned, nodes, k, label),
        })
    owned_retained = sum(row["retained_bytes"] for row in rows)
    document = {
        "connections": k,
        "graphs": {"idle-empty": _graph_summary(empty), "idle-held": _graph_summary(held)},
        "per_connection_types": dict(sorted(per_connection_types.items())),
        "owners": rows,
        "owned_bytes_per_connection": round(owned_retained / k, 1),
        "reconciliation": _reconcile(empty, held, new, owned, dom, k, heap_per_held_bytes, owned_retained),
        "diet": _diet(held, held_names, dom, owned, rows, k),
    }
    return document


def _graph_summary(graph: HeapGraph) -> dict[str, Any]:
    return {"nodes": graph.nodes, "edges": int(len(graph.source)), "bytes": int(graph.size.sum()),
            "seconds": graph.trailer.get("seconds"), "sites_known": round(float((graph.site_index >= 0).mean()), 3)
            if graph.nodes else 0.0}


def _new_objects(empty: HeapGraph, empty_names: np.ndarray, held: HeapGraph, held_names: np.ndarray) -> np.ndarray:
    """Nodes of ``held`` that ``empty`` did not have: an address not there, or there with another type."""
    order = np.argsort(empty.address)
    sorted_addresses = empty.address[order]
    if not len(sorted_addresses):
        return np.ones(held.nodes, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_addresses, held.address), len(sorted_addresses) - 1)
    same_address = sorted_addresses[at] == held.address
    same_type = empty_names[order[at]] == held_names
    return ~(same_address & same_type)


def _top_candidates(dom: Dominators, candidate: np.ndarray) -> np.ndarray:
    """Candidates with no candidate among their dominators."""
    covered = [False] * len(dom.idom)  # some strict dominator is a candidate
    flag = [*candidate.tolist(), False]
    parent = dom.idom.tolist()
    for node in dom.order[1:].tolist():
        up = parent[node]
        covered[node] = covered[up] or flag[up]
    return candidate & ~np.asarray(covered[:-1], dtype=bool)


def _owned_by(dom: Dominators, top: np.ndarray) -> np.ndarray:
    """For each node, the owner that dominates it (itself for an owner), or -1."""
    owner = np.full(len(dom.idom), -1, dtype=np.int64)
    owner[:-1][top] = np.flatnonzero(top)
    parent = dom.idom.tolist()
    owner_list = owner.tolist()
    for node in dom.order[1:].tolist():
        if owner_list[node] < 0:
            owner_list[node] = owner_list[parent[node]]
    return np.asarray(owner_list[:-1], dtype=np.int64)


def _common_site(graph: HeapGraph, nodes: list[int], label: Label) -> str | None:
    sites = Counter(int(index) for index in graph.site_index[nodes] if index >= 0)
    if not sites:
        return None
    index, _count = sites.most_common(1)[0]
    return label(graph.sites[index])


def _tree(graph: HeapGraph, names: np.ndarray, dom: Dominators, owned: np.ndarray, owners_of_type: list[int],
          k: int, label: Label) -> list[dict[str, Any]]:
    """The objects the owners of one type dominate, grouped by type path, as nested rows."""
    members = set(owners_of_type)
    path_of: dict[int, tuple[str, ...]] = {node: () for node in owners_of_type}
    groups: dict[tuple[str, ...], list[int]] = {}
    mine = np.isin(owned, owners_of_type)
    idom, mine = dom.idom.tolist(), mine.tolist()
    for node in dom.order[1:].tolist():
        if node >= len(mine) or not mine[node] or node in members:
            continue
        up = path_of.get(idom[node])
        if up is None or len(up) >= MAX_TREE_DEPTH:
            continue
        path = (*up, names[node])
        path_of[node] = path
        groups.setdefault(path, []).append(node)
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    for path, nodes in sorted(groups.items(), key=lambda item: (len(item[0]), -int(dom.retained[item[1]].sum()))):
        if len(nodes) / k < MIN_TREE_COUNT_PER_CONNECTION:
            continue
        row = {"type": path[-1], "count_per_connection": round(len(nodes) / k, 2),
               "retained_bytes_per_connection": round(int(dom.retained[nodes].sum()) / k, 1),
               "shallow_bytes_per_connection": round(int(graph.size[nodes].sum()) / k, 1),
               "site": _common_site(graph, nodes, label), "children": []}
        rows[path] = row
        parent = rows.get(path[:-1])
        if parent is not None:
            parent["children"].append(row)
    return [row for path, row in rows.items() if len(path) == 1]


def _rounded(sizes: np.ndarray) -> np.ndarray:
    """Each size as pymalloc serves it: rounded up to 16 bytes up to 512, larger ones as asked."""
    rounded = -(-sizes // PYMALLOC_ALIGNMENT) * PYMALLOC_ALIGNMENT
    return np.where(sizes <= PYMALLOC_MAX, rounded, sizes)


def _reconcile(empty: HeapGraph, held: HeapGraph, new: np.ndarray, owned: np.ndarray, dom: Dominators, k: int,
               heap_per_held: float | None, owned_retained: int) -> dict[str, Any]:
    graph_growth = (int(held.size.sum()) - int(empty.size.sum())) / k
    new_bytes = int(held.size[new].sum())
    new_unowned = int(held.size[new & (owned < 0)].sum())
    old_growth = (int(held.size[~new].sum()) - int(empty.size.sum())) / k  # objects kept, grown or gone
    owned_mask = owned >= 0
    owned_rounded = int(_rounded(held.size[owned_mask]).sum())
    result = {
        "heap_bytes_per_connection": heap_per_held,
        "owned_bytes_per_connection": round(owned_retained / k, 1),
        "owned_bytes_rounded_per_connection": round(owned_rounded / k, 1),
        "graph_growth_bytes_per_connection": round(graph_growth, 1),
        "new_objects_no_owner_keeps_bytes_per_connection": round(new_unowned / k, 1),
        "objects_before_grown_or_freed_bytes_per_connection": round(old_growth, 1),
        "new_objects_bytes_per_connection": round(new_bytes / k, 1),
        # CPython 3.11's sys.getsizeof leaves out, for an instance with a managed __dict__, its
        # 16-byte pre-header and its attribute values array (one pointer per attribute of the
        # class's shared keys, and a prefix): tracemalloc counts both. These instances, per
        # connection, are where most of the bytes outside the graph are.
        "managed_dict_instances_per_connection": round(int(((held.flags & HAS_DICT) != 0)[new].sum()) / k, 2),
    }
    if heap_per_held is not None:
        result["outside_the_graph_bytes_per_connection"] = round(heap_per_held - graph_growth, 1)
        result["remainder_bytes_per_connection"] = round(heap_per_held - owned_retained / k, 1)
        result["owned_share_of_heap"] = round(owned_retained / k / heap_per_held, 4) if heap_per_held else None
    return result


def _diet(graph: HeapGraph, names: np.ndarray, dom: Dominators, owned: np.ndarray, rows: list[dict[str, Any]],
          k: int) -> dict[str, Any]:
    """What a diet would save: tree rows ranked by retained bytes, and ``__slots__`` candidates."""
    ranked = []

    def walk(owner: str, path: list[str], children: list[dict[str, Any]]) -> None:
        for child in children:
            trail = [*path, child["type"]]
            ranked.append({"owner": owner, "path": " > ".join(trail),
                           "saving_bytes_per_connection": child["retained_bytes_per_connection"],
                           "count_per_connection": child["count_per_connection"], "site": child["site"]})
            walk(owner, trail, child["children"])

    for row in rows:
        ranked.append({"owner": row["type"], "path": row["type"], "saving_bytes_per_connection":
                       row["retained_bytes_per_connection"], "count_per_connection": row["per_connection"],
                       "site": row["site"]})
        walk(row["type"], [row["type"]], row["tree"])
    ranked.sort(key=lambda item: -item["saving_bytes_per_connection"])
    slots, unmeasured = [], []
    with_dict = ((graph.flags & HAS_DICT) != 0) & (owned >= 0)
    if with_dict.any():
        # The instance's own dict, when it has one and only it refers to it (it dominates it).
        dict_bytes = np.zeros(graph.nodes, dtype=np.int64)
        is_dict = names == "builtins.dict"
        kept = is_dict[graph.target] & with_dict[graph.source] & (dom.idom[graph.target] == graph.source)
        np.add.at(dict_bytes, graph.source[kept], graph.size[graph.target[kept]])
        referents = graph.flags >> 16
        for name in sorted(set(names[with_dict].tolist())):
            nodes = np.flatnonzero(with_dict & (names == name))
            if len(nodes) / k < 1 - PER_CONNECTION_TOLERANCE:
                continue
            if not (dict_bytes[nodes] > 0).all():
                # Its attributes live in CPython 3.11's values array, outside every object's
                # sys.getsizeof: the graph cannot measure what slots would save, so it does not say.
                unmeasured.append({"type": name, "count_per_connection": round(len(nodes) / k, 2),
                                   "attributes": int(np.median(np.maximum(referents[nodes] - 1, 0)))})
                continue
            attributes = np.maximum(referents[nodes] - 1, 0)  # less the type
            now = graph.size[nodes] + dict_bytes[nodes]
            slotted = SLOTTED_HEADER_BYTES + POINTER_BYTES * attributes
            slots.append({"type": name, "count_per_connection": round(len(nodes) / k, 2),
                          "attributes": int(np.median(attributes)),
                          "bytes_now_per_connection": round(int(now.sum()) / k, 1),
                          "bytes_slotted_per_connection": round(int(slotted.sum()) / k, 1),
                          "saving_bytes_per_connection": round(int((now - slotted).sum()) / k, 1)})
        slots.sort(key=lambda item: -item["saving_bytes_per_connection"])
    return {"ranked": ranked[:40], "slots_candidates": slots, "slots_candidates_unmeasured": unmeasured}
