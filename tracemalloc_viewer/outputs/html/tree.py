"""An expandable tree on the interactive page (a retainers tree: who keeps what), as nested HTML
``<details>`` with no script: each node a label, its hover text (bytes, count, allocation line) and
its children.

Rules: the page's data holds the tree as plain dicts (``label``, ``hover``, ``children``), depth and
node count bounded (:data:`MAX_DEPTH`, :data:`MAX_NODES`: a deeper or larger tree is cut, and says so);
every text is escaped when written.
"""

from __future__ import annotations

import html
from typing import Any, Callable

MAX_DEPTH = 12
MAX_NODES = 2000


def tree_data(nodes: Any) -> list[dict[str, Any]]:
    """``nodes`` (dicts with ``label``, ``hover``, ``children``) as the page keeps them, bounded."""
    budget = [MAX_NODES]

    def copy(items: Any, depth: int) -> list[dict[str, Any]]:
        out = []
        for item in items or ():
            if budget[0] <= 0 or depth > MAX_DEPTH:
                out.append({"label": "(cut: the tree is larger than the page keeps)", "hover": "", "children": []})
                break
            budget[0] -= 1
            out.append({"label": str(item.get("label", "")), "hover": str(item.get("hover", "")),
                        "children": copy(item.get("children"), depth + 1)})
        return out

    return copy(nodes, 1)


def write_tree(nodes: list[dict[str, Any]], write: Callable[[str], Any], open_depth: int = 1, depth: int = 1) -> None:
    """Nested ``<details>`` (open down to ``open_depth``), a leaf as a plain line."""
    write("<ul class=\"tree\">\n")
    for node in nodes:
        label, hover = html.escape(node["label"]), html.escape(node["hover"], quote=True)
        if node["children"]:
            write(f"<li><details{' open' if depth <= open_depth else ''}><summary title=\"{hover}\">{label}</summary>\n")
            write_tree(node["children"], write, open_depth, depth + 1)
            write("</details></li>\n")
        else:
            write(f"<li><span title=\"{hover}\">{label}</span></li>\n")
    write("</ul>\n")
