"""The bench's file, ``bench.json``, and its metrics: the format every reader of a bench run holds to
(``bench/document.py`` writes it, ``render/bench_md.py`` and ``render/bench_chart.py`` draw it).

A file holds one run's plan, machine, per-trial readings, medians, ratios and targets.

Schema ``memdiet.bench/1``. Sizes in bytes, times in seconds unless the key says otherwise
(``_ms``, ``_us``). ``subjects`` are in the order measured (memdiet layouts, then peers); each has
its raw ``trials`` (failed ones with ``ok`` false and ``error``), ``summary`` (``{metric: {median,
min, max, n}}`` over the trials that reached it) and ``ratios`` (``{metric: {baseline: median /
baseline median}}``).

``profiles`` (null without ``--profile``; added within schema 1, readers that do not know it can skip
it): one entry per subject, in the same order, for its extra throughput run under cProfile: ``name``,
``label``, ``kind``, ``ok`` and ``error`` (why no profile was obtained), ``stats_file`` (relative to
the report's folder), the run's ``throughput`` (slowed by the profiler: never a throughput figure),
``cpu_s`` (server CPU over that run), ``process_cpu_s`` (server CPU from its start to the run's end),
``startup_s`` (launch to listening), ``quiet_check`` (other processes, before the start) and
``profile`` (what ``bench/profile.py``'s ``profile_dataset`` returns): ``profiled_s``, ``requests``,
``categories`` and ``top_functions`` (seconds, share of ``profiled_s``, ``us_per_request``).

The metrics: per trial, every metric is computed from that trial's raw readings (:func:`trial_values`);
across trials a metric is its median with the min and max (:func:`spread`); ratios divide a subject's
median by a baseline's median from the same run (:func:`ratios`). Rules: recorded values in, figures
out; nothing here runs a process, reads a clock or touches the bench's live code.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any, Sequence

SCHEMA = "memdiet.bench/1"

#: CPU categories every subject's profile has (bench/profile.py groups into them, render/bench_md.py
#: shows them last); here, with the other recorded-data names, so renderers need not import the profiler.
SYSTEM_CALLS = "system calls (read, write, send, recv...)"
WAITING = "waiting for events (epoll.poll, select)"
OTHER = "other (standard library, imports...)"
SHARED_CATEGORIES = (SYSTEM_CALLS, WAITING, OTHER)


@dataclass(frozen=True)
class BenchMetric:
    """``unit`` is ``bytes``, ``req/s``, ``s`` (CPU seconds) or ``us`` (microseconds)."""

    key: str
    title: str
    unit: str
    lower_is_better: bool
    description: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def held_key(prefix: str, connections: int) -> str:
    """Key of a metric taken at ``connections`` held connections, e.g. ``held_rss_bytes_5000``."""
    return f"{prefix}_{connections}"


def catalog(held: Sequence[int]) -> list[BenchMetric]:
    """Every metric of a run holding each count of ``held`` connections, in report order."""
    metrics = [
        BenchMetric("idle_rss_bytes", "Idle RSS", "bytes", True,
                    "VmRSS after start, before any connection (median of 5 reads over 0.4 s)"),
        BenchMetric("idle_anon_bytes", "Idle anonymous RSS", "bytes", True,
                    "RssAnon after start: heap, stacks and anonymous mappings, without mapped files"),
    ]
    for n in held:
        metrics += [
            BenchMetric(held_key("held_rss_bytes", n), f"RSS with {n:,} held connections", "bytes", True,
                        f"VmRSS with {n:,} idle keep-alive connections held, each having made one request"),
            BenchMetric(held_key("bytes_per_connection", n), f"Bytes per held connection (N = {n:,})", "bytes", True,
                        f"(RSS with {n:,} held - idle RSS) / {n:,}; the kernel's socket buffers are not in RSS"),
            BenchMetric(held_key("held_anon_bytes", n), f"Anonymous RSS with {n:,} held connections", "bytes", True,
                        f"RssAnon with {n:,} connections held"),
            BenchMetric(held_key("anon_bytes_per_connection", n), f"Anonymous bytes per held connection (N = {n:,})",
                        "bytes", True, f"(RssAnon with {n:,} held - idle RssAnon) / {n:,}"),
        ]
    metrics += [
        BenchMetric("req_per_s", "Keep-alive throughput", "req/s", False,
                    "responses per second, one request outstanding per connection"),
        BenchMetric("cpu_s", "Server CPU seconds during the throughput run", "s", True,
                    "user + system CPU seconds of the server process (all threads) over the run"),
        BenchMetric("cpu_us_per_request", "Server CPU per request", "us", True,
                    "server CPU seconds / responses, in microseconds"),
    ]
    return metrics


def trial_values(trial: dict[str, Any], held: Sequence[int]) -> dict[str, float]:
    """Each metric's value in one trial's raw readings (metrics it did not reach are left out)."""
    values: dict[str, float] = {}
    idle = trial.get("idle")
    if idle:
        values["idle_rss_bytes"] = idle["rss_bytes"]
        values["idle_anon_bytes"] = idle["anon_bytes"]
    for n in held:
        reading = trial.get("held", {}).get(str(n))
        if not reading or not idle:
            continue
        values[held_key("held_rss_bytes", n)] = reading["rss_bytes"]
        values[held_key("held_anon_bytes", n)] = reading["anon_bytes"]
        values[held_key("bytes_per_connection", n)] = (reading["rss_bytes"] - idle["rss_bytes"]) / n
        values[held_key("anon_bytes_per_connection", n)] = (reading["anon_bytes"] - idle["anon_bytes"]) / n
    throughput = trial.get("throughput")
    if throughput and throughput.get("requests"):
        values["req_per_s"] = throughput["req_per_s"]
        if trial.get("cpu_s") is not None:
            values["cpu_s"] = trial["cpu_s"]
            values["cpu_us_per_request"] = trial["cpu_s"] / throughput["requests"] * 1e6
    return values


def spread(values: Sequence[float]) -> dict[str, float | int] | None:
    """``{"median", "min", "max", "n"}`` of ``values``, or None when there are none."""
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def ratios(summaries: dict[str, dict[str, dict]], baselines: Sequence[str]) -> dict[str, dict[str, dict[str, float]]]:
    """``{subject: {metric: {baseline: subject median / baseline median}}}`` for every baseline
    present in ``summaries`` (``{subject: {metric: spread}}``) with a positive median."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for subject, metrics in summaries.items():
        for key, summary in metrics.items():
            for baseline in baselines:
                base = summaries.get(baseline, {}).get(key)
                if base and base["median"] > 0:
                    out.setdefault(subject, {}).setdefault(key, {})[baseline] = summary["median"] / base["median"]
    return out
