"""The per-slot anatomy adds up to what tracemalloc measures, and its C side matches ctypes."""

from __future__ import annotations

import ctypes
import gc
import struct
import sys
import tracemalloc

import pytest

from experiments.measure.anatomy import (
    GC_HEADER_BYTES,
    OBJECT_HEADER_BYTES,
    PART_NAMES,
    c_fields,
    slot_anatomy,
)
from server.layouts import LAYOUTS, make_table

MEASURED_SLOTS = 20_000


def traced_bytes_per_slot(layout: str, max_conns: int) -> float:
    """Heap allocated while building the table, per slot, as tracemalloc sees it."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        table = make_table(layout, max_conns)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del table
    return (after - before) / max_conns


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_parts_add_up_to_the_traced_bytes_per_slot(layout):
    anatomy = slot_anatomy(layout)
    measured = traced_bytes_per_slot(layout, MEASURED_SLOTS)
    assert set(anatomy.parts) == set(PART_NAMES)
    assert all(size >= 0 for size in anatomy.parts.values())
    assert anatomy.total == pytest.approx(measured, rel=0.03), (anatomy.parts, measured)


def test_packed_slot_is_exactly_its_share_of_the_buffer():
    anatomy = slot_anatomy("packed")
    table = make_table("packed", 1000)
    assert anatomy.nonzero_parts() == [("buffer", len(table.buffer) / table.max_conns)]
    assert anatomy.total == anatomy.c_bytes_per_slot == ctypes.sizeof(LAYOUTS["packed"].c_struct)


@pytest.mark.parametrize("layout", ["split", "bitfields", "nofd"])
def test_slots_object_is_header_gc_header_and_one_pointer_per_field(layout):
    anatomy = slot_anatomy(layout)
    slot = make_table(layout, 2).slots[0]
    pointer = struct.calcsize("P")
    assert anatomy.parts["object header"] == OBJECT_HEADER_BYTES == 2 * pointer
    assert anatomy.parts["GC header"] == GC_HEADER_BYTES
    assert anatomy.parts["attribute storage"] == len(type(slot).__slots__) * pointer
    assert anatomy.parts["object header"] + anatomy.parts["GC header"] + anatomy.parts["attribute storage"] == sys.getsizeof(slot)
    assert anatomy.parts["table pointer"] == pointer


def test_naive_slot_parts_name_its_buffer_dict_and_containers():
    anatomy = slot_anatomy("naive")
    slot = make_table("naive", 2).slots[0]
    assert anatomy.parts["buffer"] == sys.getsizeof(slot.buffer)
    # Five empty containers (two lists, three dicts) without their GC headers.
    assert anatomy.parts["containers"] == 2 * [].__sizeof__() + 3 * {}.__sizeof__()
    # GC headers: the slot, its __dict__ and the five containers.
    assert anatomy.parts["GC header"] == 7 * GC_HEADER_BYTES
    assert anatomy.parts["attribute storage"] > len(vars(slot)) * struct.calcsize("P")


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_c_fields_match_the_struct(layout):
    anatomy = slot_anatomy(layout)
    c_struct = LAYOUTS[layout].c_struct
    fields = c_fields(layout)
    assert [f.name for f in fields] == [spec[0] for spec in c_struct._fields_]
    assert anatomy.c_bytes_per_slot == LAYOUTS[layout].c_bytes_per_slot() == ctypes.sizeof(c_struct)
    end = 0
    for field in fields:
        assert field.offset >= end, f"{field.name} overlaps the field before it"
        end = field.offset + field.size
    assert end <= anatomy.c_bytes_per_slot
    assert anatomy.c_padding >= 0
    assert sum(f.size for f in fields) + anatomy.c_padding == anatomy.c_bytes_per_slot
