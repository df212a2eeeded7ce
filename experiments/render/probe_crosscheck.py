"""massif beside tracemalloc: the heap each probe saw at the end of every phase, for the same subject
and the same scenario, the difference, and why there is one.

The two probes measure the heap independently: tracemalloc from inside (Python's allocators, from the
moment the probe starts tracing), massif from outside (every malloc of the process, from its first
instruction, ``PYTHONMALLOC=malloc`` so that every Python object is one). Their levels differ by a
baseline; what each phase adds to the heap is the cross-check, and it should agree.

Rules: data first (:func:`crosscheck_tables`, from each run's result.json: ``phase_end_heap_bytes``,
the heap at each phase end, and for massif ``files.massif_phase_ends``, its allocator overhead
there), then markdown (:func:`crosscheck_markdown`). A subject is shown when it has a complete
tracemalloc run and a complete massif run with the same clients and table size. Reads files only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from ..dataset.results import IDLE_EMPTY, IDLE_HELD, PHASES, RunResult
from ..dataset.selection import layout_order
from .markdown import code, table
from .units import MISSING, human_bytes, slot_bytes

#: The run parameters two runs must share for their heaps to be set side by side.
SHARED_PARAMETERS = ("max_conns", "connections", "path", "keep_alive_timeout_s")


@dataclass(frozen=True)
class PhaseHeaps:
    """The heap at one phase's end: ``tracemalloc_bytes`` (its phase-end dump, after a full
    collection, the probe's own allocations left out), ``massif_bytes`` (``mem_heap_B`` of the
    detailed snapshot vgdb took then) and ``massif_extra_bytes`` (``mem_heap_extra_B`` there: the
    allocator's header and alignment per block, in neither heap figure; None when not recorded)."""

    phase: str
    tracemalloc_bytes: int
    massif_bytes: int
    massif_extra_bytes: int | None

    @property
    def difference_bytes(self) -> int:
        """massif's heap less tracemalloc's."""
        return self.massif_bytes - self.tracemalloc_bytes


@dataclass(frozen=True)
class CrossCheck:
    """One subject's two runs side by side: ``phases`` in scenario order (those both runs have),
    ``connections`` C, and the run folders' names."""

    subject: str
    connections: int
    tracemalloc_run: str
    massif_run: str
    phases: tuple[PhaseHeaps, ...]

    def at(self, phase: str) -> PhaseHeaps | None:
        return next((row for row in self.phases if row.phase == phase), None)

    @property
    def baseline_bytes(self) -> int:
        """The difference at the first phase end (idle-empty): what massif sees and tracemalloc does not."""
        return self.phases[0].difference_bytes

    @property
    def difference_spread_bytes(self) -> int:
        """How far the difference moves across the phases (largest less smallest)."""
        differences = [row.difference_bytes for row in self.phases]
        return max(differences) - min(differences)

    def held_per_connection(self) -> tuple[float, float] | None:
        """What one held connection adds to the heap, (tracemalloc, massif) in bytes: the heap at the
        end of idle-held less at the end of idle-empty, over C. None without both phases."""
        empty, held = self.at(IDLE_EMPTY), self.at(IDLE_HELD)
        if empty is None or held is None or self.connections <= 0:
            return None
        return ((held.tracemalloc_bytes - empty.tracemalloc_bytes) / self.connections,
                (held.massif_bytes - empty.massif_bytes) / self.connections)

    def extra_per_connection(self) -> float | None:
        """What one held connection adds to massif's allocator overhead (mem_heap_extra_B), in bytes."""
        empty, held = self.at(IDLE_EMPTY), self.at(IDLE_HELD)
        if empty is None or held is None or self.connections <= 0 or None in (empty.massif_extra_bytes,
                                                                                held.massif_extra_bytes):
            return None
        return (held.massif_extra_bytes - empty.massif_extra_bytes) / self.connections


def same_scenario(one: RunResult, other: RunResult) -> bool:
    """True when the two runs share every one of :data:`SHARED_PARAMETERS`: their figures may be set side by side."""
    return all(one.parameters.get(key) == other.parameters.get(key) for key in SHARED_PARAMETERS)


def crosscheck(tracemalloc_run: RunResult, massif_run: RunResult) -> CrossCheck | None:
    """The two runs side by side, or None when they cannot be: a run not complete, other parameters
    (:data:`SHARED_PARAMETERS`), or no phase end that both recorded a heap for."""
    if tracemalloc_run.status != "complete" or massif_run.status != "complete":
        return None
    if not same_scenario(tracemalloc_run, massif_run):
        return None
    traced = tracemalloc_run.document.get("phase_end_heap_bytes") or {}
    massif = massif_run.document.get("phase_end_heap_bytes") or {}
    extras = (massif_run.document.get("files") or {}).get("massif_phase_ends") or {}
    rows = tuple(PhaseHeaps(phase, int(traced[phase]), int(massif[phase]),
                            _int_or_none((extras.get(phase) or {}).get("heap_extra_bytes")))
                 for phase in PHASES if phase in traced and phase in massif)
    if not rows:
        return None
    return CrossCheck(massif_run.layout, int(massif_run.parameters.get("connections") or 0),
                      tracemalloc_run.path.name, massif_run.path.name, rows)


def crosscheck_tables(by_subject: Mapping[str, Mapping[str, RunResult]]) -> list[CrossCheck]:
    """One :class:`CrossCheck` per subject that has both runs (see :func:`crosscheck`), in the study's
    order. ``by_subject`` is ``{subject: {probe: run}}``."""
    checks = []
    for subject in layout_order(by_subject):
        runs = by_subject[subject]
        if "tracemalloc" in runs and "massif" in runs:
            check = crosscheck(runs["tracemalloc"], runs["massif"])
            if check is not None:
                checks.append(check)
    return checks


def crosscheck_markdown(checks: Iterable[CrossCheck]) -> list[str]:
    """The report's section body: per subject, the table of phase ends, then what the difference is."""
    lines: list[str] = []
    for check in checks:
        lines += [f"### {check.subject}: massif's heap beside tracemalloc's", "",
                  f"The heap at the end of each phase, from two runs of the same scenario ({check.connections:,} "
                  f"clients): {code(check.tracemalloc_run)} (tracemalloc) and {code(check.massif_run)} (massif, its phases "
                  "stretched to fit valgrind's slowdown).", ""]
        first = check.phases[0]
        body = [(row.phase, human_bytes(row.tracemalloc_bytes), human_bytes(row.massif_bytes),
                 _signed(row.difference_bytes), _signed(row.tracemalloc_bytes - first.tracemalloc_bytes),
                 _signed(row.massif_bytes - first.massif_bytes), human_bytes(row.massif_extra_bytes))
                for row in check.phases]
        lines += table(("phase end", "tracemalloc heap", "massif heap", "difference",
                        f"tracemalloc since {first.phase}", f"massif since {first.phase}",
                        "massif's allocator overhead"), body) + [""]
        lines += [_explanation(check), ""]
    if not lines:
        lines = ["No subject has both a tracemalloc run and a massif run of the same scenario "
                 "(`memdiet run --probe massif`).", ""]
    return lines


def _explanation(check: CrossCheck) -> str:
    spread, baseline = check.difference_spread_bytes, check.baseline_bytes
    share = f" ({spread / abs(baseline):.1%} of it)" if baseline else ""
    text = [f"massif sees {human_bytes(abs(baseline))} {'more' if baseline >= 0 else 'less'} heap than tracemalloc "
            f"at the end of {check.phases[0].phase}, and the difference moves by {human_bytes(spread)} across the "
            f"phases{share}: it is a baseline, not a disagreement about what the phases do."]
    held = check.held_per_connection()
    if held is not None:
        traced, massif = held
        gap = f", {abs(massif - traced) / abs(traced):.1%} apart" if traced else ""
        text.append(f"What a held connection adds agrees: {slot_bytes(traced)} by tracemalloc, {slot_bytes(massif)} by "
                    f"massif{gap}.")
    text.append("The baseline is what massif counts and the tracemalloc probe cannot: everything allocated before "
                "the probe started tracing (memdiet's server calls tracemalloc.start() in main(), after the "
                "interpreter's start-up and its first imports; an injected program from its sitecustomize on), and "
                "every malloc made by C code that bypasses Python's allocators, the only ones tracemalloc hooks. "
                "Smaller parts go both ways: tracemalloc's figure is taken after a full garbage collection and "
                "leaves its own sampler out; massif's snapshot collects nothing first.")
    extra = check.extra_per_connection()
    overhead = check.phases[0].massif_extra_bytes
    if overhead is not None:
        per = f", {slot_bytes(extra)} more per held connection" if extra is not None else ""
        text.append(f"Neither heap counts the allocator's own bytes. massif estimates them as mem_heap_extra_B "
                    f"({human_bytes(overhead)} at the end of {check.phases[0].phase}{per}): under "
                    "PYTHONMALLOC=malloc every Python object is a malloc block, to which massif adds 8 bytes "
                    "(--heap-admin, glibc's chunk header) and the rounding up to 16 (--alignment); with Python's own "
                    "allocator (the tracemalloc run) that cost is the slack of pymalloc's pools instead, which "
                    "neither probe reports.")
    return " ".join(text)


def _signed(value: float | None) -> str:
    if value is None:
        return MISSING
    if value == 0:
        return "0 B"
    return ("+" if value > 0 else "-") + human_bytes(abs(value))


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float)) else None
