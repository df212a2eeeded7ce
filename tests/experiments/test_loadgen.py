"""The load generator (experiments.loadgen): its parser and histogram, then against the real server
(``--layout nofd``) as a library, as a command-mode process and as a command line.

The server's ``/__stats`` is read on a separate plain socket, whose own connection the server counts
while answering it: so "N generator connections open" reads as ``open_connections == N + 1``.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import subprocess
import sys
import time
from typing import Iterator

import pytest

from experiments.loadgen import (
    EXIT_LIFETIME,
    MAX_LOAD_S,
    FdLimitError,
    LatencyHistogram,
    LoadGenerator,
    LoadGeneratorError,
    LoadGeneratorProcess,
    ProtocolError,
    ResponseParser,
    ensure_fd_capacity,
    fd_hard_limit,
    loopback_host,
    request_bytes,
)

from ..fixtures.server_client import (
    REPO_ROOT,
    ServerProcess,
    poll_until,
    read_line,
    running_server,
)

#: Seconds any one scenario may take before the test fails instead of hanging.
SCENARIO_TIMEOUT = 60
#: Seconds a command-line run of the generator may take.
PROCESS_TIMEOUT = 30
LOADGEN = [sys.executable, "-m", "experiments.loadgen"]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with running_server("nofd", max_conns=4096) as started:
        yield started


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, SCENARIO_TIMEOUT))


def open_connections(server: ServerProcess) -> int:
    """Connections the server holds, not counting the one asking."""
    return server.stats()["open_connections"] - 1


def run_loadgen(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LOADGEN, *args], cwd=REPO_ROOT, input=stdin, capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT)


# --- pieces -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("host, address", [
    ("127.0.0.1", "127.0.0.1"), ("127.4.5.6", "127.4.5.6"), ("::1", "::1"), ("[::1]", "::1"),
    ("localhost", "127.0.0.1"), ("LOCALHOST", "127.0.0.1"),
])
def test_loopback_hosts_are_accepted(host: str, address: str) -> None:
    assert loopback_host(host) == address


@pytest.mark.parametrize("host", ["10.0.0.1", "0.0.0.0", "::", "192.168.1.1", "example.com", "128.0.0.1", ""])
def test_other_hosts_are_refused(host: str) -> None:
    with pytest.raises(LoadGeneratorError, match="not a loopback address"):
        loopback_host(host)


def test_request_bytes_and_bad_paths() -> None:
    assert request_bytes("127.0.0.1", "/") == b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    assert request_bytes("::1", "/echo?a=1") == b"GET /echo?a=1 HTTP/1.1\r\nHost: [::1]\r\n\r\n"
    for path in ("", "nope", "/a b", "/\r\nX: y", "/caf\u00e9"):
        with pytest.raises(LoadGeneratorError, match="path"):
            request_bytes("127.0.0.1", path)


def test_histogram_percentiles_match_exact_ones_within_its_precision() -> None:
    rng = random.Random(94)
    samples = [rng.lognormvariate(math.log(0.002), 1.5) for _ in range(20_000)]  # ~2 ms, up to seconds
    histogram = LatencyHistogram()
    for sample in samples:
        histogram.record(sample)
    ordered = sorted(samples)
    quantiles = (0.5, 0.9, 0.99, 1.0)
    for quantile, value in zip(quantiles, histogram.percentiles_ms(quantiles)):
        exact_ms = ordered[math.ceil(quantile * len(ordered)) - 1] * 1000
        assert abs(value - exact_ms) <= max(0.001, exact_ms * 0.002), (quantile, value, exact_ms)
    assert histogram.count == len(samples)
    assert histogram.max_s == ordered[-1]
    assert LatencyHistogram().percentiles_ms((0.5,)) == [None]


OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!"


def test_parser_completes_a_response_split_anywhere() -> None:
    stream = OK_RESPONSE + b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\nConnection: close\r\n\r\nno!"
    for cut in range(len(stream) + 1):
        parser = ResponseParser()
        responses = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert responses == [(200, False), (404, True)], cut
        assert not parser.mid_response


@pytest.mark.parametrize("raw, expected", [
    (b"HTTP/1.1 204 No Content\r\n\r\n", [(204, False)]),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", [(200, False)]),
    (b"HTTP/1.1 100 Continue\r\n\r\n" + OK_RESPONSE, [(200, False)]),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", [(200, True)]),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\nx", [(200, False)]),
    (b"HTTP/1.1 503 Service Unavailable\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\nx", [(503, True)]),
])
def test_parser_cases(raw: bytes, expected: list) -> None:
    assert ResponseParser().feed(raw) == expected


def test_parser_reads_a_body_without_length_until_eof() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\n\r\nsome body") == []
    assert parser.mid_response
    assert parser.feed_eof() == [(200, True)]


@pytest.mark.parametrize("raw", [
    b"HTTX/1.1 200 OK\r\n\r\n", b"HTTP/1.1 2x0 OK\r\n\r\n", b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
])
def test_parser_refuses_what_it_cannot_read(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        ResponseParser().feed(raw)


def test_fd_capacity_is_raised_as_needed_and_refused_above_the_hard_limit() -> None:
    hard = fd_hard_limit()
    assert ensure_fd_capacity(100) >= 100
    with pytest.raises(FdLimitError, match=f"hard limit of {hard}"):
        ensure_fd_capacity(hard + 1)


# --- the library against the server -----------------------------------------------------------------
def test_ramp_load_drain(server: ServerProcess) -> None:
    async def scenario() -> None:
        generator = LoadGenerator(*server.address)
        ramp = await generator.ramp(200)
        assert (ramp.connections_opened, ramp.connections_open, ramp.requests, ramp.errors) == (200, 200, 200, {})
        assert open_connections(server) == 200

        load = await generator.load(1.0)
        assert load.requests > 0 and load.errors == {}, load
        assert load.connections_open == 200 and load.connections_closed == 0
        assert 0 < load.latency_p50_ms <= load.latency_p90_ms <= load.latency_p99_ms <= load.latency_max_ms
        assert load.req_per_s == pytest.approx(load.requests / load.elapsed_s, rel=0.01)
        assert load.bytes_received >= load.requests * len(OK_RESPONSE)

        drain = await generator.drain()
        assert (drain.connections_closed, drain.connections_open, drain.errors) == (200, 0, {})

    run(scenario())
    poll_until(lambda: open_connections(server) == 0, timeout=10, message="server's connections back to 0")


def test_load_stops_at_max_requests(server: ServerProcess) -> None:
    async def scenario() -> None:
        async with LoadGenerator(*server.address) as generator:
            await generator.ramp(10)
            load = await generator.load(MAX_LOAD_S, max_requests=500)  # the cap, not the duration, ends it
            assert (load.requests, load.errors) == (500, {})
            await generator.drain()

    run(scenario())


def test_non_2xx_statuses_are_counted(server: ServerProcess) -> None:
    async def scenario() -> None:
        async with LoadGenerator(*server.address, path="/nope") as generator:
            ramp = await generator.ramp(5)
            assert (ramp.requests, ramp.errors, ramp.connections_open) == (5, {"status_404": 5}, 5)
            load = await generator.load(30, max_requests=100)
            assert (load.requests, load.errors) == (100, {"status_404": 100})
            await generator.drain()

    run(scenario())


def test_unanswered_requests_time_out() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:  # connects complete, nobody answers
        async def scenario() -> None:
            async with LoadGenerator(*silent.getsockname(), timeout_s=0.3) as generator:
                ramp = await generator.ramp(3)
                assert (ramp.connections_opened, ramp.requests, ramp.errors) == (3, 0, {"timeout": 3})
                assert ramp.connections_open == 0

        run(scenario())


def test_responses_nobody_asked_for_are_counted_and_end_the_connection() -> None:
    async def scenario() -> None:
        async def answer_twice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK_RESPONSE * 2)
            await reader.read()  # until the client goes
            writer.close()

        server = await asyncio.start_server(answer_twice, "127.0.0.1", 0)
        async with server, LoadGenerator(*server.sockets[0].getsockname()[:2], timeout_s=5) as generator:
            ramp = await generator.ramp(2)
            drain = await generator.drain()  # counts what arrived after the ramp's result, if anything
            assert (ramp.requests, drain.requests) == (2, 0)
            assert ramp.errors.get("unsolicited", 0) + drain.errors.get("unsolicited", 0) == 2
            assert ramp.connections_closed + drain.connections_closed == 2 and drain.connections_open == 0

    run(scenario())


def test_unparseable_responses_count_once_as_protocol_errors() -> None:
    async def scenario() -> None:
        async def answer_nonsense(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"SPDY/9 200 OK\r\n\r\n")
            await reader.read()
            writer.close()

        server = await asyncio.start_server(answer_nonsense, "127.0.0.1", 0)
        async with server, LoadGenerator(*server.sockets[0].getsockname()[:2], timeout_s=5) as generator:
            ramp = await generator.ramp(3)
            drain = await generator.drain()
            assert (ramp.requests, ramp.errors, drain.errors) == (0, {"protocol": 3}, {})
            assert ramp.connections_closed + drain.connections_closed == 3 and drain.connections_open == 0

    run(scenario())


@pytest.fixture
def doomed_server() -> Iterator[tuple[subprocess.Popen, int]]:
    """A server the test kills (SIGKILL, by PID); always reaped."""
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "--layout", "nofd", "--port", "0", "--max-conns", "256"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        line = read_line(process.stdout, time.monotonic() + 20)
        yield process, int(line.rsplit(":", 1)[1])
    finally:
        process.kill()
        process.wait(10)
        process.stdout.close()


def test_a_server_killed_mid_load_gives_errors_not_a_hang(doomed_server) -> None:
    process, port = doomed_server

    async def scenario() -> None:
        async with LoadGenerator("127.0.0.1", port, timeout_s=5) as generator:
            await generator.ramp(20)
            load = asyncio.create_task(generator.load(MAX_LOAD_S))
            deadline = time.monotonic() + 20
            while generator.live_requests < 200:
                assert time.monotonic() < deadline, "load made no progress"
                await asyncio.sleep(0.01)
            process.kill()
            result = await asyncio.wait_for(load, 20)  # long before MAX_LOAD_S
            assert result.requests >= 200
            assert result.error_count > 0 and set(result.errors) <= {"closed", "reset", "timeout"}, result.errors
            assert (result.connections_open, result.connections_closed) == (0, 20)
            await asyncio.to_thread(process.wait, 10)  # its listener may close after its connections
            again = await generator.ramp(3)
            assert again.errors == {"connect_refused": 3}

    run(scenario())


# --- the process ------------------------------------------------------------------------------------
def test_command_mode_round_trip(server: ServerProcess) -> None:
    with LoadGeneratorProcess(sys.executable, request_timeout_s=5, max_lifetime_s=120) as generator:
        ready = generator.start(*server.address)
        assert ready["ready"] and ready["pid"] == generator.pid and ready["port"] == server.address[1]

        ramp = generator.command("ramp 20", timeout_s=30)
        assert ramp["ok"] and ramp["command"] == "ramp" and ramp["seq"] == 1
        assert (ramp["connections_open"], ramp["requests"], ramp["errors"]) == (20, 20, {})
        assert open_connections(server) == 20

        load = generator.command("load 0.5", timeout_s=30)
        assert load["ok"] and load["requests"] > 0 and load["errors"] == {}
        assert load["latency_p50_ms"] <= load["latency_p99_ms"] <= load["latency_max_ms"]
        capped = generator.command("load 30 200", timeout_s=30)
        assert capped["requests"] == 200

        for bad in ("jump 3", "ramp many", "load", f"load {MAX_LOAD_S + 1}", "ramp 0"):
            reply = generator.command(bad, timeout_s=10)
            assert reply["ok"] is False and reply["error"], bad
        too_many = generator.command(f"ramp {fd_hard_limit() + 1}", timeout_s=10)
        assert too_many["ok"] is False and "RLIMIT_NOFILE hard limit" in too_many["error"]
        assert generator.command("status", timeout_s=10)["connections_open"] == 20

        drain = generator.command("drain", timeout_s=30)
        assert drain["ok"] and drain["connections_open"] == 0 and drain["connections_closed"] == 20
        assert generator.close() == 0
        assert "Traceback" not in generator.stderr_tail()
    poll_until(lambda: open_connections(server) == 0, timeout=10, message="server's connections back to 0")


def test_command_mode_exits_at_stdin_eof_with_one_json_line_per_command() -> None:
    done = run_loadgen("--commands", "--port", "9", stdin="status\n\nbogus\n")  # port 9: never connected
    assert done.returncode == 0, done.stderr
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert [reply["ok"] for reply in replies] == [True, True, False]
    assert replies[0]["ready"] and replies[1]["connections_open"] == 0 and "unknown command" in replies[2]["error"]


def test_command_mode_ends_at_its_max_lifetime() -> None:
    process = subprocess.Popen([*LOADGEN, "--commands", "--port", "9", "--max-lifetime", "0.5"], cwd=REPO_ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:  # stdin stays open: only the lifetime bound can end it
        assert process.wait(PROCESS_TIMEOUT) == EXIT_LIFETIME
        assert "max lifetime" in process.stderr.read()
    finally:
        process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            stream.close()


def test_one_shot_mode(server: ServerProcess) -> None:
    done = run_loadgen("--port", str(server.address[1]), "-c", "4", "-d", "5", "--max-requests", "50", "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert (results["ramp"]["requests"], results["load"]["requests"]) == (4, 50)
    assert results["drain"]["connections_closed"] == 4
    human = run_loadgen("--port", str(server.address[1]), "-c", "2", "-d", "5", "--max-requests", "10")
    assert human.returncode == 0 and "load: 10 requests" in human.stdout, human.stdout


@pytest.mark.parametrize("host", ["10.0.0.1", "0.0.0.0", "example.com"])
def test_one_shot_refuses_a_non_loopback_host(host: str) -> None:
    done = run_loadgen("--host", host, "--port", "80", "-c", "1", "-d", "1")
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.count("\n") == 1 and "not a loopback address" in done.stderr


def test_one_shot_refuses_more_connections_than_the_hard_limit(server: ServerProcess) -> None:
    hard = fd_hard_limit()
    done = run_loadgen("--port", str(server.address[1]), "-c", str(hard + 1), "-d", "1")
    assert done.returncode == 2
    assert f"RLIMIT_NOFILE hard limit of {hard}" in done.stderr and done.stderr.count("\n") == 1
    assert open_connections(server) == 0


@pytest.mark.parametrize("args", [
    ["-c", "1"], ["--port", "x"], ["--port", "80", "-c", "0"], ["--port", "80", "-d", str(MAX_LOAD_S + 1)],
    ["--port", "80", "--path", "no-slash", "-c", "1"], ["--port", "80", "--bogus"],
])
def test_bad_arguments_get_one_line_and_exit_2(args: list[str]) -> None:
    done = run_loadgen(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "error" in done.stderr and "Traceback" not in done.stderr


# --- what each client saw, and ramps that end with what was accepted ---------------------------------
async def _tiny_server(keep: int, announce_close: bool):
    """A loopback server that keeps its first ``keep`` connections alive and, for the others,
    answers once and closes (saying ``Connection: close`` when ``announce_close``)."""
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        served += 1
        keep_this = served <= keep
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                close = b"Connection: close\r\n" if announce_close and not keep_this else b""
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + close + b"\r\nok")
                await writer.drain()
                if not keep_this:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize(("announce", "kind"), [(True, "closed_announced"), (False, "closed_idle")])
def test_each_ending_is_recorded_by_what_the_client_saw(announce: bool, kind: str) -> None:
    async def scenario() -> None:
        server = await _tiny_server(keep=4, announce_close=announce)
        async with server, LoadGenerator(*server.sockets[0].getsockname()[:2]) as generator:
            ramp = await generator.ramp(10)
            await asyncio.sleep(0.2)  # a FIN after the response may arrive once the ramp returned
            status_ended = generator.ended_so_far()
            drain = await generator.drain()
            ended = {**ramp.ended}
            for name, entry in status_ended.items():
                ended.setdefault(name, entry)
            assert ramp.requests == 10 and ended[kind]["count"] == 6
            assert ended[kind]["requests_min"] == ended[kind]["requests_max"] == 1
            assert ended[kind]["idle_s_max"] < 5
            assert drain.ended["client"]["count"] == 4 and drain.connections_open == 0

    run(scenario())


def test_a_ramp_against_a_server_that_answers_nothing_stalls_and_ends_quickly() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=4) as silent:  # the kernel completes a few connects
        async def scenario() -> None:
            async with LoadGenerator(*silent.getsockname(), timeout_s=30) as generator:
                started = time.monotonic()
                ramp = await generator.ramp(40, stall_s=0.5)
                elapsed = time.monotonic() - started
                assert ramp.stopped_early == "stalled" and ramp.requests == 0 and ramp.connections_open == 0
                # Far less than one 30 s timeout: the stall, not the timeout, ended it.
                assert elapsed < 5, elapsed
                assert ramp.ended["no_answer"]["count"] >= 1
                assert ramp.ended["no_answer"]["count"] + ramp.errors.get("connect_timeout", 0) == ramp.tried

        run(scenario())


def test_a_ramp_stops_after_a_run_of_clients_not_held() -> None:
    async def scenario() -> None:
        server = await _tiny_server(keep=0, announce_close=True)
        async with server, LoadGenerator(*server.sockets[0].getsockname()[:2], connect_concurrency=8) as generator:
            ramp = await generator.ramp(200)
            assert ramp.stopped_early == "no_progress" and 8 <= ramp.tried < 200
            assert ramp.ended["closed_announced"]["count"] == ramp.tried == ramp.requests

    run(scenario())


def test_load_fresh_sends_each_request_on_a_new_connection() -> None:
    async def scenario() -> None:
        server = await _tiny_server(keep=0, announce_close=True)
        async with server, LoadGenerator(*server.sockets[0].getsockname()[:2]) as generator:
            load = await generator.load_fresh(0.5, workers=4, max_requests=50)
            assert load.fresh_connections and load.requests == 50 and load.errors == {}
            assert load.connections_opened == 50 and load.peak_open <= 4 and load.connections_open == 0

    run(scenario())


def test_command_mode_takes_the_ramps_bounds_and_load_fresh(server: ServerProcess) -> None:
    with LoadGeneratorProcess(python=sys.executable) as generator:
        generator.start(*server.address)
        ramp = generator.command("ramp 5 10 2", timeout_s=30)
        assert ramp["ok"] and ramp["connections_open"] == 5 and ramp["stopped_early"] is None and ramp["tried"] == 5
        status = generator.command("status", timeout_s=10)
        assert status["connections_open"] == 5 and status["ended"] == {}
        fresh = generator.command("load-fresh 0.3 2 20", timeout_s=30)
        assert fresh["ok"] and fresh["fresh_connections"] and fresh["requests"] == 20
        assert fresh["ended"]["client"]["count"] == 20 and fresh["connections_open"] == 5
        for bad in ("ramp 5 soon", "load-fresh 1", "load-fresh 1 0"):
            assert not generator.command(bad, timeout_s=10)["ok"]
