"""Run one layout under one probe through the scenario, and write its run folder.

Scenario, each phase's start and end recorded on the run's clock (seconds since the server started):
``idle-empty`` (no clients, T s), ``ramp`` (C clients connect, one request each), ``idle-held`` (C
keep-alive connections, no traffic, T s), ``load`` (the C connections send keep-alive requests as fast
as they are answered, D s), ``drain`` (all clients close), ``idle-after`` (T s). Then the server is
stopped with SIGTERM.

The load generator runs in its own process (experiments.loadgen). The run folder's result.json is
written with status ``running`` first and rewritten at the end; an interrupted or failed run is marked
``incomplete`` with the reason, and keeps the series recorded so far. Earlier runs are never touched.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

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
from ..errors import ExperimentError
from ..loadgen import LoadGeneratorProcess
from ..paths import REPO_ROOT
from . import environment
from .probes import PROBES, Probe, RssSampler, read_table
from .process import FirstLine, LaunchedProcess, NotReady, ProcessError
from .procfs import ProcessGone, cpu_seconds
from .scenario import DEFAULT_RUNS_DIR, RunConfig  # noqa: F401  (DEFAULT_RUNS_DIR: importable here too)

#: Seconds the server may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 60.0


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
            raise ValueError(f"unknown probe {config.probe!r}; choose one of {', '.join(PROBES)}")
        self.config = config
        self.probe: Probe = PROBES[config.probe]
        self.progress = progress or (lambda message: None)
        self.run_dir = _new_run_dir(config)
        self.trace_dir = self.run_dir / "raw"
        self.phases: list[Phase] = []
        self.load_results: dict[str, Any] = {}
        #: Server CPU seconds by phase (only ``load``), as :meth:`_server_cpu_s` splits them.
        self.server_cpu_s: dict[str, dict[str, float]] = {}
        self.dumps: list[str] = []
        self.phase = "start"
        self.server: LaunchedProcess | None = None
        self.sampler: RssSampler | None = None
        self.loadgen: LoadGeneratorProcess | None = None
        self.t0 = 0.0
        self.wall_t0 = 0.0
        self.document: dict[str, Any] = {
            "schema": SCHEMA,
            "status": "running",
            "error": None,
            "layout": config.layout,
            "probe": config.probe,
            "parameters": config.parameters(),
            "phases": [],
            "summary": {},
            "load": {},
            "probe_info": {"name": self.probe.name, "note": self.probe.note, "notes": []},
            "environment": environment.describe(),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": {"rss": RSS_FILE, "server_log": "server.log"},
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
            self._phase(IDLE_EMPTY, lambda: self._idle(config.idle_s))
            self.loadgen = LoadGeneratorProcess(python=config.python)
            self.loadgen.start("127.0.0.1", self.port, path=config.path)
            self._phase(RAMP, self._ramp)
            self._phase(IDLE_HELD, lambda: self._idle(config.idle_s))
            self._phase(LOAD, self._load)
            self._phase(DRAIN, lambda: self._load_command(DRAIN, "drain", 60))
            self._phase(IDLE_AFTER, lambda: self._idle(config.idle_s))
            self.phase = "stop"
            self._stop_server(expect_running=True)
        except (RunFailed, Interrupted, KeyboardInterrupt, Exception) as caught:
            error = caught
        finally:
            self._teardown()
            self._write(error)
        if error is not None:
            if isinstance(error, (RunFailed, Interrupted, KeyboardInterrupt)):
                raise error
            raise RunFailed(f"{self.config.layout}/{self.config.probe} failed in phase {self.phase}: {error!r}") from error
        return self.run_dir

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _phase(self, name: str, action: Callable[[], None]) -> None:
        self.phase = name
        self.progress(name)
        start = self._now()
        action()
        self._check_server()
        end = self._now()
        self.phases.append(Phase(name, start, end))
        if self.probe.dumps_at_phase_end:
            self._dump_snapshot(name)

    def _idle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._check_server()
            time.sleep(min(left, 0.1))

    def _ramp(self) -> None:
        """Open the C clients; fail when the server did not keep them all: every figure per held
        connection divides by C."""
        connections = self.config.connections
        self._load_command(RAMP, f"ramp {connections}", 60 + connections / 20)
        held = self.load_results[RAMP].get("connections_open", connections)
        if held < connections:
            raise RunFailed(f"{self.config.layout}: only {held} of {connections} clients were held after phase "
                            f"{self.phase} ({errors_text(self.load_results[RAMP])})")

    def _load(self) -> None:
        """The load phase, with the server's CPU time over it (user + system, read from outside
        in /proc): CPU per request is what a probe costs the server, which req/s can hide
        when the load generator is the bottleneck."""
        before = self._server_cpu_s()
        self._load_command(LOAD, f"load {self.config.load_s}", self.config.load_s + 60)
        after = self._server_cpu_s()
        self.server_cpu_s[LOAD] = {key: round(after[key] - before[key], 6) for key in before if key in after}

    def _server_cpu_s(self) -> dict[str, float]:
        """CPU seconds (user + system) the server has used so far: ``process`` (every thread, the
        probe's own included) and ``main_thread`` (the thread that serves)."""
        assert self.server is not None
        pid = self.server.pid
        try:
            return {"process": cpu_seconds(pid), "main_thread": cpu_seconds(pid, thread=pid)}
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
        config = self.config
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        command = [
            config.python, "-m", "server", "--layout", config.layout, "--host", "127.0.0.1", "--port", "0",
            "--max-conns", str(config.max_conns), "--keep-alive-timeout", str(config.keep_alive_timeout_s),
            *self.probe.server_args(self.trace_dir, config.sample_hz, config.detail_interval_s),
        ]
        self.document["server_command"] = command
        self.server = LaunchedProcess(command, cwd=REPO_ROOT, log_path=self.run_dir / "server.log",
                                      readiness=FirstLine(), name="server")
        self.wall_t0 = time.time()
        self.t0 = time.monotonic()
        self.server.start()
        # Sampled from the start on, before it listens: the start-up is part of the RSS series.
        self.sampler = RssSampler(self.server.pid, config.sample_hz)
        self.sampler.start()
        try:
            self.port = self.server.wait_ready(self.probe.startup_timeout_s).port
        except NotReady as error:
            self._check_server()
            raise RunFailed(f"{config.layout}: {error}") from None
        if self.probe.ready_file:
            ready = self.trace_dir / self.probe.ready_file
            deadline = time.monotonic() + self.probe.startup_timeout_s
            while not ready.exists():
                self._check_server()
                if time.monotonic() > deadline:
                    raise RunFailed(f"{config.layout}: the {self.probe.name} probe was not ready within {self.probe.startup_timeout_s:.0f} s")
                time.sleep(0.02)
        self._refuse_unholdable_clients()

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
        if self.server is not None and self.server.poll() is not None:
            raise RunFailed(
                f"server ({self.config.layout}, probe {self.config.probe}) died during phase {self.phase} "
                f"with exit code {self.server.returncode}; see {self.run_dir / 'server.log'}"
            )

    def _dump_snapshot(self, phase: str) -> None:
        """Ask the server for a full tracemalloc dump and wait until it is written."""
        assert self.server is not None
        index = len(self.dumps)
        target = self.trace_dir / "snapshots" / f"{index:03d}.tmsnap"
        self.server.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 120
        while not target.exists():
            self._check_server()
            if time.monotonic() > deadline:
                raise RunFailed(f"{self.config.layout}: snapshot dump after {phase} did not appear within 120 s")
            time.sleep(0.02)
        self.dumps.append(phase)

    def _stop_server(self, expect_running: bool) -> None:
        server = self.server
        if server is None or server.poll() is not None:
            if expect_running:
                self._check_server()
            return
        try:
            returncode = server.stop(STOP_TIMEOUT_S)
        except ProcessError as error:
            raise RunFailed(f"{self.config.layout}: {error}") from None
        if expect_running and returncode != 0:
            raise RunFailed(f"{self.config.layout}: server exited with code {returncode} on SIGTERM")

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

    # --- the run folder ----------------------------------------------------------------------
    def _write(self, error: BaseException | None) -> None:
        document = self.document
        rss_rows = [(t - self.t0, rss, uss, pss) for t, rss, uss, pss in (self.sampler.rows if self.sampler else [])]
        write_csv(self.run_dir / RSS_FILE, RSS_COLUMNS, (_fmt_row(row) for row in rss_rows))
        notes = document["probe_info"]["notes"]
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
        rss_series = Series({c: [r[i] for r in rss_rows] for i, c in enumerate(RSS_COLUMNS)})
        document["phases"] = [asdict(p) for p in self.phases]
        document["load"] = self.load_results
        document["server_cpu_s"] = self.server_cpu_s
        document["summary"] = summarize(
            self.phases, rss_series, heap_series, self.load_results, document["parameters"],
            probe_data.table if probe_data else None, server_cpu_s=self.server_cpu_s,
            phase_end_heap=probe_data.phase_end_heap if probe_data else None,
        )
        document["warnings"] = client_warnings(self.load_results, self.config.connections)
        document["finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        completed = error is None and [p.name for p in self.phases] == list(PHASES)
        document["status"] = "complete" if completed else "incomplete"
        if error is not None:
            document["error"] = str(error) or type(error).__name__
        write_json(self.run_dir / RESULT_FILE, document)


def _fmt_row(row: tuple) -> tuple:
    return tuple("" if v is None else (f"{v:.6f}" if isinstance(v, float) else v) for v in row)


def run_once(config: RunConfig, progress: Progress | None = None) -> Path:
    """Run one layout under one probe and return its run folder (see :class:`Run`)."""
    return Run(config, progress).execute()
