"""The RSS ledger (issue 13, item 1): a process's resident memory split into measured parts that add
up, the remainder a row of its own.

The unit tests pin the reading rules on crafted /proc text; the run tests take one quick tracemalloc
run of each layout and hold the remainder to the issue's bar: within 5% of RSS at the ends of
idle-empty and idle-held (1.2-2.5% measured on this machine at 2,048 slots and C = 100, 2026-11-30;
about 0.5 MiB that is mostly the interpreter's and libraries' .bss, which the kernel merges with the
allocators' anonymous mappings).
"""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc
from pathlib import Path

import pytest

from experiments.dataset.results import IDLE_EMPTY, IDLE_HELD, RunResult, load_run
from experiments.measure import ledger, procfs
from experiments.measure.runner import RunConfig, run_once
from server import memstats

LAYOUTS = ("naive", "split", "bitfields", "nofd", "packed")
CONNECTIONS = 50
#: Calls of pymalloc_report in the tracer test, and how far they may move the traced total: one block
#: lost or left behind per call would move it by 50 x 16 B at least; the readings themselves and the
#: free lists move it by -120 to +88 B (measured over 20 calls, in pytest and alone).
CALLS = 50
MAX_TRACED_DRIFT_BYTES = 512
#: The issue's bar: the measured parts add up to RSS within 5%.
MAX_REMAINDER_SHARE = 0.05

SMAPS = """\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 1234                       /usr/bin/python3.11
Size:                  4 kB
Rss:                   4 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
55d0c0001000-55d0c0005000 rw-p 00001000 08:01 1234                       /usr/bin/python3.11
Size:                 16 kB
Rss:                  12 kB
Anonymous:             8 kB
55d0c1000000-55d0c1100000 rw-p 00000000 00:00 0                          [heap]
Size:               1024 kB
Rss:                 600 kB
Anonymous:           600 kB
7f0000000000-7f0000800000 rw-p 00000000 00:00 0 
Size:               8192 kB
Rss:                  64 kB
Anonymous:            64 kB
7f0000800000-7f0000a00000 rw-p 00000000 00:00 0 
Size:               2048 kB
Rss:                2000 kB
Anonymous:          2000 kB
7f0000a00000-7f0000a01000 ---p 00000000 00:00 0 
Size:                  4 kB
Rss:                   0 kB
Anonymous:             0 kB
7f0004000000-7f0004400000 rw-p 00000000 00:00 0 
Size:               4096 kB
Rss:                1024 kB
Anonymous:          1024 kB
7f0004400000-7f0008000000 ---p 00000000 00:00 0 
Size:              61440 kB
Rss:                   0 kB
Anonymous:             0 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
Rss:                  36 kB
Anonymous:            36 kB
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
Size:                  4 kB
Rss:                   0 kB
Anonymous:             0 kB
7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0                          [vdso]
Size:                  8 kB
Rss:                   8 kB
Anonymous:             0 kB
"""
KIB = 1024


def test_smaps_is_read_mapping_by_mapping():
    mappings = procfs.parse_smaps(SMAPS)
    assert len(mappings) == 11
    binary_data = mappings[1]
    assert (binary_data.perms, binary_data.inode, binary_data.path) == ("rw-p", 1234, "/usr/bin/python3.11")
    assert (binary_data.size_bytes, binary_data.rss_bytes, binary_data.anon_bytes) == (16 * KIB, 12 * KIB, 8 * KIB)
    assert mappings[3].path == "" and mappings[3].start == 0x7F0000000000


def test_pages_split_files_written_stacks_and_the_allocators():
    # A thread waits with its stack pointer inside the 8 MiB mapping: that mapping is its stack.
    pages = ledger.pages_of(procfs.parse_smaps(SMAPS), stack_pointers=[0x7F00007FF000], shmem=0, threads=2)
    assert pages.rss == (4 + 12 + 600 + 64 + 2000 + 1024 + 36 + 8) * KIB
    assert pages.file == (4 + 4) * KIB and pages.written == 8 * KIB
    assert pages.stacks == (64 + 36) * KIB and pages.stacks_found == 2
    assert pages.special == 8 * KIB
    assert pages.allocator_resident == (600 + 2000 + 1024) * KIB
    # Writable anonymous address space not resident: [heap] 424 KiB and the 2 MiB mapping's 48 KiB;
    # the guard pages (---p) hold no memory; the thread heap (at a multiple of 64 MiB, the rest of its
    # 64 MiB reserved) is left to malloc's figure.
    assert pages.untouched == (424 + 48) * KIB
    assert pages.thread_heaps_rss == 1024 * KIB and pages.main_heap_size == 1024 * KIB
    # Without the thread's stack pointer its stack is taken for allocator memory.
    unknown = ledger.pages_of(procfs.parse_smaps(SMAPS), stack_pointers=[], shmem=0, threads=2)
    assert unknown.stacks == 36 * KIB and unknown.allocator_resident == (600 + 2000 + 1024 + 64) * KIB
    assert unknown.stacks_found == 1


def test_shared_memory_is_taken_from_the_file_pages():
    pages = ledger.pages_of(procfs.parse_smaps(SMAPS), [], shmem=4 * KIB, threads=1)
    assert pages.shmem == 4 * KIB and pages.file == 4 * KIB


@pytest.mark.parametrize(("size", "block"), [
    (0, 16), (1, 16), (16, 16), (17, 32), (512, 512),  # pymalloc's size classes
    (513, 528), (1000, 1008), (1016, 1024),  # glibc: 8-byte header, 16-byte alignment
    (200_000, 200_704),  # mmapped on its own: whole pages with a 16-byte header
])
def test_block_bytes_follow_the_allocators_rules(size, block):
    assert ledger.block_bytes(size) == block


def test_without_pymalloc_every_request_is_a_malloc_chunk():
    assert ledger.block_bytes(24, pymalloc=False) == 32
    assert ledger.block_bytes(0, pymalloc=False) == 32


def _stats(traced: int | None = 1000) -> dict:
    return {"pymalloc": {"allocated_blocks": 800, "available_blocks": 100, "unused_pools": 16384, "pool_headers": 48,
                         "quantization": 16, "arena_alignment": 4096, "arenas": 1 << 20, "pool_bytes": 964},
            # malloc's heaps: [heap] (1 MiB) and a thread heap of 2 MiB, 1 MiB of it resident.
            "malloc": {"arena": 3 * 1024 * KIB, "hblkhd": 0, "uordblks": 1500, "fordblks": 3 * 1024 * KIB - 1500,
                       "keepcost": 2000},
            "traced_bytes": traced, "tracer_bytes": 200 if traced is not None else None}


def test_the_parts_add_up_to_rss_with_the_remainder_its_own_row():
    pages = ledger.pages_of(procfs.parse_smaps(SMAPS), [0x7F00007FF000], shmem=0, threads=2)
    one = ledger.ledger(pages, _stats(), rounding=100)
    parts = ledger.part_bytes(one)
    assert list(parts) == [name for name in ledger.PARTS if name in parts]
    assert sum(parts.values()) == one["rss_bytes"] == pages.rss
    # In use: 800 pymalloc blocks + 1,500 malloc chunk bytes, less traced, rounding and tracer.
    assert parts["untraced"] == 800 + 1500 - 1000 - 100 - 200
    assert parts["untouched"] == -(pages.untouched + 1024 * KIB)
    assert parts["pymalloc_free"] == 100 + 48 + 16 + 4096
    explained = sum(value for name, value in parts.items() if name != "remainder")
    assert parts["remainder"] == pages.rss - explained
    assert one["remainder_share"] == pytest.approx(parts["remainder"] / pages.rss)
    # No tracer: no Python heap, rounding or tracer row; still adding up.
    bare = ledger.part_bytes(ledger.ledger(pages, _stats(traced=None)))
    assert not {"python_heap", "rounding", "tracer"} & set(bare) and sum(bare.values()) == pages.rss
    assert bare["untraced"] == 800 + 1500
    # Without the allocators' figures nothing is guessed: their memory stays in the remainder.
    blind = ledger.part_bytes(ledger.ledger(pages, {"pymalloc": None, "malloc": None}))
    assert blind["remainder"] == pages.allocator_resident


def test_per_held_connection_is_the_growth_by_kind_over_c():
    pages = ledger.pages_of(procfs.parse_smaps(SMAPS), [0x7F00007FF000], shmem=0, threads=2)
    empty = ledger.ledger(pages, _stats(1000), rounding=100)
    grown = _stats(1000 + 5000)
    grown["malloc"]["uordblks"] += 5600
    held = ledger.ledger(dataclasses.replace(pages, rss=pages.rss + 8192), grown, rounding=100 + 400)
    figures = ledger.per_held_connection(empty, held, 10, 2368.0)
    assert figures["rss"] == 819.2 and figures["python_heap"] == 500.0 and figures["kernel"] == 2368.0
    assert figures["allocator"] == 40.0  # the rounding's growth, 400 B over 10
    assert figures["untraced"] == (5600 - 5000 - 400) / 10


def test_pymalloc_is_read_while_tracemalloc_traces_and_the_tracer_misses_nothing():
    """``sys._debugmallocstats()`` prints nothing about pymalloc with tracemalloc in front of it; the
    ledger puts pymalloc back for one C call. Once warm, the call leaves the traced total as it was
    (no block escapes the tracer, none is left traced after it was freed)."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        assert memstats.PYMALLOC_HEADER in memstats.pymalloc_report()
        stats = memstats.pymalloc_stats()
        assert stats is not None and stats["allocated_blocks"] > 0 and stats["arenas"] >= 1 << 20
        for _ in range(3):
            memstats.pymalloc_report()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(CALLS):
            memstats.pymalloc_report()
        gc.collect()
        moved = tracemalloc.get_traced_memory()[0] - before
        assert abs(moved) <= MAX_TRACED_DRIFT_BYTES, f"{CALLS} calls moved the traced total by {moved} B"
        assert tracemalloc.is_tracing()
    finally:
        if started:
            tracemalloc.stop()


def test_glibc_malloc_figures():
    figures = memstats.malloc_stats()
    assert figures is not None and figures["uordblks"] > 0 and figures["arena"] >= figures["uordblks"]


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunResult]:
    """One quick tracemalloc run per layout (about 4 s each)."""
    runs_dir = tmp_path_factory.mktemp("ledger-runs")
    runs = {}
    for layout in LAYOUTS:
        config = RunConfig(subject=layout, probe="tracemalloc", max_conns=2048, connections=CONNECTIONS, idle_s=0.3,
                           load_s=0.3, runs_dir=runs_dir)
        runs[layout] = load_run(run_once(config))
    return runs


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layouts_ledger_adds_up_to_rss_within_five_percent(quick_runs: dict[str, RunResult], layout: str):
    run = quick_runs[layout]
    assert run.status == "complete", run.document.get("error")
    book = run.document["rss_ledger"]
    for phase in (IDLE_EMPTY, IDLE_HELD):
        one = book["phases"][phase]
        parts = ledger.part_bytes(one)
        assert sum(parts.values()) == one["rss_bytes"]
        share = abs(parts["remainder"]) / one["rss_bytes"]
        assert share <= MAX_REMAINDER_SHARE, f"{layout} {phase}: the remainder is {share:.1%} of RSS: {parts}"
        # Every part measured: the tracer saw the heap, both allocators answered, every stack was found.
        assert {"python_heap", "rounding", "tracer", "untraced", "pymalloc_free", "malloc_free"} <= set(parts)
        assert parts["python_heap"] > 0 and parts["file"] > 0
        assert one["stacks_found"] == one["threads"] >= 2  # the loop and the tracer's sampler
        # The ledger's RSS is the kernel's, read at the same moment as the rss probe's samples would be.
        assert one["rss_bytes"] > 10 * 2**20
    bare = book["bare_interpreter"]
    assert "error" not in bare, bare
    assert bare["failed_imports"] == [] and bare["modules"] > 50
    assert abs(bare["remainder_share"]) <= MAX_REMAINDER_SHARE
    assert bare["rss_bytes"] < book["phases"][IDLE_EMPTY]["rss_bytes"]
    per_held = book["per_held_connection"]
    assert per_held["kernel"] == run.summary["kernel_bytes_per_held_connection"]
    assert per_held["rss"] == pytest.approx(
        (book["phases"][IDLE_HELD]["rss_bytes"] - book["phases"][IDLE_EMPTY]["rss_bytes"]) / CONNECTIONS)


def test_a_run_without_the_tracer_has_no_ledger(tmp_path: Path):
    config = RunConfig(subject="packed", probe="rss", max_conns=1024, connections=10, idle_s=0.2, load_s=0.2,
                       runs_dir=tmp_path)
    run = load_run(run_once(config))
    assert run.status == "complete" and "rss_ledger" not in run.document
