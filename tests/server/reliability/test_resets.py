"""Resets (SO_LINGER 0) at every stage of a request and response: every slot is freed.
"""

from __future__ import annotations

import pytest

from ...fixtures.reliability import SCALES, Scale, get, report, wait_until_empty
from ...fixtures.hostile_clients import PARTIAL_BODY, PARTIAL_CHUNKED, PARTIAL_HEAD, reset_after, stalled_clients

RESET_KINDS = {
    "at-connect": lambda server: reset_after(server, b""),
    "mid-head": lambda server: reset_after(server, PARTIAL_HEAD),
    "mid-body": lambda server: reset_after(server, PARTIAL_BODY),
    "mid-chunked-body": lambda server: reset_after(server, PARTIAL_CHUNKED),
    "after-response": lambda server: reset_after(server, get("/"), read_response=True),
    "mid-pipeline": lambda server: reset_after(server, get("/echo") * 50),
}


@pytest.mark.parametrize("scale", SCALES)
def test_abrupt_resets_at_every_stage(start_server, layout: str, scale: Scale) -> None:
    server = start_server(layout, max_conns=256)
    for _ in range(scale.resets):
        for inject in RESET_KINDS.values():
            inject(server)
    # Mid-response: the server is blocked writing to these (they stopped reading) when they reset.
    clients, _ = stalled_clients(server, scale.stalled_resets)
    for client in clients:
        client.reset()
    wait_until_empty(server)
    server.assert_alive()
    server.assert_serving()
    report("resets", layout, resets=scale.resets * len(RESET_KINDS) + len(clients),
           kinds=",".join([*RESET_KINDS, "mid-response"]))
