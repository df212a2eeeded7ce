"""``python -m server``: argument errors, the listening line, a busy port and stopping by signal."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from typing import Callable, Iterator

import pytest

from ..fixtures.server_client import (
    REPO_ROOT,
    ServerProcess,
    poll_until,
    request_bytes,
    running_server,
)

#: Seconds a ``python -m server`` that should fail at once may run before the test fails.
FAILING_RUN_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def server(layout: str) -> Iterator[ServerProcess]:
    with running_server(layout) as running:
        yield running


def run_server_command(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "server", *arguments], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=FAILING_RUN_TIMEOUT)


def assert_one_line_error(result: subprocess.CompletedProcess) -> None:
    """Exit 2, nothing on stdout, exactly one line on stderr and no traceback."""
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "error" in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("arguments", [
    pytest.param(["--layout", "no-such-layout"], id="unknown-layout"),
    pytest.param(["--port", "70000"], id="port-out-of-range"),
    pytest.param(["--max-conns", "0"], id="max-conns-zero"),
    pytest.param(["--keep-alive-timeout", "-1"], id="negative-keep-alive"),
    pytest.param(["--max-conns", "abc"], id="max-conns-not-a-number"),
])
def test_bad_argument_is_one_line_and_exit_2(layout: str, arguments: list[str]) -> None:
    # Valid options first: the bad one given last is what fails (argparse checks each occurrence).
    result = run_server_command("--layout", layout, "--port", "0", "--max-conns", "8", *arguments)
    assert_one_line_error(result)
    assert arguments[0] in result.stderr  # it names the option at fault


def test_port_in_use_is_one_line_and_exit_2(server: ServerProcess, layout: str) -> None:
    port = server.address[1]
    result = run_server_command("--layout", layout, "--port", str(port), "--max-conns", "8")
    assert_one_line_error(result)
    assert str(port) in result.stderr
    server.assert_serving()  # the first server is unaffected


def test_first_line_names_the_bound_port(server: ServerProcess) -> None:
    match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", server.listening_line)
    assert match is not None, server.listening_line
    assert 0 < int(match.group(1)) < 65536
    server.assert_serving()  # and that is where it serves


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_with_connections_held_exits_0(
    start_server: Callable[..., ServerProcess], layout: str, signum: int,
) -> None:
    server = start_server(layout)
    held = {
        "idle": request_bytes("GET", "/"),
        "partial-head": b"GET / HTTP/1.1\r\nHo",
        "partial-body": request_bytes("POST", "/echo", headers={"Content-Length": "10"}, body=b"abc"),
    }
    clients = {kind: server.client() for kind in held}
    try:
        for kind, sent in held.items():
            clients[kind].send(sent)
        assert clients["idle"].read_response().status == 200
        poll_until(lambda: server.stats()["open_connections"] == 1 + len(held), 10.0,
                   message="held connections accepted")
        assert server.signal(signum) == 0, server.stderr()
        assert all(client.at_eof() for client in clients.values())
    finally:
        for client in clients.values():
            client.close()
    # start_server's teardown checks the exit code again and that stderr has no traceback.
