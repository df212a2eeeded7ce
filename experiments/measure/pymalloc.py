"""What CPython's allocator adds to a table's requested bytes, measured in a fresh interpreter.

tracemalloc counts the bytes each allocation asked for; RSS counts the pages the allocator touched.
Between the two: pymalloc rounds every request of 512 B or less up to its size class (16-byte steps
on 64-bit CPython 3.11), carves 16 KiB pools out of 1 MiB arenas (a pool's header, the tail no block
fits in, free blocks of pools in use), and larger requests go to the system malloc (its chunk
headers; a page is resident once any byte of it is written).

Rules: the measurement runs in a child interpreter (this one's executable, ``-c``, working folder
the repository) that imports only ``server.layouts`` and builds the table with ``make_table``, the
call the server makes at start: a table built here, in a process that has run other code, would
land in pools that code left half used. The child builds one table untraced, reading VmRSS and
``sys._debugmallocstats()`` (CPython's own accounting of its arenas, pools and blocks, printed on
stderr) before and after, then a second table of the same size under tracemalloc for the bytes
requested, split at 512 B. It is not the server process itself (whose code is not this module's to
change); the sweep puts the child's RSS per slot beside the server's, measured from outside, so the
two can be compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from server.memstats import PYMALLOC_HEADER, PymallocStatsMissing, parse_pymalloc

from ..dataset.sweep import SMALL_REQUEST_MAX_BYTES, AllocatorDelta
from ..errors import ExperimentError
from ..paths import REPO_ROOT

#: Seconds one child may take (naive at 16,384 slots: about 1.5 s here).
CHILD_TIMEOUT_S = 120.0

#: The child: builds the table untraced (RSS and pymalloc's stats around it), then again traced.
_CHILD = f"""
import gc, json, sys, tracemalloc
from server.layouts import make_table

def rss_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

layout, slots = sys.argv[1], int(sys.argv[2])
gc.collect()
rss_before = rss_bytes()
sys.stderr.flush()
sys._debugmallocstats()
table = make_table(layout, slots)
gc.collect()
rss_after = rss_bytes()
sys._debugmallocstats()
tracemalloc.start()
again = make_table(layout, slots)
gc.collect()
traces = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)]).traces
small = sum(trace.size for trace in traces if trace.size <= {SMALL_REQUEST_MAX_BYTES})
large = sum(trace.size for trace in traces if trace.size > {SMALL_REQUEST_MAX_BYTES})
print(json.dumps({{"rss_before": rss_before, "rss_after": rss_after, "requested_small": small, "requested_large": large}}))
"""

class AllocatorUnavailable(ExperimentError):
    """The allocator could not be measured (pymalloc off, the child failed); the message says why."""


def parse_mallocstats(text: str) -> dict[str, int]:
    """One ``sys._debugmallocstats()`` report's figures (:func:`server.memstats.parse_pymalloc`);
    raises :class:`AllocatorUnavailable` when pymalloc's lines are missing."""
    try:
        return parse_pymalloc(text)
    except PymallocStatsMissing as error:
        raise AllocatorUnavailable(str(error)) from None


def measure_table(layout: str, slots: int, python: str = sys.executable) -> AllocatorDelta:
    """Build a ``layout`` table of ``slots`` slots in a child interpreter and return what it added
    (see the module's docstring). Raises :class:`AllocatorUnavailable` with the reason."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONMALLOC", "PYTHONTRACEMALLOC")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    try:
        child = subprocess.run([python, "-c", _CHILD, layout, str(slots)], cwd=Path(REPO_ROOT), env=env,
                               capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise AllocatorUnavailable(f"{layout}: the allocator child did not finish: {error}") from None
    if child.returncode != 0:
        last = (child.stderr.strip().splitlines() or ["no output"])[-1]
        raise AllocatorUnavailable(f"{layout}: the allocator child exited with {child.returncode}: {last}")
    blocks = [PYMALLOC_HEADER + part for part in child.stderr.split(PYMALLOC_HEADER)[1:]]
    if len(blocks) != 2:
        raise AllocatorUnavailable(f"{layout}: expected two sys._debugmallocstats() reports, got {len(blocks)}")
    before, after = parse_mallocstats(blocks[0]), parse_mallocstats(blocks[1])
    try:
        figures = json.loads(child.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AllocatorUnavailable(f"{layout}: the allocator child printed no figures") from None
    return AllocatorDelta(
        layout=layout, slots=slots,
        rss_bytes=figures["rss_after"] - figures["rss_before"],
        requested_small_bytes=figures["requested_small"],
        requested_large_bytes=figures["requested_large"],
        block_bytes=after["allocated_blocks"] - before["allocated_blocks"],
        pool_bytes=after["pool_bytes"] - before["pool_bytes"],
        arena_bytes=after["arenas"] - before["arenas"],
    )


__all__ = ["AllocatorUnavailable", "measure_table", "parse_mallocstats", "CHILD_TIMEOUT_S"]
