"""What a report is made of and what it points at (issue 16, items 3 and 8).

A report links only to files in its own folder (run folders are git-ignored, so a committed report
must not link to them); it says which run fed each layout and probe; it refuses runs of matrices
made with different parameters unless asked to separate them; a quick matrix writes its report
apart from the committed full one. Fake run folders (tests/fixtures/fake_runs.py), no server.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from experiments import cli
from experiments.measure import matrix
from experiments.dataset.results import find_runs, load_run
from experiments.measure.matrix import (
    QUICK,
    MatrixOutcome,
    MatrixPlan,
    read_matrix,
    write_latest,
)
from experiments.measure.runner import RunFailed
from experiments.render.report_md import IncomparableRuns, build_report
from tests.fixtures.fake_runs import write_fake_matrix, write_fake_run

from ..fixtures import REPO

LINK = re.compile(r"\]\(([^)]+)\)")


def links_of(index: Path) -> list[str]:
    return LINK.findall(index.read_text())


def assert_links_stay_inside(index: Path) -> None:
    """Every link of ``index`` names an existing file inside the index's folder."""
    folder = index.parent.resolve()
    for target in links_of(index):
        resolved = (folder / target).resolve()
        assert resolved.is_relative_to(folder), f"{index.name} links outside its folder: {target}"
        assert resolved.is_file(), f"{index.name} links to a file that is not there: {target}"


@pytest.fixture
def placeholder_charts(monkeypatch):
    """Charts written as empty files: for tests about which runs a report uses, not how it draws
    (drawing a report's charts takes seconds)."""
    from experiments.render import report_md

    def placeholder(_what, stem, *_args, **_kwargs):
        for suffix in (".png", ".svg"):
            Path(f"{stem}{suffix}").write_bytes(b"")

    for name in ("render_comparison", "render_anatomy", "render_massif_curve"):
        monkeypatch.setattr(report_md, name, placeholder)


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory) -> Path:
    """reports/runs as a matrix leaves it, plus a memray run and a later interrupted one."""
    root = tmp_path_factory.mktemp("reports")
    runs = root / "runs"
    write_fake_matrix(runs, layouts=("naive", "nofd", "packed"))
    write_fake_run(runs, "packed", "memray")
    write_fake_run(runs, "naive", "rss", status="incomplete", stamp="20260102T000000Z")
    return root


@pytest.fixture(scope="module")
def report(fake_runs) -> Path:
    return build_report([load_run(p) for p in find_runs(fake_runs / "runs")], fake_runs / "latest")


# --- links -----------------------------------------------------------------------------------------
def test_report_links_only_to_files_in_its_own_folder(report):
    assert links_of(report), "the report links to its charts at least"
    assert_links_stay_inside(report)


def test_report_names_every_run_folder_relative_to_itself(report, fake_runs):
    text = report.read_text()
    for run_dir in find_runs(fake_runs / "runs"):
        assert f"`../runs/{run_dir.name}`" in text
    assert str(fake_runs) not in text, "an absolute path in the report"


def test_runs_section_says_which_run_fed_each_layout_and_probe(report):
    section = report.read_text().split("## Runs", 1)[1].split("\n## ", 1)[0]
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): line
            for line in section.splitlines() if line.startswith("| ") and "---" not in line}
    expected_pairs = {(layout, probe) for layout in ("naive", "nofd", "packed") for probe in ("rss", "tracemalloc")}
    assert set(rows) - {("layout", "probe")} == expected_pairs | {("packed", "memray")}
    used_naive_rss = rows["naive", "rss"].split("|")[3]
    assert "20260101T000000Z-naive-rss" in used_naive_rss
    # The later run did not complete: listed, as not used.
    assert "20260102T000000Z-naive-rss` (incomplete)" in rows["naive", "rss"].split("|")[5]
    assert "flamegraph.html" in rows["packed", "memray"] and "massif.out" in rows["nofd", "tracemalloc"]


def test_committed_report_holds_no_absolute_path_and_no_dead_link():
    latest = REPO / "reports" / "latest"
    committed = subprocess.run(["git", "ls-files", "reports"], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.split()
    texts = [name for name in committed if name.endswith((".md", ".json", ".csv"))]
    assert "reports/bench/bench.json" in texts and "reports/latest/index.md" in texts
    for name in texts:
        text = (REPO / name).read_text()
        assert str(REPO) not in text and not re.search(r'"/(home|work|tmp|root|Users)/', text), name
    assert_links_stay_inside(latest / "index.md")
    for run_path in json.loads((latest / "matrix.json").read_text())["runs"]:
        assert not Path(run_path).is_absolute(), run_path


# --- matrix.json -------------------------------------------------------------------------------------
def test_matrix_json_records_runs_relative_to_itself_and_survives_a_move(tmp_path, placeholder_charts):
    reports = tmp_path / "reports"
    reports.mkdir()
    runs_dir = reports / "runs"
    write_fake_matrix(runs_dir, layouts=("nofd", "packed"), probes=("rss",))
    runs = [load_run(p) for p in find_runs(runs_dir)]
    plan = MatrixPlan(base=QUICK, layouts=["nofd", "packed"], probes=["rss"])
    write_latest(runs, reports / "quick", plan)

    document = json.loads((reports / "quick" / "matrix.json").read_text())
    assert document["runs"] == [f"../runs/{run.path.name}" for run in runs]
    assert "runs_dir" not in document["parameters"]
    moved = tmp_path / "elsewhere" / "reports"
    moved.parent.mkdir()
    reports.rename(moved)
    record = read_matrix(moved / "quick" / "matrix.json")
    assert record.run_paths == [moved / "runs" / run.path.name for run in runs]
    assert record.missing_runs() == []


def test_a_failed_run_never_picks_up_an_older_matrixs_folder(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    old = write_fake_run(runs_dir, "packed", "rss", stamp="20200101T000000Z", max_conns=65536)

    def fail_before_making_a_folder(config, progress=None):
        raise RunFailed(f"{config.subject}: server did not start")

    monkeypatch.setattr(matrix, "run_once", fail_before_making_a_folder)
    plan = MatrixPlan(base=replace(QUICK, runs_dir=runs_dir), layouts=["packed"], probes=["rss"])
    outcome = matrix.run_matrix(plan, latest_dir=tmp_path / "quick")
    assert outcome.failures and old not in [run.path for run in outcome.runs]
    assert read_matrix(tmp_path / "quick" / "matrix.json").run_paths == []


# --- the quick matrix goes elsewhere ---------------------------------------------------------------
def test_quick_matrix_writes_reports_quick_and_the_full_one_reports_latest(monkeypatch, capsys):
    seen = []

    def fake_run_matrix(plan, *, latest_dir, on_run_start=None, on_phase=None):
        seen.append(Path(latest_dir))
        return MatrixOutcome([], [], None)

    monkeypatch.setattr(matrix, "run_matrix", fake_run_matrix)
    assert cli.main(["matrix", "--quick"]) == 0
    assert cli.main(["matrix", "--layouts", "packed", "--probes", "rss"]) == 0
    assert cli.main(["matrix", "--quick", "--latest-dir", "somewhere"]) == 0
    assert seen == [Path("reports/quick"), Path("reports/latest"), Path("somewhere")]


def test_quick_results_and_run_folders_are_git_ignored():
    for path in ("reports/quick/index.md", "reports/quick/matrix.json", "reports/runs/20260101T000000Z-nofd-rss/result.json"):
        checked = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert checked.returncode == 0, f"{path} is not git-ignored"
    tracked = subprocess.run(["git", "check-ignore", "-q", "reports/latest/index.md"], cwd=REPO)
    assert tracked.returncode == 1, "the full report must stay committed"


# --- runs of several matrices ----------------------------------------------------------------------
@pytest.fixture
def two_matrices(tmp_path) -> list[Path]:
    """A full-size matrix with memray, then a smaller quick one without: `reports/runs/*` after both."""
    runs_dir = tmp_path / "runs"
    layouts = ("naive", "packed")  # two layouts keep the charts few
    write_fake_matrix(runs_dir, layouts, probes=("rss", "tracemalloc", "memray"), max_conns=65536, connections=1000)
    write_fake_matrix(runs_dir, layouts, stamp="20260105T000000Z", max_conns=8192, connections=100)
    return find_runs(runs_dir)


def test_report_refuses_runs_made_with_different_parameters(two_matrices, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["report", *map(str, two_matrices), "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    # The tables would take rss and tracemalloc from the later matrix, memray from the earlier one.
    assert "max_conns 8,192 (4 runs), 65,536 (2 runs)" in error and "connections" in error
    assert "--allow-mixed" in error
    assert not out.exists(), "nothing written when refused"


def test_report_of_one_matrix_among_older_runs_is_not_refused(tmp_path, placeholder_charts):
    """Older runs of the same layout and probe do not count: only the runs the tables use."""
    runs_dir = tmp_path / "runs"
    write_fake_matrix(runs_dir, layouts=("nofd",), max_conns=65536)
    write_fake_matrix(runs_dir, layouts=("nofd",), stamp="20260105T000000Z", max_conns=8192)
    index = build_report([load_run(p) for p in find_runs(runs_dir)], tmp_path / "out")
    assert "8,192" in index.read_text()


def test_allow_mixed_writes_one_report_per_parameter_set(two_matrices, tmp_path, capsys, placeholder_charts):
    out = tmp_path / "out"
    assert cli.main(["report", *map(str, two_matrices), "-o", str(out), "--allow-mixed"]) == 0
    index = out / "index.md"
    assert_links_stay_inside(index)
    sets = sorted(out.glob("set-*/index.md"))
    assert [p.parent.name for p in sets] == ["set-1", "set-2"]
    text = index.read_text()
    assert "max_conns" in text and "8,192" in text and "65,536" in text
    for sub_index in sets:
        assert_links_stay_inside(sub_index)
        sub_text = sub_index.read_text()
        assert "max_conns = mixed" not in sub_text
        (max_conns,) = set(re.findall(r"max_conns \(preallocated slots\) = ([\d,]+)", sub_text))
        used = re.findall(r"\| `[^`]*?(\d{8}T\d{6}Z)-", sub_text.split("## Runs", 1)[1])
        stamps = {"65,536": {"20260101T000000Z"}, "8,192": {"20260105T000000Z"}}[max_conns]
        assert set(used) == stamps, f"{sub_index}: runs of another parameter set used"
    # Set 1 is the one with the most complete runs: the full matrix's 6 against the quick one's 4.
    assert "max_conns (preallocated slots) = 65,536" in sets[0].read_text()


def test_build_report_raises_before_writing(two_matrices, tmp_path):
    with pytest.raises(IncomparableRuns, match="max_conns"):
        build_report([load_run(p) for p in two_matrices], tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- snapshot dumps are loaded without running code -------------------------------------------------
class _RunsCode:
    """What a crafted dump unpickles to: a call of os.system (touching a file), by __reduce__."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_phase_snapshots_refuse_a_dump_that_would_run_code(tmp_path):
    import tracemalloc

    from experiments import study
    from tracemalloc_viewer import ViewerInputError

    run_dir = write_fake_run(tmp_path / "runs", "nofd", "tracemalloc")
    tracemalloc.start()
    honest = tracemalloc.take_snapshot()
    tracemalloc.stop()
    honest.dump(str(run_dir / "0-idle-empty.tmsnap"))
    document = json.loads((run_dir / "result.json").read_text())
    document["files"]["snapshots"] = ["0-idle-empty.tmsnap"]
    (run_dir / "result.json").write_text(json.dumps(document))
    [(phase, loaded)] = study.phase_snapshots(load_run(run_dir))
    assert phase == "idle-empty" and len(loaded.traces) == len(honest.traces)

    marker = tmp_path / "ran"
    (run_dir / "1-ramp.tmsnap").write_bytes(pickle.dumps(_RunsCode(marker)))
    document["files"]["snapshots"].append("1-ramp.tmsnap")
    (run_dir / "result.json").write_text(json.dumps(document))
    with pytest.raises(ViewerInputError, match="refused"):
        study.phase_snapshots(load_run(run_dir))
    assert not marker.exists(), "loading the dump ran its code"
