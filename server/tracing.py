"""In-server instrumentation for the experiment probes (imported only with ``--trace``).

``tracemalloc``: a sampler thread writes, into the trace folder,

- ``heap.csv``: ``monotonic_s,heap_bytes,peak_bytes,tracer_bytes`` at ``hz`` samples a second:
  ``tracemalloc.get_traced_memory()`` is cheap, so the curve is sampled often (``peak_bytes`` is the
  highest total since the previous sample, the probe's own snapshots left out);
- ``sites.csv``: ``monotonic_s,site,bytes,count``: a detailed snapshot grouped by allocation line, the
  ``top_sites`` largest plus ``(other)``, taken rarely, as massif takes its detailed snapshots: a
  snapshot of a naive table at 65,536 slots takes seconds, so the interval stretches to keep the
  sampler under ``max_overhead`` of the server's time;
- ``snapshots/NNN.tmsnap``: the full snapshot (``Snapshot.dump``) each time :meth:`request_dump` is
  called (the runner sends SIGUSR1 at the end of each phase), for the viewer.

``tracer_bytes`` is tracemalloc's own bookkeeping (``get_tracemalloc_memory()``), reported beside the
figures rather than hidden in them. Times are ``time.monotonic()`` seconds, the clock the runner shares.

``memray``: the server runs inside ``memray.Tracker`` with Python allocators traced; the capture is
read back by the runner after the server exits.
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

OTHER_SITE = "(other)"
PROBE_SITE = "(probe)"


def write_json_atomic(path: Path, document: Any) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(document))
    os.replace(temp, path)


class TracemallocSampler:
    """Samples tracemalloc from a daemon thread into ``out_dir`` (see the module docstring)."""

    def __init__(
        self,
        out_dir: Path,
        *,
        hz: float = 50.0,
        detail_interval_s: float = 2.0,
        top_sites: int = 30,
        max_overhead: float = 0.2,
    ) -> None:
        self.out_dir = Path(out_dir)
        #: Written after the first detailed snapshot; the runner starts its phases after it.
        self.ready_path = self.out_dir / "ready.json"
        self._ready = False
        self.period_s = 1.0 / hz
        self.detail_interval_s = detail_interval_s
        self.top_sites = top_sites
        self.max_overhead = max_overhead
        self.dumps_written = 0
        self._dump_requests = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tracemalloc-sampler", daemon=True)
        # Frames of this module and tracemalloc's are the probe, not the server: left out of sites.
        self._filters = [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, __file__),
        ]

    def start(self) -> None:
        (self.out_dir / "snapshots").mkdir(parents=True, exist_ok=True)
        self._heap = open(self.out_dir / "heap.csv", "w", buffering=1 << 16)
        self._heap.write("monotonic_s,heap_bytes,peak_bytes,tracer_bytes\n")
        self._sites = open(self.out_dir / "sites.csv", "w", buffering=1 << 16)
        self._sites_writer = csv.writer(self._sites, lineterminator="\n")
        self._sites_writer.writerow(("monotonic_s", "site", "bytes", "count"))
        self._thread.start()

    def request_dump(self) -> None:
        """Ask for a full snapshot dump; it appears as ``snapshots/NNN.tmsnap`` (NNN from 000)."""
        self._dump_requests += 1
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self._heap.close()
        self._sites.close()

    def _run(self) -> None:
        # The first detailed snapshot is taken at once and only then is the tracer "ready": the
        # caches tracemalloc fills on its first snapshot (~300 KB, shown as the (probe) site) then
        # exist before the runner's first phase instead of landing in the middle of it.
        next_detail = time.monotonic()
        last_flush = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            self._sample(now)
            if self.dumps_written < self._dump_requests:
                self._dump()
                self._after_probe_work()
            elif now >= next_detail:
                cost = self._detailed_snapshot(now)
                self._after_probe_work()
                if not self._ready:
                    self._ready = True
                    write_json_atomic(self.ready_path, {"first_snapshot_s": cost})
                # Keep the sampler's share of the (GIL-shared) time under max_overhead.
                next_detail = time.monotonic() + max(self.detail_interval_s, cost / self.max_overhead)
            if now - last_flush >= 0.5:
                self._heap.flush()
                self._sites.flush()
                last_flush = now
            self._wake.wait(self.period_s)
            self._wake.clear()
        self._heap.flush()
        self._sites.flush()

    def _sample(self, now: float) -> None:
        """One heap.csv row. ``peak_bytes`` is the highest traced total since the previous row (the
        peak is reset after each), so short spikes between samples still show."""
        current, peak = tracemalloc.get_traced_memory()
        self._heap.write(f"{now:.6f},{current},{peak},{tracemalloc.get_tracemalloc_memory()}\n")
        tracemalloc.reset_peak()

    def _after_probe_work(self) -> None:
        """Sample again right after a snapshot or dump (the server was paused meanwhile, so its heap
        is what it was), and forget the peak the probe's own snapshot objects made."""
        tracemalloc.reset_peak()
        self._sample(time.monotonic())

    def _detailed_snapshot(self, now: float) -> float:
        started = time.monotonic()
        traced_total = tracemalloc.get_traced_memory()[0]
        snapshot = tracemalloc.take_snapshot().filter_traces(self._filters)
        stats = snapshot.statistics("lineno")
        when = f"{now:.6f}"
        rows = []
        for stat in stats[: self.top_sites]:
            frame = stat.traceback[0]
            rows.append((when, f"{frame.filename}:{frame.lineno}", stat.size, stat.count))
        rest = stats[self.top_sites:]
        if rest:
            rows.append((when, OTHER_SITE, sum(s.size for s in rest), sum(s.count for s in rest)))
        # What the filters left out is this probe's own: shown, so the rows add up to the total.
        probe_bytes = traced_total - sum(s.size for s in stats)
        if probe_bytes > 0:
            rows.append((when, PROBE_SITE, probe_bytes, 0))
        self._sites_writer.writerows(rows)
        return time.monotonic() - started

    def _dump(self) -> None:
        snapshot = tracemalloc.take_snapshot()
        path = self.out_dir / "snapshots" / f"{self.dumps_written:03d}.tmsnap"
        temp = path.with_name(path.name + ".tmp")
        snapshot.dump(str(temp))
        os.replace(temp, path)  # the runner waits for this name: it must appear complete
        self.dumps_written += 1
