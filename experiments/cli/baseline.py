"""``memdiet baseline [--quick] [--repeat K] [-o reports/baseline.json] [run options] [RUN_DIR...]``.

Writes the regression baseline deliberately, from a fresh matrix (the full one, or ``--quick``, at
the run options given) or from given run folders: every summary figure of every layout, the
tolerance of each with the reason for it, the matrix parameters and the machine
(:func:`experiments.regress.make_baseline`). With ``--repeat K`` (K >= 3) it runs the matrix K
times, or reads K runs of each layout and probe from the folders given (the i-th of each, by folder
name, makes matrix i), and learns the tolerances of the figures that depend on the machine from
their spread (:func:`experiments.regress.make_learned_baseline`, the rule in
:mod:`experiments.regress.noise`); it prints what it learned. A matrix run that failed, a run folder
that did not complete or runs of different matrices: nothing is written, one line, exit 2; a
deterministic figure that did not reproduce across the K matrices: nothing is written, exit 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..dataset.results import RunResult, load_run
from ..errors import EXIT_OK
from ..measure.matrix import default_plan
from ..measure.scenario import FULL, QUICK
from ..regress import (
    DEFAULT_BASELINE,
    MIN_REPEAT,
    BaselineError,
    make_baseline,
    make_learned_baseline,
    write_baseline,
)
from ..render.regression_md import learned_tolerance_table
from .args import add_run_options, config_from
from .regress import REGRESS_LATEST_DIR, run_plan

#: Run options that shape a new matrix, meaningless with given run folders.
_NEW_MATRIX_OPTIONS = ("max_conns", "connections", "idle", "load", "sample_hz")


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    parser = commands.add_parser(name, help="write a new regression baseline from a matrix or run folders")
    parser.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR",
                        help="run folders of one matrix (default: run a new matrix)")
    parser.add_argument("--quick", action="store_true", help="run the quick matrix")
    parser.add_argument("--repeat", type=_repeat, default=1, metavar="K",
                        help=f"run the matrix K >= {MIN_REPEAT} times (or read K runs of each layout and probe) and "
                             "learn the tolerances of the noisy figures from their spread (default: 1, the fixed policy)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_BASELINE, help=f"default: {DEFAULT_BASELINE}")
    parser.add_argument("--latest-dir", type=Path, default=REGRESS_LATEST_DIR,
                        help="where the new matrix's report goes (kept apart from reports/latest)")
    add_run_options(parser, FULL)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.runs and any(getattr(args, name) is not None for name in _NEW_MATRIX_OPTIONS):
        parser.error("run options (--max-conns, --connections, --idle, --load, --sample-hz) apply to a new matrix, "
                     "not to given run folders")
    if args.runs:
        matrices = split_matrices([load_run(path) for path in args.runs], args.repeat)
    else:
        plan = default_plan(args.quick)
        try:
            plan.base = config_from(args, QUICK if args.quick else FULL)
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
        matrices = []
        for index in range(args.repeat):
            if args.repeat > 1:
                print(f"baseline: matrix {index + 1} of {args.repeat}", file=sys.stderr, flush=True)
            runs, failures = run_plan(plan, args.latest_dir)
            if failures:
                raise BaselineError(f"{len(failures)} run(s) of matrix {index + 1} failed; no baseline written")
            matrices.append(runs)
    baseline = make_learned_baseline(matrices) if args.repeat > 1 else make_baseline(matrices[0])
    write_baseline(baseline, args.output)
    figures = sum(len(by_name) for by_name in baseline.figures.values())
    env = baseline.environment
    print(f"baseline: {args.output}: {figures} figures of {len(baseline.figures)} layouts, max_conns "
          f"{baseline.parameters.get('max_conns')}, C = {baseline.parameters.get('connections')}, made on "
          f"{env.get('cpu_model')} ({env.get('cpu_count')} cores), Python {env.get('python')}, commit "
          f"{str(env.get('commit'))[:10]}{' (with uncommitted changes)' if env.get('dirty') is True else ''}")
    if baseline.noise is not None:
        print(f"tolerances learned from {baseline.noise.repeat} matrices: {baseline.noise.rule}")
        print("\n".join(learned_tolerance_table(baseline)))
    return EXIT_OK


def _repeat(text: str) -> int:
    """``--repeat K``: 1 (no learning) or at least :data:`~experiments.regress.MIN_REPEAT`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number is expected, not {text!r}") from None
    if value != 1 and not MIN_REPEAT <= value <= 50:
        raise argparse.ArgumentTypeError(f"{value}: give 1 (one matrix, the fixed policy) or {MIN_REPEAT} to 50 "
                                         f"matrices to learn the noise from")
    return value


def split_matrices(runs: list[RunResult], repeat: int) -> list[list[RunResult]]:
    """Given run folders as ``repeat`` matrices: the runs of each layout and probe in folder-name
    (time) order, the i-th of each making matrix i; :class:`BaselineError` unless every layout and
    probe has exactly ``repeat`` runs."""
    if repeat == 1:
        return [runs]
    by_pair: dict[tuple[str, str], list[RunResult]] = {}
    for run in sorted(runs, key=lambda r: r.path.name):
        by_pair.setdefault((run.layout, run.probe), []).append(run)
    wrong = [f"{layout}/{probe} has {len(group)}" for (layout, probe), group in by_pair.items() if len(group) != repeat]
    if wrong:
        raise BaselineError(f"--repeat {repeat} needs {repeat} runs of each layout and probe: {', '.join(wrong)}")
    return [[group[index] for group in by_pair.values()] for index in range(repeat)]
