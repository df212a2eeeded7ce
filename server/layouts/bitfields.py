"""``bitfields``: as ``split``, with the booleans packed into one ``flags`` int.

Mirrors Lwan 892017e6 and c9117ee7 (2013-09): "having less than 32 of them meant I could coalesce all
of them in a single unsigned integer". The slot has 7 fields instead of 11.
"""

from __future__ import annotations

import ctypes

from .base import ALIVE, IDLE, NO_SLOT
from ._slots import SlotObjectTable, StoredAddress


class BitfieldsSlot:
    """One connection: 7 pointers of attribute storage plus headers (~88 B)."""

    __slots__ = ("fd", "peer", "flags", "coroutine", "expiry", "prev", "next")

    def __init__(self) -> None:
        self.fd = -1
        self.peer = None
        self.flags = 0
        self.coroutine = None
        self.expiry = 0
        self.prev = NO_SLOT
        self.next = NO_SLOT


class BitfieldsStruct(ctypes.Structure):
    """C equivalent: 32 B. The five bools become one 16-bit flags word; in Python the saving is
    larger, since each bool attribute was a pointer (8 B)."""

    _fields_ = [
        ("coroutine", ctypes.c_void_p),
        ("fd", ctypes.c_int),
        ("remote_ip", ctypes.c_uint32),
        ("expiry", ctypes.c_uint32),
        ("prev", ctypes.c_int32),
        ("next", ctypes.c_int32),
        ("flags", ctypes.c_uint16),
        ("remote_port", ctypes.c_uint16),
    ]


class IntFlags:
    """Flags kept in one int attribute, ``slot.flags``."""

    slots: list

    def flags(self, fd: int) -> int:
        return self.slots[fd].flags

    def set_flags(self, fd: int, flags: int) -> None:
        self.slots[fd].flags = flags

    def park(self, fd: int, coroutine) -> None:
        slot = self.slots[fd]
        slot.flags |= IDLE
        slot.coroutine = coroutine


class BitfieldsTable(IntFlags, StoredAddress, SlotObjectTable):
    name = "bitfields"
    summary = "as split, the five booleans packed into one flags int (7 fields per slot)"
    slot_class = BitfieldsSlot
    c_struct = BitfieldsStruct

    def open(self, fd: int, peer) -> None:
        slot = self.slots[fd]
        slot.fd = fd
        slot.peer = peer
        slot.flags = ALIVE
