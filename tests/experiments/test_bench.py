"""``memdiet bench`` (experiments/bench): the peers start, answer and stop; a tiny real run writes its
reports; bad arguments are refused; and the pieces that compute figures (wrk's output, the metrics,
the busy-machine check) on known inputs.

The peers' packages come with the ``bench`` extra; a peer whose package is missing is skipped (it
says which). No test asserts on a timing: every wait is bounded by a deadline.
"""

from __future__ import annotations

import cProfile
import importlib.util
import json
import os
import pstats
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from experiments.bench.document import evaluate_targets
from experiments.bench.launch import BenchServer
from experiments.bench.measure import BenchPlan, ProfiledRun
from experiments.dataset.bench_format import catalog, ratios, spread, trial_values
from experiments.bench.profile import (
    ASYNCIO,
    MEMDIET_FILES,
    PEER_APP,
    SYSTEM_CALLS,
    WAITING,
    CategoryRules,
    category_rules,
    profile_dataset,
)
from experiments.bench.quiet import MachineBusy, check_quiet, wait_for_quiet
from experiments.bench.subjects import PEERS, Subject
from experiments.bench.throughput import LoadgenTool, parse_wrk
from experiments.cli import main
from experiments.render.bench_md import profile_section

from ..fixtures.server_client import REPO_ROOT, RawClient, request_bytes

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
def _tiny_bench(tmp_path: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    """``memdiet bench`` on nofd and the asyncio peer, one trial, a 1 s throughput run, with wrk hidden
    from PATH (taskset kept), writing to ``out``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if shutil.which("taskset"):
        (bin_dir / "taskset").symlink_to(shutil.which("taskset"))
    return subprocess.run(
        [sys.executable, "-m", "experiments", "bench", "--layouts", "nofd", "--peers", "asyncio", "--trials", "1",
         "--duration", "1", "--settle", "0.1", "--cpu-check", "0.2", *options, "-o", str(out)],
        cwd=REPO_ROOT, env={**os.environ, "PATH": str(bin_dir)}, capture_output=True, text=True,
        timeout=TINY_RUN_TIMEOUT_S,
    )


def test_tiny_bench_run_writes_reports_and_falls_back_without_wrk(tmp_path: Path) -> None:
    """One layout and the asyncio peer, N = 20 and 50, a 1 s throughput run, with wrk hidden from
    PATH (taskset kept): experiments.loadgen measures, and the report says so."""
    out = tmp_path / "bench"
    result = _tiny_bench(tmp_path, out, "--held", "20,50")
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


#: The layout the reduced bench runs beside every peer `make bench` measures (CI: through wrk).
EVERY_PEER_BENCH_LAYOUT = "packed"


def test_reduced_bench_runs_every_peer_through_wrk(tmp_path: Path) -> None:
    """What `make bench` runs, reduced (one layout beside uvicorn, aiohttp and the asyncio responder;
    one trial, N = 20 held, a 1 s wrk run): every subject starts, holds, is timed by wrk and stops
    cleanly, and the reports are written. Skipped (outside the CI allow-list) without wrk or the
    bench extra."""
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    missing = sorted({package for peer in PEERS.values() for package in peer.missing_packages()})
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (the bench extra: pip install -e '.[bench]')")
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, "-m", "experiments", "bench", "--layouts", EVERY_PEER_BENCH_LAYOUT, "--trials", "1",
         "--held", "20", "--duration", "1", "--settle", "0.1", "--cpu-check", "0.2", "--tool", "wrk", "-o", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=TINY_RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr

    document = json.loads((out / "bench.json").read_text())
    assert document["status"] == "complete"
    assert document["throughput_tool"]["name"] == "wrk"
    assert [s["name"] for s in document["subjects"]] == [EVERY_PEER_BENCH_LAYOUT, *PEERS]
    for subject in document["subjects"]:
        [trial] = subject["trials"]
        assert trial["ok"], (subject["name"], trial["error"])
        assert trial["exit_code"] in (PEERS[subject["name"]].clean_exit_codes if subject["name"] in PEERS else {0})
        assert trial["held"]["20"]["sockets"] == 20
        assert trial["throughput"]["requests"] > 0 and not trial["throughput"]["errors"], trial["throughput"]
    markdown = (out / "bench.md").read_text()
    for label in (f"memdiet {EVERY_PEER_BENCH_LAYOUT}", *PEERS):
        assert f"| {label} |" in markdown
    assert "wrk" in markdown and (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


#: RLIMIT_NOFILE (soft, hard) of the child that must refuse --held above it: low enough on any
#: machine (a hard limit above --held's own bound of 1,000,000 would otherwise hide the check).
LOW_NOFILE_LIMIT = (256, 1024)


def test_bench_refuses_more_connections_than_the_fd_limit() -> None:
    def lower_fd_limit() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_NOFILE, LOW_NOFILE_LIMIT)

    hard = LOW_NOFILE_LIMIT[1]
    result = subprocess.run(
        [sys.executable, "-m", "experiments", "bench", "--held", str(hard), "--layouts", "nofd", "--peers", "asyncio"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, preexec_fn=lower_fd_limit)
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert f"RLIMIT_NOFILE's hard limit of {hard}" in result.stderr


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


# --- the profile: a cProfile stats file to a dataset, the report section, a profiled run -----------
#: Calls of each known function in the small profiled runs below.
PROFILED_CALLS = 2_000
HTTP_PARSING = dict(MEMDIET_FILES)["server/http.py"]
LAYOUTS_CATEGORY = dict(MEMDIET_FILES)["server/layouts/"]


def _module_at(path: Path, source: str) -> ModuleType:
    """Import ``source`` written at ``path``: cProfile records that file for its functions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(f"profiled_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _profile_memdiet_shaped_run(root: Path) -> Path:
    """A real cProfile run of known functions in files laid out as memdiet's server is (under
    ``root``): a parser calling a C method, a layout accessor, a connection loop writing to a pipe."""
    http = _module_at(root / "server" / "http.py", """
        def parse(head):
            return head.split(b"\\r\\n")  # a C method: counted with its caller, the parser
    """)
    layout = _module_at(root / "server" / "layouts" / "packed.py", """
        def slot(table, fd):
            return table[fd]
    """)
    connection = _module_at(root / "server" / "connection.py", """
        import os

        def serve(parse, slot, fd, calls):
            table = list(range(16))
            for _ in range(calls):
                parse(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
                slot(table, 3)
                os.write(fd, b"x")
    """)
    reader, writer = os.pipe()
    try:
        profiler = cProfile.Profile()
        profiler.runcall(connection.serve, http.parse, layout.slot, writer, PROFILED_CALLS)
    finally:
        os.close(reader)
        os.close(writer)
    stats_path = root / "run.prof"
    profiler.dump_stats(stats_path)
    return stats_path


def test_profile_dataset_groups_own_time_of_a_real_run_by_server_module(tmp_path: Path) -> None:
    stats_path = _profile_memdiet_shaped_run(tmp_path)
    rules = CategoryRules(tmp_path, MEMDIET_FILES)
    dataset = profile_dataset(stats_path, PROFILED_CALLS, rules, top=100)
    raw = pstats.Stats(str(stats_path)).stats

    def own_time(*names: str) -> float:
        return sum(entry[2] for (filename, _, name), entry in raw.items()
                   if any(text in f"{filename}:{name}" for text in names))

    seconds = {row["category"]: row["seconds"] for row in dataset["categories"]}
    assert list(seconds) == rules.categories()
    assert dataset["requests"] == PROFILED_CALLS
    assert dataset["profiled_s"] == pytest.approx(own_time(""), abs=1e-5)
    assert sum(seconds.values()) == pytest.approx(dataset["profiled_s"], abs=1e-5)
    assert sum(row["share"] for row in dataset["categories"]) == pytest.approx(1.0, abs=1e-3)
    # bytes.split is a C method that only the parser calls: its time is the parser's.
    assert seconds[HTTP_PARSING] == pytest.approx(own_time("server/http.py", "'split' of 'bytes'"), abs=1e-5)
    assert seconds[LAYOUTS_CATEGORY] == pytest.approx(own_time("server/layouts/packed.py"), abs=1e-5)
    assert seconds[SYSTEM_CALLS] == pytest.approx(own_time("posix.write"), abs=1e-5)
    assert min(seconds[HTTP_PARSING], seconds[LAYOUTS_CATEGORY], seconds[SYSTEM_CALLS]) > 0
    assert seconds[dict(MEMDIET_FILES)["server/deathqueue.py"]] == 0
    for row in dataset["categories"]:
        assert row["us_per_request"] == pytest.approx(row["seconds"] / PROFILED_CALLS * 1e6, abs=1e-3)

    functions = {row["function"]: row for row in dataset["top_functions"]}
    assert functions["<built-in method posix.write>"]["calls"] == PROFILED_CALLS
    assert functions["<built-in method posix.write>"]["category"] == SYSTEM_CALLS
    assert functions["<method 'split' of 'bytes' objects>"]["category"] == HTTP_PARSING
    assert functions["server/layouts/packed.py:2(slot)"]["category"] == LAYOUTS_CATEGORY
    own = [row["seconds"] for row in dataset["top_functions"]]
    assert own == sorted(own, reverse=True)


def test_profile_dataset_groups_a_peer_run_into_app_asyncio_and_system_calls(tmp_path: Path) -> None:
    app = _module_at(tmp_path / "experiments" / "bench" / "peers" / "fake_app.py", """
        import asyncio
        import socket

        async def exchange(calls):
            loop = asyncio.get_running_loop()
            left, right = socket.socketpair()
            left.setblocking(False)
            right.setblocking(False)
            with left, right:
                for _ in range(calls):
                    await loop.sock_sendall(left, b"ping")
                    await loop.sock_recv(right, 16)

        def main(calls):
            asyncio.run(exchange(calls))
    """)
    profiler = cProfile.Profile()
    profiler.runcall(app.main, PROFILED_CALLS)
    profiler.dump_stats(tmp_path / "peer.prof")
    rules = category_rules(PEERS["asyncio"], root=tmp_path)
    dataset = profile_dataset(tmp_path / "peer.prof", PROFILED_CALLS, rules, top=10_000)
    seconds = {row["category"]: row["seconds"] for row in dataset["categories"]}
    assert min(seconds[PEER_APP], seconds[ASYNCIO], seconds[SYSTEM_CALLS]) > 0
    for row in dataset["top_functions"]:
        if row["function"].startswith("asyncio/"):
            assert row["category"] == ASYNCIO, row
        elif row["function"].startswith(("<method 'send", "<method 'recv")) and "'_socket.socket'" in row["function"]:
            assert row["category"] == SYSTEM_CALLS, row
        elif row["function"] == "<method 'poll' of 'select.epoll' objects>":
            assert row["category"] == WAITING, row
    assert "uvloop" in category_rules(PEERS["uvicorn"]).note  # what cProfile cannot see is said


def test_profile_section_renders_categories_failures_and_top_functions(tmp_path: Path) -> None:
    dataset = profile_dataset(_profile_memdiet_shaped_run(tmp_path), PROFILED_CALLS,
                              CategoryRules(tmp_path, MEMDIET_FILES))
    document = {
        "plan": {"load_connections": 50, "duration_s": 3},
        "throughput_tool": {"name": "wrk"},
        "profiles": [
            {"name": "nofd", "label": "memdiet nofd", "kind": "memdiet", "ok": True, "error": None,
             "stats_file": "profiles/nofd.prof", "process_cpu_s": 1.5, "startup_s": 0.1, "profile": dataset,
             "quiet_check": {"quiet": True, "others_cores": 0.05, "busy": []}},
            {"name": "asyncio", "label": "asyncio", "kind": "peer", "ok": False, "stats_file": "profiles/asyncio.prof",
             "error": "no stats file at profiles/asyncio.prof after the server exited with code -15"},
        ],
    }
    text = "\n".join(profile_section(document))
    assert text.startswith("## Where the server's CPU goes (cProfile)")
    assert "fixed cost to every Python function call" in text and "not absolute timings" in text
    assert "`wrk -t1 -c50 -d3s --latency`" in text
    assert "| category | memdiet nofd |" in text  # subjects are columns
    parsing = next(row for row in dataset["categories"] if row["category"] == HTTP_PARSING)
    assert f"| {HTTP_PARSING} | {parsing['us_per_request']:,.1f} us ({parsing['share']:.1%}) |" in text
    assert f"| memdiet nofd | {dataset['profiled_s']:,.2f} s | 1.50 s | 0.10 s | {PROFILED_CALLS:,} |" in text
    assert "| quiet (others 0.05 cores) |" in text
    assert "- **asyncio**: no profile: no stats file at profiles/asyncio.prof" in text
    assert "| asyncio |" not in text  # no figures invented for it
    assert "### memdiet nofd: top" in text and "| `<built-in method posix.write>` | system calls" in text
    assert profile_section({**document, "profiles": None}) == []


class _DiesBySigterm(Subject):
    """A server that keeps SIGTERM's default action, as uvicorn re-raises it: the signal kills it
    before cProfile can write its stats."""

    kind = "peer"
    clean_exit_codes = frozenset({0, -signal.SIGTERM})

    def command(self, python: str) -> list[str]:
        return [python, "-m", "dies_by_sigterm_app"]


def test_profiled_run_of_a_server_killed_by_sigterm_reports_no_profile(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dies_by_sigterm_app.py").write_text(textwrap.dedent("""
        import asyncio
        from experiments.bench.peers.asyncio_app import respond

        async def main():
            server = await asyncio.start_server(respond, "127.0.0.1", 0)
            async with server:
                await server.serve_forever()

        asyncio.run(main())
    """))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    stats_path = tmp_path / "profiles" / "dies.prof"
    stats_path.parent.mkdir()
    stats_path.write_bytes(b"left by an earlier run")  # must not pass for this run's profile
    plan = BenchPlan(trials=1, held=(10,), duration_s=1, load_connections=5, cpu_check_s=0.1)
    record = ProfiledRun(_DiesBySigterm("dies", "killed by SIGTERM"), plan, LoadgenTool(sys.executable),
                         tmp_path / "logs", stats_path, lambda label, index, phase: None).run()
    assert record["exit_code"] == -signal.SIGTERM and record["throughput"]["requests"] > 0
    assert not record["ok"] and "profile" not in record
    assert f"no stats file at {stats_path}" in record["error"] and "code -15" in record["error"]


def test_profiled_bench_run_adds_a_profile_section_without_touching_throughput(tmp_path: Path) -> None:
    """``--profile`` on one layout and the asyncio peer, loadgen, 1 s, 10 held, wrk hidden from PATH:
    each subject gets one more run under cProfile, whose server-code rows are not empty."""
    out = tmp_path / "bench"
    result = _tiny_bench(tmp_path, out, "--held", "10", "--tool", "loadgen", "--profile")
    assert result.returncode == 0, result.stderr
    document = json.loads((out / "bench.json").read_text())
    assert document["status"] == "complete"
    runs = {run["name"]: run for run in document["profiles"]}
    assert list(runs) == ["nofd", "asyncio"]
    for subject in document["subjects"]:
        run = runs[subject["name"]]
        assert run["ok"], run["error"]
        assert run["command"][-len(subject["command"]) + 1:] == subject["command"][1:]
        assert run["command"][run["command"].index("-m") + 1] == "cProfile"
        assert (out / run["stats_file"]).is_file()
        assert run["profile"]["requests"] == run["throughput"]["requests"] > 0
        # The profiled run is no throughput figure: the summary holds the one trial only.
        [trial] = subject["trials"]
        assert subject["summary"]["req_per_s"] == spread([trial["throughput"]["req_per_s"]])
    seconds = {name: {row["category"]: row["seconds"] for row in run["profile"]["categories"]}
               for name, run in runs.items()}
    for category in ("server/http.py", "server/connection.py", "server/loop.py"):
        assert seconds["nofd"][dict(MEMDIET_FILES)[category]] > 0
    assert seconds["asyncio"][PEER_APP] > 0 and seconds["asyncio"][ASYNCIO] > 0

    markdown = (out / "bench.md").read_text()
    section = markdown.split("## Where the server's CPU goes (cProfile)")[1].split("\n## ")[0]
    assert f"| {HTTP_PARSING} |" in section and "| category | memdiet nofd | asyncio |" in section
    assert "### memdiet nofd: top" in section and "### asyncio: top" in section
    assert {"nofd-profile.log", "asyncio-profile.log"} <= {p.name for p in (out / "logs").iterdir()}


def test_limits_section_explains_only_the_layouts_below_the_asyncio_responder() -> None:
    """The "What limits throughput" text quotes the run's own medians and profile shares, for the
    layouts slower than the asyncio responder, and is absent when none is."""
    from experiments.render.bench_md import limits_section

    def subject(name: str, kind: str, rps: float, cpu_us: float) -> dict:
        return {"name": name, "label": name if kind == "peer" else f"memdiet {name}", "kind": kind,
                "summary": {"req_per_s": {"median": rps}, "cpu_us_per_request": {"median": cpu_us}}}

    document = {
        "subjects": [subject("nofd", "memdiet", 95_000, 10.0), subject("packed", "memdiet", 80_000, 12.0),
                     subject("asyncio", "peer", 100_000, 9.5)],
        "profiles": [{"name": "packed", "ok": True, "profile": {"categories": [
            {"category": "HTTP parsing (server/http.py)", "share": 0.20},
            {"category": "handlers and routing (server/handlers.py)", "share": 0.05},
            {"category": "system calls (read, write, send, recv...)", "share": 0.30}]}}],
    }
    text = "\n".join(limits_section(document))
    assert "**memdiet nofd**: 0.95x its req/s, 10.0 us of CPU per request." in text
    assert "**memdiet packed**: 0.80x its req/s, 12.0 us" in text
    assert "25.0% of its time goes to parsing" in text and "30.0% to system calls" in text
    assert "less that share is 9.0 us, against the responder's 9.5 us" in text
    document["subjects"][0]["summary"]["req_per_s"]["median"] = 120_000
    document["subjects"][1]["summary"]["req_per_s"]["median"] = 100_000
    assert limits_section(document) == []


def test_bench_records_commands_without_this_machines_paths(monkeypatch, tmp_path):
    from experiments.bench.measure import portable_command

    monkeypatch.chdir(tmp_path)
    python = "/opt/venv/bin/python3"
    command = ["taskset", "-c", "0", python, "-m", "cProfile", "-o", str(tmp_path / "reports/bench/profiles/x.prof"),
               "-m", "server", "--max-conns", "/not/below/cwd"]
    assert portable_command(command, python) == [
        "taskset", "-c", "0", "python", "-m", "cProfile", "-o", "reports/bench/profiles/x.prof",
        "-m", "server", "--max-conns", "/not/below/cwd"]
