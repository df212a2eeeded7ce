"""The scenario's parameters, in one place: what one run is given, the full and quick studies, the
probes each study runs and where runs and reports go.

Rules: every default is written once. :class:`RunConfig`'s defaults are ``memdiet run``'s and, but
for the traceback depth, the full study's (:data:`FULL`); :data:`QUICK` states only what it changes
from :data:`FULL`. The phases a run goes through are named
by the result files they end up in (:data:`experiments.dataset.results.PHASES`, re-exported here);
the folders by :mod:`experiments.paths`.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..dataset.results import PHASES
from ..paths import DEFAULT_LATEST_DIR, DEFAULT_RUNS_DIR, QUICK_LATEST_DIR


@dataclass
class RunConfig:
    """Parameters of one run. Times in seconds; ``sample_hz`` in samples per second. The defaults
    are the full study's (Lwan's scale: 65,536 slots, 1,000 clients).

    ``subject`` names what is run (:mod:`.subjects`): one of memdiet's layouts, a named peer
    (``uvicorn``, ``aiohttp``, ``asyncio``, ``nginx``), or, with ``cmd`` (a command line run without
    a shell), the name that command's runs are filed under. ``max_conns`` and
    ``keep_alive_timeout_s`` apply to memdiet's server only."""

    subject: str
    probe: str
    cmd: str | None = None
    max_conns: int = 65536
    connections: int = 1000
    idle_s: float = 2.0
    load_s: float = 3.0
    sample_hz: float = 50.0
    detail_interval_s: float = 2.0
    #: Frames the tracemalloc probe keeps per traceback (``tracemalloc.start(N)``): the phase-end dumps'
    #: call stacks, which the massif.out trees nest. Its cost is the probe's note (docs/runs.md, "What a probe costs").
    trace_frames: int = 8
    path: str = "/"
    keep_alive_timeout_s: float = 600.0
    #: Seconds the subject may take to listen (and the probe to settle); None: the probe's own default.
    start_timeout_s: float | None = None
    #: Heap graphs at the ends of idle-empty and idle-held, analysed into owners.json (docs/owners.md):
    #: tracemalloc runs only, off by default (a graph at 65,536 slots takes seconds and the forked
    #: copy's memory; off, nothing of it is loaded in the subject).
    heap_graph: bool = False
    runs_dir: Path = field(default=DEFAULT_RUNS_DIR)
    python: str = field(default=sys.executable)

    def parameters(self) -> dict[str, Any]:
        values = asdict(self)
        values["runs_dir"] = str(self.runs_dir)
        del values["python"]
        return values


#: ``make experiment``: the full study, every default but one, about 10 minutes on 2 cores. A matrix
#: sets the subject and probe of each run. Its tracemalloc runs keep 1 frame, not ``memdiet run``'s 8:
#: 8 frames cost 7.0x the CPU per request of 1 on nofd (766 against 110 us, median of 5 quick runs
#: each; tracemalloc looks up each kept frame's line in its function's whole line table, and the loop
#: and the coroutine are long functions), which would turn the study's probe-cost figures into a
#: measure of traceback depth. The memray runs carry whole stacks, at no such cost.
FULL = RunConfig(subject="", probe="", trace_frames=1)
#: ``memdiet run``: one run at RunConfig's own defaults (the full study's scale, 8 frames per traceback).
RUN = RunConfig(subject="", probe="")
#: ``make experiment QUICK=1``: the same scenario, smaller and shorter, well under a minute.
QUICK = replace(FULL, max_conns=8192, connections=100, idle_s=0.5, load_s=1.0, detail_interval_s=0.25)
#: The probes each study runs every layout under (memray is left out of the quick one: it is slow).
FULL_PROBES = ("rss", "tracemalloc", "memray")
QUICK_PROBES = ("rss", "tracemalloc")

__all__ = ["RunConfig", "FULL", "RUN", "QUICK", "FULL_PROBES", "QUICK_PROBES", "PHASES", "DEFAULT_RUNS_DIR",
           "DEFAULT_LATEST_DIR", "QUICK_LATEST_DIR"]
