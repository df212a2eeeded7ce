"""Start a subject's process pinned to its CPUs, know when it listens, stop it by PID: the bench's
use of the one launcher, :mod:`experiments.measure.process`, plus CPU pinning.

Readiness never touches the server: memdiet's server prints ``listening on HOST:PORT`` first; a peer
is ready when /proc/net/tcp shows its process holding a socket in LISTEN state.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

from ..measure.process import LaunchedProcess, NotReady, ProcessError
from ..measure.procfs import ProcessGone, thread_ids
from ..paths import REPO_ROOT
from .subjects import Subject
from ..errors import ExperimentError

#: Seconds a subject may take to listen, and to exit after SIGTERM.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class ServerError(ExperimentError):
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
        threads = thread_ids(pid)
    except ProcessGone:
        return
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, PermissionError):
            pass


class BenchServer:
    """One subject's process. :meth:`start` returns its port once it listens; :meth:`stop` sends
    SIGTERM to its PID and waits for the exit, raising :class:`ServerError` if it was not clean.
    Its stderr, and its stdout when it does not announce its port, go to ``log_path``. With
    ``profile_path`` it runs under cProfile (:meth:`Subject.profiled_command`), which writes its stats
    there on a clean exit."""

    def __init__(self, subject: Subject, python: str, log_path: Path, cpus: Sequence[int] | None = None,
                 profile_path: Path | None = None) -> None:
        self.subject = subject
        self.python = python
        self.log_path = log_path
        self.cpus = list(cpus) if cpus else None
        self.profile_path = profile_path
        self.process: LaunchedProcess | None = None
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
        self.process = LaunchedProcess(self.command, cwd=REPO_ROOT, log_path=self.log_path, name=subject.label,
                                       readiness=subject.launch(self.python, self.log_path.parent).readiness)
        self.process.start()
        try:
            if self.pinning == "sched_setaffinity":
                pin_running(self.process.pid, self.cpus)
            self.port = self.process.wait_ready(timeout_s).port
        except NotReady as error:
            self.process.close()
            raise ServerError(str(error)) from None
        except BaseException:
            self.process.close()
            raise
        return self.port

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
        try:
            code = process.stop(timeout_s)
        except ProcessError as error:
            raise ServerError(str(error)) from None
        finally:
            process.close()
        if code not in self.subject.clean_exit_codes:
            raise ServerError(f"{self.subject.label} exited with code {code} after SIGTERM; see {self.log_path}")
        return code
