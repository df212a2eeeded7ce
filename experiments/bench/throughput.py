"""Keep-alive throughput of a listening server: wrk when it is on PATH, else experiments.loadgen.

Both hold ``connections`` keep-alive connections, one request outstanding on each (no pipelining),
for ``duration_s`` seconds, from one thread pinned to the client CPUs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Sequence

from ..loadgen import LoadGeneratorError, LoadGeneratorProcess
from .launch import pin_command, pin_running
from ..errors import ExperimentError

WRK_INSTALL_HINT = "wrk is not on PATH, so experiments.loadgen measured throughput; for wrk: sudo apt-get install wrk"
#: Seconds beyond the duration a tool may take before it is stopped.
TOOL_GRACE_S = 60.0
_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


class ThroughputError(ExperimentError):
    """The tool failed or its output could not be read."""


@dataclass
class ThroughputResult:
    """What one throughput run measured: responses received, over ``elapsed_s`` seconds; errors by
    kind; latency percentiles in milliseconds (None when the tool did not say)."""

    tool: str
    requests: int
    elapsed_s: float
    req_per_s: float
    errors: dict[str, int] = field(default_factory=dict)
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    command: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ThroughputError(f"unreadable wrk time {text!r}")
    return float(match[1]) * _TIME_UNITS[match[2]]


def parse_wrk(output: str) -> dict:
    """``requests``, ``elapsed_s``, ``req_per_s``, ``errors`` (socket errors by kind and
    ``non_2xx_3xx``, zero counts left out) and ``latency_p50_ms``/``latency_p99_ms`` (with
    ``--latency``) from wrk's text output."""
    total = re.search(r"^\s*(\d+) requests in ([\d.]+\w+),", output, re.M)
    rate = re.search(r"^Requests/sec:\s*([\d.]+)", output, re.M)
    if not total or not rate:
        raise ThroughputError(f"wrk printed no results: {output.strip()[-300:]!r}")
    errors = {}
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors.update(zip(("connect", "read", "write", "timeout"), map(int, socket_errors.groups())))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors["non_2xx_3xx"] = int(non_2xx[1])
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+\w+)\s*$", output, re.M))
    return {
        "requests": int(total[1]),
        "elapsed_s": _milliseconds(total[2]) / 1000,
        "req_per_s": float(rate[1]),
        "errors": {kind: count for kind, count in errors.items() if count},
        "latency_p50_ms": _milliseconds(percentiles["50"]) if "50" in percentiles else None,
        "latency_p99_ms": _milliseconds(percentiles["99"]) if "99" in percentiles else None,
    }


class WrkTool:
    """``wrk -t1 -cC -dDs --latency`` against the server's ``/``."""

    name = "wrk"

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def version(self) -> str:
        result = subprocess.run([self.executable, "-v"], capture_output=True, text=True, timeout=10)
        text = (result.stdout + result.stderr).strip()
        return text.splitlines()[0].split(" Copyright")[0] if text else "?"

    def run(self, port: int, connections: int, duration_s: int, cpus: Sequence[int] | None) -> ThroughputResult:
        command = [self.executable, "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "10s",
                   f"http://127.0.0.1:{port}/"]
        command, pinning = pin_command(command, cpus)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if pinning == "sched_setaffinity":
            pin_running(process.pid, cpus)
        try:
            output, errors = process.communicate(timeout=duration_s + TOOL_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise ThroughputError(f"wrk did not finish within {duration_s + TOOL_GRACE_S:g} s") from None
        except BaseException:  # interrupted: never leave wrk running
            process.kill()
            process.communicate()
            raise
        if process.returncode != 0:
            raise ThroughputError(f"wrk exited with {process.returncode}: {errors.strip()[-300:]}")
        return ThroughputResult(tool=self.name, command=command, **parse_wrk(output))


class LoadgenTool:
    """experiments.loadgen in its own process: ramp C connections, load D seconds, drain."""

    name = "loadgen"

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    def version(self) -> str:
        return "experiments.loadgen (this repository)"

    def run(self, port: int, connections: int, duration_s: int, cpus: Sequence[int] | None) -> ThroughputResult:
        generator = LoadGeneratorProcess(python=self.python, max_lifetime_s=duration_s + 2 * TOOL_GRACE_S)
        try:
            ready = generator.start("127.0.0.1", port)
            if cpus:
                pin_running(generator.pid, cpus)
            replies = {}
            for phase, line, timeout in (("ramp", f"ramp {connections}", TOOL_GRACE_S),
                                         ("load", f"load {duration_s}", duration_s + TOOL_GRACE_S),
                                         ("drain", "drain", TOOL_GRACE_S)):
                replies[phase] = generator.command(line, timeout)
                if not replies[phase].get("ok"):
                    raise ThroughputError(f"load generator failed to {phase}: {replies[phase].get('error')}")
        except LoadGeneratorError as error:
            raise ThroughputError(str(error)) from None
        finally:
            generator.close()
        load = replies["load"]
        errors: dict[str, int] = {}
        for reply in replies.values():
            for kind, count in reply.get("errors", {}).items():
                errors[kind] = errors.get(kind, 0) + count
        return ThroughputResult(
            tool=self.name, requests=load["requests"], elapsed_s=load["elapsed_s"], req_per_s=load["req_per_s"],
            errors=errors, latency_p50_ms=load.get("latency_p50_ms"), latency_p99_ms=load.get("latency_p99_ms"),
            command=[self.python, "-m", "experiments.loadgen", "--commands", f"(ramp {connections}, load {duration_s}, "
                     f"{ready.get('event_loop', '?')} event loop)"],
        )


def choose_tool(requested: str, python: str = sys.executable) -> tuple[WrkTool | LoadgenTool, str | None]:
    """The tool for ``requested`` (``auto``, ``wrk`` or ``loadgen``) and a note when ``auto`` had to
    fall back to the load generator. Raises :class:`ThroughputError` for ``wrk`` without wrk."""
    executable = shutil.which("wrk")
    if requested == "loadgen":
        return LoadgenTool(python), None
    if executable:
        return WrkTool(executable), None
    if requested == "wrk":
        raise ThroughputError("--tool wrk: wrk is not on PATH (install it with: sudo apt-get install wrk)")
    return LoadgenTool(python), WRK_INSTALL_HINT
