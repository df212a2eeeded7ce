"""What each layout's table costs per slot, measured in-process with tracemalloc, checked against an
outside oracle; and each slot's C size, checked against figures worked out by hand from its fields.

The layouts are the study's steps, so each must be strictly smaller than the one before; the ends are
pinned to the study's claims (the naive slot carries a 4 KiB buffer, the packed slot a few bytes).
README's layouts table quotes :func:`python_bytes_per_slot` (tests/test_readme_figures.py checks it).
"""

from __future__ import annotations

import functools
import gc
import sys
import tracemalloc
import types
from typing import Any

import pytest

from server.layouts import LAYOUTS, make_table

from ..conftest import LAYOUT_NAMES

#: Slots in each measured table: enough that per-table constants vanish in the per-slot figure.
SLOTS = 20_000


@functools.cache
def python_bytes_per_slot(layout: str) -> float:
    """Bytes tracemalloc sees allocated by ``make_table(layout, SLOTS)``, divided by ``SLOTS``."""
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        table = make_table(layout, SLOTS)
        after = tracemalloc.get_traced_memory()[0]
        del table
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return (after - before) / SLOTS


#: Objects a table refers to that exist without it: classes, modules, functions, and the values
#: CPython shares (None, booleans).
_SHARED_KINDS = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, bool,
                 type(None))


def reachable_bytes(root: Any) -> int:
    """``sys.getsizeof`` summed over every distinct object reachable from ``root`` through
    ``gc.get_referents``, leaving out :data:`_SHARED_KINDS`: an oracle for what building ``root``
    allocated that does not trace allocations at all. ``getsizeof`` counts an object's GC header,
    CPython 3.11's managed-dict pointers, and the storage a list, dict or bytearray owns."""
    seen: set[int] = set()
    total = 0
    pending = [root]
    while pending:
        obj = pending.pop()
        if id(obj) in seen or isinstance(obj, _SHARED_KINDS):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        pending.extend(gc.get_referents(obj))
    return total


def reachable_bytes_per_slot(layout: str, slots: int = SLOTS) -> float:
    """:func:`reachable_bytes` of a fresh ``make_table(layout, slots)``, per slot."""
    return reachable_bytes(make_table(layout, slots)) / slots


#: What the table object itself (its instance dict, list header, small fields) adds to one table,
#: spread over the slots, at most: measured 330-390 B per table here, so 0.1 B per slot at 20,000
#: slots leaves room for 2,000 B.
PER_TABLE_BYTES_PER_SLOT = 0.1

#: Each slot's C struct size, worked out by hand from its fields (x86-64 alignment: a struct is
#: padded to its largest member):
C_BYTES_PER_SLOT = {
    # 4,096 buffer + 9 pointers (coroutine, method, target, path, query_string, host, user_agent,
    # accept_encoding, response_mime_type) 72 + header_start 128 + 6 int64 (if_modified_since,
    # range_from, range_to, content_length, response_length, requests_served) 48 + 8 int32 (fd,
    # remote_ip, expiry, prev, next, buffer_used, parse_state, parse_position) 32 + 2 int16
    # (response_status, remote_port) 4 + 8 one-byte flags 8 = 4,388, padded to 8: 4,392.
    "naive": 4392,
    # coroutine 8 + 5 int32 (fd, remote_ip, expiry, prev, next) 20 + remote_port 2 + 5 one-byte
    # booleans 5 = 35, padded to 8: 40.
    "split": 40,
    # coroutine 8 + 5 int32 20 + flags (int16) 2 + remote_port 2 = 32.
    "bitfields": 32,
    # coroutine 8 + 4 int32 (expiry, prev, next, flags) 16 = 24.
    "nofd": 24,
    # 4 int32 (flags, expiry, prev, next) = 16.
    "packed": 16,
}


def test_bytes_per_slot_matches_the_reachable_objects(layout: str, record_property) -> None:
    python_bytes = python_bytes_per_slot(layout)
    oracle = reachable_bytes_per_slot(layout)
    c_bytes = LAYOUTS[layout].c_bytes_per_slot()
    print(f"{layout}: {python_bytes:.1f} B/slot in Python (reachable objects: {oracle:.2f}), "
          f"{c_bytes} B/slot as a C struct")
    record_property("python_bytes_per_slot", round(python_bytes, 1))
    record_property("c_bytes_per_slot", c_bytes)
    assert python_bytes == pytest.approx(oracle, abs=PER_TABLE_BYTES_PER_SLOT)


def test_c_struct_size_is_its_fields_worked_out_by_hand(layout: str) -> None:
    assert LAYOUTS[layout].c_bytes_per_slot() == C_BYTES_PER_SLOT[layout]


def test_reachable_bytes_counts_what_an_object_owns() -> None:
    """The oracle itself on objects whose sizes CPython documents: a list of N distinct 1 KiB
    bytearrays owns N buffers; shared values (None) and classes are not counted."""
    buffers = [bytearray(1024) for _ in range(10)]
    holder = [None, int, *buffers]
    expected = sys.getsizeof(holder) + 10 * sys.getsizeof(bytearray(1024))
    assert reachable_bytes(holder) == expected
    assert reachable_bytes([buffers[0], buffers[0]]) == sys.getsizeof([0, 0]) + sys.getsizeof(buffers[0])


def test_each_layout_smaller_than_the_one_before() -> None:
    sizes = [python_bytes_per_slot(name) for name in LAYOUT_NAMES]  # the registry is in study order
    assert all(bigger > smaller for bigger, smaller in zip(sizes, sizes[1:])), dict(zip(LAYOUT_NAMES, sizes))


def test_naive_slot_holds_a_4k_buffer() -> None:
    assert python_bytes_per_slot("naive") >= 4096
    assert LAYOUTS["naive"].c_bytes_per_slot() >= 4096


def test_packed_slot_is_a_few_bytes() -> None:
    assert python_bytes_per_slot("packed") <= 32
    assert LAYOUTS["packed"].c_bytes_per_slot() <= 32


def test_c_struct_smaller_than_the_step_before() -> None:
    sizes = [LAYOUTS[name].c_bytes_per_slot() for name in LAYOUT_NAMES]
    assert all(bigger > smaller for bigger, smaller in zip(sizes, sizes[1:])), dict(zip(LAYOUT_NAMES, sizes))
