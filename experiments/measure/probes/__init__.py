"""Probes: how a run measures the server.

Every run samples the server's RSS, USS and PSS from outside (:class:`RssSampler`, psutil). The probe
chosen for the run adds what is measured from inside:

- ``rss``: nothing inside; the server runs untouched, so its RSS and req/s are the clean figures;
- ``tracemalloc``: the server traces its allocations (``server/tracing.py``): heap totals at a fixed
  rate, detailed per-site snapshots, full snapshot dumps at the end of each phase; each dump also
  gives a set of per-site rows (so every run has sites at least at every phase end, however long
  naive's detailed snapshots take) and the live heap at that phase's end;
- ``memray``: the server runs under ``memray.Tracker`` with Python allocators traced; the capture is
  read back with ``memray.FileReader`` and turned into the same heap and per-site series, and memray's
  flame graph is rendered next to the results.

Each probe says what it traces and what it costs (:attr:`Probe.note`); the matrix adds the measured
slowdown against the ``rss`` run of the same layout.
"""

from __future__ import annotations

import ast
import csv
import functools
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import psutil

from server.tracing import site_rows

from ...dataset.results import OTHER_SITE, PROBE_SITE
from ...paths import REPO_ROOT

#: RSS is cheap to read (/proc/PID/statm); USS and PSS walk smaps_rollup (~1.5 ms for a 400 MB
#: process), so they are read on every Nth sample only.
FULL_INFO_EVERY = 5
#: Allocation sites kept per detailed snapshot; the rest is summed into ``(other)``.
TOP_SITES = 30


class RssSampler:
    """Samples a process's memory from outside at ``hz`` samples a second, in a thread.

    ``rows`` holds ``(monotonic_s, rss_bytes, uss_bytes, pss_bytes)``; USS and PSS are None on the
    samples where they are not read. Stops by itself when the process exits.
    """

    def __init__(self, pid: int, hz: float = 50.0) -> None:
        self.process = psutil.Process(pid)
        self.period_s = 1.0 / hz
        self.rows: list[tuple[float, int, int | None, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def latest_rss(self) -> int | None:
        return self.rows[-1][1] if self.rows else None

    def _run(self) -> None:
        process = self.process
        count = 0
        next_time = time.monotonic()
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if count % FULL_INFO_EVERY == 0:
                    info = process.memory_full_info()
                    row = (now, info.rss, info.uss, info.pss)
                else:
                    row = (now, process.memory_info().rss, None, None)
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                return
            if row[1] == 0:  # an exited process not yet reaped (a zombie) has no memory left
                return
            self.rows.append(row)
            count += 1
            next_time += self.period_s
            delay = next_time - time.monotonic()
            if delay < 0:  # fell behind (a slow smaps read): skip ahead rather than burst
                next_time = time.monotonic()
                delay = 0
            self._stop.wait(delay)


# --- allocation-site labels ----------------------------------------------------------------------
@functools.lru_cache(maxsize=512)
def _functions_in(filename: str) -> tuple[tuple[int, int, str], ...]:
    """(first line, last line, qualified name) of every function in ``filename``, innermost last."""
    try:
        tree = ast.parse(Path(filename).read_text(), filename)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return ()
    spans: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    spans.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return tuple(spans)


def function_at(filename: str, lineno: int) -> str | None:
    """Qualified name of the innermost function of ``filename`` containing ``lineno``, if known."""
    best = None
    for first, last, name in _functions_in(filename):
        if first <= lineno <= last and (best is None or first >= best[0]):
            best = (first, name)
    if best is None:
        return "<module>" if _functions_in(filename) or Path(filename).exists() else None
    return best[1]


def short_path(filename: str) -> str:
    """``filename`` relative to the repository or to site-packages, for readable site labels."""
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except (ValueError, OSError):
        pass
    parts = path.parts
    for marker in ("site-packages", "lib"):
        if marker in parts:
            return "/".join(parts[len(parts) - parts[::-1].index(marker):])
    return filename


def site_label(filename: str, lineno: int, function: str | None = None) -> str:
    """``file:line (function)`` for an allocation site; the function is looked up when not given."""
    function = function or function_at(filename, lineno)
    label = f"{short_path(filename)}:{lineno}"
    return f"{label} ({function})" if function else label


# --- probes --------------------------------------------------------------------------------------
@dataclass
class ProbeData:
    """What a probe contributes to the run folder, on the run's clock (seconds since server start)."""

    heap_rows: list[tuple[float, int, int | None, int | None]] = field(default_factory=list)
    site_rows: list[tuple[float, str, int, int]] = field(default_factory=list)
    table: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: The live heap at the end of each phase, bytes by phase name: the server's allocations in the
    #: phase-end dump (taken after a full collection), the probe's own left out.
    phase_end_heap: dict[str, int] = field(default_factory=dict)


class Probe:
    """Base: a probe adds server arguments before the run and reads its files after."""

    name: str
    note: str
    #: True when the runner must ask for a full snapshot dump (SIGUSR1) at the end of each phase.
    dumps_at_phase_end = False
    #: Seconds the server may take to come up (tracing a naive table takes long).
    startup_timeout_s = 60.0
    #: A file the server's tracer writes in the trace folder when it is settled; the runner starts
    #: the first phase only then (None: ready as soon as the server listens).
    ready_file: str | None = None

    def server_args(self, trace_dir: Path, hz: float, detail_interval_s: float) -> list[str]:
        return ["--trace-dir", str(trace_dir)]

    def collect(self, trace_dir: Path, run_dir: Path, t0: float, wall_t0: float, dumps: Sequence[str]) -> ProbeData:
        """Read what the server left in ``trace_dir``. ``t0`` is the server's start on the monotonic
        clock, ``wall_t0`` on the wall clock; ``dumps`` names the phase of each snapshot dump."""
        return ProbeData(table=_read_table(trace_dir))


def _read_table(trace_dir: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads((trace_dir / "table.json").read_text())
    except (OSError, ValueError):
        return {}


class RssProbe(Probe):
    name = "rss"
    note = ("Nothing traced inside the server: RSS at the sample rate and USS/PSS every "
            f"{FULL_INFO_EVERY}th sample, read from /proc by psutil in the runner. The server runs as in "
            "production; the sampler's reads cost it no CPU of its own.")


class TracemallocProbe(Probe):
    name = "tracemalloc"
    note = ("tracemalloc traces every Python allocation (1 frame) from before the table is built. Totals "
            "(get_traced_memory) at the sample rate; detailed per-line snapshots at the detail interval, "
            "stretched to keep the sampler under 20% of the server's time; a full Snapshot.dump at the end "
            "of each phase (the server pauses while it is taken), whose sites join sites.csv. A full garbage "
            "collection runs before each dump and after each snapshot, so the free lists do not hold the "
            "snapshot's spare tuples as heap. tracemalloc's own memory is reported as "
            "tracer_bytes and is not in the heap figures, but it is in RSS.")
    dumps_at_phase_end = True
    startup_timeout_s = 120.0
    ready_file = "ready.json"

    def server_args(self, trace_dir: Path, hz: float, detail_interval_s: float) -> list[str]:
        return ["--trace", "tracemalloc", "--trace-dir", str(trace_dir),
                "--trace-hz", str(hz), "--detail-interval", str(detail_interval_s)]

    def collect(self, trace_dir: Path, run_dir: Path, t0: float, wall_t0: float, dumps: Sequence[str]) -> ProbeData:
        data = ProbeData(table=_read_table(trace_dir))
        data.heap_rows = [
            (float(row[0]) - t0, int(row[1]), int(row[2]), int(row[3]))
            for row in _csv_rows(trace_dir / "heap.csv")
        ]
        raw_sites = [(float(row[0]), row[1], int(row[2]), int(row[3])) for row in _csv_rows(trace_dir / "sites.csv")]
        # Name each full dump after the phase it ends; its sites join the sampler's.
        snapshots, snapshot_times = [], {}
        for index, phase in enumerate(dumps):
            source = trace_dir / "snapshots" / f"{index:03d}.tmsnap"
            if source.exists():
                target = run_dir / "snapshots" / f"{index:02d}-{phase}.tmsnap"
                target.parent.mkdir(exist_ok=True)
                os.replace(source, target)
                snapshots.append(str(target.relative_to(run_dir)))
                dumped = _dump_sites(target, trace_dir / "snapshots" / f"{index:03d}.json")
                if dumped is None:
                    data.notes.append(f"dump {target.name}: no time beside it, so no sites from it")
                    continue
                rows, data.phase_end_heap[phase] = dumped
                raw_sites.extend(rows)
                # When the server took it, on the run's clock: readers place the dump there.
                snapshot_times[snapshots[-1]] = round(rows[0][0] - t0, 6)
        for time_s, site, size, count in sorted(raw_sites, key=lambda row: row[0]):
            if site not in (OTHER_SITE, PROBE_SITE):
                filename, _, lineno = site.rpartition(":")
                site = site_label(filename, int(lineno)) if lineno.isdigit() else site
            data.site_rows.append((time_s - t0, site, size, count))
        data.files["snapshots"] = snapshots
        data.files["snapshot_times_s"] = snapshot_times
        return data


def _dump_sites(dump: Path, sidecar: Path) -> tuple[list[tuple[float, str, int, int]], int] | None:
    """Per-site rows of a phase-end dump as the sampler writes them (``monotonic_s, file:line, bytes,
    count``, the top :data:`TOP_SITES`, ``(other)`` and ``(probe)``), at the time the server took it,
    and the live heap it holds without the probe's own allocations; None without the time (a dump
    of an older server)."""
    import json

    from tracemalloc_viewer import load_snapshot

    try:
        taken = json.loads(sidecar.read_text())
        when, probe_files = float(taken["monotonic_s"]), frozenset(taken["probe_files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    stats = load_snapshot(dump).statistics("lineno")
    total = sum(stat.size for stat in stats)
    rows = site_rows(stats, probe_files, TOP_SITES, total)
    probe_bytes = sum(size for site, size, _count in rows if site == PROBE_SITE)
    return [(when, site, size, count) for site, size, count in rows], total - probe_bytes


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
        import memray

        data = ProbeData(table=_read_table(trace_dir))
        capture = trace_dir / "memray.bin"
        if not capture.exists():
            data.notes.append("no memray capture was written (the server did not exit cleanly)")
            return data
        target = run_dir / "memray.bin"
        os.replace(capture, target)
        data.files["memray"] = target.name
        reader = memray.FileReader(target, max_memory_records=10_000_000)
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
    before snapshot ``d`` (never, when None): live at snapshots ``a .. d-1``.
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
        in_table = any(frame[0] == "make_table" for frame in stack)
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


def _csv_rows(path: Path) -> list[list[str]]:
    """Rows of a CSV the server wrote, header dropped; a torn last line (server killed) is skipped."""
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    width = len(rows[0]) if rows else 0
    return [row for row in rows if len(row) == width and all(row)]


PROBES: dict[str, Probe] = {probe.name: probe for probe in (RssProbe(), TracemallocProbe(), MemrayProbe())}
