"""``memdiet bench``: the layouts side by side with uvicorn, aiohttp and plain asyncio.

    memdiet bench [--quick] [--trials K] [--held 1000,5000] [--duration S] [--layouts a,b]
                  [--peers uvicorn,aiohttp,asyncio] [--tool auto|wrk|loadgen] [--strict] [--profile]
                  [-o reports/bench]

``--profile`` adds, after the trials, one throughput run per subject under cProfile (stats in
``<output>/profiles/``, a section in bench.md; see :mod:`experiments.bench.profile`).

Exit codes: 0 every trial (and profile) completed; 1 a trial failed, a profile could not be obtained
or ``--strict`` refused to time (the report is written with what was measured); 2 bad arguments (one
line); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from server.cli import bounded
from server.layouts import LAYOUTS

from ..bench.document import build_document, describe_machine
from ..bench.measure import PROFILED_RUN, BenchPlan, run_bench, run_profiles
from ..dataset.bench_format import held_key
from ..bench.subjects import INSTALL_HINT, PEERS, layout_subjects
from ..bench.throughput import ThroughputError, choose_tool
from ..errors import EXIT_FAILED, EXIT_OK
from ..loadgen import FD_MARGIN, fd_hard_limit
from ..paths import REPORTS_DIR
from ..render.bench_md import MARKDOWN_FILE, format_ratio, format_value, write_reports
from .args import choices_list, install_interrupt_handlers, stderr_console

DEFAULT_OUTPUT = REPORTS_DIR / "bench"
TOOLS = ("auto", "wrk", "loadgen")


def _held_counts(text: str) -> tuple[int, ...]:
    parse = bounded(int, 1, 1_000_000, "a whole number")
    counts = sorted({parse(item.strip()) for item in text.split(",") if item.strip()})
    if not counts:
        raise argparse.ArgumentTypeError(f"expected connection counts such as 1000,5000, got {text!r}")
    return tuple(counts)


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    bench = commands.add_parser(
        name, help="the layouts side by side with uvicorn, aiohttp and plain asyncio (writes reports/bench)",
        description="Measure every memdiet layout and the peers with one method, in one run: idle RSS, RSS "
                    "with N held keep-alive connections, bytes per connection, keep-alive req/s and CPU.")
    bench.add_argument("--quick", action="store_true",
                       help="one trial, N = 1,000, a 3 s throughput run: about a minute")
    bench.add_argument("--trials", type=bounded(int, 1, 20, "a whole number"), default=None,
                       help="trials per subject, each a fresh process (default: 3; --quick: 1)")
    bench.add_argument("--held", type=_held_counts, default=None, metavar="N[,N...]",
                       help="keep-alive connections held for the memory readings (default: 1000,5000; --quick: 1000)")
    bench.add_argument("--duration", type=bounded(int, 1, 600, "whole seconds"), default=None,
                       help="seconds of each throughput run (default: 10; --quick: 3)")
    bench.add_argument("--load-connections", type=bounded(int, 1, 10_000, "a whole number"), default=50,
                       help="connections of the throughput run (default: 50)")
    bench.add_argument("--layouts", type=choices_list(list(LAYOUTS), "layout"), default=None,
                       help="memdiet layouts to measure (default: all)")
    bench.add_argument("--peers", type=choices_list(list(PEERS), "peer"), default=None,
                       help="peers to measure (default: all installed)")
    bench.add_argument("--tool", choices=TOOLS, default="auto",
                       help="throughput tool: wrk when on PATH (auto), wrk, or experiments.loadgen")
    bench.add_argument("--strict", action="store_true",
                       help="refuse to time while another process uses more than a quarter of a core "
                            "(default: time anyway and record it)")
    bench.add_argument("--settle", type=bounded(float, 0, 30, "seconds"), default=None,
                       help="seconds before each memory reading (default: 1; --quick: 0.5)")
    bench.add_argument("--cpu-check", type=bounded(float, 0.1, 10, "seconds"), default=1.0,
                       help="seconds over which other processes' CPU is measured before timing (default: 1)")
    bench.add_argument("--profile", action="store_true",
                       help="after the trials, one more throughput run per subject under cProfile: where the "
                            "server's time goes, by category, in bench.md (stats in <output>/profiles/)")
    bench.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                       help="folder for bench.json, bench.md, bench.png and the servers' logs (default: reports/bench)")


def _plan_from(args: argparse.Namespace) -> BenchPlan:
    base = BenchPlan(trials=1, held=(1000,), duration_s=3, settle_s=0.5) if args.quick else BenchPlan()
    overrides = {"trials": args.trials, "held": args.held, "duration_s": args.duration, "settle_s": args.settle}
    return replace(base, load_connections=args.load_connections, cpu_check_s=args.cpu_check, strict=args.strict,
                   python=sys.executable, **{k: v for k, v in overrides.items() if v is not None})


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    plan = _plan_from(args)
    needed = max(plan.held) + FD_MARGIN
    if needed > fd_hard_limit():
        parser.error(f"--held {max(plan.held)} needs about {needed} file descriptors, above RLIMIT_NOFILE's hard "
                     f"limit of {fd_hard_limit()}")
    try:
        tool, tool_note = choose_tool(args.tool, plan.python)
    except ThroughputError as error:
        parser.error(str(error))
    notes = []
    peers = []
    for name in args.peers or list(PEERS):
        missing = PEERS[name].missing_packages()
        if missing and args.peers:
            parser.error(f"peer {name} needs {', '.join(missing)}, not installed; {INSTALL_HINT}")
        if missing:
            notes.append(f"{name} skipped: {', '.join(missing)} not installed ({INSTALL_HINT})")
        else:
            peers.append(PEERS[name])
    subjects = [*layout_subjects(args.layouts), *peers]

    console = stderr_console()
    for note in notes + ([tool_note] if tool_note else []):
        console.print(f"[yellow]memdiet bench:[/yellow] {note}")
    install_interrupt_handlers()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = describe_machine(subjects, tool.version())
    with console.status("bench: starting") as status:
        def progress(label: str, index: int, phase: str) -> None:
            which = "profiled run" if index == PROFILED_RUN else f"trial {index}/{plan.trials}"
            status.update(f"bench: {label}, {which}: {phase}")

        trials, refused = run_bench(subjects, plan, tool, args.output / "logs", progress)
        profiles = None
        if args.profile:
            profiles = (run_profiles(subjects, plan, tool, args.output, progress) if refused is None else
                        {subject.name: {"ok": False, "error": f"not profiled: {refused}"} for subject in subjects})
    document = build_document(plan=plan, subjects=subjects, trials=trials, tool_name=tool.name,
                              tool_version=tool.version(), tool_note=tool_note, refused=refused,
                              started_utc=started, quick=args.quick, machine=machine, notes=notes,
                              profiles=profiles)
    paths = write_reports(document, args.output)
    _print_summary(console, document)
    if tool_note:
        console.print(f"[yellow]note:[/yellow] {tool_note}")
    if refused:
        console.print(f"[red]memdiet bench:[/red] {refused}")
    for subject in document["subjects"]:
        for trial in subject["trials"]:
            if not trial["ok"]:
                console.print(f"[red]failed:[/red] {subject['label']} trial {trial['trial']}: {trial['error']}")
    for profile in document["profiles"] or []:
        if not profile["ok"]:
            console.print(f"[red]no profile:[/red] {profile['label']}: {profile['error']}")
    console.print(f"report: {args.output / MARKDOWN_FILE} ({', '.join(p.name for p in paths)})")
    return EXIT_OK if document["status"] == "complete" else EXIT_FAILED


def _print_summary(console: Console, document: dict) -> None:
    n = max(document["plan"]["held"])
    keys = [("idle_rss_bytes", "idle RSS"), (held_key("held_rss_bytes", n), f"RSS {n:,} held"),
            (held_key("bytes_per_connection", n), "B/held conn"), ("req_per_s", "req/s")]
    units = {metric["key"]: metric["unit"] for metric in document["metrics"]}
    table = Table(title=f"memdiet bench ({document['throughput_tool']['name']}; medians)")
    table.add_column("subject")
    for _, title in keys:
        table.add_column(title, justify="right")
    table.add_column("req/s x asyncio", justify="right")
    for subject in document["subjects"]:
        summary = subject["summary"]
        cells = [(f"{summary[key]['median']:,.0f}" if units[key] == "req/s" else format_value(units[key], summary[key]["median"]))
                 if key in summary else "-" for key, _ in keys]
        ratio = subject["ratios"].get("req_per_s", {}).get("asyncio")
        table.add_row(subject["label"], *cells, format_ratio(ratio))
    console.print(table)
