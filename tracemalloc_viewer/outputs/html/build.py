"""Builds the interactive page's data from viewer series: per capture a massif-style curve (a plotly
figure), sites tables at chosen samples, the moments offered for comparison, and the comparisons.

Rules:

- Everything shown is computed here, in Python, with the viewer's own pieces: the stacked sites are
  :func:`~..timeline.site_matrix`'s (the ``timeline`` image's choice of sites), the tables
  :func:`~...stats.statistics` (``top``'s), every comparison :func:`~...stats.compare` with the notes
  of :func:`~...stats.common_basis` (``diff``'s, so a row reads as ``memdiet view diff`` prints it),
  labels :func:`~...units.frame_label`, sizes :func:`~...units.tracemalloc_bytes`. The page's script only
  shows, sorts and picks among them; it computes no figure.
- The page keeps what :class:`~.page.Budget` allows and says, per capture and for the page, what was
  left out. When the data would make the page heavier than its limit, the budget is tightened and the
  capture built again.
- Figures are built with ``plotly.graph_objects`` (imported when a page is built) and kept as dicts
  without their template: the page applies one template to all.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any, Callable, Sequence

from ...model import Frame, Sample, Series, Site, merge_sites
from ...names import FileKeys, function_name, is_pseudo_site
from ...stats import OTHER, common_basis, compare, statistics
from ...units import frame_label, share, tracemalloc_bytes
from ..timeline import _label as legend_label
from ..timeline import site_matrix
from .page import PAGE_LIMIT_BYTES, Budget, Capture, Line, Page, Phase, Section
from .tree import tree_data

#: The template every figure of the page gets (applied once, by the page's script).
TEMPLATE = "plotly_white"
#: Colours of the stacked sites (plotly's D3 palette, then its light variants) and of "other".
SITE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
                "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2")
OTHER_COLOUR = "#c7c7c7"
PHASE_SHADES = ("rgba(0,0,0,0.055)", "rgba(0,0,0,0)")
TOTAL_COLOUR = "#08306b"
#: Below this share of the largest line, the heap gets a button that scales the y axis to it.
ZOOM_BELOW = 0.3
#: Callers shown in a band's hover, after its allocating line.
STACK_FRAMES = 8
#: Of the page's limit, what plotly.js, the script and the markup leave for the data; of that, the
#: share the curves and tables may take (the rest is for the comparisons).
_MARKUP_SLACK = 96 * 1024
_RUNS_SHARE = 0.75
#: Attempts at a smaller budget before a capture keeps what it has.
_TIGHTENINGS = 4


# --- the page ----------------------------------------------------------------------------------------
def build_page(captures: Sequence[Capture], title: str, intro: Sequence[str] = (), sections: Sequence[Section] = (),
               budget: Budget | None = None, limit: int = PAGE_LIMIT_BYTES, fixed_bytes: int = 0,
               short_names: bool = False, default_kind: str = "peak") -> Page:
    """The page of ``captures`` (one curve each, in order) followed by ``sections``.

    ``limit`` is the page's weight in bytes, of which ``fixed_bytes`` (plotly.js, the script, the
    markup: :func:`.document.fixed_bytes`) are not data. ``short_names``: site labels show absolute
    paths in the short form the page's other names give (:class:`~...names.FileKeys`, as ``diff``
    shortens them), so the page names no folder of the machine it was made on; figures are
    computed on the sites as read, so only the labels change. ``default_kind``: the moment the
    compare view first shows in two captures (``peak``, ``phase:NAME``, ...; the peak when they lack it)."""
    budget = budget or Budget()
    labels = _Labels(_file_keys(captures) if short_names else None)
    data_room = max(64 * 1024, limit - fixed_bytes - _MARKUP_SLACK)
    section_data = [_section(section, index) for index, section in enumerate(sections)]
    data_room -= _weight(section_data)
    run_room = int(data_room * _RUNS_SHARE / max(1, len(captures)))
    runs: list[dict[str, Any]] = []
    moments: list[list[tuple[str, tuple[Site, ...]]]] = []
    tightened: list[str] = []
    for index, capture in enumerate(captures):
        run_budget = budget
        for attempt in range(_TIGHTENINGS + 1):
            mark = len(labels)
            run, kept = _run(capture, index, labels, run_budget)
            size = _weight(run) + labels.weight(mark)
            if size <= run_room or attempt == _TIGHTENINGS:
                break
            labels.forget(mark)
            run_budget = run_budget.smaller()
        if run_budget != budget:
            tightened.append(capture.name)
            run["dropped"].append(f"budget tightened {attempt} time{'s' if attempt != 1 else ''} to keep the page under "
                                  f"{tracemalloc_bytes(limit)}")
        runs.append(run)
        moments.append(kept)
    pair_room = data_room - sum(_weight(run) for run in runs) - labels.weight(0)
    pairs, pair_notes = _pairs(captures, moments, labels, budget, pair_room)
    notes = [
        f"Each curve stacks at most {budget.band_sites} sites (those reaching 1% of the peak at some sample; the rest "
        f"is one \"other\" band) over at most {budget.band_samples} samples with sites; each line keeps at most "
        f"{budget.line_points} points (the lowest and highest of each bucket, so peaks stay).",
        f"Sites tables are kept at up to {budget.table_samples} samples per capture (its moments among them), "
        f"{budget.table_rows} rows each; the rest of a sample's sites is summed in one row.",
        *pair_notes,
        f"Page limit: {tracemalloc_bytes(limit)}, plotly.js included." + (
            f" To stay under it, these captures kept less than the budget above: {', '.join(tightened)}."
            if tightened else ""),
    ]
    data = {
        "title": title,
        "intro": list(intro),
        "labels": labels.texts,
        "runs": runs,
        "pairs": pairs,
        "compare_default": _default_pair(captures, moments, pairs, default_kind),
        "sections": section_data,
        "notes": notes,
        "template": _template(),
    }
    return Page(title, data, notes)


def _weight(value: Any) -> int:
    """Bytes ``value`` takes in the page's data block."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _file_keys(captures: Sequence[Capture]) -> FileKeys:
    return FileKeys({frame.filename for capture in captures for sample in capture.series.samples
                     for site in sample.sites or () for frame in site.frames})


class _Labels:
    """The page's site labels, each once: rows and bands refer to them by index. With ``keys``, a
    label shows its file as ``keys`` names it (its function still looked up through the path read)."""

    def __init__(self, keys: FileKeys | None = None) -> None:
        self.texts: list[str] = []
        self._index: dict[str, int] = {}
        self._keys = keys

    def __len__(self) -> int:
        return len(self.texts)

    def text(self, frame: Frame, legend: bool = False) -> str:
        if self._keys is not None and self._keys.shortening:
            frame = Frame(self._keys.key(frame.filename), frame.lineno, function_name(frame))
        return legend_label(frame) if legend else frame_label(frame)

    def of(self, frame: Frame) -> int:
        text = self.text(frame)
        index = self._index.get(text)
        if index is None:
            index = self._index[text] = len(self.texts)
            self.texts.append(text)
        return index

    def weight(self, start: int) -> int:
        return sum(len(text.encode()) + 3 for text in self.texts[start:])

    def forget(self, start: int) -> None:
        for text in self.texts[start:]:
            del self._index[text]
        del self.texts[start:]


# --- one capture -----------------------------------------------------------------------------------
def _run(capture: Capture, index: int, labels: _Labels, budget: Budget) -> tuple[dict[str, Any], list[tuple[str, tuple[Site, ...]]]]:
    """The capture's data for the page, and its moments' sites (kept for the comparisons)."""
    series = capture.series
    samples = series.samples
    detailed = [position for position, sample in enumerate(samples) if sample.sites is not None]
    peak = series.peak_index
    dropped: list[str] = []
    moments = _moments(capture, detailed, budget) if capture.bands else []
    moment_samples = {position for _label, _kind, position in moments}

    banded = _thin(detailed, budget.band_samples, keep={peak}) if capture.bands else []
    if capture.bands and len(banded) < len(detailed):
        dropped.append(f"curve: sites drawn at {len(banded):,} of the {len(detailed):,} samples that have them "
                       f"(evenly spaced, the peak kept)")
    figure, band_note = _curve(capture, banded, budget, dropped, labels)
    if band_note:
        dropped.append(band_note)

    tabled = sorted(set(_thin(detailed, budget.table_samples, keep=moment_samples | {peak})) | moment_samples | {peak})
    if len(tabled) < len(detailed):
        dropped.append(f"sites tables: at {len(tabled):,} of the {len(detailed):,} samples with sites (the moments "
                       f"and evenly spaced ones); an instant or window picks the nearest of these")
    tables = [_table(samples[position], position, labels, budget) for position in tabled]
    if any(table["rest"] for table in tables):
        dropped.append(f"sites tables: the {budget.table_rows} largest sites of each sample, the rest summed in one row")
    table_of = {position: number for number, position in enumerate(tabled)}
    run = {
        "name": capture.name,
        "source": series.source,
        "command": capture.command or series.command,
        "clock": series.has_clock,
        "samples": len(series),
        "notes": list(capture.notes) + list(series.notes),
        "dropped": dropped,
        "phases": [[phase.name, _time(phase.start_s), _time(phase.end_s)] for phase in capture.phases],
        "figure": figure,
        "tables": tables,
        "peak_table": table_of[peak],
        "moments": [{"label": label, "kind": kind, "table": table_of[position]} for label, kind, position in moments],
        "group": capture.group,
        "div": f"curve-{index}",
    }
    return run, [(kind, samples[position].sites or ()) for _label, kind, position in moments]


def _moments(capture: Capture, detailed: list[int], budget: Budget) -> list[tuple[str, str, int]]:
    """(label, kind, sample position) of the samples offered for comparison: the peak, then each
    phase's end (the last sample with sites before the next phase starts), or without phases evenly
    spaced samples with sites. Kinds ``peak``, ``phase:NAME``, ``first`` and ``last`` are the same
    moment in two captures; ``sample:N`` is not."""
    series = capture.series
    peak = series.peak_index
    when = lambda position: _when(series, position)  # noqa: E731
    moments = [(f"peak, {when(peak)}", "peak", peak)]
    times = [series.samples[position].time_s for position in detailed]
    if capture.phases:
        phases = sorted(capture.phases, key=lambda phase: phase.start_s)
        for number, phase in enumerate(phases):
            until = phases[number + 1].start_s if number + 1 < len(phases) else math.inf
            inside = [position for position, time_s in zip(detailed, times) if phase.start_s <= time_s <= until]
            if inside:
                moments.append((f"end of {phase.name}, {when(inside[-1])}", f"phase:{phase.name}", inside[-1]))
        return moments
    chosen = _thin(detailed, budget.moments, keep={peak})
    for rank, position in enumerate(chosen):
        if position == peak:
            continue
        kind = "first" if rank == 0 else "last" if rank == len(chosen) - 1 else f"sample:{position}"
        label = f"{kind}, {when(position)}" if kind in ("first", "last") else when(position)
        moments.append((label, kind, position))
    return moments


def _when(series: Series, position: int) -> str:
    sample = series.samples[position]
    return f"{sample.time_s:.3f} s" if series.has_clock else f"sample {position}"


def _thin(positions: list[int], most: int, keep: set[int] = frozenset()) -> list[int]:
    """At most about ``most`` of ``positions``, evenly spaced (first and last kept), plus ``keep``."""
    if len(positions) <= most:
        return list(positions)
    step = (len(positions) - 1) / max(1, most - 1)
    chosen = {positions[round(number * step)] for number in range(most)}
    return sorted(chosen | (set(positions) & set(keep)))


def _time(value: float) -> float:
    return round(float(value), 4)


# --- sites tables ------------------------------------------------------------------------------------
def _table(sample: Sample, position: int, labels: _Labels, budget: Budget) -> dict[str, Any]:
    """The sample's sites grouped by line as ``top`` groups them: the largest rows, the rest in one."""
    stats = statistics(sample.sites or (), "lineno")
    total = sample.total_bytes
    blocks = sum(site.count for site in sample.sites or ())
    shown, rest = stats[:budget.table_rows], stats[budget.table_rows:]
    rows = [[labels.of(stat.frames[0]), stat.size, stat.count, tracemalloc_bytes(stat.size), share(stat.size, total)]
            for stat in shown]
    rest_row = None
    if rest:
        size = sum(stat.size for stat in rest)
        rest_row = [len(rest), size, sum(stat.count for stat in rest), tracemalloc_bytes(size), share(size, total)]
    return {"t": _time(sample.time_s), "i": position, "total": total, "total_text": tracemalloc_bytes(total),
            "blocks": blocks, "sites": len(stats), "rows": rows, "rest": rest_row}


# --- the curve ---------------------------------------------------------------------------------------
def _curve(capture: Capture, banded: list[int], budget: Budget, dropped: list[str],
           labels: _Labels) -> tuple[dict[str, Any], str | None]:
    """The capture's curve as a plotly figure (dict): stacked sites at the ``banded`` samples, then
    the series' total and the caller's lines, the phases shaded and named, the peak marked."""
    import plotly.graph_objects as go

    series = capture.series
    figure = go.Figure()
    note = None
    if banded:
        part = Series([series.samples[position] for position in banded], series.command, series.source,
                      series.time_source)
        _indices, keys, sizes, other = site_matrix(part, budget.band_sites + 1, "lineno")
        folded = [number for number, key in enumerate(keys) if _is_other(key[0])]
        for number in reversed(folded):  # a source's own "(other)" goes into the other band
            other = [rest + size for rest, size in zip(other, sizes[number])]
            del keys[number], sizes[number]
        keys, extra = keys[:budget.band_sites], sizes[budget.band_sites:]
        for band in extra:
            other = [rest + size for rest, size in zip(other, band)]
        sizes = sizes[:budget.band_sites]
        all_sites = {(site.frames[0].filename, site.frames[0].lineno) if site.frames else None
                     for position in banded for site in series.samples[position].sites or ()}
        note = (f"curve: {len(keys)} of the {len(all_sites):,} sites stacked (those reaching 1% of the peak at some "
                f"sample, largest first), the rest in \"other\"")
        times = [_time(series.samples[position].time_s) for position in banded]
        mode = "lines" if len(times) > 1 else "lines+markers"
        for number, (key, values) in enumerate(zip(keys, sizes)):
            figure.add_trace(go.Scatter(
                x=times, y=values, name=_escape(labels.text(key[0], legend=True)), stackgroup="sites", mode=mode,
                line={"width": 0.4, "color": SITE_COLOURS[number % len(SITE_COLOURS)]},
                fillcolor=SITE_COLOURS[number % len(SITE_COLOURS)], hoveron="points+fills",
                hovertemplate=_band_hover(labels.text(key[0]), _stack(series, banded, key[0], labels)),
                legendgroup="sites", legendgrouptitle_text="heap by allocation site (stacked)" if number == 0 else None))
        if any(other):
            figure.add_trace(go.Scatter(
                x=times, y=other, name="other", stackgroup="sites", mode=mode,
                line={"width": 0.4, "color": OTHER_COLOUR}, fillcolor=OTHER_COLOUR, hoveron="points+fills",
                hovertemplate=_band_hover(f"other: the {max(0, len(all_sites) - len(keys)):,} sites not drawn", ""),
                legendgroup="sites"))
    lines = list(capture.lines)
    if capture.total_line:
        lines.insert(0, _total_line(capture))
    for line in lines:
        times, values = downsample(line.times, line.values, budget.line_points)
        if len(times) < len(line.times):
            dropped.append(f"{line.name}: {len(times):,} of {len(line.times):,} points drawn (lowest and highest of "
                           f"each bucket kept)")
        figure.add_trace(go.Scatter(
            x=[_time(time_s) for time_s in times], y=values, name=line.name, mode="lines",
            line={"color": line.color, "dash": line.dash, "width": line.width},
            hovertemplate=f"<b>{_escape(line.name)}</b><br>%{{x:.3f}} s%{{customdata}}<br>%{{y:,}} B<extra></extra>"))
    peak = series.peak
    top = max([peak.total_bytes] + [max(line.values, default=0) for line in lines])
    menus = []
    if banded and peak.total_bytes < ZOOM_BELOW * top:  # the heap is a thin strip under RSS: offer its own scale
        menus.append({"type": "buttons", "direction": "right", "x": 1.0, "xanchor": "right", "y": 1.02, "yanchor": "bottom",
                      "showactive": True, "active": 0, "pad": {"r": 4, "t": 0}, "font": {"size": 11}, "buttons": [
                          {"label": "y: everything", "method": "relayout", "args": [_y_axis(top)]},
                          {"label": "y: the heap", "method": "relayout", "args": [_y_axis(peak.total_bytes)]}]})
    figure.update_layout(
        updatemenus=menus,
        height=470, margin={"l": 70, "r": 20, "t": 48, "b": 50}, hovermode="closest",
        title={"text": _escape(capture.name), "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        xaxis={"title": {"text": capture.time_label or ("seconds" if series.has_clock else "sample index")},
               "zeroline": False},
        yaxis={"title": {"text": "bytes"}, "rangemode": "tozero",
               **{key.split(".", 1)[1]: value for key, value in _y_axis(top).items()}},
        legend={"font": {"size": 10}, "groupclick": "toggleitem", "itemdoubleclick": "toggleothers"},
        shapes=_phase_shapes(capture.phases),
        annotations=_phase_names(capture.phases) + [{
            "x": _time(peak.time_s), "y": peak.total_bytes, "text": f"peak {tracemalloc_bytes(peak.total_bytes)}",
            "showarrow": True, "arrowhead": 2, "ax": 0, "ay": -28, "font": {"color": "#b00020", "size": 11},
            "bgcolor": "rgba(255,255,255,0.8)"}],
    )
    return _figure_dict(figure), note


def _y_axis(top: float) -> dict[str, Any]:
    """The y axis from 0 to a little above ``top`` bytes, as relayout arguments."""
    ticks = byte_ticks(top * 1.15)
    return {"yaxis.range": [0, top * 1.15 or 1], "yaxis.tickvals": ticks.get("tickvals"),
            "yaxis.ticktext": ticks.get("ticktext")}


def _is_other(frame: Frame) -> bool:
    return is_pseudo_site(frame) and frame.filename == OTHER


def _total_line(capture: Capture) -> Line:
    series = capture.series
    return Line(capture.total_line or "total", [sample.time_s for sample in series.samples],
                [sample.total_bytes for sample in series.samples], color=TOTAL_COLOUR, dash="dash", width=1.4)


def _stack(series: Series, banded: list[int], head: Frame, labels: _Labels) -> str:
    """The callers of the largest traceback allocating at ``head``'s line in the banded samples."""
    best: Site | None = None
    for position in banded:
        for site in series.samples[position].sites or ():
            if site.frames and site.frames[0].filename == head.filename and site.frames[0].lineno == head.lineno:
                if best is None or site.size > best.size:
                    best = site
    if best is None or len(best.frames) < 2:
        return ""
    callers = best.frames[1:]
    lines = [f"called from {_escape(labels.text(frame))}" for frame in callers[:STACK_FRAMES]]
    if len(callers) > STACK_FRAMES:
        lines.append(f"... {len(callers) - STACK_FRAMES} more frames")
    return "<br>" + "<br>".join(lines)


def _band_hover(site: str, stack: str) -> str:
    return f"<b>{_escape(site)}</b>{stack}<br>%{{x:.3f}} s%{{customdata}}<br>%{{y:,}} B<extra></extra>"


def _escape(text: str) -> str:
    """Text for plotly's labels, which read a little HTML: ``<listcomp>`` must not become a tag, and
    ``%{`` not a template field."""
    return html.escape(text, quote=False).replace("%{", "%\u200b{")


def _phase_shapes(phases: Sequence[Phase]) -> list[dict[str, Any]]:
    return [{"type": "rect", "xref": "x", "yref": "paper", "x0": _time(phase.start_s), "x1": _time(phase.end_s),
             "y0": 0, "y1": 1, "fillcolor": PHASE_SHADES[number % 2], "line": {"width": 0}, "layer": "below"}
            for number, phase in enumerate(phases)]


def _phase_names(phases: Sequence[Phase]) -> list[dict[str, Any]]:
    return [{"x": _time((phase.start_s + phase.end_s) / 2), "y": 1.0 if number % 2 == 0 else 0.955,
             "xref": "x", "yref": "paper", "text": _escape(phase.name), "showarrow": False, "yanchor": "top",
             "font": {"size": 10, "color": "#404040"}, "bgcolor": "rgba(255,255,255,0.75)"}
            for number, phase in enumerate(phases)]


def byte_ticks(top: float, label: Callable[[float], str] = tracemalloc_bytes) -> dict[str, Any]:
    """plotly ``tickvals`` and ``ticktext`` for a byte axis from 0 to ``top``: round steps (1, 2, 2.5
    or 5 times a power of ten) of the binary unit the axis reaches (B, KiB, MiB, GiB), each labelled
    by ``label`` (the viewer's :func:`~...units.tracemalloc_bytes` unless a caller has its own)."""
    if top <= 0:
        return {}
    unit = 1
    while top / unit >= 1024 * 2 and unit < 1024 ** 3:
        unit *= 1024
    rough = top / unit / 5
    magnitude = 10 ** math.floor(math.log10(rough)) if rough > 0 else 1
    step = next(factor * magnitude for factor in (1, 2, 2.5, 5, 10) if factor * magnitude >= rough) * unit
    values = [number * step for number in range(int(top // step) + 1)]
    return {"tickvals": values, "ticktext": [label(value) for value in values]}


def downsample(times: Sequence[float], values: Sequence[float], most: int) -> tuple[list[float], list[float]]:
    """At most about ``most`` points of a line: the first and last, and in each of ``most // 2``
    buckets of equal count the lowest and the highest point, in time order (peaks and dips stay)."""
    times, values = list(times), list(values)
    if len(times) <= most:
        return times, values
    buckets = max(1, (most - 2) // 2)
    size = (len(times) - 2) / buckets
    kept = {0, len(times) - 1}
    for number in range(buckets):
        start, stop = 1 + int(number * size), 1 + int((number + 1) * size)
        if stop > start:
            window = range(start, stop)
            kept.add(min(window, key=values.__getitem__))
            kept.add(max(window, key=values.__getitem__))
    order = sorted(kept)
    return [times[position] for position in order], [values[position] for position in order]


def _figure_dict(figure: Any) -> dict[str, Any]:
    """A plotly figure (or its dict) as a plain dict, without its template (the page applies one)."""
    if hasattr(figure, "to_plotly_json"):
        import plotly.io as pio

        figure = json.loads(pio.to_json(figure, validate=False))
    figure = dict(figure)
    layout = dict(figure.get("layout") or {})
    layout.pop("template", None)
    figure["layout"] = layout
    return figure


def _template() -> dict[str, Any]:
    import plotly.io as pio

    return json.loads(json.dumps(pio.templates[TEMPLATE].to_plotly_json()))


# --- the comparisons ---------------------------------------------------------------------------------
def _pairs(captures: Sequence[Capture], moments: list[list[tuple[str, tuple[Site, ...]]]], labels: _Labels,
           budget: Budget, room: int) -> tuple[dict[str, Any], list[str]]:
    """``{"A.m>B.n": comparison}``: how the sites of moment n of capture B differ from moment m of
    capture A, as ``diff`` computes it; and the notes saying which pairs the page holds."""
    total = sum(len(kept) for kept in moments)
    every = total <= budget.all_pairs_up_to
    wanted = []
    for run_a, kept_a in enumerate(moments):
        for run_b, kept_b in enumerate(moments):
            for moment_a, (kind_a, _sites) in enumerate(kept_a):
                for moment_b, (kind_b, _sites) in enumerate(kept_b):
                    if (run_a, moment_a) == (run_b, moment_b):
                        continue
                    if every or run_a == run_b or (kind_a == kind_b and not kind_a.startswith("sample:")
                                                   and captures[run_a].group == captures[run_b].group):
                        wanted.append((run_a, moment_a, run_b, moment_b))
    if every:
        notes = [f"Compare: every two of the page's {total} moments."]
    else:
        notes = ["Compare: any two moments of one capture; across captures, the same moment (the peak, a phase's "
                 "end, the first or last sample with sites)" + (" of captures of the same group (same probe)"
                                                                  if len({c.group for c in captures}) > 1 else "") + "."]
    rows = budget.diff_rows
    files = [[frozenset(frame.filename for site in sites for frame in site.frames) for _kind, sites in kept]
             for kept in moments]
    heads = [[_heads(sites) for _kind, sites in kept] for kept in moments]
    while True:
        mark = len(labels)
        pairs = {}
        for a, m, b, n in wanted:
            # When the two sides' file names have one form, the common basis renames nothing and grouping
            # by line reads only the allocating frame: the callers change no figure, and are left out.
            one_form = not FileKeys(files[a][m] | files[b][n]).shortening
            old, new = (heads[a][m], heads[b][n]) if one_form else (moments[a][m][1], moments[b][n][1])
            pairs[f"{a}.{m}>{b}.{n}"] = _comparison(old, new, labels, rows)
        size = _weight(pairs) + labels.weight(mark)
        if size <= room or rows <= 5:
            break
        labels.forget(mark)
        rows = max(5, rows // 2)
    notes.append(f"Each comparison lists the {rows} largest changes (as `diff` orders them); the rest is summed "
                 f"in one row." + (f" (Cut from {budget.diff_rows} rows to keep the page under its limit.)"
                                    if rows < budget.diff_rows else ""))
    return pairs, notes


def _heads(sites: tuple[Site, ...]) -> tuple[Site, ...]:
    """The sites cut to their allocating frame (equal ones merged)."""
    return merge_sites([Site(site.frames[:1], site.size, site.count) for site in sites])


def _comparison(old: tuple[Site, ...], new: tuple[Site, ...], labels: _Labels, rows: int) -> dict[str, Any]:
    diffs = compare(old, new, "lineno")
    old_total = sum(site.size for site in old)
    new_total = sum(site.size for site in new)
    shown, rest = diffs[:rows], diffs[rows:]
    rest_row = None
    if rest:
        change = sum(diff.size_diff for diff in rest)
        rest_row = [len(rest), change, sum(diff.count_diff for diff in rest), tracemalloc_bytes(change, signed=True)]
    return {
        "notes": list(common_basis(old, new).notes),
        "old": old_total, "new": new_total,
        "totals_text": f"{tracemalloc_bytes(old_total)} -> {tracemalloc_bytes(new_total)} "
                       f"({tracemalloc_bytes(new_total - old_total, signed=True)})",
        "sites": len(diffs),
        "rows": [[labels.of(diff.frames[0]), diff.size_diff, diff.size, diff.count_diff, diff.count,
                  tracemalloc_bytes(diff.size_diff, signed=True), tracemalloc_bytes(diff.size)] for diff in shown],
        "rest": rest_row,
    }


def _default_pair(captures: Sequence[Capture], moments: list[list[tuple[str, tuple[Site, ...]]]],
                  pairs: dict[str, Any], kind: str) -> list[int] | None:
    """What the compare view shows first: the moment ``kind`` (else the peak) of the first and last
    capture of the first group that has two, else the first capture's first and last moment."""
    groups: dict[Any, list[int]] = {}
    for index, capture in enumerate(captures):
        if moments[index]:
            groups.setdefault(capture.group, []).append(index)
    for members in groups.values():
        first, last = members[0], members[-1]
        for wanted in (kind, "peak"):
            kinds = [[moment_kind for moment_kind, _sites in moments[index]] for index in (first, last)]
            if len(members) > 1 and wanted in kinds[0] and wanted in kinds[1]:
                old, new = kinds[0].index(wanted), kinds[1].index(wanted)
                if f"{first}.{old}>{last}.{new}" in pairs:
                    return [first, old, last, new]
    for index, kept in enumerate(moments):
        if len(kept) > 1 and f"{index}.1>{index}.0" in pairs:
            return [index, 1, index, 0]
    return None


# --- extra sections ----------------------------------------------------------------------------------
def _section(section: Section, index: int) -> dict[str, Any]:
    return {
        "title": section.title,
        "anchor": section.anchor or f"section-{index}",
        "text": list(section.text),
        "figure": _figure_dict(section.figure) if section.figure is not None else None,
        "table": [list(section.table[0]), [list(row) for row in section.table[1]]] if section.table else None,
        "div": f"figure-{index}",
        "tree": tree_data(section.tree),
    }
