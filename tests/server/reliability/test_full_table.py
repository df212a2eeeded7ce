"""A connection table kept full: each refusal a 503 then close, and the table recovers.
"""

from __future__ import annotations

import pytest

from ...fixtures.server_client import poll_until
from ...fixtures.reliability import SCALES, SETTLE_TIMEOUT, Scale, get, report, wait_until_empty
from ...fixtures.hostile_clients import SMALL_TABLE, fill_table, refused


@pytest.mark.parametrize("scale", SCALES)
def test_full_table_refuses_and_recovers_through_churn(start_server, layout: str, scale: Scale) -> None:
    server = start_server(layout, max_conns=SMALL_TABLE)
    refusals = 0
    for round_index in range(scale.churn_rounds):
        held = fill_table(server)
        refusals += 1
        try:
            assert held, "not one client fitted the table"
            for _ in range(3):  # more clients while full: each refused
                assert refused(server)
                refusals += 1
            for client in held:  # those holding slots are still served
                assert client.exchange(get("/")).status == 200
        finally:
            for index, client in enumerate(held):  # leave by FIN and by RST
                client.reset() if (index + round_index) % 2 else client.close()
        poll_until(lambda: not refused(server), SETTLE_TIMEOUT, message="a slot freed")
    wait_until_empty(server)
    stats = server.stats()
    report("table full", layout, rounds=scale.churn_rounds, refused_by_test=refusals,
           refused_by_server=stats["refused_connections"])
    assert stats["refused_connections"] >= refusals
