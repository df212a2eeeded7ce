"""What ``view html`` puts on a page for the files it is given: each input (a dump series, a memray
capture, a massif.out file, a memdiet run folder: whatever a registered source reads) becomes one
:class:`~.page.Capture`.

Rules: the series is what :func:`~...sources.open_series` returns, as for every other command. A
memdiet run folder also gives its phases (``result.json``) and, when its curve is the heap, its RSS
(``rss.csv``), read with the run-folder source's own readers; a curve read from ``rss.csv`` is that
RSS, drawn without sites. Nothing else is guessed about an input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ...model import Detail, Series
from ...sources import LoadOptions, memdiet_run, open_series
from .page import Capture, Line, Phase

#: Which samples a page asks its sources to give sites for: all of them, thinned to about this many.
DETAIL = Detail(every=1, at_most=150)
RSS_COLOUR = "#000000"


def capture_of(paths: Sequence[Path], time_mode: str = "auto") -> Capture:
    """The capture of one input (``paths``: a dump series, or one file or folder)."""
    paths = [Path(path) for path in paths]
    series = open_series(paths, LoadOptions(DETAIL, time_mode))
    name = _name(paths, series)
    if memdiet_run.claims(paths):
        return _run_folder(paths[0], series)
    return Capture(series, name)


def _name(paths: Sequence[Path], series: Series) -> str:
    first = paths[0].name or str(paths[0])
    where = first if len(paths) == 1 else f"{first} (+{len(paths) - 1} more)"
    return f"{where} · {series.source}"


def _run_folder(path: Path, series: Series) -> Capture:
    folder = path if path.is_dir() else path.parent
    document = memdiet_run._read_result(folder)
    phases = [Phase(str(phase["name"]), float(phase["start_s"]), float(phase["end_s"]))
              for phase in document.get("phases") or []
              if isinstance(phase, dict) and isinstance(phase.get("start_s"), (int, float))
              and isinstance(phase.get("end_s"), (int, float))]
    name = f"{memdiet_run.subject_name(document)} · {document.get('probe', '?')} · {folder.name}"
    from_rss = series.source.endswith(memdiet_run.RSS_FILE)
    lines: list[Line] = []
    if from_rss:
        lines.append(Line("RSS (whole process)", [s.time_s for s in series.samples],
                          [s.total_bytes for s in series.samples], color=RSS_COLOUR))
    else:
        rss = memdiet_run._read_curve(folder / memdiet_run.RSS_FILE, memdiet_run.RSS_COLUMNS)
        rss = [(time_s, size) for time_s, size in rss if size > 0]  # 0: read after the server exited
        if rss:
            lines.append(Line("RSS (whole process)", [time_s for time_s, _ in rss], [size for _, size in rss],
                              color=RSS_COLOUR))
    return Capture(series, name, phases=phases, lines=lines, total_line=None if from_rss else "heap total",
                   bands=not from_rss, time_label="seconds since the server started")
