"""``memdiet``: run experiments and render their reports.

    memdiet run --layout nofd --probe tracemalloc [--max-conns N --connections C ...]
    memdiet matrix [--quick] [--layouts a,b] [--probes rss,tracemalloc] [--latest-dir DIR]
    memdiet report RUN_DIR... [-o reports/latest] [--allow-mixed]

Bad arguments print one line and exit 2, and so does a run that would need more memory than the
machine has available (see :mod:`experiments.measure.budget`); an interrupted run (Ctrl-C, SIGTERM)
stops the server and the load generator it started, marks itself incomplete and exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from server.cli import bounded
from server.layouts import LAYOUTS

from ..dataset.results import ResultError, load_run
from ..measure.probes import PROBES
from ..measure.runner import DEFAULT_RUNS_DIR, Interrupted, RunConfig, RunFailed

if TYPE_CHECKING:
    from rich.console import Console

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        self.exit(EXIT_BAD_INPUT, f"memdiet: error: {message}\n")


def choices_list(valid: Sequence[str], what: str):
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in valid]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown) or text!r}; choose from {', '.join(valid)}")
        return items
    return parse


def add_run_options(parser: argparse.ArgumentParser, defaults: RunConfig) -> None:
    parser.add_argument("--max-conns", type=bounded(int, 1, 1 << 24, "a whole number"), default=None,
                        help=f"connection-table slots (default: {defaults.max_conns})")
    parser.add_argument("--connections", "-c", type=bounded(int, 1, 100_000, "a whole number"), default=None,
                        help=f"clients held and loaded, C (default: {defaults.connections})")
    parser.add_argument("--idle", type=bounded(float, 0.1, 600, "seconds"), default=None,
                        help=f"seconds of each idle phase, T (default: {defaults.idle_s})")
    parser.add_argument("--load", type=bounded(float, 0.1, 600, "seconds"), default=None,
                        help=f"seconds of the load phase, D (default: {defaults.load_s})")
    parser.add_argument("--sample-hz", type=bounded(float, 1, 1000, "samples per second"), default=None,
                        help=f"samples per second for RSS and heap totals (default: {defaults.sample_hz})")
    parser.add_argument("--detail-interval", type=bounded(float, 0.05, 600, "seconds"), default=None,
                        help="seconds between the tracemalloc probe's per-site snapshots, stretched when a snapshot "
                             f"takes longer (default: {defaults.detail_interval_s}); sites are also recorded at every "
                             "phase end")
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="where run folders go (default: reports/runs)")


def config_from(args: argparse.Namespace, base: RunConfig) -> RunConfig:
    overrides = {
        "max_conns": args.max_conns, "connections": args.connections, "idle_s": args.idle,
        "load_s": args.load, "sample_hz": args.sample_hz, "detail_interval_s": args.detail_interval,
    }
    config = replace(base, runs_dir=args.runs_dir, **{k: v for k, v in overrides.items() if v is not None})
    if config.connections > config.max_conns:
        raise argparse.ArgumentTypeError(f"--connections {config.connections} is more than --max-conns {config.max_conns}")
    return config


def build_parser() -> argparse.ArgumentParser:
    from ..measure.matrix import (
        DEFAULT_LATEST_DIR,
        FULL,
        FULL_PROBES,
        QUICK_LATEST_DIR,
        QUICK_PROBES,
    )

    parser = _ArgumentParser(prog="memdiet", description="Measure where a server's memory goes, layout by layout.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    run = commands.add_parser("run", help="run one layout under one probe")
    run.add_argument("--layout", required=True, choices=list(LAYOUTS), help="connection-table layout to run")
    run.add_argument("--probe", default="rss", choices=list(PROBES),
                     help="how memory is measured: rss from outside (default), or the tracemalloc or memray tracer "
                          "inside the server")
    add_run_options(run, FULL)

    matrix = commands.add_parser("matrix", help="run every layout under every probe and write its report "
                                 f"({DEFAULT_LATEST_DIR}; {QUICK_LATEST_DIR} with --quick)")
    matrix.add_argument("--quick", action="store_true", help="small and short: well under a minute")
    matrix.add_argument("--layouts", type=choices_list(list(LAYOUTS), "layout"), default=None,
                        help=f"comma-separated layouts to run (default: all, {','.join(LAYOUTS)})")
    matrix.add_argument("--probes", type=choices_list(list(PROBES), "probe"), default=None,
                        help=f"comma-separated probes to run each layout under, from {','.join(PROBES)} "
                             f"(default: {','.join(FULL_PROBES)}; with --quick {','.join(QUICK_PROBES)})")
    matrix.add_argument("--latest-dir", type=Path, default=None,
                        help=f"where matrix.json and the report go (default: {DEFAULT_LATEST_DIR}, the committed "
                             f"full report; with --quick {QUICK_LATEST_DIR}, git-ignored)")
    add_run_options(matrix, FULL)

    report = commands.add_parser("report", help="render the report of existing run folders")
    report.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run folders (reports/runs/<time>-<layout>-<probe>); of several runs of one layout and "
                             "probe the latest complete one is used")
    report.add_argument("-o", "--output", type=Path, default=DEFAULT_LATEST_DIR,
                        help=f"folder for index.md and its charts (default: {DEFAULT_LATEST_DIR})")
    report.add_argument("--allow-mixed", action="store_true",
                        help="runs made with different parameters (max_conns, connections, phase lengths...): write "
                             "one report per parameter set instead of refusing")

    run.set_defaults(func=_cmd_run)
    matrix.set_defaults(func=_cmd_matrix)
    report.set_defaults(func=_cmd_report)
    # Commands that live in their own modules register themselves: each module has
    # ``register(commands)`` adding its subparser with ``set_defaults(func=handler)``, where
    # ``handler(args, parser) -> int`` (exit code).
    for module_name in _PLUGGED_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is None or not module_name.startswith(error.name):
                raise  # a real import error inside the module, not "not written yet"
            continue  # not written yet
        module.register(commands)
    return parser


#: Modules adding subcommands through ``register(commands)`` (see build_parser).
_PLUGGED_COMMANDS = (
    "experiments.regress",
    "experiments.render.export",
    "experiments.cli.bench",
    "tracemalloc_viewer.memdiet_command",
)


def install_interrupt_handlers() -> None:
    def interrupt(signum, frame):
        raise Interrupted(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args, parser)
    except ResultError as error:
        print(f"memdiet: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (Interrupted, KeyboardInterrupt):
        print("memdiet: interrupted; what it started was stopped, and a run in progress is marked incomplete (earlier results are kept)", file=sys.stderr)
        return EXIT_INTERRUPTED


#: Columns rich may use when stderr is not a terminal (a pipe, ``| tee``, a CI log): wide enough
#: that no table cell is cut (rich would assume 80 and print ``compl…``); tables still take only
#: the width they need.
LOG_WIDTH = 1000


def stderr_console() -> Console:
    """The console progress and tables go to (stderr); outside a terminal, never narrower than
    :data:`LOG_WIDTH`. Every memdiet command that prints a rich table should print it here."""
    from rich.console import Console

    console = Console(stderr=True)
    return console if console.is_terminal else Console(stderr=True, width=LOG_WIDTH)


def _refuse_if_too_big(configs, parser: argparse.ArgumentParser) -> None:
    """Exit 2 with one line when the largest run would not fit in the memory available."""
    from ..measure.budget import memory_problem

    problem = memory_problem(configs)
    if problem:
        parser.error(problem)


def _cmd_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..measure.matrix import FULL
    from ..measure.runner import run_once

    try:
        config = config_from(args, replace(FULL, layout=args.layout, probe=args.probe))
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    _refuse_if_too_big([config], parser)
    console = stderr_console()
    install_interrupt_handlers()
    with console.status(f"{config.layout}/{config.probe}: starting") as status:
        try:
            run_dir = run_once(config, lambda phase: status.update(f"{config.layout}/{config.probe}: {phase}"))
        except RunFailed as error:
            console.print(f"[red]memdiet: run failed:[/red] {error}")
            return 1
    result = load_run(run_dir)
    console.print(f"run written to {run_dir}")
    _print_summary(console, [result])
    return 0


def _cmd_matrix(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..measure.matrix import (
        FULL,
        FULL_PROBES,
        QUICK,
        QUICK_PROBES,
        MatrixPlan,
        default_latest_dir,
        run_matrix,
    )

    base = QUICK if args.quick else FULL
    try:
        config = config_from(args, base)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    plan = MatrixPlan(
        base=config,
        layouts=args.layouts or list(LAYOUTS),
        probes=args.probes or (QUICK_PROBES if args.quick else FULL_PROBES),
    )
    _refuse_if_too_big(plan.configs(), parser)
    latest_dir = args.latest_dir or default_latest_dir(args.quick)
    console = stderr_console()
    install_interrupt_handlers()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} runs"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("matrix", total=len(plan.configs()))
        current = {"label": ""}

        def on_run_start(index: int, total: int, run_config: RunConfig) -> None:
            progress.update(task, completed=index)
            current["label"] = f"{run_config.layout}/{run_config.probe}"
            progress.update(task, description=f"{current['label']}: starting")

        def on_phase(phase: str) -> None:
            progress.update(task, description=f"{current['label']}: {phase}")

        outcome = run_matrix(plan, latest_dir=latest_dir, on_run_start=on_run_start, on_phase=on_phase)
        progress.update(task, completed=len(plan.configs()), description="matrix done")
    _print_summary(console, outcome.runs)
    for failure in outcome.failures:
        console.print(f"[red]failed:[/red] {failure}")
    if outcome.report:
        console.print(f"report: {outcome.report}")
    return 1 if outcome.failures else 0


def _cmd_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..render.report_md import IncomparableRuns, build_report

    runs = [load_run(path) for path in args.runs]
    try:
        path = build_report(runs, args.output, allow_mixed=args.allow_mixed)
    except IncomparableRuns as error:
        print(f"memdiet: error: {error}; give the runs of one matrix, or --allow-mixed for one report "
              "per parameter set", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"report: {path}")
    return 0


def _print_summary(console, runs) -> None:
    from rich.table import Table

    from ..render.units import format_in_unit

    table = Table(title="memdiet runs")
    for column in ("layout", "probe", "status", "idle RSS", "held RSS", "B/slot", "B/held conn", "req/s",
                   "CPU/req", "errors"):
        table.add_column(column, justify="right" if column not in ("layout", "probe", "status") else "left")
    for run in runs:
        s = run.summary
        per_held = s.get("heap_bytes_per_held_connection", s.get("rss_bytes_per_held_connection"))
        table.add_row(
            run.layout, run.probe, run.status,
            _mib(s.get("idle_rss_bytes")), _mib(s.get("held_rss_bytes")),
            _num(s.get("bytes_per_slot"), 1), _num(per_held, 0), _num(s.get("req_per_s"), 0),
            format_in_unit("us", s.get("cpu_us_per_request")), _num(s.get("errors"), 0),
        )
    console.print(table)
    # A run can complete and still have failed some clients (503s, resets): say so under the table.
    for run in runs:
        for warning in run.document.get("warnings", []):
            console.print(f"[yellow]warning:[/yellow] {run.layout}/{run.probe}: {warning}")


def _mib(value) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def _num(value, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"
