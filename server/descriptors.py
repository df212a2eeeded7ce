"""Which file descriptors this process holds below a limit, and which of them a probe holds for a moment.

A slot's index is the fd the kernel hands out (``server/layouts/base.py``), so every descriptor the
server keeps below ``max_conns`` is a slot no client can get, and ``/__stats`` counts them. The
tracemalloc sampler's thread also opens a file now and then (a dump, a side file, the runner's dump
requests) and closes it within the same call: a count taken while it is open would be one slot short,
though no client would ever find that slot taken for longer than the write.

Rules: a probe opens every such short-lived file with :func:`transient_fd`, which opens and registers it,
and later closes and forgets it, under one lock; :func:`held_fds_below` lists the descriptors under the
same lock and leaves the registered ones out. The lock is held for an ``open`` or a ``close`` and for one
listing of ``/proc/self/fd``, never for a write, so ``/__stats`` never waits for a dump.
"""

from __future__ import annotations

import _thread
import os
from collections.abc import Iterator
from contextlib import contextmanager

# _thread's lock, not threading's: the loop imports this module, and importing threading (and what it
# imports) here would add 30 KB of modules to every traced server's idle heap (memdiet regress saw it).
_lock = _thread.allocate_lock()
#: Descriptors a probe holds open for a moment: at most one per probe thread.
_transient: set[int] = set()


@contextmanager
def transient_fd(path: str, flags: int, mode: int = 0o644) -> Iterator[int]:
    """``os.open(path, flags, mode)``, closed on leaving; :func:`held_fds_below` does not count it."""
    with _lock:
        fd = os.open(path, flags, mode)
        _transient.add(fd)
    try:
        yield fd
    finally:
        with _lock:
            _transient.discard(fd)
            os.close(fd)


def held_fds_below(limit: int) -> list[int] | None:
    """The file descriptors below ``limit`` this process holds open, from /proc/self/fd, leaving out
    those a probe holds for a moment (:func:`transient_fd`); None when the directory cannot be read
    (no descriptor left to open it with)."""
    with _lock:
        try:
            names = os.listdir("/proc/self/fd")
        except OSError:
            return None
        held = []
        for name in names:
            fd = int(name)
            if fd >= limit or fd in _transient:
                continue
            try:
                os.fstat(fd)
            except OSError:  # the listing's own directory descriptor, closed by now
                continue
            held.append(fd)
        return held
