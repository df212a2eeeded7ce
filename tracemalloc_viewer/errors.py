"""The one exception the viewer raises for bad input, how a command line prints what a file held
(:func:`tolerate_any_terminal`), and how the sources sniff a file."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path


class ViewerInputError(Exception):
    """Input the viewer cannot use: a file that is not a capture, a truncated one, an empty series,
    a bad option value. The message is one line that names the file (when there is one) and the
    fault; the command line prints it and exits with status 2."""


def first_bytes(path: Path, count: int) -> bytes:
    """The first ``count`` bytes of ``path`` (fewer if it is shorter), or b"" if it cannot be read:
    enough for a source to tell whether a file is its kind. Only a regular file is opened (a FIFO
    or a device could block or never end); a symlink is looked at here, and refused when read."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return b""
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            return os.read(fd, count)
        finally:
            os.close(fd)
    except OSError:
        return b""


def tolerate_any_terminal() -> None:
    """Make stdout and stderr escape (``\\xff``, ``\\udcff``) what their encoding cannot write, so a
    name read from a file (a lone surrogate a pickle may hold, a folder name that is not UTF-8)
    cannot make printing fail on a strict UTF-8 terminal."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
