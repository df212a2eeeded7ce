"""The anatomy file: what one slot of each layout costs by part, beside its C size, as a report reads it.

``anatomy.json`` in a report's folder (beside ``matrix.json``) holds one :class:`SlotAnatomy` per
layout. The matrix measures it (:mod:`experiments.measure.anatomy`, from the layout classes) and
writes it; renderers read it back and never measure live code. Sizes are bytes per slot, on the
CPython named in each entry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from .results import ResultError, read_json_file, write_json

ANATOMY_SCHEMA = "memdiet.anatomy/1"
ANATOMY_FILE = "anatomy.json"

#: The parts of a slot, in the order charts stack them.
PART_NAMES = (
    "object header",
    "GC header",
    "attribute storage",
    "buffer",
    "containers",
    "other objects",
    "table pointer",
)


@dataclass(frozen=True)
class CField:
    """One field of a layout's C struct: ``offset`` and ``size`` in bytes, ``c_type`` its ctypes
    name, ``bits`` the width of a bit field (None for a whole field)."""

    name: str
    c_type: str
    offset: int
    size: int
    bits: int | None = None


@dataclass(frozen=True)
class SlotAnatomy:
    """One layout's bytes per slot split into :data:`PART_NAMES`, and its C equivalent.

    ``parts`` maps every part name to bytes per slot (0.0 where the layout has none of it);
    ``c_bytes_per_slot`` is ``ctypes.sizeof`` of the layout's C struct, whose fields are
    ``c_fields``; ``python`` is the CPython version the figures were taken on.
    """

    layout: str
    summary: str
    parts: dict[str, float]
    c_bytes_per_slot: int
    c_fields: tuple[CField, ...]
    python: str

    @property
    def total(self) -> float:
        """Bytes per slot in Python: the sum of the parts."""
        return sum(self.parts.values())

    @property
    def c_padding(self) -> int:
        """Bytes of the C struct that belong to no field (alignment padding)."""
        return self.c_bytes_per_slot - sum(f.size for f in self.c_fields if f.bits is None) - _bitfield_bytes(self.c_fields)

    def nonzero_parts(self) -> list[tuple[str, float]]:
        return [(name, size) for name, size in self.parts.items() if size]


def _bitfield_bytes(fields: tuple[CField, ...]) -> int:
    # Bit fields sharing a storage unit share its bytes: count each (offset, size) unit once.
    return sum(size for _offset, size in {(f.offset, f.size) for f in fields if f.bits is not None})


def write_anatomies(folder: Path, anatomies: Iterable[SlotAnatomy]) -> Path:
    """Write ``folder/anatomy.json`` (atomically) and return its path."""
    path = Path(folder) / ANATOMY_FILE
    write_json(path, {"schema": ANATOMY_SCHEMA, "layouts": [asdict(anatomy) for anatomy in anatomies]})
    return path


def read_anatomies(path: Path) -> dict[str, SlotAnatomy]:
    """The anatomies of ``path`` by layout, in the file's order; empty when there is no such file.
    Raises :class:`ResultError` (one line) when the file is there but malformed."""
    path = Path(path)
    if not path.is_file():
        return {}
    document = read_json_file(path, ResultError, missing=f"{path}: no such anatomy file")
    try:
        return {entry["layout"]: _anatomy(entry) for entry in document["layouts"]}
    except (KeyError, TypeError, ValueError) as error:
        raise ResultError(f"{path}: not an anatomy file ({error!r})") from None


def _anatomy(entry: dict[str, Any]) -> SlotAnatomy:
    return SlotAnatomy(
        layout=str(entry["layout"]),
        summary=str(entry["summary"]),
        parts={name: float(entry["parts"].get(name, 0.0)) for name in PART_NAMES},
        c_bytes_per_slot=int(entry["c_bytes_per_slot"]),
        c_fields=tuple(CField(**field) for field in entry["c_fields"]),
        python=str(entry["python"]),
    )
