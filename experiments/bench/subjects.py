"""What the bench measures: each memdiet layout and each Python peer. The subjects themselves (how
each is started, found and named) are :mod:`experiments.measure.subjects`, which ``memdiet run`` and
``matrix`` use too: one way to start, find, measure and stop a server. This module says which of them
the bench takes and which it divides by.
"""

from __future__ import annotations

from ..measure.subjects import MEMDIET_KEEP_ALIVE_S, PEERS, MemdietLayout, Peer, Subject
from server.layouts import LAYOUTS

#: Peers the ratios are computed against, in the order they are shown.
BASELINES = ("uvicorn", "asyncio")


def layout_subjects(names: list[str] | None = None) -> list[MemdietLayout]:
    """memdiet layouts to measure, in the order of the study."""
    return [MemdietLayout(name) for name in (names or list(LAYOUTS))]


INSTALL_HINT = "install the peers with: .venv/bin/pip install -e '.[bench]' (make bench does)"

__all__ = ["BASELINES", "INSTALL_HINT", "MEMDIET_KEEP_ALIVE_S", "PEERS", "MemdietLayout", "Peer", "Subject",
           "layout_subjects"]
