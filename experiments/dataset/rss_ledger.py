"""The RSS ledger's vocabulary and its sums (result.json's ``rss_ledger``): the parts a ledger lists,
what each is and where it is read, the phases at whose end it is taken, and the arithmetic over
ledgers already read: several processes' ledgers as one, and what one more held connection costs.

Rules: data only, no files and no processes; :mod:`experiments.measure.ledger` reads the pages and the
allocators and makes one process's ledger with these parts, the result builder
(:mod:`.builder`) sums them. Sizes are bytes.
"""

from __future__ import annotations

from typing import Any, Mapping as MappingType, Sequence

from .results import IDLE_AFTER, IDLE_EMPTY, IDLE_HELD

#: The phases at whose end the RSS ledger is taken: the server idles there.
LEDGER_PHASES = (IDLE_EMPTY, IDLE_HELD, IDLE_AFTER)

#: The parts of a ledger in the order they are listed, with what each is and where it is read.
PARTS: dict[str, tuple[str, str]] = {
    "file": ("file-backed pages: the interpreter, shared libraries, mapped files",
             "smaps: Rss less Anonymous of file mappings, less RssShmem"),
    "shmem": ("shared memory", "/proc/PID/status RssShmem"),
    "written": ("pages written in the interpreter's and libraries' file mappings (.data, relocations)",
                "smaps: Anonymous of file mappings"),
    "stacks": ("thread stacks", "smaps: [stack] and the mapping each thread's stack pointer is in"),
    "special": ("kernel-provided mappings ([vdso], [vvar])", "smaps"),
    "python_heap": ("Python heap, as tracemalloc traces it", "tracemalloc.get_traced_memory()"),
    "rounding": ("allocators' rounding of the traced blocks (size classes, chunk headers)",
                 "the phase-end dump's traces, by pymalloc's and glibc's size rules"),
    "tracer": ("tracemalloc's own tables", "tracemalloc.get_tracemalloc_memory()"),
    "untraced": ("in use, not traced: allocated before tracing began, by C code, by the interpreter",
                 "pymalloc's allocated blocks + mallinfo2 uordblks + hblkhd, less the three parts above"),
    "pymalloc_free": ("pymalloc: free blocks of used pools, pool headers and tails, arena alignment",
                      "sys._debugmallocstats(): available blocks, pool headers, quantization, arena alignment"),
    "pymalloc_empty": ("pymalloc: empty pools", "sys._debugmallocstats(): unused pools"),
    "malloc_free": ("malloc: free chunks (the top one included)", "mallinfo2 fordblks"),
    "untouched": ("held by the allocators, never touched (not resident)",
                  "smaps: Size less Rss of writable anonymous mappings and [heap]; glibc's thread heaps: "
                  "mallinfo2 arena less [heap] less their Rss; negative"),
    "remainder": ("remainder: what no part explains", "the ledger's RSS less every part above"),
}
#: Parts that are the allocators' anonymous memory (the rest are read from the pages directly).
ALLOCATOR_PARTS = ("python_heap", "rounding", "tracer", "untraced", "pymalloc_free", "pymalloc_empty",
                   "malloc_free", "untouched")
#: What one more held connection costs, by kind: the ledger's parts summed.
PER_CONNECTION_KINDS: dict[str, tuple[str, ...]] = {
    "python_heap": ("python_heap",),
    "allocator": ("rounding", "pymalloc_free", "pymalloc_empty", "malloc_free", "untouched"),
    "untraced": ("untraced", "tracer"),
    "pages_and_stacks": ("file", "shmem", "written", "stacks", "special"),
    "remainder": ("remainder",),
}


def summed_ledger(ledgers: Sequence[MappingType[str, Any]]) -> dict[str, Any]:
    """Several processes' ledgers at one moment as one: RSS and each part summed (a page two processes
    share counts in each, as their RSS does); a part is kept only where every process has it (a sum
    with a process's part missing would be a wrong figure), else it joins the remainder. One ledger is
    returned as it is."""
    if len(ledgers) == 1:
        return dict(ledgers[0])
    rss = sum(one["rss_bytes"] for one in ledgers)
    each = [part_bytes(one) for one in ledgers]
    common = [name for name in PARTS if name != "remainder" and all(name in parts for parts in each)]
    values = {name: sum(parts[name] for parts in each) for name in common}
    values["remainder"] = rss - sum(values.values())
    parts = [{"part": name, "label": PARTS[name][0], "bytes": value, "source": PARTS[name][1]}
             for name, value in values.items()]
    return {"rss_bytes": rss, "parts": parts, "remainder_share": values["remainder"] / rss if rss else None,
            "threads": sum(one.get("threads", 0) for one in ledgers),
            "stacks_found": sum(one.get("stacks_found", 0) for one in ledgers), "processes": len(ledgers)}


def part_bytes(one_ledger: MappingType[str, Any]) -> dict[str, int]:
    """A ledger's parts as ``{part: bytes}``."""
    return {part["part"]: part["bytes"] for part in one_ledger["parts"]}


def per_held_connection(empty: MappingType[str, Any], held: MappingType[str, Any], connections: int,
                        kernel_bytes_per_held_connection: float | None) -> dict[str, float | None]:
    """What one more held connection costs (bytes), from the ledgers at the ends of idle-empty and
    idle-held: RSS, and by :data:`PER_CONNECTION_KINDS`, with the kernel's socket memory beside."""
    if connections <= 0:
        return {}
    before, after = part_bytes(empty), part_bytes(held)
    figures: dict[str, float | None] = {"rss": (held["rss_bytes"] - empty["rss_bytes"]) / connections}
    for kind, names in PER_CONNECTION_KINDS.items():
        figures[kind] = sum(after.get(name, 0) - before.get(name, 0) for name in names) / connections
    figures["kernel"] = kernel_bytes_per_held_connection
    return figures
