"""Traced beside untraced, per subject: a traced run's heap per held connection against an untraced run's
RSS per held connection, whether they agree and, where they do not, what the runs' ledgers account for
(:func:`experiments.dataset.agreement.compare`), or that nothing does.

Rules: data first (:func:`agreement_rows`), then markdown (:func:`agreement_markdown`). A subject is shown
for each complete traced run (tracemalloc, then memray) that has a complete untraced run of the same scenario
(:func:`~.probe_crosscheck.same_scenario`) beside it: the ``allocators`` run when there is one (it
carries the untraced ledger the comparison can use), else the ``rss`` run. Reads result.json documents only;
the verdict and its text are the comparison's, never written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..dataset.agreement import AGREE, compare
from ..dataset.results import RunResult
from ..dataset.selection import layout_order
from .markdown import code, table
from .probe_crosscheck import same_scenario
from .units import whole_bytes

#: Traced probes, in the order shown; untraced probes, the one preferred first.
TRACED_PROBES = ("tracemalloc", "memray")
UNTRACED_PROBES = ("allocators", "rss")


@dataclass(frozen=True)
class AgreementRow:
    """One traced run beside one untraced run of a subject; ``comparison`` is :func:`compare`'s answer."""

    subject: str
    traced_probe: str
    traced_run: str
    untraced_run: str
    comparison: dict[str, Any]

    @property
    def verdict(self) -> str:
        if self.comparison.get("agrees"):
            return "agree"
        if self.comparison.get("agrees") is None:
            return "not compared"
        return "explained" if self.comparison.get("explained") else "NOT explained"


def agreement_rows(by_subject: Mapping[str, Mapping[str, RunResult]]) -> list[AgreementRow]:
    """One row per subject and traced probe that has an untraced run to compare with, in the study's order.
    ``by_subject`` is ``{subject: {probe: run}}``."""
    rows = []
    for subject in layout_order(by_subject):
        runs = {probe: run for probe, run in by_subject[subject].items() if run.status == "complete"}
        for traced_probe in TRACED_PROBES:
            traced = runs.get(traced_probe)
            if traced is None:
                continue
            untraced = next((runs[probe] for probe in UNTRACED_PROBES
                             if probe in runs and same_scenario(traced, runs[probe])), None)
            if untraced is not None:
                rows.append(AgreementRow(subject, traced_probe, traced.path.name, untraced.path.name,
                                         compare(traced.document, untraced.document)))
    return rows


def agreement_markdown(rows: Iterable[AgreementRow]) -> list[str]:
    """The report's section body: the table, then each disagreement's account in full."""
    rows = list(rows)
    if not rows:
        return ["No subject has a complete traced run and an untraced run of the same scenario.", ""]
    lines = [f"The heap per held connection a tracer saw, beside the RSS per held connection of an untraced run "
             f"of the same scenario. They are different quantities (the bytes Python asked for, the pages the "
             f"process touched) and agree when within {AGREE:.0%} of RSS; otherwise the runs' RSS ledgers say "
             "what lies between them, or the row says that nothing measured does (docs/any-server.md, "
             "\"Traced against untraced\").", ""]
    body = [(row.subject, row.traced_probe, whole_bytes(row.comparison.get("traced_heap_bytes_per_held_connection")),
             whole_bytes(row.comparison.get("untraced_rss_bytes_per_held_connection")), row.verdict)
            for row in rows]
    lines += table(("subject", "tracer", "heap per held connection", "untraced RSS per held connection", "verdict"),
                   body, "llrrl") + [""]
    for row in rows:
        if not row.comparison.get("agrees"):
            lines += [f"- {row.subject} ({code(row.traced_run)} beside {code(row.untraced_run)}): "
                      f"{row.comparison['text']}."]
    return lines + [""]
