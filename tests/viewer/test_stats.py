"""``top`` and ``diff`` give tracemalloc's own figures (Snapshot.statistics and compare_to) on real
dumps: same sizes, counts and order, for every grouping; and memray's on a real capture."""

from __future__ import annotations

import json
import os
import re
import shutil
import tracemalloc
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fixtures.viewer_support import memray_capture, tracemalloc_series, viewer  # noqa: F401 (fixtures)
from tracemalloc_viewer import LoadOptions, open_series
from tracemalloc_viewer.model import Frame
from tracemalloc_viewer.names import function_name
from tracemalloc_viewer.sources.tracemalloc_dumps import load_sites, snapshot_sites
from tracemalloc_viewer.stats import compare, statistics

GROUPINGS = [("lineno", False), ("filename", False), ("traceback", False), ("lineno", True), ("filename", True)]


def _ours(stats):
    return [(tuple((f.filename, f.lineno) for f in reversed(s.frames)), s.size, s.count) for s in stats]


def _theirs(stats):
    return [(tuple((f.filename, f.lineno) for f in s.traceback), s.size, s.count) for s in stats]


@pytest.mark.parametrize("by,cumulative", GROUPINGS)
def test_statistics_equal_tracemalloc(tracemalloc_series, by, cumulative):
    for dump in tracemalloc_series.dumps:
        expected = _theirs(tracemalloc.Snapshot.load(dump).statistics(by, cumulative))
        assert _ours(statistics(load_sites(dump), by, cumulative)) == expected, dump.name


@pytest.mark.parametrize("by,cumulative", GROUPINGS)
def test_compare_equals_tracemalloc_compare_to(tracemalloc_series, by, cumulative):
    dumps = tracemalloc_series.dumps
    for old, new in [*zip(dumps, dumps[1:]), (dumps[1], dumps[5]), (dumps[3], dumps[0])]:
        expected = [
            (tuple((f.filename, f.lineno) for f in d.traceback), d.size, d.size_diff, d.count, d.count_diff)
            for d in tracemalloc.Snapshot.load(new).compare_to(tracemalloc.Snapshot.load(old), by, cumulative)
        ]
        ours = [
            (tuple((f.filename, f.lineno) for f in reversed(d.frames)), d.size, d.size_diff, d.count, d.count_diff)
            for d in compare(load_sites(old), load_sites(new), by, cumulative)
        ]
        assert ours == expected, (old.name, new.name)


# Few files, lines and sizes: equal sizes, equal counts, recursion and shared prefixes are common, so
# every tie-break of tracemalloc's ordering is exercised.
_frame = st.tuples(st.sampled_from(["a.py", "b.py", "c.py"]), st.integers(1, 3))
_trace = st.builds(lambda size, frames: (0, size, tuple(frames), len(frames)),
                   st.sampled_from([0, 8, 16, 24, 48]), st.lists(_frame, min_size=1, max_size=4))
_snapshot = st.lists(_trace, max_size=25).map(lambda traces: tracemalloc.Snapshot(traces, 4))


@settings(max_examples=150, deadline=None)
@given(old=_snapshot, new=_snapshot)
def test_statistics_and_compare_equal_tracemalloc_on_generated_traces(old, new):
    for by, cumulative in GROUPINGS:
        assert _ours(statistics(snapshot_sites(new), by, cumulative)) == _theirs(new.statistics(by, cumulative))
        expected = [(tuple((f.filename, f.lineno) for f in d.traceback), d.size, d.size_diff, d.count, d.count_diff)
                    for d in new.compare_to(old, by, cumulative)]
        ours = [(tuple((f.filename, f.lineno) for f in reversed(d.frames)), d.size, d.size_diff, d.count, d.count_diff)
                for d in compare(snapshot_sites(old), snapshot_sites(new), by, cumulative)]
        assert ours == expected


def test_sites_from_public_trace_api_equal_raw_traces(tracemalloc_series):
    """snapshot_sites reads tracemalloc's raw trace tuples for speed; its public-API fallback agrees."""
    snapshot = tracemalloc.Snapshot.load(tracemalloc_series.dumps[3])

    class PublicOnly:  # traces as a plain list of Trace objects: no raw tuples to read
        traces = list(snapshot.traces)

    assert sorted(map(repr, snapshot_sites(PublicOnly()))) == sorted(map(repr, snapshot_sites(snapshot)))


def test_series_exercises_recursion_and_many_sites(tracemalloc_series):
    """The comparisons above only mean something if the dumps hold many sites and repeated frames."""
    sites = load_sites(tracemalloc_series.dumps[3])
    assert len(statistics(sites, "lineno")) > 10
    assert any(len(set(site.frames)) < len(site.frames) for site in sites), "no recursive traceback"
    assert max(len(site.frames) for site in sites) == 25  # the recursion is cut at tracemalloc's limit


_TOP_ROW = re.compile(r"^\s*(\d+)\s+(\d+) B\s+([\d,]+)\s+([\d.]+)\s+([\d.]+%|-)\s+(.+):(\d+)(?: \((.+)\))?$")
_DIFF_ROW = re.compile(r"^\s*(\d+)\s+([+-]?\d+) B\s+(\d+) B\s+([+-]?[\d,]+)\s+([\d,]+)\s+(.+):(\d+)(?: \((.+)\))?$")


def _rows(pattern, text):
    return [match.groups() for line in text.splitlines() if (match := pattern.match(line))]


def test_top_cli_table_equals_tracemalloc(tracemalloc_series):
    dump = tracemalloc_series.dumps[3]
    result = viewer("top", dump, "--bytes", "--limit", "0")
    assert result.returncode == 0, result.stderr
    rows = _rows(_TOP_ROW, result.stdout)
    stats = tracemalloc.Snapshot.load(dump).statistics("lineno")
    assert [(int(r[1]), int(r[2].replace(",", "")), r[5], int(r[6])) for r in rows] == \
           [(s.size, s.count, s.traceback[0].filename, s.traceback[0].lineno) for s in stats]
    total = sum(s.size for s in stats)
    for row, stat in zip(rows, stats):
        assert float(row[3]) == pytest.approx(stat.size / stat.count, abs=0.05)
        assert float(row[4].rstrip("%")) == pytest.approx(100 * stat.size / total, abs=0.05)
    assert "grow_buffers" in result.stdout  # function names found in the workload's source


def test_top_limit_and_traceback_mode(tracemalloc_series):
    dump = tracemalloc_series.dumps[3]
    result = viewer("top", dump, "--by", "traceback", "--limit", "3", "--frames", "4")
    assert result.returncode == 0, result.stderr
    stats = tracemalloc.Snapshot.load(dump).statistics("traceback")
    assert f"{len(stats) - 3} more sites" in result.stdout
    assert result.stdout.count("called from") <= 3 * 4
    assert "called from" in result.stdout and "nested" in result.stdout


def test_diff_cli_table_equals_tracemalloc(tracemalloc_series):
    old, new = tracemalloc_series.dumps[1], tracemalloc_series.dumps[4]
    result = viewer("diff", old, new, "--bytes", "--limit", "0")
    assert result.returncode == 0, result.stderr
    rows = _rows(_DIFF_ROW, result.stdout)
    diffs = tracemalloc.Snapshot.load(new).compare_to(tracemalloc.Snapshot.load(old), "lineno")
    assert [(int(r[1]), int(r[2]), int(r[3].replace(",", "")), int(r[4].replace(",", "")), r[5], int(r[6]))
            for r in rows] == \
           [(d.size_diff, d.size, d.count_diff, d.count, d.traceback[0].filename, d.traceback[0].lineno) for d in diffs]
    assert any(d.size_diff < 0 for d in diffs) and any(d.size_diff > 0 for d in diffs)


def test_diff_growth_order(tracemalloc_series):
    old, new = tracemalloc_series.dumps[1], tracemalloc_series.dumps[4]
    result = viewer("diff", old, new, "--bytes", "--limit", "0", "--order", "growth")
    assert result.returncode == 0, result.stderr
    growth = [int(r[1]) for r in _rows(_DIFF_ROW, result.stdout)]
    diffs = tracemalloc.Snapshot.load(new).compare_to(tracemalloc.Snapshot.load(old), "lineno")
    assert growth == sorted((d.size_diff for d in diffs), reverse=True)


def test_top_of_memray_capture_equals_memray_high_water_mark(memray_capture):
    from memray import FileReader

    # A line is one site whatever function memray names it after (a comprehension's `<listcomp>` and
    # the function around it), as tracemalloc keys it; it is named as the source names it now.
    expected = defaultdict(lambda: [0, 0])
    with FileReader(str(memray_capture)) as reader:
        for record in reader.get_high_watermark_allocation_records(merge_threads=True):
            _function, filename, lineno = record.stack_trace()[0]
            function = function_name(Frame(filename, lineno))
            expected[(filename, lineno, function)][0] += record.size
            expected[(filename, lineno, function)][1] += record.n_allocations
        peak = reader.metadata.peak_memory
    result = viewer("top", memray_capture, "--bytes", "--limit", "0")
    assert result.returncode == 0, result.stderr
    rows = _rows(_TOP_ROW, result.stdout)
    ours = {(r[5], int(r[6]), r[7]): [int(r[1]), int(r[2].replace(",", ""))] for r in rows}
    assert ours == dict(expected)
    assert [int(r[1]) for r in rows] == sorted((int(r[1]) for r in rows), reverse=True)
    assert f"total {peak} B" in result.stdout


def test_time_sources(tracemalloc_series, tmp_path):
    """Sidecar times are used when every dump has one; else mtimes (and samples follow them); else index."""
    by_sidecar = open_series(tracemalloc_series.dumps)
    assert by_sidecar.time_source == "sidecar"
    stamps = [json.loads(p.with_name(p.name + ".json").read_text())["time_s"] for p in tracemalloc_series.dumps]
    assert [s.time_s for s in by_sidecar.samples] == pytest.approx([t - stamps[0] for t in stamps])

    copies = []
    for index, dump in enumerate(tracemalloc_series.dumps[:3]):
        copy = tmp_path / dump.name
        shutil.copyfile(dump, copy)
        os.utime(copy, ns=(0, (100 - 10 * index) * 10**9))  # newest first: mtime order reverses the files
        copies.append(copy)
    by_mtime = open_series(copies)
    assert by_mtime.time_source == "mtime"
    assert [s.time_s for s in by_mtime.samples] == [0, 10, 20]
    assert [s.total_bytes for s in by_mtime.samples] == \
           [sum(t.size for t in tracemalloc.Snapshot.load(p).traces) for p in reversed(copies)]

    by_index = open_series(copies, LoadOptions(time_mode="index"))
    assert (by_index.time_source, [s.time_s for s in by_index.samples]) == ("index", [0, 1, 2])
    for copy in copies:
        os.utime(copy, ns=(0, 5 * 10**9))
    assert open_series(copies).time_source == "index"  # equal mtimes say nothing


def test_function_names_from_source():
    assert function_name(Frame(__file__, _line_of("def _ours"), None)) == "_ours"
    assert function_name(Frame(__file__, _line_of("return [(tuple((f.filename, f.lineno) for f in s.traceback)"), None)) == "_theirs"
    assert function_name(Frame(__file__, 1, None)) == "<module>"
    assert function_name(Frame("<frozen importlib._bootstrap>", 10, None)) is None
    assert function_name(Frame("x.py", 3, "given")) == "given"


def _line_of(text):
    with open(__file__) as source:
        return next(number for number, line in enumerate(source, 1) if text in line)



def test_the_viewers_size_and_share_rules() -> None:
    """One function a rule: tracemalloc's rounding, whole bytes (``--bytes``), a share of a total."""
    from tracemalloc_viewer.units import exact_bytes, share, tracemalloc_bytes

    assert [tracemalloc_bytes(size) for size in (512, 43520, 1625 * 1024)] == ["512 B", "42.5 KiB", "1625 KiB"]
    assert tracemalloc_bytes(12.5 * 1024 * 1024, signed=True) == "+12.5 MiB"
    assert [exact_bytes(4096), exact_bytes(512, signed=True), exact_bytes(-8, True)] == ["4096 B", "+512 B", "-8 B"]
    assert share(1, 8) == "12.5%" and share(5, 0) == "-"
