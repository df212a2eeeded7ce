"""Run one subject under one probe through the scenario, and write its run folder.

Scenario, each phase's start and end recorded on the run's clock (seconds since the server started):
``idle-empty`` (no clients, T s), ``ramp`` (C clients connect, one request each), ``idle-held`` (C
keep-alive connections, no traffic, T s), ``load`` (the C connections send keep-alive requests as fast
as they are answered, D s), ``drain`` (all clients close), ``idle-after`` (T s). Then the server is
stopped with SIGTERM.

Whatever the subject does with its clients, the run completes once it served: a server that holds fewer
than C (a small pool, a short listen backlog, a cap on idle keep-alive connections) is held at what it
accepted and kept, and the figures per held connection divide by the connections it held at the end of
``idle-held``, counted on its side (its established sockets in /proc); result.json's ``held`` says how
many, how the others ended as the clients saw it (refused, reset, connect timed out, no answer, closed
by the server after its response or after N s idle) and where the server stopped keeping connections.
A server that closes every connection is recorded as holding none, and its load phase sends each
request on a new connection. Only a subject that answered no request, or that died before the phases
ended, fails the run. Its exit code on SIGTERM is recorded, and a code it should not have exited with
is a warning, not a failure, once every phase was measured.

The load generator runs in its own process (experiments.loadgen). The run folder's result.json is
written with status ``running`` first and rewritten at the end; an interrupted or failed run is marked
``incomplete`` with the reason, and keeps the series recorded so far. Earlier runs are never touched.

Rules: the runner sequences and records; what result.json says of what it recorded (the summary, the
figures per held connection, ``held``, ``not_measured``, the RSS ledger's sums, the warnings) is
:func:`experiments.dataset.builder.build`'s, from an :class:`~experiments.dataset.builder.Observed`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..dataset.builder import Observed, build, outcomes_text, tree_changes
from ..dataset.results import (
    DRAIN,
    HEAP_COLUMNS,
    HEAP_FILE,
    IDLE_AFTER,
    IDLE_EMPTY,
    IDLE_HELD,
    LOAD,
    PHASES,
    PROCESS_COLUMNS,
    PROCESSES_FILE,
    RAMP,
    RESULT_FILE,
    RSS_COLUMNS,
    RSS_FILE,
    SCHEMA,
    SITES_COLUMNS,
    SITES_FILE,
    Phase,
    write_csv,
    write_json,
)
from ..dataset.rss_ledger import LEDGER_PHASES
from ..errors import BadInput, ExperimentError
from ..loadgen import END_KINDS, LoadGeneratorProcess
from ..paths import REPO_ROOT
from . import environment, exits, graphdump, inject, kernel, ledger
from .probes import PROBES, Probe, ProbeData, ProbeFailed, RssSampler, read_table
from .probes.processes import held_sites_from_processes
from .probes.sampler import TREE_RESCAN_S
from .process import SETTLE_QUIET_S, LaunchedProcess, NotReady, ProcessError, wait_settled
from .procfs import ProcessGone, cpu_seconds, established_on_port, listening_sockets, process_tree
from .subjects import MemdietLayout, Subject, resolve
from .scenario import DEFAULT_RUNS_DIR, RunConfig  # noqa: F401  (DEFAULT_RUNS_DIR: importable here too)

#: Seconds the server may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 60.0
#: Seconds between two looks at how many clients are still connected while they are held.
HELD_POLL_S = 0.25
#: Seconds after which a ramp starts no more connects: this plus one per 50 clients (then stretched).
RAMP_BASE_S = 30.0
#: Seconds without a connect or a response after which the ramp has stalled (then stretched).
RAMP_STALL_S = 3.0
#: Clients that send one request per connection in the load phase of a server that holds none.
FRESH_LOAD_WORKERS = 16
#: What each way a client ended (or failed to connect) is called in the summary: the observation, and
#: a cause only where the observation names one.
CLIENT_OUTCOMES = {
    "connect_refused": "connect refused (RST to the SYN: nothing listening, or the listen backlog full with "
                       "tcp_abort_on_overflow)",
    "connect_reset": "reset while connecting",
    "connect_timeout": "connect timed out (no SYN-ACK: the listen backlog full)",
    **{kind: text for kind, text in END_KINDS.items() if kind not in ("client",)},
}


class RunFailed(ExperimentError):
    """The run could not complete; the message names the subject and the phase."""


class Interrupted(BaseException):
    """SIGTERM (or SIGINT) arrived during a run; raised in the main thread to unwind cleanly."""


Progress = Callable[[str], None]


def _new_run_dir(config: RunConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = config.runs_dir / f"{stamp}-{config.subject}-{config.probe}"
    candidate, suffix = base, 1
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            suffix += 1
            candidate = base.with_name(f"{base.name}-{suffix}")


class Run:
    """One run in progress: owns the server process, the sampler and the load generator."""

    def __init__(self, config: RunConfig, progress: Progress | None = None) -> None:
        if config.probe not in PROBES:
            raise BadInput(f"unknown probe {config.probe!r}; choose one of {', '.join(PROBES)}")
        self.subject: Subject = resolve(config.subject or None, config.cmd)
        if config.subject != self.subject.name:
            config = replace(config, subject=self.subject.name)
        self.config = config
        self.probe: Probe = PROBES[config.probe]
        if self.probe.subjects == "python" and not self.subject.python:
            raise BadInput(f"{self.subject.name}: the {self.probe.name} probe traces Python programs, and "
                           f"{self.subject.description} is not one; use --probe rss (or massif)")
        #: How many times longer the timed phases last under this probe (valgrind slows the subject).
        self.stretch = self.probe.time_stretch(config)
        self.host = "127.0.0.1"
        #: Clients the subject closed before the held phase ended: ``{phase, time_s, closed, how}`` each
        #: (``how``: the END_KINDS kinds the clients saw, with their counts).
        self.closed_early: list[dict[str, Any]] = []
        #: Established connections the subject held, counted on its side, at the end of each idle phase.
        self.server_held: dict[str, int | None] = {}
        #: Warnings the runner itself adds (a subject listening beyond loopback, its exit code...).
        self.extra_warnings: list[str] = []
        self.progress = progress or (lambda message: None)
        self.run_dir = _new_run_dir(config)
        self.trace_dir = self.run_dir / "raw"
        self.phases: list[Phase] = []
        self.load_results: dict[str, Any] = {}
        #: Server CPU seconds by phase (only ``load``), as :meth:`_server_cpu_s` splits them.
        self.server_cpu_s: dict[str, dict[str, float]] = {}
        self.dumps: list[str] = []
        #: The heap graphs after the idle phases' dumps (``--heap-graph``), and the owners analysed from them.
        self.graphs = graphdump.Graphs(config.heap_graph)
        #: Each traced process's pages read right after its dump at the end of each of LEDGER_PHASES:
        #: ``{phase: {pid: (the dump's path less its suffix, pages)}}`` (the root first); with the
        #: allocators' figures written beside each dump, the RSS ledger of each process.
        self.ledger_pages: dict[str, dict[int, tuple[Path, ledger.Pages]]] = {}
        #: The subject's processes at each of LEDGER_PHASES' ends, traced or not: ``{phase: [pid, ...]}``.
        self.ledger_trees: dict[str, list[int]] = {}
        #: The bare interpreter's ledger (the server's Python and imports, nothing run), or why not.
        self.bare_interpreter: dict[str, Any] | None = None
        self.phase = "start"
        self.server: LaunchedProcess | None = None
        #: The subject's processes when it was found ready (a process that appears later is a warning).
        self.ready_pids: set[int] = set()
        self.sampler: RssSampler | None = None
        self.loadgen: LoadGeneratorProcess | None = None
        #: Every process exit the kernel reports while the run lasts: how a worker that died ended.
        self.exits = exits.ExitWatcher()
        self.t0 = 0.0
        self.wall_t0 = 0.0
        self.document: dict[str, Any] = {
            "schema": SCHEMA,
            "status": "running",
            "error": None,
            "subject": self.subject.describe(),
            "probe": config.probe,
            "parameters": config.parameters(),
            "phases": [],
            "summary": {},
            "load": {},
            "probe_info": {"name": self.probe.name, "note": self.probe.note, "notes": []},
            "environment": environment.describe(),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": {"rss": RSS_FILE, "processes": PROCESSES_FILE, "server_log": "server.log"},
        }
        write_json(self.run_dir / RESULT_FILE, self.document)

    # --- the scenario ------------------------------------------------------------------------
    def execute(self) -> Path:
        """Run the scenario; always writes the run folder. Raises RunFailed/Interrupted after
        writing it when the run did not complete."""
        error: BaseException | None = None
        try:
            self._start_server()
            config = self.config
            idle_s = config.idle_s * self.stretch
            # The load generator starts before idle-empty (it connects nothing until the ramp): the pages
            # the subject shares with it (the interpreter, libc) are then halved in PSS at both ends of the
            # held figures, not only at the second, which made PSS per held connection low or negative.
            self.loadgen = LoadGeneratorProcess(python=config.python)
            self.loadgen.start(self.host, self.port, path=config.path)
            self.document["load_generator"] = {"pid": self.loadgen.process.pid, "ready_s": self._now()}
            self._phase(IDLE_EMPTY, lambda: self._idle(idle_s))
            self._phase(RAMP, self._ramp)
            self._phase(IDLE_HELD, lambda: self._hold(idle_s))
            self._phase(LOAD, self._load)
            self._phase(DRAIN, lambda: self._load_command(DRAIN, "drain", 60 * self.stretch))
            self._phase(IDLE_AFTER, lambda: self._idle(idle_s))
            self.phase = "stop"
            self._measure_bare_interpreter()
            self._stop_server(expect_running=True)
        except (RunFailed, Interrupted, KeyboardInterrupt, Exception) as caught:
            error = caught
        finally:
            self._teardown()
            self._write(error)
        if error is not None:
            if isinstance(error, (RunFailed, Interrupted, KeyboardInterrupt, BadInput)):
                raise error  # BadInput: a probe found the subject unusable (exit 2), e.g. no valgrind
            raise RunFailed(f"{self.config.subject}/{self.config.probe} failed in phase {self.phase}: {error}") from error
        return self.run_dir

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _phase(self, name: str, action: Callable[[], None]) -> None:
        self.phase = name
        self.progress(name)
        start = self._now()
        followed = "daemon" in self.document
        action()
        self._check_server()
        if name == IDLE_EMPTY and not followed and "daemon" in self.document:
            # Its starter exited during the phase (a parent that forks the server and exits after it
            # listens): the phase measured both; measure it again on the daemon alone.
            start = self._now()
            action()
            self._check_server()
        end = self._now()
        self.phases.append(Phase(name, start, end))
        assert self.server is not None
        if name in (IDLE_EMPTY, IDLE_HELD):  # the kernel's side of the held connections, from outside
            self.document.setdefault("kernel", {})[name] = kernel.describe(self.port)
            self.server_held[name] = self._established_on_server()
        try:
            dumped = self.probe.phase_end(len(self.dumps), name, self._tree(), self.trace_dir, self._check_server)
        except ProbeFailed as error:
            raise RunFailed(f"{self.subject.name}: {error}") from None
        if dumped:
            if name in LEDGER_PHASES:
                self._read_ledger_pages(name, len(self.dumps))
            self.graphs.phase_end(name, len(self.dumps), self.probe.name, self.trace_dir, self._tree(), self._check_server,
                                  self.sampler)
            self.dumps.append(name)

    def _read_ledger_pages(self, phase: str, index: int) -> None:
        """Each traced process's pages, now that its dump ``index`` is written with its allocators'
        figures beside it (in the trace folder for memdiet's server, in ``pid-PID/`` for each Python
        process of a program the tracer was injected into: the master and each worker)."""
        assert self.server is not None
        tree = self._tree()
        self.ledger_trees[phase] = tree
        pages_of: dict[int, tuple[Path, ledger.Pages]] = {}
        for pid in tree:
            folders = (self.trace_dir, self.trace_dir / f"pid-{pid}") if pid == self.server.pid else \
                (self.trace_dir / f"pid-{pid}",)
            for folder in folders:
                if (folder / "snapshots" / f"{index:03d}.alloc.json").exists():
                    try:
                        pages_of[pid] = (folder / "snapshots" / f"{index:03d}", ledger.read_pages(pid))
                    except ProcessGone:
                        pass  # the root: _check_server says so at the next phase; a worker: a tree change
                    break
        if pages_of:
            self.ledger_pages[phase] = pages_of

    def _measure_bare_interpreter(self) -> None:
        """The bare interpreter's ledger, with the modules the subject had imported at its first dump.
        Not for a --cmd, whose interpreter and working folder may not be memdiet's."""
        if not self.ledger_pages:
            return
        if self.subject.kind == "command":
            self.bare_interpreter = {"error": "not measured for a --cmd subject (its interpreter may not be memdiet's)"}
            return
        stem = min((stem for each in self.ledger_pages.values() for stem, _pages in each.values()),
                   key=lambda path: path.name)
        try:
            modules = json.loads(stem.with_suffix(".alloc.json").read_text())["modules"]
            self.bare_interpreter = ledger.bare_interpreter(modules, python=self.config.python, cwd=REPO_ROOT,
                                                            env=os.environ)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            self.bare_interpreter = {"error": str(error)}

    def _tree(self) -> list[int]:
        """The subject's processes: its root first, then every process below it."""
        assert self.server is not None
        try:
            return process_tree(self.server.pid)
        except OSError:
            return [self.server.pid]

    def _idle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._check_server()
            time.sleep(min(left, 0.1))

    def _hold(self, seconds: float) -> None:
        """The idle-held phase: nothing is sent; every :data:`HELD_POLL_S` the load generator says how
        many clients are still connected and how those that ended did. A subject that closes idle
        connections (a keep-alive timeout shorter than the phase) is recorded with when, how many
        and how; the clients it closed are opened again before the load phase."""
        assert self.loadgen is not None
        expected = self.load_results[RAMP].get("connections_open", self.config.connections)
        seen: dict[str, int] = {}
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._check_server()
            time.sleep(min(left, HELD_POLL_S))
            reply = self.loadgen.command("status", 30)
            open_now = reply.get("connections_open", expected)
            if open_now < expected:
                ended = reply.get("ended") or {}
                how = {kind: dict(entry, count=entry["count"] - seen.get(kind, 0)) for kind, entry in ended.items()
                       if entry["count"] > seen.get(kind, 0)}
                seen = {kind: entry["count"] for kind, entry in ended.items()}
                self.closed_early.append({"phase": IDLE_HELD, "time_s": round(self._now(), 3),
                                          "closed": expected - open_now, "how": how})
                expected = open_now

    def _reopen_closed(self) -> None:
        """Open again the clients the subject closed while they were held (see :meth:`_hold`); not
        those it closed after their first response (it would close them again)."""
        closed = sum(int(event["closed"]) for event in self.closed_early if event["phase"] == IDLE_HELD)
        if closed > 0:
            self._load_command("reopen", f"ramp {closed}", (60 + closed / 20) * self.stretch)

    def _ramp(self) -> None:
        """Open the C clients, paced and time-bounded (the load generator starts no connect after
        :data:`RAMP_BASE_S` plus one second per 50 clients, nor once a run of them failed): the held
        phase holds what the subject accepted and kept. Fails only when the subject answered none."""
        connections = self.config.connections
        overflows_before = kernel.listen_overflows()
        ramp_s = (RAMP_BASE_S + connections / 50) * self.stretch
        stall_s = RAMP_STALL_S * self.stretch
        self._load_command(RAMP, f"ramp {connections} {ramp_s:g} {stall_s:g}", ramp_s + 60 * self.stretch)
        reply = self.load_results[RAMP]
        overflows_after = kernel.listen_overflows()
        if overflows_before is not None and overflows_after is not None:
            self.document["listen_overflows"] = overflows_after - overflows_before
        held = reply.get("connections_open", connections)
        if not reply.get("requests"):
            raise RunFailed(f"{self.subject.name}: served nothing: none of the {reply.get('tried', connections)} "
                            f"clients of phase ramp got a response ({outcomes_text(reply)})")
        if held < connections:
            self.closed_early.append({"phase": RAMP, "time_s": round(self._now(), 3), "closed": connections - held,
                                      "how": reply.get("ended") or {}})

    def _load(self) -> None:
        """The load phase, with the server's CPU time over it (user + system, read from outside
        in /proc): CPU per request is what a probe costs the server, which req/s can hide
        when the load generator is the bottleneck."""
        self._reopen_closed()
        before = self._server_cpu_s()
        load_s = self.config.load_s * self.stretch
        assert self.loadgen is not None
        if self.loadgen.command("status", 30).get("connections_open", 0) == 0:
            # It holds none (it closes each connection): one request per connection, a few at a time.
            workers = min(self.config.connections, FRESH_LOAD_WORKERS)
            self._load_command(LOAD, f"load-fresh {load_s:g} {workers}", load_s + 60 * self.stretch)
        else:
            self._load_command(LOAD, f"load {load_s:g}", load_s + 60 * self.stretch)
        after = self._server_cpu_s()
        self.server_cpu_s[LOAD] = {key: round(after[key] - before[key], 6) for key in before if key in after}

    def _server_cpu_s(self) -> dict[str, float]:
        """CPU seconds (user + system) the subject has used so far: ``process`` (every thread of
        every process of its tree, the probe's own included) and ``main_thread`` (its root's main
        thread: the thread that serves, for a one-process server)."""
        assert self.server is not None
        pid = self.server.pid
        try:
            main_thread = cpu_seconds(pid, thread=pid)
            total = 0.0
            for member in self._tree():
                try:
                    total += cpu_seconds(member)
                except ProcessGone:  # a worker that exited meanwhile: its time is gone with it
                    if member == pid:
                        raise
            return {"process": total, "main_thread": main_thread}
        except ProcessGone:
            self._check_server()
            raise

    def _load_command(self, key: str, command: str, timeout_s: float) -> None:
        assert self.loadgen is not None
        reply = self.loadgen.command(command, timeout_s)
        self.load_results[key] = reply
        if not reply.get("ok", False):
            self._check_server()
            raise RunFailed(f"{self.config.subject}: load generator failed in phase {self.phase}: {reply.get('error')}")

    # --- the server --------------------------------------------------------------------------
    def _start_server(self) -> None:
        config, subject = self.config, self.subject
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        in_server = isinstance(subject, MemdietLayout)
        if in_server:
            launch = subject.launch(config.python, self.run_dir)
            argv = [*subject.command(config.python, config.keep_alive_timeout_s, config.max_conns),
                    *self.probe.server_args(self.trace_dir, config.sample_hz, config.detail_interval_s)]
        else:
            launch = subject.launch(config.python, self.run_dir)
            argv = launch.argv
        argv, extra_env = self.probe.wrap(list(argv), dict(launch.env), self.trace_dir, config, in_server)
        self.document["server_command"] = argv
        self.document["subject"]["command"] = argv
        self.document["subject"]["environment"] = {key: value for key, value in extra_env.items()}
        if self.probe.subjects == "python":  # a tracer its interpreter cannot run: refused here (exit 2)
            self.document["probe_info"]["check"] = inject.check_interpreter(
                self.probe.name, argv, {**os.environ, **extra_env}, self.trace_dir, config, subject.name)
        # memdiet's server and the peers' apps run from the repository; a --cmd from where memdiet was
        # started (its app:module and relative paths are the user's). A subject other than memdiet's
        # own server gets a process group of its own, so its workers stop (or are killed) with it.
        self.server = LaunchedProcess(argv, cwd=REPO_ROOT if subject.kind != "command" else None,
                                      env={**os.environ, **extra_env}, log_path=self.run_dir / "server.log",
                                      readiness=launch.readiness, name=subject.name, own_group=not in_server)
        self.wall_t0 = time.time()
        self.t0 = time.monotonic()
        self.exits.start()
        try:
            self.server.start()
        except OSError as error:
            raise RunFailed(f"{subject.name}: could not start {argv[0]!r}: {error.strerror or error}") from None
        # Sampled from the start on, before it listens: the start-up is part of the RSS series.
        self.sampler = RssSampler(self.server.pid, config.sample_hz)
        self.sampler.start()
        timeout_s = config.start_timeout_s or self.probe.startup_timeout_s * self.stretch
        try:
            ready = self.server.wait_ready(timeout_s)
        except NotReady as error:
            raise RunFailed(f"{subject.name}: not ready in phase start: {error}") from None
        self.port, self.host = ready.port, ready.host or "127.0.0.1"
        self.document["listening"] = {"host": self.host, "port": self.port}
        self._follow_daemon()
        self._warn_beyond_loopback()
        self._wait_settled(timeout_s)
        deadline = time.monotonic() + timeout_s
        while not self.probe.ready(self.trace_dir, self._tree()):
            self._check_server()
            if time.monotonic() > deadline:
                raise RunFailed(f"{subject.name}: the {self.probe.name} probe was not ready within {timeout_s:.0f} s "
                                f"(no trace from the subject's processes in {self.trace_dir})")
            time.sleep(0.02)
        self._refuse_unholdable_clients()

    def _wait_settled(self, timeout_s: float) -> None:
        """A subject that does not announce itself is ready once it listens and its process tree has
        settled (:func:`.process.wait_settled`), within what is left of the start timeout; result.json's
        ``ready`` says what it waited for. memdiet's server announces its port once its table is built,
        its one process settled: it waits for nothing more."""
        assert self.server is not None
        listened_s = round(self._now(), 3)
        if self.subject.announces_port:
            self.document["ready"] = {"listening_s": listened_s, "waited_for": "its 'listening on' line",
                                      "settled": None}
            return
        while True:
            try:
                settled = wait_settled(self.server, max(timeout_s - (self._now() - listened_s), SETTLE_QUIET_S))
                break
            except NotReady as error:
                # A parent that listens, forks the server and exits leaves while the tree settles:
                # the daemon it left is the subject from then on, and its tree settles in turn.
                if self.server.daemon is None and self._follow_daemon() and self.server.daemon is not None:
                    continue
                raise RunFailed(f"{self.subject.name}: not ready in phase start: {error}") from None
        self.document["ready"] = {"listening_s": listened_s, "settled_s": round(self._now(), 3),
                                  "waited_for": "a listening socket, then a settled process tree",
                                  "settled": settled.describe()}
        self.ready_pids = set(settled.pids)

    def _refuse_unholdable_clients(self) -> None:
        """Fail before the first phase when the server cannot hold C clients: a slot's index is its
        fd, so the server's own descriptors (stdio, listener, epoll, tracer files) take slots too;
        the server counts the rest into table.json as ``usable_slots``."""
        config = self.config
        usable = read_table(self.trace_dir).get("usable_slots")
        if usable is None or usable >= config.connections:
            return
        raise RunFailed(
            f"{config.subject}: refused in phase {self.phase}: the server can hold {usable} clients, not "
            f"--connections {config.connections}: {config.max_conns - usable} of its {config.max_conns} slots "
            f"are taken by its own file descriptors (a slot's index is its fd); "
            f"use --max-conns {config.max_conns + config.connections - usable} or more"
        )

    def _check_server(self) -> None:
        server = self.server
        if server is not None and server.poll() is not None and not self._follow_daemon():
            raise RunFailed(server.failure(
                f"(probe {self.config.probe}) died during phase {self.phase} with exit code {server.returncode}"))

    def _follow_daemon(self) -> bool:
        """When the started process exited cleanly and left a listening daemon behind (see
        :meth:`LaunchedProcess.follow_daemon`), measure the daemon's tree from now on; True when one
        is followed. The sampler is started again on it, its rows kept."""
        server = self.server
        if server is None:
            return False
        if not server.follow_daemon(self.port) or server.daemon is None:
            return False
        if "daemon" not in self.document:
            self.document["daemon"] = {"pid": server.daemon, "started_pid": server.popen.pid,
                                       "started_exit_code": server.returncode, "phase": self.phase}
            self.extra_warnings.append(
                f"{self.subject.name}: the started process (pid {server.popen.pid}) exited with code "
                f"{server.returncode} in phase {self.phase}, leaving pid {server.daemon} listening: that process "
                "and its tree are measured from then on")
            if self.sampler is not None:
                old = self.sampler
                old.stop()
                self.sampler = RssSampler(server.daemon, self.config.sample_hz)
                # One series: the daemon's samples go on after its starter's.
                self.sampler.rows, self.sampler.process_rows = old.rows, old.process_rows
                self.sampler.start()
        return True

    def _warn_beyond_loopback(self) -> None:
        """A warning when the subject listens on an address beyond loopback (0.0.0.0, ::, a LAN address):
        memdiet sends traffic to loopback only, but others can reach such a subject."""
        assert self.server is not None
        try:
            sockets = listening_sockets(self.server.pid, descendants=True)
        except ProcessGone:
            return
        beyond = sorted(f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
                        for address, port in sockets
                        if port == self.port and not (address.startswith("127.") or address == "::1"))
        if beyond:
            self.extra_warnings.append(
                f"{self.subject.name} listens on {', '.join(beyond)}, beyond loopback: other machines can reach it "
                "while it runs (memdiet sent its traffic to loopback only); bind it to 127.0.0.1")

    def _established_on_server(self) -> int | None:
        """The established connections on the subject's port held by its processes (its own count of
        the clients it holds); None when it cannot be read."""
        assert self.server is not None
        try:
            return established_on_port(self.server.members() or self._tree(), self.port)
        except (ProcessGone, OSError):
            return None

    def _stop_server(self, expect_running: bool) -> None:
        """SIGTERM to the subject's main process, then to what it left (see :meth:`LaunchedProcess.stop`).
        An exit code outside the subject's clean ones is recorded and warned about, never a failure:
        every phase was measured by then."""
        server = self.server
        if server is None or server.poll() is not None:
            if expect_running:
                self._check_server()
            return
        try:
            returncode = server.stop(STOP_TIMEOUT_S)
        except ProcessError as error:
            raise RunFailed(f"{self.config.subject}: {error}") from None
        report = dict(server.stop_report or {}, clean=returncode in self.subject.clean_exit_codes)
        if expect_running:
            self.document["stop"] = report
            if returncode is None:
                report["note"] = "the followed daemon was not reparented to memdiet: its exit code cannot be observed"
            elif returncode not in self.subject.clean_exit_codes:
                tail = server.log_text(200).strip().splitlines()
                self.extra_warnings.append(
                    f"{self.subject.name} exited with code {returncode} on SIGTERM (after every phase was measured)"
                    + (f"; its stderr ends with {tail[-1]!r}" if tail else ""))
            if report.get("left_behind"):
                names = ", ".join(f"{one['name']} (pid {one['pid']}, {one['ended_by']})" for one in report["left_behind"])
                self.extra_warnings.append(f"{self.subject.name} left {len(report['left_behind'])} process(es) "
                                           f"running after its main process exited, stopped by memdiet: {names}")

    def _teardown(self) -> None:
        if self.loadgen is not None:
            try:
                self.loadgen.close()
            except Exception:
                pass
        try:
            self._stop_server(expect_running=False)
        except RunFailed:
            pass
        if self.sampler is not None:
            self.sampler.stop()
        if self.server is not None:
            self.server.close()
        self.exits.stop()

    # --- the run folder ----------------------------------------------------------------------
    def _write(self, error: BaseException | None) -> None:
        document = self.document
        rss_rows = [(t - self.t0, rss, uss, pss) for t, rss, uss, pss in (self.sampler.rows if self.sampler else [])]
        write_csv(self.run_dir / RSS_FILE, RSS_COLUMNS, (_fmt_row(row) for row in rss_rows))
        process_rows = [(row[0] - self.t0, *row[1:]) for row in (self.sampler.process_rows if self.sampler else [])]
        write_csv(self.run_dir / PROCESSES_FILE, PROCESS_COLUMNS, (_fmt_row(row) for row in process_rows))
        notes = document["probe_info"]["notes"]
        ledgers = self._ledgers(notes)  # before collect(), which moves the dumps into the run folder
        probe_data = None
        try:
            probe_data = self.probe.collect(self.trace_dir, self.run_dir, self.t0, self.wall_t0, self.dumps)
        except Exception as collect_error:  # keep what we have; say what failed
            notes.append(f"probe data could not be read: {collect_error!r}")
        if probe_data is not None:
            self._write_probe_series(probe_data)
        ready = document.get("ready") or {}
        root = self.server.pid if self.server is not None else None
        ready_s = ready.get("settled_s", ready.get("listening_s", 0.0))
        # How each process that ended did (the kernel's exit events, which only the runner has seen).
        changes = tree_changes(process_rows, self.phases, self.ready_pids or {root}, ready_s, TREE_RESCAN_S)
        deaths = exits.deaths(changes, self.exits, self.t0, self.phases, self.closed_early)
        build(document, Observed(
            subject=self.subject.name, connections=self.config.connections, phases=self.phases,
            load=self.load_results, server_cpu_s=self.server_cpu_s, closed_early=self.closed_early,
            server_held=self.server_held, rss_rows=rss_rows, process_rows=process_rows,
            root_pid=root, ready_pids=self.ready_pids, ready_s=ready_s, rescan_s=TREE_RESCAN_S,
            outcome_names=CLIENT_OUTCOMES, ledgers=ledgers, ledger_trees=self.ledger_trees,
            bare_interpreter=self.bare_interpreter, extra_warnings=self.extra_warnings, probe=probe_data,
            deaths=deaths, death_texts={death["pid"]: exits.death_text(death) for death in deaths}))
        held = document.get("held")
        if document["not_measured"].get("heap_bytes_per_held_connection") is None:
            # owners per held connection divide by the held count: only when measured
            self.graphs.finish(self.trace_dir, self.run_dir, document,
                               held["held"] if held is not None else self.config.connections)
        document["finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        completed = error is None and [p.name for p in self.phases] == list(PHASES)
        document["status"] = "complete" if completed else "incomplete"
        if error is not None:
            document["error"] = str(error) or type(error).__name__
        write_json(self.run_dir / RESULT_FILE, document)

    def _write_probe_series(self, data: ProbeData) -> None:
        """The probe's series into the run folder (heap.csv, sites.csv; each traced process's own into
        ``processes/pid-PID/``), and where the held connections' bytes go when the probe did not say
        (summed over every process that has sites)."""
        if data.heap_rows:
            write_csv(self.run_dir / HEAP_FILE, HEAP_COLUMNS, (_fmt_row(r) for r in data.heap_rows))
        if data.site_rows:
            write_csv(self.run_dir / SITES_FILE, SITES_COLUMNS, (_fmt_row(r) for r in data.site_rows))
            if data.held_sites is None:
                each = [one.site_rows for one in data.processes.values() if one.site_rows] or [data.site_rows]
                data.held_sites = held_sites_from_processes(each, {p.name: p.end_s for p in self.phases})
        for info in data.process_info:
            one = data.processes.get(info["key"])
            if one is not None:
                folder = self.run_dir / "processes" / info["key"]
                folder.mkdir(parents=True, exist_ok=True)
                write_csv(folder / HEAP_FILE, HEAP_COLUMNS, (_fmt_row(r) for r in one.heap_rows))
                write_csv(folder / SITES_FILE, SITES_COLUMNS, (_fmt_row(r) for r in one.site_rows))

    def _ledgers(self, notes: list[str]) -> dict[str, dict[int, dict[str, Any]]]:
        """The RSS ledger of each traced process at the end of each phase whose pages were read
        (:mod:`.ledger`): ``{phase: {pid: ledger}}``, the root first."""
        ledgers: dict[str, dict[int, dict[str, Any]]] = {}
        for phase, each in self.ledger_pages.items():
            for pid, (stem, pages) in each.items():
                try:
                    stats = json.loads(stem.with_suffix(".alloc.json").read_text())
                    rounding = ledger.rounding_bytes(stem.with_suffix(".tmsnap"),
                                                     pymalloc=stats.get("pymalloc") is not None) \
                        if stats.get("traced_bytes") is not None else None  # untraced: the allocators probe
                except (OSError, ValueError) as error:
                    notes.append(f"RSS ledger of process {pid} at the end of {phase}: {error}")
                    continue
                ledgers.setdefault(phase, {})[pid] = ledger.ledger(pages, stats, rounding)
        return ledgers


def _fmt_row(row: tuple) -> tuple:
    return tuple("" if v is None else (f"{v:.6f}" if isinstance(v, float) else v) for v in row)


def run_once(config: RunConfig, progress: Progress | None = None) -> Path:
    """Run one subject under one probe and return its run folder (see :class:`Run`)."""
    return Run(config, progress).execute()
