"""Probes: how a run measures the server.

Every run samples the server's RSS, USS and PSS from outside (:mod:`.sampler`). The probe chosen for
the run adds what is measured from inside, one module each:

- :mod:`.rss`: nothing inside; the server runs untouched, so its RSS and req/s are the clean figures;
- :mod:`.tracemalloc`: the server traces its allocations (``server/tracing.py``): heap totals at a
  fixed rate, detailed per-site snapshots, full snapshot dumps at the end of each phase;
- :mod:`.allocators`: nothing traced; each Python process's allocators' figures at the phase ends, for
  the RSS ledger of an untraced run;
- :mod:`.memray`: the server runs under ``memray.Tracker``; the capture is read back into the same
  heap and per-site series, and memray's flame graph is rendered next to the results.

:mod:`.base` says what a probe is (:class:`Probe`, :class:`ProbeData`); :mod:`.sites` labels
allocation sites alike for every probe. Each probe says what it traces and what it costs
(:attr:`Probe.note`); the matrix adds the measured slowdown against the ``rss`` run of the same
layout. :data:`PROBES` is the registry the runner and the command line choose from.
"""

from __future__ import annotations

from .allocators import AllocatorsProbe
from .base import Probe, ProbeData, ProbeFailed, read_table
from .massif import MassifProbe
from .memray import MemrayProbe
from .rss import RssProbe
from .sampler import FULL_INFO_EVERY, RssSampler
from .sites import TOP_SITES, function_at, short_path, site_label
from .tracemalloc import TracemallocProbe

#: Every probe by name, in the order a matrix runs them.
PROBES: dict[str, Probe] = {probe.name: probe for probe in (RssProbe(), TracemallocProbe(), MemrayProbe(), MassifProbe(),
                                                              AllocatorsProbe())}

__all__ = ["PROBES", "Probe", "ProbeData", "ProbeFailed", "read_table", "AllocatorsProbe", "RssProbe", "TracemallocProbe", "MemrayProbe",
           "RssSampler", "FULL_INFO_EVERY", "TOP_SITES", "site_label", "function_at", "short_path"]
