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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..dataset.results import IDLE_EMPTY, IDLE_HELD, RunResult
from ..dataset.rss_ledger import LEDGER_PHASES
from ..dataset.selection import layout_order
from .figures import new_figure, save_figure
from .markdown import code, table
from .units import MIB, MISSING, human_bytes

#: The ledger's own key in result.json.
LEDGER_KEY = "rss_ledger"
#: Probes whose run's ledger is shown, in order of preference (others after, by name).
LEDGER_PROBES = ("tracemalloc", "rss", "memray", "massif")
#: The moment a bare interpreter's ledger is shown as.
BARE = "bare interpreter"
#: The part no measurement explains; a share of RSS above this marks a ledger that does not explain it.
REMAINDER = "remainder"
REMAINDER_BAR = 0.05

#: Chart colours: each waterfall's parts, its remainder and its total (idle-empty light, idle-held dark).
WATERFALL_COLOURS = {IDLE_EMPTY: ("#9ecae1", "#fc9272", "#bdbdbd"), IDLE_HELD: ("#2171b5", "#cb181d", "#525252")}
BARE_COLOUR = "#6a51a3"
#: A negative part (it goes down) is hatched as well.
NEGATIVE_HATCH = "////"
PANEL_WIDTH_IN, PANEL_HEIGHT_IN = 4.4, 3.6
PANELS_PER_ROW = 3


@dataclass(frozen=True, slots=True)
class Moment:
    """One ledger: ``rss_bytes`` and ``parts`` (``{part: bytes}`` in the ledger's order, the
    remainder last, adding up to ``rss_bytes``); bytes per connection (floats) in a per-held column."""

    name: str
    rss_bytes: float
    parts: dict[str, float]

    @property
    def remainder_bytes(self) -> float | None:
        return self.parts.get(REMAINDER)

    @property
    def remainder_share(self) -> float | None:
        """The remainder over RSS (None without either)."""
        remainder = self.remainder_bytes
        return remainder / self.rss_bytes if remainder is not None and self.rss_bytes else None

    def largest_part(self) -> tuple[str, float] | None:
        """The largest measured part (the remainder left out), (part, bytes)."""
        measured = [(part, size) for part, size in self.parts.items() if part != REMAINDER]
        return max(measured, key=lambda item: item[1]) if measured else None


@dataclass(frozen=True, slots=True)
class LedgerTable:
    """One subject's ledgers: ``phases`` (``{phase: Moment}`` in scenario order), ``bare`` (the bare
    interpreter's, None without one; ``bare_note`` says why, or which imports it failed),
    ``labels`` (``{part: label}`` for every part of any moment, in the ledger's order),
    ``per_held_connection`` as the run recorded it (bytes per held connection by kind, with the
    kernel's socket memory outside RSS), ``connections`` C."""

    subject: str
    probe: str
    run_name: str
    connections: int
    labels: dict[str, str]
    phases: dict[str, Moment]
    bare: Moment | None
    bare_note: str | None
    per_held_connection: dict[str, float | None] | None

    def moments(self) -> list[Moment]:
        """The bare interpreter's ledger (when there is one), then the phases'."""
        return ([self.bare] if self.bare is not None else []) + list(self.phases.values())

    def per_held_column(self) -> Moment | None:
        """idle-held less idle-empty, part by part and RSS, over C (bytes, floats); None without both
        phases or clients, or when the run left the figure out (``per_held_connection`` None: it did
        not hold its clients, or its process tree changed between the two ends)."""
        empty, held = self.phases.get(IDLE_EMPTY), self.phases.get(IDLE_HELD)
        if empty is None or held is None or self.connections <= 0 or self.per_held_connection is None:
            return None
        parts = {part: (held.parts.get(part, 0) - empty.parts.get(part, 0)) / self.connections
                 for part in self.labels if part in empty.parts or part in held.parts}
        return Moment("per held connection", (held.rss_bytes - empty.rss_bytes) / self.connections, parts)


def _moment(name: str, entry: Any) -> Moment | None:
    """A ledger of result.json as a :class:`Moment`; None when it is not one (an error, missing)."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("parts"), list) or "rss_bytes" not in entry:
        return None
    parts = {str(part["part"]): int(part["bytes"]) for part in entry["parts"]
             if isinstance(part, Mapping) and "part" in part and isinstance(part.get("bytes"), (int, float))}
    return Moment(name, int(entry["rss_bytes"]), parts)


def _has_ledger(run: RunResult) -> bool:
    ledger = run.document.get(LEDGER_KEY)
    return isinstance(ledger, Mapping) and isinstance(ledger.get("phases"), Mapping) and bool(ledger["phases"])


def ledger_table(run: RunResult, subject: str | None = None) -> LedgerTable | None:
    """The :class:`LedgerTable` of one run (None without a ledger of the runner's shape)."""
    if not _has_ledger(run):
        return None
    ledger = run.document[LEDGER_KEY]
    recorded = ledger["phases"]
    names = [phase for phase in LEDGER_PHASES if phase in recorded] + [p for p in recorded if p not in LEDGER_PHASES]
    phases = {name: moment for name in names for moment in [_moment(name, recorded[name])] if moment is not None}
    if not phases:
        return None
    bare_entry = ledger.get("bare_interpreter")
    bare = _moment(BARE, bare_entry)
    if bare is not None:
        failed = bare_entry.get("failed_imports") or []
        bare_note = (f"{len(failed)} of its {bare_entry.get('modules', '?')} imports failed: {', '.join(map(str, failed))}"
                     if failed else None)
    elif isinstance(bare_entry, Mapping) and bare_entry.get("error"):
        bare_note = f"not measured: {bare_entry['error']}"
    else:
        bare_note = "not measured"
    # Labels: the run's list of parts (its order), then any part a moment names that it does not.
    labels = {str(name): str(info.get("label", name)) for name, info in (ledger.get("parts") or {}).items()
              if isinstance(info, Mapping)}
    for entry in [bare_entry, *(recorded[name] for name in phases)]:
        for part in (entry or {}).get("parts", []) if isinstance(entry, Mapping) else []:
            if isinstance(part, Mapping) and "part" in part:
                labels.setdefault(str(part["part"]), str(part.get("label", part["part"])))
    present = {part for moment in [bare, *phases.values()] if moment is not None for part in moment.parts}
    labels = {part: label for part, label in labels.items() if part in present}
    per_held = ledger.get("per_held_connection")
    return LedgerTable(subject or run.layout, run.probe, run.path.name, int(run.parameters.get("connections") or 0),
                       labels, phases, bare, bare_note, dict(per_held) if isinstance(per_held, Mapping) else None)


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
def _share(part: float | None, whole: float | None) -> str:
    if part is None or not whole:
        return MISSING
    return f"{100 * part / whole:.1f}%"


def _flag(moment: Moment | None) -> str:
    """`` (over 5%)`` when a ledger's remainder passes the bar, else nothing."""
    share = moment.remainder_share if moment is not None else None
    return f" (over {REMAINDER_BAR:.0%})" if share is not None and abs(share) > REMAINDER_BAR else ""


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
                     f"{cell} ({_share(moment.parts[part], moment.rss_bytes)} of RSS){_flag(moment)}"
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
                               f"({_share(ledger.phases[name].remainder_bytes, ledger.phases[name].rss_bytes)})."
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
        remainder = " / ".join(_share(m.remainder_bytes, m.rss_bytes) + _flag(m) for m in (empty, held) if m is not None)
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
    remainders = " / ".join(_share(m.remainder_bytes, m.rss_bytes) for m in (empty, held) if m is not None)
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
