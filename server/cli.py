"""``python -m server``: parse arguments, build the layout's table, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import signal
import sys
from pathlib import Path
from typing import Sequence

from .fdlimit import raise_soft_to_hard
from .layouts import LAYOUTS, make_table

#: Upper bound on --max-conns, whatever RLIMIT_NOFILE says.
MAX_CONNS_CEILING = 1 << 24


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one readable line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def bounded(kind: type, low: float, high: float, what: str, *, low_inclusive: bool = True):
    """An argparse type: parse with ``kind`` (int or float), then require ``low <= value <= high``
    (``low < value`` when not ``low_inclusive``); ``what`` names the expected value in errors."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        above_low = value >= low if low_inclusive else value > low
        if not (above_low and value <= high):
            lowest = f"at least {low}" if low_inclusive else f"more than {low}"
            raise argparse.ArgumentTypeError(f"must be {lowest} and at most {high}, got {text}")
        return value
    return parse


def _client_address(text: str) -> str:
    """A --stats-from entry: an IP address or a network in CIDR form (``10.0.0.0/8``)."""
    try:
        if "/" in text:
            ipaddress.ip_network(text, strict=False)
        else:
            ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an IP address or network, got {text!r}") from None
    return text


_positive_int = bounded(int, 1, MAX_CONNS_CEILING, "a whole number")
_port = bounded(int, 0, 65535, "a port number")
_seconds = bounded(float, 0, 86400, "seconds", low_inclusive=False)
_hertz = bounded(float, 0, 1000, "samples per second", low_inclusive=False)
#: Frames tracemalloc keeps per traceback under ``--trace tracemalloc`` (``tracemalloc.start(N)``): 8
#: shows who called the allocating line, several callers deep, in the phase-end dumps (massif.out
#: trees, ``top --by traceback``); 1 is tracemalloc's own default and the cheapest (docs/runs.md, "What a probe costs").
DEFAULT_TRACE_FRAMES = 8
#: Up to 200 frames, the viewer's and massif's largest ``--depth``; tracemalloc itself allows 65,535.
_trace_frames = bounded(int, 1, 200, "a whole number of frames")


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="python -m server", description=__doc__)
    parser.add_argument("--layout", choices=list(LAYOUTS), default="naive",
                        help="connection-state layout (default: naive)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8080, help="port; 0 picks a free one (default: 8080)")
    parser.add_argument("--max-conns", type=_positive_int, default=None,
                        help="slots in the connection table, one per fd (default: RLIMIT_NOFILE, soft raised to hard)")
    parser.add_argument("--keep-alive-timeout", type=_seconds, default=15.0,
                        help="seconds an idle or incomplete connection is kept (default: 15)")
    parser.add_argument("--max-body", type=_positive_int, default=1 << 20,
                        help="largest request body in bytes; larger gets 413 (default: 1048576)")
    parser.add_argument("--stats-from", action="append", default=None, metavar="ADDRESS", type=_client_address,
                        help="client address or network (CIDR) allowed to read /__stats, instead of the loopback "
                             "clients (repeatable; default: 127.0.0.0/8 and ::1)")
    parser.add_argument("--trace", choices=("tracemalloc", "memray"), default=None,
                        help="trace allocations from before the table is built: tracemalloc (totals also in "
                             "/__stats) or memray (Python allocators traced); files go to --trace-dir")
    parser.add_argument("--trace-dir", default=None, metavar="DIR",
                        help="folder for the tracer's files (heap.csv, sites.csv, snapshots/, memray.bin, table.json)")
    parser.add_argument("--trace-hz", type=_hertz, default=50.0,
                        help="tracemalloc totals sampled per second (default: 50)")
    parser.add_argument("--detail-interval", type=_seconds, default=2.0,
                        help="seconds between detailed per-site tracemalloc snapshots, at least (default: 2)")
    parser.add_argument("--trace-frames", type=_trace_frames, default=DEFAULT_TRACE_FRAMES, metavar="N",
                        help="frames tracemalloc keeps per traceback, the allocating line first: the dumps' call "
                             f"stacks (default: {DEFAULT_TRACE_FRAMES}; sites.csv stays keyed by the allocating line)")
    parser.add_argument("--trace-heap-graph", action="store_true",
                        help="with --trace tracemalloc: write a heap graph (snapshots/NAME.graph) each time the runner "
                             "names one in TRACE_DIR/graph-requests (memdiet run --heap-graph)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.trace and not args.trace_dir and args.trace == "memray":
        parser.error("--trace memray needs --trace-dir")
    trace_dir = Path(args.trace_dir) if args.trace_dir else None
    if trace_dir is not None:
        try:
            trace_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            parser.error(f"cannot create --trace-dir {trace_dir}: {error.strerror}")
    if args.trace == "memray":
        import memray  # only this layout of the process pays for the import

        with memray.Tracker(trace_dir / "memray.bin", trace_python_allocators=True, memory_interval_ms=10):
            return _run(args, trace_dir)
    if args.trace == "tracemalloc":
        import threading  # the sampler's thread: the probe's module, imported untraced
        import tracemalloc

        from . import memstats

        # The probe's allocator reader (ctypes, its caches) is made before tracing starts: it is the
        # probe's, not the server's heap (it would add 0.3 MiB to every figure).
        memstats.allocator_stats()
        tracemalloc.start(args.trace_frames)
    return _run(args, trace_dir)


def _run(args: argparse.Namespace, trace_dir: Path | None) -> int:
    nofile = min(raise_soft_to_hard(), MAX_CONNS_CEILING)
    max_conns = args.max_conns if args.max_conns is not None else nofile
    from .loop import Server  # after tracing starts, so the server's own objects are traced

    if args.trace == "tracemalloc":
        # Garbage the imports left (enum's temporary classes, ...) would otherwise be collected while
        # the table's objects are made, and its bytes taken off the table's (-2.4 KB at 4,096 slots).
        gc.collect()
    traced_before = _traced_bytes()
    table = make_table(args.layout, max_conns)
    table_heap_bytes = _traced_bytes() - traced_before if traced_before is not None else None
    try:
        server = Server(
            table, args.host, args.port,
            keep_alive_timeout=args.keep_alive_timeout,
            max_body_bytes=args.max_body,
            local_addresses=frozenset(args.stats_from) if args.stats_from else None,
        )
    except OSError as error:
        print(f"python -m server: error: cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        return 2
    if max_conns > nofile:
        server.log(f"--max-conns {max_conns} exceeds RLIMIT_NOFILE {nofile}: slots above it stay unused")
    if traced_before is not None:
        import tracemalloc

        # The peak that /__stats and heap.csv report is the serving peak: start-up transients
        # (imports, building the table) are left out; the table itself stays in the current figure.
        tracemalloc.reset_peak()
    sampler = None
    if args.trace == "tracemalloc" and trace_dir is not None:
        from .tracing import TracemallocSampler

        sampler_class: type = TracemallocSampler
        if args.trace_heap_graph:  # only then is the graph writer loaded (server/heapgraph.py)
            from .heapgraph import graph_sampler

            sampler_class = graph_sampler(TracemallocSampler)
        sampler = sampler_class(trace_dir, hz=args.trace_hz, detail_interval_s=args.detail_interval)
        sampler.start()
    # Counted once every descriptor the server keeps is open (the sampler's files too).
    usable_slots = server.usable_slots()
    if usable_slots is not None and usable_slots < min(max_conns, nofile) * 0.9:
        server.log(f"only {usable_slots} of the {max_conns} slots can hold a connection: the server's own "
                   f"{min(max_conns, nofile) - usable_slots} descriptors take the others (a slot's index is its fd)")
    if trace_dir is not None:
        from .tracing import write_json_atomic

        write_json_atomic(trace_dir / "table.json", {
            "layout": args.layout, "max_conns": max_conns, "table_heap_bytes": table_heap_bytes,
            "c_bytes_per_slot": table.c_bytes_per_slot(), "pid": os.getpid(), "usable_slots": usable_slots,
        })
    server.install_signal_handlers({signal.SIGUSR1: sampler.request_dump} if sampler else None)
    host, port = server.address
    shown_host = f"[{host}]" if ":" in host else host
    print(f"listening on {shown_host}:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        if sampler is not None:
            sampler.stop()
    return 0


def _traced_bytes() -> int | None:
    """Bytes traced by tracemalloc now, or None when it is not tracing."""
    import tracemalloc

    return tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
