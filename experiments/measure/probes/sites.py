"""Allocation-site labels: ``file:line (function)``, the same for every probe.

Rules: a label names the allocating line relative to the repository (or to site-packages) and the
innermost function holding it. tracemalloc records no function names, so they are looked up in the
source (parsed once per file); memray's own names are used when it gives them.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from ...paths import REPO_ROOT

#: Allocation sites kept per detailed snapshot; the rest is summed into ``(other)``.
TOP_SITES = 30


@functools.lru_cache(maxsize=512)
def _functions_in(filename: str) -> tuple[tuple[int, int, str], ...]:
    """(first line, last line, qualified name) of every function in ``filename``, innermost last."""
    try:
        tree = ast.parse(Path(filename).read_text(), filename)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return ()
    spans: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    spans.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return tuple(spans)


def function_at(filename: str, lineno: int) -> str | None:
    """Qualified name of the innermost function of ``filename`` containing ``lineno``, if known."""
    best = None
    for first, last, name in _functions_in(filename):
        if first <= lineno <= last and (best is None or first >= best[0]):
            best = (first, name)
    if best is None:
        return "<module>" if _functions_in(filename) or Path(filename).exists() else None
    return best[1]


def short_path(filename: str) -> str:
    """``filename`` relative to the repository or to site-packages, for readable site labels."""
    path = Path(filename)
    parts = path.parts
    # An installed package first (a virtualenv may live inside the repository): uvicorn/server.py.
    if "site-packages" in parts:
        return "/".join(parts[len(parts) - parts[::-1].index("site-packages"):])
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except (ValueError, OSError):
        pass
    if "lib" in parts:
        return "/".join(parts[len(parts) - parts[::-1].index("lib"):])
    return filename


def site_label(filename: str, lineno: int, function: str | None = None) -> str:
    """``file:line (function)`` for an allocation site; the function is looked up when not given."""
    function = function or function_at(filename, lineno)
    label = f"{short_path(filename)}:{lineno}"
    return f"{label} ({function})" if function else label
