"""The one interface between the server and a connection-state layout.

A layout is a *connection table*: state for every possible fd, preallocated when the server starts
(Lwan allocates ``struct lwan_connection`` for every fd up to RLIMIT_NOFILE before it opens a socket).
The event loop, the connection coroutine and the handlers talk to it only through the methods of
:class:`ConnectionTable`; none of them ever asks which layout is running. Layouts do no I/O: where one
needs a peer address it does not store, the caller passes in the lookup.

Every layout stores, per slot, what the loop needs between events:

- ``flags``: a bit set of the constants below (some layouts keep them as separate booleans);
- ``expiry``: when the connection's deadline passes, in milliseconds on the loop's clock;
- ``prev`` / ``next``: the slot's neighbours in the intrusive expiry queue (Lwan's death queue),
  as fds, ``-1`` for none;
- the connection's coroutine, while the layout keeps one.
"""

from __future__ import annotations

import ctypes
import enum
from typing import Any, Callable, ClassVar, Generator

#: Bits of a slot's ``flags``. Plain ints, so the event loop's hot path does no enum arithmetic.
ALIVE = 1  #: the slot holds an open connection
KEEP_ALIVE = 2  #: the current request asked for a persistent connection
WRITING = 4  #: the coroutine is waiting for the socket to become writable
IDLE = 8  #: no request in progress: set at a park, cleared once the next request head is complete
QUEUED = 16  #: linked into the expiry queue

NO_SLOT = -1  #: ``prev``/``next`` value meaning "no neighbour"

Peer = tuple  # (host: str, port: int[, flowinfo, scope_id])
PeerLookup = Callable[[int], Peer]
Coroutine = Generator[int, None, None]


class Flags(enum.IntFlag):
    """Names for the flag bits, for display and tests (the hot path uses the int constants)."""

    ALIVE = ALIVE
    KEEP_ALIVE = KEEP_ALIVE
    WRITING = WRITING
    IDLE = IDLE
    QUEUED = QUEUED


class ConnectionTable:
    """Base of every layout: the per-fd connection state table.

    Subclasses set :attr:`name`, :attr:`c_struct` (a ``ctypes.Structure`` mirroring their per-slot
    fields, so reports can put the Python cost next to the C cost) and implement every method below.
    ``max_conns`` is the number of slots; slot ``i`` belongs to file descriptor ``i``.
    """

    name: ClassVar[str]
    #: One sentence: which Lwan step this layout mirrors and what it keeps per slot.
    summary: ClassVar[str]
    c_struct: ClassVar[type[ctypes.Structure]]

    def __init__(self, max_conns: int) -> None:
        if max_conns < 1:
            raise ValueError("max_conns must be at least 1")
        self.max_conns = max_conns

    @classmethod
    def c_bytes_per_slot(cls) -> int:
        """Size in bytes of this layout's slot as a C struct (``ctypes.sizeof`` of :attr:`c_struct`)."""
        return ctypes.sizeof(cls.c_struct)

    # --- lifetime of a slot ------------------------------------------------------------------
    def open(self, fd: int, peer: Peer) -> None:
        """Claim slot ``fd`` for a freshly accepted connection from ``peer``; flags become ALIVE."""
        raise NotImplementedError

    def close(self, fd: int) -> None:
        """Return slot ``fd`` to its empty state, dropping any coroutine or request state."""
        raise NotImplementedError

    # --- fields the loop reads and writes ----------------------------------------------------
    def flags(self, fd: int) -> int:
        raise NotImplementedError

    def set_flags(self, fd: int, flags: int) -> None:
        raise NotImplementedError

    def expiry(self, fd: int) -> int:
        """Deadline of the connection in ``fd``, in milliseconds on the loop's clock."""
        raise NotImplementedError

    def set_expiry(self, fd: int, expiry_ms: int) -> None:
        raise NotImplementedError

    def prev(self, fd: int) -> int:
        raise NotImplementedError

    def next(self, fd: int) -> int:
        raise NotImplementedError

    def set_prev(self, fd: int, prev_fd: int) -> None:
        raise NotImplementedError

    def set_next(self, fd: int, next_fd: int) -> None:
        raise NotImplementedError

    # --- coroutines --------------------------------------------------------------------------
    def coroutine(self, fd: int) -> Coroutine | None:
        """The coroutine serving ``fd``, or None when none is held (the loop then starts one)."""
        raise NotImplementedError

    def set_coroutine(self, fd: int, coroutine: Coroutine | None) -> None:
        raise NotImplementedError

    def park(self, fd: int, coroutine: Coroutine) -> None:
        """``coroutine`` waits for the next request with nothing buffered: set IDLE, and keep the
        coroutine (Lwan keeps one per connection) or drop it and let the loop start a fresh one
        when bytes arrive. Once per request, so layouts override it with direct field access."""
        self.set_flags(fd, self.flags(fd) | IDLE)
        self.set_coroutine(fd, coroutine)

    # --- request state -----------------------------------------------------------------------
    def read_buffer(self, fd: int) -> bytearray:
        """The buffer a request head is read into (``HEAD_BUFFER_SIZE`` bytes), for a coroutine
        that starts reading a request. Either the slot's own or a fresh one the coroutine owns."""
        raise NotImplementedError

    def new_request(self, fd: int) -> Any:
        """Request and parse state for the next request on ``fd``, ready for the parser: an object
        with ``method``, ``target``, ``version``, ``headers`` (an empty list), ``keep_alive``,
        ``content_length`` and ``chunked``."""
        raise NotImplementedError

    def peer(self, fd: int, lookup: PeerLookup) -> Peer:
        """The peer address of ``fd``: stored at :meth:`open`, or ``lookup(fd)`` (getpeername)."""
        raise NotImplementedError
