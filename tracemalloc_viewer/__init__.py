"""tracemalloc_viewer: read any program's tracemalloc dumps (and memray captures), print ``top`` and
``diff`` tables, draw a stacked-area ``timeline`` and an ms_print-style text ``chart``, and export
massif.out files for valgrind's ``ms_print`` and massif-visualizer.

Python use::

    from tracemalloc_viewer import open_series, LoadOptions, Detail
    series = open_series(["a.tracemalloc", "b.tracemalloc"])
    series.peak.total_bytes
    snapshot = load_snapshot("phase.tmsnap")   # tracemalloc.Snapshot.load, refusing any pickle that
                                                # names more than tracemalloc's own classes

Command line: ``python -m tracemalloc_viewer --help``. Standard library only, except matplotlib
(``timeline``) and memray (memray captures), imported when used.
"""

from .errors import ViewerInputError
from .model import Detail, Frame, Sample, Series, Site
from .sources import LoadOptions, open_series, register
from .sources.tracemalloc_dumps import load_snapshot

__all__ = ["Detail", "Frame", "LoadOptions", "Sample", "Series", "Site", "ViewerInputError", "load_snapshot",
           "open_series", "register"]
