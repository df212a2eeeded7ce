"""Memory ceilings enforced by pytest-memray: what building each layout's table may allocate, and
that serving thousands of keep-alive requests leaks nothing.

Run with ``pytest --memray -m memray_ceiling`` (``make test`` does). Without ``--memray`` the module
is skipped: pytest-memray would still track the marked tests, but a plain ``pytest`` run should not
pass or fail on figures it was not asked to measure.

The ceilings come from figures memray reported, per interpreter minor, see
:data:`MEASURED_TABLE_BYTES` (object and dict sizes change between CPython minors, so a figure holds
only for the minor it was measured on). On a minor with no entry, each ceiling is derived from a
reference measured in the same run (tracemalloc's bytes for the same table, in this process: memray's
figure was within 0.1% of it where both were measured), with the same margin, and the test warns that
the ceiling was not measured for this interpreter. To measure a minor, run this module with
``--memray --most-allocations=0`` and read each test's "Total memory allocated".
"""

from __future__ import annotations

import io
import sys
import threading
import warnings
from pathlib import Path
from typing import Iterator

import pytest

from server.layouts import make_table
from server.loop import Server

from ..conftest import LAYOUT_NAMES
from ..fixtures.server_client import RawClient, poll_until, request_bytes

pytestmark = pytest.mark.memray_ceiling

#: Slots of each measured table: enough that the per-table constants are noise in the figure.
SLOTS = 20_000
#: High watermark memray reported for ``make_table(layout, SLOTS)`` with Python allocators traced
#: (so pymalloc's small objects count one by one), bytes, by interpreter minor: the same to the byte
#: in 3 runs of this module, and within 0.1% of tracemalloc's bytes for the same table.
MEASURED_TABLE_BYTES = {
    # CPython 3.11.7, memray 1.20, pytest-memray 1.11; the project's machine (2-core Xeon, Linux 6.18).
    "3.11": {
        "naive": 122_110_222,  # 6,105.5 B per slot: a 4 KiB buffer, a __dict__, header containers
        "split": 2_574_892,  # 128.7 B per slot
        "bitfields": 1_934_836,  # 96.7 B per slot
        "nofd": 1_614_808,  # 80.7 B per slot
        "packed": 322_199,  # 16.1 B per slot: one typed buffer
    },
}
#: The interpreter running the tests, as MEASURED_TABLE_BYTES keys it.
PYTHON_MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"
#: 5% over the measured figure: room for a CPython patch release or changes in pytest's own
#: allocations, yet below what one more 8-byte field per slot costs in every layout but naive
#: (split +6.2%, bitfields +8.3%, nofd +10%, packed +50%), so that growth fails here.
TABLE_MARGIN = 0.05

#: Keep-alive traffic of the leak check: ROUNDS of CONCURRENT connections, each making
#: REQUESTS_PER_CONNECTION requests (``/`` and ``/echo`` in turn): 3,000 requests over 600 connections.
ROUNDS, CONCURRENT, REQUESTS_PER_CONNECTION = 60, 10, 5
#: The same traffic, 3 rounds, before memray starts: first-use allocations (interned strings, the
#: table's containers growing to CONCURRENT connections) are not leaks.
WARM_UP_ROUNDS = 3
#: Largest leak allowed at any one allocation site, by pytest-memray's limit_leaks. What remains at
#: the end, measured per layout: memray's own line tables for code first run under its tracer (at most
#: 2,400 B, naive's serve_connection), and the fresh empty slot objects split, bitfields and nofd put
#: in place at close (at most 2,280 B: 19 slots of 120 B, one per fd that held a connection; with the
#: client in this process that is ~20 fds, the same at 4x the traffic). 8 KiB is over 3x that, and a
#: leak of 3 B per request or 14 B per connection (any Python object is 16 B or more) exceeds it.
LEAK_LIMIT = "8 KB"
#: Slots of the served table: above any fd the test process holds (slot index = fd).
SERVED_SLOTS = 2048
SERVER_PACKAGE = str(Path(make_table.__code__.co_filename).resolve().parent.parent)
REQUESTS = (request_bytes("GET", "/"), request_bytes("GET", "/echo"))


@pytest.fixture(scope="module", autouse=True)
def memray_active(request: pytest.FixtureRequest) -> Iterator[None]:
    """Skip unless pytest-memray is tracking (``--memray``); trace Python's allocators for this
    module's tests, or memray sees the slot objects of split, bitfields and nofd only as pymalloc
    arenas (it reports 172,960 B for each, the list of slots alone)."""
    if not request.config.getoption("memray", default=False):
        pytest.skip("memory ceilings need pytest-memray tracking: run `pytest --memray -m memray_ceiling`")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(request.config.option, "trace_python_allocators", True)
        yield


def table_ceiling_bytes(layout: str) -> tuple[int, str]:
    """(ceiling in bytes, where its figure comes from) for building ``layout``'s table of SLOTS:
    the figure measured on this interpreter minor, or, when none was, tracemalloc's bytes for the
    same table measured now in this process; either plus TABLE_MARGIN."""
    measured = MEASURED_TABLE_BYTES.get(PYTHON_MINOR)
    if measured is not None:
        return int(measured[layout] * (1 + TABLE_MARGIN)), f"measured on CPython {PYTHON_MINOR}"
    from .test_layouts_memory import python_bytes_per_slot

    reference = python_bytes_per_slot(layout) * SLOTS
    return (int(reference * (1 + TABLE_MARGIN)),
            f"no figure measured on CPython {PYTHON_MINOR}: tracemalloc's {reference:,.0f} B measured in this run")


@pytest.fixture
def table_ceiling(request: pytest.FixtureRequest, layout: str, record_property) -> int:
    """Puts pytest-memray's ``limit_memory`` on the test (read when the test is called, after its
    fixtures) at :func:`table_ceiling_bytes`; warns when the figure was not measured for this minor."""
    ceiling, source = table_ceiling_bytes(layout)
    request.node.add_marker(pytest.mark.limit_memory(f"{ceiling} B"))
    record_property("table_ceiling_bytes", ceiling)
    record_property("table_ceiling_source", source)
    if PYTHON_MINOR not in MEASURED_TABLE_BYTES:
        warnings.warn(f"{layout}: memory ceiling {ceiling:,} B: {source}; measure this minor into "
                      "MEASURED_TABLE_BYTES for a ceiling that catches growth", pytest.PytestWarning)
    return ceiling


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_table_build_stays_under_its_ceiling(layout: str, table_ceiling: int) -> None:
    table = make_table(layout, SLOTS)  # held until the end: its memory is the test's high watermark
    assert table.max_conns == SLOTS


def test_ceilings_hold_for_the_interpreter_they_were_measured_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A measured figure is used only on its own minor; another minor gets a ceiling from a
    reference measured in this run, and says so, never the other minor's figure."""
    from .test_layouts_memory import python_bytes_per_slot

    monkeypatch.setattr(sys.modules[__name__], "PYTHON_MINOR", "3.11")
    assert table_ceiling_bytes("nofd") == (int(1_614_808 * 1.05), "measured on CPython 3.11")
    monkeypatch.setattr(sys.modules[__name__], "PYTHON_MINOR", "3.99")
    ceiling, source = table_ceiling_bytes("nofd")
    assert ceiling == int(python_bytes_per_slot("nofd") * SLOTS * 1.05)
    assert source.startswith("no figure measured on CPython 3.99: tracemalloc's ")


def serve_traffic(address: tuple[str, int], rounds: int) -> int:
    """``rounds`` of CONCURRENT keep-alive connections, each answered REQUESTS_PER_CONNECTION times,
    then closed by the client; returns the number of 200 responses."""
    answered = 0
    for _ in range(rounds):
        clients = [RawClient.connect(address) for _ in range(CONCURRENT)]
        try:
            for index in range(REQUESTS_PER_CONNECTION):
                for client in clients:
                    response = client.exchange(REQUESTS[index % 2])
                    assert response.status == 200, response
                    answered += 1
        finally:
            for client in clients:
                client.close()
    return answered


class ThreadedServer:
    """A :class:`~server.loop.Server` running in a thread of the test process."""

    def __init__(self, layout: str) -> None:
        self.log = io.StringIO()
        self.server = Server(make_table(layout, SERVED_SLOTS), "127.0.0.1", 0, keep_alive_timeout=60, log=self.log)
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"server-{layout}", daemon=True)
        self.thread.start()

    def wait_idle(self) -> None:
        """Until the server has closed every connection the clients closed."""
        poll_until(lambda: self.server.open_connections == 0, 10.0, interval=0.005, message="all connections closed")

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(10.0)
        assert not self.thread.is_alive(), "server thread did not stop"


@pytest.fixture
def warm_server(request: pytest.FixtureRequest) -> Iterator[ThreadedServer]:
    """A threaded server of the test's layout, already through WARM_UP_ROUNDS of the traffic."""
    running = ThreadedServer(request.param)
    try:
        serve_traffic(running.server.address, WARM_UP_ROUNDS)
        running.wait_idle()
        yield running
    finally:
        running.stop()  # again, if the test stopped it: harmless
    assert "Traceback" not in running.log.getvalue(), running.log.getvalue()


def in_server_package(stack) -> bool:
    """limit_leaks filter: count only allocations made under the server package (not the test's
    client, pytest or memray)."""
    return any(frame.filename.startswith(SERVER_PACKAGE) for frame in stack.frames)


@pytest.mark.limit_leaks(LEAK_LIMIT, filter_fn=in_server_package)
@pytest.mark.parametrize("warm_server", LAYOUT_NAMES, indirect=True)
def test_keep_alive_traffic_leaks_nothing(warm_server: ThreadedServer) -> None:
    answered = serve_traffic(warm_server.server.address, ROUNDS)
    warm_server.wait_idle()
    # Stopped inside the test, so the loop's last epoll buffer (12 KiB, in flight while it waits) is
    # freed before memray stops tracking.
    warm_server.stop()
    assert answered == ROUNDS * CONCURRENT * REQUESTS_PER_CONNECTION
