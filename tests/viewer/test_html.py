"""``view html``: the interactive page of any capture, checked on its data (tests/browser/ opens it in
a real browser).

Oracles from outside the viewer: tracemalloc's own ``Snapshot.statistics`` and ``Snapshot.compare_to``
on the dumps the page was made of (every comparison the page holds, figure for figure and in the same
order), the dumps' own totals under the curve, and ``view diff`` as a user runs it for a memray capture
against a dump and for valgrind's massif.out of a real program against this viewer's own export. The
budget is checked on a synthetic capture far larger than the page may hold.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from tests.fixtures.fake_runs import write_fake_run
from tests.fixtures.viewer_support import memray_capture, tracemalloc_series, viewer  # noqa: F401 (fixtures)
from tracemalloc_viewer import open_series
from tracemalloc_viewer.model import Frame, Sample, Series, Site
from tracemalloc_viewer.outputs import html

_DATA = re.compile(r'<script type="application/json" id="memdiet-data">(.*?)</script>', re.S)
#: A row of ``diff --bytes``: rank, size diff, size, blocks diff, blocks, site.
_DIFF_ROW = re.compile(r"^\s*\d+\s+([+-]?\d+) B\s+(\d+) B\s+([+-]?[\d,]+)\s+([\d,]+)\s+(.*)$")


def page_data(path: Path) -> dict:
    match = _DATA.search(path.read_text(encoding="utf-8"))
    assert match, f"{path}: no data block"
    return json.loads(match.group(1))


def make_page(tmp_path: Path, *args: str | Path, name: str = "page.html") -> tuple[Path, dict]:
    out = tmp_path / name
    result = viewer("html", *args, "-o", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}: ") and result.stderr == ""
    return out, page_data(out)


def site_of(label: str) -> tuple[str, int]:
    """(file, line) of a ``file:line (function)`` label."""
    location = label.split(" (")[0]
    file, _, line = location.rpartition(":")
    return file, int(line)


def rows_of(pair: dict, labels: list[str]) -> list[tuple[str, int, int, int, int]]:
    return [(labels[row[0]], row[1], row[2], row[3], row[4]) for row in pair["rows"]]


# --- a tracemalloc dump series -------------------------------------------------------------------------
def test_page_is_one_file_with_plotly_inlined_once_and_no_network(tracemalloc_series, tmp_path):
    out, data = make_page(tmp_path, *tracemalloc_series.dumps)
    text = out.read_text(encoding="utf-8")
    plotly = html.plotly_js()
    assert text.count(plotly[:2000]) == 1, "plotly.js inlined exactly once"
    ours = text.replace(plotly, "")
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=\"(?!data:|#)", ours), "an external resource"
    assert "cdn" not in ours.lower()
    assert len(out.read_bytes()) < html.PAGE_LIMIT_BYTES
    assert [run["samples"] for run in data["runs"]] == [7]


def test_every_comparison_is_tracemallocs_compare_to(tracemalloc_series, tmp_path):
    """7 dumps are 7 moments; the page holds all 42 ordered pairs, each as ``new.compare_to(old)``."""
    _out, data = make_page(tmp_path, *tracemalloc_series.dumps)
    [run] = data["runs"]
    labels = data["labels"]
    snapshots = [tracemalloc.Snapshot.load(str(path)) for path in tracemalloc_series.dumps]
    # Sample i is dump i: the dumps were taken in name order, and the sidecars' times say so.
    dump_of = {number: run["tables"][moment["table"]]["i"] for number, moment in enumerate(run["moments"])}
    assert sorted(dump_of.values()) == list(range(7))
    assert len(data["pairs"]) == 7 * 6
    for key, pair in data["pairs"].items():
        old_moment, new_moment = (int(side.split(".")[1]) for side in key.split(">"))
        old, new = snapshots[dump_of[old_moment]], snapshots[dump_of[new_moment]]
        expected = new.compare_to(old, "lineno")
        assert pair["sites"] == len(expected)
        shown = rows_of(pair, labels)
        assert [(site_of(label), size_diff, size, count_diff, count) for label, size_diff, size, count_diff, count
                in shown] == [((stat.traceback[0].filename, stat.traceback[0].lineno), stat.size_diff, stat.size,
                               stat.count_diff, stat.count) for stat in expected[:len(shown)]], key
        rest = expected[len(shown):]
        if rest:
            assert pair["rest"][:3] == [len(rest), sum(s.size_diff for s in rest), sum(s.count_diff for s in rest)]
        assert (pair["old"], pair["new"]) == (sum(t.size for t in old.traces), sum(t.size for t in new.traces))


def test_tables_are_tracemallocs_statistics_and_the_curve_adds_up(tracemalloc_series, tmp_path):
    _out, data = make_page(tmp_path, *tracemalloc_series.dumps)
    [run] = data["runs"]
    labels = data["labels"]
    totals = []
    for table in run["tables"]:
        snapshot = tracemalloc.Snapshot.load(str(tracemalloc_series.dumps[table["i"]]))
        stats = snapshot.statistics("lineno")
        totals.append(sum(stat.size for stat in stats))
        assert table["total"] == totals[-1] and table["sites"] == len(stats)
        assert [(site_of(labels[row[0]]), row[1], row[2]) for row in table["rows"]] == [
            ((stat.traceback[0].filename, stat.traceback[0].lineno), stat.size, stat.count)
            for stat in stats[:len(table["rows"])]]
    bands = [trace for trace in run["figure"]["data"] if trace.get("stackgroup")]
    assert bands and bands[-1]["name"] == "other"
    stacked = [sum(column) for column in zip(*(trace["y"] for trace in bands))]
    assert stacked == totals, "the stacked sites add up to each dump's total"
    [total_line] = [trace for trace in run["figure"]["data"] if trace["name"] == "heap total"]
    assert total_line["y"] == totals
    # The largest site of the series (grow_buffers' line) is the first band, its hover names it.
    assert "grow_buffers" in bands[0]["name"] and "grow_buffers" in bands[0]["hovertemplate"]


# --- a memray capture beside a dump: a comparison across two captures -----------------------------------
def test_memray_capture_beside_a_dump_compares_as_view_diff(memray_capture, tracemalloc_series, tmp_path):
    dump = tracemalloc_series.dumps[3]
    _out, data = make_page(tmp_path, memray_capture, "--also", dump)
    assert [run["source"] for run in data["runs"]] == ["memray", "tracemalloc"]
    memray_run = data["runs"][0]
    bands = [trace for trace in memray_run["figure"]["data"] if trace.get("stackgroup")]
    assert any("called from" in trace["hovertemplate"] for trace in bands), "memray's stacks in the hover"
    pair = data["pairs"]["0.0>1.0"]  # the capture's peak -> the dump
    result = viewer("diff", memray_capture, dump, "--bytes", "--limit", "0")
    assert result.returncode == 0, result.stderr
    expected = [(match[5], int(match[1]), int(match[2]), int(match[3].replace(",", "")), int(match[4].replace(",", "")))
                for line in result.stdout.splitlines() if (match := _DIFF_ROW.match(line))]
    shown = rows_of(pair, data["labels"])
    assert shown == expected[:len(shown)] and len(expected) == pair["sites"]
    for note in pair["notes"]:
        assert note in result.stdout


# --- valgrind's massif.out: what other tools write --------------------------------------------------------
@pytest.fixture(scope="module")
def sort_massif(tmp_path_factory) -> Path:
    """A real program's massif.out: ``sort`` on 20,000 numbers under valgrind's massif."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is not installed (apt-get install valgrind)")
    folder = tmp_path_factory.mktemp("html-massif")
    numbers = folder / "numbers.txt"
    numbers.write_text("".join(f"{(index * 7919) % 20000}\n" for index in range(20000)))
    subprocess.run([valgrind, "-q", "--tool=massif", "--time-unit=ms", "--detailed-freq=3",
                    f"--massif-out-file={folder}/massif.out.%p", "sort", str(numbers)],
                   cwd=folder, check=True, timeout=60, stdout=subprocess.DEVNULL)
    [path] = folder.glob("massif.out.*")
    return path


def test_massif_out_files_open_and_compare_as_view_diff(sort_massif, tracemalloc_series, tmp_path):
    """valgrind's file of a C program, beside this viewer's massif export of a dump series."""
    exported = tmp_path / "massif.out.series"
    assert viewer("massif", *tracemalloc_series.dumps, "-o", exported).returncode == 0
    _out, data = make_page(tmp_path, sort_massif, "--also", exported)
    assert [run["source"] for run in data["runs"]] == ["massif", "massif"]
    series = open_series([sort_massif])
    sort_run = data["runs"][0]
    assert sort_run["samples"] == len(series) and sort_run["clock"]
    assert sort_run["tables"][sort_run["peak_table"]]["total"] == series.peak.total_bytes
    assert {table["total"] for table in sort_run["tables"]} <= {sample.total_bytes for sample in series.samples}
    [total] = [trace for trace in sort_run["figure"]["data"] if trace["name"] == "heap total"]
    assert max(total["y"]) == series.peak.total_bytes
    pair = data["pairs"]["0.0>1.0"]  # sort's peak -> the series' peak
    result = viewer("diff", sort_massif, exported, "--bytes", "--limit", "0")
    assert result.returncode == 0, result.stderr
    expected = [(match[5], int(match[1]), int(match[2]), int(match[3].replace(",", "")), int(match[4].replace(",", "")))
                for line in result.stdout.splitlines() if (match := _DIFF_ROW.match(line))]
    assert rows_of(pair, data["labels"]) == expected[:len(pair["rows"])] and pair["sites"] == len(expected)


# --- a memdiet run folder: phases, RSS ------------------------------------------------------------------
def test_run_folder_page_shades_its_phases_and_draws_rss(tmp_path):
    folder = write_fake_run(tmp_path / "runs", "nofd", "tracemalloc")
    _out, data = make_page(tmp_path, folder)
    [run] = data["runs"]
    document = json.loads((folder / "result.json").read_text())
    names = [phase["name"] for phase in document["phases"]]
    assert [phase[0] for phase in run["phases"]] == names
    layout = run["figure"]["layout"]
    assert len([shape for shape in layout["shapes"] if shape["type"] == "rect"]) == len(names)
    assert {annotation["text"] for annotation in layout["annotations"]} >= set(names)
    assert [moment["kind"] for moment in run["moments"]] == ["peak"] + [f"phase:{name}" for name in names]
    traces = {trace["name"]: trace for trace in run["figure"]["data"]}
    assert "RSS (whole process)" in traces and "heap total" in traces
    rss_rows = (folder / "rss.csv").read_text().splitlines()[1:]
    assert traces["RSS (whole process)"]["y"] == [int(row.split(",")[1]) for row in rss_rows]


# --- what a large capture keeps ---------------------------------------------------------------------------
def _large_series(samples: int = 2000, lines: int = 300) -> Series:
    """A capture far over the page's budget: ``samples`` samples with sites from ``lines`` lines."""
    frames = [Frame(f"/app/module{number // 50}.py", 10 + number % 50, f"work{number}") for number in range(lines)]
    series = []
    for step in range(samples):
        sites = tuple(Site((frame, frames[(number * 7) % lines]), 1000 + (number * 37 + step * 11) % 5000 * (number % 9 + 1),
                           1 + number % 5) for number, frame in enumerate(frames))
        series.append(Sample(step * 0.01, sum(site.size for site in sites), sites))
    return Series(series, "synthetic", "synthetic", "capture")


@pytest.fixture(scope="module")
def large_series() -> Series:
    return _large_series()


def test_a_large_capture_stays_under_the_limit_and_says_what_it_left_out(large_series):
    budget = html.Budget()
    page = html.build([html.Capture(large_series, "large")], "large")
    stream = io.StringIO()
    html.render(page, stream)
    size = len(stream.getvalue().encode())
    assert size < html.PAGE_LIMIT_BYTES, size
    [run] = page.data["runs"]
    bands = [trace for trace in run["figure"]["data"] if trace.get("stackgroup")]
    assert len(bands) <= budget.band_sites + 1
    assert all(len(trace["x"]) <= budget.band_samples + 1 for trace in bands)
    [total] = [trace for trace in run["figure"]["data"] if trace["name"] == "heap total"]
    assert len(total["y"]) <= budget.line_points and max(total["y"]) == max(s.total_bytes for s in large_series.samples)
    assert len(run["tables"]) <= budget.table_samples + len(run["moments"]) + 1
    assert all(len(table["rows"]) == budget.table_rows and table["rest"][0] == 300 - budget.table_rows
               for table in run["tables"])
    dropped = " ".join(run["dropped"])
    assert "of the 2,000 samples" in dropped and "of the 300 sites stacked" in dropped
    assert re.search(r"heap total: 1,[45]\d\d of 2,000 points", dropped), dropped
    assert any("Page limit" in note for note in page.data["notes"])


def test_a_tight_limit_tightens_the_budget_and_says_so(large_series):
    limit = html.fixed_bytes() + 200 * 1024
    page = html.build([html.Capture(large_series, "large")], "large", limit=limit)
    stream = io.StringIO()
    html.render(page, stream)
    assert len(stream.getvalue().encode()) < limit
    assert any("budget tightened" in item for item in page.data["runs"][0]["dropped"])


def test_downsample_keeps_every_peak_and_dip():
    times = list(range(10_000))
    values = [(t * 7919) % 1000 for t in times]
    values[4321], values[8765] = 5000, -5
    kept_times, kept = html.downsample(times, values, 500)
    assert len(kept) <= 500 and kept_times == sorted(kept_times)
    assert (4321, 5000) in zip(kept_times, kept) and (8765, -5) in zip(kept_times, kept)
    assert kept_times[0] == 0 and kept_times[-1] == 9999


# --- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["missing.tracemalloc", "-o", "page.html"], "no such file"),
    ([], "empty series"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = viewer("html", *args, *([] if "-o" in args else ["-o", "page.html"]), cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "page.html").exists()


def test_output_must_be_html(tracemalloc_series, tmp_path):
    result = viewer("html", tracemalloc_series.dumps[0], "-o", tmp_path / "page.png")
    assert result.returncode == 2 and ".html" in result.stderr


def test_the_style_and_script_are_package_data_inlined_as_written() -> None:
    """The page's CSS and JavaScript are files beside the module that reads them: each is declared
    package data in pyproject.toml (an installed wheel has it), and a page inlines it unchanged."""
    import tomllib
    from fnmatch import fnmatch

    from tests.fixtures import REPO
    from tracemalloc_viewer.outputs.html import assets

    static = Path(assets.__file__).with_name("static")
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = declared["tracemalloc_viewer.outputs.html"]
    shipped = sorted(path.name for path in static.iterdir())
    assert shipped == ["page.css", "page.js"]
    for name in shipped:
        assert any(fnmatch(f"static/{name}", pattern) for pattern in patterns), f"{name} is not package data"
    stream = io.StringIO()
    html.render(html.build([], "empty"), stream)
    page = stream.getvalue()
    assert f"<style>\n{(static / 'page.css').read_text()}</style>" in page
    assert f"<script>\n{(static / 'page.js').read_text()}</script>" in page
