"""``memdiet view ...``: the viewer's command line as a memdiet subcommand.

``memdiet view chart RUN_DIR`` is ``python -m tracemalloc_viewer chart RUN_DIR`` with ``memdiet view``
as the program name: everything after ``view`` goes to :func:`tracemalloc_viewer.cli.main` as is,
``--help`` included. memdiet finds this module through its list of plugged commands
(``experiments.cli._PLUGGED_COMMANDS``); this module imports nothing from memdiet.
"""

from __future__ import annotations

import argparse

PROG = "memdiet view"
#: A prefix no command-line argument can hold (C strings end at NUL): with it, ``view``'s own
#: parser sees every argument, ``-h`` and ``--help`` too, as a plain word to pass on.
_NO_OPTIONS = "\0"


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``view`` to memdiet's subcommands (``commands``, from ``add_subparsers``)."""
    view = commands.add_parser(
        "view", add_help=False, prefix_chars=_NO_OPTIONS,
        help="tracemalloc_viewer: top, diff, timeline, chart, massif on dumps, captures and run folders "
             "(memdiet view --help)")
    view.add_argument("viewer_argv", nargs=argparse.REMAINDER, metavar="COMMAND ...")
    view.set_defaults(func=run)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    """Run the viewer on the arguments after ``view``; returns its exit status."""
    from .cli import main

    try:
        return main(args.viewer_argv, prog=PROG)
    except SystemExit as exit_:  # argparse's --help and usage errors
        return exit_.code if isinstance(exit_.code, int) else 1
