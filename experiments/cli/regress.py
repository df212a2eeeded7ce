"""``memdiet regress [--baseline reports/baseline.json] [--quick] [-o reports] [--format F] [--history FILE] [RUN_DIR...]``.

Runs the matrix again (``--quick``, or the matrix the baseline records) or reads given run folders,
compares every figure with the baseline within the baseline's own tolerances
(:func:`experiments.regress.compare`), writes ``regression.md`` (table and comparison chart) and
``regression.json`` (:mod:`experiments.render.regression_md`), and appends one record to the history
(``--history``, default ``<output dir>/history.jsonl``; ``--no-history`` appends none). stdout is
what ``--format`` asks for: ``markdown`` (the default) the table and a one-line verdict; ``json``
the regression.json document alone; ``github`` GitHub Actions workflow commands (one ``::error`` per
failing figure, a ``::notice`` with the verdict), then the table for the log.

Exit codes: 0 every figure holds, 1 a regression (or a missing figure), 2 bad input (baseline missing
or malformed, run folders unreadable or made with other parameters than the baseline's, or on another
interpreter minor: :class:`~experiments.regress.BaselineError`). :func:`run_plan`, the matrix with a
progress line on stderr, serves ``memdiet baseline`` too.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..dataset.results import RunResult, load_run
from ..errors import EXIT_FAILED, EXIT_OK
from ..measure.matrix import MatrixPlan, default_plan, run_matrix
from ..measure.scenario import DEFAULT_RUNS_DIR, QUICK
from ..paths import REPORTS_DIR
from ..regress import (
    COMPARED_PARAMETERS,
    DEFAULT_BASELINE,
    Baseline,
    BaselineError,
    check_comparable,
    check_same_interpreter,
    compare,
    current_interpreter,
    load_baseline,
)
from ..regress.history import HISTORY_FILE, append_record, history_record
from ..render.regression_md import (
    FORMATS,
    REGRESSION_JSON,
    github_annotations,
    summary_line,
    text_table,
    write_outputs,
)
from .args import install_interrupt_handlers, stderr_console

#: Where a matrix run by ``regress`` or ``baseline`` writes its report: apart from reports/latest.
REGRESS_LATEST_DIR = REPORTS_DIR / "regress-latest"


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    parser = commands.add_parser(name, help="compare a matrix with reports/baseline.json; exit 1 on a regression")
    parser.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR",
                        help="run folders to compare (default: run the matrix again)")
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help=f"default: {DEFAULT_BASELINE}")
    parser.add_argument("--quick", action="store_true",
                        help="run the quick matrix (default without RUN_DIR: the matrix the baseline records)")
    parser.add_argument("-o", "--output-dir", type=Path, default=REPORTS_DIR,
                        help="where regression.md and regression.json go (default: reports)")
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="where new run folders go")
    parser.add_argument("--latest-dir", type=Path, default=REGRESS_LATEST_DIR,
                        help="where the new matrix's report goes (kept apart from reports/latest)")
    parser.add_argument("--format", choices=FORMATS, default="markdown",
                        help="stdout: the table and verdict (markdown), the regression.json document (json), or "
                             "GitHub Actions annotations, one ::error per failing figure (github)")
    history = parser.add_mutually_exclusive_group()
    history.add_argument("--history", type=Path, default=None, metavar="FILE",
                         help=f"append this check's record to FILE (default: OUTPUT_DIR/{HISTORY_FILE})")
    history.add_argument("--no-history", action="store_true", help="append no history record")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.quick and args.runs:
        parser.error("give --quick (run the quick matrix) or run folders, not both")
    baseline = load_baseline(args.baseline)
    if args.runs:
        runs, failures = [load_run(path) for path in args.runs], []
    else:
        # Before the matrix runs: its runs would be made on this interpreter.
        check_same_interpreter(baseline, [current_interpreter()], "this run is")
        plan = _quick_plan(args.runs_dir) if args.quick else plan_from_baseline(baseline, args.runs_dir)
        runs, failures = run_plan(plan, args.latest_dir)
    complete = [run for run in runs if run.status == "complete"]
    check_comparable(baseline, complete or runs)
    comparison = compare(baseline, complete, failures)
    exit_code = EXIT_OK if comparison.passed else EXIT_FAILED
    report = write_outputs(comparison, args.baseline, args.output_dir, exit_code)
    history = None if args.no_history else (args.history or args.output_dir / HISTORY_FILE)
    if history is not None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        append_record(history, history_record(comparison, time_utc=now, baseline_path=args.baseline))
    if args.format == "json":
        print(report.with_name(REGRESSION_JSON).read_text(encoding="utf-8"), end="")
        return exit_code
    if args.format == "github":
        print("\n".join(github_annotations(comparison, args.baseline)))
    print(text_table(comparison))
    print()
    print(f"report: {report} (and {report.with_name(REGRESSION_JSON)})"
          + (f"; history: {history}" if history is not None else ""))
    print(summary_line(comparison))
    return exit_code


def run_plan(plan: MatrixPlan, latest_dir: Path) -> tuple[list[RunResult], list[str]]:
    """Run the matrix ``plan`` with a progress line on stderr; (its runs, its failures)."""
    console = stderr_console()
    install_interrupt_handlers()
    total = len(plan.configs())
    with console.status("matrix: starting") as status:
        label = {"text": ""}

        def on_run_start(index: int, _total: int, config: Any) -> None:
            label["text"] = f"matrix run {index + 1}/{total}: {config.subject}/{config.probe}"
            status.update(label["text"])

        def on_phase(phase: str) -> None:
            status.update(f"{label['text']}: {phase}")

        outcome = run_matrix(plan, latest_dir=latest_dir, on_run_start=on_run_start, on_phase=on_phase)
    for failure in outcome.failures:
        console.print(f"matrix: run failed: {failure}", markup=False, highlight=False)
    return outcome.runs, outcome.failures


def plan_from_baseline(baseline: Baseline, runs_dir: Path) -> MatrixPlan:
    """The matrix the baseline was made from (its parameters, layouts and probes)."""
    known = {name: baseline.parameters[name] for name in COMPARED_PARAMETERS if baseline.parameters.get(name) is not None}
    try:
        base = replace(QUICK, runs_dir=runs_dir, **known)
    except TypeError as error:
        raise BaselineError(f"{baseline.path}: parameters cannot make a matrix ({error})") from None
    layouts = baseline.parameters.get("layouts") or list(baseline.figures)
    probes = baseline.parameters.get("probes") or ["rss", "tracemalloc"]
    return MatrixPlan(base=base, layouts=layouts, probes=probes)


def _quick_plan(runs_dir: Path) -> MatrixPlan:
    plan = default_plan(quick=True)
    plan.base = replace(plan.base, runs_dir=runs_dir)
    return plan
