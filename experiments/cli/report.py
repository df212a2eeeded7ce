"""``memdiet report RUN_DIR... [-o reports/latest] [--allow-mixed]``: the report of existing run folders
(``index.md`` with its charts, and the interactive ``index.html``).

Of several runs of one layout and probe the latest complete one is used. Runs of matrices made with
different parameters are refused (exit 2) unless ``--allow-mixed`` asks for one report per
parameter set; an unreadable run folder is refused too (:class:`~experiments.dataset.results.ResultError`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..dataset.results import load_run
from ..errors import EXIT_OK, BadInput
from ..measure.anatomy import write_anatomy_file
from ..measure.scenario import DEFAULT_LATEST_DIR
from ..render.html_report import HTML_FILE, write_html_report
from ..render.report_md import IncomparableRuns, build_report, refuse_incomparable


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    parser = commands.add_parser(name, help="render the report of existing run folders")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run folders (reports/runs/<time>-<layout>-<probe>); of several runs of one layout and "
                             "probe the latest complete one is used")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_LATEST_DIR,
                        help=f"folder for index.md and its charts (default: {DEFAULT_LATEST_DIR})")
    parser.add_argument("--allow-mixed", action="store_true",
                        help="runs made with different parameters (max_conns, connections, phase lengths...): write "
                             "one report per parameter set instead of refusing")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    runs = [load_run(path) for path in args.runs]
    try:
        if not args.allow_mixed:
            refuse_incomparable(runs)  # before anything is written into the report's folder
        # The report reads what a slot is made of from a file (renderers measure nothing live).
        args.output.mkdir(parents=True, exist_ok=True)
        write_anatomy_file(args.output, {run.layout for run in runs})
        path = build_report(runs, args.output, allow_mixed=args.allow_mixed)
        write_html_report(runs, args.output / HTML_FILE)  # the interactive page beside index.md
    except IncomparableRuns as error:  # the renderer says what differs; the way out is this command's option
        raise BadInput(f"{error}; give the runs of one matrix, or --allow-mixed for one report per parameter set") from None
    print(f"report: {path}")
    return EXIT_OK
