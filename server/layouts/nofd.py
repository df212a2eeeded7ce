"""``nofd``: as ``bitfields``, with neither fd nor peer address stored.

Mirrors Lwan e871417e (2013-12-15): the fd is the slot's index in the table ("calculated by pointer
arithmetic"), and the remote address comes from ``getpeername()`` when a handler asks for it, which
is rare. The slot has 5 fields.
"""

from __future__ import annotations

import ctypes

from .base import ALIVE, NO_SLOT, Peer, PeerLookup
from ._slots import SlotObjectTable
from .bitfields import IntFlags


class NofdSlot:
    """One connection: 5 pointers of attribute storage plus headers (~72 B)."""

    __slots__ = ("flags", "coroutine", "expiry", "prev", "next")

    def __init__(self) -> None:
        self.flags = 0
        self.coroutine = None
        self.expiry = 0
        self.prev = NO_SLOT
        self.next = NO_SLOT


class NofdStruct(ctypes.Structure):
    """C equivalent: 24 B (Lwan reached 32 B here because it also kept a thread pointer)."""

    _fields_ = [
        ("coroutine", ctypes.c_void_p),
        ("expiry", ctypes.c_uint32),
        ("prev", ctypes.c_int32),
        ("next", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
    ]


class NofdTable(IntFlags, SlotObjectTable):
    name = "nofd"
    summary = "as bitfields without fd and peer: fd is the slot index, peer from getpeername() (5 fields per slot)"
    slot_class = NofdSlot
    c_struct = NofdStruct

    def open(self, fd: int, peer: Peer) -> None:
        self.slots[fd].flags = ALIVE

    def peer(self, fd: int, lookup: PeerLookup) -> Peer:
        return lookup(fd)
