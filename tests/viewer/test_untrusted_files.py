"""Crafted and damaged files given to the viewer, one class of fault per test (issue 26): each gives one
error line and exit 2 on a strict UTF-8 terminal (or, for a legal but costly file, the right answer),
within a bounded time and memory, and nothing outside the named files is read."""

from __future__ import annotations

import json
import os

import pytest

from tests.fixtures.crafted import (MEMO_BOMB, deep_filename_dump, massif_text, one_error_line, run_cli,
                                    run_document, shared_traceback_dump, write_dump, write_run)

VIEWER = "tracemalloc_viewer"
#: The issue's bounds for one command on a crafted file.
MAX_SECONDS = 10
MAX_RSS_BYTES = 512 * 2**20


def refused(*args) -> str:
    ran = run_cli(VIEWER, *args)
    line = one_error_line(ran)
    assert ran.seconds < MAX_SECONDS and ran.peak_rss_bytes < MAX_RSS_BYTES, (ran.seconds, ran.peak_rss_bytes)
    return line


# --- tracemalloc dumps ---------------------------------------------------------------------------
@pytest.mark.parametrize("size, what", [(10**1000, "not a size"), (-5, "not a size"), ("12", "whole number")],
                         ids=["1000 digits", "negative", "a string"])
def test_dump_sizes_out_of_bounds_or_of_the_wrong_type_are_refused(tmp_path, size, what):
    dump = write_dump(tmp_path / "bad.tmsnap", [(0, size, (("app.py", 1),), 1)])
    line = refused("top", dump)
    assert str(dump) in line and what in line and "trace 0" in line


@pytest.mark.parametrize("frame, what", [(("app.py", "7"), "line number"), ((7, 1), "file name"),
                                         (("app.py",), "(file name, line)"), (("app.py", 2**40), "line number")],
                         ids=["string line", "integer file", "no line", "huge line"])
def test_dump_frames_of_the_wrong_shape_are_refused(tmp_path, frame, what):
    dump = write_dump(tmp_path / "bad.tmsnap", [(0, 64, (frame,), 1)])
    line = refused("top", dump)
    assert str(dump) in line and what in line


def test_a_file_name_nested_a_million_deep_is_refused_not_a_crash(tmp_path):
    line = refused("top", deep_filename_dump(tmp_path / "deep.tmsnap"))
    assert "file name" in line


def test_one_long_traceback_shared_by_many_traces_is_hashed_once(tmp_path):
    dump = shared_traceback_dump(tmp_path / "shared.tmsnap")
    assert dump.stat().st_size < 1_000_000
    ran = run_cli(VIEWER, "top", dump, "--bytes")
    assert ran.code == 0, ran.stderr[-2000:]
    assert ran.seconds < MAX_SECONDS, ran.seconds
    assert "640000 B" in ran.stdout or "640,000" in ran.stdout  # 20,000 traces x 32 B, one site


def test_a_memo_index_bomb_is_refused_before_the_memo_is_built(tmp_path):
    dump = tmp_path / "bomb.tmsnap"
    dump.write_bytes(MEMO_BOMB)
    ran = run_cli(VIEWER, "top", dump)
    line = one_error_line(ran)
    assert "memo index" in line
    assert ran.peak_rss_bytes < 256 * 2**20, ran.peak_rss_bytes


def test_a_frame_in_a_device_or_a_fifo_is_not_opened(tmp_path):
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    dump = write_dump(tmp_path / "dev.tmsnap", [(0, 64, (("/dev/zero", 1),), 1), (0, 32, ((str(fifo), 1),), 1)])
    ran = run_cli(VIEWER, "top", dump, "--bytes", timeout_s=20)
    assert ran.code == 0, ran.stderr[-2000:]
    assert ran.peak_rss_bytes < MAX_RSS_BYTES and ran.seconds < MAX_SECONDS


# --- massif.out ----------------------------------------------------------------------------------
def test_two_peaks_in_a_massif_file_is_one_line_not_a_name_error(tmp_path):
    path = tmp_path / "massif.out.1"
    path.write_text(massif_text(kinds=("peak", "peak")))
    line = refused("chart", path)
    assert "2 peak snapshots" in line and "NameError" not in line


def test_a_massif_number_of_thousands_of_digits_is_refused(tmp_path):
    path = tmp_path / "massif.out.1"
    path.write_text(massif_text(heap="9" * 5000))
    line = refused("chart", path)
    assert "mem_heap_B" in line and len(line) < 400


def test_a_massif_name_that_is_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "massif.out.1"
    path.write_bytes(massif_text(label="0x1: f\xff (a.c:1)").encode("latin-1"))
    line = refused("chart", path)
    assert "0xff" in line and ":13:" in line


# --- run folders ---------------------------------------------------------------------------------
def test_a_symlink_out_of_the_run_folder_is_not_followed_nor_quoted(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOKEN=hunter2-do-not-print\n")
    run = write_run(tmp_path / "run", heap_rows=None)
    (run / "heap.csv").symlink_to(secret)
    line = refused("chart", run)
    assert "hunter2" not in line and "TOKEN" not in line and "symlink" in line


def test_environ_through_a_symlink_is_not_printed(tmp_path):
    run = write_run(tmp_path / "run", heap_rows=None)
    (run / "heap.csv").symlink_to("/proc/self/environ")
    ran = run_cli(VIEWER, "chart", run)
    assert "PATH=" not in ran.stderr + ran.stdout and "PYTHONPATH" not in ran.stderr + ran.stdout
    one_error_line(ran)


def test_a_header_line_from_a_file_is_never_quoted(tmp_path):
    run = write_run(tmp_path / "run", heap_rows=None)
    (run / "heap.csv").write_text("SECRET_TOKEN=abc123,x\n1,2\n")
    line = refused("chart", run)
    assert "SECRET_TOKEN" not in line and "abc123" not in line


def test_absolute_paths_in_files_are_refused(tmp_path):
    outside = write_dump(tmp_path / "00-idle-empty.tmsnap", [(0, 64, (("app.py", 1),), 1)])
    run = write_run(tmp_path / "run", run_document(files={"snapshots": [str(outside)]}))
    line = refused("chart", run)
    assert "files.snapshots" in line and "refused" in line


def test_files_that_is_a_list_is_one_line(tmp_path):
    run = write_run(tmp_path / "run", run_document(files=[]))
    line = refused("chart", run)
    assert "files" in line


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_nan_in_phase_times_is_refused_not_a_blank_page(tmp_path, value):
    text = json.dumps(run_document()).replace('"end_s": 1.0', f'"end_s": {value}')
    run = write_run(tmp_path / "run", raw_result=text.encode())
    line = refused("html", run, "-o", tmp_path / "page.html")
    assert value in line and not (tmp_path / "page.html").exists()


def test_non_utf8_result_json_names_the_byte(tmp_path):
    text = json.dumps(run_document(layout="LAYOUT")).encode().replace(b"LAYOUT", b"na\xefve")
    run = write_run(tmp_path / "run", raw_result=text)
    line = refused("chart", run)
    assert "0xef" in line


@pytest.mark.parametrize("cell", ["9" * 5000, "-5", "1e999", "nan"], ids=["5000 digits", "negative", "1e999", "nan"])
def test_csv_numbers_out_of_bounds_are_refused(tmp_path, cell):
    run = write_run(tmp_path / "run", heap_rows=((0.0, 100, 100, 0), (0.5, cell, 0, 0)))
    line = refused("chart", run)
    assert "heap.csv:3" in line and len(line) < 400


def test_a_fifo_in_a_run_folder_does_not_hang(tmp_path):
    run = write_run(tmp_path / "run", heap_rows=None)
    os.mkfifo(run / "heap.csv")
    line = refused("chart", run)
    assert "FIFO" in line


def test_a_layout_that_is_a_path_is_refused(tmp_path):
    run = write_run(tmp_path / "run", run_document(layout="x/../../outside/escaped"))
    line = refused("chart", run)
    assert "layout" in line and "refused" in line


def test_a_file_name_that_is_not_utf8_survives_a_strict_terminal(tmp_path):
    # A pickle may hold a lone surrogate (Snapshot.dump writes what the interpreter had, surrogatepass).
    dump = write_dump(tmp_path / "name.tmsnap", [(0, 64, (("/srv/caf\udce9.py", 1),), 1)])
    ran = run_cli(VIEWER, "top", dump, "--bytes")
    assert ran.code == 0, ran.stderr[-2000:]
    assert "caf\\udce9.py" in ran.stdout


@pytest.mark.parametrize("field", ["phases", "summary"])
def test_a_number_of_a_thousand_digits_in_result_json_is_refused(tmp_path, field):
    document = run_document()
    text = json.dumps(document).replace('"end_s": 1.0', '"end_s": ' + "9" * 1000) if field == "phases" else \
        json.dumps(document).replace('"rss_peak_bytes": 1000', '"rss_peak_bytes": ' + "9" * 1000)
    run = write_run(tmp_path / "run", raw_result=text.encode())
    line = refused("chart", run)
    assert "result.json" in line and len(line) < 400
