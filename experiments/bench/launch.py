"""Start a subject's process pinned to its CPUs, know when it listens, stop it by PID.

Readiness never touches the server: memdiet's server prints ``listening on HOST:PORT`` first; a peer
is ready when /proc/net/tcp shows its process holding a socket in LISTEN state.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

from ..measure.procfs import ProcessGone, listening_ports
from ..measure.runner import read_first_line
from ..paths import REPO_ROOT
from .subjects import Subject

#: Seconds a subject may take to listen, and to exit after SIGTERM.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class ServerError(Exception):
    """A subject did not start, died, or did not stop cleanly; the message names it and says why."""


def pin_command(command: list[str], cpus: Sequence[int] | None) -> tuple[list[str], str | None]:
    """``command`` run on ``cpus`` only, and how: prefixed with ``taskset -c`` when taskset is on
    PATH (``"taskset"``), else unchanged and to be pinned after start (``"sched_setaffinity"``);
    ``None`` when not pinned."""
    if not cpus:
        return command, None
    if shutil.which("taskset"):
        return ["taskset", "-c", ",".join(map(str, cpus)), *command], "taskset"
    return command, "sched_setaffinity"


def pin_running(pid: int, cpus: Sequence[int]) -> None:
    """Pin every thread of a running process to ``cpus`` (threads it starts later inherit it)."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return
    for tid in threads:
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):
            pass


class BenchServer:
    """One subject's process. :meth:`start` returns its port once it listens; :meth:`stop` sends
    SIGTERM to its PID and waits for the exit, raising :class:`ServerError` if it was not clean.
    Its stdout and stderr (after the first line) go to ``log_path``. With ``profile_path`` it runs
    under cProfile (:meth:`Subject.profiled_command`), which writes its stats there on a clean exit."""

    def __init__(self, subject: Subject, python: str, log_path: Path, cpus: Sequence[int] | None = None,
                 profile_path: Path | None = None) -> None:
        self.subject = subject
        self.python = python
        self.log_path = log_path
        self.cpus = list(cpus) if cpus else None
        self.profile_path = profile_path
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        #: How the process was pinned: ``taskset``, ``sched_setaffinity`` or None.
        self.pinning: str | None = None
        self.command: list[str] = []

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def start(self, timeout_s: float = START_TIMEOUT_S) -> int:
        subject = self.subject
        # Resolved here: the server runs in REPO_ROOT, which need not be this process's directory.
        command = (subject.profiled_command(self.python, self.profile_path.resolve()) if self.profile_path
                   else subject.command(self.python))
        self.command, self.pinning = pin_command(command, self.cpus)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stderr=log,
                stdout=subprocess.PIPE if subject.announces_port else log,
            )
        if self.pinning == "sched_setaffinity":
            pin_running(self.process.pid, self.cpus)
        try:
            self.port = self._wait_for_port(timeout_s)
        except BaseException:
            self._kill()
            raise
        return self.port

    def _wait_for_port(self, timeout_s: float) -> int:
        process = self.process
        if self.subject.announces_port:
            line = read_first_line(process, timeout_s)
            if line.startswith("listening on "):
                return int(line.rsplit(":", 1)[1])
            raise ServerError(f"{self.subject.label} did not start within {timeout_s:g} s "
                              f"(first line {line!r}; exit code {process.poll()}); see {self.log_path}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                ports = listening_ports(process.pid)
            except ProcessGone:
                break
            if ports:
                return min(ports)
            time.sleep(0.02)
        raise ServerError(f"{self.subject.label} was not listening within {timeout_s:g} s "
                          f"(exit code {process.poll()}); see {self.log_path}")

    def check_alive(self, during: str) -> None:
        """Raise :class:`ServerError` if the process has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise ServerError(f"{self.subject.label} died during {during} with exit code "
                              f"{self.process.returncode}; see {self.log_path}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM by PID, then wait for the exit; returns the exit code. A process still running
        after ``timeout_s`` is killed and :class:`ServerError` raised, as for an unclean exit code."""
        process = self.process
        if process is None:
            raise ServerError("not started")
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._kill()
                raise ServerError(f"{self.subject.label} did not exit within {timeout_s:g} s of SIGTERM; killed")
        self._close_pipe()
        if process.returncode not in self.subject.clean_exit_codes:
            raise ServerError(f"{self.subject.label} exited with code {process.returncode} after SIGTERM; "
                              f"see {self.log_path}")
        return process.returncode

    def _kill(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
