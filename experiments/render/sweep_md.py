"""``sweep/index.md``: the scaling-law sweep as markdown, from a sweep.json read back.

Sections: what was run (grid, phases, machine, the RLIMIT_NOFILE the grid stays within); the fits
(b and c with their 95% intervals beside the two-size slope, bytes_per_slot and the bytes per held
connection); per-slot truth (tracemalloc's requested bytes, then what pymalloc and the pages add,
to the RSS per slot); the load model's d; the predictions at the target (kernel share, or the
statement that there is none yet); the chart; every point; how to read it.

Rules: reads :class:`~experiments.dataset.sweep.Sweep` only (no run folder, nothing live); writes
into a stream; the command decides the file. Sizes through :mod:`.units`, tables through
:mod:`.markdown`. The row builders (``*_rows``) are public: the notebook shows the same tables.
"""

from __future__ import annotations

from typing import Any, Sequence, TextIO

from ..dataset.results import IDLE_EMPTY
from ..dataset.sweep import AGREEMENT, CHART_STEM, IDLE_TERMS, LOAD_TERMS, Sweep
from .markdown import table
from .units import MISSING, human_bytes, slot_bytes, whole_bytes

TITLE = "Scaling laws: RSS against table size and held connections"


# --- figures --------------------------------------------------------------------------------------
def with_interval(value: float | None, interval: Sequence[float] | None, decimals: int = 1, unit: str = "B") -> str:
    """``87.1 B [85.9, 88.4]``: a value and its 95% interval, in bytes with ``decimals``."""
    if value is None:
        return MISSING
    text = f"{value:,.{decimals}f} {unit}"
    if interval is None:
        return text
    low, high = interval
    return f"{text} [{low:,.{decimals}f}, {high:,.{decimals}f}]"


def coefficient(analysis: dict[str, Any], term: str, model: str = "idle") -> tuple[float, list[float]] | None:
    """(value, [low, high]) of ``term`` in the layout's ``idle`` or ``load`` fit; None without the fit."""
    fit = analysis.get(f"{model}_fit")
    if not fit:
        return None
    j = fit["terms"].index(term)
    return fit["coefficients"][j], fit["ci95"][j]


def _per_slot(value: float | None) -> str:
    """Bytes per slot; a part that rounds to nothing shows as 0.0, never -0.0."""
    return slot_bytes(None if value is None else (round(value, 1) or 0.0))


def _term(analysis: dict[str, Any], term: str, decimals: int, model: str = "idle") -> str:
    found = coefficient(analysis, term, model)
    return with_interval(*found, decimals=decimals) if found else MISSING


def _percent(fraction: float | None) -> str:
    if fraction is None:
        return MISSING
    text = f"{fraction * 100:+.1f}%"
    return "0.0%" if float(text[:-1]) == 0 else text  # no sign on what rounds to no change


def _interval_bytes(interval: Sequence[float] | None) -> str:
    return MISSING if not interval else f"{human_bytes(interval[0])} to {human_bytes(interval[1])}"


# --- the tables -----------------------------------------------------------------------------------
FIT_HEADER = ["layout", "b: RSS per slot", "two-size slope", "b vs slope", "bytes_per_slot (tracemalloc)",
              "b vs bytes_per_slot", "c: RSS per held conn", "heap per held conn", "RSS per held conn (runs)",
              "a", "r²", "points"]


def fit_rows(sweep: Sweep) -> list[list[str]]:
    """One row per layout: b and c with their 95% intervals beside what they are compared with."""
    rows = []
    for layout in sweep.layouts:
        analysis = sweep.analysis(layout)
        fit, two_size, heap = analysis.get("idle_fit"), analysis.get("two_size"), analysis.get("heap") or {}
        agreement = analysis.get("b_vs_two_size")
        b = coefficient(analysis, "slots")
        bytes_per_slot, source = heap.get("bytes_per_slot"), ""
        if bytes_per_slot is None and analysis.get("allocator"):  # no tracemalloc run: the child's traced table
            bytes_per_slot, source = analysis["allocator"]["requested_bytes_per_slot"], " (child)"
        versus = (b[0] - bytes_per_slot) / bytes_per_slot if b and bytes_per_slot else None
        mark = "" if agreement is None or agreement["within"] else " (beyond 5%)"
        a = coefficient(analysis, "intercept")
        rows.append([
            layout, _term(analysis, "slots", 1), slot_bytes(two_size["rss_bytes_per_slot"]) if two_size else MISSING,
            (_percent(agreement["relative_difference"]) + mark) if agreement else MISSING,
            slot_bytes(bytes_per_slot) + (source if bytes_per_slot is not None else ""), _percent(versus), _term(analysis, "held", 0),
            whole_bytes(heap.get("heap_bytes_per_held_connection")),
            whole_bytes(analysis.get("rss_bytes_per_held_connection")),
            human_bytes(a[0]) if a else MISSING, f"{fit['r2']:.4f}" if fit else MISSING,
            str(fit["n"]) if fit else MISSING,
        ])
    return rows


ALLOCATOR_HEADER = ["layout", "requested (tracemalloc)", "+ size-class rounding", "+ pool slack", "+ malloc and pages",
                    "= RSS per slot (child)", "two-size slope (server)", "b (server)"]


def allocator_rows(sweep: Sweep) -> list[list[str]]:
    """One row per layout with an allocator measurement: the per-slot RSS built up from the requested bytes."""
    rows = []
    for layout in sweep.layouts:
        analysis = sweep.analysis(layout)
        parts = analysis.get("allocator")
        if not parts:
            continue
        b = coefficient(analysis, "slots")
        two_size = analysis.get("two_size")
        rows.append([layout, _per_slot(parts["requested_bytes_per_slot"]),
                     _per_slot(parts["size_class_rounding_bytes_per_slot"]), _per_slot(parts["pool_slack_bytes_per_slot"]),
                     _per_slot(parts["malloc_and_pages_bytes_per_slot"]), _per_slot(parts["rss_bytes_per_slot"]),
                     slot_bytes(two_size["rss_bytes_per_slot"]) if two_size else MISSING,
                     slot_bytes(b[0]) if b else MISSING])
    return rows


PREDICTION_HEADER = ["layout", "RSS (user space)", "95% prediction interval", "kernel share", "total",
                     "under load (all active)", "its 95% prediction interval"]


def prediction_rows(sweep: Sweep) -> list[list[str]]:
    """One row per layout: the idle model at the target, and the load model with every connection active."""
    rows = []
    for layout in sweep.layouts:
        predictions = sweep.analysis(layout)["predictions"]
        idle, load = predictions.get("idle"), predictions.get("load")
        if idle is None:
            rows.append([layout, *[MISSING] * (len(PREDICTION_HEADER) - 1)])
            continue
        kernel = idle.get("kernel_bytes")
        rows.append([layout, human_bytes(idle["rss_bytes"]), _interval_bytes(idle["prediction95"]),
                     "not measured" if kernel is None else human_bytes(kernel),
                     human_bytes(idle["total_bytes"]) if idle.get("total_bytes") is not None else MISSING,
                     human_bytes(load["rss_bytes"]) if load else MISSING,
                     _interval_bytes(load["prediction95"]) if load else MISSING])
    return rows


LOAD_HEADER = ["layout", "d: RSS per active conn", "c (load model)", "b (load model)", "r²", "points"]


def load_rows(sweep: Sweep) -> list[list[str]]:
    rows = []
    for layout in sweep.layouts:
        analysis = sweep.analysis(layout)
        fit = analysis.get("load_fit")
        if not fit:
            rows.append([layout, f"not fitted: {analysis.get('load_fit_error')}", MISSING, MISSING, MISSING, MISSING])
            continue
        rows.append([layout, _term(analysis, "active", 0, "load"), _term(analysis, "held", 0, "load"),
                     _term(analysis, "slots", 1, "load"), f"{fit['r2']:.4f}", str(fit["n"])])
    return rows


def point_rows(sweep: Sweep) -> list[list[str]]:
    return [[p.layout, p.phase, f"{p.slots:,}", f"{p.held:,}", f"{p.active:,}", f"{p.rss_bytes:,.0f}", f"`{p.run}`"]
            for layout in sweep.layouts for p in sweep.points(layout)]


# --- the text around them -------------------------------------------------------------------------
def grid_text(sweep: Sweep) -> str:
    """One paragraph: the grid, the phases, how many runs and points."""
    plan = sweep.document["plan"]
    runs = len(sweep.document["runs"])
    idle_points = sum(1 for p in sweep.document["points"] if p["phase"] != "load")
    heap = (f"; a {plan['heap_probe']} run at max_conns {min(plan['max_conns_values']):,} and "
            f"{max(plan['max_conns_values']):,} per layout (bytes_per_slot)" if plan.get("heap_probe") else
            "; no tracemalloc runs (the requested bytes come from the allocator child's tracemalloc)")
    return (f"Layouts {', '.join(plan['layouts'])}; max_conns {{{', '.join(f'{v:,}' for v in plan['max_conns_values'])}}} "
            f"× C {{{', '.join(f'{v:,}' for v in plan['connections_values'])}}}, one `{plan['probe']}` run each "
            f"(nothing traced in the server), idle phases {plan['idle_s']:g} s, load {plan['load_s']:g} s{heap}. "
            f"{runs} rss runs, {idle_points} idle points.")


def nofile_text(sweep: Sweep) -> str:
    nofile = sweep.document["nofile"]
    return (f"The grid stays within RLIMIT_NOFILE: its hard limit here is {nofile['hard_limit']:,} (the server raises "
            f"its soft limit to it); the largest point needs max_conns {nofile['largest_max_conns']:,} + C "
            f"{nofile['largest_connections']:,} + a margin of {nofile['margin']} = {nofile['needed']:,} descriptors.")


def span_text(sweep: Sweep) -> str:
    sizes = sweep.document["plan"]["max_conns_values"]
    return f"{max(sizes) - min(sizes):,}"


def machine_text(sweep: Sweep) -> str:
    env = sweep.document.get("environment") or {}
    parts = [f"{env['cpu_count']}-core {env['cpu_model']}" if env.get("cpu_model") else None,
             f"Linux {env['kernel']}" if env.get("kernel") else None,
             f"CPython {env['python']}" if env.get("python") else None]
    commit = env.get("commit")
    if commit:
        parts.append(f"commit {str(commit)[:12]}" + (" (uncommitted changes)" if env.get("dirty") else ""))
    return ", ".join(p for p in parts if p)


def write_sweep_markdown(sweep: Sweep, out: TextIO, chart: str = CHART_STEM) -> None:
    """Write the sweep's report into ``out``; ``chart`` is the chart's stem beside it (``sweep`` ->
    ``sweep.png``)."""
    document = sweep.document
    target = document["target"]
    lines = [f"# {TITLE}", ""]
    status = document["status"]
    lines += [f"`memdiet sweep`, {document.get('created_utc', '?')}: **{status}**"
              + (f" ({document['error']})" if document.get("error") else "") + f". {machine_text(sweep)}.", ""]
    if status != "complete":
        lines += ["The sweep stopped before its end: the figures below are from the runs made before it stopped.", ""]
    lines += [grid_text(sweep), "", nofile_text(sweep), ""]
    notes = document.get("notes") or []
    if notes:
        lines += [f"- note: {note}" for note in notes] + [""]

    lines += ["## The fits", "",
              f"Per layout, ordinary least squares of `RSS = a + b·slots + c·held` over two points per run: the "
              f"median RSS of {IDLE_EMPTY} at (max_conns, 0) and of idle-held at (max_conns, C). Brackets: 95% "
              f"confidence intervals (Student's t, n − {len(IDLE_TERMS)} degrees of freedom). The two-size slope is "
              "the mean idle-empty RSS at the largest max_conns minus that at the smallest, over the difference in "
              f"slots; b should agree with it within {AGREEMENT:.0%}. bytes_per_slot is tracemalloc's table heap over "
              "max_conns at the largest size (the server's table.json); heap per held connection is the tracemalloc "
              "run's (live heap at the end of idle-held minus at the end of idle-empty, over C).", ""]
    lines += table(FIT_HEADER, fit_rows(sweep)) + [""]
    for layout in sweep.layouts:
        error = sweep.analysis(layout).get("idle_fit_error")
        if error:
            lines += [f"- {layout}: no fit: {error}"]

    lines += ["", "## Per-slot truth: what RSS adds to tracemalloc's bytes", "",
              "tracemalloc counts what each allocation asked for; RSS counts the pages the allocator touched. Measured "
              "per slot between the smallest and the largest table, in a fresh interpreter that builds the table with "
              "the server's own `make_table` (`experiments/measure/pymalloc.py`, from `sys._debugmallocstats()` and "
              "VmRSS around it): **size-class rounding** is pymalloc rounding each request of 512 B or less up to its "
              "16-byte size class; **pool slack** the free blocks, headers and tails of the 16 KiB pools in use; "
              "**malloc and pages** the rest (requests above 512 B go to the system malloc, whose chunk headers and "
              "page rounding land here). The child is not the server process; its RSS per slot sits beside the "
              "server's, measured from outside, for comparison.", ""]
    rows = allocator_rows(sweep)
    lines += (table(ALLOCATOR_HEADER, rows) if rows else ["Not measured in this sweep."]) + [""]

    lines += ["## Under load", "",
              f"The same runs with a third point each, the load phase's median RSS at (max_conns, C, active C), "
              f"fitted as `RSS = a + b·slots + c·held + d·active`: d is what a connection adds while its requests are "
              f"in flight, beyond what it costs held (n − {len(LOAD_TERMS)} degrees of freedom). The load phase is "
              "short, so this is the level reached within it, not a proven steady state.", ""]
    lines += table(LOAD_HEADER, load_rows(sweep)) + [""]

    lines += [f"## Predictions at {target['slots']:,} slots and {target['held']:,} held connections", "",
              f"The idle fit at (slots {target['slots']:,}, held {target['held']:,}), with the 95% prediction interval "
              "of one server there (sweep.json also has the interval of the fitted mean, `mean95`: this far out the "
              "two are almost the same, the uncertainty of b and c dominates); the load fit with every held "
              "connection active. Both are far outside the grid (RLIMIT_NOFILE bounds it), so they assume the laws "
              "stay linear. "
              f"Kernel share: {document['kernel']['note']}.", ""]
    lines += table(PREDICTION_HEADER, prediction_rows(sweep)) + [""]

    lines += ["## The chart", "",
              "Top row: RSS against slots, each point a phase of a run (colour: held connections), the lines the fit "
              "at each C. Bottom row: RSS minus the fitted b·slots against held connections, with the fitted a + c·held "
              "and its 95% band.", "", f"![RSS against slots and held connections]({chart}.png)", ""]

    lines += ["## Every point", "", "<details><summary>the fits' data, one row per phase of a run</summary>", ""]
    lines += table(["layout", "phase", "slots", "held", "active", "RSS (bytes)", "run"], point_rows(sweep),
                   "llrrrrl") + ["", "</details>", ""]

    lines += ["## How to read it", "",
              "- b is the RSS one more preallocated slot costs, c one more idle keep-alive connection; a is the "
              "interpreter and the server's modules. RSS moves in 4 KiB pages: b for the small layouts is good to a "
              f"fraction of a byte only because the grid spans {span_text(sweep)} slots.",
              "- A run's points share that process's own offset (where its arenas landed), so they are not independent "
              "as OLS assumes; the intervals are OLS's, and the run-to-run spread of idle RSS at one size is in "
              "sweep.json (`two_size`).",
              "- The kernel's socket buffers are not in RSS in any layout."]
    out.write("\n".join(lines) + "\n")


__all__ = ["TITLE", "FIT_HEADER", "ALLOCATOR_HEADER", "PREDICTION_HEADER", "LOAD_HEADER", "fit_rows",
           "allocator_rows", "prediction_rows", "load_rows", "point_rows", "with_interval", "coefficient",
           "grid_text", "nofile_text", "write_sweep_markdown"]
