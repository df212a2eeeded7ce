"""The ``massif`` probe: the subject runs under valgrind's massif, any program, native or Python.

What it does: :meth:`MassifProbe.wrap` puts ``valgrind --tool=massif --time-unit=ms ...`` in front
of the subject's command (memdiet's server too) with ``PYTHONMALLOC=malloc``, so that massif sees
each Python object as the malloc call it then is (pymalloc would hand out pieces of its 256 KiB
arenas, which massif sees as a few big blocks); a native program ignores the variable. At each phase
end :meth:`MassifProbe.phase_end` asks every process of the subject, through valgrind's gdbserver
(``vgdb --pid=PID detailed_snapshot FILE``), for a detailed snapshot of its own: the phase's heap and
its tree at that moment. After the subject exited, :meth:`MassifProbe.collect` reads the massif.out
files back with the viewer's reader (``tracemalloc_viewer.sources.massif_out``: the one place that
parses them, puts several processes on one clock and leaves out what a forked process inherited)
into the run's heap and site rows.

Rules:

- the heap is massif's ``mem_heap_B``: the bytes the program asked for. ``mem_heap_extra_B`` (the
  allocator's header and alignment per block, which PYTHONMALLOC=malloc makes large for Python:
  every object is a block) is never added; it is reported beside the heap at each phase end
  (``files.massif_phase_ends``) and in the notes;
- times are on the run's clock: massif's time 0 is valgrind's start in the process; each phase-end
  snapshot was taken between two readings of the runner's clock, which bound the offset between
  the two clocks (to ±60 ms here: a snapshot takes 0.12-0.25 s); without them, massif's clock is
  taken as the run's, which it trails by what valgrind takes to start (measured here: 46 ms for
  ``/bin/sleep``, 110-190 ms for nofd's server and nginx);
- sites are the heap trees' allocating functions (the C function that called malloc: massif sees C
  stacks, not Python lines), labelled by :func:`.sites.site_label`; massif counts no blocks, so
  every site's count is 0;
- several processes (nginx's master and workers, a server's forked or spawned workers): one
  massif.out per process (``--massif-out-file=...massif.out.%p``; ``--trace-children=yes`` so a
  program started by exec is followed too); each one's series is kept (``processes/pid-PID/``) and
  the run's heap is their sum, as for the other probes (:mod:`.processes`);
- the massif.out files move into the run folder's ``massif/``, and are read there by
  ``memdiet view chart RUN/massif/massif.out.*`` as well.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from tracemalloc_viewer.errors import ViewerInputError
from tracemalloc_viewer.model import Frame
from tracemalloc_viewer.sources import massif_out
from tracemalloc_viewer.sources.massif_out import OTHER_PROCESSES

from ...dataset.results import OTHER_SITE, write_json
from ...errors import BadInput
from ..procfs import ProcessGone, parent_and_name, read_proc
from .base import Probe, ProbeData, read_table
from .processes import held_connection_sites, summed_steps
from .sites import TOP_SITES, site_label

if TYPE_CHECKING:
    from tracemalloc_viewer.massif_check import Snapshot, TreeNode

    from ..scenario import RunConfig

#: The trace folder's subfolder massif writes into (the run folder's, after the run).
MASSIF_DIR = "massif"
#: What :meth:`MassifProbe.phase_end` records of each phase end, in :data:`MASSIF_DIR`.
PHASE_ENDS_FILE = "phase-ends.json"
#: The FIFOs valgrind's gdbserver and vgdb talk through: in the trace folder, not /tmp, so that a
#: process that dropped its privileges (nginx's workers, as nobody) and could not remove its own
#: leaves nothing behind (collect removes them).
VGDB_PREFIX = "vgdb-pipe"
#: massif's options, each with why. The defaults kept are written out, so result.json's command
#: says everything that shaped the figures.
MASSIF_OPTIONS = (
    "--tool=massif",
    # Times in ms since valgrind started: the run's clock (massif's default counts instructions).
    "--time-unit=ms",
    # A program that execs (sh -c, a launcher, multiprocessing's spawned workers) is followed, one
    # massif.out each; forked children are always followed (their file holds their parent's history
    # up to the fork, which the reader leaves out), and with it they get a gdbserver vgdb can reach.
    "--trace-children=yes",
    # Every 10th snapshot with a tree (massif's default). 1 made a tiny nofd run's file 31 MB instead
    # of 6.6 MB; the phase ends have trees of their own anyway (phase_end).
    "--detailed-freq=10",
    # 1000 snapshots instead of 100: massif keeps that many by doubling its interval, so 100 left
    # ~0.5 s between samples on a 1-minute run; 1000 keep ~60 ms, for a 6.6 MB file (nofd, 30 s run).
    "--max-snapshots=1000",
    # Sites under 1% of the heap merged into one node (the default): 0.1% doubled the CPU per request
    # (543 against 268 us on nofd) and made the file 30 MB.
    "--threshold=1.0",
    # 30 frames (the default): CPython's C stacks are deep (the eval loop's frames), 30 reach past the
    # allocating function and its type's constructor.
    "--depth=30",
    # The heap (malloc and friends), not every page mapped: the same thing tracemalloc measures.
    "--pages-as-heap=no",
    # No stacks: massif's manual warns they slow it down a great deal, and no other probe counts them.
    "--stacks=no",
    # Its gdbserver on (the default), which phase_end's vgdb talks to.
    "--vgdb=yes",
)
#: Seconds one process may take to write its phase-end snapshot (measured here: 0.12-0.31 s for
#: nofd's server idle or after load; the vgdb command waits for the process to reach valgrind's
#: scheduler, and writes a ~70 KB file). Past it the snapshot is given up, and the phase noted.
VGDB_TIMEOUT_S = 60.0
#: vgdb forces a process blocked in a system call (an idle server in epoll_wait) to answer after
#: this many ms (through ptrace); 100 (vgdb's default) made each snapshot ~0.1 s slower.
VGDB_MAX_INVOKE_MS = 10
#: How many times longer the timed phases last under massif. Measured on this 2-core machine (shared),
#: CPU per request in the load phase, traced against untraced: nofd (max_conns 4096, 50 clients) 7.5-10.3x
#: through the runner (226-267 us against 23-32 us, four pairs of runs) and 8.4-10.4x by hand (228-274
#: against 26-28 us); nginx (20 clients) 4.6-7.3x (69-101 against 14-15 us). Start-up to listening:
#: nofd 4.7-10 s against 0.15-0.38 s (3.6-4.6 CPU s against 0.10-0.12: valgrind translates every new
#: piece of code once). With its load phase 10x longer the traced server answers at least as many
#: requests as the untraced one (15-19 thousand against 9-12 thousand here), so its heap is loaded as
#: much, and the idle phases stay long next to the snapshots taken at their ends (~0.25 s each).
TIME_STRETCH = 10.0


class MassifProbe(Probe):
    name = "massif"
    note = ("valgrind --tool=massif --time-unit=ms (any program; PYTHONMALLOC=malloc, so each Python object is "
            "a malloc block massif sees): the heap curve is massif's mem_heap_B (bytes asked for; mem_heap_extra_B, "
            "the allocator's 8-23 B per block, reported beside it), sites are the allocating C functions of its "
            "heap trees (no Python lines), a detailed snapshot of every process at each phase end through vgdb. "
            "One massif.out per process, summed. massif costs 7.5-10.4x the CPU per request on nofd (4.6-7.3x on "
            "nginx) and ~35x at start-up, so the timed phases last 10x longer; the RSS of a massif run is "
            "valgrind's as much as the program's (~100 MiB for nofd): compare its heap, not its RSS.")
    subjects = "any"
    #: Seconds to come up, before the stretch (the runner multiplies): nofd's server takes 4-8 s under
    #: massif; naive's 65,536 slots of 4 KiB buffers far more.
    startup_timeout_s = 60.0

    def wrap(self, argv: list[str], env: dict[str, str], trace_dir: Path, config: RunConfig,
             in_server: bool) -> tuple[list[str], dict[str, str]]:
        valgrind = shutil.which("valgrind")
        if valgrind is None:
            raise BadInput("the massif probe needs valgrind (apt-get install valgrind, or make system-deps)")
        folder = (trace_dir / MASSIF_DIR).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # A subject started as root may drop its privileges (nginx's workers run as nobody):
            # massif writes each process's file as that process's user. Sticky, as /tmp is: no
            # process can remove another's file. Only this run's raw folder is opened so.
            folder.chmod(0o1777)
        return ([valgrind, *MASSIF_OPTIONS, f"--vgdb-prefix={folder / VGDB_PREFIX}",
                 f"--massif-out-file={folder}/massif.out.%p", *argv],
                {**env, "PYTHONMALLOC": "malloc"})

    def time_stretch(self, config: RunConfig) -> float:
        return TIME_STRETCH

    def phase_end(self, index: int, phase: str, pids: Sequence[int], trace_dir: Path,
                  check: Callable[[], None]) -> bool:
        """A detailed snapshot of each process in ``pids`` that valgrind's gdbserver can answer for,
        taken in parallel, each between two readings of the monotonic clock (recorded, with what
        was left out and why, in :data:`PHASE_ENDS_FILE`). True when at least one was written."""
        folder = trace_dir / MASSIF_DIR
        vgdb = shutil.which("vgdb")
        check()
        entry: dict[str, Any] = {"index": index, "phase": phase, "pids": list(pids), "snapshots": {}, "skipped": {},
                                 "parents": _parents(pids)}
        running: dict[int, tuple[subprocess.Popen, Path, float]] = {}
        for pid in pids:
            reason = "vgdb is not installed" if vgdb is None else _why_not_reachable(folder, pid)
            if reason is not None:
                entry["skipped"][str(pid)] = reason
                continue
            target = folder / f"massif.out.{pid}.{index:02d}-{phase}"
            before = time.monotonic()
            command = [vgdb, f"--vgdb-prefix={folder / VGDB_PREFIX}", f"--max-invoke-ms={VGDB_MAX_INVOKE_MS}",
                       f"--pid={pid}", "detailed_snapshot", str(target)]
            running[pid] = (subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE), target, before)
        deadline = time.monotonic() + VGDB_TIMEOUT_S
        try:
            while running:
                for pid, (process, target, before) in list(running.items()):
                    if process.poll() is None:
                        continue
                    after = time.monotonic()
                    del running[pid]
                    error = (process.stderr.read() if process.stderr else b"").decode(errors="replace").strip()
                    if process.stderr:
                        process.stderr.close()
                    if process.returncode == 0 and target.is_file():
                        entry["snapshots"][str(pid)] = {"file": target.name, "before_s": before, "after_s": after}
                    else:
                        entry["skipped"][str(pid)] = (f"vgdb exited {process.returncode}: "
                                                      f"{error.splitlines()[-1] if error else 'no snapshot written'}")
                if running:
                    if time.monotonic() > deadline:
                        for pid, (process, _target, _before) in running.items():
                            entry["skipped"][str(pid)] = f"no snapshot within {VGDB_TIMEOUT_S:g} s (vgdb stopped)"
                        break
                    check()
                    time.sleep(0.005)
        finally:
            for process, _target, _before in running.values():  # ours: stopped by its own pid
                process.kill()
                process.wait()
                if process.stderr:
                    process.stderr.close()
        _append_phase_end(folder, entry)
        return bool(entry["snapshots"])

    def collect(self, trace_dir: Path, run_dir: Path, t0: float, wall_t0: float, dumps: Sequence[str]) -> ProbeData:
        data = ProbeData(table=read_table(trace_dir))
        folder = trace_dir / MASSIF_DIR
        for fifo in folder.glob(f"{VGDB_PREFIX}-*"):  # left by processes that could not remove them
            fifo.unlink(missing_ok=True)
        phase_ends = _read_phase_ends(folder)
        for entry in phase_ends:
            for pid, reason in entry["skipped"].items():
                data.notes.append(f"phase-end snapshot after {entry['phase']}: pid {pid} left out ({reason})")
        paths = sorted(path for path in folder.glob("massif.out.*") if path.is_file())
        if not paths:
            data.notes.append("no massif.out was written: the subject did not exit through valgrind (killed?)")
            return data
        target = run_dir / MASSIF_DIR
        target.mkdir(exist_ok=True)
        moved = []
        for path in paths:
            os.replace(path, target / path.name)
            moved.append(target / path.name)
        data.files["massif"] = [str(path.relative_to(run_dir)) for path in moved if "." not in path.name[len("massif.out."):]]
        processes = _readable_processes(moved, data.notes)
        if not processes:
            return data
        root_pid = phase_ends[0]["pids"][0] if phase_ends and phase_ends[0]["pids"] else None
        processes.sort(key=lambda process: (process.pid != root_pid, process.pid is None, process.pid or 0))
        offsets, clock_notes = _measured_offsets(processes, phase_ends, t0)
        data.notes.extend(clock_notes)
        # Each file is written when its process exits (massif takes no snapshot then): its mtime on
        # the run's clock is when the process's last heap stopped counting.
        ends = {index: process.written_s - wall_t0 for index, process in enumerate(processes)
                if process.written_s is not None}
        # The parents seen at the phase ends: siblings forked alike can share snapshots by chance.
        position = {process.pid: index for index, process in enumerate(processes)}
        parents = {position[int(pid)]: position[ppid] for entry in phase_ends
                   for pid, ppid in entry.get("parents", {}).items() if int(pid) in position and ppid in position}
        placements = massif_out.place(processes, offsets, ends, parents)
        times = _phase_end_times(processes, placements, phase_ends)
        each = {f"pid-{process.pid}": _process_data(index, process, placement, times)
                for index, (process, placement) in enumerate(zip(processes, placements))}
        data.files["massif_phase_ends"] = _phase_end_figures(processes, placements, times)
        if len(each) == 1:
            one = next(iter(each.values()))
            data.heap_rows, data.site_rows = one.heap_rows, one.site_rows
            data.phase_end_heap, data.phase_end_sites = one.phase_end_heap, one.phase_end_sites
        else:
            _merge(data, each, processes, placements, phase_ends, times)
        for phase, figures in data.files["massif_phase_ends"].items():  # with the processes vgdb could not reach
            figures["heap_bytes"] = data.phase_end_heap.get(phase, figures["heap_bytes"])
        data.held_sites = held_connection_sites(list(each.values()))
        peak = max(data.heap_rows, key=lambda row: row[1], default=None)
        if peak is not None:
            data.notes.append(f"massif's heap peaked at {peak[1]:,} B (mem_heap_B) at {peak[0]:.3f} s; the allocator's "
                              f"overhead (mem_heap_extra_B) is in files.massif_phase_ends, never in the heap")
        return data


# --- phase ends ------------------------------------------------------------------------------------
def _why_not_reachable(folder: Path, pid: int) -> str | None:
    """Why vgdb cannot ask process ``pid`` for a snapshot, or None when it can: its gdbserver must
    have made its FIFOs, and the process must be able to open them. A forked child that dropped its
    privileges (nginx's workers, as nobody) inherits FIFOs made by root: its gdbserver cannot
    answer, and vgdb would wait for ever (seen here: a worker lost when that vgdb was stopped)."""
    fifos = list(folder.glob(f"{VGDB_PREFIX}-from-vgdb-to-{pid}-by-*"))
    if not fifos:
        return "no gdbserver FIFO (not under valgrind, or exited)"
    try:
        owner = fifos[0].stat().st_uid
        uid = _filesystem_uid(pid)
    except (OSError, ProcessGone):
        return "exited"
    if uid not in (0, owner):
        return (f"runs as uid {uid} and its gdbserver's FIFOs belong to uid {owner} (it dropped its privileges "
                f"after valgrind started): vgdb cannot reach it")
    return None


def _filesystem_uid(pid: int) -> int:
    """The uid process ``pid`` opens files as (the fourth figure of /proc/PID/status's ``Uid:`` line)."""
    for line in read_proc(pid, "status").decode().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[4])
    raise ProcessGone(f"process {pid} has no Uid line")


def _parents(pids: Sequence[int]) -> dict[str, int]:
    parents = {}
    for pid in pids:
        try:
            parents[str(pid)] = parent_and_name(pid)[0]
        except (OSError, ProcessGone, ValueError, IndexError):
            continue
    return parents


def _append_phase_end(folder: Path, entry: dict[str, Any]) -> None:
    entries = _read_phase_ends(folder)
    entries.append(entry)
    write_json(folder / PHASE_ENDS_FILE, entries)


def _read_phase_ends(folder: Path) -> list[dict[str, Any]]:
    try:
        entries = json.loads((folder / PHASE_ENDS_FILE).read_text())
    except (OSError, ValueError):
        return []
    return entries if isinstance(entries, list) else []


# --- reading back ----------------------------------------------------------------------------------
def _readable_processes(paths: list[Path], notes: list[str]) -> list[massif_out.ProcessOutput]:
    """The processes of the files that can be read; one that cannot (torn: its process was killed while
    massif wrote it) is left out with a note."""
    try:
        return massif_out.read_processes(paths)
    except ViewerInputError:
        pass
    readable = []
    for path in paths:
        try:
            massif_out.read_file(path)
            readable.append(path)
        except ViewerInputError as error:
            notes.append(f"{path.name} left out: {error}")
    try:
        return massif_out.read_processes(readable) if readable else []
    except ViewerInputError as error:
        notes.append(f"massif.out files not read: {error}")
        return []


def _phase_of(tag: str) -> str:
    """``03-load`` -> ``load`` (the tag phase_end gives a snapshot file)."""
    return tag.split("-", 1)[1] if "-" in tag else tag


def _measured_offsets(processes: Sequence[massif_out.ProcessOutput], phase_ends: Sequence[dict[str, Any]],
                      t0: float) -> tuple[dict[int, float], list[str]]:
    """Each process's offset from its massif clock to the run's, bounded by its phase-end snapshots:
    a snapshot stamped m ms was taken between two runner readings b0 and b1 (s on the run's clock),
    so the offset is within [b0 - (m + 1 ms), b1 - m] (massif's ms are whole); the bounds of all its
    snapshots are intersected, and the middle taken."""
    windows: dict[str, dict[str, float]] = {}
    for entry in phase_ends:
        for pid, snapshot in entry["snapshots"].items():
            windows.setdefault(pid, {})[snapshot["file"]] = (snapshot["before_s"] - t0, snapshot["after_s"] - t0)
    offsets, notes = {}, []
    for index, process in enumerate(processes):
        bounds = []
        for tag, snapshots in process.tagged.items():
            name = f"massif.out.{process.pid}.{tag}"
            window = windows.get(str(process.pid), {}).get(name)
            if window is None or not snapshots:
                continue
            stamp_s = snapshots[0].time / 1000
            bounds.append((window[0] - stamp_s - 0.001, window[1] - stamp_s))
        if not bounds:
            if index == 0:
                notes.append("massif's clock taken as the run's: no phase-end snapshot to measure the offset with "
                             "(it trails the run's by valgrind's start-up, 46-190 ms measured here: rows are that much early)")
            continue
        low, high = max(bound[0] for bound in bounds), min(bound[1] for bound in bounds)
        offsets[index] = (low + high) / 2
        if low > high:
            notes.append(f"pid {process.pid}: the phase-end snapshots' clock readings disagree by {1000 * (low - high):.0f} ms")
        elif index == 0:
            notes.append(f"massif's clock starts {offsets[index] * 1000:.0f} ms after the run's (within "
                         f"±{500 * (high - low):.0f} ms, from {len(bounds)} phase-end snapshots)")
    return offsets, notes


def _phase_end_times(processes: Sequence[massif_out.ProcessOutput], placements: Sequence[massif_out.Placement],
                     phase_ends: Sequence[dict[str, Any]]) -> dict[str, dict[int, tuple[float, Snapshot]]]:
    """``{phase: {process index: (time on the run's clock, snapshot)}}`` of the phase-end snapshots."""
    times: dict[str, dict[int, tuple[float, Snapshot]]] = {}
    for index, (process, placement) in enumerate(zip(processes, placements)):
        for tag, snapshots in process.tagged.items():
            if snapshots:
                when = snapshots[0].time / 1000 + placement.offset_s
                times.setdefault(_phase_of(tag), {})[index] = (when, snapshots[0])
    return times


def _labelled(tree: TreeNode) -> dict[str, int]:
    """Bytes of a heap tree by site label (the allocating frame), as every probe labels sites."""
    by_label: dict[str, int] = {}
    for frame, size in massif_out.allocating_frames(tree):
        label = _label(frame)
        by_label[label] = by_label.get(label, 0) + size
    return by_label


@functools.lru_cache(maxsize=65536)
def _label(frame: Frame) -> str:
    """A frame's site label; a pseudo-site's ((below threshold), (other processes)) is its name.
    Cached: a run's trees repeat their frames, and labelling resolves a path."""
    if frame.lineno == 0 and frame.filename.startswith("("):
        return frame.filename
    # "???" for a function massif could not name: site_label would look it up as Python source.
    return site_label(frame.filename, frame.lineno, frame.function or "???")


def _top_rows(time_s: float, by_label: dict[str, int]) -> list[tuple[float, str, int, int]]:
    """The top :data:`TOP_SITES` labels, the rest as ``(other)``; count 0 (massif counts no blocks)."""
    ranked = sorted(by_label.items(), key=lambda item: (-item[1], item[0]))
    rows = [(time_s, label, size, 0) for label, size in ranked[:TOP_SITES] if size]
    rest = sum(size for _label, size in ranked[TOP_SITES:])
    if rest:
        rows.append((time_s, OTHER_SITE, rest, 0))
    return rows


def _process_data(index: int, process: massif_out.ProcessOutput, placement: massif_out.Placement,
                  times: dict[str, dict[int, tuple[float, Snapshot]]]) -> ProbeData:
    """One process's series (``index``: its place in ``times``): every own snapshot a heap row, every
    tree its site rows, its phase-end snapshots its phase-end heap and sites."""
    data = ProbeData()
    for time_s, snapshot in massif_out.own_snapshots(process, placement):
        data.heap_rows.append((time_s, snapshot.heap, None, None))
        if snapshot.tree is not None:
            data.site_rows.extend(_top_rows(time_s, _labelled(snapshot.tree)))
    if data.heap_rows and placement.end_s > data.heap_rows[-1][0] + 0.001:
        # Its last heap held until it exited (massif takes no snapshot then): the step's end.
        data.heap_rows.append((placement.end_s, data.heap_rows[-1][1], None, None))
    for phase, by_process in times.items():
        if index in by_process:
            snapshot = by_process[index][1]
            data.phase_end_heap[phase] = snapshot.heap
            data.phase_end_sites[phase] = {label: (size, 0) for label, size in
                                           _labelled(snapshot.tree).items()}
    return data


def _heap_at(rows: Sequence[tuple], time_s: float) -> int:
    """A process's heap at ``time_s`` as a step (its last row at or before it), 0 before its first
    row and after its last (it had not begun, or had exited)."""
    if not rows or not rows[0][0] <= time_s <= rows[-1][0]:
        return 0
    return max((row for row in rows if row[0] <= time_s), key=lambda row: row[0])[1]


def _phase_end_figures(processes: Sequence[massif_out.ProcessOutput], placements: Sequence[massif_out.Placement],
                       times: dict[str, dict[int, tuple[float, Snapshot]]]) -> dict[str, dict[str, Any]]:
    """What result.json lists of each phase end: when, the heap (mem_heap_B; collect adds the
    processes vgdb could not reach, at their curve's value), the allocator's overhead
    (mem_heap_extra_B) of the ``processes`` snapshotted, and their files."""
    figures = {}
    for phase, by_process in times.items():
        figures[phase] = {
            "time_s": round(max(when for when, _snapshot in by_process.values()), 6),
            "heap_bytes": sum(snapshot.heap for _when, snapshot in by_process.values()),
            "heap_extra_bytes": sum(snapshot.heap_extra for _when, snapshot in by_process.values()),
            "processes": len(by_process),
            "files": [f"{MASSIF_DIR}/massif.out.{processes[index].pid}.{tag}"
                      for index in by_process for tag in processes[index].tagged if _phase_of(tag) == phase],
        }
    return figures


def _merge(data: ProbeData, each: dict[str, ProbeData], processes: Sequence[massif_out.ProcessOutput],
           placements: Sequence[massif_out.Placement], phase_ends: Sequence[dict[str, Any]],
           times: dict[str, dict[int, tuple[float, Snapshot]]]) -> None:
    """The run's series from several processes: heaps summed as steps (:func:`.processes.summed_steps`);
    site rows the phase-end snapshots' summed by label (the processes' own trees come at different
    times: they stay in each one's series). A process alive at a phase end that vgdb could not reach
    counts at its curve's value then, as one ``(other processes)`` site."""
    data.processes = each
    parents = {int(pid): ppid for entry in phase_ends for pid, ppid in entry.get("parents", {}).items()}
    data.process_info = [
        {"key": f"pid-{process.pid}", "pid": process.pid, "ppid": parents.get(process.pid),
         "argv": process.command.split(), "began": "fork" if placement.first_own else "start", "how": placement.how}
        for process, placement in zip(processes, placements)]
    data.heap_rows = summed_steps([one.heap_rows for one in each.values()])
    series = list(each.values())
    for phase, by_process in times.items():
        when = max(time_s for time_s, _snapshot in by_process.values())
        summed: dict[str, int] = {}
        for index in by_process:
            for label, (size, _count) in series[index].phase_end_sites.get(phase, {}).items():
                summed[label] = summed.get(label, 0) + size
        unreached = sum(_heap_at(one.heap_rows, when) for index, one in enumerate(series) if index not in by_process)
        if unreached:
            summed[OTHER_PROCESSES] = summed.get(OTHER_PROCESSES, 0) + unreached
        data.phase_end_heap[phase] = sum(snapshot.heap for _time_s, snapshot in by_process.values()) + unreached
        data.phase_end_sites[phase] = {label: (size, 0) for label, size in summed.items()}
        data.site_rows.extend(_top_rows(when, summed))
    data.site_rows.sort(key=lambda row: row[0])
