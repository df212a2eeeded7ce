"""``memdiet``: run experiments and render their reports.

    memdiet run --layout nofd --probe tracemalloc [--max-conns N --connections C ...]
    memdiet matrix [--quick] [--layouts a,b] [--probes rss,tracemalloc] [--latest-dir DIR]
    memdiet report RUN_DIR... [-o reports/latest] [--allow-mixed]
    memdiet regress [--quick] [--format markdown|json|github] [RUN_DIR...]
    memdiet baseline [--quick] [--repeat K] [RUN_DIR...]
    memdiet history [--history reports/history.jsonl] [--metrics a,b]
    memdiet sweep [--quick] [--layouts a,b] [-o reports/latest/sweep]
    memdiet export RUN_DIR [--format csv|json]    memdiet bench [--quick]
    memdiet view COMMAND ...

Rules: the commands are the explicit list :data:`COMMANDS`, one module each in this package; a
command module has ``add_parser(commands, name)``, which adds its subparser, and ``run(args,
parser) -> int``, which returns the exit code. Shared argument helpers are in :mod:`.args`.
Nothing outside this package imports it.

Exit codes, mapped in one place (:func:`main`): 0 done; 1 a run failed or a check did not pass
(:class:`~experiments.errors.ExperimentError`); 2 bad arguments or unusable input
(:class:`~experiments.errors.BadInput`, and argparse's errors), including a run that would need
more memory than the machine has available (see :mod:`experiments.measure.budget`); 130 interrupted
(Ctrl-C, SIGTERM): what the command started is stopped, and a run in progress marks itself
incomplete. An error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Sequence

from tracemalloc_viewer.errors import ViewerInputError, tolerate_any_terminal

from ..errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, ExperimentError
from ..measure.runner import Interrupted
from . import baseline, bench, bisect, export, history, matrix, regress, report, revisions, run, sweep, view
from .args import ArgumentParser

#: memdiet's commands, in the order ``memdiet --help`` lists them: (name, module).
COMMANDS: tuple[tuple[str, ModuleType], ...] = (
    ("run", run),
    ("matrix", matrix),
    ("report", report),
    ("regress", regress),
    ("baseline", baseline),
    ("history", history),
    ("sweep", sweep),
    ("export", export),
    ("bench", bench),
    ("view", view),
    ("revisions", revisions),
    ("bisect", bisect),
)

INTERRUPTED = ("memdiet: interrupted; what it started was stopped, and a run in progress is marked incomplete "
               "(earlier results are kept)")


def build_parser() -> argparse.ArgumentParser:
    """memdiet's parser, with one subparser per command of :data:`COMMANDS`."""
    parser = ArgumentParser(prog="memdiet", description="Measure where a server's memory goes, layout by layout.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    for name, module in COMMANDS:
        module.add_parser(commands, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names (default: ``sys.argv[1:]``); return its exit code."""
    tolerate_any_terminal()
    parser = build_parser()
    args = parser.parse_args(argv)
    command = dict(COMMANDS)[args.command]
    try:
        return command.run(args, parser)
    except ExperimentError as error:
        print(error.line(f"{parser.prog} {args.command}"), file=sys.stderr)
        return error.exit_code
    except ViewerInputError as error:  # a file read through the viewer's layer (dumps, captures, massif.out)
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (Interrupted, KeyboardInterrupt):
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
