"""Slowloris: connections trickling a head, a body or garbage after a refusal are closed at their
timeout, while a steady client is served meanwhile.
"""

from __future__ import annotations

import socket
import time

import pytest

from server.http import HEAD_BUFFER_SIZE

from ...fixtures.server_client import READ_TIMEOUT, request_bytes
from ...fixtures.reliability import SCALES, SETTLE_TIMEOUT, Scale, report, wait_until_empty
from ...fixtures.hostile_clients import SlowConnection, SteadyClient, Trickle, percentile, trickle_until_closed

TRICKLES = {
    # A head that never ends: its value would reach the 4 KiB buffer only after 4,000 trickles.
    "head": Trickle(b"", b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: " + b"s" * HEAD_BUFFER_SIZE, None),
    # A complete head, then a body far longer than any test lasts.
    "body": Trickle(request_bytes("POST", "/echo", headers={"Content-Length": str(1 << 19)}), b"b" * 4096, None),
    # Refused at once (400), then garbage the server discards while it lingers before closing.
    "after-refusal": Trickle(b"GET  / HTTP/1.1\r\n\r\n", b"g" * 4096, 400),
}


@pytest.mark.parametrize("scale", SCALES)
def test_slowloris_connections_are_closed_while_others_are_served(start_server, layout: str, scale: Scale) -> None:
    """Each slowloris connection sends a byte more often than the keep-alive timeout (of a head, of a
    body, or of garbage after a refusal), so a server that restarted the deadline on every read
    would never close them."""
    server = start_server(layout, "--keep-alive-timeout", str(scale.slowloris_timeout_s),
                          max_conns=scale.slowloris_connections + 64)
    steady = SteadyClient(server)
    connections: list[SlowConnection] = []
    kinds = list(TRICKLES.values())
    try:
        for index in range(scale.slowloris_connections):
            trickle = kinds[index % len(kinds)]
            connecting = time.monotonic()  # before the handshake: the server's accept comes later
            sock = socket.create_connection(server.address, timeout=READ_TIMEOUT)
            sock.sendall(trickle.opening)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connections.append(SlowConnection(sock, trickle, connecting))
        steady.start()
        trickle_until_closed(connections, scale.slowloris_trickle_s,
                             time.monotonic() + scale.slowloris_timeout_s + SETTLE_TIMEOUT)
    finally:
        steady.stop()
        for connection in connections:
            connection.sock.close()
    lifetimes = [connection.closed_after for connection in connections if connection.closed_after is not None]
    latencies_ms = [latency * 1000 for latency in steady.latencies] or [float("nan")]
    report("slowloris", layout, connections=len(connections), bytes_trickled=sum(c.bytes_sent for c in connections),
           closed=len(lifetimes), lifetime_min_s=round(min(lifetimes, default=0), 2),
           lifetime_max_s=round(max(lifetimes, default=0), 2), steady_requests=len(steady.latencies),
           steady_p50_ms=round(percentile(latencies_ms, 0.5), 2), steady_p99_ms=round(percentile(latencies_ms, 0.99), 2),
           steady_max_ms=round(max(latencies_ms), 2))
    assert len(lifetimes) == len(connections), \
        f"{len(connections) - len(lifetimes)} slowloris connections outlived their deadline"
    # Not before the deadline: it runs from the accept (or the refusal), which follows the connect
    # call (less 1 ms: the server's clock counts whole milliseconds).
    assert min(lifetimes) >= scale.slowloris_timeout_s - 0.001
    for connection in connections:
        if connection.trickle.answer is None:
            assert connection.received == b"", connection.received[:200]
        else:
            assert connection.received.startswith(b"HTTP/1.1 %d " % connection.trickle.answer), connection.received[:200]
    assert steady.failures == []
    assert steady.latencies, "the steady client was never served"
    wait_until_empty(server)
