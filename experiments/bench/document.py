"""Builds ``bench.json`` (its format: :mod:`experiments.dataset.bench_format`) from one run's plan,
machine, per-trial readings and profiles, with the issue's targets evaluated on its medians.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Sequence

from ..dataset.bench_format import SCHEMA, catalog, held_key, ratios, spread, trial_values
from ..measure import environment
from .measure import BenchPlan, cpu_split
from .quiet import BUSY_CORES
from .subjects import BASELINES, Subject

#: Held connections the issue's targets are stated for.
TARGET_HELD = 5000
#: Lwan's bytes per idle connection (10k connections in ~1.5 MiB).
LWAN_BYTES_PER_CONNECTION = 160


def describe_machine(subjects: Sequence[Subject], tool_version: str) -> dict[str, Any]:
    """environment.describe() plus what this comparison depends on: load average, the CPUs the
    server and the client are pinned to, the peers' versions and the throughput tool."""
    server_cpus, client_cpus = cpu_split()
    versions: dict[str, str | None] = {}
    for subject in subjects:
        versions.update(subject.versions())
    return {
        **environment.describe(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "server_cpus": server_cpus,
        "client_cpus": client_cpus,
        "peer_versions": versions,
        "throughput_tool_version": tool_version,
    }


def evaluate_targets(summaries: dict[str, dict[str, dict]], layouts: Sequence[str],
                     held: Sequence[int]) -> list[dict[str, Any]]:
    """The issue's targets against this run's medians (``layouts``: the memdiet subjects' names):
    ``met`` True/False, or None when a subject it needs was not measured."""
    n = TARGET_HELD if TARGET_HELD in held else max(held)
    at = "" if n == TARGET_HELD else f" (measured at N = {n:,}; the target is for {TARGET_HELD:,})"

    def median(subject: str, key: str) -> float | None:
        summary = summaries.get(subject, {}).get(key)
        return summary["median"] if summary else None

    targets = []
    rss_key = held_key("held_rss_bytes", n)
    uvicorn = median("uvicorn", rss_key)
    for layout in ("nofd", "packed"):
        value = median(layout, rss_key)
        ratio = value / uvicorn if value is not None and uvicorn else None
        targets.append({
            "target": f"memdiet {layout}: total RSS with {TARGET_HELD:,} held connections at most 1/4 of uvicorn's",
            "met": None if ratio is None else ratio <= 0.25,
            "detail": "not measured" if ratio is None else f"{ratio:.2f}x uvicorn's{at}",
        })
    per_connection = median("packed", held_key("bytes_per_connection", n))
    targets.append({
        "target": f"memdiet packed: at most {LWAN_BYTES_PER_CONNECTION} B per held connection (Lwan's figure)",
        "met": None if per_connection is None else per_connection <= LWAN_BYTES_PER_CONNECTION,
        "detail": "not measured" if per_connection is None else f"{per_connection:,.0f} B{at}",
    })
    floor = median("asyncio", "req_per_s")
    layouts = [name for name in layouts if "req_per_s" in summaries.get(name, {})]
    if floor is None or not layouts:
        targets.append({"target": "every memdiet layout at least the asyncio responder's keep-alive req/s",
                        "met": None, "detail": "not measured"})
    else:
        slow = {name: median(name, "req_per_s") / floor for name in layouts if median(name, "req_per_s") < floor}
        targets.append({
            "target": "every memdiet layout at least the asyncio responder's keep-alive req/s",
            "met": not slow,
            "detail": ("all at or above" if not slow else
                       ", ".join(f"{name} {ratio:.2f}x" for name, ratio in slow.items()) + " of asyncio's"),
        })
    return targets


def build_document(*, plan: BenchPlan, subjects: Sequence[Subject], trials: dict[str, list[dict[str, Any]]],
                   tool_name: str, tool_version: str, tool_note: str | None, refused: str | None,
                   started_utc: str, quick: bool, machine: dict[str, Any],
                   notes: Sequence[str] = (), profiles: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The whole ``bench.json`` document (see the module's docstring); ``notes`` are lines the
    report shows under its introduction (subjects skipped, and why); ``profiles`` are the
    ``{subject name: record}`` of :func:`.measure.run_profiles` (None: not asked for)."""
    metrics = catalog(plan.held)
    summaries: dict[str, dict[str, dict]] = {}
    for subject in subjects:
        per_trial = [trial_values(trial, plan.held) for trial in trials.get(subject.name, []) if trial["ok"]]
        summaries[subject.name] = {
            metric.key: summary for metric in metrics
            if (summary := spread([values[metric.key] for values in per_trial if metric.key in values]))
        }
    ratio_table = ratios(summaries, [b for b in BASELINES if b in summaries])
    all_trials = [trial for name in trials for trial in trials[name]]
    timed = [trial for trial in all_trials if trial.get("quiet_check")]
    failed = [trial for trial in all_trials if not trial["ok"]]
    profile_runs = None if profiles is None else [
        {"name": subject.name, "label": subject.label, "kind": subject.kind, **profiles[subject.name]}
        for subject in subjects if subject.name in profiles]
    unprofiled = [run for run in profile_runs or [] if not run["ok"]]
    return {
        "schema": SCHEMA,
        "status": "incomplete" if refused or failed or unprofiled else "complete",
        "refused": refused,
        "started_utc": started_utc,
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "notes": list(notes),
        "plan": plan.to_dict(),
        "throughput_tool": {"name": tool_name, "version": tool_version, "note": tool_note},
        "machine": machine,
        "busy": {
            "threshold_cores": BUSY_CORES,
            "timed_runs": len(timed),
            "timed_while_busy": sum(1 for trial in timed if not trial["quiet_check"]["quiet"]),
            "policy": "refused (--strict)" if plan.strict else "recorded",
        },
        "baselines": [b for b in BASELINES if b in summaries],
        "metrics": [metric.to_dict() for metric in metrics],
        "subjects": [
            {
                "name": subject.name,
                "label": subject.label,
                "kind": subject.kind,
                "description": subject.description,
                "command": subject.command("python"),
                "trials": trials.get(subject.name, []),
                "summary": summaries[subject.name],
                "ratios": ratio_table.get(subject.name, {}),
            }
            for subject in subjects
        ],
        "targets": evaluate_targets(
            summaries, [subject.name for subject in subjects if subject.kind == "memdiet"], plan.held),
        "profiles": profile_runs,
    }
