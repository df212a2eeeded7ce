"""What the interactive page is made of, as plain data: its inputs (:class:`Capture`, :class:`Phase`,
:class:`Line`, :class:`Section`), its size budget (:class:`Budget`) and the built page (:class:`Page`).

Rules: nothing here computes or renders. A page is built once (:mod:`.build`) into JSON-ready
dictionaries and then written by :mod:`.document`; the budget is the one place that says how much of a
capture a page keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from ...model import Series

#: Bytes the page may weigh in all (plotly.js, about 4.6 MiB, included): the size stated in
#: docs/VIEWER.md. The builder shrinks its budget until the page's data fits under it.
PAGE_LIMIT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Phase:
    """A named span of the capture's clock (a memdiet run's scenario phase), shaded on the curve."""

    name: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Line:
    """A series drawn as a line over the stacked sites (RSS, the tracer's own memory, ...)."""

    name: str
    times: Sequence[float]
    values: Sequence[float]
    color: str = "#000000"
    dash: str = "solid"
    width: float = 1.6


@dataclass
class Capture:
    """One capture on the page: a viewer :class:`~tracemalloc_viewer.model.Series` and what the
    caller knows around it.

    ``name``: the title of its curve (``naive · tracemalloc``); ``phases``: spans to shade (their ends
    become compare moments); ``lines``: extra lines; ``total_line``: the legend name of the series'
    own totals drawn as a line (None when the series' total is already one of ``lines``, as for a
    curve read from rss.csv); ``group``: captures are compared across runs only within one group
    (None: one group for all); ``bands``: False to draw no stacked sites (a curve whose only site
    is the whole process); ``notes``: one-line remarks shown under the curve; ``time_label``: the
    x axis' title; ``command``: what was measured, shown instead of the series' own command.
    """

    series: Series
    name: str
    phases: Sequence[Phase] = ()
    lines: Sequence[Line] = ()
    total_line: str | None = "heap total"
    group: str | None = None
    bands: bool = True
    notes: Sequence[str] = ()
    time_label: str | None = None
    command: str | None = None


@dataclass(frozen=True)
class Section:
    """An extra part of the page after the curves, the sites and the comparison: a title, lines of
    text, and a plotly figure (``plotly.graph_objects.Figure``, or its dict) and/or a table
    (column titles, rows of cell texts), and/or an expandable tree."""

    title: str
    text: Sequence[str] = ()
    figure: Any = None
    table: tuple[Sequence[str], Sequence[Sequence[str]]] | None = None
    anchor: str | None = None
    #: An expandable tree after the table (:mod:`.tree`): dicts with ``label``, ``hover``, ``children``.
    tree: Sequence[Any] = ()


@dataclass(frozen=True)
class Budget:
    """How much of each capture the page keeps (see docs/VIEWER.md, "html").

    ``band_sites``: sites stacked on a curve (the rest is one *other* band); ``band_samples``: samples
    with sites drawn per curve; ``line_points``: points per line (min and max of each bucket kept, so
    peaks survive); ``table_samples``: samples per capture whose sites table the page holds;
    ``table_rows``: rows of each table (the rest summed in one row); ``moments``: samples offered for
    comparison in a capture without phases (the peak, the first and last sample with sites, evenly
    spaced ones between); ``diff_rows``: rows of each comparison; ``all_pairs_up_to``: when the
    page has at most this many moments in all, every two are compared, else any two of one capture
    and the same moment (peak, a phase's end) of two captures of one group.
    """

    band_sites: int = 12
    band_samples: int = 150
    line_points: int = 1500
    table_samples: int = 30
    table_rows: int = 40
    moments: int = 10
    diff_rows: int = 30
    all_pairs_up_to: int = 24

    def smaller(self) -> "Budget":
        """The next, tighter budget (each quantity about halved, never below a useful floor)."""
        return replace(self, band_samples=max(40, self.band_samples // 2), line_points=max(300, self.line_points // 2),
                       table_samples=max(8, self.table_samples // 2), table_rows=max(15, self.table_rows // 2),
                       diff_rows=max(15, self.diff_rows // 2), band_sites=max(6, self.band_sites - 2))


@dataclass
class Page:
    """A built page: ``data`` is what the page's script reads (JSON-ready), ``title`` its title."""

    title: str
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)
