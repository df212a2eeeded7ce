"""Is the machine quiet enough to time a server? Other processes' CPU use over a short window.

A throughput figure taken while another process burns a core is not the server's alone. Before each
timed phase the bench measures every other process's CPU seconds over ~1 s (psutil); a process above
a quarter of a core makes the machine *busy*. By default that is recorded beside the figure; with
``--strict`` the bench waits for quiet and refuses to time if it does not come.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Iterable

import psutil

#: CPU use (in cores: CPU seconds per second) above which another process makes the machine busy.
BUSY_CORES = 0.25
#: Seconds ``--strict`` waits for quiet before refusing to time.
STRICT_WAIT_S = 30.0


class MachineBusy(Exception):
    """``--strict`` and other processes kept using more than a quarter of a core."""


@dataclass
class BusyProcess:
    pid: int
    name: str
    #: CPU seconds per second over the window (1.0 = one full core).
    cores: float


@dataclass
class QuietCheck:
    """Other processes' CPU use over ``window_s`` seconds. ``busy`` lists those above
    ``threshold_cores``; ``others_cores`` is all other processes together, in cores."""

    window_s: float
    threshold_cores: float
    others_cores: float
    busy: list[BusyProcess] = field(default_factory=list)

    @property
    def quiet(self) -> bool:
        return not self.busy

    def to_dict(self) -> dict:
        return {**asdict(self), "quiet": self.quiet}

    def describe(self) -> str:
        if self.quiet:
            return f"quiet (others {self.others_cores:.2f} cores)"
        top = ", ".join(f"{p.name}[{p.pid}] {p.cores:.2f}" for p in self.busy[:3])
        return f"busy: {top} cores (others {self.others_cores:.2f} cores)"


def _cpu_seconds() -> dict[int, tuple[str, float]]:
    """``{pid: (name, user + system CPU seconds)}`` of every process we may read."""
    seen = {}
    for process in psutil.process_iter(["name", "cpu_times"]):
        times = process.info.get("cpu_times")
        if times is not None:
            seen[process.pid] = (process.info.get("name") or "?", times.user + times.system)
    return seen


def check_quiet(window_s: float = 1.0, exclude: Iterable[int] = (), threshold_cores: float = BUSY_CORES) -> QuietCheck:
    """Measure other processes' CPU over ``window_s`` seconds; ``exclude`` (and this process) are
    left out. A process born during the window counts all its CPU time."""
    skip = {os.getpid(), *exclude}
    before = _cpu_seconds()
    started = time.monotonic()
    time.sleep(window_s)
    after = _cpu_seconds()
    elapsed = time.monotonic() - started
    busy = []
    total = 0.0
    for pid, (name, seconds) in after.items():
        if pid in skip:
            continue
        used = seconds - before.get(pid, (name, 0.0))[1]
        if used <= 0:
            continue
        total += used
        if used / elapsed > threshold_cores:
            busy.append(BusyProcess(pid, name, round(used / elapsed, 3)))
    busy.sort(key=lambda p: p.cores, reverse=True)
    return QuietCheck(round(elapsed, 3), threshold_cores, round(total / elapsed, 3), busy)


def wait_for_quiet(window_s: float, exclude: Iterable[int], strict: bool, max_wait_s: float = STRICT_WAIT_S,
                   threshold_cores: float = BUSY_CORES) -> QuietCheck:
    """One :func:`check_quiet`, returned whatever it says; with ``strict``, repeated until the
    machine is quiet, raising :class:`MachineBusy` after ``max_wait_s`` seconds."""
    exclude = list(exclude)
    deadline = time.monotonic() + max_wait_s
    while True:
        check = check_quiet(window_s, exclude, threshold_cores)
        if check.quiet or not strict:
            return check
        if time.monotonic() >= deadline:
            raise MachineBusy(f"--strict: the machine stayed busy for {max_wait_s:g} s, refusing to time "
                              f"({check.describe()})")
