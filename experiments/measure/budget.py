"""Will a run fit in this machine's memory? An estimate made before starting anything.

The server preallocates ``max_conns`` slots, so its memory is known before it starts: the layout's
bytes per slot (derived from the layout classes by :func:`experiments.measure.anatomy.slot_anatomy`, which
the tests check against tracemalloc) times ``max_conns``, times what the probe adds, plus the
interpreter and the connections. naive at the largest ``--max-conns`` (16,777,216) asks for about
100 GB; a run like that would only make the machine swap or the kernel kill it, so the CLI refuses
it up front (:func:`memory_problem`) against ``MemAvailable`` from /proc/meminfo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .anatomy import slot_anatomy
from .procfs import meminfo_bytes
from .scenario import RunConfig

#: Peak RSS of a run over its table's bytes (slot_anatomy total x max_conns), per probe, rounded
#: up. Measured on naive, max_conns 65,536, C = 100, CPython 3.11.7: 1.05 (rss), 1.58 (tracemalloc:
#: its traces, and the full snapshot dumped at each phase end), 1.08 (memray); the command was
#: ``memdiet run --layout naive --probe P --max-conns 65536 --connections 100 --idle 0.5 --load 0.5``.
PEAK_RSS_PER_TABLE_BYTE = {"rss": 1.1, "tracemalloc": 1.7, "memray": 1.15}
#: The interpreter, the server's modules and the sampler before any table: packed's whole idle RSS
#: at 65,536 slots is 16.7 MiB (reports/latest/index.md), doubled for margin.
BASE_BYTES = 32 * 2**20
#: Per client connection, both ends: the server measured at most 1.1 KiB per active connection
#: (naive's rss_bytes_per_active_connection, reports/latest/index.md); the rest is margin for the
#: load generator's end of each connection, which is not measured.
BYTES_PER_CONNECTION = 4 * 2**10


def estimated_peak_bytes(config: RunConfig) -> int:
    """The highest RSS ``config``'s run is expected to reach, in bytes (an estimate, see the
    constants above)."""
    table_bytes = slot_anatomy(config.subject).total * config.max_conns
    factor = PEAK_RSS_PER_TABLE_BYTE.get(config.probe, max(PEAK_RSS_PER_TABLE_BYTE.values()))
    return int(BASE_BYTES + table_bytes * factor + config.connections * BYTES_PER_CONNECTION)


def available_memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """``MemAvailable`` (what can be allocated without swapping), in bytes; None when unknown."""
    return meminfo_bytes("MemAvailable", meminfo)


def memory_problem(configs: Iterable[RunConfig], available_bytes: int | None = None) -> str | None:
    """One line saying why the largest of ``configs`` (runs are made one after another) would not
    fit in ``available_bytes`` (default: :func:`available_memory_bytes`), or None when it fits or
    the machine does not say what is available."""
    available = available_memory_bytes() if available_bytes is None else available_bytes
    configs = list(configs)
    if available is None or not configs:
        return None
    largest = max(configs, key=estimated_peak_bytes)
    needed = estimated_peak_bytes(largest)
    if needed <= available:
        return None
    return (f"{largest.subject}/{largest.probe} with --max-conns {largest.max_conns:,} would need about "
            f"{needed / 2**30:,.1f} GiB, more than the {available / 2**30:,.1f} GiB this machine has available; "
            "give a smaller --max-conns")


__all__ = ["estimated_peak_bytes", "available_memory_bytes", "memory_problem"]
