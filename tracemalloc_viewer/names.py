"""Function names for frames that have none (tracemalloc records only file and line), and the one
key a site has whatever its source (:class:`FileKeys`, :func:`chosen_names`).

The name is looked up in the source file as it is now: the innermost ``def`` or ``class`` whose
lines contain the frame's line, as a qualified name (``Server.run``), ``<module>`` outside any, or
None when the file cannot be read or parsed (frozen modules, ``<string>``, deleted files; and what
is not a regular ``.py`` file of at most 4 MiB reached through no symlink: a dump may name any path). A
comprehension or lambda on the line is not told apart from its enclosing function.
"""

from __future__ import annotations

import ast
import bisect
import functools
import io
import re
import tokenize
from pathlib import Path
from typing import Callable, Iterable

from .errors import ViewerInputError
from .model import Frame
from .untrusted import SOURCE_MAX_BYTES, read_bytes


def function_name(frame: Frame) -> str | None:
    """``frame.function`` if the tracer recorded it, else the name found in the source, else None."""
    if frame.function is not None:
        return frame.function
    if frame.lineno <= 0:
        return None
    scopes = _scopes(frame.filename)
    if scopes is None:
        return None
    starts, spans = scopes
    best = "<module>"
    # Scopes are sorted by first line; the innermost containing one is the last that still contains it.
    for position in range(bisect.bisect_right(starts, frame.lineno) - 1, -1, -1):
        first, last, name = spans[position]
        if first <= frame.lineno <= last:
            best = name
            break
    return best


@functools.lru_cache(maxsize=512)
def _scopes(filename: str) -> tuple[list[int], list[tuple[int, int, str]]] | None:
    # A frame names any path a dump's author chose: only a regular ``.py`` file (no device, FIFO,
    # symlink) of at most SOURCE_MAX_BYTES is read, and a source too deep to parse is no source.
    if not filename.endswith(".py"):
        return None
    try:
        data = read_bytes(Path(filename), SOURCE_MAX_BYTES)
        encoding, _lines = tokenize.detect_encoding(io.BytesIO(data).readline)
        tree = ast.parse(data.decode(encoding), filename=filename)
        spans = _spans(tree)
    except (ViewerInputError, SyntaxError, ValueError, LookupError, UnicodeDecodeError, RecursionError, MemoryError):
        return None
    return [span[0] for span in spans], spans


def _spans(tree: ast.AST) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every def and class in ``tree``, by first line."""
    spans: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                spans.append((child.lineno, child.end_lineno or child.lineno, name))
                inner = f"{name}.<locals>." if not isinstance(child, ast.ClassDef) else f"{name}."
                visit(child, inner)
            else:
                visit(child, prefix)

    visit(tree, "")
    # Nested scopes start after their parents, so the last span starting at or before a line that
    # still contains it is the innermost.
    spans.sort(key=lambda span: span[0])
    return spans


# --- one key per site, whatever the source ---------------------------------------------------------
#: Folders after which an installed package's path reads the same in every environment.
_PACKAGE_FOLDERS = ("site-packages", "dist-packages")
#: The standard library's folder (``.../lib/python3.11/``): its paths are kept from this folder on.
_STDLIB_FOLDER = re.compile(r"^python\d+\.\d+t?$")


def is_pseudo_site(frame: Frame) -> bool:
    """True for a frame that names no line but a share of the heap: ``(other)``, ``(probe)``,
    ``(not attributed)``, ``(whole heap)``, ... (line 0, a label in parentheses)."""
    return frame.lineno == 0 and frame.filename.startswith("(") and frame.filename.endswith(")")


def _is_absolute(filename: str) -> bool:
    return filename.startswith("/") or (len(filename) > 2 and filename[1] == ":" and filename[2] in "\\/")


def _is_relative_path(filename: str) -> bool:
    """A shortened path such as ``server/loop.py`` (not ``<frozen abc>``, ``<string>`` nor ``(other)``)."""
    return bool(filename) and not _is_absolute(filename) and filename[0] not in "<("


class FileKeys:
    """How the file names of sites from several sources are keyed so that one file has one name.

    Tracers and recorders spell a file differently: tracemalloc and memray record the absolute path
    the code was loaded from, a memdiet run's ``sites.csv`` holds it relative to the project, or
    after ``site-packages``, or from the standard library's ``pythonX.Y`` folder on. When the names
    given hold both forms, an absolute path is brought to the short form: after its last
    ``site-packages``/``dist-packages`` folder; else relative to the longest *root* it lies under,
    a root being what an absolute name has before a short name it ends with (``/repo/`` from
    ``/repo/server/loop.py`` and ``server/loop.py``); else from its ``pythonX.Y`` folder after a
    ``lib`` folder; else it stays as it is. Names of one form only (every tracemalloc dump) are kept
    as they are, so two dumps still compare exactly as tracemalloc compares them.

    A root is taken from the names themselves: a short name that is a bare file name (``app.py``)
    can make two different files under two roots one key; memdiet's short names hold a folder.
    """

    def __init__(self, filenames: Iterable[str]) -> None:
        names = set(filenames)
        short = [name for name in names if _is_relative_path(name)]
        absolute = [name.replace("\\", "/") for name in names if _is_absolute(name)]
        #: False when every path has one form: then :meth:`key` changes nothing.
        self.shortening = bool(short) and bool(absolute)
        roots: set[str] = set()
        if self.shortening:
            short_by_base: dict[str, list[str]] = {}
            for name in short:
                short_by_base.setdefault(name.rsplit("/", 1)[-1], []).append(name)
            for path in absolute:
                for name in short_by_base.get(path.rsplit("/", 1)[-1], ()):
                    if path.endswith("/" + name):
                        roots.add(path[: len(path) - len(name)])
        #: Absolute folders (ending in ``/``) whose files are keyed relative to them, longest first.
        self.roots = tuple(sorted(roots, key=len, reverse=True))
        self._keys: dict[str, str] = {}

    def key(self, filename: str) -> str:
        """The name ``filename`` is keyed by (see the class docstring)."""
        if not self.shortening or not _is_absolute(filename):
            return filename
        done = self._keys.get(filename)
        if done is None:
            done = self._keys[filename] = self._shorten(filename.replace("\\", "/"))
        return done

    def _shorten(self, path: str) -> str:
        parts = path.split("/")
        for marker in _PACKAGE_FOLDERS:
            if marker in parts[:-1]:
                return "/".join(parts[len(parts) - parts[::-1].index(marker):])
        for root in self.roots:
            if path.startswith(root):
                return path[len(root):]
        for index in range(len(parts) - 2, 0, -1):
            if parts[index - 1] == "lib" and _STDLIB_FOLDER.match(parts[index]):
                return "/".join(parts[index:])
        return path


def chosen_names(frames: Iterable[Frame], key: Callable[[str], str] | None = None) -> dict[tuple[str, int], str | None]:
    """One function name per site (``(key(file), line)``, ``key`` as :meth:`FileKeys.key`; the file
    itself without one) among ``frames``: the same name whatever source a frame came from.

    The name is the one found in the source file as it is now (:func:`function_name`) through any
    absolute path among the frames; else one a tracer recorded (memray's ``<listcomp>``, the name in
    a ``sites.csv``), the smallest when they differ; else None. tracemalloc records no names, and
    memray and memdiet's probe name a line differently: only the source gives every frame of a
    line the same name."""
    looked_up: dict[tuple[str, int], str] = {}
    recorded: dict[tuple[str, int], str] = {}
    tried: set[tuple[str, int]] = set()
    for frame in frames:
        site = (key(frame.filename) if key else frame.filename, frame.lineno)
        if frame.function is not None:
            known = recorded.get(site)
            if known is None or frame.function < known:
                recorded[site] = frame.function
        if frame.lineno > 0 and site not in looked_up and _is_absolute(frame.filename) \
                and (frame.filename, frame.lineno) not in tried:
            tried.add((frame.filename, frame.lineno))
            name = function_name(Frame(frame.filename, frame.lineno))
            if name is not None:
                looked_up[site] = name
    names: dict[tuple[str, int], str | None] = dict(recorded)
    names.update(looked_up)
    return names
