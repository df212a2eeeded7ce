"""Sources: each module turns one kind of input into a :class:`~tracemalloc_viewer.model.Series`.

A source module provides:

``NAME``
    a short name (``tracemalloc``, ``memray``), shown in outputs;
``claims(paths: Sequence[Path]) -> bool``
    True if the paths are this source's input (a cheap look at names and first bytes, no parsing);
``load(paths: Sequence[Path], options: LoadOptions) -> Series``
    read them, raising :class:`~tracemalloc_viewer.errors.ViewerInputError` on bad input.

:func:`open_series` asks the registered sources in order and loads with the first that claims the
paths. Add a source with :func:`register`. ``memdiet_run`` reads memdiet run folders (it claims only a
folder holding a ``result.json``, or that file); ``massif_out`` valgrind's massif.out files (one, or
one per process of a program).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Sequence

from ..errors import ViewerInputError
from ..model import Series
from . import massif_out, memdiet_run, memray_capture, tracemalloc_dumps
from .options import TIME_MODES, LoadOptions

__all__ = ["TIME_MODES", "LoadOptions", "open_series", "register", "sources"]

_SOURCES: list[ModuleType] = [memdiet_run, memray_capture, tracemalloc_dumps, massif_out]


def register(source: ModuleType, *, first: bool = True) -> None:
    """Add a source module (see this package's docstring); ``first`` makes it win over the others."""
    if source in _SOURCES:
        return
    if first:
        _SOURCES.insert(0, source)
    else:
        _SOURCES.append(source)


def sources() -> tuple[ModuleType, ...]:
    return tuple(_SOURCES)


def open_series(paths: Sequence[str | Path], options: LoadOptions | None = None) -> Series:
    """Load ``paths`` as one series with the first source that claims them.

    Raises :class:`ViewerInputError` for an empty list, missing files, input no source claims,
    and whatever the source finds wrong with the files.
    """
    options = options or LoadOptions()
    paths = [Path(path) for path in paths]
    if not paths:
        raise ViewerInputError("empty series: no snapshot or capture files given")
    for path in paths:
        if not path.exists():
            raise ViewerInputError(f"{path}: no such file or directory")
    for source in _SOURCES:
        if source.claims(paths):
            series = source.load(paths, options)
            if not series.samples:
                raise ViewerInputError(f"empty series: {_name(paths)} holds no samples")
            return series
    if len(paths) == 1 and paths[0].is_dir():
        raise ViewerInputError(f"{paths[0]}: a directory, and no source reads it (give the dump files)")
    if len(paths) == 1:
        raise ViewerInputError(
            f"{paths[0]}: not a tracemalloc snapshot dump, a memray capture nor a massif.out file (no source reads it)")
    raise ViewerInputError(
        f"{_name(paths)}: no source reads these files together (give tracemalloc dumps, one memray capture, or massif.out files)")


def _name(paths: Sequence[Path]) -> str:
    return str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"
