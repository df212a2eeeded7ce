"""``memdiet export RUN_DIR [--format csv|json] [-o FILE]``: a run's time series as one table.

The table is :mod:`experiments.render.export`'s; this command writes it to stdout (nothing else goes
there) or atomically to ``-o FILE``. An unreadable run folder or an unwritable file: one line, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..dataset.results import write_atomic
from ..errors import EXIT_OK, BadInput
from ..render.export import FORMATS, export


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    parser = commands.add_parser(
        name, help="a run's time series (time, RSS, heap, per-site bytes) as one CSV or JSON table",
        description="Write a run folder's rss.csv, heap.csv and sites.csv merged on one time axis, at full "
                    "resolution (blank where a file has no sample at that time).")
    parser.add_argument("run", type=Path, metavar="RUN_DIR")
    parser.add_argument("--format", choices=FORMATS, default="csv", help="csv (default) or json")
    parser.add_argument("-o", "--output", type=Path, default=None, help="file to write (default: stdout)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    text = export(args.run, args.format)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        write_atomic(args.output, text)
    except OSError as error:
        raise BadInput(f"{args.output}: cannot write ({error.strerror or error})") from None
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK
