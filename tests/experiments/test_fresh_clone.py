"""What a fresh clone has: the committed report, no run folders (issue 16, items 1 and 8).

The committed ``reports/latest/matrix.json`` names run folders that are git-ignored, so on a fresh
clone they are not there: the notebooks' loading path (experiments.study) must take that as "no
results yet" and make its small quick matrix into ``reports/quick/``, never fail with a
ResultError; and a quick matrix must leave ``git status`` clean. The last test does it for real in
a copy of the working tree (the files a clone would have once the tree is committed), with the
project's default paths.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from experiments import study
from experiments.measure.matrix import QUICK, MatrixPlan, read_matrix

from ..fixtures import REPO

COMMITTED_LATEST = REPO / "reports" / "latest"
#: One short run, enough to stand for the quick matrix (which makes ten of them).
TINY_PLAN = MatrixPlan(base=replace(QUICK, max_conns=256, connections=8, idle_s=0.2, load_s=0.2),
                       layouts=["packed"], probes=["rss"])
TINY_OPTIONS = ["--layouts", "packed", "--probes", "rss", "--max-conns", "256", "--connections", "8",
                "--idle", "0.2", "--load", "0.2"]


def clone_reports(tmp_path: Path) -> Path:
    """A reports folder as a fresh clone has it: the committed full report, no runs/."""
    reports = tmp_path / "reports"
    shutil.copytree(COMMITTED_LATEST, reports / "latest")
    return reports


def test_committed_matrix_names_runs_that_a_clone_does_not_have(tmp_path):
    reports = clone_reports(tmp_path)
    record = read_matrix(reports / "latest" / "matrix.json")
    assert record.run_paths and record.missing_runs() == record.run_paths
    assert all(path.parent == reports / "runs" for path in record.run_paths)


def test_a_matrix_without_its_run_folders_counts_as_no_results(tmp_path):
    reports = clone_reports(tmp_path)
    with pytest.raises(study.NoResults, match="run folder"):
        study.latest_runs(reports)


def test_ensure_results_makes_the_quick_matrix_apart_from_the_committed_report(tmp_path):
    reports = clone_reports(tmp_path)
    committed = {p.relative_to(reports): p.read_bytes() for p in (reports / "latest").rglob("*") if p.is_file()}
    said = []

    runs = study.ensure_results(root=reports, plan=TINY_PLAN, progress=said.append)

    assert [(run.layout, run.probe, run.status) for run in runs] == [("packed", "rss", "complete")]
    assert "not here" in said[0] and str(reports / "quick") in said[0]
    assert (reports / "quick" / "matrix.json").is_file() and (reports / "quick" / "index.md").is_file()
    assert {p.relative_to(reports): p.read_bytes() for p in (reports / "latest").rglob("*") if p.is_file()} == committed
    # And the next notebook reads what the first one made, without running it again.
    assert study.latest_matrix(reports).path == reports / "quick" / "matrix.json"
    assert [run.path for run in study.ensure_results(root=reports, plan=None, progress=None)] == [runs[0].path]


def test_latest_matrix_is_the_newest_one_whose_runs_are_here(tmp_path):
    reports = tmp_path / "reports"
    study.ensure_results(root=reports, plan=TINY_PLAN, progress=None)  # into quick/
    study.ensure_results(quick=False, root=tmp_path / "full", plan=TINY_PLAN, progress=None)
    shutil.copytree(tmp_path / "full" / "runs", reports / "runs", dirs_exist_ok=True)
    shutil.copytree(tmp_path / "full" / "latest", reports / "latest")

    def made_at(name: str, stamp: str) -> None:
        path = reports / name / "matrix.json"
        document = json.loads(path.read_text())
        path.write_text(json.dumps({**document, "created_utc": stamp}))

    made_at("latest", "2026-01-02T00:00:00+00:00")
    made_at("quick", "2026-01-01T00:00:00+00:00")
    assert study.latest_matrix(reports).path == reports / "latest" / "matrix.json"
    made_at("quick", "2026-01-03T00:00:00+00:00")
    assert study.latest_matrix(reports).path == reports / "quick" / "matrix.json"
    # The newer one's runs gone: the older one, whose runs are here, is read.
    shutil.rmtree(read_matrix(reports / "quick" / "matrix.json").run_paths[0])
    assert study.latest_matrix(reports).path == reports / "latest" / "matrix.json"


def _working_tree_copy(destination: Path) -> Path:
    """The working tree's files a clone would have (tracked or new, not ignored), in a new git
    repository with everything committed; no reports/runs, no .venv."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    subprocess.run(["git", "add", "-A"], cwd=destination, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "clone"], cwd=destination, check=True)
    return destination


def test_fresh_clone_loads_results_and_a_quick_matrix_leaves_git_status_clean(tmp_path):
    clone = _working_tree_copy(tmp_path / "clone")
    assert not (clone / "reports" / "runs").exists()
    env = {key: value for key, value in os.environ.items() if key not in (study.REPORTS_ENV, "PYTHONPATH")}
    env["PYTHONPATH"] = str(clone)  # the copy's code, so its default paths are the copy's

    def python(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, *args], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    # The notebooks' first cell, with the quick matrix cut to one run.
    loaded = python("-c", "from pathlib import Path; from experiments import study; "
                          "from tests.experiments.test_fresh_clone import TINY_PLAN; "
                          "assert study.REPO_ROOT == Path.cwd(), study.REPO_ROOT; "
                          "runs = study.ensure_results(plan=TINY_PLAN); print('loaded', len(runs), runs[0].path)")
    assert f"loaded 1 {clone / 'reports' / 'runs'}" in loaded.stdout
    # `make experiment QUICK=1`, smaller.
    python("-m", "experiments", "matrix", "--quick", *TINY_OPTIONS)
    assert len(read_matrix(clone / "reports" / "quick" / "matrix.json").run_paths) == 1

    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True)
    assert status.stdout == "", f"the quick matrix changed committed files:\n{status.stdout}"
