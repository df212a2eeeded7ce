"""Run one layout under one probe through the scenario, and write its run folder.

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
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..dataset.agreement import beside_heap
from ..dataset.metrics import client_warnings, errors_text, summarize
from ..dataset.results import (
    DRAIN,
    HEAP_COLUMNS,
    HEAP_FILE,
    IDLE_AFTER,
    IDLE_EMPTY,
    IDLE_HELD,
    LOAD,
    PHASES,
    RAMP,
    RESULT_FILE,
    RSS_COLUMNS,
    RSS_FILE,
    SCHEMA,
    SITES_COLUMNS,
    SITES_FILE,
    Phase,
    Series,
    write_csv,
    write_json,
)
from ..errors import BadInput, ExperimentError
from ..loadgen import END_KINDS, LoadGeneratorProcess
from ..paths import REPO_ROOT
from . import environment, exits, graphdump, inject, kernel, ledger
from .probes import PROBES, Probe, ProbeData, ProbeFailed, RssSampler, read_table
from .probes.processes import held_sites_from_processes
from .probes.sampler import PROCESS_COLUMNS, TREE_RESCAN_S
from .process import SETTLE_QUIET_S, LaunchedProcess, NotReady, ProcessError, wait_settled
from .procfs import ProcessGone, cpu_seconds, established_on_port, listening_sockets, process_tree
from .subjects import MemdietLayout, Subject, resolve
from .scenario import DEFAULT_RUNS_DIR, RunConfig  # noqa: F401  (DEFAULT_RUNS_DIR: importable here too)

#: Seconds the server may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 60.0
#: Seconds between two looks at how many clients are still connected while they are held.
HELD_POLL_S = 0.25
#: Per-process memory over time (every process of the subject's tree), beside rss.csv.
PROCESSES_FILE = "processes.csv"
#: Seconds after which a ramp starts no more connects: this plus one per 50 clients (then stretched).
RAMP_BASE_S = 30.0
#: Seconds without a connect or a response after which the ramp has stalled (then stretched).
RAMP_STALL_S = 3.0
#: How a ramp that ended early is described (the load generator's ``stopped_early``).
RAMP_STOPS = {"deadline": "reached its time bound", "no_progress": "stopped after a run of clients not held",
              "stalled": "stalled (no connect and no response for its stall time) and aborted what was outstanding"}
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
    """The run could not complete; the message names the layout and the phase."""


class Interrupted(BaseException):
    """SIGTERM (or SIGINT) arrived during a run; raised in the main thread to unwind cleanly."""


Progress = Callable[[str], None]


def _new_run_dir(config: RunConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = config.runs_dir / f"{stamp}-{config.layout}-{config.probe}"
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
        self.subject: Subject = resolve(config.layout or None, config.cmd)
        if config.layout != self.subject.name:
            config = replace(config, layout=self.subject.name)
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
            "layout": config.layout,
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
            raise RunFailed(f"{self.config.layout}/{self.config.probe} failed in phase {self.phase}: {error}") from error
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
            raise RunFailed(f"{self.config.layout}: load generator failed in phase {self.phase}: {reply.get('error')}")

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
            f"{config.layout}: refused in phase {self.phase}: the server can hold {usable} clients, not "
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
            raise RunFailed(f"{self.config.layout}: {error}") from None
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
        document["process_tree"] = _tree_summary(process_rows, self.phases)
        root = self.server.pid if self.server is not None else None
        ready = document.get("ready") or {}
        document["process_tree"]["changes"] = tree_changes(process_rows, self.phases, self.ready_pids or {root},
                                                           ready.get("settled_s", ready.get("listening_s", 0.0)))
        deaths = exits.deaths(document["process_tree"]["changes"], self.exits, self.t0, self.phases, self.closed_early)
        document["process_tree"]["deaths"] = deaths
        if self.closed_early:
            closed = sum(int(event["closed"]) for event in self.closed_early)
            document["closed_early"] = {"closed": closed, "events": self.closed_early}
        held = self._held_document()
        if held is not None:
            document["held"] = held
        held_count = held["held"] if held is not None else self.config.connections
        notes = document["probe_info"]["notes"]
        ledgers = self._ledgers(notes)  # before collect(), which moves the dumps into the run folder
        probe_data = None
        try:
            probe_data = self.probe.collect(self.trace_dir, self.run_dir, self.t0, self.wall_t0, self.dumps)
        except Exception as collect_error:  # keep what we have; say what failed
            notes.append(f"probe data could not be read: {collect_error!r}")
        heap_series = None
        if probe_data is not None:
            notes.extend(probe_data.notes)
            document["files"].update(probe_data.files)
            document["table"] = probe_data.table
            if probe_data.heap_rows:
                write_csv(self.run_dir / HEAP_FILE, HEAP_COLUMNS, (_fmt_row(r) for r in probe_data.heap_rows))
                document["files"]["heap"] = HEAP_FILE
                heap_series = Series({c: [r[i] for r in probe_data.heap_rows] for i, c in enumerate(HEAP_COLUMNS)})
            if probe_data.site_rows:
                write_csv(self.run_dir / SITES_FILE, SITES_COLUMNS, (_fmt_row(r) for r in probe_data.site_rows))
                document["files"]["sites"] = SITES_FILE
            if probe_data.phase_end_heap:
                document["phase_end_heap_bytes"] = probe_data.phase_end_heap
            held_sites = probe_data.held_sites
            if held_sites is None and probe_data.site_rows:  # summed over every process that has sites
                each = [one.site_rows for one in probe_data.processes.values() if one.site_rows] or \
                    [probe_data.site_rows]
                held_sites = held_sites_from_processes(each, {p.name: p.end_s for p in self.phases})
            if held_sites is not None:
                document["held_connection_sites"] = held_sites
            if probe_data.processes:
                document["traced_processes"] = self._write_processes(probe_data)
        rss_series = Series({c: [r[i] for r in rss_rows] for i, c in enumerate(RSS_COLUMNS)})
        document["phases"] = [asdict(p) for p in self.phases]
        document["load"] = self.load_results
        document["server_cpu_s"] = self.server_cpu_s
        document["summary"] = summarize(
            self.phases, rss_series, heap_series, self.load_results, document["parameters"],
            probe_data.table if probe_data else None, server_cpu_s=self.server_cpu_s,
            phase_end_heap=probe_data.phase_end_heap if probe_data else None, held_connections=held_count,
        )
        document["summary"].update(kernel_per_held_connection(document.get("kernel", {}), held_count))
        daemon_phase = (self.document.get("daemon") or {}).get("phase")
        document["not_measured"] = not_measured(
            self.load_results, held, held_count, document["process_tree"]["changes"],
            daemon_phase if daemon_phase not in (None, "start", IDLE_EMPTY) else None)
        held_reason = document["not_measured"].get("heap_bytes_per_held_connection")
        for entry in document.get("traced_processes", []):  # each process's own heap per held connection
            heap_at = entry.get("phase_end_heap_bytes") or {}
            if held_reason is None and heap_at.get(IDLE_EMPTY) is not None and heap_at.get(IDLE_HELD) is not None:
                entry["heap_bytes_per_held_connection"] = (heap_at[IDLE_HELD] - heap_at[IDLE_EMPTY]) / held_count
            elif held_reason is None and entry.get("heap_bytes_per_held_connection") is not None:
                pass  # from its heap samples (memray), as the run's own figure is
            else:
                entry["heap_bytes_per_held_connection"] = None
                entry["heap_bytes_per_held_connection_not_measured"] = held_reason or \
                    f"no heap of this process at the ends of {IDLE_EMPTY} and {IDLE_HELD}"
        if ledgers:
            document["rss_ledger"] = self._ledger_document(ledgers, document["summary"], document["not_measured"])
        for key in document["not_measured"]:  # an empty figure, never a 0 that reads as one
            if key in document["summary"]:
                document["summary"][key] = None
        if (beside := beside_heap(document)) is not None:  # what RSS holds beside the heap, from the ledger
            document["heap_beside_rss"] = beside
        if held_reason is None:  # owners per held connection divide by the held count: only when measured
            self.graphs.finish(self.trace_dir, self.run_dir, document, held_count)
        document["warnings"] = client_warnings(self.load_results, self.config.connections)
        for death in deaths:
            document["warnings"].append(f"{self.subject.name}: " + exits.death_text(death))
        for change in document["process_tree"]["changes"]:
            if change["event"] == "ended" and deaths:
                continue  # said above, with how it ended
            low, high = change["between_s"]
            document["warnings"].append(
                f"process {change['pid']} ({change['name']}) {change['event']} during phase {change['phase']}, after "
                f"the subject was found ready (between the looks at {low:.2f} s and {high:.2f} s)")
        if held is not None:
            document["warnings"] = [w for w in document["warnings"] if not w.startswith("ramp: only")]
            document["warnings"].append(held["text"])
        document["warnings"].extend(self.extra_warnings)
        document["finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        completed = error is None and [p.name for p in self.phases] == list(PHASES)
        document["status"] = "complete" if completed else "incomplete"
        if error is not None:
            document["error"] = str(error) or type(error).__name__
        write_json(self.run_dir / RESULT_FILE, document)


    def _held_document(self) -> dict[str, Any] | None:
        """result.json's ``held`` when the subject did not hold all C clients to the end of idle-held
        (None when it did): how many it held, counted on its side; how the others ended, as the
        clients saw it; where it stopped keeping connections; one line of text for the warnings."""
        asked = self.config.connections
        ramp = self.load_results.get(RAMP)
        if ramp is None:
            return None
        on_server = self.server_held.get(IDLE_HELD)
        by_clients = ramp.get("connections_open", 0) - sum(
            int(event["closed"]) for event in self.closed_early if event["phase"] == IDLE_HELD)
        if IDLE_HELD not in self.server_held:  # the run ended before idle-held did
            by_clients = ramp.get("connections_open", 0)
        held = on_server if on_server is not None else by_clients
        if held >= asked and not self.closed_early:
            return None
        outcomes: dict[str, dict[str, Any]] = {}
        for kind, count in (ramp.get("errors") or {}).items():
            if kind.startswith("connect_"):
                outcomes[kind] = {"count": count, "phase": RAMP}
        for phase, ended in [(RAMP, ramp.get("ended") or {})] + [
                (event["phase"], event.get("how") or {}) for event in self.closed_early if event["phase"] == IDLE_HELD]:
            for kind, entry in ended.items():
                if kind == "client":
                    continue
                into = outcomes.setdefault(kind, {"count": 0, "phase": phase})
                into["count"] += entry["count"]
                for key in ("requests_min", "idle_s_min"):
                    into[key] = min(into.get(key, entry[key]), entry[key])
                for key in ("requests_max", "idle_s_max"):
                    into[key] = max(into.get(key, entry[key]), entry[key])
        for kind, entry in outcomes.items():
            entry["seen"] = CLIENT_OUTCOMES.get(kind, kind)
        ramp_held = ramp.get("connections_open", 0)
        stopped_at = ramp_held if ramp_held < asked else None
        document = {
            "asked": asked, "held": held, "held_by_server_count": on_server, "held_by_clients": by_clients,
            "counted": "the subject's established sockets on its port, from /proc, at the end of idle-held"
                       if on_server is not None else "the load generator's open connections (the server's side "
                                                         "could not be read)",
            "ramp": {"tried": ramp.get("tried"), "stopped_early": ramp.get("stopped_early"),
                     "elapsed_s": ramp.get("elapsed_s"), "peak_open": ramp.get("peak_open")},
            "stopped_keeping_at": stopped_at,
            "outcomes": outcomes,
            "events": self.closed_early,
        }
        parts = "; ".join(f"{entry['count']} {entry['seen']}" + _ended_detail(entry)
                          for _kind, entry in sorted(outcomes.items(), key=lambda item: -item[1]["count"]))
        if held == 0:
            document["not_held"] = (f"it held none of the {asked} clients at the end of idle-held: "
                                    + (parts or "every connection ended"))
            text = (f"{self.subject.name} held none of the {asked} clients (the held phase is not held): {parts}; "
                    "no figure per held connection; its load phase sent each request on a new connection")
        else:
            text = (f"{self.subject.name} held {held} of the {asked} clients at the end of idle-held (counted on its "
                    f"side)" + (f"; it stopped keeping connections at {stopped_at}" if stopped_at is not None else "")
                    + (f"; the others: {parts}" if parts else "")
                    + f"; figures per held connection divide by {held}")
            if ramp.get("stopped_early"):
                text += f"; the ramp {RAMP_STOPS.get(ramp['stopped_early'], ramp['stopped_early'])}"
                if (ramp.get("tried") or asked) < asked:
                    text += f" ({ramp.get('tried')} of the {asked} clients tried)"
        phase_end = (self.document.get("process_tree") or {}).get("phase_end") or {}
        before = {one["pid"]: one["name"] for one in (phase_end.get(IDLE_EMPTY) or {}).get("processes", [])}
        after = {one["pid"] for one in (phase_end.get(IDLE_HELD) or {}).get("processes", [])}
        gone = {pid: name for pid, name in before.items() if pid not in after} if after else {}
        if gone:  # evidence beside what the clients saw: a worker that exited may have taken its clients
            document["processes_gone"] = [{"pid": pid, "name": name} for pid, name in sorted(gone.items())]
            died = {death["pid"]: death for death in (self.document.get("process_tree") or {}).get("deaths", ())}
            text += ("; between the ends of idle-empty and idle-held these processes of its tree exited: "
                     + ", ".join(exits.death_text(died[pid]) if pid in died else f"{name} (pid {pid})"
                                 for pid, name in sorted(gone.items())))
        overflows = self.document.get("listen_overflows")
        if overflows:
            text += (f"; the kernel counted {overflows} listen-queue overflows during the ramp (TcpExtListenOverflows, "
                     "the machine's: a full listen backlog drops the handshake)")
        document["text"] = text
        return document

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

    def _ledger_document(self, ledgers: dict[str, dict[int, dict[str, Any]]], summary: dict[str, Any],
                         not_measured: dict[str, str]) -> dict[str, Any]:
        """result.json's ``rss_ledger``: each phase's ledger summed over the traced processes (``phases``;
        with one process, its own), each process's own (``processes``: the master and each worker, with
        its argv), the bare interpreter's, and what one more held connection costs by kind, per process
        and summed. A figure that cannot be attributed is None with its reason in
        ``per_held_connection_not_measured``: the subject did not hold its clients, the tree changed
        between the two phase ends, or a process of the tree was not traced (its allocators unread)."""
        connections, kernel = self.config.connections, summary.get("kernel_bytes_per_held_connection")
        pids = list(dict.fromkeys(pid for each in ledgers.values() for pid in each))
        argv = {entry["pid"]: entry.get("argv") for entry in self.document.get("traced_processes", [])}
        processes: dict[str, dict[str, Any]] = {}
        for pid in pids:
            own = {phase: each[pid] for phase, each in ledgers.items() if pid in each}
            per_held = None
            held_here = (self.document.get("held") or {}).get("held", connections)
            if IDLE_EMPTY in own and IDLE_HELD in own and held_here and not not_measured.get("rss_bytes_per_held_connection"):
                per_held = ledger.per_held_connection(own[IDLE_EMPTY], own[IDLE_HELD], held_here, None)
            processes[str(pid)] = {"pid": pid, "root": pid == (self.server.pid if self.server else None),
                                   "argv": argv.get(pid), "phases": own, "per_held_connection": per_held}
        summed = {phase: ledger.summed_ledger(list(each.values())) for phase, each in ledgers.items()}
        reason = not_measured.get("rss_bytes_per_held_connection")
        per_held = None
        held = (self.document.get("held") or {}).get("held", connections)
        if reason is None and (IDLE_EMPTY not in ledgers or IDLE_HELD not in ledgers):
            reason = f"no ledger at the end of {IDLE_EMPTY} or {IDLE_HELD}"
        if reason is None:
            traced = {phase: set(ledgers[phase]) for phase in (IDLE_EMPTY, IDLE_HELD)}
            trees = {phase: set(self.ledger_trees.get(phase, ())) for phase in (IDLE_EMPTY, IDLE_HELD)}
            if traced[IDLE_EMPTY] != traced[IDLE_HELD] or trees[IDLE_EMPTY] != trees[IDLE_HELD]:
                reason = (f"the processes differ between the ends of {IDLE_EMPTY} and {IDLE_HELD} "
                          f"({sorted(trees[IDLE_EMPTY])} and {sorted(trees[IDLE_HELD])})")
            elif trees[IDLE_HELD] - traced[IDLE_HELD]:
                reason = (f"processes {sorted(trees[IDLE_HELD] - traced[IDLE_HELD])} of the tree have no ledger "
                          "(not traced: their allocators could not be read)")
        if reason is None:
            per_held = ledger.per_held_connection(summed[IDLE_EMPTY], summed[IDLE_HELD], held, kernel)
        return {"phases": summed, "processes": processes, "summed_over": len(pids),
                "bare_interpreter": self.bare_interpreter, "per_held_connection": per_held,
                "per_held_connection_not_measured": reason,
                "parts": {name: {"label": label, "source": source} for name, (label, source) in ledger.PARTS.items()}}

    def _write_processes(self, data: ProbeData) -> list[dict[str, Any]]:
        """Each traced process's own series into ``processes/pid-PID/``; what the run says of each."""
        described = []
        for info in data.process_info:
            key = info["key"]
            one = data.processes.get(key)
            entry = {k: v for k, v in info.items() if k != "key"}
            if one is not None:
                folder = self.run_dir / "processes" / key
                folder.mkdir(parents=True, exist_ok=True)
                write_csv(folder / HEAP_FILE, HEAP_COLUMNS, (_fmt_row(r) for r in one.heap_rows))
                write_csv(folder / SITES_FILE, SITES_COLUMNS, (_fmt_row(r) for r in one.site_rows))
                entry["files"] = {"heap": f"processes/{key}/{HEAP_FILE}", "sites": f"processes/{key}/{SITES_FILE}",
                                  "snapshots": one.files.get("snapshots", [])}
                entry["phase_end_heap_bytes"] = one.phase_end_heap
                if not one.phase_end_heap and one.heap_rows:  # memray: no dumps, the samples' idle medians
                    series = Series({c: [r[i] for r in one.heap_rows] for i, c in enumerate(HEAP_COLUMNS)})
                    own = summarize(self.phases, None, series, None, self.document["parameters"], None)
                    entry["heap_bytes_per_held_connection"] = own.get("heap_bytes_per_held_connection")
            described.append(entry)
        return described


#: The phases at whose end the RSS ledger is taken: the server idles there.
LEDGER_PHASES = (IDLE_EMPTY, IDLE_HELD, IDLE_AFTER)


def kernel_per_held_connection(kernel_at: dict[str, Any], connections: int) -> dict[str, float | None]:
    """The kernel's memory per held connection, from :mod:`.kernel`'s reads at the ends of idle-empty
    and idle-held: ``kernel_buffer_bytes_per_held_connection`` (the subject's sockets' skmem
    charge, over C) and ``kernel_bytes_per_held_connection`` (that plus one ``struct tcp_sock``, the
    TCP slab's object size). None where a read is missing."""
    held, empty = kernel_at.get(IDLE_HELD) or {}, kernel_at.get(IDLE_EMPTY) or {}
    if held.get("skmem_bytes") is None or empty.get("skmem_bytes") is None or connections <= 0:
        return {"kernel_buffer_bytes_per_held_connection": None, "kernel_bytes_per_held_connection": None}
    buffers = (held["skmem_bytes"] - empty["skmem_bytes"]) / connections
    slab = (held.get("tcp_slab") or {}).get("object_bytes")
    return {"kernel_buffer_bytes_per_held_connection": buffers,
            "kernel_bytes_per_held_connection": buffers + slab if slab is not None else None}


#: The figures a load phase that answered no request cannot give.
LOAD_FIGURES = ("req_per_s", "requests", "latency_p50_ms", "latency_p99_ms", "cpu_us_per_request",
                "main_thread_cpu_us_per_request", "rss_bytes_per_active_connection", "heap_bytes_per_active_connection")
#: The figures that divide by the C clients held in idle-held.
HELD_FIGURES = ("rss_bytes_per_held_connection", "pss_bytes_per_held_connection", "heap_bytes_per_held_connection",
                "kernel_bytes_per_held_connection", "kernel_buffer_bytes_per_held_connection")


def tree_changes(process_rows: list[tuple], phases: list[Phase], ready_pids: set[int | None],
                 ready_s: float) -> list[dict[str, Any]]:
    """Each process of the subject's tree that started after it was found ready (at ``ready_s``, with
    ``ready_pids``), or ended after the first phase began and before the last one ended, from
    ``processes.csv``'s rows (run clock): ``{pid, name, event: started | ended, time_s, between_s,
    phase}``. The sampler looks at the tree every few tenths of a second, so the change happened
    between two looks: ``between_s`` (the last look without it, the first with it; for an end, the
    last with it and the first without), and ``phase`` names every phase those two looks span
    (``"ramp or idle-held"``; ``start`` before the first phase, ``stop`` after the last)."""
    if not process_rows or not phases:
        return []
    looks = sorted({row[0] for row in process_rows})
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    names: dict[int, str] = {}
    for row in process_rows:
        time_s, pid, name = row[0], row[1], row[3]
        first.setdefault(pid, time_s)
        last[pid] = time_s
        names[pid] = name
    end_s = phases[-1].end_s

    def phases_between(low_s: float, high_s: float) -> str:
        names_ = [phase.name for phase in phases if phase.start_s <= high_s and phase.end_s >= low_s]
        if low_s < phases[0].start_s:
            names_.insert(0, "start")
        if high_s > end_s:
            names_.append("stop")
        return " or ".join(dict.fromkeys(names_))

    changes = []
    for pid in first:
        index = looks.index(first[pid])
        if pid not in ready_pids and first[pid] >= ready_s and index > 0:
            # A look reads the tree found by the last scan, up to TREE_RESCAN_S before it.
            between = (looks[index - 1] - TREE_RESCAN_S, first[pid])
            changes.append({"pid": pid, "name": names[pid], "event": "started", "time_s": round(first[pid], 3),
                            "between_s": [round(t, 3) for t in between], "phase": phases_between(*between)})
        index = looks.index(last[pid])
        if last[pid] >= phases[0].start_s and index + 1 < len(looks) and looks[index + 1] <= end_s:
            between = (last[pid], looks[index + 1])
            changes.append({"pid": pid, "name": names[pid], "event": "ended", "time_s": round(last[pid], 3),
                            "between_s": [round(t, 3) for t in between], "phase": phases_between(*between)})
    return sorted(changes, key=lambda change: change["time_s"])


def not_measured(load: dict[str, Any], held: dict[str, Any] | None, held_count: int,
                 changes: list[dict[str, Any]] | None = None, daemon_phase: str | None = None) -> dict[str, str]:
    """The figures a phase did not drive, each with what was seen instead (result.json's
    ``not_measured``; the tables print "not measured" there): the held figures when the subject held
    none of its clients at the end of idle-held (``held``, the runner's account of it), when its process
    tree changed between the ends of idle-empty and idle-held (a difference of two trees is no
    connection's cost), or when the process measured changed then (a daemon followed after its starter
    exited in ``daemon_phase``); the load figures when the load phase answered no request. A subject
    that held some but not all of its clients has held figures: they divide by ``held_count``."""
    reasons: dict[str, str] = {}
    # Within these three phases the held figures' two ends (idle-empty's, idle-held's) are taken.
    spanning = [change for change in changes or ()
                if set(change["phase"].split(" or ")) & {IDLE_EMPTY, RAMP, IDLE_HELD}]
    if spanning:
        said = ", ".join(f"process {change['pid']} ({change['name']}) {change['event']} during {change['phase']}"
                         for change in spanning[:3])
        why = f"the process tree changed between the ends of {IDLE_EMPTY} and {IDLE_HELD}: {said}"
        reasons.update({key: why for key in HELD_FIGURES})
    if daemon_phase is not None:
        why = (f"the process measured changed in phase {daemon_phase} (its starter exited and left a daemon), "
               f"between the ends of {IDLE_EMPTY} and {IDLE_HELD}")
        reasons.update({key: why for key in HELD_FIGURES})
    if held is not None and not held_count:
        why = held.get("not_held") or f"it held none of its {held.get('asked')} clients at the end of {IDLE_HELD}"
        reasons.update({key: why for key in HELD_FIGURES})
    loaded = load.get(LOAD) or {}
    if loaded and not loaded.get("requests"):
        why = (f"the load phase answered no request: {loaded.get('connections_open', 0)} clients were open "
               f"during it ({loaded.get('connections_opened', 0)} opened, {loaded.get('connections_closed', 0)} "
               f"closed, {errors_text(loaded)})")
        reasons.update({key: why for key in LOAD_FIGURES})
    return reasons


def _tree_summary(process_rows: list[tuple], phases: list[Phase]) -> dict[str, Any]:
    """Per process, its memory at the last full sample of each phase (RSS, USS, PSS, RssAnon,
    RssFile, RssShmem; the last before the phase's end when none fell inside it), and the tree's
    totals: what ``processes.csv`` holds, at the phase ends."""
    by_phase: dict[str, dict[str, Any]] = {}
    for phase in phases:
        inside = [row for row in process_rows if phase.start_s <= row[0] <= phase.end_s]
        if not inside:  # a phase shorter than the full samples' period: the last sample before its end
            before = [row for row in process_rows if row[0] <= phase.end_s]
            inside = [row for row in before if row[0] == before[-1][0]] if before else []
        if not inside:
            continue
        last_time = {}
        for row in inside:
            last_time[row[1]] = row
        processes = [dict(zip(PROCESS_COLUMNS[1:], row[1:])) for row in last_time.values()]
        totals = {column: sum(p[column] for p in processes) for column in PROCESS_COLUMNS[4:]}
        by_phase[phase.name] = {"processes": processes, "total": totals}
    pids = sorted({row[1] for row in process_rows})
    return {"processes_seen": len(pids), "phase_end": by_phase}


def outcomes_text(reply: dict[str, Any]) -> str:
    """What a ramp's clients saw, as text: its connect errors and how its connections ended."""
    parts = [f"{kind} {count}" for kind, count in sorted((reply.get("errors") or {}).items())]
    parts += [f"{kind} {entry['count']}" for kind, entry in sorted((reply.get("ended") or {}).items())]
    return ", ".join(parts) or "no client saw anything"


def _ended_detail(entry: dict[str, Any]) -> str:
    """`` (after 1 request, 0.0-0.1 s after it)`` for an outcome with requests and idle times."""
    if "requests_min" not in entry:
        return ""
    low, high = entry["requests_min"], entry["requests_max"]
    requests = f"{low}" if low == high else f"{low}-{high}"
    idle = f"{entry['idle_s_min']:.1f}" if round(entry["idle_s_min"], 1) == round(entry["idle_s_max"], 1) \
        else f"{entry['idle_s_min']:.1f}-{entry['idle_s_max']:.1f}"
    since = "after it" if high else "after its connect"
    return f" (after {requests} response{'' if high == 1 else 's'}, {idle} s {since})"


def _fmt_row(row: tuple) -> tuple:
    return tuple("" if v is None else (f"{v:.6f}" if isinstance(v, float) else v) for v in row)


def run_once(config: RunConfig, progress: Progress | None = None) -> Path:
    """Run one layout under one probe and return its run folder (see :class:`Run`)."""
    return Run(config, progress).execute()
