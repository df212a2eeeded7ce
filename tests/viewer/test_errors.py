"""Bad input gets one clear line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import pickle

import pytest

from tests.fixtures.viewer_support import memray_capture, tracemalloc_series, viewer  # noqa: F401 (fixtures)

PREFIX = "python -m tracemalloc_viewer: error: "


def _assert_one_line_error(result, *words):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(PREFIX) and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_file_that_is_not_a_snapshot(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    _assert_one_line_error(viewer("top", text), "notes.txt", "not a tracemalloc snapshot")
    other = tmp_path / "other.pickle"
    other.write_bytes(pickle.dumps({"a": 1}, protocol=5))
    _assert_one_line_error(viewer("chart", other), "other.pickle", "holds a dict")
    empty = tmp_path / "empty.tracemalloc"
    empty.write_bytes(b"")
    _assert_one_line_error(viewer("massif", empty, "-o", tmp_path / "m.out"), "empty.tracemalloc")
    assert not (tmp_path / "m.out").exists()


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.99])
def test_truncated_snapshot(tracemalloc_series, tmp_path, fraction):
    data = tracemalloc_series.dumps[3].read_bytes()
    cut = tmp_path / "cut.tracemalloc"
    cut.write_bytes(data[:int(len(data) * fraction)])
    _assert_one_line_error(viewer("top", cut), "cut.tracemalloc", "truncated")
    _assert_one_line_error(viewer("chart", tracemalloc_series.dumps[0], cut), "cut.tracemalloc", "truncated")


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.6, 0.999])
def test_truncated_memray_capture(memray_capture, tmp_path, fraction):
    data = memray_capture.read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:max(8, int(len(data) * fraction))])
    _assert_one_line_error(viewer("massif", cut, "-o", tmp_path / "m.out"), "cut.bin", "truncated")


def test_empty_series(tmp_path):
    for command in (["chart"], ["massif", "-o", str(tmp_path / "m.out")], ["timeline", "-o", str(tmp_path / "t.png")]):
        _assert_one_line_error(viewer(*command), "empty series")


def test_missing_file_mixed_inputs_and_bad_output(tracemalloc_series, memray_capture, tmp_path):
    _assert_one_line_error(viewer("top", tmp_path / "nope.tracemalloc"), "nope.tracemalloc", "no such file")
    _assert_one_line_error(viewer("chart", tracemalloc_series.dumps[0], memray_capture), "no source reads")
    _assert_one_line_error(viewer("timeline", *tracemalloc_series.dumps, "-o", tmp_path / "t.jpg"), ".png or .svg")
    _assert_one_line_error(viewer("massif", *tracemalloc_series.dumps, "-o", tmp_path / "no" / "dir" / "m.out"),
                           "cannot write")


def test_memray_heap_and_records_jitter_is_kept_apart_not_refused():
    """memray's heap at a memory record and the allocation records live there once differed by 64 B
    (a capture of 0.2 s): the sites still add up to the sample's total, the difference in a site of its
    own, and a difference beyond memray's jitter is a damaged capture."""
    from tracemalloc_viewer.model import Frame, Site
    from tracemalloc_viewer.sources import memray_capture

    site = Site((Frame("app.py", 3, "f"),), 1_402_080, 10)
    unmatched: list[int] = []
    ahead = memray_capture._sample(0.173, 1_402_144, (site,), unmatched)
    assert ahead.total_bytes == 1_402_144
    assert [(s.frames[0].function, s.size) for s in ahead.sites] == [("f", 1_402_080), (memray_capture.UNMATCHED_SITE, 64)]
    behind = memray_capture._sample(0.2, 1_402_000, (site,), unmatched)
    assert behind.total_bytes == 1_402_080 and behind.sites == (site,)
    assert unmatched == [64, -80]
    assert memray_capture._sample(0.3, 5, None, unmatched).sites is None
    with pytest.raises(ValueError, match="memray's heap is"):
        memray_capture._sample(0.4, 1_402_080 + memray_capture.MAX_UNMATCHED_BYTES + 1, (site,), unmatched)
