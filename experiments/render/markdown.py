"""Markdown: the one table writer every report uses (the study report, the bench, regress, notebooks)
and the one escaping function for text read from files (:func:`code`).

Rules: text that came from a file or a folder's name (a run's folder, a site label, a part's name)
goes into Markdown only through :func:`code`, so that no backtick closes the span and no HTML in a
name becomes live; a table cell's ``|`` is escaped by :func:`table`. One line per row, cells given as text (anything else is ``str()``-ed), ``|`` between them;
``align`` has one letter per column, ``l`` or ``r``, and defaults to the first column left and the
others right (a label, then figures). ``padded`` pads every column to its widest cell, so the table
reads as well as plain text in a terminal as rendered.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

_BACKTICKS = re.compile(r"`+")


def code(text: Any) -> str:
    """``text`` as one inline code span, whatever it holds: the fence is one backtick longer than
    the longest run of backticks inside (CommonMark), padded with a space when the text starts or
    ends with one; characters that are not printable (a newline, a control character) are written as
    escapes (``\\n``), so the span stays on one line. Inside a code span, ``<`` and ``&`` are text."""
    text = "".join(character if character.isprintable() else ascii(character)[1:-1] for character in str(text))
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text[:1] in ("`", " ") or text[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]], align: str | None = None, *,
          padded: bool = False) -> list[str]:
    """The lines of a markdown table of ``header`` and ``rows`` (see the module's rules)."""
    # GFM splits a row at every unescaped |, inside code spans too.
    header = [_cell(cell) for cell in header]
    body = [[_cell(cell) for cell in row] for row in rows]
    align = align or "l" + "r" * (len(header) - 1)
    if not padded:
        rule = ["---:" if a == "r" else ":---" for a in align]
        return ["| " + " | ".join(row) + " |" for row in [header, rule, *body]]
    widths = [max(len(cell) for cell in column) for column in zip(header, *body)]
    rule = [("-" * (w - 1) + ":") if a == "r" else (":" + "-" * (w - 1)) for w, a in zip(widths, align)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align)) + " |"

    return [line(header), "| " + " | ".join(rule) + " |", *(line(row) for row in body)]


def _cell(value: Any) -> str:
    return re.sub(r"(?<!\\)\|", r"\\|", str(value))
