"""Shared fixtures: the layout a test runs against, and servers that are always stopped."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from server.layouts import LAYOUTS

from .server_client import ServerProcess

#: Every layout, in the order of the study (from the server's own registry, never repeated here).
LAYOUT_NAMES = tuple(LAYOUTS)


@pytest.fixture(scope="module", params=LAYOUT_NAMES)
def layout(request: pytest.FixtureRequest) -> str:
    """A layout name. Module-scoped, so module-scoped servers built on it start once per layout."""
    return request.param


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    """``start_server(layout, *options, max_conns=...)`` for servers a single test owns; any still
    running when the test ends is stopped (SIGTERM, exit 0 checked)."""
    started: list[ServerProcess] = []

    def start(layout_name: str, *options: str, **kwargs) -> ServerProcess:
        server = ServerProcess.start(layout_name, *options, **kwargs)
        started.append(server)
        return server

    yield start
    failures = []
    for server in started:  # stop them all even if one fails its exit check
        try:
            server.stop()
        except AssertionError as failure:
            failures.append(failure)
    if failures:
        raise failures[0]
