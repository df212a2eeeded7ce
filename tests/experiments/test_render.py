"""Renderers and the markdown report, on small synthetic run folders (tests/fixtures/fake_runs.py)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from experiments.dataset.metrics import METRICS
from experiments.dataset.results import OTHER_SITE, find_runs, load_run
from experiments.dataset.selection import STUDY_ORDER, layout_order, merged_metrics
from experiments.measure.anatomy import all_anatomies
from experiments.render.anatomy_chart import render_anatomy
from experiments.render.comparison import render_comparison
from experiments.render.massif_curve import render_massif_curve, short_site, top_sites
from experiments.render.report_md import (
    REDUCTION_METRICS,
    build_report,
    reduction_table,
)
from experiments.render.units import (MISSING, exact_bytes, format_metric, human_bytes, percent_change, share,
                                     whole_bytes)
from server.layouts import LAYOUTS
from tests.fixtures.fake_runs import write_fake_matrix, write_fake_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_chart_files(paths: list[Path], stem: Path) -> None:
    assert sorted(paths) == sorted([Path(f"{stem}.png"), Path(f"{stem}.svg")])
    png, svg = Path(f"{stem}.png"), Path(f"{stem}.svg")
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert png.stat().st_size > 10_000  # a drawn chart, not an empty canvas
    root = ElementTree.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(list(root.iter())) > 50


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """Every layout under rss and tracemalloc, a memray run of packed, and an interrupted naive run
    made later than the complete ones, with a far larger table (so its figures would show if used)."""
    root = tmp_path_factory.mktemp("runs")
    write_fake_matrix(root, rss_noise_bytes=0)  # no noise: the figures below follow by hand
    write_fake_run(root, "packed", "memray", rss_noise_bytes=0)
    incomplete = write_fake_run(root, "naive", "rss", status="incomplete", stamp="20260102T000000Z", max_conns=40_000,
                                rss_noise_bytes=0)
    runs = [load_run(p) for p in find_runs(root)]
    return root, runs, load_run(incomplete)


def run_of(runs, layout, probe):
    return next(r for r in runs if r.layout == layout and r.probe == probe and r.status == "complete")


@pytest.fixture(scope="module")
def report(matrix, tmp_path_factory):
    _root, runs, _incomplete = matrix
    out_dir = tmp_path_factory.mktemp("latest")
    index = build_report(runs, out_dir, title="test report", matrix_info={"quick": True})
    return out_dir, index.read_text()


# --- units -----------------------------------------------------------------------------------------
def test_human_units():
    assert human_bytes(1023) == "1,023 B"
    assert human_bytes(1024) == "1.0 KiB"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(402.3 * 1024 * 1024) == "402.3 MiB"
    assert format_metric("bytes_per_slot", 6105.27) == "6,105.3 B"
    assert format_metric("bytes_per_slot", 16) == "16.0 B"
    assert format_metric("c_bytes_per_slot", 4392) == "4,392 B"
    assert percent_change(0.94) == "-94%"
    assert percent_change(-0.10) == "+10%"
    assert exact_bytes(4392.0) == "4,392 B" and exact_bytes(6105.27) == "6,105.3 B"
    assert whole_bytes(6105.5) == "6,106 B" and whole_bytes(-12.2) == "-12 B" and whole_bytes(None) == MISSING
    assert share(1, 8) == "12.5%" and share(-3, 200) == "-1.5%"
    assert share(None, 8) == share(1, 0) == share(1, None) == MISSING
    assert percent_change(0.9974) == "-99.7%"  # never rounded to a -100% it is not


# --- massif-style curve ----------------------------------------------------------------------------
def test_top_sites_keep_the_biggest_and_lose_nothing(matrix):
    _root, runs, _ = matrix
    run = run_of(runs, "naive", "tracemalloc")
    times, top, rest = top_sites(run, 3)
    all_times, by_site = run.site_series()
    assert times == all_times and len(top) == 3
    assert OTHER_SITE not in [site for site, _ in top]
    peaks = sorted((max(v) for s, v in by_site.items() if s != OTHER_SITE), reverse=True)
    assert [max(values) for _, values in top] == peaks[:3]
    for i in range(len(times)):
        assert sum(values[i] for _, values in top) + rest[i] == sum(values[i] for values in by_site.values())


def test_short_site():
    assert short_site("/srv/memdiet/server/layouts/naive.py:44 (__init__)") == "layouts/naive.py:44 (__init__)"
    assert short_site(OTHER_SITE) == OTHER_SITE


@pytest.mark.parametrize("layout, probe", [("naive", "tracemalloc"), ("packed", "memray"), ("nofd", "rss")])
def test_massif_curve_writes_png_and_svg(matrix, tmp_path, layout, probe):
    _root, runs, _ = matrix
    stem = tmp_path / f"curve-{layout}"
    assert_chart_files(render_massif_curve(run_of(runs, layout, probe), stem), stem)


def test_massif_curve_of_an_incomplete_run(matrix, tmp_path):
    stem = tmp_path / "incomplete"
    assert_chart_files(render_massif_curve(matrix[2], stem), stem)


# --- comparison and anatomy ------------------------------------------------------------------------
def test_comparison_writes_png_and_svg(matrix, tmp_path):
    stem = tmp_path / "comparison"
    assert_chart_files(render_comparison(matrix[1], stem), stem)


def test_anatomy_chart_writes_png_and_svg(tmp_path):
    stem = tmp_path / "anatomy"
    assert_chart_files(render_anatomy(all_anatomies(), stem, measured={"naive": 6105.3}), stem)


# --- selection and reductions ----------------------------------------------------------------------
# The fake matrix's figures, worked out by hand from tests/fixtures/fake_runs.py (max_conns 4,096 slots, C = 200
# connections, no RSS noise). Table heap = int(B/slot x 4,096), with FAKE_BYTES_PER_SLOT:
#   naive 6,105.3 x 4,096 = 25,007,308.8; split 128.7 x 4,096 = 527,155.2; bitfields 96.7 x 4,096 =
#   396,083.2; nofd 80.7 x 4,096 = 330,547.2; packed 16 x 4,096 = 65,536.
# Idle RSS = int(14 MiB + 1.05 x (400,000 heap before the table + table)), 14 MiB = 14,680,064:
#   naive 14,680,064 + 1.05 x 25,407,308.8 = 14,680,064 + 26,677,674.24 = 41,357,738
#   split 14,680,064 + 1.05 x 927,155.2 = 14,680,064 + 973,512.96 = 15,653,576
#   bitfields 14,680,064 + 1.05 x 796,083.2 = 14,680,064 + 835,887.36 = 15,515,951
#   nofd 14,680,064 + 1.05 x 730,547.2 = 14,680,064 + 767,074.56 = 15,447,138
#   packed 14,680,064 + 1.05 x 465,536 = 14,680,064 + 488,812.8 = 15,168,876
# Held RSS = that + 1.05 x 200 x FAKE_BYTES_PER_HELD: naive + 1.05 x 480,000 = + 504,000; split and
#   bitfields + 1.05 x 620,000 = + 651,000; nofd + 1.05 x 600,000 = + 630,000; packed + 1.05 x 180,000 = + 189,000.
FAKE_TABLE_HEAP = {"naive": 25_007_308, "split": 527_155, "bitfields": 396_083, "nofd": 330_547, "packed": 65_536}
FAKE_IDLE_RSS = {"naive": 41_357_738, "split": 15_653_576, "bitfields": 15_515_951, "nofd": 15_447_138,
                 "packed": 15_168_876}
FAKE_HELD_RSS = {"naive": 41_861_738, "split": 16_304_576, "bitfields": 16_166_951, "nofd": 16_077_138,
                 "packed": 15_357_876}
# Fraction saved versus naive, 1 - layout / naive, to 5 decimals:
#   idle RSS: split 1 - 15,653,576 / 41,357,738 = 1 - 0.378489 = 0.621508; bitfields 1 - 0.375164 = 0.624836;
#     nofd 1 - 0.373501 = 0.626499; packed 1 - 0.366772 = 0.633228
#   held RSS: split 1 - 16,304,576 / 41,861,738 = 1 - 0.389486 = 0.610514; bitfields 1 - 0.386199 = 0.613801;
#     nofd 1 - 0.384053 = 0.615947; packed 1 - 0.366871 = 0.633129
#   bytes per slot (= table heap, same max_conns): split 1 - 527,155 / 25,007,308 = 1 - 0.021080 = 0.978920;
#     bitfields 1 - 0.015839 = 0.984161; nofd 1 - 0.013218 = 0.986782; packed 1 - 0.002621 = 0.997379
FAKE_REDUCTIONS = {
    "split": {"idle_rss_bytes": 0.621508, "held_rss_bytes": 0.610514, "bytes_per_slot": 0.978920},
    "bitfields": {"idle_rss_bytes": 0.624836, "held_rss_bytes": 0.613801, "bytes_per_slot": 0.984161},
    "nofd": {"idle_rss_bytes": 0.626499, "held_rss_bytes": 0.615947, "bytes_per_slot": 0.986782},
    "packed": {"idle_rss_bytes": 0.633228, "held_rss_bytes": 0.633129, "bytes_per_slot": 0.997379},
}


def test_fake_summaries_are_the_figures_worked_out_by_hand(matrix):
    _root, runs, _ = matrix
    for layout in LAYOUTS:
        assert run_of(runs, layout, "rss").summary["idle_rss_bytes"] == FAKE_IDLE_RSS[layout]
        assert run_of(runs, layout, "rss").summary["held_rss_bytes"] == FAKE_HELD_RSS[layout]
        traced = run_of(runs, layout, "tracemalloc").summary
        assert traced["table_heap_bytes"] == FAKE_TABLE_HEAP[layout]
        assert traced["bytes_per_slot"] == FAKE_TABLE_HEAP[layout] / 4096


def test_reductions_equal_the_figures_worked_out_by_hand(matrix):
    _root, runs, _ = matrix
    table = reduction_table(runs)
    assert list(table) == [name for name in LAYOUTS if name != "naive"]
    assert [metric for metric, _label in REDUCTION_METRICS] == ["idle_rss_bytes", "held_rss_bytes", "bytes_per_slot"]
    for layout, by_metric in table.items():
        assert by_metric == pytest.approx(FAKE_REDUCTIONS[layout], abs=1e-6), layout


def test_the_datasets_study_order_is_the_servers_layout_order():
    """The dataset names the layouts' order itself (it imports no server code): it must be LAYOUTS'."""
    assert STUDY_ORDER == tuple(LAYOUTS)
    assert layout_order(["packed", "other", "naive"]) == ["naive", "packed", "other"]


def test_metrics_come_from_the_probe_that_measures_them(matrix):
    merged = merged_metrics(matrix[1])
    assert merged["naive"]["idle_rss_bytes"].probe == "rss"
    assert merged["naive"]["bytes_per_slot"].probe == "tracemalloc"
    assert merged["packed"]["held_heap_bytes"].probe == "tracemalloc"  # preferred over the memray run
    assert "bytes_per_slot" not in {m for m, f in merged["naive"].items() if f.probe == "rss"}


def test_missing_rss_run_falls_back_and_is_marked(tmp_path):
    write_fake_run(tmp_path / "runs", "naive", "rss")
    write_fake_run(tmp_path / "runs", "naive", "tracemalloc")
    write_fake_run(tmp_path / "runs", "split", "tracemalloc")
    runs = [load_run(p) for p in find_runs(tmp_path / "runs")]
    merged = merged_metrics(runs)
    assert merged["split"]["idle_rss_bytes"].probe == "tracemalloc"
    # A traced RSS is not compared with an untraced one; the heap figures are.
    assert reduction_table(runs)["split"]["idle_rss_bytes"] is None
    assert reduction_table(runs)["split"]["bytes_per_slot"] is not None
    text = build_report(runs, tmp_path / "latest", matrix_info={}).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `idle_rss_bytes`"))
    assert row.count("(tracemalloc)") == 1


# --- the report ------------------------------------------------------------------------------------
def table_rows(text: str, header_start: str) -> list[list[str]]:
    """Cells of the markdown table whose header row starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return [rows[0]] + rows[2:]


def test_report_table_has_every_layout_and_metric(matrix, report):
    _root, runs, _ = matrix
    _out_dir, text = report
    rows = table_rows(text, "| metric |")
    assert rows[0][3:3 + len(LAYOUTS)] == list(LAYOUTS)
    present = {name for run in runs if run.status == "complete" for name in run.summary}
    assert {row[0].strip("`") for row in rows[1:]} == present
    by_metric = {row[0].strip("`"): row for row in rows[1:]}
    for metric in present:
        assert by_metric[metric][1] == METRICS[metric].unit
    # FAKE_TABLE_HEAP / 4,096 to one decimal: 25,007,308 / 4,096 = 6,105.2998...; 527,155 / 4,096 =
    # 128.6999...; 96.6999...; 80.6999...; 16.
    assert by_metric["bytes_per_slot"][3:8] == ["6,105.3 B", "128.7 B", "96.7 B", "80.7 B", "16.0 B"]
    # FAKE_IDLE_RSS / 1,048,576: 39.44, 14.93, 14.797, 14.73, 14.466 MiB.
    assert by_metric["idle_rss_bytes"][3:8] == ["39.4 MiB", "14.9 MiB", "14.8 MiB", "14.7 MiB", "14.5 MiB"]
    assert by_metric["c_bytes_per_slot"][3:8] == ["4,392 B", "40 B", "32 B", "24 B", "16 B"]


def test_report_reduction_table_shows_the_reductions_worked_out_by_hand(report):
    rows = table_rows(report[1], "| figure |")
    assert rows[0] == ["figure", *LAYOUTS]
    # naive's own figure (FAKE_IDLE_RSS / MiB: 39.44; FAKE_HELD_RSS: 41,861,738 / 1,048,576 = 39.92),
    # then -100 x FAKE_REDUCTIONS to one decimal.
    assert rows[1:] == [
        ["idle RSS (no clients)", "39.4 MiB", "-62.2%", "-62.5%", "-62.6%", "-63.3%"],
        ["RSS with C connections held", "39.9 MiB", "-61.1%", "-61.4%", "-61.6%", "-63.3%"],
        ["heap bytes per slot", "6,105.3 B", "-97.9%", "-98.4%", "-98.7%", "-99.7%"],
    ]


def test_report_lists_incomplete_runs_but_uses_them_nowhere(matrix, report):
    _root, runs, incomplete = matrix
    _out_dir, text = report
    section = text.split("## Incomplete runs", 1)[1]
    assert incomplete.path.name in section
    # Its idle RSS (a 40,000-slot naive table) would be the naive column's if it were used.
    assert human_bytes(incomplete.summary["idle_rss_bytes"]) not in text
    assert run_of(runs, "naive", "rss").path.name in text


def test_report_links_charts_runs_and_captures(matrix, report):
    _root, runs, _ = matrix
    out_dir, text = report
    for target in re.findall(r"\]\(([^)]+)\)", text):
        assert (out_dir / target).exists(), target
    for layout in LAYOUTS:
        assert f"(curve-{layout}.png)" in text
    for run in runs:  # every run folder named by its path relative to the report (linked or not)
        assert f"../{run.path.parent.name}/{run.path.name}" in text
    assert "flame graph" in text and "massif.out" in text
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_report_says_which_figures_are_deterministic(report):
    section = report[1].split("## Which figures are deterministic", 1)[1].split("##", 1)[0]
    fixed = next(line for line in section.splitlines() if line.startswith("- **Deterministic**"))
    varies = next(line for line in section.splitlines() if line.startswith("- **Vary"))
    for metric in METRICS.values():
        assert f"`{metric.name}`" in (fixed if metric.deterministic else varies)


def test_report_without_complete_runs(matrix, tmp_path):
    index = build_report([matrix[2]], tmp_path, matrix_info={})
    text = index.read_text()
    assert "No complete run" in text and matrix[2].path.name in text


def test_rss_read_after_the_server_exited_is_not_drawn(matrix):
    """Neither curve of a run (the PNG's, the interactive page's: one column reader) draws a zero RSS."""
    from experiments.render.figures import series_column

    run = load_run(run_of(matrix[1], "nofd", "rss").path)  # a copy of its own: the fixture's runs are shared
    run.rss.columns["rss_bytes"][-1] = 0.0  # what sampling a process that has just exited records
    times, values = series_column(run.rss, "rss_bytes")
    assert len(values) == len(run.rss) - 1 and 0 not in values


def test_runs_that_held_fewer_than_c_get_their_own_section(tmp_path):
    import json

    plain = write_fake_run(tmp_path / "runs", "naive", "rss")
    runs = [load_run(plain)]
    assert "## Clients not held" not in build_report(runs, tmp_path / "one", matrix_info={}).read_text()
    short = write_fake_run(tmp_path / "runs", "split", "rss", stamp="20260101T000001Z")
    document = json.loads((short / "result.json").read_text())
    document["held"] = {"asked": 200, "held": 10, "stopped_keeping_at": 10, "outcomes": {
        "closed_announced": {"count": 153, "seen": "closed by the server after a response that said Connection: close"},
        "no_answer": {"count": 37, "seen": "connected but no response"}}}
    (short / "result.json").write_text(json.dumps(document))
    runs = [load_run(plain), load_run(short)]
    text = build_report(runs, tmp_path / "two", matrix_info={}).read_text()
    section = text.split("## Clients not held", 1)[1].split("\n## ", 1)[0]
    (row,) = [line for line in section.splitlines() if line.startswith("| `")]
    assert "| 10 | 200 | 10 |" in row and "153 closed by the server" in row and "37 connected" in row
