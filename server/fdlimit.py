"""RLIMIT_NOFILE, the one place: its real ceiling, the soft limit raised to it, room for N more descriptors.

Used by the server (``--max-conns`` defaults to the limit), the load generator (room for its
connections) and the bench's peer apps, each in its own process. Standard library only and nothing
else imported, so a peer that imports it (``from server.fdlimit import ...``: this module and the
package's docstring, not the server) keeps the idle RSS of its own framework.

Rules: the hard limit is never changed, only the soft one. "Unlimited" is read as the kernel's
``fs.nr_open``, the most descriptors a process can really have. A refused raise is not an error
here: the functions return the limit in force and the caller decides.
"""

from __future__ import annotations

import os
import resource

#: The ceiling assumed when the hard limit is "unlimited" and fs.nr_open cannot be read (its default).
NR_OPEN_DEFAULT = 1 << 20


class TooFewDescriptors(Exception):
    """More descriptors were asked for than the hard limit allows; ``needed`` and ``hard`` say how many."""

    def __init__(self, needed: int, hard: int) -> None:
        super().__init__(f"{needed} file descriptors needed, above the RLIMIT_NOFILE hard limit of {hard}")
        self.needed = needed
        self.hard = hard


def hard_limit() -> int:
    """RLIMIT_NOFILE's hard limit; when "unlimited", the kernel's ``fs.nr_open`` (the real ceiling)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        return hard
    try:
        with open("/proc/sys/fs/nr_open") as nr_open:
            return int(nr_open.read())
    except (OSError, ValueError):
        return NR_OPEN_DEFAULT


def _set_soft(target: int) -> int:
    """Raise the soft limit to ``target`` if it is lower; the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return hard_limit() if soft == resource.RLIM_INFINITY else soft


def raise_soft_to_hard() -> int:
    """Raise the soft limit to :func:`hard_limit` (as Lwan does) and return the soft limit in force."""
    return _set_soft(hard_limit())


def open_fd_count() -> int:
    """How many descriptors this process holds (3, stdio, when /proc cannot be read)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 3


def make_room(extra: int, margin: int) -> int:
    """Make room for ``extra`` more descriptors plus ``margin`` spare: raise the soft limit as far as
    needed. Returns the soft limit in force; raises :class:`TooFewDescriptors` when even the hard
    limit is too low."""
    needed = open_fd_count() + extra + margin
    hard = hard_limit()
    if needed > hard:
        raise TooFewDescriptors(needed, hard)
    return _set_soft(needed)
