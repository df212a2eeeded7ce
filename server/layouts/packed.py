"""``packed``: the whole table in one contiguous typed buffer, 16 bytes per slot.

Beyond Lwan's post, towards what Lwan is today (``struct lwan_connection``, 32 B, "two connections per
cache line"): no Python object per slot at all. Slot ``fd`` is four 32-bit words at
``words[4*fd : 4*fd+4]``: flags, expiry, prev, next. Coroutines exist only while a connection is busy
with a request (kept in a dict of active fds); an idle keep-alive connection costs its 16 bytes here and
nothing else in Python.
"""

from __future__ import annotations

import ctypes
from typing import Any

from ..http import HEAD_BUFFER_SIZE
from ..request import Request
from .base import ALIVE, IDLE, NO_SLOT, ConnectionTable, Peer, PeerLookup

_FLAGS, _EXPIRY, _PREV, _NEXT = range(4)
_WORDS_PER_SLOT = 4


class PackedStruct(ctypes.Structure):
    """C equivalent, and the exact layout of one slot in the buffer: 16 B."""

    _fields_ = [
        ("flags", ctypes.c_int32),
        ("expiry", ctypes.c_int32),
        ("prev", ctypes.c_int32),
        ("next", ctypes.c_int32),
    ]


class PackedTable(ConnectionTable):
    name = "packed"
    summary = "one contiguous buffer of 16-byte C records (flags, expiry, prev, next); coroutines only while busy"
    c_struct = PackedStruct

    def __init__(self, max_conns: int) -> None:
        super().__init__(max_conns)
        bytes_per_slot = ctypes.sizeof(PackedStruct)
        self.buffer = bytearray(bytes_per_slot * max_conns)
        #: int32 view of the buffer; slot fd's fields are words[4*fd + field].
        self.words = memoryview(self.buffer).cast("i")
        words = self.words
        for fd in range(max_conns):
            base = fd * _WORDS_PER_SLOT
            words[base + _PREV] = NO_SLOT
            words[base + _NEXT] = NO_SLOT
        #: Coroutines of connections in the middle of a request, by fd.
        self.active: dict[int, Any] = {}

    def open(self, fd: int, peer: Peer) -> None:
        self.words[fd * _WORDS_PER_SLOT + _FLAGS] = ALIVE

    def close(self, fd: int) -> None:
        base = fd * _WORDS_PER_SLOT
        words = self.words
        words[base + _FLAGS] = 0
        words[base + _EXPIRY] = 0
        words[base + _PREV] = NO_SLOT
        words[base + _NEXT] = NO_SLOT
        self.active.pop(fd, None)

    def flags(self, fd: int) -> int:
        return self.words[fd * _WORDS_PER_SLOT + _FLAGS]

    def set_flags(self, fd: int, flags: int) -> None:
        self.words[fd * _WORDS_PER_SLOT + _FLAGS] = flags

    def expiry(self, fd: int) -> int:
        return self.words[fd * _WORDS_PER_SLOT + _EXPIRY]

    def set_expiry(self, fd: int, expiry_ms: int) -> None:
        self.words[fd * _WORDS_PER_SLOT + _EXPIRY] = expiry_ms

    def prev(self, fd: int) -> int:
        return self.words[fd * _WORDS_PER_SLOT + _PREV]

    def next(self, fd: int) -> int:
        return self.words[fd * _WORDS_PER_SLOT + _NEXT]

    def set_prev(self, fd: int, prev_fd: int) -> None:
        self.words[fd * _WORDS_PER_SLOT + _PREV] = prev_fd

    def set_next(self, fd: int, next_fd: int) -> None:
        self.words[fd * _WORDS_PER_SLOT + _NEXT] = next_fd

    def coroutine(self, fd: int):
        return self.active.get(fd)

    def set_coroutine(self, fd: int, coroutine) -> None:
        if coroutine is None:
            self.active.pop(fd, None)
        else:
            self.active[fd] = coroutine

    def park(self, fd: int, coroutine) -> None:
        # Nothing is buffered at a park, so the coroutine holds no state worth keeping: drop it and
        # let the loop start a fresh one when the next request arrives.
        self.words[fd * _WORDS_PER_SLOT + _FLAGS] |= IDLE
        self.active.pop(fd, None)

    def read_buffer(self, fd: int) -> bytearray:
        return bytearray(HEAD_BUFFER_SIZE)

    def new_request(self, fd: int) -> Any:
        return Request()

    def peer(self, fd: int, lookup: PeerLookup) -> Peer:
        return lookup(fd)
