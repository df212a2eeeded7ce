"""Start a subject's process, know when it is ready, stop it: the one launcher of the runner, the bench
and the tests.

A :class:`LaunchedProcess` is a command (argv, working folder, environment) whose stderr goes to a log
file (a temporary one when none is named) and whose stdout is either read for readiness or logged
too. Readiness is a strategy, chosen by what the command tells:

- :class:`FirstLine`: the command prints ``listening on HOST:PORT`` as its first stdout line
  (memdiet's server); the line is read a byte at a time, so nothing after it is taken;
- :class:`ListeningSocket`: the command prints nothing; it is ready once its process (or, with
  ``descendants``, any process it started) holds a TCP socket in LISTEN state, found in
  /proc/net/tcp by :mod:`.procfs` without a request.

Listening is not settled: a server may bind in its main process before the worker that serves exists
(sanic), and a phase measured then counts the worker's start-up. :func:`wait_settled` waits, after
the readiness, until the process tree has been quiet for :data:`SETTLE_QUIET_S`: the same processes and
threads, RSS within :data:`SETTLE_RSS_BYTES`, CPU under :data:`SETTLE_CPU_SHARE` of a core; it says what
it waited for (a :class:`Settled`).

Stopping is SIGTERM to the main process by PID first (a server whose workers are signalled at the same
time as their master can exit non-zero: issue #25 saw sanic do so in 2 of 20 such stops, 0 of 20 when
only the master was signalled; a rerun of 10 each gave 0 and 1, so the runner warns of a code, never
fails on it), a wait, then SIGKILL after the grace period; then whatever the subject started and left
behind is stopped too (SIGTERM, then SIGKILL): with ``own_group``, every process of its session and its
process group, the processes that hold its listening socket (a daemon that left both, or whose parent
exited), and the trees below them, each remembered by pid and start time from the first look on, so a
reused pid is never signalled. While such a subject runs, the launcher is a child subreaper
(prctl PR_SET_CHILD_SUBREAPER), so a daemon that left the session and whose parent exited is
reparented here, found, stopped and reaped (its exit code too). Errors are
:class:`ProcessError`, one line each, naming the process and ending with the tail of its stderr;
what an exit code means (clean or not) is the caller's to judge. Nothing here knows the server's
layouts, the probes or the bench: those build their commands and pass them in.
"""

from __future__ import annotations

import os
import resource
import select
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Mapping, Protocol, Sequence

from .procfs import (
    ProcessGone,
    TreeState,
    listener_owners,
    listening_sockets,
    parent_pids,
    process_ids,
    process_tree,
    session_and_group,
    start_time,
    tree_state,
)

#: Bytes of stderr quoted at the end of an error message.
STDERR_TAIL_BYTES = 400
#: Seconds between two looks at /proc while waiting for a listening socket.
LISTEN_POLL_S = 0.02
#: Seconds to wait for a killed process to be reaped.
KILL_WAIT_S = 10.0
#: At most this many rounds of SIGKILL for the members of a subject that forks while it is killed.
KILL_ROUNDS = 20
#: Seconds the processes the subject left behind get after their own SIGTERM, before SIGKILL.
LEFTOVER_GRACE_S = 5.0
#: Seconds the process tree must stay quiet (no process or thread started or ended, RSS and CPU
#: quiet) before it counts as settled: sanic's worker starts ~0.3 s after its main process listens,
#: and imports for ~1 s after that.
SETTLE_QUIET_S = 1.0
#: Seconds between two looks at the tree while it settles.
SETTLE_POLL_S = 0.05
#: The most the tree's RSS may move (max - min) within the quiet window: 64 pages. A worker importing
#: its framework moves it by megabytes; a tracer's sampler, by a few pages.
SETTLE_RSS_BYTES = 256 * 1024
#: The most CPU the tree may use in the quiet window, as a share of one core: the tracemalloc
#: probe's sampler is kept under 20% of its process's time, so 30% is quiet; an import runs at 100%.
SETTLE_CPU_SHARE = 0.3


class ProcessError(Exception):
    """The process did not become ready, or did not exit within its grace period."""


class NotReady(ProcessError):
    """The process exited, or the timeout passed, before it was ready."""


@dataclass(frozen=True)
class Ready:
    """What a ready process told: the ``port`` it listens on, and with :class:`FirstLine` the
    ``host`` and the whole ``line``."""

    port: int
    host: str | None = None
    line: str | None = None


class Readiness(Protocol):
    """How to know that a started process is ready. ``reads_stdout``: its stdout must be a pipe
    (else it goes to the log)."""

    reads_stdout: bool

    def wait(self, process: LaunchedProcess, timeout_s: float) -> Ready:
        """Return once ``process`` is ready; raise :class:`NotReady` when it exits or ``timeout_s``
        passes first."""
        ...


class FirstLine:
    """Ready when the first stdout line is ``{prefix}HOST:PORT``."""

    reads_stdout = True

    def __init__(self, prefix: str = "listening on ") -> None:
        self.prefix = prefix

    def wait(self, process: LaunchedProcess, timeout_s: float) -> Ready:
        assert process.stdout is not None
        try:
            line = read_line(process.stdout, timeout_s, alive=process.running)
        except LineNotRead as error:
            line = error.partial
        host, _, port = line.removeprefix(self.prefix).rpartition(":")
        if line.startswith(self.prefix) and port.isdigit():
            return Ready(int(port), host, line)
        # A closed stdout is usually an exit on its way: give its code a moment to arrive.
        raise NotReady(process.failure(f"did not start within {timeout_s:g} s (first line {line!r}; "
                                       f"exit code {process.poll(wait_s=1.0)})"))


class ListeningSocket:
    """Ready when the process, or with ``descendants`` any process below it, listens on a TCP port
    that loopback reaches (``port`` when given, else the lowest): for a command that prints nothing.
    A process that listens only on addresses loopback does not reach is refused at once (memdiet sends
    traffic to loopback only). :attr:`Ready.host` is the loopback address to connect to."""

    reads_stdout = False

    def __init__(self, descendants: bool = False, port: int | None = None) -> None:
        self.descendants = descendants
        self.port = port

    def wait(self, process: LaunchedProcess, timeout_s: float) -> Ready:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (process.running() or process.follow_daemon(self.port)):
            try:
                sockets = listening_sockets(process.pid, self.descendants)
            except ProcessGone:
                continue  # the starter exited: follow_daemon looks for what it left
            if self.port is not None:
                sockets = {(address, port) for address, port in sockets if port == self.port}
            if sockets:
                by_port: dict[int, list[str]] = {}
                for address, port in sockets:
                    by_port.setdefault(port, []).append(address)
                reachable = {port: host for port, addresses in by_port.items()
                             if (host := loopback_host(addresses)) is not None}
                if reachable:
                    port = min(reachable)
                    process.port = port  # its listener's owners belong to the subject from now on
                    return Ready(port, reachable[port])
                where = ", ".join(f"{address}:{port}" if ":" not in address else f"[{address}]:{port}"
                                  for address, port in sorted(sockets))
                raise NotReady(process.failure(f"listens on {where} only, which loopback does not reach "
                                               "(memdiet sends traffic to 127.0.0.1 or ::1 only)"))
            time.sleep(LISTEN_POLL_S)
        code = process.poll(wait_s=0.5)
        if code is not None:
            raise NotReady(process.failure(f"exited with code {code} before it listened"))
        waited = f"on port {self.port} " if self.port is not None else ""
        raise NotReady(process.failure(f"was not listening {waited}within {timeout_s:g} s"))


@dataclass(frozen=True)
class Settled:
    """What :func:`wait_settled` waited for: the tree was quiet from ``quiet_since_s`` to ``settled_s``
    (seconds after the wait began), with these ``pids`` and ``threads``; ``changes`` says what moved
    before (``"+1 process after 0.31 s"``...), at most the first :data:`SETTLE_CHANGES_KEPT`."""

    settled_s: float
    quiet_since_s: float
    pids: tuple[int, ...]
    threads: tuple[int, ...]
    rss_bytes: int
    changes: tuple[str, ...]

    def describe(self) -> dict[str, object]:
        """result.json's ``ready.settled``: the rule it met and what it saw."""
        return {"rule": f"no process or thread started or ended, RSS within {SETTLE_RSS_BYTES // 1024} KiB and CPU "
                        f"under {SETTLE_CPU_SHARE:.0%} of a core, for {SETTLE_QUIET_S:g} s",
                "quiet_s": SETTLE_QUIET_S, "waited_s": round(self.settled_s, 3),
                "quiet_since_s": round(self.quiet_since_s, 3), "processes": list(self.pids),
                "threads": list(self.threads), "rss_bytes": self.rss_bytes, "changes": list(self.changes)}


#: How many of the changes seen before the tree settled :class:`Settled` keeps.
SETTLE_CHANGES_KEPT = 20


def _change(before: TreeState, now: TreeState, window: list[tuple[float, TreeState]], elapsed_s: float) -> str | None:
    """What makes ``now`` not quiet against the window's first state (or ``before``), or None."""
    if now.pids != before.pids:
        started, ended = set(now.pids) - set(before.pids), set(before.pids) - set(now.pids)
        return (f"{len(started)} process(es) started" if started else "") + (" and " if started and ended else "") + \
            (f"{len(ended)} ended" if ended else "") + f" at {elapsed_s:.2f} s"
    if now.threads != before.threads:
        return f"threads {sum(before.threads)} -> {sum(now.threads)} at {elapsed_s:.2f} s"
    rss = [state.rss_bytes for _t, state in window] + [now.rss_bytes]
    if max(rss) - min(rss) > SETTLE_RSS_BYTES:
        return f"RSS moved by {(max(rss) - min(rss)) / 1024:,.0f} KiB at {elapsed_s:.2f} s"
    first_t, first = window[0]
    span_s = max(elapsed_s - first_t, SETTLE_POLL_S)
    if span_s >= SETTLE_QUIET_S / 2 and (now.cpu_s - first.cpu_s) / span_s > SETTLE_CPU_SHARE:
        return f"CPU at {(now.cpu_s - first.cpu_s) / span_s:.0%} of a core at {elapsed_s:.2f} s"
    return None


def wait_settled(process: LaunchedProcess, timeout_s: float, quiet_s: float = SETTLE_QUIET_S) -> Settled:
    """Return once ``process``'s tree has stayed quiet for ``quiet_s`` (see the module's rules); raise
    :class:`NotReady` when it exits, or when ``timeout_s`` passes first (naming what kept moving)."""
    began = time.monotonic()
    changes: list[str] = []
    window: list[tuple[float, TreeState]] = []
    quiet_since = 0.0
    while True:
        elapsed = time.monotonic() - began
        try:
            state = tree_state(process.pid)
        except ProcessGone:
            state = None
        if state is None or not process.running():
            code = process.poll(wait_s=0.5)
            raise NotReady(process.failure(f"exited with code {code} while it settled after it listened"))
        change = _change(window[0][1], state, window, elapsed) if window else None
        if change is not None:
            changes.append(change)
            window, quiet_since = [], elapsed
        window.append((elapsed, state))
        if elapsed - quiet_since >= quiet_s:
            return Settled(elapsed, quiet_since, state.pids, state.threads, state.rss_bytes,
                           tuple(changes[:SETTLE_CHANGES_KEPT]))
        if elapsed > timeout_s:
            raise NotReady(process.failure(
                f"listened but its process tree did not settle within {timeout_s:g} s (quiet for {quiet_s:g} s: "
                f"{Settled(elapsed, quiet_since, (), (), 0, ()).describe()['rule']}); last seen: "
                + "; ".join(changes[-3:])))
        time.sleep(SETTLE_POLL_S)


def loopback_host(addresses: Sequence[str]) -> str | None:
    """The loopback host to connect to, given the addresses a process listens on one port with
    (``0.0.0.0``, ``127.0.0.1``, ``::``, ``::1``, ...): 127.0.0.1 when IPv4 loopback reaches one, ``::1``
    when only IPv6 loopback does, None when loopback reaches none."""
    if any(address in ("0.0.0.0", "::") or address.startswith("127.") for address in addresses):
        return "127.0.0.1"
    if "::1" in addresses:
        return "::1"
    return None


class LaunchedProcess:
    """One command's process. :meth:`start` spawns it, :meth:`wait_ready` returns once it is ready
    (see :class:`Readiness`), :meth:`stop` sends a signal and returns the exit code, :meth:`close`
    kills it if still running and releases its pipe and log. ``name`` begins every error message.

    stderr, and stdout when the readiness does not read it, go to ``log_path`` (created with its
    folder; a temporary file when None, readable with :meth:`log_text`). ``nofile_limit`` sets
    RLIMIT_NOFILE, soft and hard (so the process cannot raise it), in the child before it starts.
    ``own_group`` starts it in a session (and process group) of its own, and stops everything the
    subject started with it (see the module's rules): a shell command's children, a forking daemon
    (and a terminal's Ctrl-C no longer reaches them directly). When its first process exits cleanly
    leaving a daemon that listens (:meth:`follow_daemon`), :attr:`pid` is the daemon's from then on.

    After :meth:`stop`, :attr:`stop_report` says what was signalled and what was left behind."""

    def __init__(self, argv: Sequence[str], *, cwd: Path | str | None = None, env: Mapping[str, str] | None = None,
                 log_path: Path | None = None, readiness: Readiness | None = None, name: str = "process",
                 nofile_limit: int | None = None, own_group: bool = False) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.log_path = log_path
        self.readiness: Readiness = readiness if readiness is not None else FirstLine()
        self.name = name
        self.nofile_limit = nofile_limit
        self.own_group = own_group
        self.popen: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None
        #: Every process seen to belong to the subject: ``{pid: start time}`` (see :meth:`members`).
        self.known: dict[int, int] = {}
        #: The daemon followed after the first process exited (None: the first process is the root).
        self.daemon: int | None = None
        #: The port the subject listens on, once known: its listener's owners are the subject's too.
        self.port: int | None = None
        #: What :meth:`stop` did: ``{"signalled_first", "exit_code", "left_behind": [{pid, name, ended_by}]}``.
        self.stop_report: dict | None = None
        #: True while this process holds the launcher a child subreaper (:func:`_subreaper`).
        self._reaping = False
        #: The followed daemon's exit code, when it was reparented to us and has exited.
        self.daemon_returncode: int | None = None

    # --- the process -----------------------------------------------------------------------------
    def start(self) -> int:
        """Spawn the process (stdin from /dev/null) and return its pid, without waiting."""
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "wb")
        else:
            self._log = tempfile.TemporaryFile()
        limit = self.nofile_limit
        set_limit = None
        if limit is not None:
            def set_limit() -> None:  # runs in the child between fork and exec
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        try:
            self.popen = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stderr=self._log,
                stdout=subprocess.PIPE if self.readiness.reads_stdout else self._log, preexec_fn=set_limit,
                start_new_session=self.own_group,
            )
        except BaseException:
            self.close()
            raise
        self._remember(self.popen.pid)
        if self.own_group:
            _subreaper(+1)
            self._reaping = True
            _LEADERS.add(self.popen.pid)
        return self.popen.pid

    def wait_ready(self, timeout_s: float) -> Ready:
        """Wait until the process is ready (raises :class:`NotReady`; the process is left as it is)."""
        return self.readiness.wait(self, timeout_s)

    @property
    def pid(self) -> int:
        """The subject's root process: the one started, or the daemon it left (:meth:`follow_daemon`)."""
        assert self.popen is not None, f"{self.name} not started"
        return self.daemon if self.daemon is not None else self.popen.pid

    @property
    def stdout(self) -> IO[bytes] | None:
        return self.popen.stdout if self.popen is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit code once the exit has been seen (negative: the signal that ended it), else None."""
        return self.popen.returncode if self.popen is not None else None

    def poll(self, wait_s: float = 0.0) -> int | None:
        """The exit code if the process has exited (reaping it) or exits within ``wait_s``, else None.
        A followed daemon is not memdiet's child: while it runs, None; once it is gone, its starter's
        exit code (its own cannot be observed)."""
        if self.popen is None:
            return None
        if self.daemon is not None:
            deadline = time.monotonic() + wait_s
            while self._reap_daemon() is None and _alive(self.daemon, self.known.get(self.daemon)):
                if time.monotonic() >= deadline:
                    return None
                time.sleep(LISTEN_POLL_S)
            return self.popen.poll()
        try:
            return self.popen.wait(wait_s) if wait_s > 0 else self.popen.poll()
        except subprocess.TimeoutExpired:
            return None

    def _reap_daemon(self) -> int | None:
        """The followed daemon's exit code once it exited, when it was reparented to us."""
        if self.daemon_returncode is None and self.daemon is not None:
            self.daemon_returncode = _reap(self.daemon)
        return self.daemon_returncode

    def running(self) -> bool:
        if self.popen is None:
            return False
        if self.daemon is not None:
            return _alive(self.daemon, self.known.get(self.daemon))
        return self.popen.poll() is None

    def follow_daemon(self, port: int | None = None) -> bool:
        """When the started process has exited with code 0 and left processes behind (a server that
        daemonizes, a parent that forks the server and exits): True while any of them runs, and once
        one listens (on ``port`` when given, else the port already known), it is :attr:`pid` from
        then on. Only an ``own_group`` subject's session, process group, or (with a port) a listener
        started after it qualifies."""
        if self.daemon is not None:
            return self.running()
        if not self.own_group or self.popen is None or self.popen.poll() != 0:
            return False
        port = port if port is not None else self.port
        members = set(self.members())
        if port is not None:  # a daemon that left the session too: whoever listens on the port we gave
            members |= set(self._listeners_started_after(port, exclude=members))
        listeners = [pid for pid in sorted(members) if _listens(pid)]
        if listeners:
            parents = parent_pids()
            self.daemon = min(pid for pid in listeners if parents.get(pid) not in listeners)
            self._remember(self.daemon)
            if port is not None:
                self.port = port
        return bool(members)

    def _listeners_started_after(self, port: int, exclude: set[int]) -> list[int]:
        """Processes started after the subject's first one that listen on ``port``."""
        assert self.popen is not None
        leader_start = self.known.get(self.popen.pid, 0)
        candidates = []
        for pid in process_ids():
            if pid in exclude or pid == os.getpid():
                continue
            try:
                if start_time(pid) >= leader_start:
                    candidates.append(pid)
            except ProcessGone:
                continue
        owners = listener_owners(port, candidates)
        for pid in owners:
            self._remember(pid)
        return owners

    def members(self) -> list[int]:
        """The subject's live processes, remembered (:attr:`known`) as they are found: the tree below
        its root, and with ``own_group`` every process of its session or process group, those holding
        its listening socket (once :attr:`port` is known), and the trees below them."""
        if self.popen is None:
            return []
        found = set()
        for pid in (self.popen.pid, *( [self.daemon] if self.daemon is not None else [])):
            if _alive(pid, self.known.get(pid)):
                found.update(process_tree(pid))
        if self.own_group:
            leader = self.popen.pid
            for pid in process_ids():
                try:
                    if leader in session_and_group(pid):
                        found.add(pid)
                except ProcessGone:
                    continue
            for pid in [pid for pid in self.known if _alive(pid, self.known[pid])]:
                found.update(process_tree(pid))
            if self.port is not None:
                found.update(self._listeners_started_after(self.port, exclude=found))
            for orphan in self._orphans():  # a daemon that left the session, reparented to us
                found.update(process_tree(orphan))
        found.discard(os.getpid())
        for pid in found:
            self._remember(pid)
        return sorted(pid for pid in found if _alive(pid, self.known.get(pid)))

    def _orphans(self) -> list[int]:
        """Processes the subject left that were reparented to this one (a child subreaper while an
        ``own_group`` subject runs, see :func:`_subreaper`): children of ours in a session other than
        ours, started after the subject. Those that exited are reaped."""
        assert self.popen is not None
        me, my_session = os.getpid(), os.getsid(0)
        leader_start = self.known.get(self.popen.pid, 0)
        orphans = []
        for child, parent in parent_pids().items():
            if parent != me or child in _LEADERS:  # another subject's own first process is not an orphan
                continue
            try:
                if session_and_group(child)[0] != my_session and start_time(child) >= leader_start:
                    orphans.append(child)
            except ProcessGone:
                continue
        for child in orphans:
            _reap(child)
        return [child for child in orphans if _alive(child, None)]

    def _remember(self, pid: int) -> None:
        if pid not in self.known:
            try:
                self.known[pid] = start_time(pid)
            except ProcessGone:
                pass

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` by PID to the root process (:attr:`pid`), unless it has exited."""
        if not self.running():
            return
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self, grace_s: float, signum: int = signal.SIGTERM) -> int | None:
        """Send ``signum`` to the root process (unless it has exited already) and wait up to
        ``grace_s`` for its exit; then stop what it left behind (``own_group``: see the module's
        rules) and return its exit code (None: a followed daemon's that was not reparented to us). A root
        still running then is killed with everything it started and :class:`ProcessError` raised."""
        assert self.popen is not None, f"{self.name} not started"
        self.members()  # remember the whole family before anything exits
        self.stop_report = {"signalled_first": self.pid, "signal": signal.Signals(signum).name, "left_behind": []}
        self.send_signal(signum)
        if self.poll(wait_s=grace_s) is None and self.running():
            self.kill()
            raise ProcessError(self.failure(f"did not exit within {grace_s:g} s of "
                                            f"{signal.Signals(signum).name}; killed"))
        code = self._reap_daemon() if self.daemon is not None else self.popen.returncode
        self.stop_report["exit_code"] = code
        self._stop_left_behind(signum)
        return code

    def _stop_left_behind(self, signum: int) -> None:
        """The subject's processes still running after its root exited: ``signum``, a grace period,
        then SIGKILL; each recorded in :attr:`stop_report` with what ended it."""
        if not self.own_group:
            return
        left = self.members()
        if not left:
            return
        report = self.stop_report if self.stop_report is not None else {"left_behind": []}
        names = {pid: _name(pid) for pid in left}
        for pid in left:
            _signal(pid, self.known.get(pid), signum)
        deadline = time.monotonic() + LEFTOVER_GRACE_S
        while (alive := [pid for pid in left if _alive(pid, self.known.get(pid))]) and time.monotonic() < deadline:
            time.sleep(LISTEN_POLL_S)
        for pid in alive:
            _signal(pid, self.known.get(pid), signal.SIGKILL)
        for pid in left:
            report["left_behind"].append({"pid": pid, "name": names[pid],
                                          "ended_by": "SIGKILL" if pid in alive else signal.Signals(signum).name})
        self.stop_report = report

    def kill(self) -> None:
        """SIGKILL the root process and (``own_group``) everything the subject started, and reap it."""
        if self.popen is None:
            return
        killed: set[int] = set()
        # A process the subject forks while it is being killed (a pool's master between two forks) is
        # not in the first list: each round kills the members found that were not killed before,
        # until a round finds none.
        for _ in range(KILL_ROUNDS):
            family = [pid for pid in self.members() if pid not in killed] if self.own_group else []
            if self.running():
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for pid in family:
                _signal(pid, self.known.get(pid), signal.SIGKILL)
            killed.update(family)
            if not family:
                break
        if self.popen.poll() is None:
            try:
                self.popen.wait(KILL_WAIT_S)
            except subprocess.TimeoutExpired:
                pass
        if self.daemon is not None:
            self.poll(wait_s=KILL_WAIT_S)

    def close(self) -> None:
        """Kill the process and what it started if still running, then release its stdout pipe and
        its log file."""
        self.kill()
        if self._reaping:
            for pid in self.known:
                _reap(pid)
            _subreaper(-1)
            self._reaping = False
            _LEADERS.discard(self.popen.pid)
        if self.popen is not None and self.popen.stdout is not None:
            self.popen.stdout.close()
        if self._log is not None:
            self._log.close()

    # --- its log -------------------------------------------------------------------------------------
    def log_text(self, last_bytes: int | None = None) -> str:
        """What the process wrote to its log so far (only the last ``last_bytes`` when given). Read
        without moving the file's offset, which the process shares for its writes."""
        if self.log_path is not None:  # opened for writing only: read it by its path
            try:
                with open(self.log_path, "rb") as log:
                    return _tail(log.fileno(), last_bytes)
            except FileNotFoundError:
                return ""
        if self._log is None or self._log.closed:
            return ""
        return _tail(self._log.fileno(), last_bytes)

    def failure(self, what: str) -> str:
        """``"{name} {what}"``, then where its log is and the end of its stderr: one line."""
        tail = self.log_text(STDERR_TAIL_BYTES).strip()
        where = f"; see {self.log_path}" if self.log_path is not None else ""
        return f"{self.name} {what}{where}" + (f"; its stderr ends with {tail!r}" if tail else "")


#: How many running ``own_group`` subjects want this process to be a child subreaper.
_SUBREAPER_USERS = 0
#: The first processes of the ``own_group`` subjects running now (children of ours, never orphans).
_LEADERS: set[int] = set()
#: prctl(2)'s PR_SET_CHILD_SUBREAPER.
_PR_SET_CHILD_SUBREAPER = 36


def _subreaper(change: int) -> None:
    """Make this process a child subreaper while any ``own_group`` subject runs (``change`` +1 when
    one starts, -1 when it is closed): a daemon the subject forks and orphans (setsid, double fork) is
    reparented to us rather than to init, so :meth:`LaunchedProcess.members` finds it, and its exit
    is ours to reap. Without prctl (not Linux) nothing changes."""
    global _SUBREAPER_USERS
    before = _SUBREAPER_USERS
    _SUBREAPER_USERS = max(0, before + change)
    if (before == 0) == (_SUBREAPER_USERS == 0):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1 if _SUBREAPER_USERS else 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _reap(pid: int) -> int | None:
    """The exit code of ``pid`` if it is a child of ours that has exited (reaping it), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if done == pid else None


def _alive(pid: int, started: int | None) -> bool:
    """The process runs (not a zombie) and is the one seen before (same start time, when known)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in (b"Z", b"X") and (started is None or int(fields[19]) == started)


def _signal(pid: int, started: int | None, signum: int) -> None:
    """``signum`` to ``pid`` if it is still the process seen before."""
    if _alive(pid, started):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _listens(pid: int) -> bool:
    try:
        return bool(listening_sockets(pid))
    except ProcessGone:
        return False


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return "?"


def _tail(fd: int, last_bytes: int | None) -> str:
    size = os.fstat(fd).st_size
    start = 0 if last_bytes is None else max(0, size - last_bytes)
    return os.pread(fd, size - start, start).decode(errors="replace")


class LineNotRead(ProcessError):
    """The stream ended, or the time ran out, before a whole line; ``partial`` holds what came."""

    def __init__(self, message: str, partial: str) -> None:
        super().__init__(message)
        self.partial = partial


def read_line(stream: IO[bytes], timeout_s: float, alive: Callable[[], bool] | None = None) -> str:
    """One line from a pipe, without its newline, read a byte at a time so nothing after it is taken.
    Raises :class:`LineNotRead` at the end of the stream, when ``timeout_s`` passes, or when
    ``alive()`` turns false (looked at every half second: a child of the process may hold the pipe
    open after it exits)."""
    fd = stream.fileno()
    deadline = time.monotonic() + timeout_s
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LineNotRead(f"no complete line within {timeout_s:g} s, got {data!r}", data.decode(errors="replace"))
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if ready:
            chunk = os.read(fd, 1)
            if not chunk:
                raise LineNotRead(f"stream closed after {data!r}", data.decode(errors="replace"))
            data += chunk
        elif alive is not None and not alive():
            raise LineNotRead(f"the process exited after writing {data!r}", data.decode(errors="replace"))
    return data.decode(errors="replace").rstrip("\n")
