"""The ``memray`` probe: the server runs under ``memray.Tracker`` with Python allocators traced; the
capture is read back with ``memray.FileReader`` into the same heap and per-site series as the
tracemalloc probe's, and memray's flame graph is rendered next to the results.

Rules: the capture is read after the server exited; the heap curve is memray's memory records, every
one of them, on the run's clock; sites are labelled by their allocating frame
(:func:`.sites.site_label`) and kept at every record; the table heap is what ``make_table`` left live
once the table was built.

Why this reads the capture itself rather than through the viewer's decoder
(``tracemalloc_viewer.sources.memray_capture``), which serves the viewer's outputs: that decoder (1)
puts its times on the first memory record's clock and drops the record's absolute time, which the
run's clock (seconds since the server started) needs; (2) adds memray's high-water mark as a sample
of its own, which would add a row to heap.csv and move ``loaded_peak_heap_bytes``; (3) gives sites
per sample, not the allocation intervals the table heap is counted from; (4) attributes sites sample
by sample, ~6 times slower at every record than the difference arrays below (a full-size naive
capture: 30 s against 5 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from ...dataset.results import OTHER_SITE
from .base import Probe, ProbeData, read_table
from .sites import TOP_SITES, site_label

#: Read every memory record (FileReader downsamples beyond 10,000 by default).
MAX_MEMORY_RECORDS = 10_000_000
#: The function whose allocations are the connection table.
TABLE_BUILDER = "make_table"


class MemrayProbe(Probe):
    name = "memray"
    note = ("memray.Tracker with trace_python_allocators=True: every allocation, pymalloc's small objects "
            "included, is recorded with its Python stack; memory snapshots every 10 ms. Much slower than "
            "the untraced server and the capture grows with every request; figures are read back with "
            "memray.FileReader (max_memory_records raised so the curve is not downsampled) after the "
            "server exits.")
    startup_timeout_s = 180.0

    def server_args(self, trace_dir: Path, hz: float, detail_interval_s: float) -> list[str]:
        return ["--trace", "memray", "--trace-dir", str(trace_dir)]

    def collect(self, trace_dir: Path, run_dir: Path, t0: float, wall_t0: float, dumps: Sequence[str]) -> ProbeData:
        import memray  # imported here: a heavy import, and only this probe's runs need it

        data = ProbeData(table=read_table(trace_dir))
        capture = trace_dir / "memray.bin"
        if not capture.exists():
            data.notes.append("no memray capture was written (the server did not exit cleanly)")
            return data
        target = run_dir / "memray.bin"
        os.replace(capture, target)
        data.files["memray"] = target.name
        reader = memray.FileReader(target, max_memory_records=MAX_MEMORY_RECORDS)
        try:
            snapshots = list(reader.get_memory_snapshots())
            times = [snapshot.time / 1000.0 - wall_t0 for snapshot in snapshots]  # ms since epoch
            data.heap_rows = [(t, s.heap, None, None) for t, s in zip(times, snapshots)]
            data.site_rows, table_heap = _memray_sites(reader, times)
        finally:
            reader.close()
        if table_heap is not None:
            data.table["table_heap_bytes"] = table_heap
        flamegraph = run_dir / "flamegraph.html"
        result = subprocess.run(
            [sys.executable, "-m", "memray", "flamegraph", "--force", "-o", str(flamegraph), str(target)],
            capture_output=True, text=True, timeout=300,
        )
        if result.returncode == 0 and flamegraph.exists():
            data.files["flamegraph"] = flamegraph.name
        else:
            data.notes.append("memray flamegraph failed: " + (result.stderr.strip().splitlines() or ["?"])[-1])
        return data


def _memray_sites(reader, times: list[float]) -> tuple[list[tuple[float, str, int, int]], int | None]:
    """Per-site bytes at each memory snapshot, from memray's temporal records, plus the bytes still
    live from allocations made under ``make_table`` at the first snapshot after it (the table heap).

    A temporal record's interval says its ``n_bytes`` were allocated before snapshot ``a`` and freed
    before snapshot ``d`` (never, when None): live at snapshots ``a .. d-1``. Each site adds
    ``+n`` at ``a`` and ``-n`` at ``d`` to a difference array, whose running sum is its live bytes
    at every snapshot (one pass over the records, however long each allocation lives).
    """
    count = len(times)
    if count == 0:
        return [], None
    deltas: dict[str, list[int]] = {}
    count_deltas: dict[str, list[int]] = {}
    table_intervals: list[tuple[int, int | None, int]] = []
    for record in reader.get_temporal_allocation_records(merge_threads=True):
        stack = record.stack_trace()
        if not stack:
            label = "<unknown>"
        else:
            function, filename, lineno = stack[0]
            label = site_label(filename, lineno, function)
        site_delta = deltas.setdefault(label, [0] * (count + 1))
        site_count = count_deltas.setdefault(label, [0] * (count + 1))
        in_table = any(frame[0] == TABLE_BUILDER for frame in stack)
        for interval in record.intervals:
            start = min(interval.allocated_before_snapshot, count)
            end = count if interval.deallocated_before_snapshot is None else min(interval.deallocated_before_snapshot, count)
            site_delta[start] += interval.n_bytes
            site_delta[end] -= interval.n_bytes
            site_count[start] += interval.n_allocations
            site_count[end] -= interval.n_allocations
            if in_table:
                table_intervals.append((interval.allocated_before_snapshot, interval.deallocated_before_snapshot, interval.n_bytes))

    live: dict[str, list[int]] = {}
    live_counts: dict[str, list[int]] = {}
    for label, delta in deltas.items():
        running = 0
        values = []
        for value in delta[:count]:
            running += value
            values.append(running)
        live[label] = values
        running = 0
        counts = []
        for value in count_deltas[label][:count]:
            running += value
            counts.append(running)
        live_counts[label] = counts
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
