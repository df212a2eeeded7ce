"""Output: ``html``, one self-contained interactive page (plotly, opened from disk, no network) for one
or more captures: a massif-style curve per capture (stacked sites, totals and RSS as lines, phases
shaded; hover, legend toggles, zoom), the sites table at an instant or window, and a comparison of
any two moments (of one capture or of two), computed as ``diff`` computes it.

- :mod:`.page`: the inputs (:class:`Capture`, :class:`Phase`, :class:`Line`, :class:`Section`), the
  size budget and the page limit;
- :mod:`.build`: the page's data from series (every figure computed in Python);
- :mod:`.document`: the HTML file, written into a stream (plotly.js inlined once);
- :mod:`.assets`: the page's style, panels and script;
- :mod:`.inputs`: what ``view html`` makes of the files it is given.

Python use::

    from tracemalloc_viewer.outputs import html
    page = html.build([html.capture_of(["reports/runs/<run>"])], "my page")
    with open("page.html", "w", encoding="utf-8") as stream:
        html.render(page, stream)

plotly is imported only when a page is built. Other programs (memdiet's report) put their own
captures and sections on the same page with :func:`build`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ...units import tracemalloc_bytes
from .build import build_page, byte_ticks, downsample
from .document import fixed_bytes, plotly_js, render
from .inputs import DETAIL, capture_of
from .page import PAGE_LIMIT_BYTES, Budget, Capture, Line, Page, Phase, Section

__all__ = ["Budget", "Capture", "DETAIL", "FORMATS", "Line", "PAGE_LIMIT_BYTES", "Page", "Phase", "Section", "build", "byte_ticks",
           "capture_of", "downsample", "plotly_js", "render", "summary", "write_file"]

FORMATS = (".html", ".htm")


def build(captures: Sequence[Capture], title: str, intro: Sequence[str] = (), sections: Sequence[Section] = (),
          budget: Budget | None = None, limit: int = PAGE_LIMIT_BYTES, short_names: bool = False,
          default_kind: str = "peak") -> Page:
    """The page of ``captures`` and ``sections``, kept under ``limit`` bytes (see :func:`.build.build_page`)."""
    return build_page(captures, title, intro, sections, budget, limit, fixed_bytes(), short_names, default_kind)


def write_file(page: Page, path: Path) -> int:
    """Write ``page`` to ``path`` (a name the command chose); return its size in bytes."""
    with open(path, "w", encoding="utf-8") as stream:
        render(page, stream)
    return Path(path).stat().st_size


def summary(page: Page, path: Path) -> str:
    """One line for the command to print: where the page went, its size, what it holds."""
    runs = page.data["runs"]
    size = Path(path).stat().st_size
    return (f"wrote {path}: {tracemalloc_bytes(size)}, {len(runs)} capture{'s' if len(runs) != 1 else ''}, "
            f"{len(page.data['pairs']):,} comparisons; open it in a browser (no network needed)\n")
