"""What this process's two allocators hold, read from inside: CPython's pymalloc and the C library's
malloc. The runner's RSS ledger (``experiments.measure.ledger``) sets these beside the pages the
kernel counts for the process.

Rules:

- :func:`pymalloc_stats` reads ``sys._debugmallocstats()`` (CPython's own accounting of its arenas,
  pools and blocks) from C: the function prints nothing while tracemalloc's hooks sit in front of
  pymalloc (it checks that pymalloc is the object allocator), so for the length of one C call
  pymalloc is put back in front, the one tracemalloc saved, and tracemalloc's hooks after. No Python
  code runs in between (the arguments are made before), so no allocation escapes the tracer.
  None when pymalloc is off (``PYTHONMALLOC=malloc``) or the C API is not reachable.
- :func:`malloc_stats` is glibc's ``mallinfo2()`` (every malloc arena summed): None elsewhere.
- :func:`allocator_stats` is both, with tracemalloc's figures when it traces, and the modules
  imported (a bare interpreter with the same imports is measured beside the server).

Sizes are bytes. The module is imported by the tracemalloc probe at phase-end dumps and by the
ledger's bare-interpreter child: it makes no objects that stay.
"""

from __future__ import annotations

import ctypes
import functools
import re
import sys
import tracemalloc
from typing import Any

#: ``PYMEM_DOMAIN_OBJ``: the allocator domain pymalloc serves (``PyObject_Malloc``).
_DOMAIN_OBJ = 2

#: The lines of ``sys._debugmallocstats()`` read, by the name they are given here.
_PYMALLOC_LINES = {
    "allocated_blocks": re.compile(r"^# bytes in allocated blocks\s*=\s*([\d,]+)", re.M),
    "available_blocks": re.compile(r"^# bytes in available blocks\s*=\s*([\d,]+)", re.M),
    "unused_pools": re.compile(r"^\d+ unused pools \* \d+ bytes\s*=\s*([\d,]+)", re.M),
    "pool_headers": re.compile(r"^# bytes lost to pool headers\s*=\s*([\d,]+)", re.M),
    "quantization": re.compile(r"^# bytes lost to quantization\s*=\s*([\d,]+)", re.M),
    "arena_alignment": re.compile(r"^# bytes lost to arena alignment\s*=\s*([\d,]+)", re.M),
    "arenas": re.compile(r"^\d+ arenas \* \d+ bytes/arena\s*=\s*([\d,]+)", re.M),
}
#: The first line of one ``sys._debugmallocstats()`` report.
PYMALLOC_HEADER = "Small block threshold"


class PymallocStatsMissing(ValueError):
    """A ``sys._debugmallocstats()`` output without pymalloc's lines (pymalloc is off)."""


def parse_pymalloc(text: str) -> dict[str, int]:
    """The figures of one ``sys._debugmallocstats()`` report (see :data:`_PYMALLOC_LINES`), plus
    ``pool_bytes``: the pools in use, whole (allocated and available blocks, pool headers, and each
    pool's tail too small for a block, which CPython calls quantization). Raises
    :class:`PymallocStatsMissing` naming the first line it did not find."""
    figures = {}
    for name, pattern in _PYMALLOC_LINES.items():
        match = pattern.search(text)
        if match is None:
            raise PymallocStatsMissing(f"no {name.replace('_', ' ')} line in sys._debugmallocstats() output "
                                       "(is pymalloc off, PYTHONMALLOC=malloc?)")
        figures[name] = int(match.group(1).replace(",", ""))
    figures["pool_bytes"] = (figures["allocated_blocks"] + figures["available_blocks"] + figures["pool_headers"]
                             + figures["quantization"])
    return figures


class _Allocator(ctypes.Structure):
    """``PyMemAllocatorEx``: a context and four function pointers."""

    _fields_ = [("ctx", ctypes.c_void_p), ("malloc", ctypes.c_void_p), ("calloc", ctypes.c_void_p),
                ("realloc", ctypes.c_void_p), ("free", ctypes.c_void_p)]


class _Mallinfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (every field a ``size_t``)."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, loaded once (its function objects are made on first use and kept: the tracer
    calls :func:`allocator_stats` once before it is ready, so they are not new at the first dump)."""
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


@functools.cache
def _c_functions() -> tuple | None:
    """The C functions :func:`pymalloc_report` calls, their prototypes set once (setting them again
    on each call would make objects each time): ``PyMem_GetAllocator``, ``PyMem_SetAllocator``,
    ``_PyObject_DebugMallocStats``, ``open_memstream``, ``fclose`` and ``free``; None when one is missing."""
    libc = _libc()
    api = ctypes.pythonapi
    if libc is None or not hasattr(libc, "open_memstream") or not hasattr(api, "_PyObject_DebugMallocStats"):
        return None
    get_allocator, set_allocator = api.PyMem_GetAllocator, api.PyMem_SetAllocator
    get_allocator.argtypes = set_allocator.argtypes = [ctypes.c_int, ctypes.POINTER(_Allocator)]
    get_allocator.restype = set_allocator.restype = None
    print_stats = api._PyObject_DebugMallocStats
    print_stats.argtypes, print_stats.restype = [ctypes.c_void_p], ctypes.c_int
    open_memstream, fclose, free = libc.open_memstream, libc.fclose, libc.free
    open_memstream.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
    open_memstream.restype = ctypes.c_void_p
    fclose.argtypes, fclose.restype = [ctypes.c_void_p], ctypes.c_int
    free.argtypes, free.restype = [ctypes.c_void_p], None
    return get_allocator, set_allocator, print_stats, open_memstream, fclose, free


def pymalloc_report() -> str:
    """The text of ``sys._debugmallocstats()``, pymalloc's lines included while tracemalloc traces
    (see the module's rules); empty when it cannot be had.

    The text goes into a stream in memory (``open_memstream``), not a file: a descriptor opened
    here would, while open, be a slot the server's ``/__stats`` counts as lost (server/descriptors.py)."""
    functions = _c_functions()
    if functions is None:
        return ""
    get_allocator, set_allocator, print_stats, open_memstream, fclose, free = functions
    current = _Allocator()
    current_pointer = ctypes.pointer(current)
    get_allocator(_DOMAIN_OBJ, current_pointer)
    # tracemalloc's hooks carry, as their context, the allocator they stand in front of.
    underlying_pointer = (ctypes.pointer(_Allocator.from_address(current.ctx))
                          if tracemalloc.is_tracing() and current.ctx else current_pointer)
    buffer, size = ctypes.c_void_p(), ctypes.c_size_t()
    stream = open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    if not stream:
        return ""
    set_allocator(_DOMAIN_OBJ, underlying_pointer)
    print_stats(stream)
    set_allocator(_DOMAIN_OBJ, current_pointer)
    fclose(stream)  # sets buffer and size
    try:
        return ctypes.string_at(buffer.value, size.value).decode(errors="replace") if buffer.value else ""
    finally:
        free(buffer)


def pymalloc_stats() -> dict[str, int] | None:
    """pymalloc's arenas, pools and blocks now (:func:`parse_pymalloc`), or None (pymalloc off)."""
    try:
        return parse_pymalloc(pymalloc_report())
    except PymallocStatsMissing:
        return None


@functools.cache
def _mallinfo2():
    """glibc's ``mallinfo2``, its prototype set once; None without it."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.argtypes, libc.mallinfo2.restype = [], _Mallinfo2
    return libc.mallinfo2


def malloc_stats() -> dict[str, int] | None:
    """glibc's ``mallinfo2()``: ``arena`` (heap bytes from the system, every arena), ``hblkhd``
    (bytes of chunks mmapped one by one), ``uordblks`` (in use, chunk headers included), ``fordblks``
    (free chunks, the top one included), ``keepcost`` (the top chunk); None without glibc 2.33+."""
    mallinfo2 = _mallinfo2()
    if mallinfo2 is None:
        return None
    info = mallinfo2()
    return {name: int(getattr(info, name)) for name in ("arena", "hblkhd", "uordblks", "fordblks", "keepcost")}


def allocator_stats() -> dict[str, Any]:
    """Both allocators now, tracemalloc's traced and own bytes (None when it does not trace) and the
    names of the modules imported."""
    tracing = tracemalloc.is_tracing()
    return {
        "pymalloc": pymalloc_stats(),
        "malloc": malloc_stats(),
        "traced_bytes": tracemalloc.get_traced_memory()[0] if tracing else None,
        "tracer_bytes": tracemalloc.get_tracemalloc_memory() if tracing else None,
        "modules": sorted(name for name in sys.modules if name != "__main__"),
    }


__all__ = ["PYMALLOC_HEADER", "PymallocStatsMissing", "allocator_stats", "malloc_stats", "parse_pymalloc",
           "pymalloc_report", "pymalloc_stats"]
