"""Reading a process from /proc: the one way to open a /proc file, and the RSS read.

The root of memdiet's /proc reader. The server reads its own RSS with it (``/__stats``) and may
import only the standard library and itself: its idle memory is what the study measures, so
reading it through psutil or ``experiments`` would change the figure. Everything else the runner,
the bench and the tests read (USS/PSS, CPU time, descriptors, sockets, listening ports, children)
is :mod:`experiments.measure.procfs`, built on :func:`read_proc` and :class:`ProcessGone` here.
This module holds only what the server needs because the server imports it after tracemalloc
starts: what it keeps in memory (~12 KB) is in the tracemalloc probe's idle heap.

Rules: Linux only. A ``pid`` is a process id or ``"self"``. Sizes in bytes. A process that has
exited, or is a zombie (no memory left), raises :class:`ProcessGone`, which is an OSError: a caller
that already tolerates OSError (the server out of descriptors) needs nothing more.
"""

from __future__ import annotations

import os

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class ProcessGone(ProcessLookupError):
    """The process exited (or is a zombie) while being read."""


def read_proc(pid: int | str, name: str) -> bytes:
    """The bytes of /proc/PID/NAME; :class:`ProcessGone` when the process (or the file) is gone."""
    try:
        with open(f"/proc/{pid}/{name}", "rb") as file:
            return file.read()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(f"process {pid} has exited") from None


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size from /proc/PID/statm (what ``ps`` and psutil's ``memory_info().rss`` say):
    the cheapest memory read there is."""
    resident = int(read_proc(pid, "statm").split()[1]) * PAGE_SIZE
    if resident == 0:  # a zombie's memory is gone
        raise ProcessGone(f"process {pid} has exited")
    return resident
