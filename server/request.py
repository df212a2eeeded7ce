"""Per-request state for the layouts that keep it off the connection table.

Lwan's ``struct lwan_request`` lives on the coroutine's stack once the split is done: made when a
request starts, gone when it is answered. Here it is a small ``__slots__`` object that the connection
coroutine holds while it handles one request.
"""

from __future__ import annotations


class Request:
    """State of one request while it is parsed and handled.

    ``method``, ``target`` and ``version`` are bytes as sent (version like ``b"1.1"``); ``headers``
    is a list of ``(lowercased name, value)`` byte pairs in arrival order; ``content_length`` is the
    declared body length in bytes (0 when absent); ``chunked`` tells a chunked body follows.
    """

    __slots__ = ("method", "target", "version", "headers", "keep_alive", "content_length", "chunked")

    def __init__(self) -> None:
        self.method = b""
        self.target = b""
        self.version = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.content_length = 0
        self.chunked = False
