"""Half-closed clients get every response to their complete requests, then the close.
"""

from __future__ import annotations

import pytest

from ...fixtures.reliability import SCALES, Scale, get, report, wait_until_empty
from ...fixtures.hostile_clients import PARTIAL_BODY, PARTIAL_CHUNKED, PARTIAL_HEAD, half_close


@pytest.mark.parametrize("scale", SCALES)
def test_half_closed_clients_get_their_responses(start_server, layout: str, scale: Scale) -> None:
    """A client that shuts down its sending side after complete requests still gets every answer,
    then the server's close; after an incomplete request it gets the close alone."""
    server = start_server(layout, max_conns=256)
    targets = ["/echo?first", "/echo?second", "/echo?third"]
    for _ in range(scale.half_closes):
        with server.client() as client:
            half_close(client, get("/"))
            assert client.read_response().status == 200
            assert client.at_eof()
        with server.client() as client:
            half_close(client, b"".join(get(target) for target in targets))
            assert [client.read_response().echo()["target"] for _ in targets] == targets
            assert client.at_eof()
        with server.client() as client:
            half_close(client, get("/", headers={"Connection": "close"}))
            assert client.read_response().connection == "close"
            assert client.at_eof()
        for incomplete in (PARTIAL_HEAD, PARTIAL_BODY, PARTIAL_CHUNKED):
            with server.client() as client:
                half_close(client, incomplete)
                assert client.at_eof()
    wait_until_empty(server)
    report("half-closed", layout, connections=scale.half_closes * 6)
