"""The sampler every run has, whatever its probe: the subject's RSS, USS and PSS read from outside,
summed over its process tree and per process (with RssAnon, RssFile and RssShmem).

Rules: it reads /proc through memdiet's one reader (:mod:`experiments.measure.procfs`: statm for
RSS, smaps_rollup for USS and PSS, the figures psutil gives), never the server's own code, so it
costs the server no CPU of its own; it runs in a thread of the runner at a fixed rate and skips
ahead rather than burst when a read falls behind; it stops by itself when the process exits.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

from .. import procfs

#: RSS is cheap to read (/proc/PID/statm); USS and PSS walk smaps_rollup (~1.5 ms for a 400 MB
#: process), so they are read on every Nth sample only.
FULL_INFO_EVERY = 5


#: Seconds between two looks for the processes of the subject's tree (a full /proc scan: 3.5 ms with 140
#: processes here, 3.5% of a core at this rate): short enough that a worker forked at start-up is in the first idle phase.
TREE_RESCAN_S = 0.1


class RssSampler:
    """Samples the memory of a process and every process below it from outside, at ``hz`` samples a
    second, in a thread.

    ``rows`` holds ``(monotonic_s, rss_bytes, uss_bytes, pss_bytes)`` summed over the tree; USS and
    PSS are None on the samples where they are not read. For forked workers PSS is the honest total
    (pages they share with their parent are split among them, not counted once per process); RSS
    counts shared pages once per process. ``process_rows`` holds, on the samples that read
    smaps_rollup, one row per process (:data:`experiments.dataset.results.PROCESS_COLUMNS`). The tree
    is looked for every :data:`TREE_RESCAN_S`. Stops by itself when the root process exits.
    """

    def __init__(self, pid: int, hz: float = 50.0) -> None:
        self.pid = pid
        self.period_s = 1.0 / hz
        self.rows: list[tuple[float, int, int | None, int | None]] = []
        self.process_rows: list[tuple] = []
        #: Every process seen in the tree: ``{pid: (parent pid, name)}``.
        self.seen: dict[int, tuple[int, str]] = {}
        self._stop = threading.Event()
        #: Held while a sample is taken, and by :meth:`paused`.
        self._busy = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No look at the tree while the block runs (the current sample is finished first). For work
        between phases that is in no figure: the heap graph's forked copy of the subject
        (:mod:`..graphdump`) is a process of its tree for its walk only, reaped before the block ends."""
        with self._busy:
            yield

    def _run(self) -> None:
        root = self.pid
        count = 0
        next_time = time.monotonic()
        tree, next_scan = [root], 0.0
        while not self._stop.is_set():
            with self._busy:
                now = time.monotonic()
                if now >= next_scan:
                    tree = self._scan(root) or tree
                    next_scan = now + TREE_RESCAN_S
                full = count % FULL_INFO_EVERY == 0
                try:
                    sample = self._read(root, tree, now, full)
                except (procfs.ProcessGone, PermissionError):  # the root has exited (a zombie too)
                    return
                self.rows.append(sample)
            count += 1
            next_time += self.period_s
            delay = next_time - time.monotonic()
            if delay < 0:  # fell behind (a slow smaps read): skip ahead rather than burst
                next_time = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def _scan(self, root: int) -> list[int]:
        try:
            tree = procfs.process_tree(root)
        except OSError:
            return []
        for member in tree:
            if member not in self.seen:
                try:
                    self.seen[member] = procfs.parent_and_name(member)
                except (procfs.ProcessGone, PermissionError):
                    continue
        return tree

    def _read(self, root: int, tree: list[int], now: float, full: bool) -> tuple[float, int, int | None, int | None]:
        rss = uss = pss = 0
        for member in tree:
            try:
                if full:
                    values = procfs.smaps_rollup(member)
                    parent, name = self.seen.get(member, (0, "?"))
                    self.process_rows.append((now, member, parent, name, values["rss_bytes"], values["uss_bytes"],
                                              values["pss_bytes"], values["rss_anon_bytes"],
                                              values["rss_file_bytes"], values["rss_shmem_bytes"]))
                    rss += values["rss_bytes"]
                    uss += values["uss_bytes"]
                    pss += values["pss_bytes"]
                else:
                    rss += procfs.rss_bytes(member)
            except (procfs.ProcessGone, PermissionError):
                if member == root:
                    raise
        return (now, rss, uss, pss) if full else (now, rss, None, None)
