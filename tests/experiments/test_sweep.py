"""The scaling-law sweep: its statistics against literal oracles, a tiny real sweep, the command's errors.

- Student's t quantiles against printed tables; OLS on constructed data whose coefficients and
  standard errors are known in closed form (derivations in the comments), so the oracles are not
  the code's own output.
- The sweep's arithmetic (experiments/dataset/sweep.py) on runs built from a known law, the kernel
  hook, sweep.json round-trip and refusal; the allocator's stats parser on literal CPython output;
  the RLIMIT_NOFILE rule.
- A tiny real sweep (nofd and packed, two table sizes, two C, short phases; about 22 s): the fitted b
  within 5% of the two-size RSS slope, with its 95% interval reported, rendered to index.md and the
  chart; one real tracemalloc run read as the sweep reads it.
- ``memdiet sweep``: bad input is one line and exit 2; a run that fails is exit 1 with the points
  measured before it kept in sweep.json, marked incomplete.
- docs/scaling.md's fits table is the committed sweep (reports/latest/sweep/sweep.json), figure by
  figure within the rounding the page shows.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace

import pytest

from experiments.cli import main
from experiments.dataset.fit import FitError, ols, regularized_incomplete_beta, student_t_cdf, student_t_quantile
from experiments.dataset.results import load_run, write_json
from experiments.dataset.sweep import (
    KERNEL_METRIC,
    TARGET_HELD,
    TARGET_SLOTS,
    AllocatorDelta,
    HeapRun,
    RssRun,
    SweepError,
    analyse_layout,
    build_document,
    read_sweep,
)
from experiments.errors import BadInput
from experiments.measure import sweep as measure_sweep
from experiments.measure.pymalloc import AllocatorUnavailable, parse_mallocstats
from experiments.measure.runner import RunFailed, run_once
from experiments.measure.scenario import QUICK
from experiments.measure.sweep import TINY_PLAN, SweepPlan, Sweeper, check_plan, heap_run_of, plan_for
from experiments.render.sweep_chart import render_sweep_chart
from experiments.render.sweep_md import write_sweep_markdown

from ..fixtures import REPO
from ..test_readme_figures import agrees, section, table_after


# --- Student's t ------------------------------------------------------------------------------------
@pytest.mark.parametrize("p, dof, table", [
    (0.975, 10, 2.228139), (0.975, 30, 2.042272), (0.975, 1, 12.706205), (0.975, 2, 4.302653),
    (0.975, 5, 2.570582), (0.995, 5, 4.032143), (0.95, 2, 2.919986), (0.90, 3, 1.637744),
    (0.975, 120, 1.979930),
])
def test_t_quantile_matches_the_tables(p, dof, table):
    assert student_t_quantile(p, dof) == pytest.approx(table, abs=5e-7)
    assert student_t_quantile(1 - p, dof) == pytest.approx(-table, abs=5e-7)  # symmetric


def test_t_quantile_tends_to_the_normal_and_inverts_the_cdf():
    assert student_t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-6)
    assert student_t_quantile(0.5, 7) == 0.0
    for dof in (1, 3, 29):
        for p in (0.6, 0.9, 0.999):
            assert student_t_cdf(student_t_quantile(p, dof), dof) == pytest.approx(p, abs=1e-12)
    with pytest.raises(ValueError):
        student_t_quantile(1.0, 5)


def test_incomplete_beta_closed_forms():
    # I_x(1, 1) = x; I_x(a, 1) = x^a; I_x(1, b) = 1 - (1 - x)^b; I_0.5(a, a) = 1/2.
    assert regularized_incomplete_beta(0.3, 1, 1) == pytest.approx(0.3, abs=1e-14)
    assert regularized_incomplete_beta(0.7, 3.5, 1) == pytest.approx(0.7 ** 3.5, abs=1e-14)
    assert regularized_incomplete_beta(0.2, 1, 4) == pytest.approx(1 - 0.8 ** 4, abs=1e-14)
    assert regularized_incomplete_beta(0.5, 7.5, 7.5) == pytest.approx(0.5, abs=1e-14)
    assert student_t_cdf(0.0, 4) == 0.5
    # Student's t with 1 degree of freedom is Cauchy: F(t) = 1/2 + atan(t)/pi.
    assert student_t_cdf(2.5, 1) == pytest.approx(0.5 + math.atan(2.5) / math.pi, abs=1e-14)


# --- least squares ------------------------------------------------------------------------------------
def test_ols_line_with_known_residuals():
    """y = 1 + 2x plus residuals (1, -1, 0, -1, 1), which sum to 0 and are orthogonal to x, so the
    fit is exactly (1, 2). RSS 4, 3 degrees of freedom, s² = 4/3; x̄ = 2, Sxx = 10:
    se(slope) = sqrt(s²/Sxx) = sqrt(4/30); se(intercept) = sqrt(s² (1/n + x̄²/Sxx)) = sqrt(0.8);
    t(0.975, 3) = 3.182446. At x = 2 the fitted mean's se is sqrt(s²/n) = sqrt(4/15), a new
    observation's sqrt(s² (1 + 1/n)) = sqrt(1.6)."""
    xs = [0, 1, 2, 3, 4]
    ys = [1 + 2 * x + e for x, e in zip(xs, [1, -1, 0, -1, 1])]
    fit = ols([[1.0, x] for x in xs], ys, ("intercept", "x"))
    assert fit.coefficients == pytest.approx((1.0, 2.0), abs=1e-12)
    assert fit.standard_errors == pytest.approx((math.sqrt(0.8), math.sqrt(4 / 30)), rel=1e-12)
    assert (fit.n, fit.dof) == (5, 3)
    assert fit.residual_sd == pytest.approx(math.sqrt(4 / 3), rel=1e-12)
    assert fit.r2 == pytest.approx(1 - 4 / 44, rel=1e-12)  # total SS: 4 * 10 + 4 = 44
    slope = fit.coefficient("x")
    assert (slope.low, slope.high) == pytest.approx((2 - 3.182446 * math.sqrt(4 / 30), 2 + 3.182446 * math.sqrt(4 / 30)),
                                                    abs=1e-5)
    at_mean = fit.predict([1.0, 2.0])
    assert at_mean.value == pytest.approx(5.0)
    assert at_mean.mean.half_width == pytest.approx(3.182446 * math.sqrt(4 / 15), abs=1e-5)
    assert at_mean.new.half_width == pytest.approx(3.182446 * math.sqrt(1.6), abs=1e-5)


def test_ols_at_the_sweeps_scale_with_known_standard_errors():
    """The sweep's shape: a 2 × 2 grid of slots {2,048, 16,384} × held {0, 2,000}, each cell twice
    with errors +δ and -δ (δ = 8,192 B, two pages): every cell's mean is on the law, so the fit is
    exactly a = 16,000,000, b = 88, c = 560. RSS = 8δ², 5 degrees of freedom, σ² = 8δ²/5. Balanced,
    so b is a difference of two means of 4 points over Δs = 14,336: se(b) = sqrt(σ²/2)/Δs =
    0.5111013; se(c) = sqrt(σ²/2)/2,000 = 3.6635738; and a = ȳ - b·9,216 - c·1,000 with the three
    uncorrelated: se(a) = sqrt(σ² (1/8 + 9,216²/(2·14,336²) + 1,000²/(2·2,000²))) = 7,002.1824."""
    rows, ys = [], []
    for slots in (2048, 16384):
        for held in (0, 2000):
            for error in (8192.0, -8192.0):
                rows.append([1.0, slots, held])
                ys.append(16_000_000 + 88 * slots + 560 * held + error)
    fit = ols(rows, ys, ("intercept", "slots", "held"))
    assert fit.coefficients == pytest.approx((16_000_000, 88, 560), rel=1e-12)
    assert fit.standard_errors == pytest.approx((7002.182358, 0.5111012520, 3.663573774), rel=1e-8)
    assert fit.dof == 5 and fit.t_value() == pytest.approx(2.570582, abs=5e-7)


def test_ols_refuses_what_the_data_cannot_fit():
    with pytest.raises(FitError, match="at least 4"):
        ols([[1.0, 1, 2], [1.0, 2, 3], [1.0, 3, 1]], [1, 2, 3], ("intercept", "slots", "held"))
    with pytest.raises(FitError, match="never varies held"):
        ols([[1.0, s, 0] for s in (1, 2, 3, 4)], [1, 2, 3, 4], ("intercept", "slots", "held"))
    # One table size only: slots is the intercept times 2,048.
    with pytest.raises(FitError, match="slots is a combination"):
        ols([[1.0, 2048, h] for h in (0, 1, 2, 3)], [1, 2, 3, 5], ("intercept", "slots", "held"))


# --- the sweep's arithmetic ---------------------------------------------------------------------------
def law_runs(kernel: float | None = None) -> list[RssRun]:
    """Runs on RSS = 16 MiB + 88·slots + 560·held exactly, load 100 B more per active connection,
    at 3 sizes × 2 C, idle-empty of the middle size 4 KiB off (one page, so the fit has residuals)."""
    runs = []
    for c in (250, 2000):
        for slots in (2048, 8192, 16384):
            idle = 16 * 2**20 + 88 * slots + (4096 if slots == 8192 else 0)
            held = 16 * 2**20 + 88 * slots + 560 * c
            runs.append(RssRun("nofd", f"../runs/{slots}-{c}", slots, c, idle, held, held + 100 * c, 560.0, 24,
                               kernel_bytes_per_held_connection=kernel))
    return runs


def test_analysis_of_runs_on_a_known_law():
    analysis = analyse_layout(law_runs())
    fit = analysis["idle_fit"]
    b, c = fit["coefficients"][1], fit["coefficients"][2]
    # The two middle idle points 4 KiB high lift a, not the slope between the extreme sizes.
    assert analysis["two_size"]["rss_bytes_per_slot"] == pytest.approx(88.0)
    assert b == pytest.approx(88.0, abs=0.5) and c == pytest.approx(560.0, abs=2)
    low, high = fit["ci95"][1]
    assert low < b < high and fit["n"] == 12 and fit["dof"] == 9
    assert analysis["b_vs_two_size"]["within"]
    load = analysis["load_fit"]
    assert load["terms"] == ["intercept", "slots", "held", "active"]
    assert load["coefficients"][3] == pytest.approx(100.0, abs=2)
    idle = analysis["predictions"]["idle"]
    assert idle["rss_bytes"] == pytest.approx(fit["coefficients"][0] + b * TARGET_SLOTS + c * TARGET_HELD)
    assert idle["prediction95"][0] < idle["rss_bytes"] < idle["prediction95"][1]
    assert idle["kernel_bytes"] is None and idle["total_bytes"] is None  # no run measures the kernel yet


def test_the_kernel_hook_adds_the_kernel_share_when_runs_have_it():
    idle = analyse_layout(law_runs(kernel=4700.0))["predictions"]["idle"]
    assert idle["kernel_bytes"] == pytest.approx(4700.0 * TARGET_HELD)
    assert idle["total_bytes"] == pytest.approx(idle["rss_bytes"] + 4700.0 * TARGET_HELD)


def test_allocator_breakdown_and_heap_figures():
    """Per slot between 2,048 and 16,384 slots: 72 B asked for in small requests and 8 in large, 80 B
    of blocks, 80 B of pools, 88.5 B of RSS: rounding 8, pool slack 0, malloc and pages 0.5."""
    span = 16384 - 2048
    small = AllocatorDelta("nofd", 2048, 100_000, 50_000, 20_000, 60_000, 60_000, 0)
    large = replace(small, slots=16384, rss_bytes=100_000 + int(88.5 * span), requested_small_bytes=50_000 + 72 * span,
                    requested_large_bytes=20_000 + 8 * span, block_bytes=60_000 + 80 * span, pool_bytes=60_000 + 80 * span)
    heap = [HeapRun("nofd", "a", 2048, 2000, 2048 * 82, 545.0), HeapRun("nofd", "b", 16384, 2000, 16384 * 80 + 3000, 547.0)]
    analysis = analyse_layout(law_runs(), heap, [large, small])
    parts = analysis["allocator"]
    assert parts["requested_bytes_per_slot"] == pytest.approx(80.0)
    assert parts["size_class_rounding_bytes_per_slot"] == pytest.approx(8.0)
    assert parts["pool_slack_bytes_per_slot"] == pytest.approx(0.0)
    assert parts["malloc_and_pages_bytes_per_slot"] == pytest.approx(0.5, abs=1e-3)
    assert analysis["heap"]["bytes_per_slot"] == pytest.approx(80 + 3000 / 16384)
    assert analysis["heap"]["heap_slope_bytes_per_slot"] == pytest.approx((16384 * 80 + 3000 - 2048 * 82) / span)
    assert analysis["heap"]["heap_bytes_per_held_connection"] == pytest.approx(546.0)
    assert analysis["heap"]["c_bytes_per_slot"] == 24


def test_sweep_json_round_trip_and_refusal(tmp_path):
    document = build_document(status="complete", error=None, created_utc="2026-01-01T00:00:00+00:00",
                              plan={"layouts": ["nofd"], "max_conns_values": [2048, 16384]},
                              nofile={"hard_limit": 20000}, environment={}, layouts=["nofd"], runs=law_runs(),
                              heap_runs=[], allocator=[])
    write_json(tmp_path / "sweep.json", document)
    sweep = read_sweep(tmp_path)
    assert sweep.layouts == ["nofd"] and len(sweep.points("nofd")) == 18
    assert sweep.fit("nofd").coefficient("slots").value == pytest.approx(88.0, abs=0.5)
    assert sweep.document["kernel"]["metric"] == KERNEL_METRIC and not sweep.document["kernel"]["measured"]
    (tmp_path / "bad.json").write_text(json.dumps(document | {"schema": "memdiet.sweep/0"}))
    with pytest.raises(SweepError, match="schema"):
        read_sweep(tmp_path / "bad.json")
    with pytest.raises(SweepError, match="no such sweep file"):
        read_sweep(tmp_path / "absent.json")


MALLOCSTATS = """Small block threshold = 512, in 32 size classes.

class   size   num pools   blocks in use  avail blocks
-----   ----   ---------   -------------  ------------
    4     80          81           16361            42

# arenas allocated total           =                    5
# arenas reclaimed                 =                    0
# arenas highwater mark            =                    5
# arenas allocated current         =                    5
5 arenas * 1048576 bytes/arena     =            5,242,880

# bytes in allocated blocks        =            4,120,736
# bytes in available blocks        =              259,568
48 unused pools * 16384 bytes      =              786,432
# bytes lost to pool headers       =               12,912
# bytes lost to quantization       =               14,080
# bytes lost to arena alignment    =               49,152
Total                              =            5,242,880
"""


def test_mallocstats_parser_reads_cpythons_lines():
    figures = parse_mallocstats(MALLOCSTATS)
    assert figures["allocated_blocks"] == 4_120_736 and figures["arenas"] == 5_242_880
    # The pools in use, whole: 269 pools of 16 KiB.
    assert figures["pool_bytes"] == 269 * 16384
    with pytest.raises(AllocatorUnavailable, match="allocated blocks"):
        parse_mallocstats("Small block threshold = 512\n")


def test_the_grid_stays_within_rlimit_nofile():
    assert check_plan(TINY_PLAN, hard=20000)["needed"] == 16384 + 500 + measure_sweep.NOFILE_MARGIN
    with pytest.raises(BadInput, match="RLIMIT_NOFILE hard limit of 10,000"):
        check_plan(TINY_PLAN, hard=10000)
    # The default plans drop the table sizes that do not fit; fewer than two left is refused.
    assert plan_for(quick=False, hard=12000).max_conns_values == (2048, 8192)
    with pytest.raises(BadInput, match="two table sizes"):
        plan_for(quick=False, hard=9000)
    with pytest.raises(BadInput, match="does not fit the smallest table"):
        check_plan(replace(TINY_PLAN, connections_values=(50, 2040)), hard=20000)


# --- a tiny real sweep ----------------------------------------------------------------------------------
def test_a_tiny_real_sweep_fits_b_within_5_percent_of_the_two_size_slope(tmp_path):
    out = tmp_path / "sweep"
    sweeper = Sweeper(TINY_PLAN, tmp_path / "runs", out, check_plan(TINY_PLAN))
    sweeper.run()
    write_json(out / "sweep.json", sweeper.document())
    sweep = read_sweep(out)
    assert sweep.status == "complete" and sweep.layouts == list(TINY_PLAN.layouts)
    for layout in TINY_PLAN.layouts:
        analysis = sweep.analysis(layout)
        fit = analysis["idle_fit"]
        b = fit["coefficients"][fit["terms"].index("slots")]
        low, high = fit["ci95"][fit["terms"].index("slots")]
        slope = analysis["two_size"]["rss_bytes_per_slot"]
        assert abs(b - slope) <= 0.05 * slope, f"{layout}: b {b:.2f} vs two-size slope {slope:.2f}"
        assert analysis["b_vs_two_size"]["within"]
        assert math.isfinite(low) and low < b < high and fit["n"] == 8 and fit["dof"] == 5
        # Every point is a phase of a real, complete run folder.
        for run in sweep.runs(layout):
            assert load_run(out / run.run).status == "complete"
        parts = analysis["allocator"]
        assert sum(parts[f"{name}_bytes_per_slot"] for name in ("requested", "size_class_rounding", "pool_slack",
                                                                "malloc_and_pages")) == pytest.approx(parts["rss_bytes_per_slot"])
        assert analysis["predictions"]["idle"]["prediction95"][0] < analysis["predictions"]["idle"]["rss_bytes"]
    # RSS per slot is above the bytes asked for: nofd's slots are small pymalloc objects.
    assert sweep.analysis("nofd")["idle_fit"]["coefficients"][1] > sweep.analysis("nofd")["allocator"]["requested_bytes_per_slot"]
    text = io.StringIO()
    write_sweep_markdown(sweep, text)
    report = text.getvalue()
    assert "RLIMIT_NOFILE: its hard limit here is" in report
    # The runs read the kernel's side (ss, the TCP slab): the predictions include it, and say so.
    assert "kernel" in report
    b_cell = f"{sweep.fit('nofd').coefficient('slots').value:,.1f} B ["
    assert b_cell in report  # b with its interval
    assert [p.name for p in render_sweep_chart(sweep, out / "sweep")] == ["sweep.png", "sweep.svg"]


def test_a_tracemalloc_run_gives_the_table_heap_the_sweep_reads(tmp_path):
    config = replace(QUICK, subject="nofd", probe="tracemalloc", max_conns=2048, connections=20, idle_s=0.2, load_s=0.2,
                     runs_dir=tmp_path / "runs")
    run = load_run(run_once(config))
    heap = heap_run_of(run, tmp_path)
    assert heap.bytes_per_slot == pytest.approx(run.summary["bytes_per_slot"])
    assert heap.table_heap_bytes == run.document["table"]["table_heap_bytes"]
    assert heap.heap_bytes_per_held_connection == run.summary["heap_bytes_per_held_connection"] > 0


# --- the command --------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, says", [
    (["--layouts", "nope"], "unknown layout 'nope'"),
    (["--quick", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, says, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["sweep", *args])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and says in error


def test_an_output_folder_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    with pytest.raises(SystemExit) as stopped:
        main(["sweep", "--quick", "--layouts", "packed", "-o", str(tmp_path / "taken")])
    assert stopped.value.code == 2 and "cannot use" in capsys.readouterr().err


def test_a_grid_beyond_rlimit_nofile_is_refused_with_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(measure_sweep, "hard_limit", lambda: 4000)
    assert main(["sweep", "--layouts", "nofd"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "RLIMIT_NOFILE hard limit of 4,000" in error


def test_a_failed_run_exits_1_and_keeps_the_points_before_it(tmp_path, monkeypatch, capsys):
    plan = SweepPlan(("packed",), (1024, 2048), (8,), idle_s=0.2, load_s=0.2, heap_runs=False, allocator=False)
    monkeypatch.setattr("experiments.cli.sweep.plan_for", lambda quick, layouts: plan)
    monkeypatch.setattr("experiments.cli.sweep.install_interrupt_handlers", lambda: None)  # not in pytest's process
    calls = []

    def second_run_fails(config, progress=None):
        calls.append(config)
        if len(calls) == 2:
            raise RunFailed(f"{config.subject}: died in phase ramp (made up by the test)")
        return run_once(config, progress)

    monkeypatch.setattr(measure_sweep, "run_once", second_run_fails)
    out = tmp_path / "out"
    assert main(["sweep", "-o", str(out), "--runs-dir", str(tmp_path / "runs")]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines[-1] == "memdiet sweep failed: packed: died in phase ramp (made up by the test)"
    sweep = read_sweep(out)
    assert sweep.status == "incomplete" and "made up by the test" in sweep.document["error"]
    assert [(p.slots, p.held) for p in sweep.points("packed")] == [(1024, 0), (1024, 8), (1024, 8)]
    assert "stopped before its end" in (out / "index.md").read_text()
    assert (out / "sweep.png").is_file()


# --- docs/scaling.md's figures ---------------------------------------------------------------------------------
COMMITTED_SWEEP = REPO / "reports" / "latest" / "sweep"


def _with_interval(cell: str) -> tuple[str, list[str]]:
    """``"89.2 B [88.1, 90.4]"`` -> ``("89.2 B", ["88.1 B", "90.4 B"])``: the interval in the value's unit."""
    value, _, rest = cell.partition(" [")
    unit = value.split()[-1]
    return value, [f"{end.strip()} {unit}" for end in rest.rstrip("]").split(", ")] if rest else []


def test_the_scaling_page_is_the_committed_sweep():
    sweep = read_sweep(COMMITTED_SWEEP)
    page = (REPO / "docs" / "scaling.md").read_text()
    text = section(page, "The fits")
    rows = table_after(text, "| layout |")
    assert [row["layout"] for row in rows] == sweep.layouts
    wrong = []
    for row in rows:
        layout = row["layout"]
        analysis, fit = sweep.analysis(layout), sweep.fit(layout)
        for column, term in (("b: RSS per slot [95% CI]", "slots"), ("c: RSS per held connection [95% CI]", "held")):
            value, ends = _with_interval(row[column])
            coefficient = fit.coefficient(term)
            for shown, source in zip([value, *ends], (coefficient.value, coefficient.low, coefficient.high)):
                if not agrees(shown, source):
                    wrong.append(f"{layout} {column}: docs {shown}, sweep {source:,.2f}")
        for column, source in (("RSS slope, two sizes", analysis["two_size"]["rss_bytes_per_slot"]),
                               ("bytes_per_slot", analysis["heap"]["bytes_per_slot"]),
                               ("heap per held connection", analysis["heap"]["heap_bytes_per_held_connection"]),
                               ("1,000,000 slots, 100,000 held", analysis["predictions"]["idle"]["rss_bytes"])):
            if not agrees(row[column], source):
                wrong.append(f"{layout} {column}: docs {row[column]}, sweep {source:,.2f}")
    assert not wrong, "docs/scaling.md's fits are not the committed sweep:\n" + "\n".join(wrong)
    assert f"hard limit is {sweep.document['nofile']['hard_limit']:,} on the measuring machine" in page
