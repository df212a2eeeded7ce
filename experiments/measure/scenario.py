"""The scenario's parameters, in one place: what one run is given, the full and quick studies, the
probes each study runs and where runs and reports go.

Rules: every default is written once. :class:`RunConfig`'s defaults *are* the full study
(:data:`FULL`); :data:`QUICK` states only what it changes. The phases a run goes through are named
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
    are the full study's (Lwan's scale: 65,536 slots, 1,000 clients)."""

    layout: str
    probe: str
    max_conns: int = 65536
    connections: int = 1000
    idle_s: float = 2.0
    load_s: float = 3.0
    sample_hz: float = 50.0
    detail_interval_s: float = 2.0
    path: str = "/"
    keep_alive_timeout_s: float = 600.0
    runs_dir: Path = field(default=DEFAULT_RUNS_DIR)
    python: str = field(default=sys.executable)

    def parameters(self) -> dict[str, Any]:
        values = asdict(self)
        values["runs_dir"] = str(self.runs_dir)
        del values["python"]
        return values


#: ``make experiment``: the full study, every default, about 3-4 minutes on 2 cores. A matrix sets
#: the layout and probe of each run.
FULL = RunConfig(layout="", probe="")
#: ``make experiment QUICK=1``: the same scenario, smaller and shorter, well under a minute.
QUICK = replace(FULL, max_conns=8192, connections=100, idle_s=0.5, load_s=1.0, detail_interval_s=0.25)
#: The probes each study runs every layout under (memray is left out of the quick one: it is slow).
FULL_PROBES = ("rss", "tracemalloc", "memray")
QUICK_PROBES = ("rss", "tracemalloc")

__all__ = ["RunConfig", "FULL", "QUICK", "FULL_PROBES", "QUICK_PROBES", "PHASES", "DEFAULT_RUNS_DIR",
           "DEFAULT_LATEST_DIR", "QUICK_LATEST_DIR"]
