"""Function names for frames that have none (tracemalloc records only file and line).

The name is looked up in the source file as it is now: the innermost ``def`` or ``class`` whose
lines contain the frame's line, as a qualified name (``Server.run``), ``<module>`` outside any, or
None when the file cannot be read or parsed (frozen modules, ``<string>``, deleted files). A
comprehension or lambda on the line is not told apart from its enclosing function.
"""

from __future__ import annotations

import ast
import bisect
import functools
import tokenize

from .model import Frame


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
    try:
        with tokenize.open(filename) as file:
            tree = ast.parse(file.read(), filename=filename)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None
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
    return [span[0] for span in spans], spans
