"""HTTP/1.1 behaviour of the running server, the same for every layout.

Each layout gets one server per set of options (module-scoped fixtures): a default one, one with a
short keep-alive timeout, one with a small connection table and one tracing with tracemalloc whose
``/__stats`` only answers 127.0.0.2. The last section drives the connection coroutine in-process,
where a full send buffer can be forced.
"""

from __future__ import annotations

import json
import select
import socket
import time
from typing import Iterator

import pytest

from server.connection import PARK, RUNNABLE, WANT_WRITE, _write_all, serve_connection
from server.deathqueue import CLOCK_MODULUS
from server.http import HEAD_BUFFER_SIZE
from server.layouts import make_table
from server.layouts.base import ALIVE, WRITING
from server.loop import Server

from ..fixtures.server_client import (
    DEFAULT_MAX_CONNS,
    RawClient,
    ServerProcess,
    poll_until,
    request_bytes,
    running_server,
)

#: --max-body of the default server, in bytes.
MAX_BODY = 65536
#: --keep-alive-timeout of the expiring server, in seconds.
SHORT_KEEP_ALIVE = 0.5
#: --max-conns of the small-table server (the server's own fds take some of these slots).
SMALL_TABLE = 16
#: Seconds a server gets to do something asynchronous (close an expired or dropped connection).
SETTLE_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def server(layout: str) -> Iterator[ServerProcess]:
    with running_server(layout, "--max-body", str(MAX_BODY)) as running:
        yield running


@pytest.fixture(scope="module")
def expiring_server(layout: str) -> Iterator[ServerProcess]:
    with running_server(layout, "--keep-alive-timeout", str(SHORT_KEEP_ALIVE)) as running:
        yield running


@pytest.fixture(scope="module")
def small_table_server(layout: str) -> Iterator[ServerProcess]:
    with running_server(layout, max_conns=SMALL_TABLE) as running:
        yield running


@pytest.fixture(scope="module")
def traced_server(layout: str) -> Iterator[ServerProcess]:
    with running_server(layout, "--trace", "tracemalloc", "--stats-from", "127.0.0.2") as running:
        yield running


def get(target: str, **kwargs) -> bytes:
    return request_bytes("GET", target, **kwargs)


def wait_for_open_connections(server: ServerProcess, count: int) -> None:
    """Poll ``/__stats`` until it reports ``count`` open connections (its own included)."""
    poll_until(lambda: server.stats()["open_connections"] == count, SETTLE_TIMEOUT,
               message=f"open_connections == {count}")


# --- methods and persistence ------------------------------------------------------------------


def test_get_root(server: ServerProcess) -> None:
    response = server.get("/")
    assert response.status == 200
    assert response.body == b"Hello, World!"
    assert response.headers["content-length"] == "13"
    assert response.headers["content-type"].startswith("text/plain")


def test_head_has_content_length_but_no_body(server: ServerProcess) -> None:
    with server.client() as client:
        head = client.exchange(request_bytes("HEAD", "/"), head_only=True)
        assert head.status == 200
        assert head.headers["content-length"] == "13"
        # Had HEAD's body been sent, it would come before the next response and break its parse.
        following = client.exchange(get("/echo?after-head"))
    assert following.echo()["target"] == "/echo?after-head"


def test_http11_keeps_alive_by_default(server: ServerProcess) -> None:
    with server.client() as client:
        for index in range(5):
            response = client.exchange(get(f"/echo?n={index}"))
            assert response.status == 200
            assert response.connection != "close"
            assert response.echo()["target"] == f"/echo?n={index}"


def test_http10_closes_after_response(server: ServerProcess) -> None:
    with server.client() as client:
        response = client.exchange(get("/echo", version="1.0"))
        assert response.status == 200
        assert response.echo()["version"] == "HTTP/1.0"
        assert response.connection == "close"
        assert client.at_eof()


def test_http10_keep_alive_stays_open(server: ServerProcess) -> None:
    with server.client() as client:
        for target in ("/echo?first", "/echo?second"):
            response = client.exchange(get(target, version="1.0", headers={"Connection": "keep-alive"}))
            assert response.status == 200
            assert response.connection == "keep-alive"
            assert response.echo()["target"] == target


def test_connection_close_on_http11(server: ServerProcess) -> None:
    with server.client() as client:
        response = client.exchange(get("/", headers={"Connection": "close"}))
        assert response.status == 200
        assert response.connection == "close"
        assert client.at_eof()


def test_pipelined_requests_answered_in_order(server: ServerProcess) -> None:
    targets = ["/echo?first", "/echo?second", "/echo?third"]
    with server.client() as client:
        client.send(b"".join(get(target) for target in targets))
        answered = [client.read_response().echo()["target"] for _ in targets]
    assert answered == targets


def test_pipelined_requests_with_bodies(server: ServerProcess) -> None:
    """Bytes after a Content-Length or chunked body are the next request's head."""
    sent = (
        request_bytes("POST", "/echo?sized", headers={"Content-Length": "3"}, body=b"abc")
        + request_bytes("POST", "/echo?chunked", headers={"Transfer-Encoding": "chunked"},
                        body=b"5\r\nhello\r\n0\r\n\r\n")
        + get("/echo?last")
    )
    with server.client() as client:
        client.send(sent)
        answered = [client.read_response().echo() for _ in range(3)]
    assert [(echo["target"], echo["body"]) for echo in answered] == [
        ("/echo?sized", "3"), ("/echo?chunked", "5"), ("/echo?last", "0"),
    ]


def test_request_sent_one_byte_at_a_time(server: ServerProcess) -> None:
    """Head and chunked body split at every byte: chunk-size lines and CRLFs across reads."""
    sent = request_bytes("POST", "/echo?slow", headers={"Transfer-Encoding": "chunked"},
                         body=b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
    with server.client() as client:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in sent:
            client.send(bytes([byte]))
            time.sleep(0.001)  # spaces the sends so the server sees separate reads (load shape, not a wait)
        echo = client.read_response().echo()
    assert (echo["target"], echo["body"]) == ("/echo?slow", "11")


@pytest.mark.parametrize("size", [11, 20000], ids=["small", "larger-than-buffer"])
def test_post_content_length_body(server: ServerProcess, size: int) -> None:
    with server.client() as client:
        response = client.exchange(
            request_bytes("POST", "/echo", headers={"Content-Length": str(size)}, body=b"x" * size))
        assert response.echo()["body"] == str(size)
        assert client.exchange(get("/")).status == 200  # the body was consumed exactly


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_expect_100_continue_is_answered_before_the_body(server: ServerProcess, framing: str) -> None:
    body = b"hello"
    headers = {"Expect": "100-continue"}
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        wire_body = b"5\r\nhello\r\n0\r\n\r\n"
    else:
        headers["Content-Length"] = str(len(body))
        wire_body = body
    with server.client() as client:
        client.send(request_bytes("POST", "/echo", headers=headers))  # the head alone
        interim = b""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in interim and time.monotonic() < deadline:
            interim += client.sock.recv(4096)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.send(wire_body)
        assert client.read_response().echo()["body"] == str(len(body))


def test_post_chunked_body(server: ServerProcess) -> None:
    chunk_sizes = [1, 4096, 10]
    body = b"".join(b"%x\r\n%s\r\n" % (size, b"y" * size) for size in chunk_sizes) + b"0\r\nX-Trailer: 1\r\n\r\n"
    with server.client() as client:
        response = client.exchange(request_bytes("POST", "/echo", headers={"Transfer-Encoding": "chunked"}, body=body))
        assert response.echo()["body"] == str(sum(chunk_sizes))
        assert client.exchange(get("/")).status == 200


# --- errors -----------------------------------------------------------------------------------

REFUSED_REQUESTS = [
    pytest.param(b"GET  / HTTP/1.1\r\nHost: test\r\n\r\n", 400, id="malformed-request-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: test\r\nBad Header: 1\r\n\r\n", 400, id="space-in-header-name"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: test\r\nNo-Colon\r\n\r\n", 400, id="header-without-colon"),
    pytest.param(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, id="missing-host"),
    pytest.param(get("/", headers={"X-Filler": "a" * HEAD_BUFFER_SIZE}), 431, id="head-larger-than-buffer"),
    pytest.param(request_bytes("POST", "/echo", headers={"Content-Length": str(10**12)}), 413,
                 id="content-length-over-limit"),
    pytest.param(request_bytes("POST", "/echo", headers={"Transfer-Encoding": "chunked"}) + b"%x\r\n" % (MAX_BODY + 1),
                 413, id="chunk-over-limit"),
    pytest.param(b"GET / HTTP/2.0\r\nHost: test\r\n\r\n", 505, id="http-2.0"),
    pytest.param(b"GET / HTTP/3.0\r\nHost: test\r\n\r\n", 505, id="http-3.0"),
    pytest.param(request_bytes("BREW", "/"), 501, id="unknown-method"),
]


@pytest.mark.parametrize("sent, status", REFUSED_REQUESTS)
def test_refused_request_gets_status_then_close(server: ServerProcess, sent: bytes, status: int) -> None:
    with server.client() as client:
        response = client.exchange(sent)
        assert response.status == status
        assert response.connection == "close"
        assert client.at_eof()
    server.assert_serving()


@pytest.mark.parametrize("method, target, status", [
    ("GET", "/no-such-path", 404),
    ("DELETE", "/", 405),
    ("POST", "/", 405),
    ("PUT", "/echo", 405),
])
def test_unserved_route_keeps_connection(server: ServerProcess, method: str, target: str, status: int) -> None:
    with server.client() as client:
        response = client.exchange(request_bytes(method, target))
        assert response.status == status
        assert response.connection != "close"
        if status == 405:
            allowed = [name.strip() for name in response.headers["allow"].split(",")]
            assert "GET" in allowed and method not in allowed
        assert client.exchange(get("/")).status == 200
    server.assert_serving()


@pytest.mark.parametrize("sent", [
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: te", id="half-head"),
    pytest.param(request_bytes("POST", "/echo", headers={"Content-Length": "100"}, body=b"x" * 50), id="half-body"),
])
def test_client_reset_mid_request(server: ServerProcess, sent: bytes) -> None:
    client = server.client()
    client.send(sent)
    client.reset()
    server.assert_serving()
    wait_for_open_connections(server, 1)  # the reset connection's slot was released


# --- addresses and statistics ----------------------------------------------------------------


def test_echo_reports_each_clients_address(server: ServerProcess) -> None:
    with server.client() as first, server.client() as second:
        reported = [client.exchange(get("/echo")).echo()["client"] for client in (first, second)]
        assert reported == [f"127.0.0.1 {first.local_port}", f"127.0.0.1 {second.local_port}"]


def test_stats_counts_held_connections(server: ServerProcess, layout: str) -> None:
    wait_for_open_connections(server, 1)
    held = [server.client() for _ in range(3)]
    try:
        for client in held:  # answered, so surely accepted
            assert client.exchange(get("/")).status == 200
        wait_for_open_connections(server, 1 + len(held))
        stats = server.stats()
    finally:
        for client in held:
            client.close()
    assert stats["layout"] == layout
    assert stats["max_conns"] == DEFAULT_MAX_CONNS
    assert isinstance(stats["rss_bytes"], int) and stats["rss_bytes"] > 0
    assert "tracemalloc_current_bytes" not in stats  # not tracing
    wait_for_open_connections(server, 1)


def test_stats_with_tracemalloc_from_allowed_address(traced_server: ServerProcess, layout: str) -> None:
    response = traced_server.get("/__stats", source="127.0.0.2")
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    stats = json.loads(response.body)
    assert stats["layout"] == layout
    assert 0 < stats["tracemalloc_current_bytes"] <= stats["tracemalloc_peak_bytes"]
    assert stats["rss_bytes"] > 0


def test_stats_refused_to_other_addresses(traced_server: ServerProcess) -> None:
    assert traced_server.get("/__stats").status == 404  # from 127.0.0.1, not in --stats-from
    traced_server.assert_serving()


# --- expiry and the table limit ----------------------------------------------------------------


def test_keep_alive_timeout_closes_idle_and_stalled(expiring_server: ServerProcess) -> None:
    """Every kind of connection that stops sending is closed by the server."""
    stalled = {
        "never-sent": b"",
        "idle-after-response": get("/"),
        "partial-head": b"GET / HTTP/1.1\r\nHo",
        "partial-body": request_bytes("POST", "/echo", headers={"Content-Length": "10"}, body=b"abc"),
        "lingering-after-close": get("/", headers={"Connection": "close"}),
    }
    clients = {kind: expiring_server.client() for kind in stalled}
    try:
        for kind, sent in stalled.items():
            clients[kind].send(sent)
            if sent.endswith(b"\r\n\r\n"):
                assert clients[kind].read_response().status == 200
        not_closed = [kind for kind, client in clients.items() if not client.at_eof(SETTLE_TIMEOUT)]
    finally:
        for client in clients.values():
            client.close()
    assert not_closed == []
    expiring_server.assert_serving()


def test_table_full_refuses_with_503_then_recovers(small_table_server: ServerProcess) -> None:
    held: list[RawClient] = []
    try:
        refused = None
        for _ in range(SMALL_TABLE):  # the server's own fds use some slots: fewer clients fit
            client = small_table_server.client()
            response = client.exchange(get("/"))
            if response.status == 503:
                refused = client
                break
            assert response.status == 200
            held.append(client)
        assert refused is not None, f"no connection refused with --max-conns {SMALL_TABLE}"
        assert held, "not one client connection fitted the table"
        assert response.connection == "close"
        assert refused.at_eof()
        refused.close()

        for client in held:  # the held connections are still served
            assert client.exchange(get("/")).status == 200
        with small_table_server.client() as another:
            assert another.exchange(get("/")).status == 503  # still full

        held.pop().close()
        poll_until(lambda: _served(small_table_server), SETTLE_TIMEOUT, message="a freed slot serves again")
    finally:
        for client in held:
            client.close()
    poll_until(lambda: _served(small_table_server), SETTLE_TIMEOUT)
    assert small_table_server.stats()["refused_connections"] >= 2


def _served(server: ServerProcess) -> bool:
    """True if a fresh connection gets 200 (False on 503: the table is still full)."""
    status = server.get("/").status
    assert status in (200, 503), status
    return status == 200



# --- in-process: writes that block ------------------------------------------------------------
# Loopback TCP buffers absorb megabytes, so a full send buffer cannot be forced through a real
# server; these drive the connection code over a socketpair with a small send buffer instead.


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server end, client end); the server end is non-blocking with an ~8 KiB send buffer."""
    server_end, client_end = socket.socketpair()
    server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    server_end.setblocking(False)
    client_end.settimeout(SETTLE_TIMEOUT)
    yield server_end, client_end
    server_end.close()
    client_end.close()


def _drain(sock: socket.socket) -> bytes:
    """Everything readable now, without waiting."""
    chunks = []
    sock.setblocking(False)
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(SETTLE_TIMEOUT)
    return b"".join(chunks)


def test_partial_writes_deliver_everything_and_clear_writing(layout: str, socket_pair) -> None:
    server_end, client_end = socket_pair
    fd = server_end.fileno()
    table = make_table(layout, fd + 1)
    table.open(fd, ("127.0.0.1", 1))
    payload = bytes(range(256)) * 1000  # 256 KB: far more than the send buffer takes at once
    writer = _write_all(table, fd, payload)
    received = bytearray()
    for wants in writer:  # each time the socket is full, read some as a slow client would
        assert wants == WANT_WRITE
        assert table.flags(fd) & WRITING
        received += client_end.recv(65536)
    received += _drain(client_end)
    assert bytes(received) == payload
    assert table.flags(fd) == ALIVE  # WRITING cleared, nothing else touched


def test_pipelined_responses_through_a_full_socket_stay_in_order(layout: str, socket_pair) -> None:
    server_end, client_end = socket_pair
    fd = server_end.fileno()
    table = make_table(layout, fd + 1)
    server = Server(table, "127.0.0.1", 0)
    server.running = True  # as inside serve_forever: a stopping server would close after one response
    try:
        table.open(fd, ("127.0.0.1", 1))
        count = 100  # ~13 KB of responses: the send buffer takes ~11 at a time
        client_end.sendall(get("/") * count)
        coroutine = serve_connection(server, fd)
        received = bytearray()
        waits = 0
        for wants in coroutine:
            if wants == RUNNABLE:  # a turn for the loop between pipelined requests: resume at once
                continue
            received += _drain(client_end)
            if wants == PARK:  # every request answered, nothing left to read
                assert not table.flags(fd) & WRITING
                break
            assert wants == WANT_WRITE, wants
            waits += 1
        coroutine.close()
    finally:
        table.close(fd)  # the socket is the fixture's to close, not the server's
        server.shutdown()
    received += _drain(client_end)
    assert waits > 0, "the send buffer never filled: the test did not exercise blocked writes"
    responses = received.split(b"HTTP/1.1 ")[1:]
    assert len(responses) == count
    assert all(response.startswith(b"200 OK") and response.endswith(b"Hello, World!") for response in responses)


# --- skipping the read that would only say EAGAIN ------------------------------------------------


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the head reads the coroutine makes, into its buffer or into bytes of their own: each
    entry is the bytes read, 0 at EOF, -1 for EAGAIN."""
    import server.connection as connection

    results: list[int] = []
    read_into, read_bytes = connection._read_into, connection._read_bytes

    def counting_read_into(fd: int, view) -> int:
        results.append(read_into(fd, view))
        return results[-1]

    def counting_read_bytes(fd: int, size: int) -> bytes | None:
        data = read_bytes(fd, size)
        results.append(-1 if data is None else len(data))
        return data

    monkeypatch.setattr(connection, "_read_into", counting_read_into)
    monkeypatch.setattr(connection, "_read_bytes", counting_read_bytes)
    return results


def _in_process_server(layout: str, server_end: socket.socket) -> tuple[Server, int]:
    fd = server_end.fileno()
    table = make_table(layout, fd + 1)
    server = Server(table, "127.0.0.1", 0)
    server.running = True
    table.open(fd, ("127.0.0.1", 1))
    return server, fd


def test_a_short_read_parks_without_reading_again(layout: str, socket_pair, counted_reads: list[int]) -> None:
    """After a read that left the socket empty (short), the answered coroutine parks at once: with
    edge-triggered epoll the next byte raises a new event, so a second read would only say EAGAIN."""
    server_end, client_end = socket_pair
    server, fd = _in_process_server(layout, server_end)
    try:
        client_end.sendall(get("/"))
        coroutine = serve_connection(server, fd, select.EPOLLIN)
        assert next(coroutine) == PARK
        assert len(counted_reads) == 1 and counted_reads[0] > 0
        assert client_end.recv(65536).endswith(b"Hello, World!")
        # The next request comes with its own event: the coroutine reads again.
        client_end.sendall(get("/"))
        assert coroutine.send(select.EPOLLIN) == PARK
        assert len(counted_reads) == 2
        coroutine.close()
    finally:
        server.table.close(fd)  # the socket is the fixture's to close
        server.shutdown()


@pytest.mark.parametrize("fin_in_first_event", [True, False], ids=["fin-with-request", "fin-later"])
def test_a_fin_is_never_missed_by_the_skipped_read(layout: str, socket_pair, counted_reads: list[int],
                                                   fin_in_first_event: bool) -> None:
    """A FIN that came with the request is announced by EPOLLRDHUP in the event that woke the
    coroutine: it then reads on to the EOF instead of parking (and returns, so the loop closes the
    connection). A FIN after that event raises an event of its own, which the parked coroutine gets."""
    server_end, client_end = socket_pair
    server, fd = _in_process_server(layout, server_end)
    try:
        client_end.sendall(get("/"))
        if fin_in_first_event:
            client_end.shutdown(socket.SHUT_WR)
            coroutine = serve_connection(server, fd, select.EPOLLIN | select.EPOLLRDHUP)
            with pytest.raises(StopIteration):
                next(coroutine)
            assert counted_reads[-1] == 0  # it read the EOF
        else:
            coroutine = serve_connection(server, fd, select.EPOLLIN)
            assert next(coroutine) == PARK
            client_end.shutdown(socket.SHUT_WR)
            with pytest.raises(StopIteration):
                coroutine.send(select.EPOLLIN | select.EPOLLRDHUP)
        assert client_end.recv(65536).endswith(b"Hello, World!")
    finally:
        server.table.close(fd)
        server.shutdown()


def test_deadlines_round_up_to_ticks() -> None:
    """A deadline is at least one keep-alive timeout away and at most one tick more, on the tick grid."""
    table = make_table("nofd", 8)
    server = Server(table, "127.0.0.1", 0, keep_alive_timeout=15.0)
    try:
        tick = server.deadline_tick_ms
        assert tick == 15_000 // 32
        for now_ms in (0, 1, tick - 1, tick, 123_457, CLOCK_MODULUS - 20_000):
            deadline = server._deadline_from(now_ms)
            assert deadline % tick == 0 or deadline < tick  # on the grid (modulo the clock's wrap)
            assert 15_000 <= (deadline - now_ms) % CLOCK_MODULUS < 15_000 + tick
    finally:
        server.shutdown()
