"""The RSS ledger: a process's resident memory at a phase end, split into parts that add up, each
measured, and the remainder no part explains as a row of its own.

Rules. Two reads, taken together at the end of a phase while the server idles:

- from outside, /proc/PID/smaps (:func:`read_pages`): every mapping's resident pages. Their sum is the
  ledger's RSS. File mappings give the pages read from files (the interpreter, shared libraries,
  mapped files; less the shared memory /proc/PID/status counts as RssShmem) and the pages the
  process wrote in them (.data, relocations: "Anonymous" in a file mapping; a file's .bss is an
  anonymous mapping the kernel merges with any anonymous mapping beside it, so it stays with the
  allocators' memory, in the remainder). A thread's stack
  is the mapping its stack pointer is in (/proc/PID/task/TID/syscall), the main thread's ``[stack]``.
  What is left is the allocators' anonymous memory (``[heap]`` and anonymous mappings), and the
  address space they hold that was never touched: a mapping's size less its resident pages, except
  for glibc's thread heaps, which keep address space they gave back: theirs is malloc's figure for
  them (``mallinfo2().arena`` less ``[heap]``) less their resident pages;
- from inside, written by the tracemalloc probe at the same phase end (``snapshots/NNN.alloc.json``,
  :mod:`server.memstats`): pymalloc's arenas, pools and blocks, glibc's ``mallinfo2()``,
  tracemalloc's traced and own bytes; and from that phase's dump, the traces, from which the
  allocators' rounding of each traced block is worked out (:func:`rounding_bytes`).

The allocators' anonymous memory is then split into: the Python heap tracemalloc traces; the
rounding of its blocks; the tracer's tables; what is in use and not traced (pymalloc's blocks and
malloc's chunks in use, less the three before: allocated before tracing began, by C code, by the
interpreter); pymalloc's free space (free blocks of used pools, pool headers and tails) and empty
pools; malloc's free chunks; less what the allocators hold and never touched. The remainder is the
ledger's RSS less every part. Sizes are bytes.

A bare interpreter (:func:`bare_interpreter`) is measured with the same reads: the same Python, the
same modules imported, nothing run, no tracer; so "the interpreter" is a number of this run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping as MappingType, Sequence

from tracemalloc_viewer import load_snapshot

from ..dataset.rss_ledger import (ALLOCATOR_PARTS, PARTS, PER_CONNECTION_KINDS, part_bytes,  # noqa: F401 (its names)
                                  per_held_connection, summed_ledger)
from . import procfs

#: pymalloc serves requests up to this size (bytes) in 16-byte size classes (64-bit CPython 3.8+).
PYMALLOC_MAX_BYTES = 512
PYMALLOC_ALIGNMENT = 16
#: glibc: a chunk is the request plus an 8-byte header, rounded to 16, at least 32 bytes; requests of
#: this size or more are mmapped on their own (the default threshold), whole pages with a 16-byte header.
MALLOC_MMAP_THRESHOLD = 128 * 1024
#: glibc's HEAP_MAX_SIZE on 64-bit: a thread arena's heap is reserved this long, at a multiple of it.
GLIBC_HEAP_MAX_BYTES = 64 * 1024 * 1024
#: A thread running when its stack pointer is read has none to give: read again, this often, this long.
STACK_POINTER_ATTEMPTS = 50
STACK_POINTER_RETRY_S = 0.002
#: Seconds the bare interpreter may take to import the modules and report.
BARE_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Pages:
    """A process's pages at one moment, from /proc/PID/smaps (bytes): ``rss`` (their sum), and the
    parts :data:`PARTS` reads from them; ``allocator_resident`` is ``[heap]`` and anonymous mappings,
    ``untouched`` the writable address space of those not resident, glibc's thread heaps left out:
    ``thread_heaps_rss`` and ``main_heap_size`` let :func:`ledger` count theirs against malloc's own
    figure (see :func:`pages_of`); ``threads`` and ``stacks_found``: how many threads the process has
    and whose stack was found."""

    rss: int
    file: int
    shmem: int
    written: int
    stacks: int
    special: int
    allocator_resident: int
    untouched: int
    thread_heaps_rss: int
    main_heap_size: int
    threads: int
    stacks_found: int


def read_pages(pid: int | str) -> Pages:
    """The process's pages now (see :class:`Pages`). Raises :class:`procfs.ProcessGone`."""
    pointers = procfs.thread_stack_pointers(pid)
    for _attempt in range(STACK_POINTER_ATTEMPTS):  # a thread at work has none: read again when it waits
        if all(pointers.values()):
            break
        time.sleep(STACK_POINTER_RETRY_S)
        pointers = procfs.thread_stack_pointers(pid)
    pointers = [pointer for pointer in pointers.values() if pointer]
    mappings = procfs.smaps(pid)
    shmem = procfs.memory_status(pid).get("shmem_bytes", 0)
    return pages_of(mappings, pointers, shmem, threads=len(procfs.thread_ids(pid)))


def _is_thread_heap(mapping: procfs.Mapping, following: procfs.Mapping | None) -> bool:
    """A heap of one of glibc's thread arenas: anonymous, writable, at a multiple of
    :data:`GLIBC_HEAP_MAX_BYTES` and that long, or followed by the reserved rest of it (``---p``)."""
    return (not mapping.inode and mapping.path == "" and mapping.perms.startswith("rw")
            and mapping.start % GLIBC_HEAP_MAX_BYTES == 0
            and (mapping.size_bytes == GLIBC_HEAP_MAX_BYTES
                 or (following is not None and following.start == mapping.end and not following.inode
                     and following.perms.startswith("---"))))


def pages_of(mappings: Sequence[procfs.Mapping], stack_pointers: Sequence[int], shmem: int, threads: int) -> Pages:
    """:class:`Pages` from a process's mappings, its threads' stack pointers and its RssShmem.

    A glibc thread arena's heap keeps its writable mapping when it shrinks and gives the pages back
    (``MADV_DONTNEED``): that address space is neither resident nor malloc's any more, so it is not
    counted as untouched here; :func:`ledger` takes the thread heaps' untouched bytes from malloc's
    own figure instead."""
    file = written = stacks = special = resident = untouched = thread_heaps_rss = main_heap_size = 0
    found = set()
    for position, mapping in enumerate(mappings):
        holds = [pointer for pointer in stack_pointers if mapping.start <= pointer < mapping.end]
        following = mappings[position + 1] if position + 1 < len(mappings) else None
        if mapping.inode:
            file += mapping.rss_bytes - mapping.anon_bytes
            written += mapping.anon_bytes
        elif mapping.path == "[stack]" or holds:
            stacks += mapping.rss_bytes
            found.update(holds or ["main"])
        elif mapping.path in ("", "[heap]"):
            resident += mapping.rss_bytes
            if _is_thread_heap(mapping, following):
                thread_heaps_rss += mapping.rss_bytes
            elif mapping.perms.startswith("rw"):
                untouched += mapping.size_bytes - mapping.rss_bytes
                if mapping.path == "[heap]":
                    main_heap_size += mapping.size_bytes
        else:
            special += mapping.rss_bytes
    rss = sum(mapping.rss_bytes for mapping in mappings)
    return Pages(rss=rss, file=file - shmem, shmem=shmem, written=written, stacks=stacks, special=special,
                 allocator_resident=resident, untouched=untouched, thread_heaps_rss=thread_heaps_rss,
                 main_heap_size=main_heap_size, threads=threads, stacks_found=len(found))


def block_bytes(size: int, pymalloc: bool = True) -> int:
    """The bytes an allocator sets aside for a request of ``size`` bytes: pymalloc's size class (16-byte
    steps up to 512 B, a 0-byte request takes a block of 16), else glibc's chunk (header and alignment,
    32 B at least; whole pages from the mmap threshold on)."""
    if pymalloc and size <= PYMALLOC_MAX_BYTES:
        return max(PYMALLOC_ALIGNMENT, -(-size // PYMALLOC_ALIGNMENT) * PYMALLOC_ALIGNMENT)
    if size >= MALLOC_MMAP_THRESHOLD:
        return -(-(size + 16) // procfs.PAGE_SIZE) * procfs.PAGE_SIZE
    return max(32, (size + 8 + 15) // 16 * 16)


def rounding_bytes(snapshot_path: Path, pymalloc: bool = True) -> int:
    """What the allocators add to the traced requests of a tracemalloc dump: the sum over its traces
    of :func:`block_bytes` less the size asked for."""
    snapshot = load_snapshot(snapshot_path)  # the subject's dump: the viewer's restricted loader, no code run
    return sum(block_bytes(trace.size, pymalloc) - trace.size for trace in snapshot.traces)


def ledger(pages: Pages, stats: MappingType[str, Any], rounding: int | None = None) -> dict[str, Any]:
    """One ledger: ``rss_bytes`` and ``parts``, ``[{"part", "label", "bytes", "source"}]`` in
    :data:`PARTS` order (the parts a process without a tracer has not left out), adding up to
    ``rss_bytes`` with the remainder; ``remainder_share``: the remainder over RSS; ``threads``."""
    pymalloc, malloc = stats.get("pymalloc"), stats.get("malloc")
    traced, tracer = stats.get("traced_bytes"), stats.get("tracer_bytes")
    values: dict[str, int | None] = {
        "file": pages.file, "shmem": pages.shmem, "written": pages.written, "stacks": pages.stacks,
        "special": pages.special, "python_heap": traced, "rounding": rounding if traced is not None else None,
        "tracer": tracer, "untouched": None,
    }
    if pymalloc is not None and malloc is not None:
        in_use = pymalloc["allocated_blocks"] + malloc["uordblks"] + malloc["hblkhd"]
        values["untraced"] = in_use - (traced or 0) - (rounding or 0) - (tracer or 0)
        values["pymalloc_free"] = (pymalloc["available_blocks"] + pymalloc["pool_headers"] + pymalloc["quantization"]
                                   + pymalloc["arena_alignment"])
        values["pymalloc_empty"] = pymalloc["unused_pools"]
        values["malloc_free"] = malloc["fordblks"]
        # malloc's heaps hold malloc["arena"] bytes: the main one is [heap], the rest thread heaps.
        thread_heaps_untouched = malloc["arena"] - pages.main_heap_size - pages.thread_heaps_rss
        values["untouched"] = -(pages.untouched + thread_heaps_untouched)
    else:  # without both allocators' figures the allocators' memory is left whole, in the remainder
        values.update(untraced=None, pymalloc_free=None, pymalloc_empty=None, malloc_free=None)
    explained = sum(value for value in values.values() if value is not None)
    values["remainder"] = pages.rss - explained
    parts = [{"part": name, "label": PARTS[name][0], "bytes": value, "source": PARTS[name][1]}
             for name, value in values.items() if value is not None]
    parts.sort(key=lambda part: list(PARTS).index(part["part"]))
    return {"rss_bytes": pages.rss, "parts": parts, "remainder_share": values["remainder"] / pages.rss if pages.rss else None,
            "threads": pages.threads, "stacks_found": pages.stacks_found}


#: The bare interpreter: imports the modules named on its first line of input, reports its
#: allocators, then waits (its pages are read meanwhile) until its input closes.
_BARE_CHILD = """
import gc, importlib, json, sys
names = json.loads(sys.stdin.readline())
failed = []
for name in names:
    if name == "sitecustomize" or name.startswith("_memdiet_"):  # the injected tracer's: no tracer here
        continue
    try:
        importlib.import_module(name)
    except BaseException:
        failed.append(name)
from server import memstats
gc.collect()
stats = memstats.allocator_stats()
stats["failed_imports"] = failed
del stats["modules"]
print(json.dumps(stats), flush=True)
sys.stdin.readline()
"""


def bare_interpreter(modules: Sequence[str], python: str = sys.executable, cwd: Path | None = None,
                     env: MappingType[str, str] | None = None) -> dict[str, Any]:
    """The ledger of a bare interpreter: ``python`` importing ``modules`` (the server's, as its dumps
    list them) and nothing more, no tracer; with ``modules`` (how many) and ``failed_imports``.
    Raises :class:`RuntimeError` with the reason when the child fails."""
    environment = {key: value for key, value in (env or os.environ).items()
                   if key not in ("PYTHONTRACEMALLOC", "PYTHONMALLOC")}
    child = subprocess.Popen([python, "-c", _BARE_CHILD], cwd=cwd, env=environment, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(list(modules)) + "\n")
        child.stdin.flush()
        line = _read_line(child, BARE_TIMEOUT_S)
        stats = json.loads(line)
        pages = read_pages(child.pid)
    except (OSError, ValueError, subprocess.TimeoutExpired) as error:
        child.kill()
        child.wait()
        raise RuntimeError(f"the bare interpreter failed: {error}") from None
    finally:
        if child.poll() is None:
            try:
                child.communicate(input="\n", timeout=BARE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    result = ledger(pages, stats)
    result.update(modules=len(modules), failed_imports=stats.get("failed_imports", []))
    return result


def _read_line(child: subprocess.Popen, timeout_s: float) -> str:
    """The child's first line of output, within ``timeout_s``; ValueError with its stderr if none."""
    import selectors

    assert child.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise subprocess.TimeoutExpired(child.args, timeout_s)
    line = child.stdout.readline()
    if not line:
        child.wait()
        error = (child.stderr.read() if child.stderr else "").strip().splitlines()
        raise ValueError(f"exit {child.returncode}: {error[-1] if error else 'no output'}")
    return line


__all__ = ["ALLOCATOR_PARTS", "PARTS", "PER_CONNECTION_KINDS", "Pages", "bare_interpreter", "block_bytes",
           "ledger", "pages_of", "part_bytes", "per_held_connection", "read_pages", "rounding_bytes"]
