"""Traced against untraced: a traced run's heap per held connection beside an untraced run's RSS per
held connection, and what of the difference the traced run's own RSS ledger accounts for.

Rules. The two figures are different quantities: the heap is the bytes Python asked for (tracemalloc),
RSS the pages the process touched. A traced run's RSS is not the untraced one (the tracer's tables and
churn sit in it), so the untraced figure comes from an ``rss`` run of the same command, and what the
heap leaves out comes from the traced run's ledger (experiments/measure/ledger.py): between the ends of
idle-empty and idle-held, summed over the traced processes and divided by the connections held, the
parts that are resident and in use beside the traced heap and not the tracer's own (:data:`BESIDE_HEAP`:
memory C code allocated that tracemalloc does not trace, the allocators' rounding of the traced blocks,
thread stacks, pages of files and of the libraries' data). The allocators' free space is left out: in a
traced run it holds the tracer's churn, so it says nothing of the untraced run's.

The two agree when they differ by at most :data:`AGREE` of the untraced figure; else the difference is
explained when the heap plus the parts beside it agrees so, and unexplained otherwise (the text says
by how much). Nothing here is measured: it reads result.json documents. Sizes are bytes.
"""

from __future__ import annotations

from typing import Any, Mapping

#: How far the traced and untraced figures per held connection may be apart (of the untraced one).
AGREE = 0.15
#: The ledger's parts that RSS holds beside the traced heap, in use, with what each is called.
BESIDE_HEAP: dict[str, str] = {
    "untraced": "memory in use that tracemalloc does not trace (C code's own allocations)",
    "rounding": "the allocators' rounding of the traced blocks",
    "stacks": "thread stacks",
    "file": "pages of files and shared libraries",
    "written": "pages written in the libraries' data",
    "shmem": "shared memory",
}


def _parts(one_ledger: Mapping[str, Any]) -> dict[str, int]:
    return {part["part"]: part["bytes"] for part in one_ledger.get("parts", ())}


def beside_heap(document: Mapping[str, Any]) -> dict[str, Any] | None:
    """result.json's ``heap_beside_rss`` for a traced run: its heap per held connection and what its RSS
    ledger holds per held connection beside it (:data:`BESIDE_HEAP`), ``in_use_bytes_per_held_connection``
    their sum; None when the run has no heap figure or no ledger at both ends (a memray run, a subject
    that held none, a tree that changed), with nothing to say."""
    heap = (document.get("summary") or {}).get("heap_bytes_per_held_connection")
    ledger = document.get("rss_ledger") or {}
    phases = ledger.get("phases") or {}
    if heap is None or ledger.get("per_held_connection") is None or not {"idle-empty", "idle-held"} <= set(phases):
        return None
    held = (document.get("held") or {}).get("held") or (document.get("parameters") or {}).get("connections")
    if not held:
        return None
    empty, full = _parts(phases["idle-empty"]), _parts(phases["idle-held"])
    parts = {name: (full[name] - empty[name]) / held for name in BESIDE_HEAP if name in full and name in empty}
    return {"heap_bytes_per_held_connection": heap, "parts_bytes_per_held_connection": parts,
            "in_use_bytes_per_held_connection": heap + sum(parts.values()),
            "from": "the RSS ledger's parts between the ends of idle-empty and idle-held, summed over the traced "
                    f"processes, over the {held} connections held"}


def compare(traced: Mapping[str, Any], untraced: Mapping[str, Any]) -> dict[str, Any]:
    """The traced run's heap per held connection against the untraced run's RSS per held connection
    (two result.json documents of one command): ``agrees`` (within :data:`AGREE`), else ``explained``
    (the heap plus the parts beside it, :func:`beside_heap`, agrees) with ``text`` saying which; a
    figure missing on either side gives ``agrees`` None and the reason."""
    heap = (traced.get("summary") or {}).get("heap_bytes_per_held_connection")
    rss = (untraced.get("summary") or {}).get("rss_bytes_per_held_connection")
    out: dict[str, Any] = {"traced_heap_bytes_per_held_connection": heap,
                           "untraced_rss_bytes_per_held_connection": rss, "agree_within": AGREE}
    if heap is None or rss is None or rss <= 0:
        out.update(agrees=None, explained=None, text="not compared: a figure per held connection is missing "
                   f"(heap {heap}, RSS {rss})")
        return out
    out["heap_over_rss"] = heap / rss
    if abs(heap - rss) <= AGREE * rss:
        out.update(agrees=True, explained=None, text=f"the heap {heap:,.0f} B and RSS {rss:,.0f} B per held "
                   f"connection agree within {AGREE:.0%}")
        return out
    beside = traced.get("heap_beside_rss") or beside_heap(traced)
    if beside is None:
        out.update(agrees=False, explained=False, text=f"the heap {heap:,.0f} B and RSS {rss:,.0f} B per held "
                   f"connection differ by more than {AGREE:.0%}; the traced run has no ledger to explain it")
        return out
    in_use = beside["in_use_bytes_per_held_connection"]
    parts = ", ".join(f"{BESIDE_HEAP[name]} {value:,.0f} B" for name, value in beside["parts_bytes_per_held_connection"].items()
                      if round(value))
    out["in_use_bytes_per_held_connection"] = in_use
    out["in_use_over_rss"] = in_use / rss
    explained = abs(in_use - rss) <= AGREE * rss
    verdict = (f"explained: with them {in_use:,.0f} B in use, within {AGREE:.0%} of RSS" if explained else
               f"not explained: with them {in_use:,.0f} B in use, {in_use / rss - 1:+.0%} from RSS")
    out.update(agrees=False, explained=explained,
               text=f"the heap {heap:,.0f} B per held connection is {heap / rss - 1:+.0%} from RSS {rss:,.0f} B; "
                    f"beside the heap, the traced run's RSS ledger holds per held connection {parts or 'nothing'}; "
                    + verdict)
    return out
