"""Leaks: connect/request/close cycles and keep-alive requests leave the traced heap and RSS as they were.
"""

from __future__ import annotations

import time

import pytest

from ...fixtures.reliability import SCALES, Scale, report
from ...fixtures.hostile_clients import memory, run_load

#: Heap (tracemalloc) and RSS after the load may differ from before it by at most these fractions.
HEAP_TOLERANCE = 0.01
RSS_TOLERANCE = 0.02


@pytest.mark.parametrize("scale", SCALES)
def test_no_leak_after_cycles_and_keep_alive_requests(start_server, layout: str, scale: Scale) -> None:
    server = start_server(layout, "--trace", "tracemalloc", max_conns=256)
    heap_cold, rss_cold = memory(server)  # reported only: includes no warmed-up caches yet
    # One round at a tenth of the size first: caches, free lists and the table's own containers
    # reach their working size, which is what "idle-empty" means for a server that has served.
    run_load(server, scale.leak_cycles // 10, scale.leak_requests // 10)
    heap_idle, rss_idle = memory(server)
    started = time.monotonic()
    run_load(server, scale.leak_cycles, scale.leak_requests)
    elapsed = time.monotonic() - started
    heap_after, rss_after = memory(server)
    report("leak check", layout, cycles=scale.leak_cycles, keep_alive_requests=scale.leak_requests,
           load_seconds=round(elapsed, 1), heap_cold_bytes=heap_cold, rss_cold_bytes=rss_cold,
           heap_idle_bytes=heap_idle, heap_after_bytes=heap_after,
           heap_change_pct=round(100 * (heap_after - heap_idle) / heap_idle, 3),
           rss_idle_bytes=rss_idle, rss_after_bytes=rss_after,
           rss_change_pct=round(100 * (rss_after - rss_idle) / rss_idle, 3))
    assert abs(heap_after - heap_idle) <= HEAP_TOLERANCE * heap_idle
    assert abs(rss_after - rss_idle) <= RSS_TOLERANCE * rss_idle
