"""What one slot of each layout costs, split into the parts that make it up, beside its C size.

The figures are derived from the layout classes themselves, by building two small tables and looking
at them with ``sys.getsizeof`` and the type flags, not by tracing allocations (the tests check the
parts against tracemalloc). All sizes are bytes per slot, for the CPython running this code. The
records it makes (:class:`SlotAnatomy`) and their file live in :mod:`experiments.dataset.anatomy`:
the matrix writes ``anatomy.json`` (:func:`write_anatomy_file`) and the report reads it, measuring
nothing itself.

How CPython (3.11, 64-bit) lays out an object, and where each part below comes from:

- ``object header``: ``ob_refcnt`` and ``ob_type`` of the slot object, ``object.__basicsize__``
  (16 B). Every Python object starts with it.
- ``GC header``: a ``PyGC_Head`` (two pointers, 16 B) placed *before* every object whose type has
  ``Py_TPFLAGS_HAVE_GC``, so the cycle collector can link it. ``x.__sizeof__()`` leaves it out and
  ``sys.getsizeof(x)`` adds it, so its size is ``sys.getsizeof([]) - [].__sizeof__()``. It is
  counted for the slot object and for every GC object the slot owns (its ``__dict__``, lists,
  dicts), whether or not the collector currently tracks it (an empty dict is untracked but still
  carries the header).
- ``attribute storage``: where the slot keeps its attribute values. For a ``__slots__`` class, one
  pointer per slot name inside the object (``__basicsize__ - 16``). For an ordinary class: the
  ``__weakref__`` pointer inside the object, the two managed-dict pointers CPython 3.11 puts before
  the object (``sys.getsizeof(x) - x.__sizeof__() - GC header``) and the ``__dict__`` itself (dict
  object and its key/value table, ``dict.__sizeof__()``). The naive slot has 40 attributes, more than
  the 30 a shared-key instance dictionary may hold, so CPython has already made it an ordinary dict;
  ``vars()`` reads it without allocating.
- ``buffer``: preallocated byte buffers (``bytearray``, ``array``...): the object and its data; for
  the packed layout, the slot's record in the table's one buffer.
- ``containers``: lists, dicts, sets the slot owns (empty at start), without their GC headers.
- ``other objects``: any other object owned by one slot alone.
- ``table pointer``: the slot's pointer in the table's list of slot objects (8 B; a list built by
  appending may hold up to 1/8 more spare pointers, 8.6 B per slot at 20,000 slots).

A value the slot shares with every other slot (``None``, ``False``, small ints, ``b""``) costs the
slot only its pointer, already counted in attribute storage.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

from server.layouts import LAYOUTS, make_table

from ..dataset.anatomy import PART_NAMES, CField, SlotAnatomy, write_anatomies

OBJECT_HEADER_BYTES = object.__basicsize__
GC_HEADER_BYTES = sys.getsizeof([]) - [].__sizeof__()
_PY_TPFLAGS_HAVE_GC = 1 << 14
_CONTAINER_TYPES = (list, dict, set, frozenset, tuple)
_BUFFER_TYPES = (bytearray, bytes, memoryview)

#: Slots in the small tables built to inspect a layout (and twice that, for the table's share).
SAMPLE_SLOTS = 64


def _gc_header(value: Any) -> int:
    """Bytes of the PyGC_Head in front of ``value``: present exactly when its type is a GC type."""
    return GC_HEADER_BYTES if type(value).__flags__ & _PY_TPFLAGS_HAVE_GC else 0


def _pre_header(value: Any) -> int:
    """Bytes CPython keeps in front of ``value`` besides the GC header (3.11: the managed
    ``__dict__`` and values pointers of an ordinary class instance), which ``sys.getsizeof``
    includes and ``__sizeof__`` does not."""
    return sys.getsizeof(value) - value.__sizeof__() - _gc_header(value)


def _attributes(obj: Any) -> Iterator[tuple[str, Any]]:
    """Every attribute value stored in ``obj``: its ``__slots__`` over the class hierarchy and its
    ``__dict__``."""
    for cls in type(obj).__mro__:
        names = cls.__dict__.get("__slots__", ())
        for name in (names,) if isinstance(names, str) else names:
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                yield name, getattr(obj, name)
    yield from getattr(obj, "__dict__", {}).items()


def _kind(value: Any) -> str:
    if isinstance(value, _BUFFER_TYPES) or isinstance(value, ctypes.Array):
        return "buffer"
    if isinstance(value, _CONTAINER_TYPES):
        return "containers"
    return "other objects"


def _slot_object_parts(slot: Any, neighbour: Any) -> dict[str, float]:
    """Parts of one slot object ``slot``; ``neighbour`` is another slot of the same table, so a
    value both hold (the same object) is shared and costs nothing more than its pointer."""
    parts = dict.fromkeys(PART_NAMES, 0.0)
    parts["object header"] = OBJECT_HEADER_BYTES
    parts["GC header"] += _gc_header(slot)
    parts["attribute storage"] += slot.__sizeof__() - OBJECT_HEADER_BYTES + _pre_header(slot)
    instance_dict = getattr(slot, "__dict__", None)
    if instance_dict is not None:
        parts["attribute storage"] += instance_dict.__sizeof__()
        parts["GC header"] += _gc_header(instance_dict)
    neighbour_values = dict(_attributes(neighbour))
    for name, value in _attributes(slot):
        if value is neighbour_values.get(name):
            continue
        kind = _kind(value)
        if kind == "buffer":
            parts[kind] += sys.getsizeof(value)  # a bytearray is not a GC type: all of it is buffer
        else:
            parts[kind] += value.__sizeof__()
            parts["GC header"] += _gc_header(value)
    return parts


def _table_share(small: Any, large: Any) -> dict[str, float]:
    """What each extra slot adds to the table's own attributes: (size in ``large`` - size in
    ``small``) / (slots of ``large`` - slots of ``small``). Fixed costs (the list's or buffer's
    object header, empty dicts) cancel out. The list of slot objects counts as ``table pointer``,
    a buffer as ``buffer``; a memoryview owns no memory (it views another attribute) and an int
    attribute (``max_conns``) is not storage, so both are skipped."""
    parts = dict.fromkeys(PART_NAMES, 0.0)
    extra_slots = large.max_conns - small.max_conns
    for name, value in vars(small).items():
        if isinstance(value, memoryview) or isinstance(value, int):
            continue
        growth = (sys.getsizeof(getattr(large, name)) - sys.getsizeof(value)) / extra_slots
        if growth:
            kind = "table pointer" if name == "slots" else _kind(value)
            parts[kind] += growth
    return parts


def c_fields(layout_name: str) -> tuple[CField, ...]:
    """The fields of ``layout_name``'s C struct with their offsets and sizes (ctypes descriptors)."""
    struct = LAYOUTS[layout_name].c_struct
    fields = []
    for spec in struct._fields_:
        name, c_type = spec[0], spec[1]
        descriptor = getattr(struct, name)
        bits = spec[2] if len(spec) > 2 else None
        # For a bit field ctypes packs (bit offset << 16 | bit width) into .size; the storage unit
        # is the field type's size.
        size = ctypes.sizeof(c_type) if bits is not None else descriptor.size
        fields.append(CField(name, c_type.__name__, descriptor.offset, size, bits))
    return tuple(fields)


def slot_anatomy(layout_name: str) -> SlotAnatomy:
    """Bytes per slot of ``layout_name`` by part (see the module docstring), its C size and fields.

    Builds tables of :data:`SAMPLE_SLOTS` and twice as many slots (a few hundred KiB for naive).
    """
    cls = LAYOUTS[layout_name]
    small = make_table(layout_name, SAMPLE_SLOTS)
    large = make_table(layout_name, 2 * SAMPLE_SLOTS)
    parts = _table_share(small, large)
    slots = getattr(small, "slots", None)
    if slots is not None:
        # Slot 0 and slot 1 are both fresh, never opened: what every preallocated slot holds.
        for name, size in _slot_object_parts(slots[0], slots[1]).items():
            parts[name] += size
    return SlotAnatomy(
        layout=layout_name,
        summary=cls.summary,
        parts=parts,
        c_bytes_per_slot=cls.c_bytes_per_slot(),
        c_fields=c_fields(layout_name),
        python=sys.version.split()[0],
    )


def all_anatomies() -> list[SlotAnatomy]:
    """:func:`slot_anatomy` of every layout, in the order of the study."""
    return [slot_anatomy(name) for name in LAYOUTS]


def write_anatomy_file(folder: Path, layouts: Iterable[str] = LAYOUTS) -> Path:
    """Measure the anatomy of ``layouts`` (in the order of the study; names that are no layout are
    skipped) and write it to ``folder/anatomy.json``, where a report reads it."""
    wanted = set(layouts)
    return write_anatomies(folder, [slot_anatomy(name) for name in LAYOUTS if name in wanted])


__all__ = ["PART_NAMES", "CField", "SlotAnatomy", "slot_anatomy", "all_anatomies", "c_fields", "write_anatomy_file",
           "OBJECT_HEADER_BYTES", "GC_HEADER_BYTES"]
