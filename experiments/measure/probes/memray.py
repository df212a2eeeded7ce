"""The ``memray`` probe: the server runs under ``memray.Tracker`` with Python allocators traced; the
capture is read back with ``memray.FileReader`` into the same heap and per-site series as the
tracemalloc probe's, and memray's flame graph is rendered next to the results.

Rules: the capture is read after the server exited; the heap curve is memray's memory records, every
one of them, on the run's clock; sites are labelled by their allocating frame
(:func:`.sites.site_label`) and kept at every record; the table heap is what ``make_table`` left live
once the table was built.

The capture is decoded by the viewer's memray decoding layer
(``tracemalloc_viewer.sources.memray_records``: the reader, the memory records, the live bytes at
each record), not through the viewer's memray source (``tracemalloc_viewer.sources.memray_capture``),
which serves the viewer's outputs: that source (1)
puts its times on the first memory record's clock and drops the record's absolute time, which the
run's clock (seconds since the server started) needs; (2) adds memray's high-water mark as a sample
of its own, which would add a row to heap.csv and move ``loaded_peak_heap_bytes``; (3) gives sites
per sample, not the allocation intervals the table heap is counted from; (4) attributes sites sample
by sample, ~6 times slower at every record than the difference arrays of
``memray_records.live_totals`` (a full-size naive capture: 30 s against 5 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from tracemalloc_viewer.sources import memray_records

from ...dataset.results import OTHER_SITE
from .. import inject
from .base import Probe, ProbeData, read_table
from .processes import summed_steps
from .sites import TOP_SITES, site_label

if TYPE_CHECKING:
    from ..scenario import RunConfig

#: The function whose allocations are the connection table.
TABLE_BUILDER = "make_table"


class MemrayProbe(Probe):
    name = "memray"
    note = ("memray.Tracker with trace_python_allocators=True: every allocation, pymalloc's small objects "
            "included, is recorded with its Python stack; memory snapshots every 10 ms. In memdiet's server it "
            "wraps the server's main; in any other Python program it starts at interpreter start (a bootstrap "
            "on PYTHONPATH) with native frames and follow_fork, one capture per process; an allocation with no "
            "Python frame (a C extension's own, such as uvloop's) is labelled by its native frame. Much slower "
            "than the untraced server and the capture grows with every request; figures are read back with "
            "memray.FileReader (max_memory_records raised so the curve is not downsampled) after the "
            "subject exits.")
    subjects = "python"
    startup_timeout_s = 180.0

    def server_args(self, trace_dir: Path, hz: float, detail_interval_s: float) -> list[str]:
        return ["--trace", "memray", "--trace-dir", str(trace_dir)]

    def wrap(self, argv: list[str], env: dict[str, str], trace_dir: Path, config: RunConfig,
             in_server: bool) -> tuple[list[str], dict[str, str]]:
        if in_server:
            return argv, env
        return argv, {**env, **inject.environment("memray", trace_dir, config)}

    def collect(self, trace_dir: Path, run_dir: Path, t0: float, wall_t0: float, dumps: Sequence[str]) -> ProbeData:
        in_server = (trace_dir / "memray.bin").exists()
        captures = [trace_dir / "memray.bin"] if in_server else _injected_captures(trace_dir)
        data = ProbeData(table=read_table(trace_dir))
        if not captures:
            data.notes.append("no memray capture was written (the subject did not exit cleanly, or no Python "
                              "process of it started the tracker)")
            return data
        each: dict[str, ProbeData] = {}
        unreadable: list[str] = []
        for capture in captures:
            key = "memray" if in_server else capture.parent.name if capture.name == "memray.bin" else f"pid-{capture.suffix[1:]}"
            target = run_dir / (capture.name if in_server else f"memray-{key}.bin")
            os.replace(capture, target)
            one = ProbeData()
            one.files["memray"] = target.name
            try:
                reader = memray_records.open_capture(target)  # imports memray: only this probe's runs need it
                try:
                    snapshots = memray_records.memory_records(reader)
                    times = [snapshot.time / 1000.0 - wall_t0 for snapshot in snapshots]  # ms since epoch
                    one.heap_rows = [(t, s.heap, None, None) for t, s in zip(times, snapshots)]
                    one.site_rows, table_heap = _memray_sites(reader, times, native=not in_server)
                finally:
                    reader.close()
            except Exception as error:  # one process's capture (a worker killed before it closed it): said, not fatal
                if in_server:
                    raise
                unreadable.append(f"{key}: its capture {target.name} could not be read ({error})")
                continue
            if table_heap is not None:
                data.table["table_heap_bytes"] = table_heap
            each[key] = one
        if not each:
            data.notes.extend(f"memray: {what}" for what in unreadable)
            return data
        if in_server:
            only = each["memray"]
            data.heap_rows, data.site_rows = only.heap_rows, only.site_rows
            data.files["memray"] = only.files["memray"]
        else:
            info = inject.describe_processes(inject.process_dirs(trace_dir))
            known = {entry["key"] for entry in info}
            info += [{"key": key, "pid": int(key[4:]), "began": "fork"} for key in each if key not in known]
            data.processes, data.process_info = each, [entry for entry in info if entry["key"] in each]
            data.heap_rows = summed_steps([one.heap_rows for one in each.values()])
            if unreadable:  # a sum without a process of the tree is no figure of the tree: none is given
                data.heap_rows = []
                data.notes.extend(f"memray: {what}; the heap summed over the processes is not given"
                                  for what in unreadable)
            # Sites of the first process (the root) are the run's; every process keeps its own.
            data.site_rows = next(iter(each.values())).site_rows
            data.files["memray"] = [one.files["memray"] for one in each.values()]
        first = run_dir / (data.files["memray"] if isinstance(data.files["memray"], str) else data.files["memray"][0])
        flamegraph = run_dir / "flamegraph.html"
        result = subprocess.run(
            [sys.executable, "-m", "memray", "flamegraph", "--force", "-o", str(flamegraph), str(first)],
            capture_output=True, text=True, timeout=300,
        )
        if result.returncode == 0 and flamegraph.exists():
            data.files["flamegraph"] = flamegraph.name
        else:
            data.notes.append("memray flamegraph failed: " + (result.stderr.strip().splitlines() or ["?"])[-1])
        return data


def _injected_captures(trace_dir: Path) -> list[Path]:
    """The captures of an injected run: each process's ``pid-PID/memray.bin``, and the
    ``memray.bin.PID`` files memray's follow_fork writes for forked children beside their parent's."""
    captures = []
    for folder in inject.process_dirs(trace_dir):
        captures.extend(sorted(folder.glob("memray.bin*"), key=lambda path: (path.name != "memray.bin", path.name)))
    return captures


def _memray_sites(reader, times: list[float], native: bool = False) -> tuple[list[tuple[float, str, int, int]], int | None]:
    """Per-site bytes at each memory snapshot, from memray's temporal records
    (:func:`memray_records.live_totals`, one pass), plus the bytes still live from allocations made
    under ``make_table`` at the first snapshot after it (the table heap).
    """
    count = len(times)
    if count == 0:
        return [], None
    table_intervals: list[tuple[int, int | None, int]] = []

    def label_of(record) -> str:
        stack = record.stack_trace()
        if any(frame[0] == TABLE_BUILDER for frame in stack):
            table_intervals.extend((interval.allocated_before_snapshot, interval.deallocated_before_snapshot,
                                    interval.n_bytes) for interval in record.intervals)
        if not stack:
            if native:  # allocated by C code with no Python frame above it: name its native frame
                try:
                    native_stack = record.native_stack_trace()
                except NotImplementedError:
                    native_stack = []
                for function, filename, lineno in native_stack:
                    if "memray" not in filename and not function.startswith(("malloc", "calloc", "realloc")):
                        return f"[native] {function} ({Path(filename).name}:{lineno})"
            return "<unknown>"
        function, filename, lineno = stack[0]
        return site_label(filename, lineno, function)

    live, live_counts = memray_records.live_totals(
        reader.get_temporal_allocation_records(merge_threads=True), range(count), label_of)
    top = sorted(live, key=lambda label: max(live[label]), reverse=True)[:TOP_SITES]
    others = [label for label in live if label not in set(top)]
    rows: list[tuple[float, str, int, int]] = []
    for index, time_s in enumerate(times):
        for label in top:
            if live[label][index]:
                rows.append((time_s, label, live[label][index], live_counts[label][index]))
        other_bytes = sum(live[label][index] for label in others)
        if other_bytes:
            rows.append((time_s, OTHER_SITE, other_bytes, sum(live_counts[label][index] for label in others)))

    table_heap = None
    if table_intervals:
        built_by = max(start for start, _end, _size in table_intervals)
        table_heap = sum(size for start, end, size in table_intervals
                         if start <= built_by and (end is None or end > built_by))
    return rows, table_heap
