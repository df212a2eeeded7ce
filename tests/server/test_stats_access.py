"""Who may read ``/__stats``: README says "loopback clients", so by default every address of the IPv4
loopback network (127.0.0.0/8) and ::1 (and IPv4 loopback mapped into IPv6), and nothing else; with
``--stats-from`` exactly the addresses (or networks) given."""

from __future__ import annotations

import pytest

from server.handlers import stats
from server.loop import loopback_addresses


class _Services:
    """What the stats handler asks of the server: the peer's address, the stats, who may read them."""

    def __init__(self, host: str, allowed: frozenset[str]) -> None:
        self.host = host
        self.local_addresses = allowed

    def peer(self, fd: int) -> tuple:
        return (self.host, 4242)

    def stats(self) -> dict:
        return {"layout": "naive"}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "::ffff:127.0.0.1",
                                  "::ffff:127.1.2.3"])
def test_loopback_clients_may_read_stats(host):
    status, body, _type, _headers = stats(_Services(host, loopback_addresses()), 3, None, b"")
    assert status == 200 and b"naive" in body


@pytest.mark.parametrize("host", ["10.0.0.1", "128.0.0.1", "::2", "fe80::1", "", "localhost", "not an address"])
def test_other_clients_get_404(host):
    assert stats(_Services(host, loopback_addresses()), 3, None, b"")[0] == 404


def test_stats_from_names_exactly_who_may_read():
    allowed = frozenset(("127.0.0.2",))
    assert stats(_Services("127.0.0.2", allowed), 3, None, b"")[0] == 200
    assert stats(_Services("127.0.0.1", allowed), 3, None, b"")[0] == 404
    network = frozenset(("10.1.0.0/16",))
    assert stats(_Services("10.1.2.3", network), 3, None, b"")[0] == 200
    assert stats(_Services("10.2.0.1", network), 3, None, b"")[0] == 404


def test_stats_from_refuses_what_is_not_an_address():
    from server.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--stats-from", "localhost"])
    assert build_parser().parse_args(["--stats-from", "10.0.0.0/8"]).stats_from == ["10.0.0.0/8"]
