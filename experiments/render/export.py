"""A run's time series as one table, in CSV or JSON (what ``memdiet export`` writes; the command
itself is :mod:`experiments.cli.export`).

The table merges the run folder's series on one time axis, at full resolution: one row per
distinct time found in ``rss.csv``, ``heap.csv`` or ``sites.csv``, in time order, each cell the
value recorded at exactly that time and blank (CSV) or null (JSON) where its file has no sample
then. Nothing is interpolated. Columns, those of the files the run has:

``time_s``
    seconds since the server started (the run's clock, also the phases' clock);
``rss_bytes``, ``uss_bytes``, ``pss_bytes``
    from rss.csv (every run): the process from outside; USS and PSS are read every few samples;
``heap_bytes``, ``peak_bytes``, ``tracer_bytes``
    from heap.csv (tracemalloc and memray runs): heap from inside, the tracer's running peak
    and its own bookkeeping (tracemalloc only);
``site:<file:line (function)>``, ``site:(other)``, ``site:(probe)``
    from sites.csv: bytes per allocation site at each detailed snapshot, one column per site
    (largest first, the two pseudo-sites last). A site is blank at a snapshot that did not list
    it (its bytes are then in ``(other)``); the sites listed at one time add up to the heap the
    probe saw then.

The rss and heap samplers run on their own ticks, so their rows rarely share a time; the heap
sampler's detailed snapshots share the time of a heap row. JSON holds the same table as
``columns`` and ``rows`` (``pandas.DataFrame(doc["rows"], columns=doc["columns"])``), with the run's
layout, probe, status and phases. Bytes are integers, times floats as recorded.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

from ..dataset.results import (
    HEAP_COLUMNS,
    OTHER_SITE,
    PROBE_SITE,
    RSS_COLUMNS,
    ResultError,
    RunResult,
    Series,
    load_run,
)

EXPORT_SCHEMA = "memdiet.export/1"
FORMATS = ("csv", "json")
SITE_PREFIX = "site:"

Cell = float | int | None


def export_table(run: RunResult) -> tuple[list[str], list[list[Cell]]]:
    """(column names, rows) of the merged table described in the module docstring.

    Raises :class:`ResultError` when the run has no sample at all (an empty series)."""
    series: list[tuple[Sequence[str], Series]] = [(RSS_COLUMNS, run.rss)]
    if run.heap is not None:
        series.append((HEAP_COLUMNS, run.heap))
    if not any(len(values) for _columns, values in series):
        raise ResultError(f"{run.path}: empty series: no samples in rss.csv or heap.csv")
    site_names = _site_order(run.sites)
    columns = ["time_s"] + [name for names, _values in series for name in names[1:]] \
        + [SITE_PREFIX + site for site in site_names]
    position = {name: index for index, name in enumerate(columns)}
    rows: dict[float, list[Cell]] = {}

    def row_at(time_s: float) -> list[Cell]:
        row = rows.get(time_s)
        if row is None:
            row = rows[time_s] = [time_s] + [None] * (len(columns) - 1)
        return row

    for names, values in series:
        times = values["time_s"]
        for index, time_s in enumerate(times):
            if time_s is None:
                raise ResultError(f"{run.path}: a row without time_s")
            row = row_at(time_s)
            for name in names[1:]:
                value = values[name][index]
                row[position[name]] = None if value is None else int(value)
    for time_s, site, size, _count in run.sites:
        row = row_at(time_s)
        cell = position[SITE_PREFIX + site]
        row[cell] = (row[cell] or 0) + size  # one label twice at one time: its bytes add up
    return columns, [rows[time_s] for time_s in sorted(rows)]


def _site_order(sites: Sequence[tuple[float, str, int, int]]) -> list[str]:
    """Site labels, largest (most bytes at any snapshot) first, then ``(other)`` and ``(probe)``."""
    largest: dict[str, int] = {}
    for _time, site, size, _count in sites:
        largest[site] = max(largest.get(site, 0), size)
    pseudo = [site for site in (OTHER_SITE, PROBE_SITE) if site in largest]
    named = sorted((site for site in largest if site not in pseudo), key=lambda site: (-largest[site], site))
    return named + pseudo


def render_csv(columns: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(["" if cell is None else cell for cell in row] for row in rows)
    return buffer.getvalue()


def render_json(run: RunResult, columns: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    document: dict[str, Any] = {
        "schema": EXPORT_SCHEMA,
        "run": run.path.name,
        "layout": run.layout,
        "probe": run.probe,
        "status": run.status,
        "time": "seconds since the server started",
        "size": "bytes",
        "phases": run.document.get("phases", []),
        "columns": list(columns),
        "rows": [list(row) for row in rows],
    }
    return json.dumps(document, separators=(",", ":")) + "\n"


def export(run_dir: str | Path, fmt: str) -> str:
    """The export of the run folder ``run_dir`` as text in ``fmt`` (csv or json)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    run = load_run(run_dir)
    columns, rows = export_table(run)
    return render_csv(columns, rows) if fmt == "csv" else render_json(run, columns, rows)
