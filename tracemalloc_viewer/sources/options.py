"""What an output asks of a source: which samples need their sites, and how dump times are taken.

Its own module so that the sources (which take these options) and the package that picks a source
import it from below, with no cycle through ``sources/__init__``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import Detail

#: How a series' times are taken, for sources that have a choice (tracemalloc dumps).
TIME_MODES = ("auto", "sidecar", "mtime", "index")


@dataclass(frozen=True)
class LoadOptions:
    """What the output needs from a source.

    ``detail``: which samples need their allocation sites (the peak always does).
    ``time_mode``: ``auto`` (sidecar, else mtime, else index) or one of them forced.
    """

    detail: Detail = field(default_factory=Detail)
    time_mode: str = "auto"

    def __post_init__(self) -> None:
        if self.time_mode not in TIME_MODES:
            raise ValueError(f"unknown time mode {self.time_mode!r}")
