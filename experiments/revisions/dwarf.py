"""Struct layouts read from a built binary's DWARF debug information, as pahole shows them: each
struct's size, its members (offset, size, bit fields) and the holes between them.

Rules: the reader is pyelftools (no process is run, nothing is compiled). A struct is asked for by
name, with alternatives separated by ``|`` (``lwan_connection_t|lwan_connection``: names change
across a program's history); each alternative matches a struct's tag or a typedef of one, and the
first alternative found wins. A struct found nowhere is *absent* (``None``), not an error: an old
revision may not have it yet. A binary without debug information is a :class:`BadInput` (build with
``-g``). Holes are byte ranges no member covers, between members (``holes``) or after the last one
(``padding``); a bit field covers the bytes its bits fall in. A struct declared in several
compilation units is read from the first with a definition (its size is the same in each, or the
program would not link the way it does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import BadInput

#: Tags whose DW_AT_type is followed to reach a member's storage (its size).
_QUALIFIERS = ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type",
               "DW_TAG_atomic_type")


class Member:
    """One member: ``offset`` and ``size`` in bytes; ``bit_size``/``bit_offset`` (from the struct's
    start, in bits) for a bit field, else None."""

    __slots__ = ("name", "type_name", "offset", "size", "bit_size", "bit_offset")

    def __init__(self, name: str, type_name: str, offset: int, size: int,
                 bit_size: int | None = None, bit_offset: int | None = None) -> None:
        self.name, self.type_name, self.offset, self.size = name, type_name, offset, size
        self.bit_size, self.bit_offset = bit_size, bit_offset

    def byte_range(self) -> tuple[int, int]:
        """The bytes it covers, [start, end)."""
        if self.bit_size is not None and self.bit_offset is not None:
            return self.bit_offset // 8, (self.bit_offset + self.bit_size + 7) // 8
        return self.offset, self.offset + self.size

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type_name, "offset": self.offset, "size": self.size}
        if self.bit_size is not None:
            out["bit_size"], out["bit_offset"] = self.bit_size, self.bit_offset
        return out


def struct_layouts(binary: Path, names: list[str]) -> dict[str, dict[str, Any] | None]:
    """For each of ``names`` (alternatives ``a|b``), its layout as a dict (``name`` found, ``size``,
    ``members``, ``holes`` as ``[offset, bytes]`` pairs, ``hole_bytes``, ``padding``), or None when
    the binary has no struct of that name."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        handle = open(binary, "rb")
    except OSError as error:
        raise BadInput(f"{binary}: cannot read: {error.strerror or error}") from None
    with handle:
        try:
            elf = ELFFile(handle)
        except ELFError as error:
            raise BadInput(f"{binary}: not an ELF file ({error})") from None
        if not elf.has_dwarf_info() or elf.get_section_by_name(".debug_info") is None:
            raise BadInput(f"{binary}: no DWARF debug information (build it with -g)")
        wanted = {alternative for name in names for alternative in name.split("|")}
        found = _find_structs(elf.get_dwarf_info(), wanted)
    result: dict[str, dict[str, Any] | None] = {}
    for name in names:
        result[name] = next((found[alt] for alt in name.split("|") if alt in found), None)
    return result


def _find_structs(dwarf: Any, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """Every wanted name's layout, scanning the compilation units until all are found."""
    found: dict[str, dict[str, Any]] = {}
    for unit in dwarf.iter_CUs():
        for die in unit.iter_DIEs():
            if len(found) == len(wanted):
                return found
            name = _name(die)
            if name is None or name not in wanted or name in found:
                continue
            if die.tag == "DW_TAG_typedef":
                target = _target(die)
                while target is not None and target.tag in _QUALIFIERS:
                    target = _target(target)
                if target is not None and target.tag == "DW_TAG_structure_type" and _is_definition(target):
                    found[name] = _layout(target, name)
            elif die.tag == "DW_TAG_structure_type" and _is_definition(die):
                found[name] = _layout(die, name)
    return found


def _is_definition(die: Any) -> bool:
    return "DW_AT_declaration" not in die.attributes and "DW_AT_byte_size" in die.attributes


def _name(die: Any) -> str | None:
    attribute = die.attributes.get("DW_AT_name")
    if attribute is None:
        return None
    value = attribute.value
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _target(die: Any) -> Any:
    return die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes else None


def _type_size(die: Any, address_bytes: int) -> int:
    """Bytes of the type ``die`` names (typedefs and qualifiers followed, arrays multiplied out)."""
    while die is not None:
        if "DW_AT_byte_size" in die.attributes:
            return int(die.attributes["DW_AT_byte_size"].value)
        if die.tag in ("DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_ptr_to_member_type"):
            return address_bytes
        if die.tag == "DW_TAG_array_type":
            count = 1
            for child in die.iter_children():
                if child.tag == "DW_TAG_subrange_type":
                    if "DW_AT_count" in child.attributes:
                        count *= int(child.attributes["DW_AT_count"].value)
                    elif "DW_AT_upper_bound" in child.attributes:
                        count *= int(child.attributes["DW_AT_upper_bound"].value) + 1
                    else:  # a flexible array member: no storage of its own
                        count = 0
            return count * _type_size(_target(die), address_bytes)
        die = _target(die)
    return 0


def _type_name(die: Any) -> str:
    """A short C spelling of the type: ``char[4096]``, ``struct coro *``, ``unsigned int``."""
    if die is None:
        return "void"
    name = _name(die)
    if die.tag == "DW_TAG_pointer_type":
        return f"{_type_name(_target(die))} *"
    if die.tag == "DW_TAG_array_type":
        bounds = "".join(f"[{int(c.attributes['DW_AT_upper_bound'].value) + 1}]" if "DW_AT_upper_bound" in c.attributes
                         else f"[{int(c.attributes['DW_AT_count'].value)}]" if "DW_AT_count" in c.attributes else "[]"
                         for c in die.iter_children() if c.tag == "DW_TAG_subrange_type")
        return f"{_type_name(_target(die))}{bounds}"
    if die.tag in ("DW_TAG_const_type", "DW_TAG_volatile_type"):
        return f"{die.tag[7:-5]} {_type_name(_target(die))}"
    kind = {"DW_TAG_structure_type": "struct ", "DW_TAG_union_type": "union ", "DW_TAG_enumeration_type": "enum "}
    return f"{kind.get(die.tag, '')}{name or '(anonymous)'}"


def _member_offset(die: Any) -> tuple[int, int | None]:
    """(byte offset, bit offset from the struct's start or None) of a member."""
    bit_size = die.attributes.get("DW_AT_bit_size")
    location = die.attributes.get("DW_AT_data_member_location")
    offset = 0
    if location is not None:
        value = location.value
        # DWARF 2 wrote the offset as an expression (DW_OP_plus_uconst N): its operand is the offset.
        offset = int(value) if isinstance(value, int) else int(value[-1]) if value else 0
    if bit_size is None:
        return offset, None
    if "DW_AT_data_bit_offset" in die.attributes:
        return int(die.attributes["DW_AT_data_bit_offset"].value) // 8, int(die.attributes["DW_AT_data_bit_offset"].value)
    # DWARF 2/3: DW_AT_bit_offset counts from the storage unit's most significant bit (little endian:
    # the unit's bits from the top), the unit of DW_AT_byte_size bytes at the member location.
    unit_bytes = int(die.attributes["DW_AT_byte_size"].value) if "DW_AT_byte_size" in die.attributes else 4
    msb_offset = int(die.attributes.get("DW_AT_bit_offset").value) if "DW_AT_bit_offset" in die.attributes else 0
    bit = offset * 8 + unit_bytes * 8 - msb_offset - int(bit_size.value)
    return bit // 8, bit


def _layout(die: Any, found_name: str) -> dict[str, Any]:
    address_bytes = die.cu.header["address_size"]
    size = int(die.attributes["DW_AT_byte_size"].value)
    members: list[Member] = []
    for child in die.iter_children():
        if child.tag != "DW_TAG_member":
            continue
        offset, bit_offset = _member_offset(child)
        target = _target(child)
        bit_size = child.attributes.get("DW_AT_bit_size")
        members.append(Member(_name(child) or "(anonymous)", _type_name(target), offset,
                              _type_size(target, address_bytes), int(bit_size.value) if bit_size else None,
                              bit_offset))
    holes, end = [], 0
    for start, stop in sorted(member.byte_range() for member in members):
        if start > end:
            holes.append([end, start - end])
        end = max(end, stop)
    return {"name": found_name, "size": size, "members": [member.as_dict() for member in members],
            "holes": holes, "hole_bytes": sum(length for _offset, length in holes), "padding": max(0, size - end)}
