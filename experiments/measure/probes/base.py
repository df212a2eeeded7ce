"""What every probe is: the arguments it adds to the server, and what it reads back after the run.

Rules: a probe never touches the run folder's result.json; it returns a :class:`ProbeData` (series on
the run's clock, extra table figures, files it moved into the run folder, notes) and the runner
writes it. A probe's files left in the trace folder are read after the server exited, except the
phase-end dumps, which the runner asks for while it runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ...dataset.builder import ProbeData  # noqa: F401 (the probes' return type, built into result.json)

if TYPE_CHECKING:  # type-only: the scenario imports nothing of the probes
    from ..scenario import RunConfig

#: What the server writes about its table in the trace folder (every probe, ``rss`` included).
TABLE_FILE = "table.json"


class ProbeFailed(Exception):
    """The probe could not do its part (a phase-end dump did not appear): the run fails with this line."""


class Probe:
    """Base: a probe adds server arguments before the run and reads its files after."""

    name: str
    note: str
    #: Seconds the server may take to come up (tracing a naive table takes long).
    startup_timeout_s = 60.0

    #: Which subjects the probe can measure: ``"any"`` (any program, from outside or by wrapping its
    #: command), ``"python"`` (memdiet's server, or a Python program it is injected into at interpreter
    #: start). The runner refuses (exit 2) a subject the probe cannot measure.
    subjects = "any"

    def server_args(self, trace_dir: Path, hz: float, detail_interval_s: float) -> list[str]:
        """Arguments added to memdiet's own server (``python -m server``): its in-server tracing."""
        return ["--trace-dir", str(trace_dir)]

    def wrap(self, argv: list[str], env: dict[str, str], trace_dir: Path, config: RunConfig,
             in_server: bool) -> tuple[list[str], dict[str, str]]:
        """The command and environment that start the subject under this probe. ``argv`` and ``env``
        are the subject's own (for memdiet's server, :meth:`server_args` already added, and
        ``in_server`` true); the default leaves them as they are. A probe that injects itself (a
        bootstrap on PYTHONPATH) or wraps the command (``valgrind ... argv``) returns the new pair."""
        return argv, env

    def time_stretch(self, config: RunConfig) -> float:
        """How many times longer each timed phase (the three idle phases, load) lasts under this
        probe, and the timeouts of the others, because the probe slows the subject that much
        (valgrind: tens of times). 1 for the tracers, whose cost the run measures instead."""
        return 1.0

    def ready(self, trace_dir: Path, pids: Sequence[int]) -> bool:
        """True once the probe is settled in the subject (``pids``: its processes); the runner starts
        the first phase only then. The default: as soon as the subject listens."""
        return True

    def phase_end(self, index: int, phase: str, pids: Sequence[int], trace_dir: Path,
                  check: Callable[[], None]) -> bool:
        """Called at the end of each phase with the subject's processes (``pids``, the first its
        root): a probe that can take a full snapshot then does so, waits until it is written and
        returns True (the runner records ``phase`` as dump ``index``). ``check()`` raises when the
        subject died meanwhile. The default takes none."""
        return False

    def collect(self, trace_dir: Path, run_dir: Path, t0: float, wall_t0: float, dumps: Sequence[str]) -> ProbeData:
        """Read what the server left in ``trace_dir``. ``t0`` is the server's start on the monotonic
        clock, ``wall_t0`` on the wall clock; ``dumps`` names the phase of each snapshot dump."""
        return ProbeData(table=read_table(trace_dir))


def read_table(trace_dir: Path) -> dict[str, Any]:
    """What the server wrote about its table (``table_heap_bytes``, ``c_bytes_per_slot``,
    ``usable_slots``...); empty when it wrote nothing (yet)."""
    try:
        return json.loads((trace_dir / TABLE_FILE).read_text())
    except (OSError, ValueError):
        return {}
