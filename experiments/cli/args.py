"""What memdiet's commands share: the parser, argument types, run options, the console, interrupts.

Rules: a bad argument is one line on stderr and exit 2 (:class:`ArgumentParser`), never a usage
block or a traceback; tables and progress go to stderr (:func:`stderr_console`), so stdout holds
only what a command is asked for (``memdiet export``'s table, ``memdiet regress``'s verdict); SIGTERM
and SIGINT unwind a command through :class:`~experiments.measure.runner.Interrupted`
(:func:`install_interrupt_handlers`), which stops what it started. Only :mod:`experiments.cli`
imports this module.
"""

from __future__ import annotations

import argparse
import signal
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from rich.console import Console

from server.cli import bounded

from ..errors import EXIT_BAD_INPUT
from ..measure.runner import Interrupted
from ..measure.scenario import DEFAULT_RUNS_DIR, RunConfig

#: Columns rich may use when stderr is not a terminal (a pipe, ``| tee``, a CI log): wide enough
#: that no table cell is cut (rich would assume 80 and print ``compl…``); tables still take only
#: the width they need.
LOG_WIDTH = 1000


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors on one line (``memdiet: error: ...``) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"memdiet: error: {message}\n")


def choices_list(valid: Sequence[str], what: str) -> Callable[[str], list[str]]:
    """An argument type for a comma-separated list of ``valid`` names (``what`` names one in the error)."""
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in valid]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown) or text!r}; choose from {', '.join(valid)}")
        return items
    return parse


def add_run_options(parser: argparse.ArgumentParser, defaults: RunConfig) -> None:
    """The options of one run (sizes, phase lengths, sampling, where run folders go); read them
    back with :func:`config_from`."""
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
    parser.add_argument("--frames", type=bounded(int, 1, 200, "a whole number of frames"), default=None,
                        help="frames the tracemalloc probe keeps per traceback: the call stacks of its phase-end dumps "
                             f"and massif.out trees; more frames cost more CPU and tracer memory (default: "
                             f"{defaults.trace_frames})")
    parser.add_argument("--start-timeout", type=bounded(float, 0.5, 3600, "seconds"), default=None,
                        help="seconds the subject may take to listen and its probe to settle (default: the probe's, "
                             "60 s untraced, longer under the tracers and valgrind)")
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="where run folders go (default: reports/runs)")
    parser.add_argument("--heap-graph", action="store_true", default=None,
                        help="tracemalloc runs: a heap graph at the ends of idle-empty and idle-held, analysed into "
                             "owners.json (memdiet view owners RUN; docs/owners.md); off by default")


def config_from(args: argparse.Namespace, base: RunConfig) -> RunConfig:
    """``base`` with the run options given on the command line; ``argparse.ArgumentTypeError`` for
    options that contradict each other."""
    overrides = {
        "max_conns": args.max_conns, "connections": args.connections, "idle_s": args.idle,
        "load_s": args.load, "sample_hz": args.sample_hz, "detail_interval_s": args.detail_interval,
        "start_timeout_s": args.start_timeout, "trace_frames": args.frames,
        "heap_graph": getattr(args, "heap_graph", None),
    }
    config = replace(base, runs_dir=args.runs_dir, **{k: v for k, v in overrides.items() if v is not None})
    if config.connections > config.max_conns:
        raise argparse.ArgumentTypeError(f"--connections {config.connections} is more than --max-conns {config.max_conns}")
    return config


def stderr_console() -> Console:
    """The console progress and tables go to (stderr); outside a terminal, never narrower than
    :data:`LOG_WIDTH`. Every memdiet command that prints a rich table should print it here."""
    console = Console(stderr=True)
    return console if console.is_terminal else Console(stderr=True, width=LOG_WIDTH)


def install_interrupt_handlers() -> None:
    """SIGTERM and SIGINT raise :class:`~experiments.measure.runner.Interrupted` in the main thread:
    the command unwinds, stopping the servers and load generators it started in its ``finally``
    blocks, and ``main()`` exits 130."""
    def interrupt(signum, frame):
        raise Interrupted(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
