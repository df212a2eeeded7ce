"""The experiments end to end: the quick matrix on the real server, each probe's series, the report,
and what an interrupted run leaves behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from experiments.dataset.results import PHASES, ResultError, find_runs, load_run
from server.layouts import LAYOUTS

from ..conftest import TINY_RUN_ARGS as TINY
from ..conftest import QuickMatrix, memdiet
from ..fixtures import REPO
from ..fixtures.server_client import RawClient, request_bytes

MEMDIET = [sys.executable, "-m", "experiments"]


def _monotonic(values):
    return all(b >= a for a, b in zip(values, values[1:]))


def test_quick_matrix_runs_every_layout_and_probe(quick_matrix: QuickMatrix):
    runs = [load_run(path) for path in quick_matrix.run_dirs()]
    assert sorted((r.layout, r.probe) for r in runs) == sorted(
        (layout, probe) for layout in LAYOUTS for probe in ("rss", "tracemalloc")
    )
    for run in runs:
        assert run.status == "complete", (run.path, run.document.get("error"))
        assert [p.name for p in run.phases] == list(PHASES)
        starts = [p.start_s for p in run.phases]
        assert _monotonic(starts)
        assert run.summary["errors"] == 0
        assert run.summary["requests"] > 0
        env = run.document["environment"]
        for key in ("python", "kernel", "cpu_model", "rlimit_nofile", "memray"):
            assert key in env


def test_every_probe_gives_a_monotonic_non_empty_series(quick_matrix: QuickMatrix):
    for run in (load_run(p) for p in quick_matrix.run_dirs()):
        times = run.rss["time_s"]
        assert len(times) > 20, run.path
        assert _monotonic(times)
        assert all(v > 0 for v in run.rss["rss_bytes"])
        if run.probe == "tracemalloc":
            assert run.heap is not None and len(run.heap) > 20
            assert _monotonic(run.heap["time_s"])
            site_times, by_site = run.site_series()
            assert site_times and _monotonic(site_times) and by_site
            snapshots = run.document["files"]["snapshots"]
            assert [Path(s).stem.split("-", 1)[1] for s in snapshots] == list(PHASES)


def test_bytes_per_slot_follows_the_study_order(quick_matrix: QuickMatrix):
    per_slot = {}
    for run in (load_run(p) for p in quick_matrix.run_dirs()):
        if run.probe == "tracemalloc":
            per_slot[run.layout] = run.summary["bytes_per_slot"]
    ordered = [per_slot[layout] for layout in LAYOUTS]
    assert all(a > b for a, b in zip(ordered, ordered[1:])), per_slot
    assert per_slot["naive"] >= 4096 and per_slot["packed"] <= 32


def test_bytes_per_slot_repeats_within_one_percent(quick_matrix: QuickMatrix, tmp_path):
    first = {load_run(p).layout: load_run(p).summary["bytes_per_slot"]
             for p in quick_matrix.run_dirs() if load_run(p).probe == "tracemalloc"}
    result = memdiet("run", "--layout", "nofd", "--probe", "tracemalloc", *TINY, "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    again = load_run(find_runs(tmp_path)[0]).summary["bytes_per_slot"]
    assert abs(again - first["nofd"]) <= 0.01 * first["nofd"]


def test_report_ties_the_matrix_together(quick_matrix: QuickMatrix):
    latest = quick_matrix.latest
    index = (latest / "index.md").read_text()
    for layout in LAYOUTS:
        assert layout in index
    assert "bytes_per_slot" in index or "bytes per slot" in index.lower()
    images = [p for p in latest.rglob("*.png")]
    assert len(images) >= 1 + len(LAYOUTS)  # the comparison chart and a curve per layout at least
    for image in images:
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    matrix = json.loads((latest / "matrix.json").read_text())
    assert len(matrix["runs"]) == 2 * len(LAYOUTS)


def test_memray_probe_reads_back_the_capture(tmp_path):
    result = memdiet("run", "--layout", "packed", "--probe", "memray", *TINY, "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    run = load_run(find_runs(tmp_path)[0])
    assert run.status == "complete"
    assert run.heap is not None and len(run.heap) > 20 and _monotonic(run.heap["time_s"])
    _times, by_site = run.site_series()
    assert any("server/" in site for site in by_site)
    assert (run.path / run.document["files"]["flamegraph"]).stat().st_size > 1000
    assert run.summary["table_heap_bytes"] >= 16 * 4096  # the packed buffer itself


def test_interrupted_run_is_marked_incomplete_and_leaves_no_process(tmp_path):
    earlier = memdiet("run", "--layout", "split", "--probe", "rss", *TINY, "--runs-dir", str(tmp_path))
    assert earlier.returncode == 0, earlier.stderr[-2000:]
    earlier_dir = find_runs(tmp_path)[0]
    earlier_text = (earlier_dir / "result.json").read_text()

    process = subprocess.Popen(
        [*MEMDIET, "run", "--layout", "nofd", "--probe", "tracemalloc", "--max-conns", "4096",
         "--connections", "50", "--idle", "30", "--load", "1", "--runs-dir", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        children: list[psutil.Process] = []
        while time.monotonic() < deadline:  # wait until the server is up and idling
            children = psutil.Process(process.pid).children(recursive=True)
            runs = [p for p in find_runs(tmp_path) if p != earlier_dir]
            if runs and children and (runs[0] / "raw" / "table.json").exists():
                break
            time.sleep(0.1)
        assert children, "the run never started its server"
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "interrupted" in err
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, f"orphan {child.pid}"
    interrupted = [p for p in find_runs(tmp_path) if p != earlier_dir][0]
    run = load_run(interrupted)
    assert run.status == "incomplete"
    assert run.document["error"]
    assert len(run.rss["time_s"]) > 0  # the partial series is kept
    assert (earlier_dir / "result.json").read_text() == earlier_text
    assert load_run(earlier_dir).status == "complete"


def serving_server_of(run: subprocess.Popen, timeout_s: float) -> psutil.Process:
    """The server a ``memdiet run`` started, once it answers ``/__stats``: it then has printed its
    ``listening on`` line, so the run has left its start-up (the line stays readable in the pipe
    even if the run reads it late) and the first thing to notice a dead server is idle-empty's
    check. Fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert run.poll() is None, f"the run exited {run.returncode} before its server served"
        for child in psutil.Process(run.pid).children(recursive=True):
            try:
                if "server" not in child.cmdline():
                    continue
                ports = [c.laddr.port for c in child.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
            except psutil.NoSuchProcess:
                continue
            for port in ports:
                try:
                    with RawClient.connect(("127.0.0.1", port)) as client:
                        if client.exchange(request_bytes("GET", "/__stats")).status == 200:
                            return child
                except OSError:
                    pass
        time.sleep(0.05)
    raise AssertionError(f"the run's server did not answer /__stats within {timeout_s} s")


def test_dead_server_names_layout_and_phase(tmp_path):
    process = subprocess.Popen(
        [*MEMDIET, "run", "--layout", "bitfields", "--probe", "rss", "--max-conns", "4096",
         "--connections", "50", "--idle", "30", "--load", "1", "--runs-dir", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        server = serving_server_of(process, timeout_s=60)
        server.kill()
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1
    assert "bitfields" in err and "idle-empty" in err
    run = load_run(find_runs(tmp_path)[0])
    assert run.status == "incomplete" and "idle-empty" in run.document["error"]
    assert len(run.rss["time_s"]) > 0


def test_truncated_result_gives_one_clear_line(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "result.json").write_text('{"schema": "memdiet.run/1", "status": "comp')
    with pytest.raises(ResultError, match="not valid JSON"):
        load_run(run_dir)
    result = memdiet("report", str(run_dir), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "result.json" in result.stderr


@pytest.mark.parametrize("args", [
    ["run", "--layout", "nope"],
    ["run", "--layout", "nofd", "--connections", "0"],
    ["run", "--layout", "nofd", "--max-conns", "10", "--connections", "100"],
    ["matrix", "--probes", "rss,bogus"],
    ["matrix", "--idle", "abc"],
])
def test_bad_arguments_one_line_exit_2(args):
    result = memdiet(*args, timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
