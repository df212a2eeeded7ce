"""Command line: ``python -m tracemalloc_viewer top|diff|timeline|chart|massif|html ...``.

Bad input (a file that is not a snapshot or capture, a truncated one, an empty series, an output
that cannot be written) prints one ``error:`` line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .errors import ViewerInputError, tolerate_any_terminal
from .massif_tree import DEFAULT_DEPTH, DEFAULT_THRESHOLD
from .model import PEAK_ONLY, Detail, Series, Site
from .sources import TIME_MODES, LoadOptions, open_series
from .stats import KEYS

EXIT_BAD_INPUT = 2


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m tracemalloc_viewer",
        description="View tracemalloc dumps, memray captures and memdiet run folders: tables, diffs, charts, "
                    "massif.out export.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    top = commands.add_parser("top", help="table of allocation sites in one dump (or a capture's peak)")
    top.add_argument("snapshot", type=Path, help="tracemalloc dump, or memray capture (its peak is shown)")
    _grouping(top, with_traceback=True)
    _frames_option(top)

    diff = commands.add_parser("diff", help="size and count changes per site between two dumps")
    diff.add_argument("old", type=Path)
    diff.add_argument("new", type=Path)
    _grouping(diff, with_traceback=True)
    diff.add_argument("--order", choices=("change", "growth"), default="change",
                      help="change: largest absolute change first, as tracemalloc's compare_to (default); "
                           "growth: largest growth first")
    _frames_option(diff)

    timeline = commands.add_parser("timeline", help="stacked-area PNG/SVG of the top sites over a series")
    _series_input(timeline)
    timeline.add_argument("-o", "--output", type=Path, required=True, help="out.png or out.svg")
    timeline.add_argument("--top", type=_positive, default=10, help="sites drawn separately (10)")
    timeline.add_argument("--by", choices=("lineno", "filename"), default="lineno")
    timeline.add_argument("--title", default=None)

    chart = commands.add_parser("chart", help="ms_print-style text chart and the detailed snapshots' trees")
    _series_input(chart)
    chart.add_argument("--width", type=_int_between(4, 1000), default=72, help="columns (72)")
    chart.add_argument("--height", type=_int_between(4, 1000), default=20, help="rows (20)")
    _massif_options(chart)

    massif = commands.add_parser("massif", help="export a massif.out file (ms_print, massif-visualizer)")
    _series_input(massif)
    massif.add_argument("-o", "--output", type=Path, required=True, help="massif.out.NAME")
    _massif_options(massif)

    owners = commands.add_parser("owners", help="who keeps each held connection's bytes: owner types, retained "
                                                "trees, what a diet would save (a run folder's owners.json)")
    owners.add_argument("run", type=Path, help="a memdiet run folder (tracemalloc probe), or its owners.json")
    owners.add_argument("-n", "--limit", type=_positive, default=15, help="rows of the diet ranking (default 15)")

    page = commands.add_parser("html", help="one self-contained interactive page: curves, sites, comparisons")
    _series_input(page)
    page.add_argument("--also", action="append", type=Path, default=[], metavar="CAPTURE",
                      help="another capture on the same page, to compare with (a run folder, a memray capture, a "
                           "massif.out file, one dump); repeatable")
    page.add_argument("-o", "--output", type=Path, required=True, help="page.html")
    page.add_argument("--title", default=None, help="the page's title (default: the inputs' names)")
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    tolerate_any_terminal()
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        text = _run(args)
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
    except ViewerInputError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `... | head`: the reader left, nothing more to say
        sys.stderr.close()
        return 0
    return 0


def _run(args: argparse.Namespace) -> str:
    if args.command in ("top", "diff") and args.frames is not None and args.cumulative:
        raise ViewerInputError("--frames lists each row's call stacks, and a --cumulative row counts every frame "
                               "of a traceback: give one or the other")
    if args.command == "top":
        series, sites = _peak_sites(args.snapshot)
        from .outputs import top
        return top.render(sites, _describe_sample(args.snapshot, series), args.by, args.limit, args.cumulative,
                          args.bytes, args.frames)
    if args.command == "diff":
        old_series, old_sites = _peak_sites(args.old)
        new_series, new_sites = _peak_sites(args.new)
        from .outputs import diff
        title = f"{_describe_sample(args.old, old_series)}\n -> {_describe_sample(args.new, new_series)}"
        return diff.render(old_sites, new_sites, title, args.by, args.limit, args.cumulative, args.bytes, args.order,
                           args.frames)
    if args.command == "timeline":
        series = open_series(args.files, LoadOptions(Detail(every=1, at_most=400), args.time))
        from .outputs import timeline
        _check_output(args.output, timeline.FORMATS)
        _write(lambda: timeline.render(series, args.output, args.top, args.by, args.title), args.output)
        return f"wrote {args.output}\n"
    if args.command == "owners":
        from .outputs import owners
        return owners.render(owners.load(args.run), args.limit)
    if args.command == "html":
        from .outputs import html
        _check_output(args.output, html.FORMATS)
        captures = [html.capture_of(args.files, args.time), *(html.capture_of([path]) for path in args.also)]
        page = html.build(captures, args.title or " vs ".join(capture.name for capture in captures))
        _write(lambda: html.write_file(page, args.output), args.output)
        return html.summary(page, args.output)
    detail = Detail(every=args.detailed_freq)
    series = open_series(args.files, LoadOptions(detail, args.time))
    if args.command == "chart":
        from .outputs import chart
        return chart.render(series, detail, args.width, args.height, args.threshold, args.depth)
    if args.command == "massif":
        from .outputs import massif
        _write(lambda: massif.write(series, args.output, detail, args.threshold, args.depth), args.output)
        return (f"wrote {args.output}: {len(series)} snapshot{'s' if len(series) > 1 else ''}, "
                f"peak {series.peak.total_bytes} B at snapshot {series.peak_index}\n")
    raise AssertionError(f"unhandled command {args.command}")


# --- helpers -------------------------------------------------------------------------------------
def _peak_sites(path: Path) -> tuple[Series, tuple[Site, ...]]:
    series = open_series([path], LoadOptions(PEAK_ONLY))
    return series, series.peak.sites or ()


def _describe_sample(path: Path, series: Series) -> str:
    if len(series) == 1:
        return f"{path} ({series.source})"
    peak = series.peak
    return (f"{path} ({series.source}, peak: sample {series.peak_index} of {len(series)} "
            f"at {peak.time_s:.3f} s)")


def _check_output(path: Path, suffixes: Sequence[str]) -> None:
    if path.suffix.lower() not in suffixes:
        raise ViewerInputError(f"{path}: output must end with {' or '.join(suffixes)}")


def _write(action, path: Path) -> None:
    try:
        action()
    except OSError as error:
        raise ViewerInputError(f"{path}: cannot write ({error.strerror or error})") from None


def _grouping(parser: argparse.ArgumentParser, with_traceback: bool) -> None:
    parser.add_argument("--by", choices=KEYS if with_traceback else ("lineno", "filename"), default="lineno",
                        help="group by allocating line, file, or whole traceback (lineno)")
    parser.add_argument("--limit", type=_non_negative, default=10, help="rows shown, 0 for all (10)")
    parser.add_argument("--cumulative", action="store_true",
                        help="credit every frame of a traceback, not only the most recent (lineno, filename)")
    parser.add_argument("--bytes", action="store_true", help="exact byte counts instead of KiB/MiB")


def _frames_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=_positive, default=None, metavar="N",
                        help="call stacks under each row, N callers deep: with --by traceback the row's callers "
                             "(6 unless given); with --by lineno or filename the row's largest stacks (none unless "
                             "given). A dump keeps as many frames as tracemalloc.start(N) asked for")


def _series_input(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", type=Path, metavar="SNAPSHOT",
                        help="tracemalloc dumps (a series), or one memray capture, or one memdiet run folder")
    _time_option(parser)


def _time_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--time", choices=TIME_MODES, default="auto",
                        help="tracemalloc dumps' clock: sidecar JSON, file mtime, or index (auto: the first available)")


def _massif_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=_percent, default=DEFAULT_THRESHOLD,
                        help="percent of the heap below which sites merge into one node (1.0, as massif)")
    parser.add_argument("--detailed-freq", type=_positive, default=10,
                        help="every Nth snapshot is detailed, the peak always (10, as massif)")
    parser.add_argument("--depth", type=_int_between(1, 200), default=DEFAULT_DEPTH,
                        help="frames kept per traceback (30, as massif)")


def _positive(text: str) -> int:
    return _int_between(1, 2**62)(text)


def _non_negative(text: str) -> int:
    return _int_between(0, 2**62)(text)


def _int_between(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value
    return parse


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value} is not a percentage between 0 and 100")
    return value
