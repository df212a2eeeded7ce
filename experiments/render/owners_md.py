"""Who keeps each held connection's bytes: the report's section from each tracemalloc run's
``owners.json`` (the heap graphs at the ends of idle-empty and idle-held, analysed by
:mod:`experiments.owners`).

Rules: data first (:func:`owner_tables`: per subject, its tracemalloc run's owners document, read
through the viewer's checked reader), then markdown (:func:`owners_markdown`): per subject the owner
types with retained bytes per held connection, the reconciliation with the heap per held connection
and the remainder, the largest savings a diet could make, the ``__slots__`` candidates and what the
graphs cost. Reads files only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from tracemalloc_viewer.errors import ViewerInputError
from tracemalloc_viewer.outputs.owners import load

from ..dataset.results import RunResult
from ..dataset.selection import layout_order
from .markdown import table
from .units import human_bytes, share

#: Rows of the diet ranking shown per subject.
SAVINGS_SHOWN = 5


@dataclass
class OwnerTable:
    """One subject's owners: ``process`` is the traced process's owners document (the root's)."""

    subject: str
    connections: int
    process: dict[str, Any]
    costs: dict[str, Any]


def owner_tables(by_subject: Mapping[str, Mapping[str, RunResult]],
                 problems: list[str] | None = None) -> list[OwnerTable]:
    """Per subject with a tracemalloc run that wrote owners.json, in the study's order; an owners.json
    that fails its checks is left out, its one line appended to ``problems``."""
    tables = []
    for subject in layout_order(by_subject):
        run = by_subject[subject].get("tracemalloc")
        name = (run.document.get("files") or {}).get("owners") if run is not None else None
        if not isinstance(name, str):
            continue
        try:
            document = load(run.path / name)
        except ViewerInputError as error:
            if problems is not None:
                problems.append(f"{subject}: {error}")
            continue
        for key, process in document["processes"].items():
            tables.append(OwnerTable(subject if len(document["processes"]) == 1 else f"{subject} ({key})",
                                     int(process["connections"]), process, document.get("costs") or {}))
    return tables


def _cost_text(costs: dict[str, Any]) -> str:
    parts = []
    for phase, cost in costs.items():
        if isinstance(cost, dict):
            parts.append(f"{phase} {cost.get('seconds')} s, {human_bytes(cost.get('file_bytes'))} file, "
                         f"the subject's RSS peak +{human_bytes(cost.get('peak_growth_bytes'))}, the forked copy's "
                         f"{human_bytes(cost.get('copy_max_rss_bytes'))} at most")
    return "; ".join(parts)


def owners_markdown(tables: Iterable[OwnerTable]) -> list[str]:
    lines: list[str] = []
    for entry in tables:
        process, r = entry.process, entry.process["reconciliation"]
        heap, owned = r.get("heap_bytes_per_connection"), r.get("owned_bytes_per_connection")
        part = f" ({share(owned, heap)} of it)" if heap and owned is not None else ""
        lines += [f"### Who keeps {entry.subject}'s bytes per held connection", "",
                  f"{entry.connections:,} held connections. The owners retain {human_bytes(owned)} each"
                  f"{part} of the {human_bytes(heap)} of heap per held connection tracemalloc reports; the remainder, "
                  f"{human_bytes(r.get('remainder_bytes_per_connection'))}, is new objects no owner keeps "
                  f"({human_bytes(r.get('new_objects_no_owner_keeps_bytes_per_connection'))}), objects from before "
                  f"that grew or went ({human_bytes(r.get('objects_before_grown_or_freed_bytes_per_connection'))}) and "
                  f"bytes outside every object's sys.getsizeof "
                  f"({human_bytes(r.get('outside_the_graph_bytes_per_connection'))}: buffers C code allocates, and "
                  f"for the {r.get('managed_dict_instances_per_connection') or 0:g} instances per connection with a "
                  "managed `__dict__` their pre-header and attribute values). Rounded to pymalloc's 16-byte classes the owners hold "
                  f"{human_bytes(r.get('owned_bytes_rounded_per_connection'))}.", ""]
        rows = [(f"`{owner['type']}`", f"{owner['per_connection']:g}", f"{owner['retained_bytes_per_connection']:,.0f}",
                 f"{owner['shallow_bytes_per_connection']:,.0f}", f"`{owner['site']}`" if owner.get("site") else "-")
                for owner in process["owners"]]
        if rows:
            lines += table(("owner type", "per connection", "retained B", "own B", "allocated at"), rows) + [""]
        else:
            lines += ["No per-connection owner: no object type grows by a whole number of instances per held "
                      "connection.", ""]
        ranked = process.get("diet", {}).get("ranked", [])[:SAVINGS_SHOWN]
        if ranked:
            lines += ["What a diet would save (bytes per held connection freed if that object were not kept): "
                      + "; ".join(f"`{item['path']}` {item['saving_bytes_per_connection']:,.0f} B" for item in ranked)
                      + ".", ""]
        slots = process.get("diet", {}).get("slots_candidates", [])
        if slots:
            lines += ["`__slots__` candidates (an instance `__dict__` per connection; saving measured from the graph): "
                      + "; ".join(f"`{item['type']}` x{item['count_per_connection']:g} saves "
                                  f"{item['saving_bytes_per_connection']:,.0f} B" for item in slots) + ".", ""]
        unmeasured = process.get("diet", {}).get("slots_candidates_unmeasured", [])
        if unmeasured:
            lines += ["`__slots__` candidates whose attributes are in a managed values array, outside the graph (no "
                      "saving measured): " + "; ".join(f"`{item['type']}` x{item['count_per_connection']:g}"
                                                       for item in unmeasured) + ".", ""]
        cost = _cost_text(entry.costs)
        if cost:
            lines += [f"The heap graphs cost: {cost}.", ""]
    if not lines:
        lines = ["No tracemalloc run wrote heap graphs.", ""]
    return lines


def _hover(row: dict[str, Any], count_key: str) -> str:
    site = row.get("site") or "allocation line unknown"
    return (f"retained {row['retained_bytes_per_connection']:,.0f} B, own {row['shallow_bytes_per_connection']:,.0f} B, "
            f"x{row[count_key]:g} per held connection; {site}")


def _tree_nodes(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"label": f"{child['type']}  x{child['count_per_connection']:g}  "
                      f"{human_bytes(child['retained_bytes_per_connection'])}",
             "hover": _hover(child, "count_per_connection"), "children": _tree_nodes(child.get("children", []))}
            for child in children]


def owners_page_section(runs: Iterable[RunResult]) -> Any:
    """The interactive page's section (an ``html.Section``): per subject, its owners as an expandable
    retainers tree; None when no run has owners."""
    from tracemalloc_viewer.outputs import html

    by_subject: dict[str, dict[str, RunResult]] = {}
    for run in runs:
        by_subject.setdefault(run.layout, {})[run.probe] = run
    tables = owner_tables(by_subject)
    if not tables:
        return None
    tree = []
    for entry in tables:
        r = entry.process["reconciliation"]
        owners = [{"label": f"{owner['type']}  x{owner['per_connection']:g}  "
                            f"{human_bytes(owner['retained_bytes_per_connection'])}",
                   "hover": _hover(owner, "per_connection"), "children": _tree_nodes(owner.get("tree", []))}
                  for owner in entry.process["owners"]]
        tree.append({"label": f"{entry.subject}: owners retain {human_bytes(r.get('owned_bytes_per_connection'))} of "
                              f"{human_bytes(r.get('heap_bytes_per_connection'))} heap per held connection",
                     "hover": f"remainder {human_bytes(r.get('remainder_bytes_per_connection'))}",
                     "children": owners})
    return html.Section("Who keeps each connection's bytes", [
        "Each subject's per-connection owners and the objects each one alone keeps alive (its dominator tree, "
        "grouped by type), per held connection. Hover a row for its retained and own bytes, count and allocation "
        "line; open a row for what it keeps (`memdiet view owners RUN` prints the same tree)."], tree=tree,
        anchor="owners")
