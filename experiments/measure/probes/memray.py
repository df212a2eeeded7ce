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
from typing import Sequence

from tracemalloc_viewer.sources import memray_records

from ...dataset.results import OTHER_SITE
from .base import Probe, ProbeData, read_table
from .sites import TOP_SITES, site_label

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
        data = ProbeData(table=read_table(trace_dir))
        capture = trace_dir / "memray.bin"
        if not capture.exists():
            data.notes.append("no memray capture was written (the server did not exit cleanly)")
            return data
        target = run_dir / "memray.bin"
        os.replace(capture, target)
        data.files["memray"] = target.name
        reader = memray_records.open_capture(target)  # imports memray: only this probe's runs need it
        try:
            snapshots = memray_records.memory_records(reader)
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
