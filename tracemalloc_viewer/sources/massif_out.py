"""Source: valgrind massif.out files (``valgrind --tool=massif``, any program), or this viewer's own
``massif`` export, read back into the same curves as every other capture.

Rules:

- **The curve is ``mem_heap_B``**: the bytes the program asked for (malloc's argument, summed over
  the blocks live). ``mem_heap_extra_B`` (what massif estimates the allocator adds per block: its
  header and the rounding up to its alignment) and ``mem_stacks_B`` (``--stacks=yes``) are never
  added to it; the notes state them at the peak. A heap tree's root holds ``mem_heap_B`` exactly.
- **Time**: with ``--time-unit=ms``, seconds since valgrind started in the process (``capture``
  clock). With ``i`` (instructions, massif's default) or ``B`` (bytes allocated) there is no clock: the
  x axis is the snapshot's position (``index``), and several files cannot be put on one axis.
- **Sites come from the heap trees** of the detailed and peak snapshots: one site per leaf, its frames
  the path from the root down (the allocating function first, then its callers), as massif recorded
  them. A frame with a source line is ``Frame(file, line, function)``; one massif knows no line for
  (``func (in /usr/sbin/nginx)``, ``??? (in lib.so)``) is keyed by its object file and its code
  address, the address standing as the line number (in decimal), so two unnamed functions stay two
  sites. The ``in K places, below massif's threshold`` nodes become a ``(below threshold)``
  pseudo-site under their parent; this viewer's own ``0x0: ??? (no further Python frames)`` leaf ends
  its parent's traceback, and its pseudo-sites (``(other)``, ``(probe)``) come back as they were
  written. massif counts no blocks: every site's count is 0.
- **The peak** is the sample with the most ``mem_heap_B``. massif marks its own peak (the most heap +
  extra + stacks, and only once it is ``--peak-inaccuracy``, 1%, above the last one), so the largest
  heap may be a snapshot without a tree: it then gets the tree of the largest detailed snapshot
  (massif's peak, as a rule) plus a ``(not attributed)`` site for the difference, and a note says so.
- **Several files are one program's processes**, named ``massif.out.PID`` as ``--massif-out-file=
  massif.out.%p`` names them (``massif.out.PID.TAG``: one more snapshot of that process, such as the
  ``detailed_snapshot`` a memdiet run takes through vgdb at each phase end, merged into its series by
  time). The curve is their sum: each process's heap as a step (its last snapshot holds until its
  next), counted from its first own snapshot until it exited (massif takes no snapshot at exit: the
  caller may know when, else it is estimated from the files' modification times, see :func:`place`).
  :func:`place` puts them on one clock: the root (the lowest pid, or the one named) at 0; a process
  forked under valgrind inherits its parent's clock *and its snapshots up to the fork*, which are
  recognised (same time and sizes as a snapshot of its parent: the lowest pid sharing any, unless the
  caller knows the parents) and left out, so no byte is counted twice; a process started by exec
  (``--trace-children=yes``) has a clock of its own, placed by its file's modification time less its
  last snapshot's time (the file is written at exit), unless the caller knows better (the memdiet
  probe measures it at each phase end). A detailed snapshot of one process among several carries an
  ``(other processes)`` site holding the others' heap at that moment, so its sites still add up to
  the curve.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from ..errors import ViewerInputError, first_bytes
from ..massif_tree import NO_FURTHER_FRAMES
from ..model import Frame, Sample, Series, Site
from ..untrusted import MASSIF_MAX_BYTES, read_text

if TYPE_CHECKING:
    from ..massif_check import MassifFile, Snapshot, TreeNode
    from .options import LoadOptions

NAME = "massif"

#: ``massif.out.PID`` or ``massif.out.PID.TAG`` (TAG: one more snapshot of that process).
_FILE_NAME = re.compile(r"^massif\.out\.(?P<pid>[0-9]+)(?:\.(?P<tag>.+))?$")
#: A tree line's label: ``0xADDRESS: function (file:line)``, ``... (in object)`` or no location.
_CODE_LABEL = re.compile(r"^0x(?P<address>[0-9A-Fa-f]+): (?P<rest>.*)$")
#: Pseudo-sites: bytes massif merged below its threshold, and the other processes of a program.
BELOW_THRESHOLD = "(below threshold)"
OTHER_PROCESSES = "(other processes)"
#: Stands for a frame massif has no object file for (``0xADDR: ???``).
UNKNOWN_OBJECT = "???"
#: Bytes of a tree that has no node below its root, and of a leaf that names no frame.
_NO_TREE = Frame("(no tree)", 0, "massif wrote no tree for these bytes")
_NO_FRAME = Frame("(no tree)", 0, "massif wrote no frame for these bytes")


def claims(paths: Sequence[Path]) -> bool:
    return all(path.is_file() and first_bytes(path, 6) == b"desc: " for path in paths)


def load(paths: Sequence[Path], options: "LoadOptions") -> Series:
    processes = read_processes(paths)
    placements = place(processes)
    samples, notes = combine(processes, placements)
    series = Series(samples, command=processes[0].command or str(paths[0]), source=NAME,
                    time_source="capture" if processes[0].has_clock else "index", notes=notes,
                    detail_recorded=True)
    _give_peak_sites(series)
    return series


def _give_peak_sites(series: Series) -> None:
    """Give the peak sites when it has none (see the module's rules), in place."""
    index = series.peak_index
    peak = series.samples[index]
    if peak.sites is not None:
        return
    detailed = [sample for sample in series.samples if sample.sites is not None]
    if not detailed:
        whole = Frame("(whole heap)", 0, "massif wrote no heap tree")
        series.samples[index] = replace(peak, sites=(Site((whole,), peak.total_bytes, 0),))
        series.notes.append(f"peak ({peak.time_s:.3f} s): the file has no heap tree; its tree is one node")
        return
    largest = max(detailed, key=lambda sample: (sample.total_bytes, -abs(sample.time_s - peak.time_s)))
    rest = peak.total_bytes - largest.total_bytes  # >= 0: the peak is the largest sample
    what = f"the peak minus massif's largest detailed snapshot, at {largest.time_s:.3f} s"
    extra = (Site((Frame("(not attributed)", 0, what),), rest, 0),) if rest else ()
    series.samples[index] = replace(peak, sites=tuple(largest.sites or ()) + extra)
    series.notes.append(f"peak ({peak.time_s:.3f} s, {peak.total_bytes:,} B): no tree there (massif records a new peak "
                        f"only 1% above the last); its tree is the largest detailed snapshot's, at {largest.time_s:.3f} s"
                        + (f", plus {rest:,} B not attributed" if rest else ""))


# --- one file ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _lenient_parser() -> type:
    """massif_check's strict parser with one rule relaxed: a file may hold no peak snapshot (what vgdb's
    ``detailed_snapshot`` writes) and a snapshot may exceed the peak (massif records a new peak only
    after ``--peak-inaccuracy`` percent, 1% by default, and a user may raise it). Everything else (the
    header, the fields, the trees' sums and indentation) is checked as strictly.

    Made on first use: this module is imported with the package, and importing massif_check then
    would make ``python -m tracemalloc_viewer.massif_check`` warn that it was imported twice."""
    from ..massif_check import MassifFormatError, _Parser

    class LenientParser(_Parser):
        def _check_peak(self, snapshots) -> None:
            peaks = [snapshot for snapshot in snapshots if snapshot.kind == "peak"]
            if len(peaks) > 1:
                raise MassifFormatError(peaks[1].line, f"{len(peaks)} peak snapshots, expected at most one")

    return LenientParser


def read_file(path: Path) -> MassifFile:
    """The massif.out file at ``path``, parsed and checked (see :func:`_lenient_parser`); raises
    :class:`ViewerInputError` naming the file and the line at fault."""
    from ..massif_check import MassifFormatError

    text = read_text(path, MASSIF_MAX_BYTES)
    try:
        return _lenient_parser()(text, 0.0).parse()
    except MassifFormatError as error:
        raise ViewerInputError(f"{path}: not a valid massif.out file ({error}; truncated?)") from None


@functools.lru_cache(maxsize=65536)
def frame_of(label: str) -> Frame | None:
    """The frame a tree node's label names (see the module's rules); None for this viewer's
    ``no further Python frames`` leaf, which stands for no frame. Cached: a file repeats its labels
    in every detailed snapshot."""
    if label == NO_FURTHER_FRAMES:
        return None
    match = _CODE_LABEL.match(label)
    if match is None:
        raise ValueError(f"not a massif code label: {label!r}")
    address, rest = int(match["address"], 16), match["rest"]
    function, location = rest, ""
    if rest.endswith(")") and " (" in rest:
        function, _, location = rest[:-1].rpartition(" (")
    name = None if function == "???" else function
    if location.startswith("in "):
        return Frame(location[3:], address, name)
    filename, _, line = location.rpartition(":")
    if filename and line.isdigit():
        return Frame(filename, int(line), name)
    if location:  # a location that is neither form: keep it whole, keyed by the address
        return Frame(location, address, name)
    return Frame(UNKNOWN_OBJECT, address, name)


def tree_sites(tree: TreeNode) -> tuple[Site, ...]:
    """The sites of a heap tree: one per leaf that holds bytes, in the tree's order, frames from the
    root's child down (most recent call first), sizes adding up to the root's. Walked iteratively: a
    tree is as deep as ``--depth``."""
    sites: list[Site] = []
    # (node, frames of the path to it, the node's own frame excluded); a stack, so children reversed
    pending: list[tuple[TreeNode, tuple[Frame, ...]]] = [(child, ()) for child in reversed(tree.children)]
    if not tree.children and tree.size:
        sites.append(Site((_NO_TREE,), tree.size, 0))
    while pending:
        node, path = pending.pop()
        if node.below_threshold:
            if node.size:
                sites.append(Site(path + (_below_threshold_frame(node.label),), node.size, 0))
            continue
        frame = frame_of(node.label)
        frames = path if frame is None else path + (frame,)
        if node.children:
            pending.extend((child, frames) for child in reversed(node.children))
        elif node.size:  # massif keeps a node whose blocks were all freed, with 0 bytes
            sites.append(Site(frames or (_NO_FRAME,), node.size, 0))
    return tuple(sites)


def allocating_frames(tree: TreeNode) -> list[tuple[Frame, int]]:
    """The first level of a heap tree: each allocating frame (or pseudo-site) with its bytes, what
    :func:`tree_sites` gives grouped by the sites' first frame, read from the root's children alone."""
    frames = []
    for child in tree.children:
        if child.below_threshold:
            frame = _below_threshold_frame(child.label)
        else:
            frame = frame_of(child.label) or _NO_FRAME
        if child.size:
            frames.append((frame, child.size))
    if not tree.children and tree.size:
        frames.append((_NO_TREE, tree.size))
    return frames


def _below_threshold_frame(label: str) -> Frame:
    places = _places(label)
    return Frame(BELOW_THRESHOLD, 0, f"{places} place{'s' if places != 1 else ''} under massif's --threshold")


def _places(label: str) -> int:
    match = re.match(r"^in ([0-9]+) place", label)
    return int(match[1]) if match else 0


# --- processes -----------------------------------------------------------------------------------
@dataclass
class ProcessOutput:
    """What massif wrote for one process: ``pid`` (from the file name; None when it holds none), the
    files read (its own first, then the extra snapshots), its ``command`` and ``time_unit``, and its
    ``snapshots`` from all of them in time order. ``written_s``: the wall-clock time its own file was
    last written (its exit), ``None`` without one; ``tagged``: the snapshots each extra file
    (``massif.out.PID.TAG``) gave, by its tag."""

    pid: int | None
    paths: list[Path]
    command: str
    time_unit: str
    snapshots: list[Snapshot]
    written_s: float | None = None
    tagged: dict[str, list[Snapshot]] = field(default_factory=dict)

    @property
    def has_clock(self) -> bool:
        return self.time_unit == "ms"

    @property
    def name(self) -> str:
        return f"pid {self.pid}" if self.pid is not None else self.paths[0].name

    def time_s(self, position: int) -> float:
        """The time of snapshot ``position`` on this process's own clock: seconds since valgrind
        started in it (the position itself when it has no clock)."""
        return self.snapshots[position].time / 1000 if self.has_clock else float(position)


def read_processes(paths: Sequence[Path]) -> list[ProcessOutput]:
    """The files grouped by process (see the module's rules), lowest pid first (files without a pid
    after, in the order given)."""
    groups: dict[object, list[tuple[Path, str | None]]] = {}
    for index, path in enumerate(paths):
        match = _FILE_NAME.match(path.name)
        key = int(match["pid"]) if match else ("file", index)
        groups.setdefault(key, []).append((path, match["tag"] if match else None))
    processes = []
    for key, files in groups.items():
        files.sort(key=lambda entry: entry[1] is not None)  # its own file first, then the extra snapshots
        snapshots: list[Snapshot] = []
        tagged: dict[str, list[Snapshot]] = {}
        command = unit = None
        written_s = None
        for path, tag in files:
            massif = read_file(path)
            if unit is not None and massif.time_unit != unit:
                raise ViewerInputError(f"{path}: time unit {massif.time_unit}, the other files of its process have {unit}")
            command, unit = command or massif.cmd, unit or massif.time_unit
            if tag is None:
                written_s = written_s or path.stat().st_mtime
            else:
                tagged[tag] = list(massif.snapshots)
            snapshots.extend(massif.snapshots)
        snapshots.sort(key=lambda snapshot: snapshot.time)  # stable: a file's own order on a tie
        processes.append(ProcessOutput(key if isinstance(key, int) else None, [path for path, _tag in files],
                                       command or "", unit or "ms", snapshots, written_s, tagged))
    processes.sort(key=lambda process: (process.pid is None, process.pid or 0))
    units = {process.time_unit for process in processes}
    if len(processes) > 1 and units != {"ms"}:
        raise ViewerInputError(f"{processes[0].paths[0]}: several processes can be put on one clock only with "
                               f"--time-unit=ms (these have {', '.join(sorted(units))})")
    return processes


@dataclass(frozen=True)
class Placement:
    """Where one process's snapshots go on the series' clock: add ``offset_s`` to its own times; its
    snapshots from ``first_own`` on are its own (those before are its parent's, inherited at fork);
    it counts until ``end_s`` (its exit, or as near as is known), its last snapshot's heap holding
    until then; ``how`` says in a line how this was found."""

    offset_s: float
    first_own: int
    end_s: float
    how: str


def _key(snapshot: Snapshot) -> tuple[int, int, int, int]:
    return snapshot.time, snapshot.heap, snapshot.heap_extra, snapshot.stacks


def place(processes: Sequence[ProcessOutput], offsets: Mapping[int, float] | None = None,
          ends: Mapping[int, float] | None = None, parents: Mapping[int, int] | None = None) -> list[Placement]:
    """Each process's :class:`Placement` (see the module's rules). ``processes[0]`` is the root.
    ``offsets`` (by position in ``processes``) gives the offsets a caller measured (the root's
    included; a forked process takes its parent's); without one, the root is at 0 and a process
    started by exec is placed by its file's modification time. ``ends`` gives when each process
    exited, on the series' clock, and ``parents`` each one's parent (positions both), where the
    caller knows them.

    A forked process's file begins with its parent's snapshots up to the fork. Without ``parents``,
    its parent is taken to be the lowest pid whose file shares snapshots with it (same time and
    sizes): a server's master forks its workers, and workers forked alike often take identical
    snapshots at the same ms, so a sibling can share more than the parent does. A process forked by
    a worker (a grandchild of the root) is then counted from its parent's fork on, too early.

    massif takes no snapshot at exit: a process's last snapshot is its last allocation massif
    recorded, and an idle process may live long after it. Without ``ends``, a process other than the
    root is taken to have exited as long before the root's last snapshot as its file was written
    before the root's (each file is written at its process's exit): an estimate, never before its
    own last snapshot."""
    offsets, ends, parents = dict(offsets or {}), dict(ends or {}), dict(parents or {})
    root = processes[0]
    found: list[tuple[float, int, str]] = []  # (offset, first own snapshot, how)
    for index, process in enumerate(processes):
        if index == 0:
            found.append((offsets.get(0, 0.0), 0, "root process"))
            continue
        own_keys = {_key(snapshot) for snapshot in process.snapshots if snapshot.time > 0}
        parent, last_shared, inherited = None, -1, set()
        known = parents.get(index)
        for earlier in ([known] if known is not None and known < index else range(index)):
            shared = own_keys & {_key(snapshot) for snapshot in processes[earlier].snapshots}
            if shared:
                parent, last_shared, inherited = earlier, max(shared)[0], shared
                break
        if parent is not None:
            first_own = max(position for position, snapshot in enumerate(process.snapshots)
                            if _key(snapshot) in inherited) + 1
            # A forked valgrind keeps its parent's clock, so its parent's offset, even if measured.
            found.append((found[parent][0], first_own, f"forked from {processes[parent].name} (its first {first_own} "
                                                        f"snapshots are the parent's, up to {last_shared} ms)"))
        elif index in offsets:
            found.append((offsets[index], 0, "started by exec, clock measured"))
        elif process.written_s is None or root.written_s is None or not process.snapshots or not root.snapshots:
            found.append((found[0][0], 0, "started by exec, clock unknown: placed at the root's"))
        else:
            # Both files are written at exit: their mtime less their last snapshot's time bounds when
            # each clock started (exactly, when the last snapshot came at exit), on the wall clock.
            started = (process.written_s - process.time_s(len(process.snapshots) - 1)) - \
                      (root.written_s - root.time_s(len(root.snapshots) - 1))
            found.append((found[0][0] + started, 0, f"started by exec, placed by its file's time "
                                                    f"({started:+.3f} s after the root's clock)"))
    root_last = root.time_s(len(root.snapshots) - 1) + found[0][0] if root.snapshots else 0.0
    placements = []
    for index, (process, (offset_s, first_own, how)) in enumerate(zip(processes, found)):
        last = process.time_s(len(process.snapshots) - 1) + offset_s if len(process.snapshots) > first_own else float("-inf")
        if index in ends:
            end_s = max(ends[index], last)
        elif index == 0 or process.written_s is None or root.written_s is None:
            end_s = last
        else:
            end_s = max(last, root_last - (root.written_s - process.written_s))
        placements.append(Placement(offset_s, first_own, end_s, how))
    return placements


def own_snapshots(process: ProcessOutput, placement: Placement) -> list[tuple[float, Snapshot]]:
    """The process's own snapshots (inherited ones left out) with their times on the series' clock."""
    return [(process.time_s(position) + placement.offset_s, process.snapshots[position])
            for position in range(placement.first_own, len(process.snapshots))]


def combine(processes: Sequence[ProcessOutput], placements: Sequence[Placement]) -> tuple[list[Sample], list[str]]:
    """The samples of the processes' summed heap (see the module's rules), and notes saying how."""
    notes: list[str] = []
    events = []  # (time on the series clock, process index, snapshot)
    ends = [placement.end_s for placement in placements]
    for index, (process, placement) in enumerate(zip(processes, placements)):
        events.extend((time_s, index, snapshot) for time_s, snapshot in own_snapshots(process, placement))
    events.sort(key=lambda event: (event[0], event[1]))
    current: dict[int, int] = {}
    samples = []
    several = len(processes) > 1
    for time_s, index, snapshot in events:
        current[index] = snapshot.heap
        others = sum(heap for other, heap in current.items() if other != index and ends[other] >= time_s)
        sites = None
        if snapshot.tree is not None:
            sites = tree_sites(snapshot.tree)
            if others:
                sites += (Site((Frame(OTHER_PROCESSES, 0, "the heap of the program's other processes then"),), others, 0),)
        # A process placed by its file's time may start a few ms before the root's clock: never before 0.
        samples.append(Sample(max(time_s, 0.0), snapshot.heap + others, sites))
    notes.append(_curve_note(processes))
    for process, placement in zip(processes, placements):
        notes.append(_process_note(process, placement, several))
    notes.append("sites: the heap trees of massif's detailed snapshots (one frame per node, allocating function "
                 "first); massif counts no blocks, so every count is 0")
    return samples, notes


def _curve_note(processes: Sequence[ProcessOutput]) -> str:
    unit = processes[0].time_unit
    clock = ("seconds since valgrind started in the root process" if unit == "ms" else
             f"the snapshot's position (massif's time unit is {unit}: "
             f"{'instructions' if unit == 'i' else 'bytes allocated'}, not a clock)")
    what = "mem_heap_B (the bytes asked for; massif's mem_heap_extra_B, the allocator's overhead, is not in it)"
    if len(processes) == 1:
        return f"curve: {what}, {clock}"
    return f"curve: {what}, summed over {len(processes)} processes as steps, {clock}"


def _process_note(process: ProcessOutput, placement: Placement, several: bool) -> str:
    own = process.snapshots[placement.first_own:]
    peak = max(own, key=lambda snapshot: snapshot.heap, default=None)
    where = f"{process.name}: " if several else ""
    tagged = f", {len(process.tagged)} extra snapshot file(s)" if process.tagged else ""
    text = f"{where}{len(own)} snapshots{tagged}"
    if several:
        text += f"; {placement.how}; counted until {placement.end_s:.3f} s"
    if peak is not None:
        text += (f"; its largest heap {peak.heap:,} B with {peak.heap_extra:,} B of allocator overhead "
                 f"(mem_heap_extra_B, not in the curve)")
        if peak.stacks:
            text += f" and {peak.stacks:,} B of stacks"
    return text
