"""A regression check's files: ``regression.md`` (verdict, table, comparison chart of the runs) and
``regression.json`` (the same rows as data), the one-line verdict ``memdiet regress`` ends with, and
the other forms ``memdiet regress --format`` prints: the JSON document, or GitHub Actions workflow
commands (one ``::error`` annotation per failing figure).

The table (layout, metric, baseline, now, change, tolerance, verdict) is also what ``memdiet
regress`` prints to stdout, so the CI log shows it: the columns are padded, which keeps it a valid
markdown table and readable as plain text. A figure that holds but moved beyond the noise of a
learned baseline says so in its verdict cell (``ok, beyond noise``). The comparison is
:func:`experiments.regress.compare`'s; this module only formats it and imports only the
comparison's data types from :mod:`experiments.regress` (which never imports a renderer).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from ..dataset.results import write_atomic, write_json
from ..paths import relative_posix
from ..regress.baseline import Baseline
from ..regress.compare import FAILING, IMPROVED, NEW, OK, OTHER_MACHINE, REGRESSED, Comparison, Row, worse_sign
from ..regress.tolerances import ABSOLUTE, LEARNED, Tolerance
from .comparison import render_comparison
from .markdown import code, table
from .units import MISSING, format_metric

REGRESSION_FILE = "regression.md"
REGRESSION_JSON = "regression.json"
REGRESSION_SCHEMA = "memdiet.regression/1"
CHART_STEM = "regression-comparison"
HEADER = ["layout", "metric", "baseline", "now", "change", "tolerance", "verdict"]
#: ``memdiet regress --format``: what stdout holds (the files are written whatever the format).
FORMATS = ("markdown", "json", "github")
BEYOND_NOISE = "beyond noise"


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
    if row.tolerance is None:
        return MISSING
    return band_text(row.tolerance, row.metric, "+" if row.worse > 0 else "-")


def band_text(tolerance: Tolerance, metric: str, sign: str) -> str:
    """A tolerance or noise band as text: ``+1%``, ``±0.08%``, ``+2.1% or 12 B``, ``exact``
    (percentages to three significant figures)."""
    parts = []
    if tolerance.relative:
        parts.append(f"{sign}{float(f'{tolerance.relative * 100:.3g}'):g}%")
    if tolerance.absolute:
        parts.append(f"{sign}{format_metric(metric, tolerance.absolute)}")
    return " or ".join(parts) or "exact"


def verdict_text(row: Row) -> str:
    """The verdict, with ``, beyond noise`` for a figure that holds but moved beyond its noise band."""
    return f"{row.verdict}, {BEYOND_NOISE}" if row.beyond_noise and not row.failed else row.verdict


def table_rows(rows: Sequence[Row], *, emphasize: bool) -> list[list[str]]:
    """Cells of each row; with ``emphasize``, failing verdicts in bold (markdown)."""
    cells = []
    for row in rows:
        verdict = f"**{row.verdict}**" if emphasize and row.failed else verdict_text(row)
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
    if comparison.beyond_noise:
        extras.append(f"{len(comparison.beyond_noise)} beyond the noise")
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
    lines.append(f"- **Tolerances**: {_tolerance_origin(baseline)}")
    differs = comparison.machine_changes if comparison.runs else []
    if differs:
        learned = any(row.rule == OTHER_MACHINE for row in comparison.rows)
        lines.append(f"- **Note**: the machine differs from the baseline's ({', '.join(differs)}): RSS, throughput and "
                     "latency may differ for that reason alone, and heap figures if the Python version differs."
                     + (" The tolerances learned on the baseline's machine do not hold here: those figures are judged "
                        "by the fixed policy." if learned else ""))
    for failure in comparison.run_failures:
        lines.append(f"- **Run failed**: {failure}")
    if comparison.runs:
        links = ", ".join(f"[{code(run.path.name)}](<{_link(relative_posix(run.path, out_dir))}>)"
                          for run in sorted(comparison.runs, key=lambda r: r.path.name))
        lines.append(f"- **Run folders**: {links}.")
    return lines


def _tolerance_origin(baseline: Baseline) -> str:
    if baseline.noise is None:
        return "the fixed policy (a baseline of one matrix)."
    learned = sum(t.rule == LEARNED for t in baseline.tolerances.values())
    return (f"{learned} learned from the noise of {baseline.noise.repeat} matrices, the others fixed "
            f"(rule: {baseline.noise.rule}).")


def _beyond_noise(comparison: Comparison) -> list[str]:
    rows = comparison.beyond_noise
    if not rows:
        return ["None: every figure moved less than the noise the baseline's matrices showed."]
    return [f"- **{row.layout}** `{row.metric}`: {format_metric(row.metric, row.baseline)} → "
            f"{format_metric(row.metric, row.now)} ({change_text(row)}; noise {_noise_text(row)}, "
            f"tolerance {tolerance_text(row)}): {row.verdict}" for row in rows]


def _noise_text(row: Row) -> str:
    band = row.tolerance.noise if row.tolerance is not None else None
    return band_text(band, row.metric, "±") if band is not None else MISSING


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
        sign = "+" if worse_sign(name) > 0 else "-"
        applied = example.tolerance if example is not None and example.tolerance is not None else tolerance
        rule = example.rule if example is not None and example.rule else tolerance.rule
        noise = band_text(tolerance.noise, name, "±") if tolerance.noise is not None else MISSING
        rows.append([f"`{name}`", rule, band_text(applied, name, sign), noise, applied.why])
    return ["From the baseline file: a figure fails when it moves in its worse direction (sign shown) by more than "
            "the tolerance; where two are given, the larger applies. A move as large the other way is *improved* "
            "(make a new baseline with `memdiet baseline` to keep it). The noise band (a baseline of repeated "
            "matrices) is how far the figure moved between them, as the rule above scales it.", "",
            *table(["metric", "rule", "tolerance", "noise band", "why"], rows, "lllll", padded=True)]


def learned_tolerance_table(baseline: Baseline) -> list[str]:
    """What ``memdiet baseline --repeat K`` prints: per metric, the largest range the matrices
    showed (and where), the noise band, the tolerance and its rule, and the fixed policy kept for
    another machine."""
    noise = baseline.noise.metrics if baseline.noise else {}
    rows = []
    for name, tolerance in baseline.tolerances.items():
        sign = "+" if worse_sign(name) > 0 else "-"
        measured = noise.get(name)
        if measured is None:
            spread = MISSING
        elif measured.scale == ABSOLUTE:
            spread = format_metric(name, measured.worst_range)
        else:
            spread = f"{measured.worst_range * 100:.3g}%"
        where = measured.worst_layout if measured and measured.worst_layout else ""
        rows.append([name, spread, where, band_text(tolerance.noise, name, "±") if tolerance.noise else MISSING,
                     tolerance.rule, band_text(tolerance, name, sign),
                     band_text(tolerance.other_machine, name, sign) if tolerance.other_machine else "same"])
    return table(["metric", "largest range", "layout", "noise band", "rule", "tolerance", "another machine"], rows,
                 "lrlrlrr", padded=True)


def build_regression_report(comparison: Comparison, out_dir: Path, *, baseline_path: Path) -> Path:
    """Write ``out_dir/regression.md`` and, when there are runs, the comparison chart beside it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    verdict = "PASS" if comparison.passed else "FAIL"
    lines = [f"# memdiet regression check: {verdict}", "", f"`{summary_line(comparison)}`", "",
             *_provenance(comparison, baseline_path, out_dir), "",
             "## Failures", "", *_failures(comparison), "",
             *(["## Beyond the noise", "", "Figures that hold but moved further than the baseline's repeated "
                "matrices did between themselves (either way).", "", *_beyond_noise(comparison), ""]
               if comparison.baseline.noise is not None else []),
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
        "beyond_noise": len(comparison.beyond_noise),
        "machine_changes": comparison.machine_changes,
        "baseline": {"path": str(baseline_path), "created_utc": baseline.created_utc, "repeat": baseline.repeat,
                     "rule": baseline.noise.rule if baseline.noise else None,
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


def _escape_data(text: str) -> str:
    """A workflow command's message, escaped as the runner expects (``%``, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """A workflow command's property value, escaped (``:`` and ``,`` as well)."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(comparison: Comparison, baseline_path: Path) -> list[str]:
    """GitHub Actions workflow commands: one ``::error`` per failing figure, worst first, titled with
    its layout and metric and attached to the baseline file; then a ``::notice`` with the summary line."""
    lines = []
    for row in sorted(comparison.failures, key=lambda r: -r.severity):
        detail = row.note or f"{change_text(row)}, tolerance {tolerance_text(row)}"
        title = f"memdiet regress: {row.layout} {row.metric}"
        message = (f"{row.layout} {row.metric} {row.verdict}: {format_metric(row.metric, row.baseline)} -> "
                   f"{format_metric(row.metric, row.now)} ({detail})")
        lines.append(f"::error file={_escape_property(str(baseline_path))},title={_escape_property(title)}::"
                     f"{_escape_data(message)}")
    lines.append(f"::notice title=memdiet regress::{_escape_data(summary_line(comparison))}")
    return lines


def _link(target: str) -> str:
    """A link destination in ``<...>`` form: its ``<``, ``>`` and backslashes escaped, so a run folder's
    name cannot end the link (CommonMark)."""
    return re.sub(r"([<>\\])", r"\\\1", target)
