"""``memdiet bisect --good G --bad B --figure F --threshold X [--repeat K] (--preset lwan | --repo ...)``:
the first revision after G up to B where figure F crosses X, as ``git bisect run`` finds it.

F is a run summary's metric (``idle_rss_bytes``, ``held_rss_bytes``, ``rss_bytes_per_held_connection``,
``req_per_s``...; each step runs the scenario K times under ``--probe`` and keeps the median) or
``struct:NAME`` (a struct's size in bytes from the build's DWARF). X takes B, KiB or MiB
(``50MiB``). Unbuildable revisions are skipped as ``git bisect skip`` does; builds come from the
cache :mod:`.revisions` shares. Each step is printed on stderr; the answer too, and ``-o FILE``
writes every step as JSON. Exit 2 when good and bad do not straddle X (nothing to find).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..dataset.results import write_json
from ..paths import repository_relative
from ..errors import EXIT_OK
from ..measure.probes import PROBES
from ..revisions.bisect import STRUCT_PREFIX, Bisection
from .args import install_interrupt_handlers, stderr_console
from .revisions import add_subject_options, plan_from

_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "kb": 1000, "mb": 1000 ** 2}


def threshold(text: str) -> float:
    """``50MiB`` -> 52428800.0; a plain number as it is."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"--threshold {text!r}: a number, optionally with B, KiB, MiB or GiB")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    parser = commands.add_parser(name, help="find the first revision where a figure crosses a threshold")
    parser.add_argument("--good", required=True, help="a revision on the figure's first side")
    parser.add_argument("--bad", required=True, help="a later revision on the other side")
    parser.add_argument("--figure", required=True,
                        help=f"a run summary's metric (idle_rss_bytes, rss_bytes_per_held_connection...) or "
                             f"{STRUCT_PREFIX}NAME (a struct's size from DWARF)")
    parser.add_argument("--threshold", required=True, type=threshold, help="the value crossed (B, KiB, MiB: 50MiB)")
    parser.add_argument("--repeat", type=int, default=1, metavar="K", help="runs per step, median kept (default: 1)")
    parser.add_argument("--probe", default="rss", choices=list(PROBES), help="the probe each run uses (default: rss)")
    parser.add_argument("-o", "--out", type=Path, help="write the steps and the answer here as JSON")
    add_subject_options(parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    console = stderr_console()
    plan, _config = plan_from(args, parser)
    install_interrupt_handlers()
    bisection = Bisection(plan, args.figure, args.threshold, args.repeat, args.probe, lambda line: console.print(line))
    document = bisection.bisect(args.good, args.bad)
    if args.out is not None:
        write_json(args.out, repository_relative(document))
        console.print(f"wrote {args.out}")
    print(document["answer"])
    return EXIT_OK
