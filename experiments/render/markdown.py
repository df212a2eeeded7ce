"""Markdown tables: the one writer every report uses (the study report, the bench, regress, notebooks).

Rules: one line per row, cells given as text (anything else is ``str()``-ed), ``|`` between them;
``align`` has one letter per column, ``l`` or ``r``, and defaults to the first column left and the
others right (a label, then figures). ``padded`` pads every column to its widest cell, so the table
reads as well as plain text in a terminal as rendered.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]], align: str | None = None, *,
          padded: bool = False) -> list[str]:
    """The lines of a markdown table of ``header`` and ``rows`` (see the module's rules)."""
    header = [str(cell) for cell in header]
    body = [[str(cell) for cell in row] for row in rows]
    align = align or "l" + "r" * (len(header) - 1)
    if not padded:
        rule = ["---:" if a == "r" else ":---" for a in align]
        return ["| " + " | ".join(row) + " |" for row in [header, rule, *body]]
    widths = [max(len(cell) for cell in column) for column in zip(header, *body)]
    rule = [("-" * (w - 1) + ":") if a == "r" else (":" + "-" * (w - 1)) for w, a in zip(widths, align)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align)) + " |"

    return [line(header), "| " + " | ".join(rule) + " |", *(line(row) for row in body)]
