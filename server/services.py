"""What a connection coroutine and the handlers need from the server that runs them.

:class:`LoopServices` lists it, and nothing more: the connection table, three settings the loop keeps
current, the deadline restart, the peer lookup, the stats and the error log. :class:`server.loop.Server`
provides it structurally (it does not name this class), so :mod:`server.connection` and
:mod:`server.handlers` depend on this module and never on :mod:`server.loop`, which imports them: the
import graph stays loop -> connection -> handlers -> services, without a cycle.

Rules: type hints only. It imports nothing of the server but the layout interface, and the modules
that use it import it under ``TYPE_CHECKING``: the server never loads it, so it costs no import time
and no idle RSS (which the study measures), and the hot path never looks at it (no ``isinstance``).
"""

from __future__ import annotations

from typing import Any, Protocol

from .layouts.base import ConnectionTable, Peer


class LoopServices(Protocol):
    """The part of :class:`server.loop.Server` that connections and handlers use."""

    #: The connection-state layout: flags, read buffers and request objects per fd.
    table: ConnectionTable
    #: Request bodies beyond this many bytes are refused with 413.
    max_body_bytes: int
    #: False once the server is stopping: responses then ask the client to close.
    running: bool
    #: The current ``Date`` header value (bytes, RFC 9110 IMF-fixdate); a new object each second.
    date: bytes
    #: Client addresses ``/__stats`` answers.
    local_addresses: frozenset[str]

    def restart_deadline(self, fd: int) -> None:
        """Close ``fd`` one keep-alive timeout from now unless it makes progress again."""

    def peer(self, fd: int) -> Peer:
        """The peer address of ``fd`` as ``(host, port, ...)``."""

    def stats(self) -> dict[str, Any]:
        """What ``/__stats`` reports (sizes in bytes)."""

    def log_exception(self, message: str) -> None:
        """Log ``message`` with the traceback of the exception being handled."""
