"""``memdiet matrix [--quick] [--subjects a,b] [--probes p,q] [run options]``: every subject (layouts,
peers) under every probe, then the report. ``--layouts`` is ``--subjects`` for memdiet's layouts.

A progress bar on stderr while it runs, then the summary table (:func:`.run.print_summary`) and the
failed runs; exit 1 if any run failed (the report is written from the others).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from server.layouts import LAYOUTS

from ..errors import EXIT_FAILED, EXIT_OK, BadInput
from ..measure import matrix
from ..measure.probes import PROBES
from ..measure.scenario import (
    DEFAULT_LATEST_DIR,
    FULL,
    FULL_PROBES,
    QUICK,
    QUICK_LATEST_DIR,
    QUICK_PROBES,
    RunConfig,
)
from ..measure.subjects import FULL_PEERS, resolve, subject_names
from .args import add_run_options, choices_list, config_from, install_interrupt_handlers, stderr_console
from .run import print_summary, refuse_if_too_big


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    parser = commands.add_parser(name, help="run every layout under every probe and write its report "
                                 f"({DEFAULT_LATEST_DIR}; {QUICK_LATEST_DIR} with --quick)")
    parser.add_argument("--quick", action="store_true", help="small and short: well under a minute")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--subjects", type=choices_list(subject_names(), "subject"), default=None,
                       help=f"comma-separated subjects to run, from {','.join(subject_names())} (default: every "
                            f"layout, then {','.join(FULL_PEERS)} where installed; with --quick the layouts only)")
    which.add_argument("--layouts", type=choices_list(list(LAYOUTS), "layout"), default=None,
                       help=f"comma-separated layouts to run (as --subjects; default: all, {','.join(LAYOUTS)})")
    parser.add_argument("--probes", type=choices_list(list(PROBES), "probe"), default=None,
                        help=f"comma-separated probes to run each layout under, from {','.join(PROBES)} "
                             f"(default: {','.join(FULL_PROBES)}; with --quick {','.join(QUICK_PROBES)})")
    parser.add_argument("--latest-dir", type=Path, default=None,
                        help=f"where matrix.json and the report go (default: {DEFAULT_LATEST_DIR}, the committed "
                             f"full report; with --quick {QUICK_LATEST_DIR}, git-ignored)")
    add_run_options(parser, FULL)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        config = config_from(args, QUICK if args.quick else FULL)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    probes = args.probes or (QUICK_PROBES if args.quick else FULL_PROBES)
    subjects = args.subjects or args.layouts or matrix.default_subjects(args.quick)
    try:
        for name in subjects:
            subject = resolve(name)
            for probe in probes:
                if PROBES[probe].subjects == "python" and not subject.python:
                    parser.error(f"subject {name} is not a Python program: the {probe} probe cannot trace it "
                                 f"(use --probes rss or massif for it, in a matrix of its own)")
    except BadInput as error:
        parser.error(str(error))
    plan = matrix.MatrixPlan(base=config, layouts=subjects, probes=probes,
                             heap_graph_subjects=() if args.quick else matrix.OWNERS_SUBJECTS)
    refuse_if_too_big([c for c in plan.configs() if c.subject in LAYOUTS], parser)
    latest_dir = args.latest_dir or matrix.default_latest_dir(args.quick)
    console = stderr_console()
    install_interrupt_handlers()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} runs"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("matrix", total=len(plan.configs()))
        current = {"label": ""}

        def on_run_start(index: int, total: int, run_config: RunConfig) -> None:
            progress.update(task, completed=index)
            current["label"] = f"{run_config.subject}/{run_config.probe}"
            progress.update(task, description=f"{current['label']}: starting")

        def on_phase(phase: str) -> None:
            progress.update(task, description=f"{current['label']}: {phase}")

        outcome = matrix.run_matrix(plan, latest_dir=latest_dir, on_run_start=on_run_start, on_phase=on_phase)
        progress.update(task, completed=len(plan.configs()), description="matrix done")
    print_summary(console, outcome.runs)
    for failure in outcome.failures:
        console.print(f"[red]failed:[/red] {failure}")
    if outcome.report:
        console.print(f"report: {outcome.report}")
    return EXIT_FAILED if outcome.failures else EXIT_OK
