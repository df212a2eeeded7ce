"""What the bench measures: each memdiet layout and each peer, and how each is started and stopped.

A subject is started as ``python -m ...`` with ``--host 127.0.0.1 --port 0``. memdiet's server says
where it listens on its first stdout line; a peer's port is read from /proc/net/tcp (the LISTEN socket
its process owns), so no request is made to find out whether it is up.
"""

from __future__ import annotations

import signal
from importlib import metadata, util
from pathlib import Path

from server.layouts import LAYOUTS

#: Peers the ratios are computed against, in the order they are shown.
BASELINES = ("uvicorn", "asyncio")
#: Seconds memdiet's server keeps an idle connection: far longer than any measurement holds one.
MEMDIET_KEEP_ALIVE_S = 3600


class Subject:
    """One server under test. ``name`` is unique across layouts and peers; ``kind`` is ``memdiet``
    or ``peer``; ``clean_exit_codes`` are the exit codes (negative: a signal) that mean it stopped
    cleanly after SIGTERM."""

    kind = ""
    #: True when readiness and the port come from a ``listening on HOST:PORT`` first stdout line.
    announces_port = False
    clean_exit_codes: frozenset[int] = frozenset({0})

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description

    @property
    def label(self) -> str:
        """The name tables show: ``memdiet packed``, ``uvicorn``."""
        return self.name

    def command(self, python: str) -> list[str]:
        """The argv that starts it on 127.0.0.1, a free port: ``[python, "-m", module, ...]``."""
        raise NotImplementedError

    def profiled_command(self, python: str, stats_path: Path) -> list[str]:
        """:meth:`command` under ``python -m cProfile -o stats_path``. cProfile writes the file when
        the module's main returns or raises SystemExit, not when a signal kills the process."""
        command = self.command(python)
        if command[:2] != [python, "-m"]:
            raise ValueError(f"{self.label}: cannot profile {command!r}, which is not `python -m module`")
        return [python, "-m", "cProfile", "-o", str(stats_path), *command[1:]]

    def missing_packages(self) -> list[str]:
        """Distributions it needs that are not installed (empty: it can run)."""
        return []

    def versions(self) -> dict[str, str | None]:
        """Versions of the distributions it runs on."""
        return {}


class MemdietLayout(Subject):
    """memdiet's server with one layout, at its default ``--max-conns`` (RLIMIT_NOFILE, soft raised
    to hard)."""

    kind = "memdiet"
    announces_port = True

    def __init__(self, layout: str) -> None:
        super().__init__(layout, f"memdiet's server, {layout} layout, default --max-conns")

    @property
    def label(self) -> str:
        return f"memdiet {self.name}"

    def command(self, python: str) -> list[str]:
        return [python, "-m", "server", "--layout", self.name, "--host", "127.0.0.1", "--port", "0",
                "--keep-alive-timeout", str(MEMDIET_KEEP_ALIVE_S)]


class Peer(Subject):
    """A popular server running the few-line app in :mod:`experiments.bench.peers`."""

    kind = "peer"

    def __init__(self, name: str, description: str, packages: tuple[str, ...],
                 clean_exit_codes: frozenset[int] = frozenset({0})) -> None:
        super().__init__(name, description)
        self.module = f"experiments.bench.peers.{name}_app"
        self.packages = packages
        self.clean_exit_codes = clean_exit_codes

    def command(self, python: str) -> list[str]:
        return [python, "-m", self.module, "--host", "127.0.0.1", "--port", "0"]

    def missing_packages(self) -> list[str]:
        return [package for package in self.packages if util.find_spec(package) is None]

    def versions(self) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for package in self.packages:
            try:
                found[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                found[package] = None
        return found


PEERS: dict[str, Peer] = {peer.name: peer for peer in (
    # uvicorn re-raises the SIGTERM it caught once its graceful shutdown is done (since 0.29): the app
    # installs a handler first, so the re-raise exits 0; "by the signal" stays accepted for a SIGTERM
    # that lands before the app installed it.
    Peer("uvicorn", "uvicorn + httptools + uvloop, a bare ASGI callable", ("uvicorn", "httptools", "uvloop"),
         frozenset({0, -signal.SIGTERM})),
    Peer("aiohttp", "aiohttp's web server (web.run_app, asyncio event loop)", ("aiohttp",)),
    Peer("asyncio", "asyncio.start_server streams responder (standard library, default event loop)", ()),
)}


def layout_subjects(names: list[str] | None = None) -> list[MemdietLayout]:
    """memdiet layouts to measure, in the order of the study."""
    return [MemdietLayout(name) for name in (names or list(LAYOUTS))]


INSTALL_HINT = "install the peers with: .venv/bin/pip install -e '.[bench]' (make bench does)"
