"""The RSS ledger's vocabulary, its sums and its one reader (result.json's ``rss_ledger``): the parts a
ledger lists, what each is and where it is read, the phases at whose end it is taken; the arithmetic
over ledgers already read (several processes' ledgers as one, what one more held connection costs);
and :func:`read_ledger`, the section read back as a :class:`LedgerTable`, which both reports draw.

Rules: data only, no files and no processes; :mod:`experiments.measure.ledger` reads the pages and the
allocators and makes one process's ledger with these parts, the result builder (:mod:`.builder`)
sums them, the reports read them through :func:`read_ledger` only. Sizes are bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Mapping as MappingType, Sequence

from .results import IDLE_AFTER, IDLE_EMPTY, IDLE_HELD, RunResult

#: The phases at whose end the RSS ledger is taken: the server idles there.
LEDGER_PHASES = (IDLE_EMPTY, IDLE_HELD, IDLE_AFTER)
#: The ledger's own key in result.json.
LEDGER_KEY = "rss_ledger"
#: The moment a bare interpreter's ledger is read as.
BARE = "bare interpreter"
#: The part no measurement explains.
REMAINDER = "remainder"

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


@dataclass(frozen=True, slots=True)
class Moment:
    """One ledger: ``rss_bytes`` and ``parts`` (``{part: bytes}`` in the ledger's order, the
    remainder last, adding up to ``rss_bytes``); bytes per connection (floats) in a per-held column."""

    name: str
    rss_bytes: float
    parts: dict[str, float]

    @property
    def remainder_bytes(self) -> float | None:
        return self.parts.get(REMAINDER)

    @property
    def remainder_share(self) -> float | None:
        """The remainder over RSS (None without either)."""
        remainder = self.remainder_bytes
        return remainder / self.rss_bytes if remainder is not None and self.rss_bytes else None

    def largest_part(self) -> tuple[str, float] | None:
        """The largest measured part (the remainder left out), (part, bytes)."""
        measured = [(part, size) for part, size in self.parts.items() if part != REMAINDER]
        return max(measured, key=lambda item: item[1]) if measured else None


@dataclass(frozen=True, slots=True)
class LedgerTable:
    """One subject's ledgers: ``phases`` (``{phase: Moment}`` in scenario order), ``bare`` (the bare
    interpreter's, None without one; ``bare_note`` says why, or which imports it failed),
    ``labels`` (``{part: label}`` for every part of any moment, in the ledger's order),
    ``per_held_connection`` as the run recorded it (bytes per held connection by kind, with the
    kernel's socket memory outside RSS), ``connections`` C."""

    subject: str
    probe: str
    run_name: str
    connections: int
    labels: dict[str, str]
    phases: dict[str, Moment]
    bare: Moment | None
    bare_note: str | None
    per_held_connection: dict[str, float | None] | None

    def moments(self) -> list[Moment]:
        """The bare interpreter's ledger (when there is one), then the phases'."""
        return ([self.bare] if self.bare is not None else []) + list(self.phases.values())

    def per_held_column(self) -> Moment | None:
        """idle-held less idle-empty, part by part and RSS, over C (bytes, floats); None without both
        phases or clients, or when the run left the figure out (``per_held_connection`` None: it did
        not hold its clients, or its process tree changed between the two ends)."""
        empty, held = self.phases.get(IDLE_EMPTY), self.phases.get(IDLE_HELD)
        if empty is None or held is None or self.connections <= 0 or self.per_held_connection is None:
            return None
        parts = {part: (held.parts.get(part, 0) - empty.parts.get(part, 0)) / self.connections
                 for part in self.labels if part in empty.parts or part in held.parts}
        return Moment("per held connection", (held.rss_bytes - empty.rss_bytes) / self.connections, parts)


def _moment(name: str, entry: Any) -> Moment | None:
    """A ledger of result.json as a :class:`Moment`; None when it is not one (an error, missing)."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("parts"), list) or "rss_bytes" not in entry:
        return None
    parts = {str(part["part"]): int(part["bytes"]) for part in entry["parts"]
             if isinstance(part, Mapping) and "part" in part and isinstance(part.get("bytes"), (int, float))}
    return Moment(name, int(entry["rss_bytes"]), parts)


def ledger_table(run: RunResult, subject: str | None = None) -> LedgerTable | None:
    """The :class:`LedgerTable` of one run (None without a ledger of the runner's shape)."""
    return read_ledger(run.document, subject or run.subject, run.path.name)


def read_ledger(document: Mapping[str, Any], subject: str, run_name: str) -> LedgerTable | None:
    """result.json's ``rss_ledger`` as a :class:`LedgerTable` (None without a ledger of the runner's
    shape: ``phases``, a non-empty object of ledgers)."""
    ledger = document.get(LEDGER_KEY)
    if not (isinstance(ledger, Mapping) and isinstance(ledger.get("phases"), Mapping) and ledger["phases"]):
        return None
    recorded = ledger["phases"]
    names = [phase for phase in LEDGER_PHASES if phase in recorded] + [p for p in recorded if p not in LEDGER_PHASES]
    phases = {name: moment for name in names for moment in [_moment(name, recorded[name])] if moment is not None}
    if not phases:
        return None
    bare_entry = ledger.get("bare_interpreter")
    bare = _moment(BARE, bare_entry)
    if bare is not None:
        failed = bare_entry.get("failed_imports") or []
        bare_note = (f"{len(failed)} of its {bare_entry.get('modules', '?')} imports failed: {', '.join(map(str, failed))}"
                     if failed else None)
    elif isinstance(bare_entry, Mapping) and bare_entry.get("error"):
        bare_note = f"not measured: {bare_entry['error']}"
    else:
        bare_note = "not measured"
    # Labels: the run's list of parts (its order), then any part a moment names that it does not.
    labels = {str(name): str(info.get("label", name)) for name, info in (ledger.get("parts") or {}).items()
              if isinstance(info, Mapping)}
    for entry in [bare_entry, *(recorded[name] for name in phases)]:
        for part in (entry or {}).get("parts", []) if isinstance(entry, Mapping) else []:
            if isinstance(part, Mapping) and "part" in part:
                labels.setdefault(str(part["part"]), str(part.get("label", part["part"])))
    present = {part for moment in [bare, *phases.values()] if moment is not None for part in moment.parts}
    labels = {part: label for part, label in labels.items() if part in present}
    per_held = ledger.get("per_held_connection")
    connections = int((document.get("parameters") or {}).get("connections") or 0)
    return LedgerTable(subject, str(document.get("probe", "")), run_name, connections,
                       labels, phases, bare, bare_note, dict(per_held) if isinstance(per_held, Mapping) else None)
