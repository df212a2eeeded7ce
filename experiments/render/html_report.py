"""The interactive report of a set of runs: ``index.html`` beside ``index.md``, one self-contained page.

It is the viewer's page (:mod:`tracemalloc_viewer.outputs.html`) with the runs on it: one massif-style
curve per run (the latest complete run of each layout and probe: stacked sites from the viewer's
reading of the run folder, the heap total, RSS and the tracer's own memory as lines, the scenario's
phases shaded), the sites table and the comparison of any two moments, then the report's own charts
as plotly figures: the layouts compared (RSS per phase, bytes per slot beside C), the per-slot anatomy
and, where a run's result.json holds one, its RSS ledger.

Rules: it reads files only (run folders through :mod:`experiments.dataset` and the viewer's sources,
the anatomy file), as every renderer; it builds the page's data first and renders it into a stream;
the command chooses the file (:func:`write_html_report` takes the path it was given). Runs are
compared across only within one probe (the same sites) and one parameter set; which run fed the page
is listed on it. Sizes are formatted by :mod:`.units` (the viewer's rows by the viewer's units).
"""

from __future__ import annotations

import io
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from tracemalloc_viewer import LoadOptions, ViewerInputError, open_series
from tracemalloc_viewer.outputs import html

from ..dataset.anatomy import ANATOMY_FILE, PART_NAMES, read_anatomies
from ..dataset.results import IDLE_HELD, RSS_FILE, RunResult, write_atomic
from ..dataset.rss_ledger import REMAINDER, ledger_table, read_ledger
from ..dataset.selection import (
    BASELINE_LAYOUT,
    CURVE_PROBES,
    RSS_PROBES,
    chosen_runs,
    layout_order,
    merged_metrics,
    parameter_key,
    parameter_sets,
    pick_run,
    reductions,
    split_by_status,
)
from ..paths import REPO_ROOT, relative_posix
from .anatomy_chart import PART_COLOURS
from .comparison import RSS_BARS, SLOT_BARS
from .figures import SITE_COLOURS, series_column
from .owners_md import owners_page_section
from .units import MISSING, exact_bytes, human_bytes, percent_change, slot_bytes

HTML_FILE = "index.html"
DEFAULT_TITLE = "memdiet: memory of each connection-table layout (interactive)"
RSS_COLOUR = "#000000"
USS_COLOUR = "#2ca02c"
TRACER_COLOUR = "#6a51a3"


def write_html_report(runs: Sequence[RunResult], path: Path, *, anatomy_file: Path | None = None,
                      title: str = DEFAULT_TITLE) -> Path:
    """Build the page of ``runs`` and write it to ``path`` atomically; return ``path``. The anatomy
    is read from ``anatomy_file`` (default: ``anatomy.json`` beside ``path``)."""
    path = Path(path)
    page = build_html_report(runs, anatomy_file or path.parent / ANATOMY_FILE, title=title, out_dir=path.parent)
    stream = io.StringIO()
    html.render(page, stream)
    # The viewer's notes name the folder it shortened paths against (a diff of two runs says
    # "relative to /home/..."): a committed page names no folder of the machine that made it.
    text = stream.getvalue().replace(f"relative to {REPO_ROOT}/", "relative to the repository")
    write_atomic(path, text.replace(f"{REPO_ROOT}/", ""))
    return path


def build_html_report(runs: Sequence[RunResult], anatomy_file: Path, *, title: str = DEFAULT_TITLE,
                      out_dir: Path | None = None) -> html.Page:
    """The page's data for ``runs`` (see the module docstring); ``out_dir`` is where the page will be,
    so that run folders are named relative to it."""
    complete, others = split_by_status(runs)
    used = chosen_runs(complete)
    sets = parameter_sets(used)
    mixed = len(sets) > 1
    order = {layout: rank for rank, layout in enumerate(layout_order({run.layout for run in used}))}
    probe_rank = {probe: rank for rank, probe in enumerate(CURVE_PROBES)}
    used.sort(key=lambda run: (order[run.layout], probe_rank.get(run.probe, len(probe_rank)), run.path.name))
    captures, failed = [], []
    for run in used:
        try:
            captures.append(_capture(run, out_dir, mixed))
        except ViewerInputError as error:
            failed.append(f"{run.layout} · {run.probe}: no curve ({error})")
    main = sets[0] if sets else []
    sections = [section for section in (
        _comparison_section(main, mixed),
        _anatomy_section(anatomy_file, main),
        _ledger_section(used),
        owners_page_section(used),
        _runs_section(runs, used, out_dir),
    ) if section is not None]
    intro = _intro(complete, others, used, mixed) + failed
    # The compare view opens on the held connections: the end of idle-held (a full dump, every site
    # named) of the first and the last layout.
    return html.build(captures, title, intro, sections, short_names=True, default_kind=f"phase:{IDLE_HELD}")


# --- the curves ----------------------------------------------------------------------------------------
def _capture(run: RunResult, out_dir: Path | None, mixed: bool) -> html.Capture:
    series = open_series([run.path], LoadOptions(html.DETAIL))
    from_rss = series.source.endswith(RSS_FILE)  # a run without heap data: its curve is rss.csv
    lines = []
    rss_times, rss_bytes = _bytes_column(run.rss, "rss_bytes")
    if rss_times:
        lines.append(html.Line("RSS, whole process", rss_times, rss_bytes, color=RSS_COLOUR))
    if from_rss:
        uss_times, uss_bytes = _bytes_column(run.rss, "uss_bytes")
        if uss_times:
            lines.append(html.Line("USS, pages unique to the server", uss_times, uss_bytes, color=USS_COLOUR, width=1.3))
    else:
        tracer_times, tracer_bytes = _bytes_column(run.heap, "tracer_bytes")
        if tracer_times and any(tracer_bytes):
            lines.append(html.Line("the tracer's own bookkeeping", tracer_times, tracer_bytes, color=TRACER_COLOUR,
                                   dash="dot", width=1.2))
    group = run.probe + (f" ({_parameters(run)})" if mixed else "")
    return html.Capture(
        series, f"{run.layout} · {run.probe} probe", phases=[html.Phase(p.name, p.start_s, p.end_s) for p in run.phases],
        lines=lines, total_line=None if from_rss else "heap total (traced)", group=group, bands=not from_rss,
        notes=[f"run {run.path.name if out_dir is None else relative_posix(run.path, out_dir)}" + (f" ({_parameters(run)})" if mixed else "")],
        time_label="seconds since the server started", command=_command(run))


def _bytes_column(series: Any, name: str) -> tuple[list[float], list[int]]:
    """:func:`~.figures.series_column`, the sizes as ints (the page's JSON writes them without a point)."""
    times, values = series_column(series, name)
    return times, [int(value) for value in values]


def _command(run: RunResult) -> str:
    """The server's command line as the run recorded it, naming no folder of the machine: the
    interpreter as ``python``, paths inside the repository relative to it, other absolute paths
    by their last part."""
    command = run.document.get("server_command")
    if not isinstance(command, list) or not command:
        return f"{run.layout} · {run.probe} probe"
    words = []
    for number, word in enumerate(map(str, command)):
        if number == 0 and Path(word).name.startswith("python"):
            words.append("python")
        elif Path(word).is_absolute():
            path = Path(word)
            words.append(path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else path.name)
        else:
            words.append(word)
    return " ".join(words)


def _parameters(run: RunResult) -> str:
    return ", ".join(f"{name} {value}" for name, value in parameter_key(run)
                     if name in ("max_conns", "connections", "idle_s", "load_s"))


def _intro(complete: list[RunResult], others: list[RunResult], used: list[RunResult], mixed: bool) -> list[str]:
    lines = [f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from {len(complete) + len(others)} runs: "
             f"the latest complete run of each layout and probe ({len(used)}) is drawn"
             + (f"; {len(others)} incomplete run{'s' if len(others) != 1 else ''} left out" if others else "") + ". The tables and the "
             "reductions versus naive are in `index.md` beside this page."]
    parameters = sorted({_parameters(run) for run in used})
    if mixed:
        lines.append("These runs were made with different parameters (" + "; ".join(parameters) + "): runs are "
                     "compared only within one parameter set, and the layout charts show the largest set.")
    elif parameters:
        environment = (used[0].document.get("environment") or {}) if used else {}
        machine = ", ".join(str(part) for part in (environment.get("cpu_model"), environment.get("cpu_count") and
                                                   f"{environment.get('cpu_count')} cores",
                                                   environment.get("python") and f"CPython {environment.get('python')}")
                            if part)
        lines.append(f"Parameters: {parameters[0]}." + (f" Machine: {machine}." if machine else ""))
    return lines


# --- the layouts compared ----------------------------------------------------------------------------------
def _comparison_section(runs: list[RunResult], mixed: bool) -> html.Section | None:
    merged = merged_metrics(runs)
    if not merged:
        return None
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    layouts = list(merged)
    figure = make_subplots(rows=1, cols=2, column_widths=[0.58, 0.42], horizontal_spacing=0.09, subplot_titles=(
        "Server RSS per layout (change versus naive in the labels)", "One preallocated slot: Python heap beside C"))
    for column, bars, as_slot in ((1, RSS_BARS, False), (2, SLOT_BARS, True)):
        for metric, label, colour, with_change in bars:
            changes = reductions(merged, metric) if with_change else {}
            present = [layout for layout in layouts if metric in merged[layout]]
            if not present:
                continue
            values = [merged[layout][metric].value for layout in present]
            texts = [_bar_text(merged[layout][metric].value, changes.get(layout), layout, as_slot) for layout in present]
            probes = [merged[layout][metric].probe for layout in present]
            figure.add_trace(go.Bar(
                x=present, y=values, name=label, marker_color=colour, text=texts, textposition="outside",
                textangle=0 if as_slot else -90, cliponaxis=False,
                customdata=[[text.replace("<br>", " "), probe] for text, probe in zip(texts, probes)],
                hovertemplate=f"<b>%{{x}}</b>: {label}<br>%{{customdata[0]}}<br>from the %{{customdata[1]}} probe's run"
                              "<extra></extra>", legendgroup=f"panel{column}"), row=1, col=column)
    top = max((figure.value for layout in layouts for metric, *_ in RSS_BARS
               for figure in [merged[layout].get(metric)] if figure is not None), default=0)
    figure.update_yaxes(title_text="RSS (whole process)", range=[0, top * 1.4 or 1], **_byte_ticks(top * 1.3), row=1, col=1)
    figure.update_yaxes(title_text="bytes per slot (log scale)", type="log", row=1, col=2)
    figure.update_layout(barmode="group", height=520, margin={"l": 80, "r": 20, "t": 60, "b": 40},
                         legend={"orientation": "h", "y": -0.12}, uniformtext_minsize=8, uniformtext_mode="show")
    text = ["Idle, held and loaded-peak RSS per layout, each from the layout's rss-probe run (no tracer inside) "
            "when there is one; beside it, the Python heap per slot (tracemalloc) and the slot as a C struct. Hover "
            "a bar for its figure and the run it came from; click a legend entry to hide a series."]
    if mixed:
        text.append("Runs of the largest parameter set only: " + _parameters(runs[0]) + ".")
    return html.Section("Layouts compared", text, figure=figure, anchor="layouts")


def _bar_text(value: float, change: float | None, layout: str, as_slot: bool) -> str:
    size = exact_bytes(value) if as_slot else human_bytes(value)
    if layout == BASELINE_LAYOUT or change is None:
        return size
    return f"{size}<br>{percent_change(change)}"


def _byte_ticks(top: float) -> dict[str, Any]:
    """Round byte ticks from 0 to ``top``, labelled by :func:`.units.human_bytes`."""
    return html.byte_ticks(top, human_bytes)


# --- the anatomy -----------------------------------------------------------------------------------------
def _anatomy_section(anatomy_file: Path, runs: list[RunResult]) -> html.Section | None:
    if not Path(anatomy_file).is_file():
        return html.Section("Per-slot anatomy", [f"Missing: no `{Path(anatomy_file).name}` beside this page (a matrix "
                                                  "measures it; a report measures nothing itself)."], anchor="anatomy")
    by_layout = read_anatomies(Path(anatomy_file))
    layouts = [layout for layout in layout_order({run.layout for run in runs} or set(by_layout)) if layout in by_layout]
    if not layouts:
        return None
    anatomies = [by_layout[layout] for layout in layouts]
    measured = {layout: figures["bytes_per_slot"].value for layout, figures in merged_metrics(runs).items()
                if "bytes_per_slot" in figures}
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    figure = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.12,
                           subplot_titles=("Each part's share of one slot", "The whole slot: Python beside C (log scale)"))
    names = [anatomy.layout for anatomy in anatomies]
    done = [0.0] * len(anatomies)  # the parts are stacked by hand: the other panel's bars stand side by side
    for part in PART_NAMES:
        sizes = [anatomy.parts.get(part, 0.0) for anatomy in anatomies]
        if not any(sizes):
            continue
        shares = [100 * size / anatomy.total if anatomy.total else 0 for size, anatomy in zip(sizes, anatomies)]
        base, done = done, [start + share for start, share in zip(done, shares)]
        figure.add_trace(go.Bar(
            y=names, x=shares, base=base, offsetgroup="parts", orientation="h", name=part,
            marker_color=PART_COLOURS.get(part), legendgroup="parts",
            customdata=[[slot_bytes(size), f"{share:.1f}%"] for size, share in zip(sizes, shares)],
            hovertemplate=f"<b>%{{y}}</b>: {part}<br>%{{customdata[0]}} per slot, %{{customdata[1]}} of it<extra></extra>"),
            row=1, col=1)
    figure.add_trace(go.Bar(
        y=names, x=[anatomy.total for anatomy in anatomies], orientation="h", name="Python, by parts", offsetgroup="python",
        marker_color="#e6550d", text=[slot_bytes(anatomy.total) for anatomy in anatomies], textposition="outside",
        hovertemplate="<b>%{y}</b>: %{text} per slot in Python (sum of the parts)<extra></extra>"), row=1, col=2)
    figure.add_trace(go.Bar(
        y=names, x=[anatomy.c_bytes_per_slot for anatomy in anatomies], orientation="h", name="C struct (ctypes.sizeof)",
        offsetgroup="c",
        marker_color="#636363", text=[f"{anatomy.c_bytes_per_slot:,} B" for anatomy in anatomies], textposition="outside",
        hovertemplate="<b>%{y}</b>: %{text} as a C struct<extra></extra>"), row=1, col=2)
    if measured:
        present = [anatomy.layout for anatomy in anatomies if anatomy.layout in measured]
        figure.add_trace(go.Scatter(
            y=present, x=[measured[layout] for layout in present], mode="markers", name="measured by tracemalloc",
            marker={"symbol": "line-ns-open", "size": 18, "color": "black", "line": {"width": 2}},
            text=[slot_bytes(measured[layout]) for layout in present],
            hovertemplate="<b>%{y}</b>: %{text} per slot measured (tracemalloc run)<extra></extra>"), row=1, col=2)
    figure.update_xaxes(title_text="share of the slot's bytes (%)", range=[0, 100], row=1, col=1)
    largest = max([anatomy.total for anatomy in anatomies] + [10.0])
    figure.update_xaxes(title_text="bytes per slot", type="log", range=[0, math.log10(largest) + 0.7], row=1, col=2)
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(barmode="group", height=170 + 80 * len(anatomies), margin={"l": 90, "r": 30, "t": 60, "b": 50},
                         legend={"orientation": "h", "y": -0.25})
    python = anatomies[0].python
    return html.Section("Per-slot anatomy", [
        f"What one preallocated slot is made of, derived from the layout classes with `sys.getsizeof` on CPython "
        f"{python} (`experiments/measure/anatomy.py` says how each part is counted), beside the same slot as a C "
        "struct and the bytes per slot the tracemalloc run measured. Hover a part for its bytes."],
        figure=figure, anchor="anatomy")


# --- the RSS ledger ------------------------------------------------------------------------------------------
def _ledger_section(runs: list[RunResult]) -> html.Section | None:
    """Each layout's RSS ledger as stacked bars (one bar per moment): from the first run, in
    :data:`RSS_PROBES` order, whose result.json records a ledger (the runner writes it for the
    tracemalloc probe), else the kernel's split of the rss-probe run's process tree."""
    by_layout: dict[str, dict[str, RunResult]] = {}
    for run in runs:
        by_layout.setdefault(run.layout, {})[run.probe] = run
    entries = []  # (bar label, {part: bytes})
    for layout in layout_order(by_layout):
        by_probe = by_layout[layout]
        probes = [probe for probe in RSS_PROBES if probe in by_probe] + sorted(set(by_probe) - set(RSS_PROBES))
        run = next((by_probe[probe] for probe in probes if ledger_table(by_probe[probe]) is not None),
                   None) or pick_run(by_probe, RSS_PROBES)
        for moment, parts in _ledger(run.document):
            entries.append((f"{run.layout} · {run.probe}" + (f" · {moment}" if moment else ""), parts))
    if not entries:
        return None
    import plotly.graph_objects as go

    # The parts in a ledger's order: the fullest first (a bare interpreter has no tracer's parts).
    parts = list(dict.fromkeys(part for _label, by_part in sorted(entries, key=lambda entry: -len(entry[1]))
                               for part in by_part))
    figure = go.Figure()
    labels = [label for label, _ in entries]
    totals = [human_bytes(sum(by_part.values())) for _label, by_part in entries]
    for number, part in enumerate(parts):
        values = [by_part.get(part, 0) for _label, by_part in entries]
        colour = LEDGER_REMAINDER_COLOUR if part.startswith(REMAINDER) else SITE_COLOURS[number % len(SITE_COLOURS)]
        figure.add_trace(go.Bar(
            y=labels, x=values, orientation="h", name=part, marker_color=colour,
            customdata=[[human_bytes(value), total] for value, total in zip(values, totals)],
            hovertemplate=f"<b>%{{y}}</b><br>{part}: %{{customdata[0]}} (RSS %{{customdata[1]}})<extra></extra>"))
    # Stacked relative to zero: positive parts to the right, negative ones (address space held and never
    # touched) to the left; a bar's parts add up to its RSS.
    high = max(sum(value for value in by_part.values() if value > 0) for _label, by_part in entries)
    low = min(sum(value for value in by_part.values() if value < 0) for _label, by_part in entries)
    span = (high - low) or 1
    figure.update_xaxes(title_text="resident memory (negative parts left of zero)",
                        range=[low - 0.02 * span if low < 0 else 0, high + 0.05 * span], **_signed_byte_ticks(low, high))
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(barmode="relative", height=140 + 28 * len(entries), margin={"l": 300, "r": 20, "t": 30, "b": 50},
                         legend={"orientation": "h", "y": -0.15})
    return html.Section("RSS ledger", [
        "What each layout's resident memory is made of, as its run's result.json records it: the RSS ledger at the "
        "end of each idle phase and of a bare interpreter (the server's Python importing the same modules, nothing "
        "run, no tracer), each part measured and the remainder, what no part explains, a part of its own; a "
        "negative part (address space the allocators hold and never touched) is drawn left of zero, and a bar's "
        "parts add up to its RSS. A run without a ledger shows the kernel's split of the process tree's RSS at each "
        "phase end (RssAnon, RssFile, RssShmem), from the rss-probe run. Hover a part for its bytes; click a legend "
        "entry to hide a part."], figure=figure, anchor="rss-ledger")


def _signed_byte_ticks(low: float, high: float) -> dict[str, Any]:
    """Round byte ticks from ``low`` (0 or below) to ``high``, both sides with the same step."""
    ticks = _byte_ticks(max(high, -low))
    if not ticks or low >= 0:
        return ticks
    pairs = [(-value, f"-{text}") for value, text in zip(ticks["tickvals"], ticks["ticktext"])
             if 0 < value <= -low][::-1]
    pairs += [(value, text) for value, text in zip(ticks["tickvals"], ticks["ticktext"]) if value <= high]
    return {"tickvals": [value for value, _ in pairs], "ticktext": [text for _, text in pairs]}


#: The kernel's split of RSS (``process_tree.phase_end.PHASE.total`` in result.json), as ledger parts.
TREE_PARTS = (("rss_anon_bytes", "anonymous (heap, stacks)"), ("rss_file_bytes", "file-backed (code, libraries)"),
              ("rss_shmem_bytes", "shared memory"))
#: The remainder's colour: what no part explains stands apart from every measured part.
LEDGER_REMAINDER_COLOUR = "#000000"


def _ledger(document: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """A result.json's RSS ledger as [(moment, {label: bytes})], read by
    :func:`~experiments.dataset.rss_ledger.read_ledger`: the bare interpreter's (when it was measured),
    then idle-empty's, idle-held's and idle-after's, each with the remainder, adding up to its RSS (a part
    may be negative). Without one, the process tree's RSS at each phase end split as the kernel splits it."""
    table = read_ledger(document, "", "")
    if table is not None:
        return [(moment.name, {table.labels.get(part, part): float(size) for part, size in moment.parts.items()})
                for moment in table.moments()]
    phase_end = (document.get("process_tree") or {}).get("phase_end") or {}
    split = {phase: {label: totals[key] for key, label in TREE_PARTS if _is_size(totals.get(key))}
             for phase, entry in phase_end.items() if isinstance(entry, dict)
             for totals in [entry.get("total") or {}]}
    return [(phase, parts) for phase, parts in split.items() if parts]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_size(value: Any) -> bool:
    return _is_number(value) and value >= 0


# --- the runs --------------------------------------------------------------------------------------------------
def _runs_section(runs: Iterable[RunResult], used: list[RunResult], out_dir: Path | None) -> html.Section:
    chosen = {id(run) for run in used}
    rows = []
    for run in sorted(runs, key=lambda run: run.path.name):
        rows.append([run.layout, run.probe, f"`{run.path.name if out_dir is None else relative_posix(run.path, out_dir)}`", run.status,
                     "drawn" if id(run) in chosen else ("superseded by a later run" if run.status == "complete"
                                                         else "left out (not complete)")])
    return html.Section("Runs", [
        "The run folders this page was made from, relative to this page (run folders are not committed: on the "
        "machine that made them they hold the raw captures, which `memdiet view html RUN_DIR` opens alone)."],
        table=(["layout", "probe", "run folder", "status", "on this page"], rows or [[MISSING] * 5]), anchor="runs")
