"""``owners RUN``: who keeps each held connection's bytes, from a run folder's ``owners.json``.

Rules: ``owners.json`` (written by memdiet's runner from the two heap graphs) is untrusted input:
bounded in size, every field's type checked, one-line errors (:class:`ViewerInputError`). The text is
one table per traced process (owner types: count and retained bytes per held connection, the
allocation line), the reconciliation with tracemalloc's heap per held connection and its remainder,
each owner's retained tree by type (indented), what a diet would save, and the ``__slots__``
candidates. Bytes are shown as measured, per held connection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ViewerInputError
from ..units import tracemalloc_bytes

OWNERS_FILE = "owners.json"
MAX_BYTES = 32 << 20
MAX_DEPTH = 12
MAX_ROWS = 100_000


def load(path: Path) -> dict[str, Any]:
    """The checked owners document of a run folder (or of the ``owners.json`` named)."""
    path = Path(path)
    file = path / OWNERS_FILE if path.is_dir() else path
    try:
        if file.stat().st_size > MAX_BYTES:
            raise ViewerInputError(f"{file}: larger than {MAX_BYTES >> 20} MiB, not read")
        document = json.loads(file.read_text())
    except FileNotFoundError:
        raise ViewerInputError(f"{file}: no owners.json (a tracemalloc run with heap graphs writes one)") from None
    except OSError as error:
        raise ViewerInputError(f"{file}: cannot read ({error.strerror or error})") from None
    except ValueError as error:
        raise ViewerInputError(f"{file}: not JSON ({error})") from None
    try:
        _check(document)
    except (TypeError, KeyError, ValueError) as error:
        raise ViewerInputError(f"{file}: not an owners document ({error})") from None
    return document


def _number(value: Any, name: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} is not a number")


def _check(document: Any) -> None:
    if not isinstance(document, dict) or not isinstance(document.get("processes"), dict):
        raise TypeError("no processes object")
    rows = [0]

    def tree(children: Any, depth: int) -> None:
        if not isinstance(children, list) or depth > MAX_DEPTH:
            raise ValueError("a tree deeper than the bound or not a list")
        for child in children:
            rows[0] += 1
            if rows[0] > MAX_ROWS or not isinstance(child, dict) or not isinstance(child.get("type"), str):
                raise ValueError("a tree row without a type, or too many rows")
            for key in ("count_per_connection", "retained_bytes_per_connection", "shallow_bytes_per_connection"):
                _number(child.get(key), key)
            if child.get("site") is not None and not isinstance(child["site"], str):
                raise TypeError("a site is not a string")
            tree(child.get("children", []), depth + 1)

    for key, process in document["processes"].items():
        if not isinstance(key, str) or not isinstance(process, dict):
            raise TypeError("a process is not an object")
        _number(process.get("connections"), "connections")
        if not isinstance(process.get("owners"), list):
            raise TypeError("owners is not a list")
        for owner in process["owners"]:
            if not isinstance(owner, dict) or not isinstance(owner.get("type"), str):
                raise TypeError("an owner without a type")
            for name in ("count", "per_connection", "retained_bytes_per_connection", "shallow_bytes_per_connection"):
                _number(owner.get(name), name)
            tree(owner.get("tree", []), 1)
        reconciliation = process.get("reconciliation")
        if not isinstance(reconciliation, dict):
            raise TypeError("no reconciliation")
        for name, value in reconciliation.items():
            _number(value, name, optional=True)
        diet = process.get("diet", {})
        if not isinstance(diet, dict) or not all(isinstance(diet.get(k, []), list) for k in ("ranked", "slots_candidates")):
            raise TypeError("diet is not ranked and slots_candidates lists")
        for item in [*diet.get("ranked", []), *diet.get("slots_candidates", [])]:
            if not isinstance(item, dict):
                raise TypeError("a diet row is not an object")
            _number(item.get("saving_bytes_per_connection"), "saving_bytes_per_connection")


def _bytes(value: float | None) -> str:
    return "-" if value is None else tracemalloc_bytes(value)


def tree_lines(children: list[dict[str, Any]], depth: int = 1) -> list[str]:
    lines = []
    for child in children:
        site = f"  {child['site']}" if child.get("site") else ""
        lines.append(f"{'  ' * depth}{child['type']}  x{child['count_per_connection']:g}  "
                     f"retained {_bytes(child['retained_bytes_per_connection'])}  "
                     f"own {_bytes(child['shallow_bytes_per_connection'])}{site}")
        lines.extend(tree_lines(child.get("children", []), depth + 1))
    return lines


def render(document: dict[str, Any], top: int = 15) -> str:
    out = []
    costs = document.get("costs", {})
    for key, process in document["processes"].items():
        k = process["connections"]
        out.append(f"== {key}: owners of the {k:g} held connections' bytes (per held connection) ==")
        out.append(f"{'owner type':<48} {'kind':<8} {'per conn':>8} {'retained':>12} {'own':>10}  allocated at")
        for owner in process["owners"]:
            kind = owner.get("kind") if isinstance(owner.get("kind"), str) else "owner"
            out.append(f"{owner['type'][:48]:<48} {kind[:8]:<8} {owner['per_connection']:>8g} "
                       f"{_bytes(owner['retained_bytes_per_connection']):>12} "
                       f"{_bytes(owner['shallow_bytes_per_connection']):>10}  {owner.get('site') or '-'}")
        if not process["owners"]:
            out.append("(no per-connection owner: no object type grows by a whole number per held connection)")
        r = process["reconciliation"]
        out.append("")
        out.append(f"owners retain              {_bytes(r.get('owned_bytes_per_connection'))}"
                   f"  (pymalloc-rounded {_bytes(r.get('owned_bytes_rounded_per_connection'))})")
        out.append(f"tracemalloc heap           {_bytes(r.get('heap_bytes_per_connection'))}")
        out.append(f"remainder                  {_bytes(r.get('remainder_bytes_per_connection'))}:")
        out.append(f"  new objects no owner keeps          {_bytes(r.get('new_objects_no_owner_keeps_bytes_per_connection'))}")
        out.append(f"  objects from before, grown/freed    {_bytes(r.get('objects_before_grown_or_freed_bytes_per_connection'))}")
        out.append(f"  outside the graph (sys.getsizeof)   {_bytes(r.get('outside_the_graph_bytes_per_connection'))}"
                   + (f"  ({r['managed_dict_instances_per_connection']:g} instances per connection with a managed "
                      "__dict__, whose pre-header and attribute values sys.getsizeof leaves out)"
                      if r.get("managed_dict_instances_per_connection") else ""))
        for owner in process["owners"]:
            out.append("")
            out.append(f"{owner['type']}  x{owner['per_connection']:g}  retained "
                       f"{_bytes(owner['retained_bytes_per_connection'])}")
            out.extend(tree_lines(owner.get("tree", [])))
        diet = process.get("diet", {})
        if diet.get("ranked"):
            out.append("")
            out.append("what a diet would save (retained bytes per held connection if that object were not kept):")
            for item in diet["ranked"][:top]:
                out.append(f"  {_bytes(item['saving_bytes_per_connection']):>10}  {item.get('path', '?')}")
        if diet.get("slots_candidates"):
            out.append("__slots__ candidates (instance __dict__; saving measured from the graph):")
            for item in diet["slots_candidates"]:
                out.append(f"  {item.get('type', '?')}: x{item.get('count_per_connection', 0):g}, "
                           f"{item.get('attributes', '?')} attributes, {_bytes(item.get('bytes_now_per_connection'))}"
                           f" -> {_bytes(item.get('bytes_slotted_per_connection'))}: saves "
                           f"{_bytes(item['saving_bytes_per_connection'])}")
        unmeasured = [item for item in diet.get("slots_candidates_unmeasured", []) if isinstance(item, dict)]
        if unmeasured:
            out.append("__slots__ candidates whose attributes are outside the graph (a managed values array; "
                       "no saving measured): " + ", ".join(f"{item.get('type', '?')} x{item.get('count_per_connection', 0)}"
                                                          f" ({item.get('attributes', '?')} attributes)"
                                                          for item in unmeasured))
        out.append("")
    for phase, cost in costs.items() if isinstance(costs, dict) else ():
        if isinstance(cost, dict):
            out.append(f"heap graph at the end of {phase}: {cost.get('seconds')} s, file "
                       f"{_bytes(cost.get('file_bytes'))}, the subject's RSS peak +{_bytes(cost.get('peak_growth_bytes'))}"
                       + (f", the forked copy that walked it {_bytes(cost.get('copy_max_rss_bytes'))} RSS at most"
                          if cost.get("copy_max_rss_bytes") else ""))
    return "\n".join(out).rstrip() + "\n"
