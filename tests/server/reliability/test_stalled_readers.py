"""Clients that pipeline and never read: the server stops reading them and holds bounded memory.
"""

from __future__ import annotations

import signal
import threading

import pytest

from ...fixtures.server_client import RawClient
from ...fixtures.reliability import SCALES, Scale, open_connections, report, wait_until_empty
from ...fixtures.hostile_clients import LARGE_ECHO, STALLED_CLIENT_BUFFERS, pipeline_until_stalled, stalled_clients


#: Python heap one connection may hold while its client does not read, in bytes. By design the
#: coroutine reads no further request until its response is written, so it holds: the 4 KiB head
#: buffer, the request parsed from one head (its fields are slices of at most 4 KiB), the handler's
#: body and the response built from it (each under 4.5 KiB for the largest /echo a 4 KiB head can
#: ask for), plus the coroutine frame and small objects (~1.5 KiB). 24 KiB covers that with margin;
#: measured: 14-19 KiB per connection (the naive layout's buffer is preallocated in its slot).
#: Kernel socket buffers come on top (outside the process heap and its RSS).
BUFFERED_BYTES_PER_STALLED_CONNECTION = 24 << 10


@pytest.mark.parametrize("scale", SCALES)
def test_clients_that_never_read_hold_bounded_memory(start_server, layout: str, scale: Scale) -> None:
    server = start_server(layout, "--trace", "tracemalloc", max_conns=256)
    heap_before = server.traced_heap_bytes()
    rss_before = server.rss_bytes()
    clients, sent = stalled_clients(server, scale.stalled_clients)
    try:
        heap_stalled = server.traced_heap_bytes()
        rss_stalled = server.rss_bytes()
        assert open_connections(server) == len(clients)
    finally:
        for client in clients:
            client.reset()
    bound = BUFFERED_BYTES_PER_STALLED_CONNECTION * len(clients)
    per_connection = (heap_stalled - heap_before) / len(clients)
    report("never-reading clients", layout, clients=len(clients), sent_per_client_mb=round(min(sent) / 1e6, 1),
           heap_per_connection_bytes=round(per_connection), bound_per_connection_bytes=BUFFERED_BYTES_PER_STALLED_CONNECTION,
           rss_growth_bytes=rss_stalled - rss_before)
    # Each client pushed megabytes the server did not take: it cannot be holding them in Python.
    assert min(sent) > 20 * BUFFERED_BYTES_PER_STALLED_CONNECTION
    assert heap_stalled - heap_before <= bound
    # RSS grows by whole pages and pymalloc arenas; the same bound plus one 1 MiB arena of slack.
    assert rss_stalled - rss_before <= bound + (1 << 20)
    wait_until_empty(server)
    server.assert_serving()


def test_a_paused_server_is_not_taken_for_a_stalled_one(start_server) -> None:
    """The stall is a state, not a quiet moment: a server the machine stops for 1.5 s (SIGSTOP, as
    two busy cores can) just as non-reading clients start pipelining is waited for, and the clients
    still push far more than the floor the test above asserts (a wait for 0.5 s without progress
    stopped here at 0.25 MB per client)."""
    server = start_server("nofd", max_conns=256)
    clients = [RawClient.connect(server.address, socket_buffers=STALLED_CLIENT_BUFFERS) for _ in range(2)]
    resume = threading.Timer(1.5, server.process.send_signal, (signal.SIGCONT,))
    try:
        server.process.send_signal(signal.SIGSTOP)
        resume.start()
        sent = pipeline_until_stalled(server, clients, LARGE_ECHO)
    finally:
        resume.join()
        server.process.send_signal(signal.SIGCONT)  # whatever happened, it must not stay stopped
        for client in clients:
            client.reset()
    assert min(sent) > 20 * BUFFERED_BYTES_PER_STALLED_CONNECTION
    wait_until_empty(server)
    server.assert_serving()
