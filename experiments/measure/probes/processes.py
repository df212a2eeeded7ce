"""What several traced processes add up to, and where the bytes of the held connections go.

A Python program with workers (gunicorn's forked ones, uvicorn's spawned ones) has one tracemalloc
or memray series per process. The run keeps each (``processes/pid-PID/``) and shows their sum as its
heap: each process's total taken as a step (its last sample holds until its next one; 0 before it
began and after it ended), summed at every time any process sampled. Sites of the run's own
``sites.csv`` are the phase-end dumps', summed by site over the processes (their detailed snapshots
come at different times, so they stay in each process's own file).

Rules: data only, no files; the runner writes what these return.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ...dataset.results import IDLE_EMPTY, IDLE_HELD, OTHER_SITE, PROBE_SITE
from .base import ProbeData
from .sites import TOP_SITES

#: Sites listed one by one in the held-connection table; the rest are summed into ``(other)``.
HELD_TOP_SITES = 25


def merge_processes(data: ProbeData, each: Mapping[str, ProbeData], info: Sequence[dict[str, Any]]) -> None:
    """Fill ``data`` (the run's) with the sum of ``each`` process's series; keep each in
    ``data.processes``."""
    data.processes = dict(each)
    data.process_info = list(info)
    data.heap_rows = summed_steps([process.heap_rows for process in each.values()])
    phases = sorted({phase for process in each.values() for phase in process.phase_end_sites},
                    key=lambda phase: min(_dump_time(process, phase) for process in each.values()
                                          if phase in process.phase_end_sites))
    for phase in phases:
        present = [process for process in each.values() if phase in process.phase_end_sites]
        when = max(_dump_time(process, phase) for process in present)
        summed = _sum_sites(process.phase_end_sites[phase] for process in present)
        data.phase_end_sites[phase] = summed
        data.phase_end_heap[phase] = sum(process.phase_end_heap.get(phase, 0) for process in present)
        ranked = sorted(((site, size, count) for site, (size, count) in summed.items() if site != PROBE_SITE),
                        key=lambda row: -row[1])
        rows = ranked[:TOP_SITES]
        if ranked[TOP_SITES:]:
            rows.append((OTHER_SITE, sum(r[1] for r in ranked[TOP_SITES:]), sum(r[2] for r in ranked[TOP_SITES:])))
        if PROBE_SITE in summed:
            rows.append((PROBE_SITE, *summed[PROBE_SITE]))
        data.site_rows.extend((when, site, size, count) for site, size, count in rows)
    data.files["snapshots"] = [path for process in each.values() for path in process.files.get("snapshots", [])]
    data.files["snapshot_times_s"] = {path: when for process in each.values()
                                      for path, when in process.files.get("snapshot_times_s", {}).items()}


def held_connection_sites(processes: Sequence[ProbeData], before: str = IDLE_EMPTY,
                          after: str = IDLE_HELD) -> dict[str, Any] | None:
    """Bytes and blocks per site live at the end of ``after`` less those at the end of ``before``,
    summed over the processes: what holding the clients costs, by the line that allocated it. The
    probe's own lines are left out. None when a process lacks either dump. Sites sorted by bytes,
    largest first; the top :data:`HELD_TOP_SITES` listed, the rest summed as ``(other)``."""
    if not processes or any(before not in p.phase_end_sites or after not in p.phase_end_sites for p in processes):
        return None
    start = _sum_sites(p.phase_end_sites[before] for p in processes)
    end = _sum_sites(p.phase_end_sites[after] for p in processes)
    changes = []
    for site in start.keys() | end.keys():
        if site == PROBE_SITE:
            continue
        size = end.get(site, (0, 0))[0] - start.get(site, (0, 0))[0]
        count = end.get(site, (0, 0))[1] - start.get(site, (0, 0))[1]
        if size or count:
            changes.append((site, size, count))
    changes.sort(key=lambda change: (-change[1], change[0]))
    listed, rest = changes[:HELD_TOP_SITES], changes[HELD_TOP_SITES:]
    rows = [list(change) for change in listed]
    if rest:
        rows.append(["(other)", sum(c[1] for c in rest), sum(c[2] for c in rest)])
    return {"before": before, "after": after, "heap_bytes": sum(c[1] for c in changes), "sites": rows,
            "processes": len(processes)}


def _sum_sites(tables) -> dict[str, tuple[int, int]]:
    summed: dict[str, tuple[int, int]] = {}
    for table in tables:
        for site, (size, count) in table.items():
            old_size, old_count = summed.get(site, (0, 0))
            summed[site] = (old_size + size, old_count + count)
    return summed


def _dump_time(process: ProbeData, phase: str) -> float:
    """When ``process`` took its dump of ``phase``, on the run's clock (its rows for that dump carry it)."""
    for path, when in process.files.get("snapshot_times_s", {}).items():
        if path.endswith(f"-{phase}.tmsnap"):
            return when
    return 0.0


def summed_steps(series: Sequence[Sequence[tuple]]) -> list[tuple[float, int, int | None, int | None]]:
    """Rows ``(time, heap, peak, tracer)`` of several processes summed as steps at every sample time."""
    if len(series) == 1:
        return list(series[0])
    events = sorted((row[0], index, row) for index, rows in enumerate(series) for row in rows)
    ends = {index: rows[-1][0] for index, rows in enumerate(series) if rows}
    current: dict[int, tuple] = {}
    merged = []
    for time_s, index, row in events:
        current[index] = row
        live = [r for i, r in current.items() if ends[i] >= time_s]
        # A column no process has (memray records no peak, no tracer bytes) stays empty.
        peaks = [r[2] for r in live if r[2] is not None]
        tracers = [r[3] for r in live if r[3] is not None]
        merged.append((time_s, sum(r[1] for r in live),
                       sum(r[2] if r[2] is not None else r[1] for r in live) if peaks else None,
                       sum(tracers) if tracers else None))
    return merged


def held_sites_from_processes(rows_each: Sequence[Sequence[tuple[float, str, int, int]]], ends: Mapping[str, float],
                              before: str = IDLE_EMPTY, after: str = IDLE_HELD) -> dict[str, Any] | None:
    """:func:`held_connection_sites` for a probe without phase-end dumps (memray, massif), summed over
    the processes' site rows (a pre-fork server: the workers hold the clients, not the master): each
    process's rows at the last time each of the two phases had sites (``ends``: each phase's end on the
    run's clock); sites outside the probe's top list at either time are in its ``(other)`` row. None
    when a process lacks sites at either phase's end."""
    processes, at_s = [], {}
    for site_rows in rows_each:
        times = sorted({row[0] for row in site_rows})
        picked = {}
        for phase in (before, after):
            if phase not in ends:
                return None
            earlier = [t for t in times if t <= ends[phase]]
            if not earlier:
                return None
            picked[phase] = earlier[-1]
        if picked[before] == picked[after]:
            return None
        tables = {phase: {site: (size, count) for t, site, size, count in site_rows if t == when}
                  for phase, when in picked.items()}
        processes.append(ProbeData(phase_end_sites=tables))
        at_s = at_s or {phase: round(when, 3) for phase, when in picked.items()}
    held = held_connection_sites(processes, before, after)
    if held is not None:
        held["at_s"] = at_s
    return held
