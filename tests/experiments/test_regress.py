"""``memdiet baseline`` and ``memdiet regress`` on one real (tiny) matrix: the runs hold against a
baseline of figures derived without them (an outside oracle); halved, it fails naming the metrics;
from another CPython or broken, it is refused with one line. The tolerances are checked against the
literal figures the policy states, so a changed constant in experiments/regress/ fails here.

The matrix is the session's (``quick_matrix`` in tests/conftest.py, with a baseline made from its runs
by ``memdiet baseline``); every test reads its run folders and edits a copy of a baseline.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from experiments.cli import baseline as baseline_command
from experiments.cli import main
from experiments.dataset.metrics import METRICS
from experiments.dataset.results import load_run
from experiments.regress import (
    IMPROVED,
    OK,
    REGRESSED,
    Tolerance,
    judge,
    tolerance_policy,
)
from server.layouts import LAYOUTS, make_table

from ..conftest import TINY_RUN_OPTIONS as TINY
from ..conftest import QuickMatrix
from ..fixtures import REPO
from ..server.test_layouts_memory import C_BYTES_PER_SLOT, reachable_bytes

#: Figures every layout's baseline holds whose halving must fail (memory: lower is better, > 0).
MEMORY_FIGURES = ("idle_rss_bytes", "held_rss_bytes", "table_heap_bytes", "bytes_per_slot", "c_bytes_per_slot")


@pytest.fixture(scope="module")
def made(quick_matrix: QuickMatrix) -> dict[str, Path]:
    """The session's matrix and the baseline ``memdiet baseline`` made from its runs."""
    assert quick_matrix.baseline_stdout.startswith(f"baseline: {quick_matrix.baseline}: "), quick_matrix.baseline_stdout
    return {"root": quick_matrix.root, "baseline": quick_matrix.baseline, "runs": quick_matrix.runs}


def run_dirs(made: dict[str, Path], *, leave_out: str = "") -> list[str]:
    from experiments.dataset.results import find_runs

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
    # The policy's figures, as README states them: 1% for deterministic heap figures, exact for C
    # sizes and errors, 10% for RSS, only a drop of 80% for req/s.
    tolerances = {name: (t["relative"], t["absolute"]) for name, t in document["tolerances"].items()}
    assert tolerances["bytes_per_slot"] == tolerances["table_heap_bytes"] == (0.01, 0.0)
    assert tolerances["c_bytes_per_slot"] == tolerances["errors"] == (0.0, 0.0)
    assert tolerances["idle_rss_bytes"] == tolerances["held_rss_bytes"] == (0.10, 0.0)
    assert tolerances["req_per_s"] == (0.80, 0.0)
    # Steady heap totals: 1% or 32 KiB (four times the 7.6 KB range measured) = 32,768 B.
    assert tolerances["idle_heap_bytes"] == tolerances["held_heap_bytes"] == (0.01, 32_768.0)
    # Per-connection noise floors are set for this matrix's C = 50: held heap 512 B / 50 = 10.24 B;
    # RSS 4 pages / 50 = 4 x 4,096 / 50 = 327.68 B.
    assert tolerances["heap_bytes_per_held_connection"] == pytest.approx((0.01, 10.24))
    assert tolerances["rss_bytes_per_held_connection"] == pytest.approx((0.10, 327.68))


def oracle_baseline(made: dict[str, Path], tmp_path: Path) -> tuple[Path, int]:
    """A baseline of the deterministic figures, derived without the runs: table_heap_bytes and
    bytes_per_slot from :func:`reachable_bytes` (sys.getsizeof over a fresh table of the same size,
    no tracing), c_bytes_per_slot from the sizes worked out by hand, errors 0; the matrix's
    parameters, tolerances and machine copied from the made baseline (they are not figures).
    Returns its path and how many figures it holds."""
    document = json.loads(made["baseline"].read_text())
    max_conns = document["parameters"]["max_conns"]
    layouts = {}
    for layout in LAYOUTS:
        table_bytes = reachable_bytes(make_table(layout, max_conns))
        layouts[layout] = {
            "table_heap_bytes": {"value": table_bytes, "probe": "tracemalloc"},
            "bytes_per_slot": {"value": table_bytes / max_conns, "probe": "tracemalloc"},
            "c_bytes_per_slot": {"value": C_BYTES_PER_SLOT[layout], "probe": "tracemalloc"},
            "errors": {"value": 0, "probe": "rss"},
        }
    document["layouts"] = layouts
    path = tmp_path / "oracle-baseline.json"
    path.write_text(json.dumps(document))
    return path, 4 * len(LAYOUTS)


def test_regress_holds_against_a_baseline_derived_without_the_runs(made, tmp_path, capsys):
    baseline, figures = oracle_baseline(made, tmp_path)
    code, out, err = regress(baseline, tmp_path, run_dirs(made), capsys)
    assert code == 0, out + err
    report = json.loads((tmp_path / "regression.json").read_text())
    assert report["passed"] is True and report["exit_code"] == 0
    compared = [row for row in report["rows"] if row["verdict"] != "new"]
    assert len(compared) == figures
    assert {row["verdict"] for row in compared} == {OK}, [r for r in compared if r["verdict"] != OK]
    # Every other figure the runs hold is reported as new, and passes.
    assert len(report["rows"]) == sum(len(f) for f in json.loads(made["baseline"].read_text())["layouts"].values())
    assert out.splitlines()[0].split() == "| layout | metric | baseline | now | change | tolerance | verdict |".split()
    assert out.splitlines()[-1].startswith(f"memdiet regress: PASS: all {figures} figures within tolerance")
    markdown = (tmp_path / "regression.md").read_text()
    assert markdown.startswith("# memdiet regression check: PASS")
    assert "![memory per layout](regression-comparison.png)" in markdown
    assert (tmp_path / "regression-comparison.png").stat().st_size > 0


def test_oracle_figure_one_field_larger_fails(made, tmp_path, capsys):
    """The oracle baseline is no formality: against nofd's slot worked out 8 B smaller (one 8-byte
    field fewer: 80.7 - 8 = 72.7 B), the runs' 80.7 B is +11% against 1%, a regression, and the
    only one."""
    baseline, _ = oracle_baseline(made, tmp_path)
    document = json.loads(baseline.read_text())
    document["layouts"]["nofd"]["bytes_per_slot"]["value"] -= 8
    baseline.write_text(json.dumps(document))
    code, out, err = regress(baseline, tmp_path / "out", run_dirs(made), capsys)
    assert code == 1, out + err
    rows = json.loads((tmp_path / "out" / "regression.json").read_text())["rows"]
    assert [(r["layout"], r["metric"]) for r in rows if r["verdict"] == REGRESSED] == [("nofd", "bytes_per_slot")]


def test_baseline_quick_runs_the_quick_matrix_with_the_options_given(made, tmp_path, monkeypatch, capsys):
    """``memdiet baseline --quick`` with run options makes the quick matrix at those options (the
    matrix itself is the session's: the command's run_plan is replaced by one returning its runs)."""
    planned = []

    def session_runs(plan, latest_dir):
        planned.append((plan, latest_dir))
        return [load_run(Path(path)) for path in run_dirs(made)], []

    monkeypatch.setattr(baseline_command, "run_plan", session_runs)
    out = tmp_path / "baseline.json"
    code = main(["baseline", "--quick", "--max-conns", "4096", "--connections", "50", "--idle", "0.4", "--load", "0.6",
                 "--runs-dir", str(tmp_path / "runs"), "--latest-dir", str(tmp_path / "latest"), "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    [(plan, latest_dir)] = planned
    assert latest_dir == tmp_path / "latest"
    assert (plan.base.max_conns, plan.base.connections, plan.base.idle_s, plan.base.load_s) == (4096, 50, 0.4, 0.6)
    assert plan.base.runs_dir == tmp_path / "runs"
    assert list(plan.layouts) == list(LAYOUTS) and list(plan.probes) == ["rss", "tracemalloc"]
    figures = sum(len(by_metric) for by_metric in json.loads(out.read_text())["layouts"].values())
    assert capsys.readouterr().out.startswith(f"baseline: {out}: {figures} figures")


def test_baseline_from_another_cpython_minor_is_refused(made, tmp_path, capsys):
    """Heap figures differ between CPython minors (object layouts, dict sizes): a baseline made on
    another is refused, in one line, rather than failing or passing on figures that cannot compare."""
    def made_on_312(document):
        document["environment"]["python"] = "3.12.4"

    code, out, err = regress(edited_baseline(made, tmp_path, made_on_312), tmp_path / "out", run_dirs(made), capsys)
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "CPython 3.12" in err and f"CPython {minor}" in err, err
    assert not (tmp_path / "out" / "regression.json").exists()

    # Asked to run the matrix itself, it refuses before running anything.
    code = main(["regress", "--quick", "--baseline", str(tmp_path / "baseline.json"), "-o", str(tmp_path / "quick"),
                 "--runs-dir", str(tmp_path / "runs"), "--latest-dir", str(tmp_path / "latest")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "this run is on CPython" in err, err
    assert not (tmp_path / "runs").exists()


def test_committed_baseline_states_its_interpreter():
    """reports/baseline.json holds for the CPython minor it names (regress refuses it on another)."""
    from experiments.regress import DEFAULT_BASELINE, interpreter_minor, load_baseline

    baseline = load_baseline(REPO / DEFAULT_BASELINE)
    assert interpreter_minor(baseline.environment) is not None, baseline.environment
    assert interpreter_minor({"python": "3.11.7", "python_implementation": "CPython"}) == "CPython 3.11"


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
