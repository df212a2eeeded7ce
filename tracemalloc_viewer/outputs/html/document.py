"""Writes a built :class:`~.page.Page` as one self-contained HTML file into a text stream.

Rules: the file needs no network: plotly.js (``plotly.offline.get_plotlyjs()``, shipped by the plotly
package) is inlined once, the page's data is one JSON block, its script and style are inlined
(:mod:`.assets`, ``static/``). Text from the inputs (site names, commands, notes) is escaped here; the data block
cannot close its ``<script>`` element (every ``<`` in it is written ``\\u003c``). What the file is
called and where it goes is the caller's business: this module only writes into the stream it is
handed.
"""

from __future__ import annotations

import functools
import html
import json
from typing import Any, TextIO

from .assets import COMPARE_PANEL, CURVE_HELP, SCRIPT, SITES_PANEL, STYLE
from .page import Page
from .tree import write_tree


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js as the installed plotly package ships it (minified, MIT licence header kept)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def fixed_bytes() -> int:
    """Bytes every page carries whatever its data: plotly.js, the page's script and style."""
    return len(plotly_js().encode()) + len(f"\n{SCRIPT}".encode()) + len(f"\n{STYLE}".encode())


def script_json(data: Any) -> str:
    """``data`` as JSON inside a ``<script>`` element: the one escaping for that language. Every ``<``
    is written ``\\u003c`` (so no ``</script>`` nor ``<!--`` in a name read from a file ends the
    element), and NaN or Infinity is an error (``allow_nan=False``): the readers refuse them, and a
    page whose JSON held one would draw nothing."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")


def render(page: Page, stream: TextIO) -> None:
    """Write ``page`` into ``stream`` as one HTML document."""
    data = page.data
    escape = html.escape
    write = stream.write
    write("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          "<meta name=\"generator\" content=\"tracemalloc_viewer html\">\n"
          "<link rel=\"icon\" href=\"data:,\">\n"
          f"<title>{escape(page.title)}</title>\n<style>\n{STYLE}</style>\n")
    write("<script>")
    write(plotly_js())
    write("</script>\n</head>\n<body>\n")
    write(f"<header>\n<h1>{escape(page.title)}</h1>\n")
    for line in data.get("intro", ()):
        write(f"<p class=\"intro\">{_inline(line)}</p>\n")
    sections = data.get("sections", ())
    links = [("curves", "Memory over time"), ("sites", "Sites"), ("compare", "Compare")]
    links += [(section["anchor"], section["title"]) for section in sections]
    links.append(("page-notes", "What this page keeps"))
    write("<nav>" + " ".join(f"<a href=\"#{escape(anchor)}\">{escape(title)}</a>" for anchor, title in links)
          + "</nav>\n</header>\n<main>\n")
    _curves(data, write)
    write(SITES_PANEL)
    write(COMPARE_PANEL)
    for section in sections:
        _section(section, write)
    write("<section id=\"page-notes\">\n<h2>What this page keeps</h2>\n<ul>\n")
    for note in data.get("notes", ()):
        write(f"<li>{_inline(note)}</li>\n")
    write("</ul>\n</section>\n</main>\n")
    write("<script type=\"application/json\" id=\"memdiet-data\">")
    write(script_json(data))
    write("</script>\n<script>\n")
    write(SCRIPT)
    write("</script>\n</body>\n</html>\n")


def _curves(data: dict[str, Any], write) -> None:
    write("<section id=\"curves\">\n<h2>Memory over time</h2>\n"
          f"<p class=\"help\">{CURVE_HELP}</p>\n")
    for number, run in enumerate(data.get("runs", ())):
        write(f"<article class=\"run\" id=\"run-{number}\">\n")
        write(f"<div class=\"curve\" id=\"{html.escape(run['div'])}\"></div>\n")
        write(f"<p class=\"command\"><b>{html.escape(run['source'])}</b>: <code>{html.escape(run['command'])}</code></p>\n")
        notes = list(run.get("notes", ())) + [f"left out: {item}" for item in run.get("dropped", ())]
        if notes:
            write("<details class=\"notes\"><summary>notes, and what this curve leaves out "
                  f"({len(run.get('dropped', ()))})</summary>\n<ul>\n")
            for note in notes:
                write(f"<li>{_inline(note)}</li>\n")
            write("</ul>\n</details>\n")
        write("</article>\n")
    write("</section>\n")


def _section(section: dict[str, Any], write) -> None:
    write(f"<section class=\"extra\" id=\"{html.escape(section['anchor'])}\">\n<h2>{html.escape(section['title'])}</h2>\n")
    for line in section.get("text", ()):
        write(f"<p>{_inline(line)}</p>\n")
    if section.get("figure") is not None:
        write(f"<div class=\"figure\" id=\"{html.escape(section['div'])}\"></div>\n")
    table = section.get("table")
    if table:
        headers, rows = table
        write("<table class=\"static\"><thead><tr>" + "".join(f"<th>{html.escape(str(cell))}</th>" for cell in headers)
              + "</tr></thead><tbody>\n")
        for row in rows:
            write("<tr>" + "".join(f"<td>{_inline(str(cell))}</td>" for cell in row) + "</tr>\n")
        write("</tbody></table>\n")
    if section.get("tree"):
        write_tree(section["tree"], write)
    write("</section>\n")


def _inline(text: str) -> str:
    """Escaped text with `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{part}</code>" if number % 2 else part for number, part in enumerate(parts))
