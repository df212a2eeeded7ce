"""``memdiet baseline [--quick] [-o reports/baseline.json] [run options] [RUN_DIR...]``.

Writes the regression baseline deliberately, from a fresh matrix (the full one, or ``--quick``, at
the run options given) or from given run folders: every summary figure of every layout, the
tolerance of each with the reason for it, the matrix parameters and the machine
(:func:`experiments.regress.make_baseline`). A matrix run that failed, a run folder that did not
complete or runs of different matrices: nothing is written, one line, exit 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..dataset.results import load_run
from ..errors import EXIT_OK
from ..measure.matrix import default_plan
from ..measure.scenario import FULL, QUICK
from ..regress import DEFAULT_BASELINE, BaselineError, make_baseline, write_baseline
from .args import add_run_options, config_from
from .regress import REGRESS_LATEST_DIR, run_plan

#: Run options that shape a new matrix, meaningless with given run folders.
_NEW_MATRIX_OPTIONS = ("max_conns", "connections", "idle", "load", "sample_hz")


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    parser = commands.add_parser(name, help="write a new regression baseline from a matrix or run folders")
    parser.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR",
                        help="run folders of one matrix (default: run a new matrix)")
    parser.add_argument("--quick", action="store_true", help="run the quick matrix")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_BASELINE, help=f"default: {DEFAULT_BASELINE}")
    parser.add_argument("--latest-dir", type=Path, default=REGRESS_LATEST_DIR,
                        help="where the new matrix's report goes (kept apart from reports/latest)")
    add_run_options(parser, FULL)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.runs and any(getattr(args, name) is not None for name in _NEW_MATRIX_OPTIONS):
        parser.error("run options (--max-conns, --connections, --idle, --load, --sample-hz) apply to a new matrix, "
                     "not to given run folders")
    if args.runs:
        runs = [load_run(path) for path in args.runs]
    else:
        plan = default_plan(args.quick)
        try:
            plan.base = config_from(args, QUICK if args.quick else FULL)
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
        runs, failures = run_plan(plan, args.latest_dir)
        if failures:
            raise BaselineError(f"{len(failures)} run(s) of the matrix failed; no baseline written")
    baseline = make_baseline(runs)
    write_baseline(baseline, args.output)
    figures = sum(len(by_name) for by_name in baseline.figures.values())
    env = baseline.environment
    print(f"baseline: {args.output}: {figures} figures of {len(baseline.figures)} layouts, max_conns "
          f"{baseline.parameters.get('max_conns')}, C = {baseline.parameters.get('connections')}, made on "
          f"{env.get('cpu_model')} ({env.get('cpu_count')} cores), Python {env.get('python')}, commit "
          f"{str(env.get('commit'))[:10]}{' (with uncommitted changes)' if env.get('dirty') is True else ''}")
    return EXIT_OK
