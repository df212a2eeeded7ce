"""``memdiet sweep [--quick] [--layouts a,b] [-o DIR] [--runs-dir DIR]``: the scaling laws.

Per layout, a grid of table sizes (max_conns) and held connections (C), each point a real run
(:mod:`experiments.measure.sweep`), fitted as ``RSS = a + b·slots + c·held`` (+ ``d·active`` under
load) with 95% intervals (:mod:`experiments.dataset.sweep`). Writes into DIR (default
``reports/latest/sweep``, with ``--quick`` ``reports/quick/sweep``): ``sweep.json`` (points, fits,
predictions), ``index.md`` (:mod:`experiments.render.sweep_md`) and ``sweep.png`` / ``.svg``
(:mod:`experiments.render.sweep_chart`). Run folders go to ``--runs-dir`` (reports/runs).

A progress bar and the fits' table on stderr; stdout: where the report went. Exit codes: 0; 1 when
a run failed (sweep.json and the report are still written, marked incomplete, with every point
measured before it); 2 on bad arguments, a grid that does not fit this machine's RLIMIT_NOFILE or
memory; 130 interrupted (written as for a failure).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from server.layouts import LAYOUTS

from ..dataset.results import write_atomic, write_json
from ..dataset.sweep import CHART_STEM, INDEX_FILE, SWEEP_DIR, SWEEP_FILE, read_sweep
from ..errors import EXIT_OK
from ..measure.scenario import DEFAULT_LATEST_DIR, DEFAULT_RUNS_DIR, QUICK_LATEST_DIR
from ..measure.sweep import Sweeper, check_plan, plan_for
from ..render.sweep_chart import render_sweep_chart
from ..render.sweep_md import FIT_HEADER, fit_rows, write_sweep_markdown
from .args import choices_list, install_interrupt_handlers, stderr_console
from .run import refuse_if_too_big

FULL_OUTPUT = DEFAULT_LATEST_DIR / SWEEP_DIR
QUICK_OUTPUT = QUICK_LATEST_DIR / SWEEP_DIR


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    parser = commands.add_parser(name, help="fit RSS = a + b·slots + c·held per layout over a grid of real runs "
                                            f"({FULL_OUTPUT}; {QUICK_OUTPUT} with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="two table sizes × two C, shorter phases (about 2 minutes instead of 4)")
    parser.add_argument("--layouts", type=choices_list(list(LAYOUTS), "layout"), default=None,
                        help=f"comma-separated layouts (default: all, {','.join(LAYOUTS)})")
    parser.add_argument("-o", "--output-dir", type=Path, default=None,
                        help=f"where sweep.json, index.md and the chart go (default: {FULL_OUTPUT}; with --quick "
                             f"{QUICK_OUTPUT}, git-ignored)")
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR,
                        help="where run folders go (default: reports/runs)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    plan = plan_for(args.quick, args.layouts)  # BadInput (exit 2) when the grid cannot fit RLIMIT_NOFILE
    nofile = check_plan(plan)
    refuse_if_too_big(plan.configs(args.runs_dir), parser)
    out_dir: Path = args.output_dir or (QUICK_OUTPUT if args.quick else FULL_OUTPUT)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"cannot use {out_dir} as the output folder: {error.strerror or error}")
    console = stderr_console()
    install_interrupt_handlers()
    sweeper = Sweeper(plan, args.runs_dir, out_dir, nofile)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                      TimeElapsedColumn(), console=console, transient=False) as progress:
            task = progress.add_task("sweep", total=plan.steps())
            current = {"label": ""}

            def on_step(index: int, total: int, label: str) -> None:
                current["label"] = label
                progress.update(task, completed=index, description=label)

            def on_phase(phase: str) -> None:
                progress.update(task, description=f"{current['label']}: {phase}")

            sweeper.run(on_step, on_phase)
            progress.update(task, completed=plan.steps(), description="sweep done")
    finally:
        # Written whether the sweep completed, failed or was interrupted: the points measured are kept.
        report = write_outputs(sweeper.document(), out_dir)
        if not sweeper.finished:
            console.print(f"report of the points measured before it stopped: {report}")
    sweep = read_sweep(out_dir)
    table = Table(title="memdiet sweep: RSS = a + b·slots + c·held (95% intervals)")
    for column in FIT_HEADER:
        table.add_column(column, justify="left" if column == "layout" else "right")
    for row in fit_rows(sweep):
        table.add_row(*row)
    console.print(table)
    print(f"report: {report}")
    return EXIT_OK


def write_outputs(document: dict, out_dir: Path) -> Path:
    """sweep.json, then index.md and the chart rendered from the file as written; returns index.md."""
    write_json(out_dir / SWEEP_FILE, document)
    sweep = read_sweep(out_dir / SWEEP_FILE)
    render_sweep_chart(sweep, out_dir / CHART_STEM)
    text = io.StringIO()
    write_sweep_markdown(sweep, text, CHART_STEM)
    write_atomic(out_dir / INDEX_FILE, text.getvalue())
    return out_dir / INDEX_FILE
