"""Where a server's bytes per held connection go: for each subject (our layouts, uvicorn, aiohttp,
asyncio, any ``--cmd``), the allocation sites whose live bytes grew between the end of ``idle-empty``
and the end of ``idle-held`` (C keep-alive clients connected, each after one request), divided by C,
next to the RSS each held connection costs and the share of it the sites explain.

Rules: data first (:func:`held_site_tables`, from result.json's ``held_connection_sites``, which the
run writes from its phase-end dumps, or for probes without dumps from its site rows), then markdown
(:func:`held_sites_markdown`). The sites come from the tracemalloc run of a subject when there is
one (every line, its own dumps), else from its memray run (native frames for C extensions). The RSS
figure comes from the subject's rss run (no tracer inside), as every RSS figure of the report does.
Reads files only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from ..dataset.results import RunResult
from ..dataset.selection import layout_order
from .markdown import code, table
from .units import human_bytes

#: Probes whose held-connection sites the report shows, in order of preference.
SITE_PROBES = ("tracemalloc", "memray", "massif")
#: Site rows shown per subject (the rest are summed as "the other sites").
ROWS_SHOWN = 8


@dataclass
class HeldSites:
    """One subject's held-connection sites: ``rows`` are ``(site, bytes per connection, blocks per
    connection)`` largest first, ``heap_per_connection`` their total (bytes), ``rss_per_connection``
    the rss run's RSS per held connection (None without one), ``connections`` C."""

    subject: str
    kind: str
    probe: str
    connections: int
    rows: list[tuple[str, float, float]]
    heap_per_connection: float
    rss_per_connection: float | None

    @property
    def share_of_rss(self) -> float | None:
        """The share of the RSS per held connection that the traced heap explains (None without RSS)."""
        if not self.rss_per_connection or self.rss_per_connection <= 0:
            return None
        return self.heap_per_connection / self.rss_per_connection


def held_site_tables(by_subject: Mapping[str, Mapping[str, RunResult]]) -> list[HeldSites]:
    """One :class:`HeldSites` per subject that has a run with held-connection sites, in the study's
    order (layouts first, then the others by name). ``by_subject`` is ``{subject: {probe: run}}``."""
    tables = []
    for subject in layout_order(by_subject):
        runs = by_subject[subject]
        chosen = next((runs[p] for p in SITE_PROBES if p in runs and runs[p].document.get("held_connection_sites")), None)
        if chosen is None:
            continue
        held = chosen.document["held_connection_sites"]
        connections = int(chosen.parameters.get("connections") or 0)
        if connections <= 0:
            continue
        rss_run = runs.get("rss")
        rss_per = rss_run.summary.get("rss_bytes_per_held_connection") if rss_run is not None else None
        rows = [(str(site), size / connections, count / connections) for site, size, count in held["sites"]]
        tables.append(HeldSites(subject, (chosen.document.get("subject") or {}).get("kind", "memdiet"), chosen.probe,
                                connections, rows, held["heap_bytes"] / connections, rss_per))
    return tables


def held_sites_markdown(tables: Iterable[HeldSites], rows_shown: int = ROWS_SHOWN) -> list[str]:
    """The report's section body: per subject, a sentence with its figures, then its top sites."""
    lines: list[str] = []
    for held in tables:
        share = held.share_of_rss
        rss_text = (f"{human_bytes(held.rss_per_connection)} of RSS each (rss run)" if held.rss_per_connection is not None
                    else "no rss run to compare with")
        explained = f"; the traced heap is {share:.0%} of that RSS" if share is not None else ""
        lines += [f"### Where {held.subject}'s bytes per held connection go", "",
                  f"{held.connections:,} idle keep-alive clients, each after one request: {rss_text}; "
                  f"{human_bytes(held.heap_per_connection)} of heap each by allocation site ({held.probe} run){explained}. "
                  "RSS and heap differ both ways: RSS also grows by the allocator's new pools and arenas and by "
                  "what the first requests warm once (code paths, caches); it grows less than the heap when new "
                  "objects fill free blocks in pages already resident.", ""]
        shown, rest = held.rows[:rows_shown], held.rows[rows_shown:]
        body = [(code(site), f"{size:,.1f}", f"{count:,.2f}",
                 f"{size / held.heap_per_connection:.0%}" if held.heap_per_connection else "-")
                for site, size, count in shown]
        if rest:
            body.append((f"{len(rest)} other sites", f"{sum(r[1] for r in rest):,.1f}", f"{sum(r[2] for r in rest):,.2f}",
                         f"{sum(r[1] for r in rest) / held.heap_per_connection:.0%}" if held.heap_per_connection else "-"))
        lines += table(("site", "B per connection", "blocks per connection", "share of heap"), body) + [""]
    if not lines:
        lines = ["No run with phase-end sites (the tracemalloc or memray probe) held clients.", ""]
    return lines
