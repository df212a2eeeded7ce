"""``memdiet baseline`` and ``memdiet regress`` on one real (tiny) matrix: a baseline made from runs
holds against those runs; halved, it fails naming the metrics; broken, it is refused with one line.

The matrix runs once for the module, through ``memdiet baseline`` itself; every other test reads its
run folders and edits a copy of its baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.metrics import METRICS
from experiments.regress import (DETERMINISTIC_RELATIVE, HELD_HEAP_NOISE_BYTES, IMPROVED, OK, REGRESSED,
                                 THROUGHPUT_DROP, Tolerance, judge, tolerance_policy)
from experiments.results import find_runs
from server.layouts import LAYOUTS

REPO = Path(__file__).resolve().parent.parent
#: The quick matrix made smaller and shorter, so this module stays within its time budget.
TINY = {"max_conns": 4096, "connections": 50, "idle_s": 0.4, "load_s": 0.6}
#: Figures every layout's baseline holds whose halving must fail (memory: lower is better, > 0).
MEMORY_FIGURES = ("idle_rss_bytes", "held_rss_bytes", "table_heap_bytes", "bytes_per_slot", "c_bytes_per_slot")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A baseline made by ``memdiet baseline --quick`` (shrunk to TINY) from the matrix it ran."""
    root = tmp_path_factory.mktemp("regress")
    command = [sys.executable, "-m", "experiments", "baseline", "--quick", "--max-conns", str(TINY["max_conns"]),
               "--connections", str(TINY["connections"]), "--idle", str(TINY["idle_s"]), "--load", str(TINY["load_s"]),
               "--runs-dir", str(root / "runs"), "--latest-dir", str(root / "latest"), "-o", str(root / "baseline.json")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f"baseline: {root / 'baseline.json'}: "), result.stdout
    return {"root": root, "baseline": root / "baseline.json", "runs": root / "runs"}


def run_dirs(made: dict[str, Path], *, leave_out: str = "") -> list[str]:
    return [str(path) for path in find_runs(made["runs"]) if not (leave_out and path.name.endswith(leave_out))]


def edited_baseline(made: dict[str, Path], tmp_path: Path, edit) -> Path:
    """A copy of the module's baseline with ``edit(document)`` applied."""
    document = json.loads(made["baseline"].read_text())
    edit(document)
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(document))
    return path


def regress(baseline: Path, out_dir: Path, runs: list[str], capsys) -> tuple[int, str, str]:
    code = main(["regress", "--baseline", str(baseline), "-o", str(out_dir), *runs])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_baseline_records_figures_tolerances_matrix_and_machine(made):
    document = json.loads(made["baseline"].read_text())
    assert document["schema"] == "memdiet.baseline/1"
    parameters = document["parameters"]
    assert {name: parameters[name] for name in TINY} == TINY
    assert parameters["layouts"] == list(LAYOUTS) and parameters["probes"] == ["rss", "tracemalloc"]
    environment = document["environment"]
    for key in ("cpu_model", "cpu_count", "memory_total_bytes", "kernel", "python"):
        assert environment[key] not in (None, "mixed"), key
    assert environment["commit"] is not None  # "mixed" if a commit lands while the matrix runs
    assert list(document["layouts"]) == list(LAYOUTS)
    for layout, figures in document["layouts"].items():
        assert set(MEMORY_FIGURES) <= set(figures), layout
        assert set(figures) <= set(document["tolerances"]), layout
        assert figures["bytes_per_slot"]["probe"] == "tracemalloc" and figures["idle_rss_bytes"]["probe"] == "rss"
    tolerances = document["tolerances"]
    assert tolerances["bytes_per_slot"]["relative"] == DETERMINISTIC_RELATIVE
    assert tolerances["req_per_s"]["relative"] == THROUGHPUT_DROP
    # Per-connection noise floors are set for this matrix's C.
    assert tolerances["heap_bytes_per_held_connection"]["absolute"] == HELD_HEAP_NOISE_BYTES / TINY["connections"]


def test_regress_holds_against_a_baseline_of_the_same_runs(made, tmp_path, capsys):
    code, out, err = regress(made["baseline"], tmp_path, run_dirs(made), capsys)
    assert code == 0, out + err
    report = json.loads((tmp_path / "regression.json").read_text())
    figures = sum(len(f) for f in json.loads(made["baseline"].read_text())["layouts"].values())
    assert report["passed"] is True and report["exit_code"] == 0
    assert len(report["rows"]) == figures
    assert {row["verdict"] for row in report["rows"]} == {OK}
    assert out.splitlines()[0].split() == "| layout | metric | baseline | now | change | tolerance | verdict |".split()
    assert out.splitlines()[-1].startswith(f"memdiet regress: PASS: all {figures} figures within tolerance")
    markdown = (tmp_path / "regression.md").read_text()
    assert markdown.startswith("# memdiet regression check: PASS")
    assert "![memory per layout](regression-comparison.png)" in markdown
    assert (tmp_path / "regression-comparison.png").stat().st_size > 0


def test_halved_baseline_fails_naming_the_metrics(made, tmp_path, capsys):
    def halve(document):
        for figures in document["layouts"].values():
            for figure in figures.values():
                figure["value"] /= 2

    code, out, err = regress(edited_baseline(made, tmp_path, halve), tmp_path, run_dirs(made), capsys)
    assert code == 1, out + err
    rows = json.loads((tmp_path / "regression.json").read_text())["rows"]
    verdicts = {(row["layout"], row["metric"]): row["verdict"] for row in rows}
    for layout in LAYOUTS:
        for metric in MEMORY_FIGURES:
            assert verdicts[layout, metric] == REGRESSED, (layout, metric)
        assert verdicts[layout, "req_per_s"] == IMPROVED  # twice the halved throughput: better, not worse
    summary = out.splitlines()[-1]
    assert summary.startswith("memdiet regress: FAIL: ")
    worst = json.loads((tmp_path / "regression.json").read_text())["worst"]
    assert f"worst: {worst['layout']} {worst['metric']} +100.0% vs tolerance" in summary
    markdown = (tmp_path / "regression.md").read_text()
    failures = markdown.split("## Failures", 1)[1].split("## Every figure", 1)[0]
    for layout in LAYOUTS:
        assert f"- **{layout}** `bytes_per_slot`: REGRESSED" in failures


def test_figure_missing_now_fails_and_new_figure_passes(made, tmp_path, capsys):
    def forget_nofd_throughput(document):
        del document["layouts"]["nofd"]["req_per_s"]

    baseline = edited_baseline(made, tmp_path, forget_nofd_throughput)
    code, out, err = regress(baseline, tmp_path / "new", run_dirs(made), capsys)
    assert code == 0, out + err
    rows = json.loads((tmp_path / "new" / "regression.json").read_text())["rows"]
    assert [(r["layout"], r["metric"]) for r in rows if r["verdict"] == "new"] == [("nofd", "req_per_s")]

    # Without packed's tracemalloc run, packed has no heap figures: each is missing, and fails.
    code, out, err = regress(made["baseline"], tmp_path / "missing", run_dirs(made, leave_out="packed-tracemalloc"), capsys)
    assert code == 1, out + err
    rows = json.loads((tmp_path / "missing" / "regression.json").read_text())["rows"]
    missing = {r["metric"] for r in rows if r["verdict"] == "MISSING"}
    assert {"bytes_per_slot", "table_heap_bytes", "held_heap_bytes"} <= missing
    assert {r["layout"] for r in rows if r["verdict"] == "MISSING"} == {"packed"}
    assert "worst: packed " in out.splitlines()[-1]


def _not_json(path: Path) -> None:
    path.write_text('{"schema": "memdiet.baseline/1", "layouts": {')


def _no_tolerance(path: Path, made) -> None:
    document = json.loads(made["baseline"].read_text())
    del document["tolerances"]["bytes_per_slot"]
    path.write_text(json.dumps(document))


def _figure_not_a_number(path: Path, made) -> None:
    document = json.loads(made["baseline"].read_text())
    document["layouts"]["split"]["idle_rss_bytes"]["value"] = "16 MiB"
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("breakage, expected", [
    pytest.param(lambda path, made: None, "no such baseline file", id="missing"),
    pytest.param(lambda path, made: _not_json(path), "not valid JSON", id="truncated"),
    pytest.param(lambda path, made: path.write_text("[]"), "not a baseline", id="not-an-object"),
    pytest.param(_no_tolerance, "layouts.naive.bytes_per_slot has no tolerance", id="no-tolerance"),
    pytest.param(_figure_not_a_number, "layouts.split.idle_rss_bytes should be", id="figure-not-a-number"),
])
def test_bad_baseline_is_one_line_and_exit_2(made, tmp_path, capsys, breakage, expected):
    baseline = tmp_path / "baseline.json"
    breakage(baseline, made)
    code, out, err = regress(baseline, tmp_path / "out", run_dirs(made), capsys)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"memdiet regress: error: {baseline}: ") and expected in err, err
    assert not (tmp_path / "out" / "regression.json").exists()


def test_runs_of_another_matrix_are_bad_input(made, tmp_path, capsys):
    def other_size(document):
        document["parameters"]["max_conns"] = 8192

    code, out, err = regress(edited_baseline(made, tmp_path, other_size), tmp_path / "out", run_dirs(made), capsys)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "max_conns = 4096 but the baseline with 8192" in err, err


@pytest.mark.parametrize("baseline, now, worse, verdict", [
    (100.0, 101.5, +1, REGRESSED),  # memory up 1.5% against 1%
    (100.0, 100.9, +1, OK),
    (100.0, 98.0, +1, IMPROVED),  # memory down: better
    (1000.0, 300.0, -1, OK),  # throughput down 70% against 75%
    (1000.0, 200.0, -1, REGRESSED),
    (1000.0, 9000.0, -1, IMPROVED),
    (-6.0, 30.0, +1, OK),  # within the absolute floor although +600%
    (-6.0, 60.0, +1, REGRESSED),
])
def test_judge_fails_only_past_the_tolerance_in_the_worse_direction(baseline, now, worse, verdict):
    relative = 0.01 if worse > 0 else 0.75
    assert judge(baseline, now, Tolerance(relative, 40.0 if baseline < 0 else 0.0, ""), worse) == verdict


def test_every_metric_has_a_measured_tolerance():
    policy = tolerance_policy(METRICS, connections=100)
    defaults = [name for name, tolerance in policy.items() if tolerance.why.startswith("new ")]
    assert not defaults, f"metrics with no tolerance of their own in experiments.regress: {defaults}"
