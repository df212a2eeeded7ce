"""``split``: only connection state per fd; request and parse state live on the coroutine.

Mirrors Lwan f9f5ce00 (2013-11-26): ``struct lwan_connection`` (40 B) is what is preallocated per fd,
and ``struct lwan_request`` moved onto the coroutine's stack. Here the slot is a ``__slots__`` object
of 11 fields (fd, peer, five booleans, coroutine, expiry and the two queue links); the read buffer and
the :class:`~server.request.Request` are made by the coroutine per request and dropped after it.
"""

from __future__ import annotations

import ctypes

from .base import ALIVE, NO_SLOT
from ._slots import BooleanFlags, SlotObjectTable, StoredAddress


class SplitSlot:
    """One connection: 11 pointers of attribute storage, plus object and GC headers (~120 B)."""

    __slots__ = (
        "fd", "peer",
        "is_alive", "is_keep_alive", "is_writing", "is_idle", "is_queued",
        "coroutine", "expiry", "prev", "next",
    )

    def __init__(self) -> None:
        self.fd = -1
        self.peer = None
        self.is_alive = False
        self.is_keep_alive = False
        self.is_writing = False
        self.is_idle = False
        self.is_queued = False
        self.coroutine = None
        self.expiry = 0
        self.prev = NO_SLOT
        self.next = NO_SLOT


class SplitStruct(ctypes.Structure):
    """C equivalent: 40 B, the size of Lwan's connection struct right after the split."""

    _fields_ = [
        ("coroutine", ctypes.c_void_p),
        ("fd", ctypes.c_int),
        ("remote_ip", ctypes.c_uint32),
        ("expiry", ctypes.c_uint32),
        ("prev", ctypes.c_int32),
        ("next", ctypes.c_int32),
        ("remote_port", ctypes.c_uint16),
        ("is_alive", ctypes.c_bool),
        ("is_keep_alive", ctypes.c_bool),
        ("is_writing", ctypes.c_bool),
        ("is_idle", ctypes.c_bool),
        ("is_queued", ctypes.c_bool),
    ]


class SplitTable(BooleanFlags, StoredAddress, SlotObjectTable):
    name = "split"
    summary = "connection state only per fd (__slots__, booleans as fields); request state per request on the coroutine"
    slot_class = SplitSlot
    c_struct = SplitStruct

    def open(self, fd: int, peer) -> None:
        slot = self.slots[fd]
        slot.fd = fd
        slot.peer = peer
        slot.is_alive = True
