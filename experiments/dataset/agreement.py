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

The two agree when they differ by at most :data:`AGREE` of the untraced figure. Else the difference is
explained by one of two accountings, each measured: an untraced run with the allocators' figures (the
``allocators`` probe: no tracer) whose memory in use is the heap plus at most what the traced run's ledger
found allocated beside it (C code's allocations, the rounding; each within :data:`AGREE`), the rest of its RSS split by
its ledger (the allocators' free space: what the ramp freed and kept resident, or free memory the
connections filled; pages and stacks; memory neither allocator reports); or the heap plus the parts beside it in the traced run's ledger agreeing with RSS.
Otherwise it is unexplained (the text says by how much). Nothing here is measured: it reads result.json documents. Sizes are bytes.
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


#: An untraced run's ledger parts beside its memory in use, with what each is called (the free space first).
REST_PARTS: dict[str, str] = {
    "pymalloc_free": "pymalloc's free blocks",
    "pymalloc_empty": "pymalloc's empty pools",
    "malloc_free": "malloc's free chunks",
    "stacks": "thread stacks",
    "file": "pages of files and shared libraries",
    "written": "pages written in the libraries' data",
    "outside": "resident memory neither allocator reports (another allocator's: a Rust or C library's own; the "
               "ledger's remainder less the address space held untouched)",
}
#: The allocators' free space among :data:`REST_PARTS`.
FREE_PARTS = ("pymalloc_free", "pymalloc_empty", "malloc_free")
#: Bytes per held connection below which a heap and a memory in use agree whatever their ratio.
SMALL_BYTES = 256


def free_space(untraced: Mapping[str, Any]) -> dict[str, Any] | None:
    """An untraced run's ledger (the ``allocators`` probe: no tracer) per held connection: ``in_use``
    (pymalloc's blocks and malloc's chunks in use), ``free`` (the allocators' free space, :data:`FREE_PARTS`)
    and ``parts`` (every one of :data:`REST_PARTS`); None without such a ledger."""
    ledger = untraced.get("rss_ledger") or {}
    phases = ledger.get("phases") or {}
    if ledger.get("per_held_connection") is None or not {"idle-empty", "idle-held"} <= set(phases):
        return None
    empty, full = _parts(phases["idle-empty"]), _parts(phases["idle-held"])
    if "python_heap" in full or "untraced" not in full:  # a traced run's ledger holds the tracer's churn
        return None
    held = (untraced.get("held") or {}).get("held") or (untraced.get("parameters") or {}).get("connections")
    if not held:
        return None
    delta = {name: (full[name] - empty.get(name, 0)) / held for name in full}
    delta["outside"] = delta.get("remainder", 0.0) + delta.get("untouched", 0.0)
    parts = {name: delta[name] for name in REST_PARTS if name in delta}
    return {"in_use": delta["untraced"], "free": sum(parts.get(name, 0.0) for name in FREE_PARTS), "parts": parts}


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
    through_free = free_space(untraced)
    beside = traced.get("heap_beside_rss") or beside_heap(traced)
    # The untraced run's memory in use is the heap plus, at most, the allocations the traced run's ledger
    # found beside it in the allocators (C code's, the rounding): how much of those a run makes moves with
    # its timing (daphne: 4,350 to 6,357 B in use per held connection in three runs, the heap 4,034 B).
    allocated_beside = sum(value for name, value in ((beside or {}).get("parts_bytes_per_held_connection") or {}).items()
                           if name in ("untraced", "rounding") and value > 0)
    low, high = heap * (1 - AGREE) - SMALL_BYTES, (heap + allocated_beside) * (1 + AGREE) + SMALL_BYTES
    if through_free is not None and low <= through_free["in_use"] <= high:
        free = through_free["free"]
        rest = ", ".join(f"{REST_PARTS[name]} {value:+,.0f} B" for name, value in through_free["parts"].items()
                         if round(value))
        out.update(agrees=False, explained=True, in_use_bytes_per_held_connection=through_free["in_use"],
                   free_bytes_per_held_connection=free, explained_by="the untraced run's allocators",
                   text=f"the heap {heap:,.0f} B per held connection is {heap / rss - 1:+.0%} from RSS {rss:,.0f} B; "
                        f"explained: the untraced run's allocators hold {through_free['in_use']:,.0f} B in use per held "
                        f"connection (between the heap and the heap with the {allocated_beside:,.0f} B the traced run's "
                        f"ledger found allocated beside it, within {AGREE:.0%} or {SMALL_BYTES} B); the rest of its RSS by its "
                        f"ledger: {rest}; the allocators' free space "
                        + (f"grew {free:,.0f} B (what the ramp freed stayed resident)" if free >= 0 else
                           f"shrank {-free:,.0f} B (the connections filled free memory resident before)"))
        return out
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
    out.update(agrees=False, explained=explained, explained_by="the traced run's ledger" if explained else None,
               text=f"the heap {heap:,.0f} B per held connection is {heap / rss - 1:+.0%} from RSS {rss:,.0f} B; "
                    f"beside the heap, the traced run's RSS ledger holds per held connection {parts or 'nothing'}; "
                    + verdict)
    return out
