"""What each layout's table costs per slot, measured in-process with tracemalloc.

The layouts are the study's steps, so each must be strictly smaller than the one before; the ends are
pinned to the study's claims (the naive slot carries a 4 KiB buffer, the packed slot a few bytes).
"""

from __future__ import annotations

import functools
import gc
import tracemalloc

from server.layouts import LAYOUTS, make_table

from .conftest import LAYOUT_NAMES

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


def test_bytes_per_slot_reported(layout: str, record_property) -> None:
    python_bytes = python_bytes_per_slot(layout)
    c_bytes = LAYOUTS[layout].c_bytes_per_slot()
    print(f"{layout}: {python_bytes:.1f} B/slot in Python, {c_bytes} B/slot as a C struct")
    record_property("python_bytes_per_slot", round(python_bytes, 1))
    record_property("c_bytes_per_slot", c_bytes)
    assert python_bytes > 0
    assert c_bytes > 0


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
