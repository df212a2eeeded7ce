"""``history.md``: the regression history as markdown, and the line ``memdiet history`` ends with.

Sections: where the history came from (file, checks, commits, machines); what is flagged, over
every figure recorded (slow creeps, by :func:`experiments.regress.find_creeps`'s rule, and the
checks that failed, figure by figure); the chart; then one table per metric shown, a row per check
(its commit and time) and a column per layout, each cell the figure and its change against the
baseline that check used, failing ones in bold and those inside a creep marked; the table's last
row is the latest baseline with its tolerance band. Returns text: the command decides where it goes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..regress.compare import FAILING
from ..regress.history import Creep, Point, Record, Trend
from .markdown import table
from .units import MISSING, format_metric

HISTORY_MD = "history.md"
CHART_STEM = "history"
CREEP_MARK = "↗ creep"


def _change(metric: str, value: float | None, baseline: float | None) -> str:
    if value is None or baseline is None:
        return ""
    if value == baseline:
        return " (0)"
    if baseline:
        percent = (value - baseline) / abs(baseline) * 100
        decimals = 1 if abs(percent) >= 1 else 2
        return f" ({percent:+.{decimals}f}%)"
    sign = "+" if value > baseline else "-"
    return f" ({sign}{format_metric(metric, abs(value - baseline))})"


def creep_text(creep: Creep, records: Sequence[Record], trend: Trend) -> str:
    """One line: which figure crept, from which check to which, by how much against what."""
    start = trend.points[creep.start]
    base = start.value if start is not None else None
    relative = f" ({creep.drift / abs(base) * 100:+.2f}%)" if base else ""
    sign = "+" if trend.worse > 0 else "-"
    return (f"**{creep.layout}** `{creep.metric}`: {sign}{format_metric(creep.metric, creep.drift)}{relative} over "
            f"{creep.steps} steps from check {creep.start + 1} ({records[creep.start].label}) to check {creep.end + 1} "
            f"({records[creep.end].label}), each step within its tolerance; {sign}"
            f"{format_metric(creep.metric, creep.allowed)} allowed")


def ongoing_creeps(records: Sequence[Record], all_trends: Sequence[Trend]) -> list[Creep]:
    """Creeps that reach the latest check: the figure is still beyond the sum its tolerance allows."""
    last = len(records) - 1
    return [creep for trend in all_trends for creep in trend.creeps if creep.end == last]


def summary_line(records: Sequence[Record], all_trends: Sequence[Trend], history_path: Path) -> str:
    """``memdiet history: 7 checks of 5 commits in FILE; 1 slow creep (1 reaching the latest check); 1 check failed``."""
    commits = len({record.label for record in records})
    creeps = [creep for trend in all_trends for creep in trend.creeps]
    ongoing = len(ongoing_creeps(records, all_trends))
    failed = sum(not record.passed for record in records)
    creep_part = (f"{len(creeps)} slow creep{'s' if len(creeps) != 1 else ''}"
                  + (f" ({ongoing} reaching the latest check)" if ongoing else "")) if creeps else "no slow creep"
    return (f"memdiet history: {len(records)} check{'s' if len(records) != 1 else ''} of {commits} "
            f"commit{'s' if commits != 1 else ''} in {history_path}; {creep_part}; "
            f"{failed} check{'s' if failed != 1 else ''} failed")


def _cell(trend: Trend, index: int) -> str:
    point = trend.points[index]
    if point is None or point.value is None:
        return MISSING
    text = format_metric(trend.metric, point.value) + _change(trend.metric, point.value, point.baseline)
    if point.verdict in FAILING:
        text = f"**{text} {point.verdict}**"
    if any(creep.start < index <= creep.end for creep in trend.creeps):
        text += f" {CREEP_MARK}"
    return text


def _band(trend: Trend) -> str:
    latest: Point | None = next((p for p in reversed(trend.points) if p is not None and p.baseline is not None), None)
    if latest is None or latest.baseline is None:
        return MISSING
    sign = "+" if trend.worse > 0 else "-"
    allowed = f" {sign}{format_metric(trend.metric, latest.allowed)}" if latest.allowed else " exact"
    return format_metric(trend.metric, latest.baseline) + allowed


def history_markdown(records: Sequence[Record], shown: Sequence[Trend], all_trends: Sequence[Trend], *,
                     history_path: Path, chart: str | None) -> str:
    """The report (see the module's rules); ``chart`` is the chart's file name beside it, if drawn."""
    machines = len({record.series_key for record in records})
    lines = [f"# memdiet history: {len(records)} regression checks", "",
             f"`{summary_line(records, all_trends, history_path)}`", "",
             f"- **History**: `{history_path}`, {len(records)} checks from {records[0].time_utc} to "
             f"{records[-1].time_utc}, {len({r.label for r in records})} commit(s); {machines} series (a series is "
             "one machine with one matrix: figures are compared within a series only).",
             "- **Creep rule**: a run of consecutive checks whose every step stays within the figure's tolerance "
             "while the sum, from the best check of the run, goes beyond it in the worse direction "
             "(a baseline remade at each step lets every check pass while the figure creeps).", "",
             "## Slow creeps", ""]
    creeps = [(trend, creep) for trend in all_trends for creep in trend.creeps]
    lines += [f"- {creep_text(creep, records, trend)}" for trend, creep in creeps] or [
        "None: no figure drifted beyond its tolerance in steps that each stayed within it."]
    lines += ["", "## Failed checks", ""]
    failed = [record for record in records if not record.passed]
    for record in failed:
        figures = []
        for layout, metric in record.regressed():
            point = record.figures[layout][metric]
            figures.append(f"{layout} `{metric}` {point.verdict} ({format_metric(metric, point.baseline)} → "
                           f"{format_metric(metric, point.value)})")
        lines.append(f"- check {record.index + 1} ({record.label}, {record.time_utc}): {'; '.join(figures) or 'a run failed'}")
    if not failed:
        lines.append("None: every check passed.")
    lines.append("")
    if chart:
        lines += ["## Trends", "", f"![history]({chart}.png)", "", f"([SVG]({chart}.svg))", ""]
    for metric in dict.fromkeys(trend.metric for trend in shown):
        of_metric = [trend for trend in shown if trend.metric == metric]
        rows = [[str(record.index + 1), record.label, record.time_utc,
                 *(_cell(trend, record.index) for trend in of_metric)] for record in records]
        rows.append(["", "baseline", "latest, with tolerance", *(_band(trend) for trend in of_metric)])
        lines += [f"### `{metric}`", "", *table(["check", "commit", "time", *(t.layout for t in of_metric)], rows,
                                                "lll" + "r" * len(of_metric)), ""]
    return "\n".join(lines)
