"""What every probe is: the arguments it adds to the server, and what it reads back after the run.

Rules: a probe never touches the run folder's result.json; it returns a :class:`ProbeData` (series on
the run's clock, extra table figures, files it moved into the run folder, notes) and the runner
writes it. A probe's files left in the trace folder are read after the server exited, except the
phase-end dumps, which the runner asks for while it runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

#: What the server writes about its table in the trace folder (every probe, ``rss`` included).
TABLE_FILE = "table.json"


@dataclass
class ProbeData:
    """What a probe contributes to the run folder, on the run's clock (seconds since server start)."""

    heap_rows: list[tuple[float, int, int | None, int | None]] = field(default_factory=list)
    site_rows: list[tuple[float, str, int, int]] = field(default_factory=list)
    table: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: The live heap at the end of each phase, bytes by phase name: the server's allocations in the
    #: phase-end dump (taken after a full collection), the probe's own left out.
    phase_end_heap: dict[str, int] = field(default_factory=dict)


class Probe:
    """Base: a probe adds server arguments before the run and reads its files after."""

    name: str
    note: str
    #: True when the runner must ask for a full snapshot dump (SIGUSR1) at the end of each phase.
    dumps_at_phase_end = False
    #: Seconds the server may take to come up (tracing a naive table takes long).
    startup_timeout_s = 60.0
    #: A file the server's tracer writes in the trace folder when it is settled; the runner starts
    #: the first phase only then (None: ready as soon as the server listens).
    ready_file: str | None = None

    def server_args(self, trace_dir: Path, hz: float, detail_interval_s: float) -> list[str]:
        return ["--trace-dir", str(trace_dir)]

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
