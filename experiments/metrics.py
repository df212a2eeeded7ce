"""Summary metrics of a run: what each means, its unit, and how it is computed from the dataset.

Heap figures (tracemalloc, memray) are deterministic for a given Python and layout: the same code makes
the same allocations. RSS and throughput figures depend on the machine and its load; compare them only
between runs made side by side.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from .results import Phase, Series


@dataclass(frozen=True)
class Metric:
    """A summary metric: ``unit`` (``bytes``, ``req/s``, ``ms``, ``count``), whether the same code
    gives the same figure on every run (``deterministic``), and which direction is better."""

    name: str
    unit: str
    description: str
    deterministic: bool
    lower_is_better: bool = True


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("idle_rss_bytes", "bytes", "median RSS while idle with no clients (idle-empty)", False),
    Metric("held_rss_bytes", "bytes", "median RSS while C keep-alive connections are held idle (idle-held)", False),
    Metric("loaded_peak_rss_bytes", "bytes", "highest RSS during the load phase", False),
    Metric("after_rss_bytes", "bytes", "median RSS after every client closed (idle-after)", False),
    Metric("idle_uss_bytes", "bytes", "median USS (memory unique to the server) in idle-empty", False),
    Metric("rss_bytes_per_held_connection", "bytes", "(held RSS - idle RSS) / C", False),
    Metric("rss_bytes_per_active_connection", "bytes", "(median RSS under load - idle RSS) / C", False),
    Metric("table_heap_bytes", "bytes", "heap allocated building the connection table", True),
    Metric("bytes_per_slot", "bytes", "table heap / max_conns: what one preallocated slot costs", True),
    Metric("idle_heap_bytes", "bytes", "median traced heap in idle-empty", True),
    Metric("held_heap_bytes", "bytes", "median traced heap in idle-held", True),
    Metric("loaded_peak_heap_bytes", "bytes", "highest traced heap sample during load", False),
    # Not deterministic: what stays allocated after the load (free lists, resized dicts) depends
    # on how many requests the load phase happened to serve.
    Metric("after_heap_bytes", "bytes", "median traced heap in idle-after", False),
    Metric("heap_bytes_per_held_connection", "bytes", "(held heap - idle heap) / C", True),
    Metric("heap_bytes_per_active_connection", "bytes", "(median heap under load - idle heap) / C", False),
    Metric("tracer_bytes", "bytes", "the tracer's own bookkeeping memory at the end of idle-held", False),
    Metric("c_bytes_per_slot", "bytes", "the slot's size as a C struct (ctypes.sizeof)", True),
    Metric("requests", "count", "requests answered during the load phase", False, lower_is_better=False),
    Metric("req_per_s", "req/s", "keep-alive requests per second during load", False, lower_is_better=False),
    Metric("errors", "count", "load-generator errors over the whole run", True),
    Metric("latency_p50_ms", "ms", "median request latency under load", False),
    Metric("latency_p99_ms", "ms", "99th percentile request latency under load", False),
)}


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _phase(phases: Sequence[Phase], name: str) -> Phase | None:
    return next((p for p in phases if p.name == name), None)


def _per_connection(high: float | None, low: float | None, connections: int) -> float | None:
    if high is None or low is None or connections <= 0:
        return None
    return (high - low) / connections


def _idle_level(series: Series, column: str, phase: Phase) -> float | None:
    """The level of ``column`` during an idle phase: the median of its samples, or, when the probe
    took none inside it (a long detailed snapshot can pause sampling for longer than a short phase),
    the last sample before the phase ended: nothing happens in an idle phase to change it."""
    inside = series.between(column, phase.start_s, phase.end_s)
    if inside:
        return _median(inside)
    before = series.between(column, float("-inf"), phase.end_s)
    return before[-1] if before else None


def _phase_stats(series: Series | None, column: str, phases: Sequence[Phase]) -> dict[str, float | None]:
    """Median of ``column`` per idle phase, max and median during load."""
    out: dict[str, float | None] = {}
    if series is None or len(series) == 0:
        return out
    for name in ("idle-empty", "idle-held", "idle-after"):
        phase = _phase(phases, name)
        out[name] = _idle_level(series, column, phase) if phase else None
    load = _phase(phases, "load")
    values = series.between(column, load.start_s, load.end_s) if load else []
    out["load-max"] = max(values) if values else None
    out["load-median"] = _median(values)
    return out


def summarize(
    phases: Sequence[Phase],
    rss: Series | None,
    heap: Series | None,
    load: dict[str, Any] | None,
    parameters: dict[str, Any],
    table: dict[str, Any] | None,
) -> dict[str, float | int | None]:
    """Compute every metric of :data:`METRICS` that this run's data supports (others are left out).

    ``load`` holds the load generator's replies by phase (``ramp``, ``load``, ``drain``);
    ``table`` what the server reported about its table (``table_heap_bytes``, ``c_bytes_per_slot``).
    """
    connections = int(parameters.get("connections", 0))
    max_conns = int(parameters.get("max_conns", 0))
    summary: dict[str, float | int | None] = {}

    by_phase = _phase_stats(rss, "rss_bytes", phases)
    if by_phase:
        summary["idle_rss_bytes"] = by_phase["idle-empty"]
        summary["held_rss_bytes"] = by_phase["idle-held"]
        summary["after_rss_bytes"] = by_phase["idle-after"]
        summary["loaded_peak_rss_bytes"] = by_phase["load-max"]
        summary["rss_bytes_per_held_connection"] = _per_connection(by_phase["idle-held"], by_phase["idle-empty"], connections)
        summary["rss_bytes_per_active_connection"] = _per_connection(by_phase["load-median"], by_phase["idle-empty"], connections)
        uss = _phase_stats(rss, "uss_bytes", phases)
        summary["idle_uss_bytes"] = uss.get("idle-empty")

    by_phase = _phase_stats(heap, "heap_bytes", phases)
    if by_phase:
        summary["idle_heap_bytes"] = by_phase["idle-empty"]
        summary["held_heap_bytes"] = by_phase["idle-held"]
        summary["after_heap_bytes"] = by_phase["idle-after"]
        summary["loaded_peak_heap_bytes"] = by_phase["load-max"]
        summary["heap_bytes_per_held_connection"] = _per_connection(by_phase["idle-held"], by_phase["idle-empty"], connections)
        summary["heap_bytes_per_active_connection"] = _per_connection(by_phase["load-median"], by_phase["idle-empty"], connections)
        tracer = _phase_stats(heap, "tracer_bytes", phases)
        summary["tracer_bytes"] = tracer.get("idle-held")

    if table:
        if table.get("table_heap_bytes") is not None and max_conns:
            summary["table_heap_bytes"] = table["table_heap_bytes"]
            summary["bytes_per_slot"] = table["table_heap_bytes"] / max_conns
        if table.get("c_bytes_per_slot") is not None:
            summary["c_bytes_per_slot"] = table["c_bytes_per_slot"]

    if load:
        loaded = load.get("load") or {}
        for key in ("requests", "req_per_s", "latency_p50_ms", "latency_p99_ms"):
            if loaded.get(key) is not None:
                summary[key] = loaded[key]
        summary["errors"] = sum(
            sum((load.get(phase) or {}).get("errors", {}).values()) for phase in ("ramp", "load", "drain")
        )
    return {k: v for k, v in summary.items() if v is not None}


def reduction(value: float | None, baseline: float | None) -> float | None:
    """Fraction saved versus ``baseline`` (0.94 means 94% less), or None when not comparable."""
    if value is None or baseline is None or baseline <= 0:
        return None
    return 1.0 - value / baseline
