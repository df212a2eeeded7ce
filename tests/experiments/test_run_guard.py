"""A run whose clients cannot all be held says so (issue 16, item 5).

In these layouts a slot's index is the fd the kernel hands out, so every descriptor the server holds
itself (stdio, listener, epoll, its wake-up pair, a tracer's files) is a slot no client can get. At
``--max-conns 10`` that left 3 slots, and ``memdiet run ... --connections 8`` used to end with exit 0,
status complete and five 503s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from experiments.dataset.metrics import client_warnings, errors_text
from tests.fixtures.server_client import ServerProcess, request_bytes

from ..fixtures import REPO

#: The command of issue 16, item 5, word for word (plus a temporary runs folder).
ISSUE_COMMAND = ["run", "--layout", "packed", "--max-conns", "10", "--connections", "8", "--idle", "0.2", "--load", "0.3"]


def memdiet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def held_until_refused(server: ServerProcess, already_held: int, most: int) -> int:
    """Open connections one by one, each answered once and kept open, until one is refused with
    503 (or ``most`` are held): how many the server really holds, ``already_held`` included."""
    clients = []
    try:
        while already_held + len(clients) < most:
            client = server.client()
            clients.append(client)
            response = client.exchange(request_bytes("GET", "/"))
            if response.status == 503:
                return already_held + len(clients) - 1
            assert response.status == 200, response
        return already_held + len(clients)
    finally:
        for client in clients:
            client.close()


@pytest.mark.parametrize("trace", [False, True], ids=["untraced", "tracemalloc"])
def test_usable_slots_are_the_connections_really_held(start_server, layout: str, trace: bool, tmp_path) -> None:
    options = ("--trace", "tracemalloc", "--trace-dir", str(tmp_path)) if trace else ()
    max_conns = 16
    server = start_server(layout, *options, max_conns=max_conns)
    if trace:
        # As the runner does: the sampler writes ready.json (a file it holds open for a moment, a
        # slot taken meanwhile) once, after its first snapshot; counting starts after it.
        deadline = time.monotonic() + 30
        while not (tmp_path / "ready.json").exists():
            assert time.monotonic() < deadline, "the tracer never said it was ready"
            time.sleep(0.02)
    # The reader stays open through the count (a connection closed meanwhile would free its slot
    # only when the server notices, which would make the count racy).
    with server.client() as reader:
        stats = json.loads(reader.exchange(request_bytes("GET", "/__stats")).body)
        usable = stats["usable_slots"]
        assert 0 < usable < max_conns  # the server's own descriptors take some slots
        # The oracle: fill the table from outside until the server answers 503.
        assert held_until_refused(server, 1, max_conns + 2) == usable
    if trace:
        assert json.loads((tmp_path / "table.json").read_text())["usable_slots"] == usable


def test_the_issue_command_fails_with_one_line_naming_layout_and_phase(tmp_path) -> None:
    result = memdiet(*ISSUE_COMMAND, "--runs-dir", str(tmp_path))
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert "run failed: packed: refused in phase start" in message, message
    assert "not --connections 8" in message and "--max-conns" in message, message
    (run_dir,) = tmp_path.iterdir()
    document = json.loads((run_dir / "result.json").read_text())
    assert document["status"] == "incomplete"
    assert "refused in phase start" in document["error"]
    assert document["phases"] == []  # refused before the first phase: nothing measured pretends otherwise


def test_enough_slots_runs_complete_without_warnings(tmp_path) -> None:
    result = memdiet("run", "--layout", "packed", "--max-conns", "64", "--connections", "8", "--idle", "0.2",
                     "--load", "0.3", "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (run_dir,) = tmp_path.iterdir()
    document = json.loads((run_dir / "result.json").read_text())
    assert document["status"] == "complete"
    assert document["warnings"] == []
    assert 8 <= document["table"]["usable_slots"] < 64


# The replies below are the load generator's, copied from the run of ISSUE_COMMAND before the fix.
RAMP_OF_THE_ISSUE = {"ok": True, "phase": "ramp", "connections_opened": 8, "connections_closed": 5,
                     "connections_open": 3, "requests": 5, "errors": {"status_503": 2, "unsolicited": 3}}
CLEAN_LOAD = {"ok": True, "phase": "load", "connections_open": 3, "requests": 1747, "errors": {}}


def test_client_warnings_name_clients_not_held_and_every_error() -> None:
    warnings = client_warnings({"ramp": RAMP_OF_THE_ISSUE, "load": CLEAN_LOAD, "drain": {"errors": {}}}, 8)
    assert warnings == [
        "ramp: only 3 of 8 clients were held",
        "ramp: 5 client errors: status_503 2, unsolicited 3",
    ]


def test_errors_after_every_client_was_held_are_warnings_too() -> None:
    ramp = {"connections_open": 8, "errors": {}}
    load = {"connections_open": 7, "errors": {"reset": 1}}
    assert client_warnings({"ramp": ramp, "load": load}, 8) == ["load: 1 client error: reset 1"]
    assert client_warnings({"ramp": ramp, "load": {"errors": {}}}, 8) == []
    assert errors_text({"errors": {}}) == "no client errors"


def test_a_stop_asked_before_the_loop_starts_is_kept() -> None:
    """The runner refuses a run as soon as the server has printed its ``listening on`` line, and
    stops it with SIGTERM at once: a stop that lands before ``serve_forever`` starts must not be
    forgotten (the server used to serve on until the runner killed it 60 s later)."""
    import threading

    from server.layouts import make_table
    from server.loop import Server

    server = Server(make_table("packed", 16), "127.0.0.1", 0)
    server.stop()  # what SIGTERM's handler does, before the loop runs
    loop = threading.Thread(target=server.serve_forever, daemon=True)
    loop.start()
    loop.join(timeout=5.0)
    if loop.is_alive():
        server.stop()  # let the thread end before failing
        loop.join(timeout=5.0)
        pytest.fail("serve_forever ignored a stop asked before it started")
