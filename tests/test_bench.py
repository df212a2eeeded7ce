"""``memdiet bench`` (experiments/bench): the peers start, answer and stop; a tiny real run writes its
reports; bad arguments are refused; and the pieces that compute figures (wrk's output, the metrics,
the busy-machine check) on known inputs.

The peers' packages come with the ``bench`` extra; a peer whose package is missing is skipped (it
says which). No test asserts on a timing: every wait is bounded by a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.bench.document import evaluate_targets
from experiments.bench.launch import BenchServer
from experiments.bench.metrics import catalog, ratios, spread, trial_values
from experiments.bench.quiet import MachineBusy, check_quiet, wait_for_quiet
from experiments.bench.subjects import PEERS
from experiments.bench.throughput import parse_wrk
from experiments.cli import main
from experiments.loadgen import fd_hard_limit

from .server_client import REPO_ROOT, RawClient, request_bytes

#: Seconds the tiny bench run may take before the test fails instead of hanging.
TINY_RUN_TIMEOUT_S = 150


# --- the peers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PEERS))
def test_peer_starts_answers_keep_alive_and_stops(name: str, tmp_path: Path) -> None:
    peer = PEERS[name]
    missing = peer.missing_packages()
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (the bench extra: pip install -e '.[bench]')")
    server = BenchServer(peer, sys.executable, tmp_path / f"{name}.log")
    try:
        port = server.start()  # ready from /proc/net/tcp, without a request
        with RawClient.connect(("127.0.0.1", port)) as client:
            for _ in range(2):  # the second request on the same connection: keep-alive
                response = client.exchange(request_bytes("GET", "/"))
                assert response.status == 200
                assert response.body == b"Hello, World!"
                assert response.connection != "close"
    finally:
        code = server.stop()  # SIGTERM by PID, then waits for the exit
    assert server.process.returncode == code  # the exit was observed (and the process reaped)
    assert code in peer.clean_exit_codes


# --- a tiny real run ----------------------------------------------------------------------------
def test_tiny_bench_run_writes_reports_and_falls_back_without_wrk(tmp_path: Path) -> None:
    """One layout and the asyncio peer, N = 20 and 50, a 1 s throughput run, with wrk hidden from
    PATH (taskset kept): experiments.loadgen measures, and the report says so."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if shutil.which("taskset"):
        (bin_dir / "taskset").symlink_to(shutil.which("taskset"))
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, "-m", "experiments", "bench", "--layouts", "nofd", "--peers", "asyncio", "--held", "20,50",
         "--trials", "1", "--duration", "1", "--settle", "0.1", "--cpu-check", "0.2", "-o", str(out)],
        cwd=REPO_ROOT, env={**os.environ, "PATH": str(bin_dir)}, capture_output=True, text=True,
        timeout=TINY_RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    assert "sudo apt-get install wrk" in result.stderr

    document = json.loads((out / "bench.json").read_text())
    assert document["schema"] == "memdiet.bench/1" and document["status"] == "complete"
    assert document["throughput_tool"]["name"] == "loadgen"
    assert "sudo apt-get install wrk" in document["throughput_tool"]["note"]
    assert [s["name"] for s in document["subjects"]] == ["nofd", "asyncio"]
    assert document["baselines"] == ["asyncio"]
    keys = {metric["key"] for metric in document["metrics"]}
    assert {"idle_rss_bytes", "held_rss_bytes_50", "bytes_per_connection_20", "req_per_s", "cpu_s"} <= keys
    for subject in document["subjects"]:
        [trial] = subject["trials"]
        assert trial["ok"], trial["error"]
        assert trial["exit_code"] == 0
        assert trial["held"]["20"]["sockets"] == 20 and trial["held"]["50"]["sockets"] == 50
        assert trial["throughput"]["requests"] > 0 and not trial["throughput"]["errors"]
        assert set(subject["summary"]) == keys  # every metric reached
        assert subject["ratios"]["req_per_s"].keys() == {"asyncio"}
    asyncio_ratios = document["subjects"][1]["ratios"]
    assert all(r["asyncio"] == 1.0 for key, r in asyncio_ratios.items() if document["subjects"][1]["summary"][key]["median"] > 0)
    assert document["machine"]["cpu_count"] == os.cpu_count()

    markdown = (out / "bench.md").read_text()
    for metric in document["metrics"]:
        assert f"### {metric['title']}" in markdown
    assert "| memdiet nofd |" in markdown and "| asyncio |" in markdown and "x asyncio" in markdown
    assert "sudo apt-get install wrk" in markdown and "## Machine" in markdown
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in (out / "logs").iterdir()} == {"nofd-1.log", "asyncio-1.log"}


# --- bad arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize("arguments", [
    ["--trials", "0"], ["--held", "0"], ["--held", "many"], ["--duration", "1.5"], ["--layouts", "fat"],
    ["--peers", "nginx"], ["--tool", "ab"], ["--settle", "-1"], ["--cpu-check", "0"],
])
def test_bench_refuses_bad_arguments_in_one_line(arguments: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *arguments])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("memdiet: error: ") and error.count("\n") == 1


def test_bench_refuses_more_connections_than_the_fd_limit(capsys: pytest.CaptureFixture) -> None:
    hard = fd_hard_limit()
    if hard > 1_000_000:
        pytest.skip(f"RLIMIT_NOFILE's hard limit ({hard}) is above --held's own bound")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--held", str(hard), "--layouts", "nofd", "--peers", "asyncio"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "RLIMIT_NOFILE" in error and error.count("\n") == 1


def test_bench_refuses_wrk_when_it_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--tool", "wrk", "--layouts", "nofd", "--peers", "asyncio"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "sudo apt-get install wrk" in error and error.count("\n") == 1


# --- figures from known inputs ---------------------------------------------------------------------
WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:40001/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.37ms  212.07us   9.91ms   92.11%
    Req/Sec    36.79k     1.02k   38.11k    81.00%
  Latency Distribution
     50%    1.34ms
     75%    1.41ms
     90%    1.52ms
     99%  812.00us
  366112 requests in 1.00m, 51.33MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  36601.13
Transfer/sec:      5.13MB
"""


def test_parse_wrk_reads_totals_errors_and_latency_units() -> None:
    parsed = parse_wrk(WRK_OUTPUT)
    assert parsed["requests"] == 366112
    assert parsed["elapsed_s"] == pytest.approx(60.0)
    assert parsed["req_per_s"] == pytest.approx(36601.13)
    assert parsed["errors"] == {"read": 3, "timeout": 2, "non_2xx_3xx": 7}
    assert parsed["latency_p50_ms"] == pytest.approx(1.34)
    assert parsed["latency_p99_ms"] == pytest.approx(0.812)


def _trial(idle_rss: int, held_rss: int, requests: int, cpu_s: float) -> dict:
    return {"ok": True, "idle": {"rss_bytes": idle_rss, "anon_bytes": idle_rss // 2},
            "held": {"1000": {"rss_bytes": held_rss, "anon_bytes": idle_rss // 2 + (held_rss - idle_rss)}},
            "throughput": {"requests": requests, "req_per_s": requests / 10}, "cpu_s": cpu_s}


def test_trial_values_medians_and_ratios() -> None:
    held = (1000,)
    values = trial_values(_trial(10_000_000, 15_000_000, 400_000, 9.0), held)
    assert values["bytes_per_connection_1000"] == 5000
    assert values["anon_bytes_per_connection_1000"] == 5000
    assert values["req_per_s"] == 40_000
    assert values["cpu_us_per_request"] == pytest.approx(22.5)
    assert set(values) == {metric.key for metric in catalog(held)}

    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert spread([]) is None
    summaries = {"packed": {"req_per_s": spread([20_000.0])}, "asyncio": {"req_per_s": spread([80_000.0])}}
    assert ratios(summaries, ["uvicorn", "asyncio"]) == {
        "packed": {"req_per_s": {"asyncio": 0.25}}, "asyncio": {"req_per_s": {"asyncio": 1.0}}}


def test_targets_are_judged_on_medians() -> None:
    def summary(**medians: float) -> dict:
        return {key: spread([value]) for key, value in medians.items()}

    summaries = {
        "nofd": summary(held_rss_bytes_5000=10e6, req_per_s=90_000),
        "packed": summary(held_rss_bytes_5000=30e6, bytes_per_connection_5000=150, req_per_s=50_000),
        "uvicorn": summary(held_rss_bytes_5000=80e6),
        "asyncio": summary(req_per_s=80_000),
    }
    met = [target["met"] for target in evaluate_targets(summaries, ["nofd", "packed"], (1000, 5000))]
    assert met == [True, False, True, False]  # nofd 0.125x, packed 0.375x, 150 B, packed slower
    assert evaluate_targets({}, [], (1000,))[0]["met"] is None


# --- the busy-machine check --------------------------------------------------------------------------
def test_quiet_check_sees_a_spinning_process_and_strict_refuses(tmp_path: Path) -> None:
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 30\nwhile time.time() < end: pass"])
    try:
        check = check_quiet(0.5, threshold_cores=0.05)
        assert spinner.pid in [busy.pid for busy in check.busy]
        assert not check.quiet
        assert spinner.pid not in [busy.pid for busy in check_quiet(0.3, exclude=[spinner.pid]).busy]
        with pytest.raises(MachineBusy, match="--strict"):
            wait_for_quiet(0.3, exclude=[], strict=True, max_wait_s=0, threshold_cores=0.05)
        assert not wait_for_quiet(0.3, exclude=[], strict=False, threshold_cores=0.05).quiet  # recorded only
    finally:
        spinner.kill()
        spinner.wait(10)
