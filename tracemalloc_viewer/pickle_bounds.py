"""A pickle's bounds checked before anything is built: what the restricted unpickler of tracemalloc
dumps (:func:`~.sources.tracemalloc_dumps.load_snapshot`) checks first.

Rules: :func:`check` walks the opcodes, reading each opcode and its argument's length and nothing
else (no object is made; about 0.2 s per MB of pickle here, a few times what the C unpickler takes to
load it: the price of not trusting it). It refuses an opcode pickle does not define, an argument
that runs past the end of the data, a memo index larger than the number of opcodes read so far
(``LONG_BINPUT 2**26`` in a 9-byte file would make the C unpickler allocate a GiB memo; a real dump
memoizes with ``MEMOIZE``, one entry per opcode), a persistent id or an extension code
(``Snapshot.dump`` writes neither), and data after ``STOP``. Nesting depth is bounded by what the
loader checks next: the traces must have tracemalloc's exact shape, strings and integers at fixed
depth, before anything is hashed.
"""

from __future__ import annotations

import pickletools

#: Argument kinds: ``n >= 0`` fixed bytes; ``_LINE`` one newline-ended line; ``_LINES`` two;
#: ``_PREFIXED + k``: a length of k bytes (little-endian), then that many bytes.
_LINE, _LINES, _PREFIXED = -1, -2, -100
#: Opcodes whose argument is a memo index written by the pickle (PUT family) or read (GET family).
_PUTS = {ord("p"), ord("q"), ord("r")}
_GETS = {ord("g"), ord("h"), ord("j")}
#: Opcodes a tracemalloc dump never holds and that reach outside the pickle.
_REFUSED = {ord("P"): "a persistent id", ord("Q"): "a persistent id", 0x82: "an extension code",
            0x83: "an extension code", 0x84: "an extension code"}
_STOP = ord(".")
_FRAME = 0x95
#: BINSTRING and LONG4 write their length as a signed 4-byte integer.
_SIGNED_LENGTHS = {ord("T"), 0x8A}


def _kinds() -> list[int | None]:
    kinds: list[int | None] = [None] * 256
    lengths = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
               pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}
    for opcode in pickletools.opcodes:
        code = ord(opcode.code)
        argument = opcode.arg
        if argument is None:
            kinds[code] = 0
        elif argument.n >= 0:
            kinds[code] = argument.n
        elif argument.n == pickletools.UP_TO_NEWLINE:
            kinds[code] = _LINES if argument.name.endswith("_pair") else _LINE
        else:
            kinds[code] = _PREFIXED + lengths[argument.n]
    return kinds


_KINDS = _kinds()


#: 1 for the opcodes :func:`check` looks at beyond their length.
_SPECIAL = bytes(1 if code in _PUTS | _GETS | set(_REFUSED) | {_STOP, _FRAME} else 0 for code in range(256))


class PickleBoundsError(ValueError):
    """The pickle breaks a bound; the message says which and at what offset."""


def check(data: bytes) -> int:
    """Walk the pickle ``data`` (see the module's rules); return the number of opcodes, raise
    :class:`PickleBoundsError` at the first bound broken."""
    kinds = _KINDS
    special = _SPECIAL
    size = len(data)
    position = 0
    count = 0
    while position < size:
        code = data[position]
        kind = kinds[code]
        count += 1
        if kind is None:
            raise PickleBoundsError(f"byte 0x{code:02x} at offset {position} is not a pickle opcode")
        start = position + 1
        if kind >= 0:
            end = start + kind
        elif kind == _LINE:
            end = data.find(b"\n", start) + 1
            if end == 0:
                raise PickleBoundsError(f"the opcode at offset {position} has no end of line")
        elif kind == _LINES:
            end = data.find(b"\n", data.find(b"\n", start) + 1) + 1
            if end == 0 or data.find(b"\n", start) < 0:
                raise PickleBoundsError(f"the opcode at offset {position} has no end of line")
        else:
            width = kind - _PREFIXED
            length = int.from_bytes(data[start:start + width], "little", signed=code in _SIGNED_LENGTHS)
            if length < 0:
                raise PickleBoundsError(f"negative length at offset {position}")
            end = start + width + length
        if end > size:
            raise PickleBoundsError(f"the opcode at offset {position} runs past the end of the data "
                                    f"({end - size} bytes missing: truncated?)")
        if not special[code]:
            position = end
            continue
        if code in _PUTS or code in _GETS:
            argument = data[start:end]
            index = int(argument) if code in (ord("p"), ord("g")) and argument.strip().isdigit() else (
                int.from_bytes(argument, "little") if code not in (ord("p"), ord("g")) else -1)
            if not 0 <= index <= count:
                raise PickleBoundsError(f"memo index {index if index >= 0 else '?'} at offset {position} is more than "
                                        f"the {count} opcodes read so far could have stored")
        elif code in _REFUSED:
            raise PickleBoundsError(f"{_REFUSED[code]} at offset {position} (tracemalloc dumps have none)")
        elif code == _FRAME and int.from_bytes(data[start:end], "little") > size - end:
            raise PickleBoundsError(f"a frame at offset {position} claims more bytes than follow (truncated?)")
        elif code == _STOP:
            if end != size:
                raise PickleBoundsError(f"{size - end} bytes after the end of the pickle (offset {end})")
            return count
        position = end
    raise PickleBoundsError("the pickle has no STOP opcode (truncated?)")
