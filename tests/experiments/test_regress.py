"""``memdiet baseline`` and ``memdiet regress`` on one real (tiny) matrix: the runs hold against a
baseline of figures derived without them (an outside oracle); halved, it fails naming the metrics;
from another CPython or broken, it is refused with one line. The tolerances are checked against the
literal figures the policy states, so a changed constant in experiments/regress/ fails here. A real
run whose nofd slot carries one more 8-byte field (patched into the server process by a
``sitecustomize`` on PYTHONPATH, no server file touched) fails on ``bytes_per_slot`` +8 B.

The matrix is the session's (``quick_matrix`` in tests/conftest.py, with a baseline made from its runs
by ``memdiet baseline``); every test reads its run folders and edits a copy of a baseline.

Tolerances learned from noise (``memdiet baseline --repeat 3``) and the output formats are tested on
fake matrices (tests/fixtures/fake_runs.py) whose figures are known by hand: three matrices whose RSS
differs by exactly 40 KiB from one to the next, so the learned figures are literal.
"""

from __future__ import annotations

import json
import os
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

from ..conftest import TINY_RUN_ARGS, QuickMatrix
from ..conftest import TINY_RUN_OPTIONS as TINY
from ..conftest import memdiet as memdiet_subprocess
from ..fixtures import REPO
from ..fixtures.fake_runs import FAKE_ENVIRONMENT, write_fake_matrix
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
    assert document["schema"] == "memdiet.baseline/2"
    assert "noise" not in document  # one matrix: the fixed policy, nothing learned
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
    # PSS moves with what else maps the shared pages: 30%, and per held connection 2 x 1.2 MB / 50 = 48,000 B.
    assert tolerances["idle_pss_bytes"] == tolerances["held_pss_bytes"] == (0.30, 0.0)
    assert tolerances["pss_bytes_per_held_connection"] == pytest.approx((0.30, 48_000.0))


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


def test_every_metric_has_a_measured_noise_floor():
    """A learned tolerance never goes below twice what the long series measured: every metric needs
    its range there (MEASURED_RANGES in experiments/regress/tolerances.py), or three quiet matrices
    could learn a band of nothing."""
    from experiments.regress.tolerances import MEASURED_RANGES, noise_floor

    assert [name for name in METRICS if name not in MEASURED_RANGES] == []
    # Literal: RSS 2 x 55 pages; heap per held connection 2 x 173 B / C at C = 100; req/s 2 x 176%.
    assert noise_floor("idle_rss_bytes", 100).absolute == 450_560.0
    assert noise_floor("heap_bytes_per_held_connection", 100).absolute == pytest.approx(3.46)
    assert noise_floor("req_per_s", 100).relative == pytest.approx(3.52)


# --- one more 8-byte field per slot, in a real run -----------------------------------------------
#: A sitecustomize module the server process imports at start-up (it is on PYTHONPATH): nofd's slot
#: class is replaced by a subclass with one more __slots__ entry, one more 8-byte pointer per slot.
ONE_MORE_FIELD = """
from server.layouts import nofd


class NofdSlotPlusOne(nofd.NofdSlot):
    __slots__ = ("extra",)


nofd.NofdTable.slot_class = NofdSlotPlusOne
"""


def test_one_more_field_per_slot_in_a_real_run_fails_bytes_per_slot_by_8_bytes(made, tmp_path, capsys):
    """A real tiny nofd run (tracemalloc probe) with one more field per slot, put in the session
    matrix's place, fails the session baseline: bytes_per_slot +8 B, table heap +8 B x max_conns."""
    patch = tmp_path / "patch"
    patch.mkdir()
    (patch / "sitecustomize.py").write_text(ONE_MORE_FIELD)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(patch), os.environ.get("PYTHONPATH")]))}
    parameters = json.loads(made["baseline"].read_text())["parameters"]  # the session matrix's (the quick one's)
    run = memdiet_subprocess("run", "--layout", "nofd", "--probe", "tracemalloc", *TINY_RUN_ARGS,
                             "--detail-interval", str(parameters["detail_interval_s"]),
                             "--sample-hz", str(parameters["sample_hz"]),
                             "--runs-dir", str(tmp_path / "runs"), env=environment)
    assert run.returncode == 0, run.stderr[-3000:]
    [patched] = [path for path in (tmp_path / "runs").iterdir() if path.is_dir()]

    runs = run_dirs(made, leave_out="nofd-tracemalloc") + [str(patched)]
    code, out, err = regress(made["baseline"], tmp_path / "out", runs, capsys)
    assert code == 1, out + err
    rows = {(r["layout"], r["metric"]): r for r in json.loads((tmp_path / "out" / "regression.json").read_text())["rows"]}
    slot = rows["nofd", "bytes_per_slot"]
    assert slot["verdict"] == REGRESSED and slot["change"] == pytest.approx(8.0, abs=0.05), slot
    table = rows["nofd", "table_heap_bytes"]
    assert table["verdict"] == REGRESSED and table["change"] == pytest.approx(8 * TINY["max_conns"], abs=200), table
    assert rows["nofd", "c_bytes_per_slot"]["verdict"] == OK  # the C struct did not change
    regressed = {key for key, row in rows.items() if row["verdict"] == REGRESSED}
    assert {layout for layout, _ in regressed} == {"nofd"}, regressed
    assert "| nofd      | bytes_per_slot" in out and "REGRESSED" in out


# --- tolerances learned from noise (fake matrices: every figure known by hand) ---------------------
#: Three matrices, each's RSS 40 KiB above the one before; the req/s of each differs by its seed.
RSS_STEP = 64 * 1024
#: packed's idle RSS with no noise and no offset: 14 MiB + (400,000 B + 16 B x 4,096 slots) x 1.05.
PACKED_IDLE_RSS = 15_168_876


def fake_matrices(root: Path, count: int = 3, **kwargs) -> list[Path]:
    """``count`` fake matrices under ``root`` (folder names ordered by matrix), RSS ``RSS_STEP`` apart."""
    paths = []
    for index in range(count):
        paths += write_fake_matrix(root, stamp=f"2026010{index + 1}T000000Z", seed=index + 1, rss_noise_bytes=0,
                                   rss_offset_bytes=index * RSS_STEP, **kwargs)
    return paths


@pytest.fixture(scope="module")
def learned(tmp_path_factory) -> Path:
    """A baseline ``memdiet baseline --repeat 3`` learned from three fake matrices' run folders."""
    root = tmp_path_factory.mktemp("learned")
    runs = fake_matrices(root / "runs")
    path = root / "baseline.json"
    assert main(["baseline", "--repeat", "3", *map(str, runs), "-o", str(path)]) == 0
    return path


def test_learned_baseline_records_k_the_spread_and_the_rule(learned):
    document = json.loads(learned.read_text())
    noise = document["noise"]
    assert noise["repeat"] == 3 and noise["multiple"] == 4
    assert noise["rule"].startswith("baseline = median of the K matrices; noise band = max(4 x the largest range")
    assert [len(names) for names in noise["matrices"]] == [10, 10, 10]
    # RSS moved by exactly two steps in every layout: 128 KiB, in bytes (RSS noise is pages, not a share).
    assert noise["spread"]["idle_rss_bytes"] == {"scale": "absolute", "worst_range": 131_072.0,
                                                 "worst_layout": "naive", "band": {"relative": 0.0, "absolute": 524_288.0}}
    packed = document["layouts"]["packed"]["idle_rss_bytes"]
    assert packed["values"] == [PACKED_IDLE_RSS, PACKED_IDLE_RSS + RSS_STEP, PACKED_IDLE_RSS + 2 * RSS_STEP]
    assert packed["value"] == PACKED_IDLE_RSS + RSS_STEP  # the median

    tolerances = document["tolerances"]
    # Learned: 4 x 128 KiB = 512 KiB, above the floor (2 x 55 pages = 440 KiB); the fixed 10% kept for another machine.
    rss = tolerances["idle_rss_bytes"]
    assert (rss["rule"], rss["relative"], rss["absolute"]) == ("learned", 0.0, 524_288.0)
    assert rss["other_machine"]["relative"] == 0.10 and rss["other_machine"]["rule"] == "fixed"
    # req/s moved by more than a fifth: 4 x its range is past a total collapse, so the drop is capped at 80%.
    assert tolerances["req_per_s"]["rule"] == "learned" and tolerances["req_per_s"]["relative"] == 0.80
    # Deterministic heap figures keep their fixed rule; the band beside it is the floor (they did not move):
    # 2 x the 0.04% measured for bytes per slot.
    slot = tolerances["bytes_per_slot"]
    assert (slot["rule"], slot["relative"], slot["absolute"]) == ("fixed", 0.01, 0.0)
    assert slot["noise"]["relative"] == pytest.approx(0.0008) and "other_machine" not in slot
    assert (tolerances["c_bytes_per_slot"]["relative"], tolerances["c_bytes_per_slot"]["absolute"]) == (0.0, 0.0)


def test_baseline_repeat_prints_what_it_learned(learned, tmp_path, capsys):
    runs = fake_matrices(tmp_path / "runs")
    assert main(["baseline", "--repeat", "3", *map(str, runs), "-o", str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"baseline: {tmp_path / 'b.json'}: ")
    assert out[1].startswith("tolerances learned from 3 matrices: baseline = median")
    rss = next(line for line in out if line.startswith("| idle_rss_bytes "))
    assert [cell.strip() for cell in rss.strip("|").split("|")] == [
        "idle_rss_bytes", "128.0 KiB", "naive", "±512.0 KiB", "learned", "+512.0 KiB", "+10%"]


def test_baseline_repeat_runs_the_matrix_k_times(tmp_path, monkeypatch, capsys):
    """Without run folders, ``--repeat 3`` runs the plan three times (the matrices are fake: the
    command's run_plan is replaced by one handing out three fake matrices in turn)."""
    roots = [tmp_path / f"m{index}" for index in range(3)]
    for index, root in enumerate(roots):
        write_fake_matrix(root, stamp=f"2026010{index + 1}T000000Z", seed=index + 1, rss_noise_bytes=0,
                          rss_offset_bytes=index * RSS_STEP)
    handed: list[Path] = []

    def next_matrix(plan, latest_dir):
        root = roots[len(handed)]
        handed.append(root)
        from experiments.dataset.results import find_runs

        return [load_run(path) for path in find_runs(root)], []

    monkeypatch.setattr(baseline_command, "run_plan", next_matrix)
    out = tmp_path / "baseline.json"
    assert main(["baseline", "--quick", "--repeat", "3", "-o", str(out), "--runs-dir", str(tmp_path / "runs")]) == 0
    assert handed == roots
    document = json.loads(out.read_text())
    assert document["noise"]["repeat"] == 3
    assert document["tolerances"]["idle_rss_bytes"]["absolute"] == 524_288.0
    assert "baseline: matrix 3 of 3" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, expected", [
    (["--repeat", "2"], "--repeat: 2: give 1 (one matrix, the fixed policy) or 3 to 50 matrices"),
    (["--repeat", "three"], "--repeat: a whole number is expected, not 'three'"),
])
def test_baseline_repeat_below_three_is_one_line_and_exit_2(arguments, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["baseline", "--quick", *arguments, "-o", str(tmp_path / "b.json")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "b.json").exists()


def test_baseline_repeat_with_runs_of_one_matrix_is_refused(tmp_path, capsys):
    runs = write_fake_matrix(tmp_path / "runs", rss_noise_bytes=0)
    code = main(["baseline", "--repeat", "3", *map(str, runs), "-o", str(tmp_path / "b.json")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "--repeat 3 needs 3 runs of each layout and probe: " in err and "naive/rss has 1" in err
    assert not (tmp_path / "b.json").exists()


def test_a_deterministic_figure_that_does_not_reproduce_makes_no_baseline(tmp_path, capsys):
    """One of three matrices with packed's slot 2% larger: bytes_per_slot moved past its fixed 1%
    across matrices of (supposedly) the same code, so no baseline is learned from them."""
    runs = fake_matrices(tmp_path / "runs", count=2)
    runs += write_fake_matrix(tmp_path / "runs", layouts=("naive", "split", "bitfields", "nofd"), stamp="20260103T000000Z",
                              seed=3, rss_noise_bytes=0)
    runs += write_fake_matrix(tmp_path / "runs", layouts=("packed",), stamp="20260103T000000Z", seed=3,
                              rss_noise_bytes=0, bytes_per_slot=16.0 * 1.02)
    code = main(["baseline", "--repeat", "3", *map(str, runs), "-o", str(tmp_path / "b.json")])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1, err
    # 16.32 B x 4,096 slots = 66,846 B against 65,536 B twice: 1,310 B, past 1% of the median (655.36 B).
    assert err == ("memdiet baseline failed: packed table_heap_bytes moved by 1,310 across the 3 matrices (65,536, "
                   "65,536, 66,846), more than its fixed tolerance allows (655.36): a deterministic figure did not "
                   "reproduce; no baseline written\n"), err
    assert not (tmp_path / "b.json").exists()


def fourth_matrix(root: Path, **kwargs) -> list[str]:
    return list(map(str, write_fake_matrix(root, stamp="20260104T000000Z", seed=4, rss_noise_bytes=0, **kwargs)))


def test_a_change_within_tolerance_but_beyond_the_noise_is_reported(learned, tmp_path, capsys):
    """packed's slot 0.6% larger (16.0 -> 16.1 B): within bytes_per_slot's fixed 1%, so the check
    passes, but beyond the 0.08% noise band, and the report says so."""
    runs = fourth_matrix(tmp_path / "runs", rss_offset_bytes=RSS_STEP)
    code, out, err = regress(learned, tmp_path / "out", runs[:-1] + fourth_matrix(
        tmp_path / "packed", layouts=("packed",), probes=("tracemalloc",), bytes_per_slot=16.1,
        rss_offset_bytes=RSS_STEP), capsys)
    assert code == 0, out + err
    rows = {(r["layout"], r["metric"]): r for r in json.loads((tmp_path / "out" / "regression.json").read_text())["rows"]}
    beyond = {key for key, row in rows.items() if row["beyond_noise"]}
    assert beyond == {("packed", "table_heap_bytes"), ("packed", "bytes_per_slot")}, beyond
    slot = rows["packed", "bytes_per_slot"]
    assert slot["verdict"] == OK and slot["rule"] == "fixed"
    assert slot["noise_band"] == pytest.approx(16.0 * 0.0008) and slot["change"] == pytest.approx(0.1, abs=0.001)
    figures = sum(len(by_name) for by_name in json.loads(learned.read_text())["layouts"].values())
    assert out.splitlines()[-1] == f"memdiet regress: PASS: all {figures} figures within tolerance (2 beyond the noise)"
    assert any(line.startswith("| packed    | bytes_per_slot") and line.rstrip().endswith("| ok, beyond noise |")
               for line in out.splitlines()), out
    markdown = (tmp_path / "out" / "regression.md").read_text()
    section = markdown.split("## Beyond the noise", 1)[1].split("## Every figure", 1)[0]
    assert "- **packed** `bytes_per_slot`: 16.0 B → 16.1 B (+0.62%; noise ±0.08%, tolerance +1%): ok" in section


def test_rss_beyond_its_learned_noise_fails_on_the_baseline_machine_only(learned, tmp_path, capsys):
    """RSS 600 KiB above the baseline's median: past the learned 512 KiB (the fixed 10% would let it
    pass), so it fails; from another machine the learned tolerance does not hold and the fixed 10% judges."""
    shift = RSS_STEP + 600 * 1024
    code, out, err = regress(learned, tmp_path / "here", fourth_matrix(tmp_path / "here-runs", rss_offset_bytes=shift),
                             capsys)
    assert code == 1, out + err
    rows = json.loads((tmp_path / "here" / "regression.json").read_text())["rows"]
    rss = [r for r in rows if r["metric"] == "idle_rss_bytes"]
    assert [(r["verdict"], r["rule"], r["change"]) for r in rss] == [(REGRESSED, "learned", 600 * 1024)] * len(LAYOUTS)
    assert {r["metric"] for r in rows if r["verdict"] == REGRESSED} <= {
        "idle_rss_bytes", "held_rss_bytes", "loaded_peak_rss_bytes", "after_rss_bytes", "idle_uss_bytes", "idle_pss_bytes",
        "held_pss_bytes"}

    elsewhere = {**FAKE_ENVIRONMENT, "cpu_model": "Another CPU @ 3.0GHz"}
    code, out, err = regress(learned, tmp_path / "there", fourth_matrix(tmp_path / "there-runs", rss_offset_bytes=shift,
                                                                      environment=elsewhere), capsys)
    assert code == 0, out + err
    document = json.loads((tmp_path / "there" / "regression.json").read_text())
    assert document["machine_changes"] == ["cpu_model"]
    rss = [r for r in document["rows"] if r["metric"] == "idle_rss_bytes"]
    assert {(r["verdict"], r["rule"], r["noise_band"]) for r in rss} == {(OK, "other machine", None)}
    bytes_per_slot = [r for r in document["rows"] if r["metric"] == "bytes_per_slot"]
    assert {r["rule"] for r in bytes_per_slot} == {"fixed"}  # deterministic: the same rule everywhere
    markdown = (tmp_path / "there" / "regression.md").read_text()
    assert "The tolerances learned on the baseline's machine do not hold here" in markdown


# --- machine-readable output -----------------------------------------------------------------------
def test_format_json_prints_the_regression_document(made, tmp_path, capsys):
    code = main(["regress", "--baseline", str(made["baseline"]), "-o", str(tmp_path), "--format", "json", *run_dirs(made)])
    out = capsys.readouterr().out
    assert code == 0
    document = json.loads(out)
    assert document == json.loads((tmp_path / "regression.json").read_text())
    assert document["schema"] == "memdiet.regression/1" and document["passed"] is True


def test_format_github_is_one_error_annotation_per_failing_figure(made, tmp_path, capsys):
    def halve_nofd(document):
        for figure in document["layouts"]["nofd"].values():
            figure["value"] /= 2

    baseline = edited_baseline(made, tmp_path, halve_nofd)
    code = main(["regress", "--baseline", str(baseline), "-o", str(tmp_path / "out"), "--format", "github",
                 *run_dirs(made)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    rows = json.loads((tmp_path / "out" / "regression.json").read_text())["rows"]
    failing = [r for r in rows if r["verdict"] in ("REGRESSED", "MISSING", "PROBE CHANGED")]
    errors = [line for line in lines if line.startswith("::error ")]
    assert failing and len(errors) == len(failing)
    assert all(r["layout"] == "nofd" for r in failing)
    # Properties escaped (":" and "," inside a value), the message's "%" escaped too.
    slot = next(line for line in errors if "nofd bytes_per_slot" in line)
    assert slot.startswith(f"::error file={baseline},title=memdiet regress%3A nofd bytes_per_slot::"
                           "nofd bytes_per_slot REGRESSED: "), slot
    assert "+100.0%25, tolerance +1%25" in slot
    notices = [line for line in lines if line.startswith("::notice ")]
    assert len(notices) == 1 and notices[0].startswith("::notice title=memdiet regress::memdiet regress: FAIL: ")
    assert lines[-1].startswith("memdiet regress: FAIL")  # the table and verdict follow, for the log

    code = main(["regress", "--baseline", str(made["baseline"]), "-o", str(tmp_path / "pass"), "--format", "github",
                 *run_dirs(made)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and not [line for line in lines if line.startswith("::error")]
    assert lines[0].startswith("::notice title=memdiet regress::memdiet regress: PASS")


def test_bad_format_is_one_line_and_exit_2(made, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["regress", "--baseline", str(made["baseline"]), "--format", "xml", *run_dirs(made)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "invalid choice: 'xml'" in err, err
