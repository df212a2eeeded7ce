"""Pipelining: a flood is answered in order with bounded buffering, and a pipelining connection
gives the others a turn.
"""

from __future__ import annotations

import socket
import threading

import pytest

from server.connection import PARK, RUNNABLE, serve_connection
from server.layouts import make_table
from server.loop import Server

from ...fixtures.server_client import READ_TIMEOUT
from ...fixtures.reliability import SCALES, Scale, get, report, wait_until_empty


#: Python heap a pipelining flood may add at its peak, in bytes: the server reads at most its 4 KiB
#: buffer ahead, so the peak is one buffer, one request and one response above the idle heap, plus
#: the /__stats request that reads it (~9 KiB). A flood held in Python would add its whole size: ~35 B
#: per request sent, ~170 B per response. (The server's tracemalloc peak counts from when it began
#: serving: start-up transients are left out.)
FLOOD_PEAK_BOUND = 32 << 10


@pytest.mark.parametrize("scale", SCALES)
def test_pipelining_flood_is_answered_in_order_with_bounded_buffering(start_server, layout: str, scale: Scale) -> None:
    server = start_server(layout, "--trace", "tracemalloc", max_conns=256)
    before = server.stats()
    requests = b"".join(get(f"/echo?{index}") for index in range(scale.flood_requests))
    with server.client() as client:
        sender = threading.Thread(target=client.send, args=(requests,), daemon=True)
        sender.start()  # one send of everything; this thread reads meanwhile
        answered = 0
        for index in range(scale.flood_requests):
            assert client.read_response().echo()["target"] == f"/echo?{index}"
            answered += 1
        sender.join(READ_TIMEOUT)
    after = server.stats()
    peak_growth = after["tracemalloc_peak_bytes"] - before["tracemalloc_current_bytes"]
    report("pipelining flood", layout, requests=scale.flood_requests, bytes_sent=len(requests),
           heap_peak_growth_bytes=peak_growth, bound_bytes=FLOOD_PEAK_BOUND)
    assert answered == scale.flood_requests
    assert len(requests) > 4 * FLOOD_PEAK_BOUND  # the flood is far larger than the bound it must keep
    assert peak_growth <= FLOOD_PEAK_BOUND
    wait_until_empty(server)


def test_pipelined_requests_yield_to_other_connections(layout: str) -> None:
    """Answering a pipeline, the coroutine gives the loop a turn after every response that has
    another request behind it (RUNNABLE), so one flooding connection cannot starve the others. Driven
    in-process over a socketpair: no event loop decides when it runs."""
    server_end, client_end = socket.socketpair()
    server_end.setblocking(False)
    client_end.settimeout(READ_TIMEOUT)
    table = make_table(layout, server_end.fileno() + 1)
    server = Server(table, "127.0.0.1", 0)
    server.running = True  # as inside serve_forever
    fd = server_end.fileno()
    try:
        table.open(fd, ("127.0.0.1", 1))
        count = 5
        client_end.sendall(get("/") * count)
        coroutine = serve_connection(server, fd)
        turns = [next(coroutine) for _ in range(count)]
        coroutine.close()
        responses = b""
        while responses.count(b"HTTP/1.1 ") < count:
            responses += client_end.recv(65536)
    finally:
        table.close(fd)  # the sockets are this test's to close, not the server's
        server.shutdown()
        server_end.close()
        client_end.close()
    # A turn after each of the first four responses, then the park once nothing is left to read.
    assert turns == [RUNNABLE] * (count - 1) + [PARK]
