"""Renderers of experiment results: each reads run folders (never a live run) and writes files.

- :mod:`.massif_curve`: one run's heap by allocation site over time, with RSS (PNG, SVG);
- :mod:`.comparison`: idle, held and loaded memory and bytes per slot across layouts (PNG, SVG);
- :mod:`.anatomy_chart`: each layout's slot split into parts, beside its C size (PNG, SVG);
- :mod:`.report_md`: ``index.md`` tying them together, with the summary and reduction tables.

Shared: :mod:`.selection` (which run each figure comes from), :mod:`.units` (human-readable
figures), :mod:`.figures` (matplotlib without pyplot, phase shading, atomic saving). matplotlib is
imported only when a chart is drawn.
"""

from .anatomy_chart import render_anatomy
from .comparison import render_comparison
from .massif_curve import render_massif_curve
from .report_md import build_report, reduction_table

__all__ = ["render_anatomy", "render_comparison", "render_massif_curve", "build_report", "reduction_table"]
