"""The ``tracemalloc`` probe: the server traces its own allocations (``server/tracing.py``).

What it reads back: heap totals at the sample rate (``heap.csv`` in the trace folder), detailed
per-site snapshots (``sites.csv``), and a full snapshot dump at the end of each phase; each dump
also gives a set of per-site rows (so every run has sites at least at every phase end, however long
naive's detailed snapshots take) and the live heap at that phase's end.

Rules: the server's CSV files are read as written, a torn last line (server killed) skipped; dumps
are moved into the run folder's ``snapshots/`` and named after the phase they end; sites are labelled
by :func:`.sites.site_label`, as every probe labels them.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Sequence

from server.tracing import site_rows

from ...dataset.results import OTHER_SITE, PROBE_SITE
from .base import Probe, ProbeData, read_table
from .sites import TOP_SITES, site_label


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
        data = ProbeData(table=read_table(trace_dir))
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
    # Imported here: the viewer takes ~85 ms to import, and only this probe's runs need it (every
    # command imports the probe registry).
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


def _csv_rows(path: Path) -> list[list[str]]:
    """Rows of a CSV the server wrote, header dropped; a torn last line (server killed) is skipped."""
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    width = len(rows[0]) if rows else 0
    return [row for row in rows if len(row) == width and all(row)]
