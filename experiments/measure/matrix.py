"""A matrix: every chosen layout under every chosen probe, run one after another, then the report.

Runs are sequential on purpose: on a 2-core machine two servers measured at once would disturb each
other's RSS and throughput.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from server.layouts import LAYOUTS

from ..dataset.metrics import probe_cpu_slowdown, probe_throughput_slowdown
from ..dataset.results import (
    RESULT_FILE,
    ResultError,
    RunResult,
    load_run,
    read_json_file,
    write_atomic,
    write_json,
)
from ..paths import relative_posix
from ..render.html_report import HTML_FILE, write_html_report
from ..render.report_md import build_report
from .anatomy import write_anatomy_file
from .probes import PROBES
from .runner import RunFailed, run_once
from .subjects import FULL_PEERS, PEERS
from .scenario import (
    DEFAULT_LATEST_DIR,
    FULL,
    FULL_PROBES,
    QUICK,
    QUICK_LATEST_DIR,
    QUICK_PROBES,
    RunConfig,
)

MATRIX_SCHEMA = "memdiet.matrix/1"
MATRIX_FILE = "matrix.json"


@dataclass
class MatrixPlan:
    """Which runs to make: ``base`` gives every parameter but subject and probe; ``layouts`` names
    the subjects (memdiet's layouts, peers; see :mod:`.subjects`)."""

    base: RunConfig
    layouts: Sequence[str] = field(default_factory=lambda: list(LAYOUTS))
    probes: Sequence[str] = FULL_PROBES
    #: Subjects whose tracemalloc run takes heap graphs (owners.json), besides every one when the
    #: base asks (``--heap-graph``); other probes never take them.
    heap_graph_subjects: Sequence[str] = ()

    def configs(self) -> list[RunConfig]:
        return [replace(self.base, subject=layout, probe=probe,
                        heap_graph=probe == "tracemalloc" and (self.base.heap_graph or layout in self.heap_graph_subjects))
                for layout in self.layouts for probe in self.probes]


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
        # Run folders are named <UTC time>-<layout>-<probe>: one named at or after this stamp is this
        # run's, never an older matrix's (whose figures, made with other parameters, must not mix in).
        started_stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        try:
            paths.append(run_once(config, on_phase))
        except RunFailed as error:
            failures.append(str(error))
            latest = sorted(p for p in config.runs_dir.glob(f"*-{config.subject}-{config.probe}*")
                            if p.name[:len(started_stamp)] >= started_stamp)
            if latest:
                paths.append(latest[-1])
    runs = [load_run(path) for path in paths]
    record_probe_slowdown(runs)
    write_massif_files(runs)
    report = write_latest(runs, latest_dir, plan)
    return MatrixOutcome(runs, failures, report)


def record_probe_slowdown(runs: Sequence[RunResult]) -> None:
    """Write into each traced run how much the probe costs against the rss run of its layout, both
    measured in this matrix: the server's CPU time per request, all threads and the serving thread
    alone (the load generator cannot hide it), and the req/s ratio (a lower bound: it tends to 1
    when the load generator, not the server, is the bottleneck)."""
    clean = {r.layout: r.summary for r in runs if r.probe == "rss" and r.status == "complete"}
    for run in runs:
        baseline = clean.get(run.layout)
        if run.probe == "rss" or baseline is None:
            continue
        info = run.document["probe_info"]
        info["cpu_slowdown_vs_rss"] = probe_cpu_slowdown(run.summary, baseline)
        info["serving_thread_cpu_slowdown_vs_rss"] = probe_cpu_slowdown(
            run.summary, baseline, "main_thread_cpu_us_per_request")
        info["throughput_slowdown_vs_rss"] = probe_throughput_slowdown(run.summary, baseline)
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
    """Write ``latest_dir``: matrix.json (which runs, with what parameters), anatomy.json (what a
    slot of each layout of the plan costs, measured here: the report only reads it) and the report.

    Run folders are recorded relative to ``latest_dir`` (``../runs/<name>``), never as absolute
    paths: the committed report's matrix.json must mean the same in every clone, and the reports
    folder can move as a whole. Where the runs went (``runs_dir``) is left out for the same reason;
    the list of runs says it."""
    latest_dir.mkdir(parents=True, exist_ok=True)
    parameters = {key: value for key, value in plan.base.parameters().items() if key != "runs_dir"}
    info = {
        "schema": MATRIX_SCHEMA,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": parameters | {"layouts": list(plan.layouts), "probes": list(plan.probes)},
        "runs": [relative_posix(run.path, latest_dir) for run in runs],
    }
    write_json(latest_dir / MATRIX_FILE, info)
    write_anatomy_file(latest_dir, plan.layouts)
    index = build_report(list(runs), latest_dir, matrix_info=info)
    write_html_report(list(runs), latest_dir / HTML_FILE)  # the interactive page beside index.md
    return index


@dataclass
class MatrixRecord:
    """A matrix.json read back: when it was made (``created_utc``, ISO 8601), with what
    ``parameters``, and its run folders as paths resolved against the file's folder."""

    path: Path
    created_utc: str
    parameters: dict
    run_paths: list[Path]

    def missing_runs(self) -> list[Path]:
        """The recorded run folders that are not here (run folders are never committed)."""
        return [path for path in self.run_paths if not (path / RESULT_FILE).is_file()]


def read_matrix(matrix_file: Path) -> MatrixRecord:
    """Read ``matrix_file``; raise :class:`ResultError` (one line) if it is absent or malformed.

    A run path is taken relative to the file's folder. An absolute one (matrix.json files written
    before paths were relative) that does not exist any more is looked for by its folder name in
    ``<reports>/runs``, beside the file's folder, so a repository that moved still finds its runs."""
    matrix_file = Path(matrix_file)
    document = read_json_file(matrix_file, ResultError, missing=f"{matrix_file}: no such matrix file")
    try:
        recorded = document["runs"]
        if not isinstance(recorded, list) or not all(isinstance(item, str) for item in recorded):
            raise TypeError("'runs' is not a list of paths")
    except (KeyError, TypeError) as error:
        raise ResultError(f"{matrix_file}: not a matrix description ({error})") from None
    folder = matrix_file.parent
    run_paths = []
    for text in recorded:
        path = Path(text)
        if path.is_absolute():
            moved = folder.parent / "runs" / path.name
            path = moved if not path.exists() and moved.exists() else path
        else:
            path = Path(os.path.normpath(folder / path))
        run_paths.append(path)
    return MatrixRecord(matrix_file, str(document.get("created_utc") or ""), dict(document.get("parameters") or {}),
                        run_paths)


#: The subjects whose tracemalloc run takes heap graphs in the full matrix (``make experiment``): the
#: owners the report shows (the baseline, the regression check and the notebooks take none). Every layout but naive, whose two graphs took 20 s each and a forked copy
#: of 0.55 GiB at 65,536 slots (the others 0.7 to 7 s and 20 to 100 MiB; docs/owners.md): naive
#: takes them with ``memdiet matrix --subjects naive --probes tracemalloc --heap-graph``.
OWNERS_SUBJECTS = ("split", "bitfields", "nofd", "packed", "asyncio", "aiohttp", "uvicorn")


def default_plan(quick: bool) -> MatrixPlan:
    """Every layout under the study's probes, with its parameters (runs go to reports/runs)."""
    return MatrixPlan(base=QUICK if quick else FULL, layouts=default_subjects(quick),
                      probes=QUICK_PROBES if quick else FULL_PROBES)


def default_subjects(quick: bool) -> list[str]:
    """What a matrix runs unless told: every layout; the full matrix adds the peers of
    :data:`.subjects.FULL_PEERS` whose packages are installed (the bench extra)."""
    if quick:
        return list(LAYOUTS)
    return [*LAYOUTS, *(name for name in FULL_PEERS if not PEERS[name].missing_packages())]


def default_latest_dir(quick: bool) -> Path:
    """Where a matrix writes its report unless told: :data:`QUICK_LATEST_DIR` for the quick
    matrix, :data:`DEFAULT_LATEST_DIR` for the full one (relative to the working directory, as
    ``make`` runs from the repository root)."""
    return QUICK_LATEST_DIR if quick else DEFAULT_LATEST_DIR


__all__ = ["MatrixPlan", "OWNERS_SUBJECTS", "MatrixRecord", "run_matrix", "read_matrix", "default_plan", "default_latest_dir", "FULL",
           "QUICK", "FULL_PROBES", "QUICK_PROBES", "DEFAULT_LATEST_DIR", "QUICK_LATEST_DIR", "PROBES"]
