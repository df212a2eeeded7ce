"""``chart`` draws what ms_print draws for the export of the same series; ``timeline`` writes images."""

from __future__ import annotations

import re

import pytest

from tests.fixtures.viewer_support import (  # noqa: F401 (fixtures)
    memray_capture,
    ms_print,
    tracemalloc_series,
    viewer,
)

_TREE_LINE = re.compile(r"^[| ]*(->)?\d\d\.\d\d% \(")


def _graph(text: str) -> list[str]:
    """The rows from the y-unit line down to the x axis (its unit suffix removed)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"    ( B|KB|MB|GB)", line))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("   0 +"))
    return lines[start:end] + [lines[end].split(">")[0] + ">"]


def test_chart_has_axes_peak_and_detailed_marks(tracemalloc_series):
    result = viewer("chart", *tracemalloc_series.dumps, "--detailed-freq", "2")
    assert result.returncode == 0, result.stderr
    graph = _graph(result.stdout)
    assert len(graph) == 1 + 20 + 1  # unit line, 20 rows, x axis
    assert graph[0] == "    MB"
    assert re.match(r"^\d\.\d{3}\^", graph[1])  # top y label, then the axis arrow
    assert all(row[5] == "|" for row in graph[2:-1])
    assert re.fullmatch(r"   0 \+-{71}>", graph[-1])
    assert re.search(r"^     0 +\d\.\d{3}$", result.stdout, re.M)  # x label in seconds
    assert "->s\n" in result.stdout
    body = "".join(graph[1:-1])
    assert "#" in body and "@" in body and ":" in body
    assert graph[1].count("#") >= 1  # the peak column reaches the top row
    assert "Number of snapshots: 7" in result.stdout
    assert "Detailed snapshots: [1, 3 (peak), 5]" in result.stdout
    assert "grow_buffers" in result.stdout


def test_chart_equals_ms_print_of_the_export(tracemalloc_series, tmp_path):
    out = tmp_path / "massif.out.chart"
    for options in ([], ["--detailed-freq", "1", "--width", "40", "--height", "8"]):
        exported = viewer("massif", *tracemalloc_series.dumps, *options[:2], "-o", out)
        assert exported.returncode == 0, exported.stderr
        chart = viewer("chart", *tracemalloc_series.dumps, *options)
        printed = ms_print(out, *(["--x=40", "--y=8"] if options else []))
        assert chart.returncode == 0 and printed.returncode == 0, chart.stderr + printed.stderr
        assert _graph(chart.stdout) == _graph(printed.stdout)
        ours = [line for line in chart.stdout.splitlines() if _TREE_LINE.match(line)]
        theirs = [line for line in printed.stdout.splitlines() if _TREE_LINE.match(line)]
        assert ours == theirs and len(ours) > 5


def test_chart_without_clock_uses_snapshot_index(tracemalloc_series):
    result = viewer("chart", *tracemalloc_series.dumps, "--time", "index", "--width", "30", "--height", "6")
    assert result.returncode == 0, result.stderr
    assert "->snapshot\n" in result.stdout
    assert re.search(r"^     0 +6$", result.stdout, re.M)


def test_chart_of_memray_capture(memray_capture):
    result = viewer("chart", memray_capture)
    assert result.returncode == 0, result.stderr
    assert "#" in "".join(_graph(result.stdout)[1:-1])
    assert "(peak)" in result.stdout and "<listcomp>" in result.stdout


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG\r\n\x1a\n"), (".svg", b"<svg")])
def test_timeline_writes_an_image(tracemalloc_series, tmp_path, suffix, magic):
    out = tmp_path / f"timeline{suffix}"
    result = viewer("timeline", *tracemalloc_series.dumps, "-o", out, "--top", "4")
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert len(data) > 5000 and magic in data[:400]


def test_timeline_of_memray_capture(memray_capture, tmp_path):
    out = tmp_path / "memray.png"
    result = viewer("timeline", memray_capture, "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 5000
