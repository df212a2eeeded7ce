"""``memdiet view COMMAND ...``: tracemalloc_viewer (top, diff, timeline, chart, massif) as a memdiet command.

Every argument after ``view`` goes to the viewer untouched (:func:`tracemalloc_viewer.memdiet_command.run`),
``-h`` and ``--help`` too, so ``memdiet view --help`` is the viewer's help under the name ``memdiet
view``, and the viewer's errors and exit codes are its own (``memdiet view: error: ...``, exit 2).
"""

from __future__ import annotations

import argparse

from tracemalloc_viewer import memdiet_command

#: A prefix no command-line argument can hold (C strings end at NUL): with it, ``view``'s own
#: parser sees every argument, ``-h`` and ``--help`` too, as a plain word to pass on.
_NO_OPTIONS = "\0"


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    parser = commands.add_parser(
        name, add_help=False, prefix_chars=_NO_OPTIONS,
        help="tracemalloc_viewer: top, diff, timeline, chart, massif on dumps, captures and run folders "
             "(memdiet view --help)")
    parser.add_argument("viewer_argv", nargs=argparse.REMAINDER, metavar="COMMAND ...")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return memdiet_command.run(args.viewer_argv)
