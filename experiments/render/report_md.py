"""The markdown report of a set of runs: ``index.md`` and its charts, in one folder.

It ties the other renderers together: the comparison chart, a table of every summary metric per
layout (each figure taken from the probe that measures it best, see
:mod:`experiments.dataset.selection`), the reductions versus naive, the per-slot anatomy, one
massif-style curve per layout, which run folder fed each layout and probe (with its raw captures),
and a note on which figures are deterministic.
Runs not marked complete are listed but used nowhere else.

The report reads only files: the runs' folders, and the per-slot anatomy the matrix measured into
the report's folder (``anatomy.json``, :mod:`experiments.dataset.anatomy`); without that file the
anatomy section says it is missing. It links only to files in its own folder (its charts): run
folders are git-ignored, so a committed report names them (relative to its folder) without
linking. Runs made with different parameters
(:data:`experiments.dataset.results.COMPARED_PARAMETERS`) are refused (:class:`IncomparableRuns`),
or with ``allow_mixed`` given one report each.
"""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ..dataset.anatomy import ANATOMY_FILE, SlotAnatomy, read_anatomies
from ..dataset.metrics import METRICS
from ..dataset.results import PHASES, RunResult, write_atomic
from ..dataset.selection import (
    BASELINE_LAYOUT,
    CURVE_PROBES,
    RSS_PROBES,
    Figure,
    chosen_runs,
    differing_parameters,
    latest_runs,
    layout_order,
    merged_metrics,
    parameter_key,
    parameter_sets,
    pick_run,
    probes_for,
    reductions,
    split_by_status,
)
from ..errors import BadInput
from ..paths import relative_posix
from .anatomy_chart import render_anatomy
from .comparison import render_comparison
from .held_sites import held_site_tables, held_sites_markdown
from .ledger import ledger_markdown, ledger_tables, render_ledger_chart
from .markdown import code, table
from .massif_curve import render_massif_curve
from .owners_md import owner_tables, owners_markdown
from .agreement_md import agreement_markdown, agreement_rows
from .probe_crosscheck import crosscheck_markdown, crosscheck_tables
from .units import MISSING, format_metric, percent_change, slot_bytes

INDEX_FILE = "index.md"
DEFAULT_TITLE = "memdiet: memory of each connection-table layout"
#: The reductions the report and the README quote: (metric, row label).
REDUCTION_METRICS = (
    ("idle_rss_bytes", "idle RSS (no clients)"),
    ("held_rss_bytes", "RSS with C connections held"),
    ("bytes_per_slot", "heap bytes per slot"),
)


class IncomparableRuns(BadInput):
    """The runs a report would be made of were made with different compared parameters; the
    message (one line) says which parameters and values."""


def reduction_table(runs: Iterable[RunResult]) -> dict[str, dict[str, float | None]]:
    """``{layout: {metric: fraction saved versus naive}}`` for the metrics of
    :data:`REDUCTION_METRICS`, every layout but naive, in study order; 0.94 means 94% less, None
    where it cannot be computed (no naive run, figure missing, or from different probes). Only
    complete runs count."""
    merged = merged_metrics(runs)
    by_metric = {metric: reductions(merged, metric) for metric, _ in REDUCTION_METRICS}
    return {layout: {metric: by_metric[metric].get(layout) for metric, _ in REDUCTION_METRICS}
            for layout in merged if layout != BASELINE_LAYOUT}


# --- small markdown helpers ----------------------------------------------------------------------
def _link(target: Path, out_dir: Path, text: str) -> str:
    """A link to a file the report wrote into its own folder (never to a run folder: those are
    not committed)."""
    return f"[{text}]({relative_posix(target, out_dir)})"


def _run_name(run: RunResult, out_dir: Path) -> str:
    """A run folder named, not linked: its path relative to the report's folder, as code."""
    return code(relative_posix(run.path, out_dir))


def _value_text(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def describe_differences(differing: dict[str, dict[Any, list[RunResult]]]) -> str:
    """``max_conns 8,192 (10 runs), 65,536 (5 runs); ...``: each differing parameter's values,
    the most used first, with how many runs have each."""
    parts = []
    for name, by_value in differing.items():
        ordered = sorted(by_value.items(), key=lambda item: -len(item[1]))
        parts.append(f"{name} " + ", ".join(f"{_value_text(value)} ({len(runs)} run{'s' * (len(runs) != 1)})"
                                            for value, runs in ordered))
    return "; ".join(parts)


def _image(stem: str, alt: str) -> str:
    return f"![{alt}]({stem}.png)\n\n([SVG]({stem}.svg))"


# --- sections --------------------------------------------------------------------------------------
def _common(values: Iterable[Any]) -> Any:
    """The one value of ``values`` (ignoring None), ``"mixed"`` if they differ, None if none."""
    distinct = {repr(v): v for v in values if v is not None}
    if not distinct:
        return None
    return next(iter(distinct.values())) if len(distinct) == 1 else "mixed"


#: Run parameters the intro does not list under "other parameters": shown already, or where files went.
_SHOWN_OR_BOOKKEEPING = {"subject", "layout", "probe", "max_conns", "connections", "runs_dir"}


def _intro(complete: list[RunResult], others: list[RunResult], matrix_info: dict[str, Any]) -> list[str]:
    used = chosen_runs(complete)
    superseded = len(complete) - len(used)
    lines = [f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from {len(complete) + len(others)} runs "
             f"({len(complete)} complete"
             + (f", {superseded} of them superseded by a later run of the same layout and probe" if superseded else "")
             + (f", {len(others)} not complete and left out of every table" if others else "") + ")."]
    complete = used  # what follows describes the runs the tables are made of
    max_conns = _common(r.parameters.get("max_conns") for r in complete)
    connections = _common(r.parameters.get("connections") for r in complete)
    fmt = lambda v: f"{v:,}" if isinstance(v, int) else str(v)  # noqa: E731
    lines += ["", "- **Parameters**: "
              f"max_conns (preallocated slots) = {fmt(max_conns) if max_conns is not None else MISSING}; "
              f"C (clients) = {fmt(connections) if connections is not None else MISSING}."]
    durations = []
    for name in PHASES:
        seconds = [p.duration_s for r in complete for p in r.phases if p.name == name]
        if seconds:
            median = statistics.median(seconds)
            durations.append(f"{name} {median:.1f} s" if median >= 0.1 else f"{name} {median * 1000:.0f} ms")
    if durations:
        lines.append(f"- **Phases** (median measured length): {', '.join(durations)}.")
    extra = {}
    for key in sorted({k for r in complete for k in r.parameters} - _SHOWN_OR_BOOKKEEPING):
        value = _common(r.parameters.get(key) for r in complete)
        if isinstance(value, (int, float, str, bool)):
            extra[key] = value
    if extra:
        lines.append("- **Other parameters**: " + ", ".join(f"{k} = {v}" for k, v in extra.items()) + ".")
    matrix = _matrix_items(matrix_info, shown={**extra, "max_conns": max_conns, "connections": connections})
    if matrix:
        lines.append("- **Matrix**: " + ", ".join(f"{k} = {v}" for k, v in matrix) + ".")
    environments = [r.document.get("environment") or {} for r in complete]
    if environments:
        env = {key: _common(e.get(key) for e in environments) for key in
               ("cpu_model", "cpu_count", "memory_total_bytes", "kernel", "machine", "python", "memray", "commit", "dirty")}
        machine = [f"{env['cpu_model'] or 'unknown CPU'}"]
        if env["cpu_count"]:
            machine.append(f"{env['cpu_count']} cores")
        if isinstance(env["memory_total_bytes"], (int, float)):
            machine.append(f"{env['memory_total_bytes'] / 1024 ** 3:.1f} GiB RAM")
        if env["kernel"]:
            machine.append(f"Linux {env['kernel']} ({env['machine']})" if env["machine"] else f"kernel {env['kernel']}")
        software = [f"Python {env['python']}"] + ([f"memray {env['memray']}"] if env["memray"] else [])
        if env["commit"]:
            commit = env["commit"][:10] if env["commit"] != "mixed" else "mixed commits"
            software.append(f"commit {commit}" + (" with uncommitted changes" if env["dirty"] is True else ""))
        lines.append(f"- **Machine**: {', '.join(machine)}; {', '.join(software)}.")
    return lines


_MATRIX_SKIP = {"schema", "runs", "subject", "layout", "probe"}


def _matrix_items(info: dict[str, Any], shown: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``matrix_info`` flattened to (key, text) pairs for the intro: nested dicts as ``a.b``, short
    lists joined, long ones counted; left out are what the intro already gives (a run parameter with
    the same value, the list of runs), the schema tag, and a single run's layout and probe."""
    items = []
    for key, value in info.items():
        if key in _MATRIX_SKIP or shown.get(key, object()) == value:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            items += _matrix_items(value, shown, f"{name}.")
        elif isinstance(value, (list, tuple)):
            short = len(value) <= 8 and all(isinstance(v, (str, int, float)) and len(str(v)) <= 24 for v in value)
            items.append((name, ", ".join(map(str, value)) if short else f"{len(value)} entries"))
        elif value is not None:
            items.append((name, str(value)))
    return items


def _summary_table(merged: dict[str, dict[str, Figure]]) -> list[str]:
    layouts = list(merged)
    present = {name for figures in merged.values() for name in figures}
    names = [n for n in METRICS if n in present] + sorted(present - set(METRICS))
    rows = []
    for name in names:
        figures = [merged[layout].get(name) for layout in layouts]
        counts = Counter(f.probe for f in figures if f is not None)
        preference = probes_for(name)
        # The row names the probe most of its figures come from (ties: the preferred probe); a figure
        # from another probe says so.
        usual = min(counts, key=lambda p: (-counts[p], preference.index(p) if p in preference else len(preference)))
        cells = [MISSING if f is None else format_metric(name, f.value) + ("" if f.probe == usual else f" ({f.probe})")
                 for f in figures]
        metric = METRICS.get(name)
        rows.append([f"`{name}`", metric.unit if metric else "", usual, *cells,
                     ("yes" if metric.deterministic else "no") if metric else "?"])
    return table(["metric", "unit", "probe", *layouts, "deterministic"], rows, "lll" + "r" * len(layouts) + "l")


def _reduction_section(merged: dict[str, dict[str, Figure]]) -> list[str]:
    others = [layout for layout in merged if layout != BASELINE_LAYOUT]
    if BASELINE_LAYOUT not in merged or not others:
        return ["No naive run in this set, so no reductions."]
    rows = []
    for metric, label in REDUCTION_METRICS:
        changes = reductions(merged, metric)
        base = merged[BASELINE_LAYOUT].get(metric)
        rows.append([label, format_metric(metric, base.value) if base else MISSING,
                     *[percent_change(changes.get(layout), 1) for layout in others]])
    return ["Change of each layout's figure versus naive's (negative: less memory). Compared only between "
            "figures from the same probe.", "", *table(["figure", "naive", *others], rows)]


def _anatomy_section(anatomies: list[SlotAnatomy], merged: dict[str, dict[str, Figure]]) -> list[str]:
    rows, structs = [], []
    for anatomy in anatomies:
        measured = merged.get(anatomy.layout, {}).get("bytes_per_slot")
        parts = ", ".join(f"{name} {size:,.0f}" for name, size in anatomy.nonzero_parts())
        rows.append([anatomy.layout, slot_bytes(anatomy.total), format_metric("bytes_per_slot", measured.value) if measured else MISSING,
                     f"{anatomy.c_bytes_per_slot:,} B", f"{anatomy.total / anatomy.c_bytes_per_slot:.1f}×", parts])
        fields = ", ".join(f"`{f.name}` @{f.offset} {f.size} B" + (f" ({f.bits} bits)" if f.bits else "") for f in anatomy.c_fields)
        padding = f"; {anatomy.c_padding} B padding" if anatomy.c_padding else ""
        structs.append(f"- **{anatomy.layout}** ({anatomy.c_bytes_per_slot:,} B{padding}): {fields}")
    python = anatomies[0].python if anatomies else "?"
    return [
        f"What one preallocated slot is made of, derived from the layout classes with `sys.getsizeof` on CPython "
        f"{python} (see `experiments/measure/anatomy.py` for how each part is counted), beside the same slot as a C struct. "
        "The measured column is the tracemalloc run's `bytes_per_slot`.", "",
        _image("anatomy", "per-slot anatomy"), "",
        *table(["layout", "Python, by parts", "measured", "C struct", "Python / C", "parts (bytes)"], rows, "lrrrrl"), "",
        "<details><summary>C struct fields (offset, size)</summary>", "", *structs, "", "</details>",
    ]


def _missing_anatomy(anatomy_file: Path, out_dir: Path) -> str:
    """The anatomy section of a report whose anatomy file is not there: said, not measured here."""
    return (f"Missing: there is no `{relative_posix(anatomy_file, out_dir)}` beside this report, and a report "
            "measures nothing itself. A matrix (`memdiet matrix`) measures each layout's slot into that file.")


def _curve_section(by_layout: dict[str, dict[str, RunResult]], out_dir: Path) -> list[str]:
    lines = []
    for layout, by_probe in by_layout.items():
        run = pick_run(by_probe, CURVE_PROBES)
        if run is None:
            continue
        stem = f"curve-{layout}"
        render_massif_curve(run, out_dir / stem)
        lines += [f"### {layout}", "", f"{run.probe} probe, run {_run_name(run, out_dir)}.", "",
                  _image(stem, f"memory over time, {layout}"), ""]
    return lines


def _runs_section(runs: list[RunResult], out_dir: Path) -> list[str]:
    complete, _ = split_by_status(runs)
    used = {id(run) for run in chosen_runs(complete)}
    by_pair: dict[tuple[str, str], list[RunResult]] = {}
    for run in runs:
        by_pair.setdefault((run.layout, run.probe), []).append(run)
    layout_rank = {layout: rank for rank, layout in enumerate(layout_order({layout for layout, _ in by_pair}))}
    probe_rank = lambda probe: RSS_PROBES.index(probe) if probe in RSS_PROBES else len(RSS_PROBES)  # noqa: E731
    rows = []
    for layout, probe in sorted(by_pair, key=lambda pair: (layout_rank[pair[0]], probe_rank(pair[1]), pair[1])):
        pair_runs = sorted(by_pair[layout, probe], key=lambda r: r.path.name)
        chosen = next((run for run in pair_runs if id(run) in used), None)
        captures = []
        if chosen is not None:
            for key in ("flamegraph", "massif"):
                path = chosen.file(key)
                if path is not None and path.exists():
                    captures.append(code(path.name))
        unused = [f"{_run_name(run, out_dir)} ({'older' if run.status == 'complete' else run.status})"
                  for run in pair_runs if run is not chosen]
        rows.append([layout, probe, _run_name(chosen, out_dir) if chosen else MISSING,
                     ", ".join(captures) or MISSING, ", ".join(unused) or MISSING])
    return ["The run each layout's and probe's figures above come from: of the runs given, the latest complete one. "
            "Paths are relative to this report's folder. Run folders are git-ignored, so this report names them "
            "without linking: on the machine that made them they hold the raw captures listed (a massif.out file "
            "for ms_print or massif-visualizer, memray's flame graph).", "",
            *table(["layout", "probe", "run used", "captures in it", "also given, not used"], rows, "lllll")]


def _held_section(runs: list[RunResult], out_dir: Path) -> list[str]:
    """Runs whose subject held fewer clients than C (result.json's ``held``): how many, counted on the
    server's side, and how the others ended; nothing when every run held them all."""
    short = [run for run in runs if run.document.get("held")]
    if not short:
        return []
    lines = ["## Clients not held", "",
             "These subjects held fewer than the C clients asked for; their figures per held connection divide by "
             "the connections they held at the end of `idle-held`, counted on the server's side (its established "
             "sockets in /proc), and none is given where they held none.", "",
             "| run | held | of C | stopped keeping at | what the other clients saw |", "|---|---:|---:|---:|---|"]
    for run in sorted(short, key=lambda r: r.path.name):
        held = run.document["held"]
        seen = "; ".join(f"{entry['count']} {entry['seen']}" for entry in held.get("outcomes", {}).values()) or "-"
        stopped = held.get("stopped_keeping_at")
        lines.append(f"| {_run_name(run, out_dir)} | {held['held']:,} | {held['asked']:,} | "
                     f"{'-' if stopped is None else f'{stopped:,}'} | {seen} |")
    return lines + [""]


def _incomplete_section(others: list[RunResult], out_dir: Path) -> list[str]:
    if not others:
        return ["None: every run completed."]
    lines = ["These runs did not complete (interrupted, or failed); their figures are in no table or chart above.", ""]
    for run in sorted(others, key=lambda r: r.path.name):
        reached = ", ".join(p.name for p in run.phases) or "no phase"
        lines.append(f"- {_run_name(run, out_dir)}: {run.layout}, {run.probe} probe, "
                     f"status {run.status}, reached {reached}")
    return lines


def _determinism_section() -> list[str]:
    fixed = [f"`{m.name}`" for m in METRICS.values() if m.deterministic]
    varies = [f"`{m.name}`" for m in METRICS.values() if not m.deterministic]
    return [
        "- **Deterministic** (the same code on the same Python allocates the same: repeated runs agree): "
        + ", ".join(fixed) + ".",
        "- **Vary with the machine and its load** (compare only between runs made side by side): "
        + ", ".join(varies) + ".",
        "",
        "RSS counts the whole process (the interpreter alone is about 14 MB) and, in tracemalloc and memray runs, "
        "the tracer's own memory, which is why RSS figures come from the rss-probe runs.",
    ]


# --- the report ----------------------------------------------------------------------------------
def _owners_lines(by_layout: dict[str, dict[str, RunResult]]) -> list[str]:
    """The owners of each subject whose tracemalloc run took heap graphs (``--heap-graph``; ``make
    experiment`` takes them for the subjects of :data:`experiments.measure.matrix.OWNERS_SUBJECTS`),
    and a line per owners.json that failed its checks."""
    problems: list[str] = []
    tables = owner_tables(by_layout, problems)
    lines = owners_markdown(tables)
    if not tables:
        lines += ["No tracemalloc run of this report took heap graphs (`memdiet run --heap-graph`).", ""]
    lines += [f"- owners not shown for {problem}" for problem in problems] + ([""] if problems else [])
    return lines


def refuse_incomparable(runs: Iterable[RunResult]) -> None:
    """Raise :class:`IncomparableRuns` when the runs a report's tables would use (the latest complete
    run of each layout and probe) were made with different
    :data:`~experiments.dataset.results.COMPARED_PARAMETERS`; a caller that writes into the report's
    folder before :func:`build_report` asks this first, so a refused report leaves nothing behind."""
    complete, _ = split_by_status(runs)
    differing = differing_parameters(chosen_runs(complete))
    if differing:
        raise IncomparableRuns("the latest complete runs of the layouts and probes were made with different "
                               f"parameters: {describe_differences(differing)}")


def build_report(runs: list[RunResult], out_dir: Path, *, title: str = DEFAULT_TITLE,
                 matrix_info: dict[str, Any] | None = None, allow_mixed: bool = False,
                 anatomy_file: Path | None = None) -> Path:
    """Write ``out_dir/index.md`` and its charts for ``runs``; return the index's path.

    ``matrix_info`` (what the matrix ran: e.g. quick mode, probes, wall time) is listed in the
    intro as given. The per-slot anatomy is read from ``anatomy_file`` (default:
    ``out_dir/anatomy.json``, which the matrix writes). Every file is written atomically.

    The tables take the latest complete run of each layout and probe; when those were made with
    different :data:`~experiments.dataset.results.COMPARED_PARAMETERS` (runs of several matrices), raises
    :class:`IncomparableRuns` before writing anything, or with ``allow_mixed`` writes one report
    per parameter set into ``out_dir/set-<n>/`` and an index of them.
    """
    out_dir = Path(out_dir)
    complete, others = split_by_status(runs)
    if differing_parameters(chosen_runs(complete)):
        if not allow_mixed:
            refuse_incomparable(runs)
        return _build_separated(runs, out_dir, title, anatomy_file or out_dir / ANATOMY_FILE)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged = merged_metrics(complete)
    by_layout = latest_runs(complete)

    lines = [f"# {title}", "", *_intro(complete, others, matrix_info or {}), ""]
    if complete:
        render_comparison(complete, out_dir / "comparison")
        anatomy_file = Path(anatomy_file or out_dir / ANATOMY_FILE)
        by_layout_anatomy = read_anatomies(anatomy_file)
        anatomies = [by_layout_anatomy[layout] for layout in merged if layout in by_layout_anatomy]
        measured = {layout: figures["bytes_per_slot"].value for layout, figures in merged.items() if "bytes_per_slot" in figures}
        if anatomies:
            render_anatomy(anatomies, out_dir / "anatomy", measured)
        lines += ["## Layouts compared", "", _image("comparison", "memory per layout"), "",
                  "## Summary metrics", "",
                  "Each figure comes from the probe named in its row (RSS and load figures from the rss-probe run, "
                  "which has no tracer inside; heap figures from the tracemalloc run); a figure taken from another "
                  "probe, for want of that run, names its probe. Sizes in B, KiB (1,024 B) and MiB.", "",
                  *_summary_table(merged), "",
                  "## Reduction versus naive", "", *_reduction_section(merged), ""]
        if anatomies:
            lines += ["## Per-slot anatomy", "", *_anatomy_section(anatomies, merged), ""]
        elif not anatomy_file.is_file():
            lines += ["## Per-slot anatomy", "", _missing_anatomy(anatomy_file, out_dir), ""]
        lines += ["## Where each server's bytes per held connection go", "",
                  "The Python heap live at the end of `idle-held` less that at the end of `idle-empty`, by the line "
                  "that allocated it, divided by the C clients held: the study's question asked of each server, "
                  "ours and the ones people run. Sites of the subject's own code, its framework's and the standard "
                  "library's alike; C extensions' own allocations show under memray's native frames.", "",
                  *held_sites_markdown(held_site_tables(by_layout)),
                  "## Who keeps each connection's bytes: owners and retained sizes", "",
                  "The heap graph at the end of `idle-empty` and of `idle-held` (every gc-tracked object and what it "
                  "refers to), its dominator tree and each object's retained size: the bytes freed if it alone were "
                  "no longer referred to. A per-connection type grows by a whole number of instances per held "
                  "connection; its owner is the one no other per-connection object dominates (docs/owners.md). "
                  "`memdiet view owners RUN` prints each owner's retained tree.", "",
                  *_owners_lines(by_layout)]
        ledgers = ledger_tables(by_layout)
        if ledgers:
            render_ledger_chart(ledgers, out_dir / "ledger")
            lines += ["## Where the RSS goes: the ledger", "", _image("ledger", "RSS ledger per layout"), "",
                      *ledger_markdown(ledgers)]
        checks = crosscheck_tables(by_layout)
        if checks:
            lines += ["## massif beside tracemalloc", "", *crosscheck_markdown(checks)]
        agreements = agreement_rows(by_layout)
        if agreements:
            lines += ["## Traced heap beside untraced RSS, per held connection", "", *agreement_markdown(agreements)]
        lines += ["## Memory over time, per layout", "",
                  "Massif-style: heap by allocation site (top sites stacked, the rest as *other*), phases shaded, "
                  "the heap peak marked, and the process's RSS as a line on top.", "",
                  *_curve_section(by_layout, out_dir)]
    else:
        lines += ["No complete run: nothing to compare.", ""]
    lines += _held_section(runs, out_dir)
    lines += ["## Runs", "", *_runs_section(runs, out_dir), "",
              "## Which figures are deterministic", "", *_determinism_section(), "",
              "## Incomplete runs", "", *_incomplete_section(others, out_dir), ""]
    index = out_dir / INDEX_FILE
    write_atomic(index, "\n".join(lines))
    return index


def _build_separated(runs: list[RunResult], out_dir: Path, title: str, anatomy_file: Path) -> Path:
    """One report per parameter set in ``out_dir/set-<n>/`` (most complete runs first), and an
    ``index.md`` listing them with the parameters that tell them apart. Every set reads the
    anatomy of ``anatomy_file``."""
    sets = parameter_sets(runs)
    keys = [dict(parameter_key(group[0])) for group in sets]
    differing = [name for name in keys[0] if len({repr(key[name]) for key in keys}) > 1]
    rows = []
    for number, group in enumerate(sets, start=1):
        index = build_report(group, out_dir / f"set-{number}", title=f"{title}: parameter set {number}",
                             anatomy_file=anatomy_file)
        values = dict(parameter_key(group[0]))
        complete = sum(run.status == "complete" for run in group)
        rows.append([_link(index, out_dir, f"set {number}"), *(_value_text(values[name]) for name in differing),
                     f"{complete} of {len(group)}", ", ".join(layout_order({run.layout for run in group}))])
    lines = [f"# {title}", "",
             f"These {len(runs)} runs were made with {len(sets)} different parameter sets (they differ in "
             f"{', '.join(differing)}), whose figures are not comparable: one report per set, each with its own "
             "tables and charts.", "",
             *table(["report", *differing, "complete runs", "layouts"], rows, "l" + "r" * len(differing) + "rl"), ""]
    index = out_dir / INDEX_FILE
    write_atomic(index, "\n".join(lines))
    return index

