"""A structural check of LZ4 frames (the format memray compresses its captures with), so a
truncated capture is reported instead of read silently as a shorter one.

It walks frame headers and block sizes without decompressing: a complete file is a sequence of
frames, each ending with its end mark (and content checksum, when the frame declares one), with
nothing left over. Format: https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md
"""

from __future__ import annotations

import struct
from pathlib import Path

MAGIC = b"\x04\x22\x4d\x18"
_SKIPPABLE_FIRST, _SKIPPABLE_LAST = 0x184D2A50, 0x184D2A5F


def truncation(path: Path) -> str | None:
    """None if ``path`` is a complete sequence of LZ4 frames, else what is wrong with it."""
    with open(path, "rb") as file:
        data = file.read()
    position = 0
    while position < len(data):
        if len(data) - position < 4:
            return f"{len(data) - position} stray bytes at the end"
        (magic,) = struct.unpack_from("<I", data, position)
        if _SKIPPABLE_FIRST <= magic <= _SKIPPABLE_LAST:
            if len(data) - position < 8:
                return "stops inside a skippable frame header"
            (size,) = struct.unpack_from("<I", data, position + 4)
            position += 8 + size
            if position > len(data):
                return "stops inside a skippable frame"
            continue
        if data[position:position + 4] != MAGIC:
            return f"no LZ4 frame at byte {position}"
        problem, position = _frame_end(data, position)
        if problem:
            return problem
    return None


def _frame_end(data: bytes, start: int) -> tuple[str | None, int]:
    position = start + 4
    if len(data) < position + 2:
        return "stops inside a frame header", position
    flags = data[position]
    block_checksum = bool(flags & 0x10)
    content_size = bool(flags & 0x08)
    content_checksum = bool(flags & 0x04)
    dictionary_id = bool(flags & 0x01)
    position += 2 + 8 * content_size + 4 * dictionary_id + 1  # FLG, BD, optional fields, header checksum
    while True:
        if len(data) < position + 4:
            return f"stops at byte {len(data)}, inside the frame that starts at byte {start} (no end mark)", position
        (block,) = struct.unpack_from("<I", data, position)
        position += 4
        if block == 0:  # end mark
            position += 4 * content_checksum
            if position > len(data):
                return "stops inside the frame's content checksum", position
            return None, position
        position += (block & 0x7FFFFFFF) + 4 * block_checksum
        if position > len(data):
            return f"stops at byte {len(data)}, inside a compressed block", position
