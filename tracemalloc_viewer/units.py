"""Number formatting shared by the outputs: one function per rounding rule, each written here only."""

from __future__ import annotations

import os

from .model import Frame
from .names import function_name


def tracemalloc_bytes(size: float, signed: bool = False) -> str:
    """``size`` bytes in binary units, rounded as tracemalloc prints them: ``512 B``, ``42.5 KiB``,
    ``1625 KiB``, ``+12.5 MiB`` (three significant digits below 100 of a unit, whole units above)."""
    sign = "+" if signed and size > 0 else ""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 100 and unit != "B":
            return f"{sign}{size:.1f} {unit}"
        if abs(size) < 10 * 1024 or unit == "TiB":
            return f"{sign}{size:.0f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def exact_bytes(size: float, signed: bool = False) -> str:
    """``size`` in whole bytes, as ``--bytes`` asks: ``4096 B``, ``+512 B``, ``-8 B`` with ``signed``."""
    return f"{int(size):+d} B" if signed else f"{int(size):d} B"


def share(size: float, total: float) -> str:
    """``size`` as a percentage of ``total`` with one decimal (``12.5%``); ``-`` when ``total`` is 0."""
    return f"{100 * size / total:.1f}%" if total else "-"


def commify(value: int) -> str:
    """``1234567`` -> ``1,234,567`` (as ms_print prints byte counts)."""
    return f"{value:,}"


def frame_label(frame: Frame, names: bool = True) -> str:
    """``file:line (function)`` for a line, ``file`` for a whole file (lineno 0)."""
    if frame.lineno == 0:
        return frame.filename
    text = f"{frame.filename}:{frame.lineno}"
    if names:
        name = function_name(frame)
        if name:
            text += f" ({name})"
    return text


def short_path(filename: str, parts: int = 2) -> str:
    """The last ``parts`` components of a path, for chart legends."""
    pieces = filename.replace(os.sep, "/").split("/")
    return "/".join(pieces[-parts:])


# --- ms_print's axis labels (ms_print's max_label_2, B_max_label, t_max_label) -------------------
def ms_print_label(value: float, scaled: float) -> str:
    """Five characters: an integer below 1000 of the base unit, else 3 significant decimals."""
    if value < 1000:
        return f"{int(value):5d}"
    if scaled < 10:
        return f"{scaled:5.3f}"
    if scaled < 100:
        return f"{scaled:5.2f}"
    return f"{scaled:5.1f}"


def bytes_axis_label(size: int) -> tuple[str, str]:
    """(label, unit) for a byte count, dividing by 1024 while the number is 1000 or more."""
    scaled = float(size)
    unit = "B"
    for next_unit in ("KB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"):
        if scaled < 1000:
            break
        scaled /= 1024
        unit = next_unit
    return ms_print_label(size, scaled), unit


def seconds_axis_label(seconds: float) -> tuple[str, str]:
    """(label, unit) for a duration in seconds: five characters and ``s``."""
    if seconds < 10:
        text = f"{seconds:5.3f}"
    elif seconds < 100:
        text = f"{seconds:5.2f}"
    elif seconds < 1000:
        text = f"{seconds:5.1f}"
    else:
        text = f"{seconds:5.0f}"
    return text, "s"
