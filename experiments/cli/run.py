"""``memdiet run (--subject S | --layout L | --cmd "COMMAND" [--name N]) --probe P [run options]``: one
subject under one probe.

A subject is one of memdiet's layouts, a named peer (uvicorn, aiohttp, asyncio, nginx) or any command
(``--cmd``, split as a shell would and never run by one; ``{port}`` in it becomes a free loopback
port, else the port is found from the listening sockets of its process tree). Writes one run folder
(``reports/runs/<UTC time>-<subject>-<probe>/``) and prints a summary table (and a tracemalloc run's RSS ledger) on
stderr. A run the machine has not the memory for is refused before anything starts (exit 2); a run
that does not complete raises :class:`~experiments.measure.runner.RunFailed` (exit 1, its folder
kept and marked incomplete). :func:`refuse_if_too_big` and :func:`print_summary` serve ``memdiet
matrix`` too.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

from server.layouts import LAYOUTS

from ..dataset.results import RunResult, load_run
from ..errors import EXIT_OK
from ..measure.budget import memory_problem
from ..measure.probes import PROBES
from ..measure.runner import run_once
from ..measure.scenario import RUN, RunConfig
from ..measure.subjects import subject_names
from ..render.ledger import ledger_table
from ..render.units import format_in_unit, human_bytes
from .args import add_run_options, config_from, install_interrupt_handlers, stderr_console


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    parser = commands.add_parser(name, help="run one subject (a layout, a peer, any command) under one probe")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--subject", choices=subject_names(), metavar="SUBJECT",
                       help=f"what to run: a layout or a peer ({', '.join(subject_names())})")
    which.add_argument("--layout", choices=list(LAYOUTS), help="memdiet's server with this layout (as --subject)")
    which.add_argument("--cmd", metavar="COMMAND",
                       help="any server's command line, run without a shell; {port} in it becomes a free loopback "
                            "port, else the port is found from the listening sockets of its process tree")
    parser.add_argument("--name", default=None, help="with --cmd: the name its runs are filed under (default: "
                                                     "the script or module a Python command runs, else the "
                                                     "command's file name)")
    parser.add_argument("--probe", default="rss", choices=list(PROBES),
                        help="how memory is measured: rss from outside (default; the whole process tree); "
                             "tracemalloc or memray inside (Python subjects: injected at interpreter start); "
                             "massif (valgrind, any program)")
    add_run_options(parser, RUN)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.name is not None and args.cmd is None:
        parser.error("--name goes with --cmd")
    name = args.subject or args.layout or args.name or ""
    try:
        config = config_from(args, replace(RUN, subject=name, probe=args.probe, cmd=args.cmd))
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    if config.heap_graph and config.probe != "tracemalloc":
        parser.error(f"--heap-graph goes with --probe tracemalloc (the graph's allocation lines are tracemalloc's), not {config.probe}")
    if config.subject in LAYOUTS:
        refuse_if_too_big([config], parser)
    console = stderr_console()
    install_interrupt_handlers()
    with console.status(f"{config.subject}/{config.probe}: starting") as status:
        run_dir = run_once(config, lambda phase: status.update(f"{config.subject}/{config.probe}: {phase}"))
    result = load_run(run_dir)
    console.print(f"run written to {run_dir}")
    print_summary(console, [result])
    print_ledger(console, result)
    return EXIT_OK


def refuse_if_too_big(configs: Iterable[RunConfig], parser: argparse.ArgumentParser) -> None:
    """Exit 2 with one line when the largest run would not fit in the memory available."""
    problem = memory_problem(configs)
    if problem:
        parser.error(problem)


def print_summary(console: Console, runs: Sequence[RunResult]) -> None:
    """The runs' headline figures as one table, then any client warnings (503s, resets) below it."""
    table = Table(title="memdiet runs")
    # One quantity per column: RSS per held connection (from outside, every run) and the traced heap
    # per held connection (tracemalloc, memray) apart, never one standing in for the other.
    for column in ("subject", "probe", "status", "idle RSS", "held RSS", "idle PSS", "heap B/slot",
                   "RSS B/held conn", "heap B/held conn", "req/s", "CPU/req", "errors"):
        table.add_column(column, justify="right" if column not in ("subject", "probe", "status") else "left")
    for result in runs:
        s = result.summary
        missing = result.document.get("not_measured") or {}

        def cell(key: str, text: str) -> str:
            return "not measured" if key in missing else text

        table.add_row(
            result.subject, result.probe, result.status,
            _mib(s.get("idle_rss_bytes")), _mib(s.get("held_rss_bytes")), _mib(s.get("idle_pss_bytes")),
            _num(s.get("bytes_per_slot"), 1),
            cell("rss_bytes_per_held_connection", _num(s.get("rss_bytes_per_held_connection"), 0)),
            cell("heap_bytes_per_held_connection", _num(s.get("heap_bytes_per_held_connection"), 0)),
            cell("req_per_s", _num(s.get("req_per_s"), 0)),
            cell("cpu_us_per_request", format_in_unit("us", s.get("cpu_us_per_request"))), _num(s.get("errors"), 0),
        )
    console.print(table)
    # A run can complete and still have failed some clients (503s, resets): say so under the table,
    # and why a figure was not measured.
    for result in runs:
        for warning in result.document.get("warnings", []):
            console.print(f"[yellow]warning:[/yellow] {result.subject}/{result.probe}: {warning}")
        reasons: dict[str, list[str]] = {}
        for key, reason in (result.document.get("not_measured") or {}).items():
            reasons.setdefault(reason, []).append(key)
        for reason, keys in reasons.items():
            console.print(f"not measured: {result.subject}/{result.probe}: {', '.join(keys)}: {reason}")


def print_ledger(console: Console, result: RunResult) -> None:
    """The run's RSS ledger (a tracemalloc run's), one row per part, when it has one."""
    ledger = ledger_table(result)
    if ledger is None:
        return
    per_held = ledger.per_held_column()
    columns = [("bare interpreter", ledger.bare), *((name, ledger.phases.get(name)) for name in ledger.phases),
               (f"per held conn. (C = {ledger.connections:,})", per_held)]
    document = result.document.get("rss_ledger") or {}
    processes = document.get("processes") or {}
    summed = f", summed over its {len(processes)} traced processes" if len(processes) > 1 else ""
    table = Table(title=f"RSS ledger: {result.subject} (every part measured; the remainder is what none explains"
                        f"{summed})")
    table.add_column("part")
    for name, _moment in columns:
        table.add_column(name, justify="right")
    for part in [*ledger.labels, "RSS"]:
        cells = []
        for _name, moment in columns:
            value = None if moment is None else moment.rss_bytes if part == "RSS" else moment.parts.get(part)
            cells.append("-" if value is None else human_bytes(value))
        table.add_row(part, *cells)
    console.print(table)
    if document.get("per_held_connection_not_measured"):
        console.print(f"not measured: per held connection: {document['per_held_connection_not_measured']}")
    if len(processes) > 1:
        print_ledger_by_process(console, result, processes)


def print_ledger_by_process(console: Console, result: RunResult, processes: dict[str, Any]) -> None:
    """What one more held connection costs in each traced process (the master and each worker):
    RSS, Python heap and allocator from its own ledger, the traced heap from its own dumps."""
    heap = {entry.get("pid"): entry for entry in result.document.get("traced_processes", [])}
    table = Table(title=f"per held connection, by process: {result.subject}")
    for column in ("pid", "process", "RSS", "Python heap", "allocator", "traced heap"):
        table.add_column(column, justify="left" if column == "process" else "right")
    for key, entry in processes.items():
        per_held = entry.get("per_held_connection") or {}
        argv = " ".join(entry.get("argv") or [])[:48] or "?"
        traced = heap.get(entry.get("pid"), {}).get("heap_bytes_per_held_connection")
        table.add_row(key, ("root: " if entry.get("root") else "") + argv,
                      *(human_bytes(per_held[kind]) if per_held.get(kind) is not None else "-"
                        for kind in ("rss", "python_heap", "allocator")),
                      human_bytes(traced) if traced is not None else "-")
    console.print(table)


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def _num(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"
