"""A regression check's files: ``regression.md`` (verdict, table, comparison chart of the runs) and
``regression.json`` (the same rows as data), and the one-line verdict ``memdiet regress`` ends with.

The table (layout, metric, baseline, now, change, tolerance, verdict) is also what ``memdiet
regress`` prints to stdout, so the CI log shows it: the columns are padded, which keeps it a valid
markdown table and readable as plain text. The comparison is :func:`experiments.regress.compare`'s;
this module only formats it and imports only the comparison's data types from
:mod:`experiments.regress` (which never imports a renderer).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from ..dataset.results import write_atomic, write_json
from ..regress.compare import FAILING, IMPROVED, NEW, OK, REGRESSED, Comparison, Row
from .comparison import render_comparison
from .markdown import table
from .units import MISSING, format_metric

REGRESSION_FILE = "regression.md"
REGRESSION_JSON = "regression.json"
REGRESSION_SCHEMA = "memdiet.regression/1"
CHART_STEM = "regression-comparison"
HEADER = ["layout", "metric", "baseline", "now", "change", "tolerance", "verdict"]
#: Environment fields shown for the baseline and the runs, and compared between them.
MACHINE_FIELDS = ("cpu_model", "cpu_count", "memory_total_bytes", "kernel", "python")


def change_text(row: Row) -> str:
    """``+3.2%`` of the baseline (more decimals below 1%), ``0`` for no change, or the signed
    difference in the metric's unit when the baseline is 0."""
    if row.change == 0:
        return "0"
    if row.relative_change is not None:
        percent = row.relative_change * 100
        decimals = 1 if abs(percent) >= 1 else 2 if abs(percent) >= 0.01 else 4
        return f"{percent:+.{decimals}f}%"
    if row.change is not None:
        return ("+" if row.change > 0 else "-") + format_metric(row.metric, abs(row.change))
    return MISSING


def tolerance_text(row: Row) -> str:
    """How far the figure may move, signed in its worse direction: ``+1%``, ``-75%``, ``+10% or
    164 B`` (the larger applies), ``exact``."""
    tolerance = row.tolerance
    if tolerance is None:
        return MISSING
    sign = "+" if row.worse > 0 else "-"
    parts = []
    if tolerance.relative:
        parts.append(f"{sign}{tolerance.relative * 100:g}%")
    if tolerance.absolute:
        parts.append(f"{sign}{format_metric(row.metric, tolerance.absolute)}")
    return " or ".join(parts) or "exact"


def table_rows(rows: Sequence[Row], *, emphasize: bool) -> list[list[str]]:
    """Cells of each row; with ``emphasize``, failing verdicts in bold (markdown)."""
    cells = []
    for row in rows:
        verdict = f"**{row.verdict}**" if emphasize and row.failed else row.verdict
        cells.append([row.layout, row.metric, format_metric(row.metric, row.baseline), format_metric(row.metric, row.now),
                      change_text(row), tolerance_text(row), verdict])
    return cells


def text_table(comparison: Comparison) -> str:
    """The table as ``memdiet regress`` prints it."""
    return "\n".join(table(HEADER, table_rows(comparison.rows, emphasize=False), "llrrrrl", padded=True))


def summary_line(comparison: Comparison) -> str:
    """One line: the verdict, and on failure the worst figure (layout, metric, change vs tolerance)."""
    compared = sum(row.verdict != NEW for row in comparison.rows)
    extras = [f"{n} {verdict}" for verdict in (IMPROVED, NEW) if (n := comparison.count(verdict))]
    extra = f" ({', '.join(extras)})" if extras else ""
    worst = comparison.worst
    if worst is None:
        return f"memdiet regress: PASS: all {compared} figures within tolerance{extra}"
    if worst.verdict == REGRESSED:
        what = f"{change_text(worst)} vs tolerance {tolerance_text(worst)}"
    else:
        what = f"{worst.verdict.lower()}: {worst.note}"
    return (f"memdiet regress: FAIL: {len(comparison.failures)} of {compared} figures failed; worst: "
            f"{worst.layout} {worst.metric} {what}")


def _machine(environment: dict[str, Any]) -> str:
    parts = [str(environment.get("cpu_model") or "unknown CPU")]
    if environment.get("cpu_count"):
        parts.append(f"{environment['cpu_count']} cores")
    if isinstance(environment.get("memory_total_bytes"), (int, float)):
        parts.append(f"{environment['memory_total_bytes'] / 1024 ** 3:.1f} GiB RAM")
    if environment.get("kernel"):
        parts.append(f"Linux {environment['kernel']}")
    parts.append(f"Python {environment.get('python') or '?'}")
    commit = environment.get("commit")
    if commit:
        dirty = " with uncommitted changes" if environment.get("dirty") is True else ""
        parts.append(f"commit {str(commit)[:10]}{dirty}")
    return ", ".join(parts)


def _parameters(parameters: dict[str, Any]) -> str:
    shown = [f"{name} = {parameters[name]}" for name in ("max_conns", "connections", "idle_s", "load_s", "sample_hz")
             if parameters.get(name) is not None]
    for name in ("layouts", "probes"):
        if parameters.get(name):
            shown.append(f"{name}: {', '.join(map(str, parameters[name]))}")
    return "; ".join(shown)


def _provenance(comparison: Comparison, baseline_path: Path, out_dir: Path) -> list[str]:
    baseline = comparison.baseline
    now_env = comparison.environment
    lines = [f"- **Baseline**: `{baseline_path}`, made {baseline.created_utc} on {_machine(baseline.environment)}; "
             f"matrix: {_parameters(baseline.parameters)}.",
             f"- **Now**: {len(comparison.runs)} complete runs on {_machine(now_env)}."]
    differs = [name for name in MACHINE_FIELDS if baseline.environment.get(name) != now_env.get(name)]
    if differs:
        lines.append(f"- **Note**: the machine differs from the baseline's ({', '.join(differs)}): RSS, throughput and "
                     "latency may differ for that reason alone, and heap figures if the Python version differs.")
    for failure in comparison.run_failures:
        lines.append(f"- **Run failed**: {failure}")
    if comparison.runs:
        links = ", ".join(f"[{run.path.name}]({Path(os.path.relpath(run.path, out_dir)).as_posix()})"
                          for run in sorted(comparison.runs, key=lambda r: r.path.name))
        lines.append(f"- **Run folders**: {links}.")
    return lines


def _failures(comparison: Comparison) -> list[str]:
    failures = comparison.failures
    if not failures:
        return ["None: every figure of the baseline is present and within its tolerance."]
    lines = []
    for row in sorted(failures, key=lambda r: -r.severity):
        detail = row.note or f"{change_text(row)}, tolerance {tolerance_text(row)}"
        lines.append(f"- **{row.layout}** `{row.metric}`: {row.verdict}: {format_metric(row.metric, row.baseline)} → "
                     f"{format_metric(row.metric, row.now)} ({detail})")
    return lines


def _tolerance_section(comparison: Comparison) -> list[str]:
    rows = []
    for name, tolerance in comparison.baseline.tolerances.items():
        example = next((row for row in comparison.rows if row.metric == name and row.tolerance is not None), None)
        text = tolerance_text(example) if example else f"{tolerance.relative:g} / {tolerance.absolute:g}"
        rows.append([f"`{name}`", text, tolerance.why])
    return ["From the baseline file: a figure fails when it moves in its worse direction (sign shown) by more than "
            "the tolerance; where two are given, the larger applies. A move as large the other way is *improved* "
            "(make a new baseline with `memdiet baseline` to keep it).", "",
            *table(["metric", "tolerance", "why"], rows, "lll", padded=True)]


def build_regression_report(comparison: Comparison, out_dir: Path, *, baseline_path: Path) -> Path:
    """Write ``out_dir/regression.md`` and, when there are runs, the comparison chart beside it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    verdict = "PASS" if comparison.passed else "FAIL"
    lines = [f"# memdiet regression check: {verdict}", "", f"`{summary_line(comparison)}`", "",
             *_provenance(comparison, baseline_path, out_dir), "",
             "## Failures", "", *_failures(comparison), "",
             "## Every figure", "",
             "Each layout's figures merged from its runs as the report does (RSS and load from the rss probe, heap "
             "from tracemalloc). Change is relative to the baseline.", "",
             *table(HEADER, table_rows(comparison.rows, emphasize=True), "llrrrrl", padded=True), ""]
    if comparison.runs:
        render_comparison(comparison.runs, out_dir / CHART_STEM)
        lines += ["## Layouts compared (these runs)", "", f"![memory per layout]({CHART_STEM}.png)", "",
                  f"([SVG]({CHART_STEM}.svg))", ""]
    lines += ["## Tolerances", "", *_tolerance_section(comparison), ""]
    path = out_dir / REGRESSION_FILE
    write_atomic(path, "\n".join(lines))
    return path


def regression_document(comparison: Comparison, baseline_path: Path, exit_code: int) -> dict[str, Any]:
    """What ``regression.json`` holds: the verdict, where the baseline and the runs came from, every row."""
    baseline = comparison.baseline
    worst = comparison.worst
    return {
        "schema": REGRESSION_SCHEMA,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "passed": comparison.passed,
        "exit_code": exit_code,
        "summary": summary_line(comparison),
        "worst": worst.to_json() if worst else None,
        "counts": {verdict: comparison.count(verdict) for verdict in (OK, IMPROVED, NEW, *FAILING)},
        "baseline": {"path": str(baseline_path), "created_utc": baseline.created_utc,
                     "parameters": baseline.parameters, "environment": baseline.environment},
        "runs": [str(run.path) for run in comparison.runs],
        "run_failures": comparison.run_failures,
        "environment": comparison.environment,
        "rows": [row.to_json() for row in comparison.rows],
    }


def write_outputs(comparison: Comparison, baseline_path: Path, out_dir: Path, exit_code: int) -> Path:
    """Write ``regression.md`` (with the comparison chart) and ``regression.json`` to ``out_dir``,
    each atomically; return the markdown's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_regression_report(comparison, out_dir, baseline_path=baseline_path)
    write_json(out_dir / REGRESSION_JSON, regression_document(comparison, baseline_path, exit_code))
    return report
