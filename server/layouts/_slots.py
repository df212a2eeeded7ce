"""Shared machinery for the layouts that keep one Python object per slot.

``naive``, ``split``, ``bitfields`` and ``nofd`` differ in *what* their slot object holds, not in how
the table is indexed, so the accessors live here once. ``packed`` is the odd one out: it has no
per-slot object at all.
"""

from __future__ import annotations

from typing import Any

from ..http import HEAD_BUFFER_SIZE
from ..request import Request
from .base import ALIVE, IDLE, KEEP_ALIVE, NO_SLOT, QUEUED, WRITING, ConnectionTable, Peer, PeerLookup


class SlotObjectTable(ConnectionTable):
    """A list of ``max_conns`` slot objects, preallocated, indexed by fd.

    Subclasses set :attr:`slot_class`; its instances must have ``expiry``, ``prev``, ``next`` and
    ``coroutine`` attributes, and the subclass defines how flags, fd and peer are kept.
    """

    slot_class: type

    def __init__(self, max_conns: int) -> None:
        super().__init__(max_conns)
        slot_class = self.slot_class
        # Every slot is its own object, made now, as Lwan callocs the whole table at start.
        self.slots = [slot_class() for _ in range(max_conns)]

    def close(self, fd: int) -> None:
        self.slots[fd] = self.slot_class()

    def expiry(self, fd: int) -> int:
        return self.slots[fd].expiry

    def set_expiry(self, fd: int, expiry_ms: int) -> None:
        self.slots[fd].expiry = expiry_ms

    def prev(self, fd: int) -> int:
        return self.slots[fd].prev

    def next(self, fd: int) -> int:
        return self.slots[fd].next

    def set_prev(self, fd: int, prev_fd: int) -> None:
        self.slots[fd].prev = prev_fd

    def set_next(self, fd: int, next_fd: int) -> None:
        self.slots[fd].next = next_fd

    def coroutine(self, fd: int):
        return self.slots[fd].coroutine

    def set_coroutine(self, fd: int, coroutine) -> None:
        self.slots[fd].coroutine = coroutine

    # Request state lives on the coroutine (Lwan's split): a fresh buffer and request object each
    # time. The naive layout overrides both to hand out the slot's own.
    def read_buffer(self, fd: int) -> bytearray:
        return bytearray(HEAD_BUFFER_SIZE)

    def new_request(self, fd: int) -> Any:
        return Request()


class BooleanFlags:
    """Flags kept as one boolean attribute each (``is_alive``, ``is_keep_alive``...), as C code keeps
    a ``bool`` field per condition before anyone packs them. Mixed into naive and split."""

    slots: list

    def flags(self, fd: int) -> int:
        slot = self.slots[fd]
        return (
            (ALIVE if slot.is_alive else 0)
            | (KEEP_ALIVE if slot.is_keep_alive else 0)
            | (WRITING if slot.is_writing else 0)
            | (IDLE if slot.is_idle else 0)
            | (QUEUED if slot.is_queued else 0)
        )

    def set_flags(self, fd: int, flags: int) -> None:
        slot = self.slots[fd]
        slot.is_alive = flags & ALIVE != 0  # a comparison, not bool(): no call per field
        slot.is_keep_alive = flags & KEEP_ALIVE != 0
        slot.is_writing = flags & WRITING != 0
        slot.is_idle = flags & IDLE != 0
        slot.is_queued = flags & QUEUED != 0

    def park(self, fd: int, coroutine) -> None:
        slot = self.slots[fd]
        slot.is_idle = True
        slot.coroutine = coroutine


class StoredAddress:
    """fd and peer address stored in the slot at open (every layout before ``nofd``)."""

    slots: list

    def peer(self, fd: int, lookup: PeerLookup) -> Peer:
        return self.slots[fd].peer


__all__ = ["SlotObjectTable", "BooleanFlags", "StoredAddress", "NO_SLOT"]
