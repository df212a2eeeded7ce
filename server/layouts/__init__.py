"""Connection-state layouts: one module each, all behind :class:`~server.layouts.base.ConnectionTable`.

Ordered as the study goes, each one step from the one before (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from .base import ConnectionTable
from .bitfields import BitfieldsTable
from .naive import NaiveTable
from .nofd import NofdTable
from .packed import PackedTable
from .split import SplitTable

#: Layout name -> table class, in the order of the study.
LAYOUTS: dict[str, type[ConnectionTable]] = {
    cls.name: cls for cls in (NaiveTable, SplitTable, BitfieldsTable, NofdTable, PackedTable)
}


def make_table(layout: str, max_conns: int) -> ConnectionTable:
    """Build and preallocate the connection table of ``layout`` with ``max_conns`` slots."""
    try:
        cls = LAYOUTS[layout]
    except KeyError:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}") from None
    return cls(max_conns)


__all__ = ["LAYOUTS", "make_table", "ConnectionTable"]
