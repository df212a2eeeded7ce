"""What a parked connection coroutine holds, read from its frames (docs/ARCHITECTURE.md, "Coroutines
hold nothing while parked"): after a GET, a POST body sent whole, by length beyond the buffer or
chunked, a head split across reads, and pipelined requests, the coroutine that yielded ``PARK`` is one
frame (no sub-generator is suspended under it) whose locals are the server, the fd and two event masks
that are small ints (CPython's cached ones, no object of their own). The deadline and the flags are
the layout's, in the table, not the coroutine's.

The coroutine is driven in-process over a loopback connection, as the loop would, so its frames can be read.
The walk follows ``gi_yieldfrom`` down the chain: one case stops mid-body to show that it sees the
sub-generators' locals there.
"""

from __future__ import annotations

import select
import socket
from typing import Generator, Iterator

import pytest

from server.connection import PARK, RUNNABLE, WANT_READ, serve_connection
from server.layouts import make_table
from server.loop import Server

from ..conftest import LAYOUT_NAMES
from ..fixtures.server_client import request_bytes

TIMEOUT_S = 5.0
BODY = b"x" * 20_000  # five times the 4 KiB head buffer: the length body is read into its own bytearray


def chunked(body: bytes, size: int = 3000) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


#: What the client sends before the coroutine is left to park, each list item one send.
CASES = {
    "get": [request_bytes("GET", "/")],
    "post, length": [request_bytes("POST", "/echo", headers={"Content-Length": str(len(BODY))}) + BODY],
    "post, chunked": [request_bytes("POST", "/echo", headers={"Transfer-Encoding": "chunked"}) + chunked(BODY)],
    "head split across reads": [b"GET /echo HTTP/1.1\r\nHost: x\r\n", b"X-One: 1\r\n\r\n"],
    "pipelined": [request_bytes("GET", "/") * 3 + request_bytes("GET", "/echo")],
}


@pytest.fixture
def connection(request: pytest.FixtureRequest) -> Iterator[tuple[Server, socket.socket, int]]:
    """An in-process server of the parametrized layout, one loopback TCP connection's server end
    open in it (TCP, not a socketpair: nofd and packed ask the socket for the peer's address)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client_end = socket.create_connection(listener.getsockname(), timeout=TIMEOUT_S)
        server_end, _ = listener.accept()
    server_end.setblocking(False)
    client_end.settimeout(TIMEOUT_S)
    fd = server_end.fileno()
    table = make_table(request.param, fd + 1)
    server = Server(table, "127.0.0.1", 0)
    server.running = True
    table.open(fd, ("127.0.0.1", 1))
    try:
        yield server, client_end, fd
    finally:
        table.close(fd)  # the socket is this fixture's to close, not the server's
        server.shutdown()
        server_end.close()
        client_end.close()


def frames(coroutine: Generator) -> list[tuple[str, dict]]:
    """(function name, locals) of every frame of a suspended coroutine, outermost first."""
    chain = []
    while coroutine is not None:
        chain.append((coroutine.gi_code.co_name, dict(coroutine.gi_frame.f_locals)))
        coroutine = coroutine.gi_yieldfrom
    return chain


def _costs_nothing(value: object) -> bool:
    """None, a bool, or an int CPython caches (-5..256): a local that holds no object of its own."""
    return value is None or isinstance(value, bool) or (type(value) is int and -5 <= value <= 256)


def run_until_parked(coroutine: Generator, client: socket.socket, sends: list[bytes]) -> int:
    """Drive ``coroutine`` as the loop would, one send at a time; returns the responses seen."""
    received = b""
    assert next(coroutine) == PARK  # nothing sent yet
    for data in sends:  # each send is an event; a head split across sends waits (WANT_READ) between them
        client.sendall(data)
        wants = coroutine.send(select.EPOLLIN)
        while wants == RUNNABLE:  # a turn for the loop between pipelined requests
            wants = coroutine.send(0)
    assert wants == PARK, wants
    client.setblocking(False)
    try:
        while chunk := client.recv(1 << 20):
            received += chunk
    except BlockingIOError:
        pass
    finally:
        client.settimeout(TIMEOUT_S)
    return received.count(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("connection", LAYOUT_NAMES, indirect=True)
def test_a_parked_coroutine_holds_only_the_fd_and_small_masks(connection, case: str) -> None:
    server, client, fd = connection
    coroutine = serve_connection(server, fd, select.EPOLLIN)
    expected_responses = 4 if case == "pipelined" else 1
    assert run_until_parked(coroutine, client, CASES[case]) == expected_responses
    chain = frames(coroutine)
    assert [name for name, _ in chain] == ["serve_connection"], f"{case}: suspended under the park: {chain}"
    local = chain[0][1]
    assert set(local) == {"server", "fd", "events", "peer_closed"}, local
    assert local["server"] is server and local["fd"] == fd
    kept = {name: value for name, value in local.items() if name not in ("server", "fd") and not _costs_nothing(value)}
    assert not kept, f"{case}: the parked coroutine holds {kept}"
    coroutine.close()


@pytest.mark.parametrize("connection", ["nofd"], indirect=True)
def test_the_walk_sees_the_body_mid_read_and_nothing_of_it_once_parked(connection) -> None:
    """Mid-body the chain reaches the length body's reader and its bytearray; once the response is
    out and the coroutine parks, that frame has returned and nothing refers to the body."""
    server, client, fd = connection
    coroutine = serve_connection(server, fd, select.EPOLLIN)
    assert next(coroutine) == PARK
    head = request_bytes("POST", "/echo", headers={"Content-Length": str(len(BODY))})
    client.sendall(head + BODY[:5000])
    assert coroutine.send(select.EPOLLIN) == WANT_READ
    chain = frames(coroutine)
    names = [name for name, _ in chain]
    assert names == ["serve_connection", "_serve_requests", "_read_length_body", "_read_some"], names
    assert dict(chain)["_read_length_body"]["collected"] == BODY[:5000]
    client.sendall(BODY[5000:])
    wants = coroutine.send(select.EPOLLIN)
    while wants == WANT_READ:
        wants = coroutine.send(select.EPOLLIN)
    assert wants == PARK
    assert [name for name, _ in frames(coroutine)] == ["serve_connection"]
    coroutine.close()
