"""The sampler every run has, whatever its probe: the server's RSS, USS and PSS read from outside.

Rules: it reads /proc through memdiet's one reader (:mod:`experiments.measure.procfs`: statm for
RSS, smaps_rollup for USS and PSS, the figures psutil gives), never the server's own code, so it
costs the server no CPU of its own; it runs in a thread of the runner at a fixed rate and skips
ahead rather than burst when a read falls behind; it stops by itself when the process exits.
"""

from __future__ import annotations

import threading
import time

from .. import procfs

#: RSS is cheap to read (/proc/PID/statm); USS and PSS walk smaps_rollup (~1.5 ms for a 400 MB
#: process), so they are read on every Nth sample only.
FULL_INFO_EVERY = 5


class RssSampler:
    """Samples a process's memory from outside at ``hz`` samples a second, in a thread.

    ``rows`` holds ``(monotonic_s, rss_bytes, uss_bytes, pss_bytes)``; USS and PSS are None on the
    samples where they are not read. Stops by itself when the process exits.
    """

    def __init__(self, pid: int, hz: float = 50.0) -> None:
        self.pid = pid
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
        pid = self.pid
        count = 0
        next_time = time.monotonic()
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                rss = procfs.rss_bytes(pid)  # ProcessGone for a zombie too: it has no memory left
                uss, pss = procfs.uss_pss_bytes(pid) if count % FULL_INFO_EVERY == 0 else (None, None)
            except (procfs.ProcessGone, PermissionError):
                return
            self.rows.append((now, rss, uss, pss))
            count += 1
            next_time += self.period_s
            delay = next_time - time.monotonic()
            if delay < 0:  # fell behind (a slow smaps read): skip ahead rather than burst
                next_time = time.monotonic()
                delay = 0
            self._stop.wait(delay)
