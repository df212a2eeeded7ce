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
  called (the runner sends SIGUSR1 at the end of each phase), for the viewer and for the runner,
  which turns each into per-site rows too (a detailed snapshot of naive's table may come only once
  a run); beside it ``snapshots/NNN.json`` says when it was taken and which files are the probe's,
  and ``snapshots/NNN.alloc.json`` what pymalloc and malloc hold once the snapshot is freed
  (:mod:`server.memstats`), written before the ``.tmsnap`` appears.

``tracer_bytes`` is tracemalloc's own bookkeeping (``get_tracemalloc_memory()``), reported beside the
figures rather than hidden in them. Times are ``time.monotonic()`` seconds, the clock the runner shares.

The probe keeps its own allocations out of the server's figures where it can, so that the same
server state gives the same heap on every run:

- tracemalloc counts a block until it goes back to the allocator, and a freed tuple, list, dict or
  float first waits in the interpreter's free lists (up to 2,000 tuples of each size), still counted
  under the line that made it. A snapshot makes a tuple or more per trace, so it would leave up to
  76 KB of "heap" behind (8,192 nofd slots), more or less as the server happens to reuse them. A
  full collection after each snapshot or dump, and before each dump, empties the free lists (and
  collects the cycles that were due anyway): a dump holds the live heap, and an idle phase's heap
  samples a level that does not depend on when the probe last worked;
- CSV lines go straight into binary buffers: a text file keeps each pending line as a str object,
  a sawtooth of up to 0.5 s of lines in the heap;
- what the first snapshot and dump make once and keep (tracemalloc's caches, pickle's slot names)
  is made before the probe says it is ready; the dumps' side files are written with os calls.

``memray``: the server runs inside ``memray.Tracker`` with Python allocators traced; the capture is
read back by the runner after the server exits.
"""

from __future__ import annotations

import csv
import gc
import json
import os
import pickle
import threading
import time
import tracemalloc
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, BinaryIO


def memstats_module() -> Any:
    """:mod:`server.memstats`, imported when a sampler first needs it (it brings ctypes:
    a server that only writes table.json through this module does not pay for it)."""
    if __package__:
        from . import memstats

        return memstats
    return _sibling("memstats")


def _sibling(name: str) -> Any:
    """The module ``name``.py beside this file, loaded by path as ``_memdiet_NAME``: the tracer bootstrap
    loads this file alone, into a program that has no ``server`` package."""
    import importlib.util
    import sys

    module = sys.modules.get(f"_memdiet_{name}")
    if module is None:
        spec = importlib.util.spec_from_file_location(f"_memdiet_{name}", os.path.join(os.path.dirname(__file__), f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[f"_memdiet_{name}"] = module
    return module


# Every file the sampler opens for a moment is opened through it, so /__stats does not count it as
# a slot lost (server/descriptors.py).
if __package__:
    from .descriptors import transient_fd
else:
    transient_fd = _sibling("descriptors").transient_fd

OTHER_SITE = "(other)"
PROBE_SITE = "(probe)"


def write_json_atomic(path: Path, document: Any) -> None:
    _write_atomic(str(path), json.dumps(document).encode())


def _write_atomic(path: str, data: bytes) -> None:
    """``data`` into ``path`` through a temporary name, so a reader never sees it half written."""
    temp = path + ".tmp"
    with transient_fd(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as fd:
        os.write(fd, data)
    os.replace(temp, path)


def probe_files() -> tuple[str, ...]:
    """File names (as tracemalloc records them) whose lines are the probe's, not the server's:
    tracemalloc's own module and this one."""
    return (tracemalloc.__file__, __file__)


def site_rows(
    stats: Sequence[tracemalloc.Statistic], probe_files: Collection[str], top_sites: int, traced_total: int,
) -> list[tuple[str, int, int]]:
    """``(site, bytes, count)`` rows of one snapshot's ``statistics("lineno")``: the ``top_sites``
    largest lines of the server as ``file:line``, the rest summed into ``(other)``, and ``(probe)``:
    ``traced_total`` (the traced bytes when the snapshot was taken) less the server's lines, so the
    rows add up to the total. One place for the sampler's snapshots and the runner's dumps alike."""
    server = [stat for stat in stats if stat.traceback[0].filename not in probe_files]
    rows = [(f"{stat.traceback[0].filename}:{stat.traceback[0].lineno}", stat.size, stat.count)
            for stat in server[:top_sites]]
    rest = server[top_sites:]
    if rest:
        rows.append((OTHER_SITE, sum(s.size for s in rest), sum(s.count for s in rest)))
    probe_bytes = traced_total - sum(s.size for s in server)
    if probe_bytes > 0:
        rows.append((PROBE_SITE, probe_bytes, 0))
    return rows


class _EncodedLines:
    """A text sink for :mod:`csv` that encodes each line into a binary buffered file at once: a text
    file keeps pending lines as str objects until its chunk fills, heap the probe would add to the
    server's figures."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw

    def write(self, text: str) -> int:
        return self.raw.write(text.encode())


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
        dump_request_file: str | None = None,
        first_dump_index: int = 0,
        allocator_stats: bool = True,
    ) -> None:
        self.out_dir = Path(out_dir)
        #: Written after the first detailed snapshot; the runner starts its phases after it.
        self.ready_path = self.out_dir / "ready.json"
        self._ready = False
        self.period_s = 1.0 / hz
        self.detail_interval_s = detail_interval_s
        self.top_sites = top_sites
        self.max_overhead = max_overhead
        #: Dumps are numbered from ``first_dump_index``: a process that starts after the runner asked
        #: for N dumps (a forked worker) numbers its next one N, as every other process does.
        self.dumps_written = first_dump_index
        self._dump_requests = first_dump_index
        #: Each dump also writes ``NNN.alloc.json``: pymalloc's and malloc's figures after it
        #: (:func:`server.memstats.allocator_stats`), for the runner's RSS ledger.
        self.allocator_stats = allocator_stats
        self._memstats = memstats_module() if allocator_stats else None
        #: A file whose content is the number of dumps asked for so far (written by the runner for a
        #: program the tracer was injected into, which has no SIGUSR1 of ours): looked at every sample.
        self.dump_request_file = dump_request_file
        self._request_mtime_ns = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tracemalloc-sampler", daemon=True)
        # Frames of this module and tracemalloc's are the probe, not the server: left out of sites.
        self.probe_files = frozenset(probe_files())
        self._snapshots_dir = str(self.out_dir / "snapshots")  # a str: no Path objects made per dump
        self._probe_files_json = json.dumps(sorted(self.probe_files))

    def start(self) -> None:
        os.makedirs(self._snapshots_dir, exist_ok=True)
        self._heap = open(self.out_dir / "heap.csv", "wb", buffering=1 << 16)
        self._heap.write(b"monotonic_s,heap_bytes,peak_bytes,tracer_bytes\n")
        self._sites = open(self.out_dir / "sites.csv", "wb", buffering=1 << 16)
        self._sites_writer = csv.writer(_EncodedLines(self._sites), lineterminator="\n")
        self._sites_writer.writerow(("monotonic_s", "site", "bytes", "count"))
        # Pickle caches each class's slot names on the class the first time it pickles one
        # (copyreg.__slotnames__): made now, not inside the first phase by the first dump.
        pickle.dumps(tracemalloc.Snapshot((), 1))
        if self._memstats is not None:  # ctypes makes its function objects on first use, and keeps them
            self._memstats.allocator_stats()
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
            if self.dump_request_file is not None:
                self._read_dump_requests()
            if self.dumps_written < self._dump_requests:
                self._dump(now)
                self._after_probe_work()
            elif now >= next_detail:
                self._detailed_snapshot(now)
                self._after_probe_work()
                cost = time.monotonic() - now
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

    def _read_dump_requests(self) -> None:
        """Take the number of dumps asked for from :attr:`dump_request_file`, when it changed."""
        try:
            mtime_ns = os.stat(self.dump_request_file).st_mtime_ns
            if mtime_ns == self._request_mtime_ns:
                return
            self._request_mtime_ns = mtime_ns
            with transient_fd(self.dump_request_file, os.O_RDONLY) as fd:
                self._dump_requests = max(self._dump_requests, int(os.read(fd, 64) or b"0"))
        except (OSError, ValueError):  # not written yet, or written meanwhile: read on the next sample
            return

    def _sample(self, now: float) -> None:
        """One heap.csv row. ``peak_bytes`` is the highest traced total since the previous row (the
        peak is reset after each), so short spikes between samples still show."""
        current, peak = tracemalloc.get_traced_memory()
        self._heap.write(f"{now:.6f},{current},{peak},{tracemalloc.get_tracemalloc_memory()}\n".encode())
        tracemalloc.reset_peak()

    def _after_probe_work(self) -> None:
        """Give back what a snapshot or dump left in the free lists (a tuple or more per trace: up
        to 2,000 of each size stay there, still traced, until the server happens to reuse them), then
        sample again (the server was paused meanwhile, so its heap is what it was) and forget the
        peak the probe's own snapshot objects made. A full collection is the only way to empty the
        free lists; it also collects the cycles that were due anyway."""
        gc.collect()
        tracemalloc.reset_peak()
        self._sample(time.monotonic())

    def _detailed_snapshot(self, now: float) -> None:
        traced_total = tracemalloc.get_traced_memory()[0]
        # Grouped first, the probe's lines dropped after: the same rows as filter_traces() then
        # statistics(), without matching every trace's file name (9 of naive's 16 s at 65,536 slots).
        stats = tracemalloc.take_snapshot().statistics("lineno")
        when = f"{now:.6f}"
        self._sites_writer.writerows((when, *row) for row in site_rows(stats, self.probe_files, self.top_sites, traced_total))

    def _dump(self, now: float) -> None:
        """Write the full snapshot ``snapshots/NNN.tmsnap`` and ``NNN.json`` beside it:
        ``monotonic_s`` (``now``, the time of the heap row just written) and ``probe_files``. A full
        collection first, so the dump holds the live heap: not the free lists' spare blocks, whose
        fill depends on what the server and the probe happened to free (see the module docstring)."""
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        stem = os.path.join(self._snapshots_dir, f"{self.dumps_written:03d}")
        # Written with os calls and a str made on this line (json and pathlib would keep small
        # caches of their own, counted under their lines as the server's); the time as heap.csv
        # writes it, so the dump's rows and that heap row share one time.
        _write_atomic(stem + ".json", f'{{"monotonic_s": {now:.6f}, "probe_files": {self._probe_files_json}}}'.encode())
        # Snapshot.dump() as it is written, through a descriptor /__stats does not count as a lost slot.
        with transient_fd(stem + ".tmsnap.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as fd, \
                os.fdopen(fd, "wb", closefd=False) as stream:
            pickle.dump(snapshot, stream, pickle.HIGHEST_PROTOCOL)
        if self._memstats is not None:
            # The allocators as the snapshot left them once it is gone (its objects freed): what the
            # runner's read of the process's pages, right after the .tmsnap appears, also sees.
            del snapshot
            gc.collect()
            _write_atomic(stem + ".alloc.json", json.dumps(self._memstats.allocator_stats()).encode())
        os.replace(stem + ".tmsnap.tmp", stem + ".tmsnap")  # the runner waits for this name: it must appear complete
        self.dumps_written += 1
