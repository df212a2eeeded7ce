"""The ``tracemalloc`` probe: memdiet's server traces its own allocations (``server/tracing.py``); any
other Python program gets the same sampler injected at interpreter start (:mod:`..inject`), in each of
its Python processes.

What it reads back: heap totals at the sample rate (``heap.csv``), detailed per-site snapshots
(``sites.csv``), and a full snapshot dump at the end of each phase; each dump also gives a set of
per-site rows (so every run has sites at least at every phase end, however long naive's detailed
snapshots take), the live heap at that phase's end, and every site's bytes, from which the run says
where the held connections' bytes went (:func:`.processes.held_connection_sites`).

Rules: the CSV files are read as written, a torn last line (process killed) skipped; dumps are moved
into the run folder's ``snapshots/`` (``snapshots/pid-PID/`` for an injected program) and named after
the phase they end; sites are labelled by :func:`.sites.site_label`, as every probe labels them. Our
server's trace folder holds its files at the top (that is how the probe tells the two apart); an
injected program's processes each have a ``pid-PID/`` folder, summed by :mod:`.processes`.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from server.tracing import site_rows

from ...dataset.results import OTHER_SITE, PROBE_SITE
from .. import inject
from .base import Probe, ProbeData, ProbeFailed, read_table
from .processes import held_connection_sites, merge_processes
from .sites import TOP_SITES, site_label

if TYPE_CHECKING:
    from ..scenario import RunConfig

#: What the sampler writes once its first detailed snapshot is taken (the caches it fills are made).
READY_FILE = "ready.json"
#: Seconds a phase-end dump may take (naive's table at 65,536 slots takes several).
DUMP_TIMEOUT_S = 120.0


def wait_for_files(targets: Sequence[Path], timeout_s: float, what: str, check: Callable[[], None],
                   poll_s: float = 0.02) -> None:
    """Wait until every file of ``targets`` exists, calling ``check`` between looks (it raises when
    the subject died); ProbeFailed naming ``what`` and the missing files after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not all(target.exists() for target in targets):
        check()
        if time.monotonic() > deadline:
            missing = ", ".join(str(target) for target in targets if not target.exists())
            raise ProbeFailed(f"{what} did not appear within {timeout_s:g} s: {missing}")
        time.sleep(poll_s)


class TracemallocProbe(Probe):
    name = "tracemalloc"
    note = ("tracemalloc traces every Python allocation with its call stack, trace_frames deep (the run's "
            "--frames, 8 by default: tracemalloc.start(N)), from before the table is built (memdiet's "
            "server) or from interpreter start (any other Python program: injected by a bootstrap on "
            "PYTHONPATH, in every Python process of its tree, forked workers included, one series each). Totals "
            "(get_traced_memory) at the sample rate; detailed per-line snapshots at the detail interval, "
            "stretched to keep the sampler under 20% of the process's time; a full Snapshot.dump at the end "
            "of each phase (the process pauses while it is taken), whose sites join sites.csv. A full garbage "
            "collection runs before each dump and after each snapshot, so the free lists do not hold the "
            "snapshot's spare tuples as heap. tracemalloc's own memory is reported as "
            "tracer_bytes and is not in the heap figures, but it is in RSS. sites.csv is keyed by the allocating "
            "line whatever the frames; the dumps keep the stacks, which the massif.out trees nest. Each frame "
            "kept costs CPU at every allocation (tracemalloc computes its line by scanning its function's line "
            "table, and the server's loop and coroutine are long functions): nofd at the quick scale, 5 runs "
            "each on a 2-core EPYC, 110 us of CPU per request with 1 frame and 766 us with 8 (7.0x; untraced "
            "29.5 us), tracer_bytes 1.12 to 1.24 MiB (+11%), first detailed snapshot 0.15 to 0.43 s; the heap "
            "figures are the same.")
    subjects = "python"
    startup_timeout_s = 120.0

    def server_args(self, trace_dir: Path, hz: float, detail_interval_s: float) -> list[str]:
        return ["--trace", "tracemalloc", "--trace-dir", str(trace_dir),
                "--trace-hz", str(hz), "--detail-interval", str(detail_interval_s)]

    def wrap(self, argv: list[str], env: dict[str, str], trace_dir: Path, config: RunConfig,
             in_server: bool) -> tuple[list[str], dict[str, str]]:
        if in_server:  # the frames go here, not in server_args(): only this hook is given the run's config
            return [*argv, "--trace-frames", str(config.trace_frames),
                    *(["--trace-heap-graph"] if config.heap_graph else [])], env
        return argv, {**env, **inject.environment("tracemalloc", trace_dir, config)}

    def ready(self, trace_dir: Path, pids: Sequence[int]) -> bool:
        """Memdiet's server: its ``ready.json``; an injected program: every traced process alive."""
        if (trace_dir / READY_FILE).exists():
            return True
        folders = inject.live_process_dirs(trace_dir, pids)
        return bool(folders) and all((folder / READY_FILE).exists() for folder in folders)

    def phase_end(self, index: int, phase: str, pids: Sequence[int], trace_dir: Path,
                  check: Callable[[], None]) -> bool:
        """Ask for dump ``index``: memdiet's server by SIGUSR1 to ``pids[0]``; an injected program by
        raising the count in ``dump-requests``, which each process's sampler reads; then wait until
        every traced process alive has written it."""
        name = f"{index:03d}.tmsnap"
        if (trace_dir / "heap.csv").exists():
            os.kill(pids[0], signal.SIGUSR1)
            targets = [trace_dir / "snapshots" / name]
        else:
            inject.request_dumps(trace_dir, index + 1)
            targets = [folder / "snapshots" / name for folder in inject.live_process_dirs(trace_dir, pids)]
        wait_for_files(targets, DUMP_TIMEOUT_S, f"snapshot dump after {phase}", check)
        return True

    def collect(self, trace_dir: Path, run_dir: Path, t0: float, wall_t0: float, dumps: Sequence[str]) -> ProbeData:
        if (trace_dir / "heap.csv").exists():  # memdiet's server: one process, the trace folder its own
            data = self._collect_process(trace_dir, run_dir, Path("snapshots"), t0, dumps, sampled_sites=True)
            data.table = read_table(trace_dir)
            data.held_sites = held_connection_sites([data])
            return data
        processes = inject.process_dirs(trace_dir)
        data = ProbeData(table=read_table(trace_dir))
        if not processes:
            data.notes.append("no Python process of the subject wrote a tracemalloc series (was the bootstrap "
                              "on its PYTHONPATH? a program that clears its environment drops it)")
            return data
        each = {}
        for folder in processes:
            one = self._collect_process(folder, run_dir, Path("snapshots") / folder.name, t0, dumps, sampled_sites=True)
            data.notes.extend(f"{folder.name}: {note}" for note in one.notes)
            each[folder.name] = one
        merge_processes(data, each, inject.describe_processes(processes))
        data.held_sites = held_connection_sites(list(each.values()))
        return data

    def _collect_process(self, source: Path, run_dir: Path, into: Path, t0: float, dumps: Sequence[str],
                         sampled_sites: bool) -> ProbeData:
        """One traced process's series: ``source`` holds its heap.csv, sites.csv and snapshots/; its
        dumps move to ``run_dir / into``, named after the phase they end."""
        data = ProbeData()
        data.heap_rows = [
            (float(row[0]) - t0, int(row[1]), int(row[2]), int(row[3]))
            for row in _csv_rows(source / "heap.csv")
        ]
        raw_sites = [(float(row[0]), row[1], int(row[2]), int(row[3])) for row in _csv_rows(source / "sites.csv")]
        if not sampled_sites:
            raw_sites = []
        # Name each full dump after the phase it ends; its sites join the sampler's.
        snapshots, snapshot_times = [], {}
        for index, phase in enumerate(dumps):
            dumped_at = source / "snapshots" / f"{index:03d}.tmsnap"
            if dumped_at.exists():
                target = run_dir / into / f"{index:02d}-{phase}.tmsnap"
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(dumped_at, target)
                snapshots.append(str(target.relative_to(run_dir)))
                dumped = _dump_sites(target, source / "snapshots" / f"{index:03d}.json")
                if dumped is None:
                    data.notes.append(f"dump {target.name}: no time beside it, so no sites from it")
                    continue
                rows, data.phase_end_heap[phase], data.phase_end_sites[phase] = dumped
                raw_sites.extend(rows)
                # When the process took it, on the run's clock: readers place the dump there.
                snapshot_times[snapshots[-1]] = round(rows[0][0] - t0, 6)
        for time_s, site, size, count in sorted(raw_sites, key=lambda row: row[0]):
            if site not in (OTHER_SITE, PROBE_SITE):
                filename, _, lineno = site.rpartition(":")
                site = site_label(filename, int(lineno)) if lineno.isdigit() else site
            data.site_rows.append((time_s - t0, site, size, count))
        data.files["snapshots"] = snapshots
        data.files["snapshot_times_s"] = snapshot_times
        return data


def _dump_sites(dump: Path, sidecar: Path) -> tuple[list[tuple[float, str, int, int]], int,
                                                    dict[str, tuple[int, int]]] | None:
    """Per-site rows of a phase-end dump as the sampler writes them (``monotonic_s, file:line, bytes,
    count``, the top :data:`TOP_SITES`, ``(other)`` and ``(probe)``), at the time the server took it;
    the live heap it holds without the probe's own allocations; and every site's ``(bytes, count)``
    by label (the probe's lines as ``(probe)``). None without the time (a dump of an older server)."""
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
    every_site: dict[str, tuple[int, int]] = {}
    for stat in stats:
        frame = stat.traceback[0]
        label = PROBE_SITE if frame.filename in probe_files else site_label(frame.filename, frame.lineno)
        size, count = every_site.get(label, (0, 0))
        every_site[label] = (size + stat.size, count + stat.count)
    return [(when, site, size, count) for site, size, count in rows], total - probe_bytes, every_site


def _csv_rows(path: Path) -> list[list[str]]:
    """Rows of a CSV the server wrote, header dropped; a torn last line (server killed) is skipped."""
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    width = len(rows[0]) if rows else 0
    return [row for row in rows if len(row) == width and all(row)]
