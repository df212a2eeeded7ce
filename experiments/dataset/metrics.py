"""Summary metrics of a run: what each means, its unit, and how it is computed from the dataset.

Heap figures (tracemalloc, memray) are deterministic for a given Python and layout: the same code makes
the same allocations. RSS and throughput figures depend on the machine and its load; compare them only
between runs made side by side.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from .results import CLIENT_PHASES, IDLE_AFTER, IDLE_EMPTY, IDLE_HELD, IDLE_PHASES, LOAD, RAMP, Phase, Series


@dataclass(frozen=True)
class Metric:
    """A summary metric: ``unit`` (``bytes``, ``req/s``, ``ms``, ``us``, ``count``), whether the same code
    gives the same figure on every run (``deterministic``), and which direction is better.
    ``spread``: for a deterministic figure that still moves a little with timing, the largest
    relative range (max - min) / median measured over identical runs; 0.0 when exact."""

    name: str
    unit: str
    description: str
    deterministic: bool
    lower_is_better: bool = True
    spread: float = 0.0


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("idle_rss_bytes", "bytes", f"median RSS while idle with no clients ({IDLE_EMPTY})", False),
    Metric("held_rss_bytes", "bytes", f"median RSS while C keep-alive connections are held idle ({IDLE_HELD})", False),
    Metric("loaded_peak_rss_bytes", "bytes", "highest RSS during the load phase", False),
    Metric("after_rss_bytes", "bytes", f"median RSS after every client closed ({IDLE_AFTER})", False),
    Metric("idle_uss_bytes", "bytes", f"median USS (memory unique to the server) in {IDLE_EMPTY}", False),
    # PSS, summed over the subject's processes, is the honest total of a server with forked workers:
    # the pages they share with their parent count once, split among them (RSS counts them per process).
    Metric("idle_pss_bytes", "bytes", f"median PSS of the subject's processes, summed, in {IDLE_EMPTY}", False),
    Metric("held_pss_bytes", "bytes", f"median PSS of the subject's processes, summed, in {IDLE_HELD}", False),
    Metric("pss_bytes_per_held_connection", "bytes", "(held PSS - idle PSS) / C", False),
    Metric("rss_bytes_per_held_connection", "bytes", "(held RSS - idle RSS) / C", False),
    # Outside RSS: what the kernel holds for the subject's sockets (experiments/measure/kernel.py).
    Metric("kernel_buffer_bytes_per_held_connection", "bytes",
           "the subject's sockets' buffer charge (ss skmem: r + w + f + o + bl), held - idle, / C", False),
    Metric("kernel_bytes_per_held_connection", "bytes",
           "kernel buffers per held connection plus one struct tcp_sock (the TCP slab's object size)", False),
    Metric("rss_bytes_per_active_connection", "bytes", "(median RSS under load - idle RSS) / C", False),
    Metric("table_heap_bytes", "bytes", "heap allocated building the connection table", True),
    Metric("bytes_per_slot", "bytes", "table heap / max_conns: what one preallocated slot costs", True),
    Metric("idle_heap_bytes", "bytes", f"median traced heap in {IDLE_EMPTY}", True),
    Metric("held_heap_bytes", "bytes", f"median traced heap in {IDLE_HELD}", True),
    Metric("loaded_peak_heap_bytes", "bytes", "highest traced heap sample during load", False),
    # Not deterministic: what stays allocated after the load (free lists, resized dicts) depends
    # on how many requests the load phase happened to serve.
    Metric("after_heap_bytes", "bytes", f"median traced heap in {IDLE_AFTER}", False),
    # Deterministic within 2%: 0.5-1.8% range measured over 3-5 identical nofd runs at 2,048 to
    # 65,536 slots (before the probe kept its own spare tuples out: 5.6% over 3 full-size runs).
    # What still moves is the server's own int objects, 32 B each: one deadline per loop turn that
    # answered ramp requests (shared by that turn's connections), and, for fds above 256, whether
    # the expiry queue's links keep the accept's int for an fd or the epoll event's.
    Metric("heap_bytes_per_held_connection", "bytes",
           f"(live heap at the end of {IDLE_HELD} - at the end of {IDLE_EMPTY}) / C: from the phase-end dumps, "
           "after a full collection and without the probe's own allocations (tracemalloc); else "
           "(held heap - idle heap) / C", True, spread=0.02),
    Metric("heap_bytes_per_active_connection", "bytes", "(median heap under load - idle heap) / C", False),
    Metric("tracer_bytes", "bytes", f"the tracer's own bookkeeping memory at the end of {IDLE_HELD}", False),
    Metric("c_bytes_per_slot", "bytes", "the slot's size as a C struct (ctypes.sizeof)", True),
    Metric("requests", "count", "requests answered during the load phase", False, lower_is_better=False),
    Metric("req_per_s", "req/s", "keep-alive requests per second during load", False, lower_is_better=False),
    Metric("errors", "count", "load-generator errors over the whole run", True),
    Metric("latency_p50_ms", "ms", "median request latency under load", False),
    Metric("latency_p99_ms", "ms", "99th percentile request latency under load", False),
    # What a probe costs the server, whoever the bottleneck is: req/s also counts the load
    # generator's limits (one asyncio process), CPU per request counts only the server's work.
    Metric("cpu_us_per_request", "us",
           "server CPU time (user + system, every thread: a probe's own sampler too) per request answered in load",
           False),
    Metric("main_thread_cpu_us_per_request", "us",
           "CPU time of the server's serving thread alone per request answered in load", False),
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
    for name in IDLE_PHASES:
        phase = _phase(phases, name)
        out[name] = _idle_level(series, column, phase) if phase else None
    load = _phase(phases, LOAD)
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
    *,
    server_cpu_s: dict[str, dict[str, float]] | None = None,
    phase_end_heap: dict[str, int] | None = None,
    held_connections: int | None = None,
) -> dict[str, float | int | None]:
    """Compute every metric of :data:`METRICS` that this run's data supports (others are left out).

    ``load`` holds the load generator's replies by phase (``ramp``, ``load``, ``drain``);
    ``table`` what the server reported about its table (``table_heap_bytes``, ``c_bytes_per_slot``);
    ``server_cpu_s`` the server's CPU seconds by phase (``{"load": {"process": s, "main_thread": s}}``);
    ``phase_end_heap`` the live heap at each phase's end, bytes by phase (the tracemalloc probe's
    phase-end dumps, after a full collection, without the probe's own allocations);
    ``held_connections`` the connections the subject held at the end of idle-held, which the figures
    per held connection divide by (default: C, the clients asked for).
    """
    connections = int(parameters.get("connections", 0)) if held_connections is None else held_connections
    max_conns = int(parameters.get("max_conns", 0))
    summary: dict[str, float | int | None] = {}

    by_phase = _phase_stats(rss, "rss_bytes", phases)
    if by_phase:
        summary["idle_rss_bytes"] = by_phase[IDLE_EMPTY]
        summary["held_rss_bytes"] = by_phase[IDLE_HELD]
        summary["after_rss_bytes"] = by_phase[IDLE_AFTER]
        summary["loaded_peak_rss_bytes"] = by_phase["load-max"]
        summary["rss_bytes_per_held_connection"] = _per_connection(by_phase[IDLE_HELD], by_phase[IDLE_EMPTY], connections)
        summary["rss_bytes_per_active_connection"] = _per_connection(by_phase["load-median"], by_phase[IDLE_EMPTY], connections)
        uss = _phase_stats(rss, "uss_bytes", phases)
        summary["idle_uss_bytes"] = uss.get(IDLE_EMPTY)
        pss = _phase_stats(rss, "pss_bytes", phases)
        summary["idle_pss_bytes"] = pss.get(IDLE_EMPTY)
        summary["held_pss_bytes"] = pss.get(IDLE_HELD)
        summary["pss_bytes_per_held_connection"] = _per_connection(pss.get(IDLE_HELD), pss.get(IDLE_EMPTY), connections)

    by_phase = _phase_stats(heap, "heap_bytes", phases)
    if by_phase:
        summary["idle_heap_bytes"] = by_phase[IDLE_EMPTY]
        summary["held_heap_bytes"] = by_phase[IDLE_HELD]
        summary["after_heap_bytes"] = by_phase[IDLE_AFTER]
        summary["loaded_peak_heap_bytes"] = by_phase["load-max"]
        summary["heap_bytes_per_held_connection"] = _per_connection(by_phase[IDLE_HELD], by_phase[IDLE_EMPTY], connections)
        summary["heap_bytes_per_active_connection"] = _per_connection(by_phase["load-median"], by_phase[IDLE_EMPTY], connections)
        tracer = _phase_stats(heap, "tracer_bytes", phases)
        summary["tracer_bytes"] = tracer.get(IDLE_HELD)
    live = phase_end_heap or {}
    if live.get(IDLE_HELD) is not None and live.get(IDLE_EMPTY) is not None:
        # Where the probe dumps, the live heaps at the two phases' ends: the medians above also
        # count the interpreter's free lists and garbage not yet collected, whose fill depends on
        # timing (up to 30 KB apart at C = 1,000 in three identical runs).
        summary["heap_bytes_per_held_connection"] = _per_connection(live[IDLE_HELD], live[IDLE_EMPTY], connections)

    if table:
        if table.get("table_heap_bytes") is not None and max_conns:
            summary["table_heap_bytes"] = table["table_heap_bytes"]
            summary["bytes_per_slot"] = table["table_heap_bytes"] / max_conns
        if table.get("c_bytes_per_slot") is not None:
            summary["c_bytes_per_slot"] = table["c_bytes_per_slot"]

    if load:
        loaded = load.get(LOAD) or {}
        for key in ("requests", "req_per_s", "latency_p50_ms", "latency_p99_ms"):
            if loaded.get(key) is not None:
                summary[key] = loaded[key]
        summary["errors"] = sum(
            sum((load.get(phase) or {}).get("errors", {}).values()) for phase in CLIENT_PHASES
        )
        load_cpu_s = (server_cpu_s or {}).get(LOAD) or {}
        requests = loaded.get("requests") or 0
        if requests > 0:
            for metric, thread in (("cpu_us_per_request", "process"), ("main_thread_cpu_us_per_request", "main_thread")):
                if load_cpu_s.get(thread) is not None:
                    summary[metric] = load_cpu_s[thread] * 1e6 / requests
    return {k: v for k, v in summary.items() if v is not None}


def errors_text(reply: dict[str, Any]) -> str:
    """A load-generator reply's errors as text: ``"5 client errors: status_503 2, unsolicited 3"``."""
    errors = reply.get("errors") or {}
    if not errors:
        return "no client errors"
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(errors.items()))
    count = sum(errors.values())
    return f"{count} client error{'' if count == 1 else 's'}: {kinds}"


def client_warnings(load: dict[str, Any], connections: int) -> list[str]:
    """What went wrong for the clients of a run, one line each; empty when the C clients were all
    held and every request was answered. A run with warnings measured fewer clients than its figures
    per connection divide by, or requests that failed (503 when the table was full, resets)."""
    warnings = []
    ramp = load.get(RAMP) or {}
    held = ramp.get("connections_open")
    if held is not None and held < connections:
        warnings.append(f"ramp: only {held} of {connections} clients were held")
    for phase in CLIENT_PHASES:
        reply = load.get(phase) or {}
        if reply.get("errors"):
            warnings.append(f"{phase}: {errors_text(reply)}")
    return warnings


def probe_cpu_slowdown(traced: dict[str, Any], untraced: dict[str, Any],
                       metric: str = "cpu_us_per_request") -> float | None:
    """How many times the server's CPU per request a probe multiplies: ``metric`` of the traced
    run's summary over the untraced (rss) run's, of the same layout in the same matrix; None when
    either lacks it. Unlike a ratio of req/s, a load generator that saturates first cannot hide it."""
    mine, clean = traced.get(metric), untraced.get(metric)
    if mine is None or clean is None or clean <= 0:
        return None
    return mine / clean


def probe_throughput_slowdown(traced: dict[str, Any], untraced: dict[str, Any]) -> float | None:
    """Untraced req/s over traced req/s, of two summaries: how much less the load generator got
    served. A lower bound on the probe's cost: when the generator is the bottleneck the ratio shrinks
    towards 1 whatever the probe costs (:func:`probe_cpu_slowdown` does not)."""
    mine, clean = traced.get("req_per_s"), untraced.get("req_per_s")
    if not mine or clean is None:
        return None
    return clean / mine


def reduction(value: float | None, baseline: float | None) -> float | None:
    """Fraction saved versus ``baseline`` (0.94 means 94% less), or None when not comparable."""
    if value is None or baseline is None or baseline <= 0:
        return None
    return 1.0 - value / baseline
