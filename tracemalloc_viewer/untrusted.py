"""Files are untrusted input: the one validating layer every reader of dumps, captures, massif.out
files and run folders goes through (the viewer's sources and ``experiments.dataset``'s loaders alike).

Rules (docs/untrusted-input.md lists the bounds):

- A file is read only if it is a regular file (no device, FIFO, socket or folder), through no
  symlink, and inside the folder being read when there is one (``inside``); its size is checked
  against a cap before a byte is read, and no more than the cap is ever read.
- Text is strict UTF-8; a bad byte is named with its value and offset, never quoted with its
  neighbours. An error line names the file and the place (line, field) and quotes no content of the
  file beyond a short, escaped value (:func:`shown`): a file may be a secret someone linked in.
- Numbers are checked where they are read: sizes and counts are integers with 0 <= n < 2**63, times
  are finite, line numbers fit in 32 bits, and the type of each field is checked (a bool is not a
  number).
- A name that becomes part of a path (a layout, a probe, a subject, a file listed in result.json) is
  checked by one rule (:data:`NAME_PATTERN`, the rule of ``memdiet run --name``): anything else is
  refused, never normalised into another folder.
- Every violation raises ``error`` (:class:`~.errors.ViewerInputError` unless the caller passes its
  own, such as ``experiments``' ``ResultError``), one line.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from .errors import ViewerInputError

#: Sizes and counts are below this (they fit a signed 64-bit integer, as every tracer stores them).
SIZE_LIMIT = 2**63
#: Times are below this many seconds in magnitude (a run's clock, a monotonic clock or the epoch).
TIME_LIMIT_S = 1e12
#: Line numbers (and massif's addresses read as lines) are below this.
LINE_LIMIT = 2**32
#: Caps on a file's size, checked before reading it.
JSON_MAX_BYTES = 64 * 2**20
CSV_MAX_BYTES = 256 * 2**20
DUMP_MAX_BYTES = 256 * 2**20
MASSIF_MAX_BYTES = 256 * 2**20
SOURCE_MAX_BYTES = 4 * 2**20
#: Nesting of a JSON document (result.json is five levels deep).
JSON_MAX_DEPTH = 64
#: Digits of an integer in JSON or CSV text (2**63 has 19).
MAX_DIGITS = 20
#: A name that becomes a path component: what ``memdiet run --name`` admits, less "." and "..".
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.+-]{1,128}")
#: Characters of a value quoted in an error line.
SHOWN_CHARS = 40


def shown(value: Any) -> str:
    """``value`` as an error line may quote it: repr-escaped (no control character, no byte that a
    strict UTF-8 terminal refuses), and cut to :data:`SHOWN_CHARS` characters."""
    text = value if isinstance(value, str) else repr(value)
    cut = text[:SHOWN_CHARS]
    quoted = ascii(cut)
    return quoted + ("..." if len(text) > SHOWN_CHARS else "")


# --- files ---------------------------------------------------------------------------------------
def regular_file(path: Path, *, inside: Path | None = None, error: type[Exception] = ViewerInputError) -> os.stat_result:
    """The ``lstat`` of ``path`` once it is known to be a regular file, reached through no symlink,
    and (with ``inside``) within that folder; raises ``error`` otherwise."""
    path = Path(path)
    if inside is not None:
        check_inside(path, inside, error=error)
    try:
        info = os.lstat(path)
    except OSError as os_error:
        raise error(f"{path}: cannot read ({os_error.strerror or os_error})") from None
    if stat.S_ISLNK(info.st_mode):
        raise error(f"{path}: a symlink; refused (only regular files are read, so that nothing outside "
                    f"the named files is)")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: not a regular file ({_kind(info.st_mode)}); refused")
    return info


def check_inside(path: Path, folder: Path, *, error: type[Exception] = ViewerInputError) -> None:
    """Refuse ``path`` unless it lies inside ``folder`` with no symlink on the way: every component
    after the folder is a plain name (no ``..``, not absolute) and no component is a symlink."""
    path, folder = Path(path), Path(folder)
    try:
        relative = path.relative_to(folder)
    except ValueError:
        raise error(f"{path}: outside the folder {folder}; refused") from None
    current = folder
    for part in relative.parts[:-1]:
        if part in ("", ".", ".."):
            raise error(f"{path}: leaves the folder {folder}; refused")
        current = current / part
        if current.is_symlink():
            raise error(f"{current}: a symlink inside {folder}; refused")


def member(folder: Path, name: Any, where: str, *, error: type[Exception] = ViewerInputError) -> Path:
    """The path of the file ``name`` (read from ``where``, e.g. ``result.json: files.heap``) inside
    ``folder``: a relative path of :data:`NAME_PATTERN` components, refused otherwise (absolute,
    ``..``, a backslash, not text)."""
    if not isinstance(name, str) or not name:
        raise error(f"{where}: a file name must be a non-empty string, got {type(name).__name__}")
    parts = name.split("/")
    if name.startswith("/") or not all(NAME_PATTERN.fullmatch(part) and part not in (".", "..") for part in parts):
        raise error(f"{where}: file name {shown(name)} is not a plain relative path inside the run folder "
                    f"(letters, digits and _.+- in each part); refused")
    return Path(folder, *parts)


def read_bytes(path: Path, max_bytes: int, *, inside: Path | None = None,
               error: type[Exception] = ViewerInputError) -> bytes:
    """The bytes of the regular file ``path`` (see :func:`regular_file`), refused when larger than
    ``max_bytes``; reads at most ``max_bytes + 1`` bytes whatever the file claims."""
    path = Path(path)
    info = regular_file(path, inside=inside, error=error)
    if info.st_size > max_bytes:
        raise error(f"{path}: {info.st_size} bytes, over the {max_bytes}-byte limit for this kind of file; refused")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as os_error:
        raise error(f"{path}: cannot read ({os_error.strerror or os_error})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between lstat and open
            raise error(f"{path}: not a regular file; refused")
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as os_error:
        raise error(f"{path}: cannot read ({os_error.strerror or os_error})") from None
    finally:
        os.close(fd)
    if total > max_bytes:
        raise error(f"{path}: grew past the {max_bytes}-byte limit while read; refused")
    return b"".join(chunks)


def decode(data: bytes, path: Path, *, error: type[Exception] = ViewerInputError) -> str:
    """``data`` as strict UTF-8; a bad byte is named by value, offset and line (not quoted)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as decode_error:
        offset = decode_error.start
        line = data.count(b"\n", 0, offset) + 1
        raise error(f"{path}:{line}: byte 0x{data[offset]:02x} at offset {offset} is not UTF-8 "
                    f"({decode_error.reason})") from None


def read_text(path: Path, max_bytes: int, *, inside: Path | None = None,
              error: type[Exception] = ViewerInputError) -> str:
    """:func:`read_bytes` then :func:`decode`."""
    return decode(read_bytes(path, max_bytes, inside=inside, error=error), path, error=error)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


# --- JSON ----------------------------------------------------------------------------------------
def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def loads_json(text: str, source: str, *, error: type[Exception] = ViewerInputError) -> Any:
    """Parse JSON text from ``source``: NaN and Infinity refused, integers of at most
    :data:`MAX_DIGITS` digits, nesting at most :data:`JSON_MAX_DEPTH`."""
    depth, deepest = 0, 0
    for character in text:  # a cheap pre-check: the json module recurses per level
        if character in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > JSON_MAX_DEPTH:
                break
        elif character in "]}":
            depth -= 1
    if deepest > JSON_MAX_DEPTH:
        # Brackets inside strings count too: a document this deep in brackets is not ours either way.
        raise error(f"{source}: nested more than {JSON_MAX_DEPTH} levels deep; refused")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int)
    except json.JSONDecodeError as json_error:
        raise error(f"{source}: truncated or not JSON: not valid JSON ({json_error.msg} at line {json_error.lineno}), "
                    f"hand-edited?") from None
    except (ValueError, RecursionError) as value_error:
        raise error(f"{source}: not usable JSON ({value_error})") from None


def read_json(path: Path, max_bytes: int = JSON_MAX_BYTES, *, inside: Path | None = None,
              error: type[Exception] = ViewerInputError) -> Any:
    """The JSON document in the regular file ``path`` (:func:`read_text`, :func:`loads_json`)."""
    return loads_json(read_text(path, max_bytes, inside=inside, error=error), str(path), error=error)


def dumps_json(document: Any, **options: Any) -> str:
    """JSON text of a validated document: ``allow_nan=False``, so a NaN that got through is an error
    here rather than a page that silently draws nothing."""
    return json.dumps(document, allow_nan=False, **options)


# --- values --------------------------------------------------------------------------------------
def check_size(value: Any, where: str, *, error: type[Exception] = ViewerInputError) -> int:
    """``value`` if it is an integer with 0 <= value < 2**63 (a size or a count), else ``error``."""
    return _check_int(value, SIZE_LIMIT, "a size", "a whole number of bytes or blocks", where, error)


def check_line(value: Any, where: str, *, error: type[Exception] = ViewerInputError) -> int:
    """``value`` if it is an integer with 0 <= value < 2**32 (a line number), else ``error``."""
    return _check_int(value, LINE_LIMIT, "a line number", "a line number", where, error)


def _check_int(value: Any, limit: int, noun: str, expected: str, where: str, error: type[Exception]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{where}: expected {expected}, got {type(value).__name__}")
    if not 0 <= value < limit:
        raise error(f"{where}: {_magnitude(value)} is not {noun} (0 <= n < 2**{limit.bit_length() - 1})")
    return value


def check_time(value: Any, where: str, *, error: type[Exception] = ViewerInputError,
               non_negative: bool = False) -> float:
    """``value`` as a float if it is a number of seconds: finite, of magnitude below 1e12."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{where}: expected a number of seconds, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        raise error(f"{where}: {_magnitude(value)} is not a time") from None
    if not (math.isfinite(number) and abs(number) < TIME_LIMIT_S) or (non_negative and number < 0):
        raise error(f"{where}: {number!r} is not a {'non-negative ' if non_negative else ''}time below 1e12 s")
    return number


def check_number(value: Any, where: str, *, error: type[Exception] = ViewerInputError) -> float | int:
    """``value`` if it is a finite int or float with magnitude below 2**63 (a metric), else ``error``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{where}: expected a number, got {type(value).__name__}")
    if isinstance(value, int):
        if not -SIZE_LIMIT < value < SIZE_LIMIT:
            raise error(f"{where}: {_magnitude(value)} is out of range (|n| < 2**63)")
        return value
    if not math.isfinite(value):
        raise error(f"{where}: {value!r} is not a finite number")
    return value


def parse_size(text: str, where: str, *, error: type[Exception] = ViewerInputError) -> int:
    """A size written as decimal digits (a CSV cell, a massif.out field), bounded as :func:`check_size`."""
    if not (0 < len(text) <= MAX_DIGITS and text.isascii() and text.isdigit()):
        raise error(f"{where}: {shown(text)} is not a size (decimal digits, 0 <= n < 2**63)")
    return check_size(int(text), where, error=error)


def parse_time(text: str, where: str, *, error: type[Exception] = ViewerInputError, non_negative: bool = True) -> float:
    """A time written as a decimal number (a CSV cell): finite, non-negative unless told otherwise."""
    if not text.isascii() or len(text) > 64:
        raise error(f"{where}: {shown(text)} is not a time in seconds")
    try:
        number = float(text)
    except ValueError:
        raise error(f"{where}: {shown(text)} is not a number") from None
    return check_time(number, where, error=error, non_negative=non_negative)


def check_name(value: Any, where: str, *, error: type[Exception] = ViewerInputError) -> str:
    """``value`` if it is a name that may become a path component (:data:`NAME_PATTERN`, not ``.``
    nor ``..``): the rule of ``memdiet run --name``. Anything else is refused, not normalised."""
    if not isinstance(value, str):
        raise error(f"{where}: expected a name, got {type(value).__name__}")
    if not NAME_PATTERN.fullmatch(value) or value in (".", ".."):
        raise error(f"{where}: {shown(value)} is not a name (letters, digits and _.+- only, as --name; "
                    f"it names files and folders); refused")
    return value


def _magnitude(value: int | float) -> str:
    """A number as an error line shows it: whole when short, else its sign and size in bits."""
    if isinstance(value, int) and abs(value) >= 10**24:
        return f"{'-' if value < 0 else ''}a {value.bit_length()}-bit number"
    return repr(value)
