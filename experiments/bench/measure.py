"""One bench run: every subject, trial by trial, each trial in a fresh server process.

A trial: start the subject pinned to the server CPU; read idle RSS (no connection yet); ramp held
keep-alive connections to each N in turn (experiments.loadgen, one request each) and read RSS with
them held; drain; check that no other process is busy; run the throughput tool against it while
counting its CPU seconds; stop it with SIGTERM and check it exited cleanly. Trials go round-robin
(trial 1 of every subject, then trial 2...) so a change in the machine's load spreads over all.

With ``--profile``, :func:`run_profiles` then runs every subject once more under cProfile
(:class:`ProfiledRun`): the same throughput run, nothing else, and :mod:`.profile` reads the stats.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..loadgen import LoadGeneratorError, LoadGeneratorProcess
from ..measure.procfs import ProcessGone, cpu_seconds, sample_memory, socket_count
from .launch import BenchServer, ServerError, pin_running
from .profile import ProfileError, category_rules, profile_dataset
from .quiet import MachineBusy, wait_for_quiet
from .subjects import Subject
from .throughput import LoadgenTool, ThroughputError, WrkTool

#: Seconds the server may take to see a drained client's close.
DRAIN_TIMEOUT_S = 15.0
MEMORY_SAMPLES = 5
MEMORY_SAMPLE_INTERVAL_S = 0.1
#: The ``index`` progress callbacks get for a profiled run (trials count from 1).
PROFILED_RUN = 0
#: Folder of the cProfile stats files, inside the bench's output folder.
PROFILES_DIR = "profiles"

Progress = Callable[[str, int, str], None]


def portable_command(command: Sequence[str], python: str) -> list[str]:
    """``command`` as the bench's files record it: the interpreter as ``python`` and paths below the
    working folder relative to it, so a committed bench.json names no path of the machine it ran on."""
    here = f"{Path.cwd()}{os.sep}"
    return ["python" if argument == python else argument.removeprefix(here) for argument in command]


@dataclass
class BenchPlan:
    """What a run measures. ``held``: connection counts held in turn; ``duration_s``: seconds of
    the throughput run with ``load_connections`` connections; ``settle_s``: seconds waited before
    each memory reading; ``cpu_check_s``: window of the busy-machine check."""

    trials: int = 3
    held: tuple[int, ...] = (1000, 5000)
    duration_s: int = 10
    load_connections: int = 50
    settle_s: float = 1.0
    cpu_check_s: float = 1.0
    strict: bool = False
    python: str = field(default=sys.executable)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["held"] = list(self.held)
        del values["python"]
        return values


def cpu_split() -> tuple[list[int] | None, list[int] | None]:
    """(server CPUs, client CPUs): the first and second CPU this process may use when there are
    two or more, else (None, None): nothing pinned, server and client share."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return [allowed[0]], [allowed[1]]


class TrialFailed(Exception):
    """A trial could not complete; what it measured so far is kept."""


class Trial:
    """One subject measured once; :meth:`run` returns the raw readings (their metrics:
    :mod:`experiments.dataset.bench_format`)."""

    def __init__(self, subject: Subject, index: int, plan: BenchPlan, tool: WrkTool | LoadgenTool,
                 log_dir: Path, progress: Progress) -> None:
        self.subject = subject
        self.index = index
        self.plan = plan
        self.tool = tool
        self.server_cpus, self.client_cpus = cpu_split()
        self.server = self._make_server(log_dir)
        self.progress = lambda phase: progress(subject.label, index, phase)
        self.record: dict[str, Any] = {"trial": index, "ok": False, "error": None}

    def _make_server(self, log_dir: Path) -> BenchServer:
        return BenchServer(self.subject, self.plan.python, log_dir / f"{self.subject.name}-{self.index}.log",
                           self.server_cpus)

    def run(self) -> dict[str, Any]:
        """The trial's readings; ``ok`` false and ``error`` set when it failed. Raises only
        :class:`MachineBusy` (``--strict``) and interrupts, after stopping the server."""
        record = self.record
        try:
            self._measure()
        except (ServerError, TrialFailed, ThroughputError, LoadGeneratorError, ProcessGone) as error:
            record["error"] = str(error)
        finally:
            try:
                if self.server.process is not None:
                    record["exit_code"] = self.server.stop()
            except ServerError as error:
                record["error"] = record["error"] or str(error)
        record["ok"] = record["error"] is None
        return record

    def _measure(self) -> None:
        plan, record, server = self.plan, self.record, self.server
        self.progress("starting")
        record["port"] = server.start()
        record.update(pid=server.pid, command=portable_command(server.command, self.plan.python),
                      pinning=server.pinning,
                      server_cpus=self.server_cpus, client_cpus=self.client_cpus)
        self.progress("idle")
        time.sleep(plan.settle_s)
        server.check_alive("the idle reading")
        idle_sockets = socket_count(server.pid)
        record["idle"] = {**sample_memory(server.pid, MEMORY_SAMPLES, MEMORY_SAMPLE_INTERVAL_S), "sockets": idle_sockets}
        self._hold_connections(idle_sockets)
        server.check_alive("the held readings")
        self.progress("quiet check")
        check = wait_for_quiet(plan.cpu_check_s, exclude=[server.pid], strict=plan.strict)
        record["quiet_check"] = check.to_dict()
        self._time_throughput()

    def _time_throughput(self) -> float:
        """Run the throughput tool against the server; record its result and the server's CPU
        seconds (user + system) over it. Returns the server's CPU seconds since its start."""
        plan, record, server = self.plan, self.record, self.server
        self.progress(f"throughput ({self.tool.name}, {plan.duration_s} s)")
        before = cpu_seconds(server.pid)
        result = self.tool.run(server.port, plan.load_connections, plan.duration_s, self.client_cpus)
        after = cpu_seconds(server.pid)
        server.check_alive("the throughput run")
        record["throughput"] = result.to_dict()
        record["cpu_s"] = round(after - before, 4)
        if not result.requests:
            raise TrialFailed(f"{self.subject.label}: no response during the throughput run ({result.errors})")
        return after

    def _hold_connections(self, idle_sockets: int) -> None:
        """Ramp to each held count in turn and read memory there; then drain and wait until the
        server has closed them all."""
        plan, server = self.plan, self.server
        held: dict[str, Any] = {}
        self.record["held"] = held
        generator = LoadGeneratorProcess(python=plan.python, max_lifetime_s=600)
        try:
            generator.start("127.0.0.1", server.port)
            if self.client_cpus:
                pin_running(generator.pid, self.client_cpus)
            opened = 0
            for target in sorted(plan.held):
                self.progress(f"holding {target:,}")
                reply = generator.command(f"ramp {target - opened}", 60 + (target - opened) / 20)
                if not reply.get("ok"):
                    raise TrialFailed(f"{self.subject.label}: load generator failed to ramp: {reply.get('error')}")
                opened = target
                if reply["connections_open"] != target or reply["errors"]:
                    raise TrialFailed(f"{self.subject.label}: holds {reply['connections_open']:,} of {target:,} "
                                      f"connections after the ramp (errors {reply['errors']})")
                time.sleep(plan.settle_s)
                server.check_alive(f"the ramp to {target:,}")
                held[str(target)] = {
                    **sample_memory(server.pid, MEMORY_SAMPLES, MEMORY_SAMPLE_INTERVAL_S),
                    "sockets": socket_count(server.pid) - idle_sockets,
                    "ramp_s": reply["elapsed_s"],
                }
            self.progress("draining")
            reply = generator.command("drain", 60)
            if not reply.get("ok"):
                raise TrialFailed(f"{self.subject.label}: load generator failed to drain: {reply.get('error')}")
        finally:
            generator.close()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while (left := socket_count(server.pid) - idle_sockets) > 0:
            if time.monotonic() > deadline:
                raise TrialFailed(f"{self.subject.label}: still holds {left} connections "
                                  f"{DRAIN_TIMEOUT_S:g} s after the clients closed")
            time.sleep(0.05)


class ProfiledRun(Trial):
    """One throughput run of a subject started under cProfile (``python -m cProfile -o FILE -m ...``,
    see :meth:`Subject.profiled_command`), pinned as the trials are. The profiler slows the server,
    so its req/s is not a throughput figure. :meth:`run` returns the record with ``profile`` (the
    :func:`.profile.profile_dataset`) or ``ok`` false and ``error`` saying why there is none."""

    def __init__(self, subject: Subject, plan: BenchPlan, tool: WrkTool | LoadgenTool, log_dir: Path,
                 stats_path: Path, progress: Progress) -> None:
        self.stats_path = stats_path
        super().__init__(subject, PROFILED_RUN, plan, tool, log_dir, progress)
        self.record = {"ok": False, "error": None}

    def _make_server(self, log_dir: Path) -> BenchServer:
        return BenchServer(self.subject, self.plan.python, log_dir / f"{self.subject.name}-profile.log",
                           self.server_cpus, profile_path=self.stats_path)

    def run(self) -> dict[str, Any]:
        self.stats_path.parent.mkdir(parents=True, exist_ok=True)
        self.stats_path.unlink(missing_ok=True)  # a file left by an earlier run must not pass for this one
        record = super().run()
        if record["ok"]:
            try:
                record["profile"] = profile_dataset(self.stats_path, record["throughput"]["requests"],
                                                    category_rules(self.subject))
            except ProfileError as error:
                record["ok"] = False
                record["error"] = (f"{error} after the server exited with code {record.get('exit_code')}; cProfile "
                                   f"writes it only when the server's main returns or raises SystemExit")
        return record

    def _measure(self) -> None:
        plan, record, server = self.plan, self.record, self.server
        # Checked before the start: a second of idling under the profiler would land in epoll.poll.
        self.progress("quiet check")
        record["quiet_check"] = wait_for_quiet(plan.cpu_check_s, exclude=[], strict=plan.strict).to_dict()
        self.progress("starting under cProfile")
        started = time.monotonic()
        record["port"] = server.start()
        record["startup_s"] = round(time.monotonic() - started, 3)
        record.update(pid=server.pid, command=portable_command(server.command, self.plan.python),
                      pinning=server.pinning,
                      server_cpus=self.server_cpus, client_cpus=self.client_cpus)
        record["process_cpu_s"] = round(self._time_throughput(), 4)


def run_profiles(subjects: Sequence[Subject], plan: BenchPlan, tool: WrkTool | LoadgenTool, out_dir: Path,
                 progress: Progress | None = None) -> dict[str, dict[str, Any]]:
    """One :class:`ProfiledRun` per subject: ``{subject name: record}``, each record with
    ``stats_file`` (relative to ``out_dir``: ``profiles/<name>.prof``). Logs go to ``out_dir/logs``.
    When ``--strict`` refuses to time, that subject and those after it get the refusal as ``error``."""
    progress = progress or (lambda label, index, phase: None)
    records: dict[str, dict[str, Any]] = {}
    refused: str | None = None
    for subject in subjects:
        stats_file = f"{PROFILES_DIR}/{subject.name}.prof"
        if refused is None:
            try:
                records[subject.name] = ProfiledRun(subject, plan, tool, out_dir / "logs", out_dir / stats_file,
                                                    progress).run()
            except MachineBusy as busy:
                refused = str(busy)
        if refused is not None:
            records[subject.name] = {"ok": False, "error": f"not profiled: {refused}"}
        records[subject.name]["stats_file"] = stats_file
    return records


def run_bench(subjects: Sequence[Subject], plan: BenchPlan, tool: WrkTool | LoadgenTool, log_dir: Path,
              progress: Progress | None = None) -> tuple[dict[str, list[dict[str, Any]]], str | None]:
    """Every trial of every subject, round-robin. Returns ``{subject name: [trial records]}`` and,
    when ``--strict`` refused to time, the reason (the trials done so far are kept)."""
    progress = progress or (lambda label, index, phase: None)
    trials: dict[str, list[dict[str, Any]]] = {subject.name: [] for subject in subjects}
    for index in range(1, plan.trials + 1):
        for subject in subjects:
            try:
                trials[subject.name].append(Trial(subject, index, plan, tool, log_dir, progress).run())
            except MachineBusy as busy:
                return trials, str(busy)
    return trials, None
