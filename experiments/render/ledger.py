"""Where the RSS goes: each subject's RSS ledger (result.json's ``rss_ledger``, which the run writes at
the ends of idle-empty, idle-held and idle-after, and for a bare interpreter: the same Python importing
the same modules, nothing run, no tracer) as a table per subject, a summary across subjects, and a
waterfall chart.

A ledger's parts are each measured (the process's pages from /proc/PID/smaps, the allocators' and
tracemalloc's figures from inside, at the same phase end) and add up to its RSS exactly with the
remainder: RSS less every part, what no part explains. The remainder is always a row of its own,
never folded into another part; a ledger whose remainder is more than :data:`REMAINDER_BAR` of its
RSS (either sign) is marked as not explaining that RSS. A part may be negative: the address space the
allocators hold and never touched ("untouched") always is.

Rules: data first (:func:`ledger_tables`, from the latest complete run of each subject and probe,
the tracemalloc run preferred), then markdown (:func:`ledger_markdown`), then the chart
(:func:`render_ledger_chart`, drawn with :mod:`.figures`, no pyplot; sizes in MiB). Part names,
labels and order are the run's own (result.json), not read from the code that measured them. Reads
files only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..dataset.results import IDLE_EMPTY, IDLE_HELD, RunResult
from ..dataset.rss_ledger import BARE, REMAINDER, LedgerTable, Moment, ledger_table
from ..dataset.selection import layout_order
from .figures import new_figure, save_figure
from .markdown import code, table
from .units import MIB, MISSING, human_bytes, share

#: Probes whose run's ledger is shown, in order of preference (others after, by name).
LEDGER_PROBES = ("tracemalloc", "rss", "memray", "massif")
#: A ledger whose remainder (:data:`~experiments.dataset.rss_ledger.REMAINDER`) is a larger share of its
#: RSS than this does not explain that RSS.
REMAINDER_BAR = 0.05

#: Chart colours: each waterfall's parts, its remainder and its total (idle-empty light, idle-held dark).
WATERFALL_COLOURS = {IDLE_EMPTY: ("#9ecae1", "#fc9272", "#bdbdbd"), IDLE_HELD: ("#2171b5", "#cb181d", "#525252")}
BARE_COLOUR = "#6a51a3"
#: A negative part (it goes down) is hatched as well.
NEGATIVE_HATCH = "////"
PANEL_WIDTH_IN, PANEL_HEIGHT_IN = 4.4, 3.6
PANELS_PER_ROW = 3


def ledger_tables(by_layout: Mapping[str, Mapping[str, RunResult]]) -> list[LedgerTable]:
    """One :class:`LedgerTable` per subject whose run has ``rss_ledger`` (the tracemalloc run when it
    has one, then :data:`LEDGER_PROBES`, then any), in the study's order. ``by_layout`` is
    ``{subject: {probe: run}}``, the latest complete runs (:func:`~experiments.dataset.selection.latest_runs`)."""
    tables = []
    for subject in layout_order(by_layout):
        runs = by_layout[subject]
        order = [p for p in LEDGER_PROBES if p in runs] + sorted(p for p in runs if p not in LEDGER_PROBES)
        for probe in order:
            found = ledger_table(runs[probe], subject)
            if found is not None:
                tables.append(found)
                break
    return tables


# --- markdown ------------------------------------------------------------------------------------------
def _flag(moment: Moment | None) -> str:
    """`` (over 5%)`` when a ledger's remainder passes the bar, else nothing."""
    fraction = moment.remainder_share if moment is not None else None
    return f" (over {REMAINDER_BAR:.0%})" if fraction is not None and abs(fraction) > REMAINDER_BAR else ""


def subject_markdown(ledger: LedgerTable) -> list[str]:
    """One subject's ledger: a sentence, then rows = parts, columns = the bare interpreter, idle-empty,
    idle-held and per held connection; the remainder with its share of RSS; RSS last."""
    per_held = ledger.per_held_column()
    columns: list[tuple[str, Moment | None]] = [(BARE, ledger.bare), *((name, ledger.phases.get(name))
                                                                       for name in (IDLE_EMPTY, IDLE_HELD))]
    columns.append((f"per held connection (C = {ledger.connections:,})", per_held))
    rows = []
    for part, label in ledger.labels.items():
        cells = [MISSING if moment is None or part not in moment.parts else human_bytes(moment.parts[part])
                 for _name, moment in columns]
        if part == REMAINDER:
            cells = [cell if moment is None or part not in moment.parts else
                     f"{cell} ({share(moment.parts[part], moment.rss_bytes)} of RSS){_flag(moment)}"
                     for cell, (_name, moment) in zip(cells, columns)]
        rows.append([label if label.startswith(f"{part}:") else f"{code(part)}: {label}", *cells])
    rows.append(["**RSS**", *(MISSING if moment is None else f"**{human_bytes(moment.rss_bytes)}**"
                              for _name, moment in columns)])
    empty, held = ledger.phases.get(IDLE_EMPTY), ledger.phases.get(IDLE_HELD)
    said = [f"{ledger.probe} run {code(ledger.run_name)}"]
    if empty is not None and ledger.bare is not None:
        said.append(f"at the end of idle-empty {human_bytes(empty.rss_bytes)} of RSS, "
                    f"{human_bytes(ledger.bare.rss_bytes)} of it the bare interpreter's")
    elif empty is not None:
        said.append(f"at the end of idle-empty {human_bytes(empty.rss_bytes)} of RSS")
    if ledger.bare_note:
        said.append(f"bare interpreter {ledger.bare_note}")
    kernel = (ledger.per_held_connection or {}).get("kernel")
    if per_held is not None:
        said.append(f"each held connection adds {human_bytes(per_held.rss_bytes)} of RSS"
                    + (f" and {human_bytes(kernel)} of kernel socket memory outside it" if kernel is not None else ""))
    lines = [f"### {ledger.subject}", "", "; ".join(said) + ".", ""]
    if held is not None and empty is not None:
        other = [name for name in ledger.phases if name not in (IDLE_EMPTY, IDLE_HELD)]
        if other:
            lines += [" ".join(f"At the end of {name}: RSS {human_bytes(ledger.phases[name].rss_bytes)}, remainder "
                               f"{human_bytes(ledger.phases[name].remainder_bytes)} "
                               f"({share(ledger.phases[name].remainder_bytes, ledger.phases[name].rss_bytes)})."
                               for name in other), ""]
    lines += table(["part", *(name for name, _moment in columns)], rows)
    return lines + [""]


def summary_markdown(tables: Iterable[LedgerTable]) -> list[str]:
    """Across subjects: RSS at the end of idle-empty, the bare interpreter's, the server's own (the
    difference), the largest part, the remainder's share, and one held connection's cost by kind."""
    rows = []
    for ledger in tables:
        empty, bare = ledger.phases.get(IDLE_EMPTY), ledger.bare
        largest = empty.largest_part() if empty is not None else None
        held = ledger.phases.get(IDLE_HELD)
        per = ledger.per_held_connection or {}
        remainder = " / ".join(share(m.remainder_bytes, m.rss_bytes) + _flag(m) for m in (empty, held) if m is not None)
        rows.append([ledger.subject,
                     human_bytes(empty.rss_bytes) if empty else MISSING,
                     human_bytes(bare.rss_bytes) if bare else MISSING,
                     human_bytes(empty.rss_bytes - bare.rss_bytes) if empty and bare else MISSING,
                     f"{code(largest[0])} {human_bytes(largest[1])}" if largest else MISSING,
                     remainder or MISSING,
                     *(human_bytes(per.get(kind)) for kind in ("rss", "python_heap", "allocator", "kernel"))])
    return table(["subject", "RSS (idle-empty)", "bare interpreter RSS", "the server's own", "largest part (idle-empty)",
                  "remainder (idle-empty / idle-held)", "per held conn.: RSS", "Python heap", "allocator",
                  "kernel (outside RSS)"], rows, "lrrrlrrrrr")


def ledger_markdown(tables: Iterable[LedgerTable]) -> list[str]:
    """The report's section body: the rule, the summary across subjects, then one table per subject."""
    tables = list(tables)
    if not tables:
        return ["No run recorded an RSS ledger (the tracemalloc probe of memdiet's own server writes one).", ""]
    lines = [
        "Each run's resident memory at the end of a phase, split into parts that are each measured: the "
        "process's pages from `/proc/PID/smaps` (file-backed, written, stacks), and from inside, at the same "
        "moment, tracemalloc's traced heap and own tables and the allocators' figures (pymalloc, glibc's "
        "`mallinfo2`). The parts add up to RSS exactly with the remainder, RSS less every part: the remainder "
        "is a row of its own and is never folded into another part. A ledger whose remainder is more than "
        f"{REMAINDER_BAR:.0%} of its RSS, either sign, does not explain that RSS and is marked so. A part can be "
        "negative: address space the allocators hold and never touched (`untouched`) is subtracted. The bare "
        "interpreter is the server's Python importing the same modules, nothing run, no tracer (so it has no "
        "traced heap, rounding or tracer part). Per held connection: idle-held less idle-empty, over C; the "
        "kernel's socket memory per connection is outside RSS and listed beside it.", "",
        _image_note(), "",
        *summary_markdown(tables), "",
    ]
    for ledger in tables:
        lines += subject_markdown(ledger)
    return lines


def _image_note() -> str:
    return ("In the chart, each bar starts where the previous part ended (a negative part goes down) and the "
            "last bar is the total, RSS; idle-empty light, idle-held dark, the remainder in red; the dashed line "
            "is the bare interpreter's RSS.")


# --- the chart -----------------------------------------------------------------------------------------
def _waterfall(axes: Any, moment: Moment, parts: list[str], offset: float, width: float,
               colours: tuple[str, str, str]) -> None:
    """One waterfall on ``axes``: bar ``i`` is part ``parts[i]`` from where the previous ended, the
    last the total; thin lines join each bar's end to the next bar's start."""
    running = 0.0
    part_colour, remainder_colour, total_colour = colours
    for position, part in enumerate(parts):
        size = moment.parts.get(part)
        if size is None:
            continue
        start, end = running / MIB, (running + size) / MIB
        axes.bar(position + offset, end - start, bottom=start, width=width, linewidth=0, zorder=3,
                 color=remainder_colour if part == REMAINDER else part_colour,
                 **({"hatch": NEGATIVE_HATCH, "edgecolor": "white"} if size < 0 else {}))
        axes.plot([position + offset - width / 2, position + offset + 1 - width / 2], [end, end],
                  color="#8c8c8c", linewidth=0.4, zorder=2)
        running += size
    axes.bar(len(parts) + offset, moment.rss_bytes / MIB, width=width, color=total_colour, linewidth=0, zorder=3)


def _extent(tables: list[LedgerTable]) -> tuple[float, float]:
    """The lowest and highest level (MiB) any waterfall reaches, 0 included."""
    levels = [0.0]
    for ledger in tables:
        for moment in ledger.phases.values():
            running = 0.0
            for size in moment.parts.values():
                running += size
                levels.append(running / MIB)
            levels.append(moment.rss_bytes / MIB)
        if ledger.bare is not None:
            levels.append(ledger.bare.rss_bytes / MIB)
    return min(levels), max(levels)


def _panel(axes: Any, ledger: LedgerTable) -> None:
    parts = list(ledger.labels)
    width = 0.4
    for shift, phase in ((-0.21, IDLE_EMPTY), (0.21, IDLE_HELD)):
        moment = ledger.phases.get(phase)
        if moment is not None:
            _waterfall(axes, moment, parts, shift, width, WATERFALL_COLOURS[phase])
    if ledger.bare is not None:
        level = ledger.bare.rss_bytes / MIB
        axes.axhline(level, color=BARE_COLOUR, linestyle="--", linewidth=1.0, zorder=4)
        axes.text(0.01, level, f"bare interpreter {human_bytes(ledger.bare.rss_bytes)}", transform=axes.get_yaxis_transform(),
                  ha="left", va="bottom", fontsize=6.5, color=BARE_COLOUR, zorder=5,
                  bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    axes.set_xticks(range(len(parts) + 1), [part.replace("_", " ") for part in parts] + ["RSS"], rotation=90, fontsize=6.5)
    axes.set_xlim(-0.7, len(parts) + 0.7)
    empty, held = ledger.phases.get(IDLE_EMPTY), ledger.phases.get(IDLE_HELD)
    totals = " → ".join(human_bytes(m.rss_bytes) for m in (empty, held) if m is not None)
    remainders = " / ".join(share(m.remainder_bytes, m.rss_bytes) for m in (empty, held) if m is not None)
    over = any(_flag(m) for m in (empty, held))
    axes.set_title(f"{ledger.subject} ({ledger.probe} run, C = {ledger.connections:,})\n"
                   f"RSS {totals}; remainder {remainders}" + (f" (over the {REMAINDER_BAR:.0%} bar)" if over else ""),
                   fontsize=8, loc="left", color="#b00000" if over else "black")
    axes.set_ylabel("MiB", fontsize=7.5)
    axes.tick_params(axis="y", labelsize=7)
    axes.axhline(0, color="#404040", linewidth=0.6, zorder=2)
    axes.grid(axis="y", color="#e4e4e4", linewidth=0.6, zorder=0)


def render_ledger_chart(tables: Iterable[LedgerTable], out_stem: Path) -> list[Path]:
    """Draw one waterfall panel per subject (:data:`PANELS_PER_ROW` a row) to ``<out_stem>.png`` and
    ``.svg``; return the paths."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    tables = list(tables)
    columns = max(1, min(PANELS_PER_ROW, len(tables)))
    rows = max(1, math.ceil(len(tables) / columns))
    figure = new_figure(max(PANEL_WIDTH_IN * columns, 6.0), PANEL_HEIGHT_IN * rows + 1.0)
    # Each panel on its own scale: naive's 500 MiB would flatten every other layout's few MiB.
    grid = figure.subplots(rows, columns, squeeze=False)
    for number, axes in enumerate(axes for row in grid for axes in row):
        if number < len(tables):
            _panel(axes, tables[number])
            # A bar's start is a sticky edge for autoscaling: a bar going down from the top would touch the frame.
            low, high = _extent([tables[number]])
            axes.set_ylim(low - 0.04 * (high - low), high + 0.06 * (high - low))
        else:
            axes.set_axis_off()
    if not tables:
        grid[0][0].text(0.5, 0.5, "no run recorded an RSS ledger", ha="center", va="center")
    handles = [Patch(color=WATERFALL_COLOURS[IDLE_EMPTY][0], label="part, idle-empty"),
               Patch(color=WATERFALL_COLOURS[IDLE_HELD][0], label="part, idle-held"),
               Patch(color=WATERFALL_COLOURS[IDLE_EMPTY][1], label="remainder, idle-empty"),
               Patch(color=WATERFALL_COLOURS[IDLE_HELD][1], label="remainder, idle-held"),
               Patch(color=WATERFALL_COLOURS[IDLE_EMPTY][2], label="RSS, idle-empty"),
               Patch(color=WATERFALL_COLOURS[IDLE_HELD][2], label="RSS, idle-held"),
               Patch(facecolor=WATERFALL_COLOURS[IDLE_EMPTY][0], edgecolor="white", hatch=NEGATIVE_HATCH,
                     label="negative part (down)"),
               Line2D([], [], color=BARE_COLOUR, linestyle="--", label="bare interpreter's RSS")]
    figure.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=7, frameon=False)
    figure.suptitle("Where the RSS goes, at the ends of idle-empty and idle-held:\neach part from where the previous "
                    "ended (negative parts go down), the last bar RSS", fontsize=9, x=0.01, ha="left")
    return save_figure(figure, out_stem)


__all__ = ["BARE", "LedgerTable", "Moment", "REMAINDER_BAR", "ledger_markdown", "ledger_table", "ledger_tables",
           "render_ledger_chart", "subject_markdown", "summary_markdown"]
