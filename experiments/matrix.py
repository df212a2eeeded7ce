"""A matrix: every chosen layout under every chosen probe, run one after another, then the report.

Runs are sequential on purpose: on a 2-core machine two servers measured at once would disturb each
other's RSS and throughput.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from server.layouts import LAYOUTS

from .probes import PROBES
from .results import RESULT_FILE, RunResult, load_run, write_atomic, write_json
from .runner import DEFAULT_RUNS_DIR, RunConfig, RunFailed, run_once

MATRIX_SCHEMA = "memdiet.matrix/1"
DEFAULT_LATEST_DIR = Path("reports/latest")

#: ``make experiment``: the full study at Lwan's scale, about 3-4 minutes on 2 cores.
FULL = RunConfig(layout="", probe="", max_conns=65536, connections=1000, idle_s=2.0, load_s=3.0, detail_interval_s=2.0)
#: ``make experiment QUICK=1``: the same scenario, smaller and shorter, well under a minute.
QUICK = RunConfig(layout="", probe="", max_conns=8192, connections=100, idle_s=0.5, load_s=1.0, detail_interval_s=0.25)
FULL_PROBES = ("rss", "tracemalloc", "memray")
QUICK_PROBES = ("rss", "tracemalloc")


@dataclass
class MatrixPlan:
    """Which runs to make: ``base`` gives every parameter but layout and probe."""

    base: RunConfig
    layouts: Sequence[str] = field(default_factory=lambda: list(LAYOUTS))
    probes: Sequence[str] = FULL_PROBES

    def configs(self) -> list[RunConfig]:
        return [replace(self.base, layout=layout, probe=probe) for layout in self.layouts for probe in self.probes]


@dataclass
class MatrixOutcome:
    runs: list[RunResult]
    failures: list[str]
    report: Path | None


def run_matrix(
    plan: MatrixPlan,
    *,
    latest_dir: Path = DEFAULT_LATEST_DIR,
    on_run_start: Callable[[int, int, RunConfig], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> MatrixOutcome:
    """Make every run of ``plan`` and write the report to ``latest_dir``. A failed run is recorded
    (incomplete) and the matrix goes on; an interrupt stops it after the current run is written."""
    configs = plan.configs()
    paths: list[Path] = []
    failures: list[str] = []
    for index, config in enumerate(configs):
        if on_run_start:
            on_run_start(index, len(configs), config)
        try:
            paths.append(run_once(config, on_phase))
        except RunFailed as error:
            failures.append(str(error))
            latest = sorted(config.runs_dir.glob(f"*-{config.layout}-{config.probe}*"))
            if latest:
                paths.append(latest[-1])
    runs = [load_run(path) for path in paths]
    record_probe_slowdown(runs)
    write_massif_files(runs)
    report = write_latest(runs, latest_dir, plan)
    return MatrixOutcome(runs, failures, report)


def record_probe_slowdown(runs: Sequence[RunResult]) -> None:
    """Write into each traced run how much slower it served than the rss run of its layout (the
    ratio of req/s, both measured in this matrix)."""
    clean = {r.layout: r.summary.get("req_per_s") for r in runs if r.probe == "rss" and r.status == "complete"}
    for run in runs:
        baseline = clean.get(run.layout)
        mine = run.summary.get("req_per_s")
        if run.probe == "rss" or not baseline or not mine:
            continue
        run.document["probe_info"]["slowdown_vs_rss"] = baseline / mine
        write_json(run.path / "result.json", run.document)


def write_massif_files(runs: Sequence[RunResult]) -> None:
    """Write ``massif.out.<layout>-<probe>`` into each run folder (tracemalloc_viewer's export of the
    folder, for ms_print and massif-visualizer) and list it in result.json as ``files.massif``. A run
    the viewer cannot read (no samples at all) gets a probe note instead."""
    from tracemalloc_viewer import Detail, LoadOptions, ViewerInputError, open_series
    from tracemalloc_viewer.outputs import massif

    detail = Detail()
    for run in runs:
        name = f"massif.out.{run.layout}-{run.probe}"
        try:
            text = massif.render(open_series([run.path], LoadOptions(detail)), detail)
        except ViewerInputError as error:
            run.document.setdefault("probe_info", {}).setdefault("notes", []).append(f"no massif.out: {error}")
        else:
            write_atomic(run.path / name, text)  # readable by all, as the run's other files
            run.document.setdefault("files", {})["massif"] = name
        write_json(run.path / RESULT_FILE, run.document)


def write_latest(runs: Sequence[RunResult], latest_dir: Path, plan: MatrixPlan) -> Path | None:
    """Write ``latest_dir``: matrix.json (which runs, with what parameters) and the report."""
    from .render.report_md import build_report

    latest_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "schema": MATRIX_SCHEMA,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": plan.base.parameters() | {"layouts": list(plan.layouts), "probes": list(plan.probes)},
        "runs": [str(run.path.resolve()) for run in runs],
    }
    write_json(latest_dir / "matrix.json", info)
    return build_report(list(runs), latest_dir, matrix_info=info)


def default_plan(quick: bool) -> MatrixPlan:
    base = QUICK if quick else FULL
    return MatrixPlan(base=replace(base, runs_dir=DEFAULT_RUNS_DIR), probes=QUICK_PROBES if quick else FULL_PROBES)


__all__ = ["MatrixPlan", "run_matrix", "default_plan", "FULL", "QUICK", "PROBES"]
