"""The expiry queue (Lwan's "death queue"): open connections ordered by deadline.

Every connection gets the same keep-alive timeout, so a deadline refreshed now is always the latest:
refreshing moves a connection to the tail, and the expired ones are always at the head. The queue is
intrusive, threaded through the ``prev``/``next`` fields of the connection table itself, so it costs no
memory beyond the slots (Lwan's ``struct lwan_connection`` carries the same two ints).
"""

from __future__ import annotations

from .layouts.base import NO_SLOT, QUEUED, ConnectionTable

#: Deadlines are milliseconds on a clock that wraps at 2**31 (they fit a C int32 in the packed
#: layout); "expired" compares modulo that, so it holds while timeouts stay under ~12 days.
CLOCK_MODULUS = 1 << 31
_HALF = 1 << 30


def clock_add(now_ms: int, delta_ms: int) -> int:
    """``now_ms + delta_ms`` on the wrapping clock."""
    return (now_ms + delta_ms) % CLOCK_MODULUS


def is_expired(expiry_ms: int, now_ms: int) -> bool:
    """True when deadline ``expiry_ms`` is at or before ``now_ms`` on the wrapping clock."""
    return (now_ms - expiry_ms) % CLOCK_MODULUS < _HALF


class DeathQueue:
    """Doubly linked list of fds through ``table``'s prev/next fields, head = earliest deadline."""

    __slots__ = ("table", "head", "tail", "length")

    def __init__(self, table: ConnectionTable) -> None:
        self.table = table
        self.head = NO_SLOT
        self.tail = NO_SLOT
        #: Number of connections in the queue.
        self.length = 0

    def push(self, fd: int, expiry_ms: int) -> None:
        """Append ``fd`` with deadline ``expiry_ms`` (which must be >= every deadline queued)."""
        table = self.table
        table.set_expiry(fd, expiry_ms)
        table.set_prev(fd, self.tail)
        table.set_next(fd, NO_SLOT)
        if self.tail == NO_SLOT:
            self.head = fd
        else:
            table.set_next(self.tail, fd)
        self.tail = fd
        table.set_flags(fd, table.flags(fd) | QUEUED)
        self.length += 1

    def remove(self, fd: int) -> None:
        """Unlink ``fd``; does nothing if it is not queued."""
        table = self.table
        flags = table.flags(fd)
        if not flags & QUEUED:
            return
        self._unlink(table.prev(fd), table.next(fd))
        table.set_prev(fd, NO_SLOT)
        table.set_next(fd, NO_SLOT)
        table.set_flags(fd, flags & ~QUEUED)
        self.length -= 1

    def _unlink(self, prev_fd: int, next_fd: int) -> None:
        """Join the neighbours of a slot leaving the queue (its own links are left as they are)."""
        table = self.table
        if prev_fd == NO_SLOT:
            self.head = next_fd
        else:
            table.set_next(prev_fd, next_fd)
        if next_fd == NO_SLOT:
            self.tail = prev_fd
        else:
            table.set_prev(next_fd, prev_fd)

    def refresh(self, fd: int, expiry_ms: int) -> None:
        """Give ``fd`` a new deadline ``expiry_ms`` (which, as for :meth:`push`, must be >= every
        deadline queued): move it to the tail, or queue it if it is not queued.

        Called once per response, so it relinks in place (the QUEUED flag and the length stay as
        they are) instead of a remove and a push: about half the field accesses."""
        table = self.table
        tail = self.tail
        if tail == fd:
            table.set_expiry(fd, expiry_ms)
            return
        prev_fd = table.prev(fd)
        if prev_fd == NO_SLOT and self.head != fd:  # not queued
            self.push(fd, expiry_ms)
            return
        if table.expiry(fd) == expiry_ms:
            # Queued with this very deadline already. As no deadline is later, every connection
            # behind fd has it too: the queue is sorted as it stands. With deadlines rounded up to
            # ticks (Server.deadline_tick_ms), that is the common case of a busy connection.
            return
        self._unlink(prev_fd, table.next(fd))
        table.set_expiry(fd, expiry_ms)
        table.set_prev(fd, tail)
        table.set_next(fd, NO_SLOT)
        table.set_next(tail, fd)
        self.tail = fd

    def pop_expired(self, now_ms: int) -> list[int]:
        """Unlink and return every fd whose deadline is at or before ``now_ms``."""
        expired = []
        table = self.table
        while self.head != NO_SLOT and is_expired(table.expiry(self.head), now_ms):
            fd = self.head
            self.remove(fd)
            expired.append(fd)
        return expired

    def next_deadline(self) -> int | None:
        """Earliest deadline queued, in ms, or None when empty."""
        if self.head == NO_SLOT:
            return None
        return self.table.expiry(self.head)

    def __iter__(self):
        fd = self.head
        while fd != NO_SLOT:
            yield fd
            fd = self.table.next(fd)
