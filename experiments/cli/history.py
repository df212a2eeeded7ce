"""``memdiet history [--history reports/history.jsonl] [-o reports] [--metrics a,b|all] [--layouts a,b] [--last N]``.

Reads the history ``memdiet regress`` appends to (:mod:`experiments.regress.history`), finds the
slow creeps of every recorded figure, and writes ``history.md`` (flags and one table per metric,
:mod:`experiments.render.history_md`) with ``history.png`` and ``.svg`` beside it (the trends of the
chosen metrics and layouts, with baseline and tolerance band, :mod:`experiments.render.history_chart`).
stdout: one line, the checks read and what is flagged, then where the report went.

Exit codes: 0; 1 with ``--fail-on-creep`` when a creep reaches the latest check; 2 when the history
file is missing or malformed, or a metric or layout asked for is not in it.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from ..dataset.results import write_atomic
from ..errors import EXIT_FAILED, EXIT_OK
from ..paths import REPORTS_DIR
from ..regress.history import DEFAULT_HISTORY, DEFAULT_TREND_METRICS, HistoryError, read_history, trends
from ..render.history_chart import render_history_chart
from ..render.history_md import CHART_STEM, HISTORY_MD, history_markdown, ongoing_creeps, summary_line


def _names(text: str) -> list[str]:
    names = [item.strip() for item in text.split(",") if item.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"a comma-separated list is expected, not {text!r}")
    return names


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number is expected, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1")
    return value


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    parser = commands.add_parser(name, help="trends of the regression checks over commits, with slow creeps flagged")
    parser.add_argument("--history", type=Path, default=DEFAULT_HISTORY, metavar="FILE",
                        help=f"the history memdiet regress appends to (default: {DEFAULT_HISTORY})")
    parser.add_argument("-o", "--output-dir", type=Path, default=REPORTS_DIR,
                        help="where history.md and the chart go (default: reports)")
    parser.add_argument("--metrics", type=_names, default=list(DEFAULT_TREND_METRICS),
                        help=f"metrics to draw and tabulate, or 'all' (default: {','.join(DEFAULT_TREND_METRICS)}); "
                             "creeps are looked for in every figure whatever is drawn")
    parser.add_argument("--layouts", type=_names, default=None, help="layouts to draw (default: every one recorded)")
    parser.add_argument("--last", type=_positive, default=None, metavar="N", help="only the latest N checks")
    parser.add_argument("--fail-on-creep", action="store_true",
                        help="exit 1 when a slow creep reaches the latest check")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    records = read_history(args.history)
    if args.last is not None and len(records) > args.last:
        records = [replace(record, index=i) for i, record in enumerate(records[-args.last:])]
    everything = trends(records)
    known_metrics = list(dict.fromkeys(trend.metric for trend in everything))
    known_layouts = list(dict.fromkeys(trend.layout for trend in everything))
    if args.metrics == ["all"]:
        metrics = known_metrics
    elif args.metrics == list(DEFAULT_TREND_METRICS):  # not asked for: those of them the history holds
        metrics = [name for name in DEFAULT_TREND_METRICS if name in known_metrics] or known_metrics
    else:
        metrics = args.metrics
    for what, asked, known in (("metric", metrics, known_metrics), ("layout", args.layouts or [], known_layouts)):
        unknown = [name for name in asked if name not in known]
        if unknown:
            raise HistoryError(f"{args.history}: no {what} {', '.join(unknown)} in the history; it has "
                               f"{', '.join(known)}")
    shown = [trend for trend in everything
             if trend.metric in metrics and (args.layouts is None or trend.layout in args.layouts)]
    out_dir: Path = args.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    render_history_chart(records, shown, out_dir / CHART_STEM)
    report = out_dir / HISTORY_MD
    write_atomic(report, history_markdown(records, shown, everything, history_path=args.history, chart=CHART_STEM))
    print(summary_line(records, everything, args.history))
    print(f"report: {report} (chart {out_dir / CHART_STEM}.png)")
    return EXIT_FAILED if args.fail_on_creep and ongoing_creeps(records, everything) else EXIT_OK
