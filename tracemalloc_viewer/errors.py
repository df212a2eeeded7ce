"""The one exception the viewer raises for bad input, and the probe sources use to sniff a file."""

from __future__ import annotations

from pathlib import Path


class ViewerInputError(Exception):
    """Input the viewer cannot use: a file that is not a capture, a truncated one, an empty series,
    a bad option value. The message is one line that names the file (when there is one) and the
    fault; the command line prints it and exits with status 2."""


def first_bytes(path: Path, count: int) -> bytes:
    """The first ``count`` bytes of ``path`` (fewer if it is shorter), or b"" if it cannot be read:
    enough for a source to tell whether a file is its kind."""
    try:
        with open(path, "rb") as file:
            return file.read(count)
    except OSError:
        return b""
