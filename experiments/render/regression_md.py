"""``regression.md``: a regression check's verdict, its table and the comparison chart of the runs.

The table (layout, metric, baseline, now, change, tolerance, verdict) is also what ``memdiet
regress`` prints to stdout, so the CI log shows it: the columns are padded, which keeps it a valid
markdown table and readable as plain text. The comparison is :func:`experiments.regress.compare`'s;
this module only formats it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..dataset.results import write_atomic
from .comparison import render_comparison
from .units import MISSING, format_metric

if TYPE_CHECKING:  # the comparison's types; regress imports this module, not the other way round
    from ..regress import Comparison, Row

REGRESSION_FILE = "regression.md"
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
    from ..regress import FAILING

    cells = []
    for row in rows:
        verdict = f"**{row.verdict}**" if emphasize and row.verdict in FAILING else row.verdict
        cells.append([row.layout, row.metric, format_metric(row.metric, row.baseline), format_metric(row.metric, row.now),
                      change_text(row), tolerance_text(row), verdict])
    return cells


def aligned_table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """A markdown table with padded columns (readable as plain text); ``align`` is l or r per column."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    rule = [("-" * (w - 1) + ":") if a == "r" else (":" + "-" * (w - 1)) for w, a in zip(widths, align)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align)) + " |"

    return [line(header), "| " + " | ".join(rule) + " |", *(line(row) for row in rows)]


def text_table(comparison: Comparison) -> str:
    """The table as ``memdiet regress`` prints it."""
    return "\n".join(aligned_table(HEADER, table_rows(comparison.rows, emphasize=False), "llrrrrl"))


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
    from ..regress import common_environment

    baseline = comparison.baseline
    now_env = common_environment(comparison.runs) if comparison.runs else {}
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
            *aligned_table(["metric", "tolerance", "why"], rows, "lll")]


def build_regression_report(comparison: Comparison, out_dir: Path, *, baseline_path: Path) -> Path:
    """Write ``out_dir/regression.md`` and, when there are runs, the comparison chart beside it."""
    from ..regress import summary_line

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    verdict = "PASS" if comparison.passed else "FAIL"
    lines = [f"# memdiet regression check: {verdict}", "", f"`{summary_line(comparison)}`", "",
             *_provenance(comparison, baseline_path, out_dir), "",
             "## Failures", "", *_failures(comparison), "",
             "## Every figure", "",
             "Each layout's figures merged from its runs as the report does (RSS and load from the rss probe, heap "
             "from tracemalloc). Change is relative to the baseline.", "",
             *aligned_table(HEADER, table_rows(comparison.rows, emphasize=True), "llrrrrl"), ""]
    if comparison.runs:
        render_comparison(comparison.runs, out_dir / CHART_STEM)
        lines += ["## Layouts compared (these runs)", "", f"![memory per layout]({CHART_STEM}.png)", "",
                  f"([SVG]({CHART_STEM}.svg))", ""]
    lines += ["## Tolerances", "", *_tolerance_section(comparison), ""]
    path = out_dir / REGRESSION_FILE
    write_atomic(path, "\n".join(lines))
    return path
