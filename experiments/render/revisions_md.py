"""``memdiet revisions``' report: ``index.md`` and its charts from ``revisions.json`` and the run
folders it names (files only).

Sections: what was built and run; the table per revision (date, subject, whether it built, each
struct's size from DWARF, the slot's bytes times the descriptor limit, idle RSS, RSS with C held,
per held connection, req/s, massif's idle heap when there is a massif run); the reduction from the
first measured revision to each later one; each struct's layout (members, holes, padding); the
revisions' RSS curves on one scale, and their massif heap curves on one scale; the revisions that did
not build, with their logs; for a study that says which of memdiet's layouts mirrors which commit
(``mirrors`` in revisions.json), those layouts' C and Python bytes per slot from
``reports/latest/anatomy.json``, beside the commits.

Rules: the slot of a revision is the first of the ``--struct`` names it has (Lwan: its connection
struct once there is one, its request struct before); a struct a revision lacks is "absent". Every
figure is read from the files; a run folder that is gone (a fresh clone: run folders are not
committed) leaves its curve out and says so, the table's figures being in revisions.json itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..dataset.results import Phase, ResultError, load_run, read_json_file, write_atomic
from ..errors import BadInput
from ..paths import REPO_ROOT
from .figures import new_figure, save_figure, shade_phases
from .markdown import table
from .units import MISSING, human_bytes, percent_change, slot_bytes, whole_bytes

REVISIONS_FILE = "revisions.json"
#: memdiet's own layouts' per-slot anatomy, committed by ``make experiment``.
ANATOMY_FILE = Path("reports") / "latest" / "anatomy.json"


def _here(text: str | None) -> str:
    """``text`` with this repository's absolute path left out (the build script is named by it)."""
    return (text or "").replace(f"{REPO_ROOT}/", "")


def _mib(value: float | None) -> str:
    return MISSING if value is None else f"{value / 2**20:,.1f} MiB"


def _num(value: float | None, digits: int = 0) -> str:
    return MISSING if value is None else f"{value:,.{digits}f}"


def _summary(revision: dict[str, Any], probe: str) -> dict[str, Any]:
    run = revision.get("runs", {}).get(probe) or {}
    return run.get("summary") or {} if run.get("status") == "complete" else {}


def slot_struct(revision: dict[str, Any], names: list[str]) -> tuple[str, dict[str, Any]] | None:
    """(asked name, layout) of the revision's slot: the first struct of ``names`` it has."""
    for name in names:
        layout = (revision.get("structs") or {}).get(name)
        if layout is not None:
            return name, layout
    return None


def _revision_label(revision: dict[str, Any], last: bool) -> str:
    return revision["short"] + (" (head)" if last and revision.get("is_head") else "")


def render_revisions(out_dir: Path, anatomy_path: Path = ANATOMY_FILE) -> list[Path]:
    """Write ``out_dir/index.md`` and its charts from ``out_dir/revisions.json``; return what was written."""
    document = read_json_file(out_dir / REVISIONS_FILE, BadInput, missing="no revisions.json (run memdiet revisions)")
    revisions: list[dict[str, Any]] = document.get("revisions", [])
    structs: list[str] = document.get("structs", [])
    probes: list[str] = document.get("probes", [])
    slots = (document.get("fd_limit") or {}).get("soft")
    parameters = (document.get("parameters") or {}).get("rss") or next(iter((document.get("parameters") or {}).values()), {})
    connections = parameters.get("connections")
    lines = [f"# {document.get('name', 'revisions')}: {len(revisions)} revisions measured by memdiet", ""]
    lines += [f"Written by `memdiet revisions` from `{REVISIONS_FILE}` (every figure below is in it, or in the run "
              "folders it names).", "",
              f"- source: `{Path(document.get('source', '')).name}`; build: `{_here(document.get('build'))}`",
              f"- subject: `{_here(document.get('command'))}`, in a working folder of its own per run, config templates "
              f"{', '.join(f'`{t}`' for t in document.get('templates', [])) or 'none'} rendered into it",
              f"- scenario: C = {_num(connections)} clients, idle phases {parameters.get('idle_s')} s, load "
              f"{parameters.get('load_s')} s; probes: {', '.join(probes)}",
              f"- RLIMIT_NOFILE as the subject inherits it: {_num(slots)} (a program that preallocates one slot per "
              "descriptor has that many); req/s comes from a machine shared with other work: compare memory, not "
              "throughput", ""]
    lines += [*document.get("notes", []), ""] if document.get("notes") else []
    lines += _table(revisions, structs, probes, slots, connections)
    lines += _reductions(revisions, structs, slots)
    mirrors = document.get("mirrors")
    if mirrors:
        lines += _mirrors(revisions, structs, mirrors, anatomy_path)
    lines += _layouts(revisions, structs)
    written = []
    charts, notes = _curves(revisions, probes, out_dir)
    written += charts
    if charts or notes:
        lines += ["## Curves on one scale", ""]
    if charts:
        lines += ["Every revision's RSS over the scenario on the same axes (the post's \"same scale this time\")"
                  + (", and massif's heap curves on the same axes below." if any("massif" in c.name for c in charts) else "."),
                  ""]
        lines += [f"![{chart.stem}]({chart.name})" for chart in charts if chart.suffix == ".png"]
        lines += [""]
    if notes:
        lines += [f"{len(notes)} run folders named in {REVISIONS_FILE} are gone (run folders are not committed): "
                  f"their curves are left out, the first being {notes[0]}.", ""]
    lines += _bisections(out_dir)
    broken = [r for r in revisions if r.get("build", {}).get("status") != "built"]
    if broken:
        lines += ["## Revisions that did not build", "",
                  *table(["revision", "subject", "why (the log's last line)"],
                         [[r["short"], r["subject"][:70], (r["build"].get("error") or "")[:160]] for r in broken], "lll"), ""]
    index = out_dir / "index.md"
    write_atomic(index, "\n".join(lines).rstrip() + "\n")
    return [index, *written]


def _table(revisions: list[dict[str, Any]], structs: list[str], probes: list[str], slots: int | None,
           connections: int | None) -> list[str]:
    header = ["revision", "date", "subject", *(f"`{name.split('|')[0]}`" for name in structs),
              f"slot x {_num(slots)}" if slots else "slot x fds", "idle RSS",
              f"RSS, {_num(connections)} held", "per held conn.", "req/s"]
    massif = "massif" in probes
    if massif:
        header += ["massif idle heap", "massif heap per held conn."]
    rows = []
    for revision in revisions:
        built = revision.get("build", {}).get("status") == "built"
        sizes = [("absent" if (layout := (revision.get("structs") or {}).get(name)) is None else f"{layout['size']:,} B")
                 if built else "unbuildable" for name in structs]
        slot = slot_struct(revision, structs)
        table_bytes = slot[1]["size"] * slots if slot and slots else None
        s = _summary(revision, "rss")
        row = [revision["short"], revision["date"][:10], revision["subject"][:60], *sizes, _mib(table_bytes),
               _mib(s.get("idle_rss_bytes")), _mib(s.get("held_rss_bytes")), human_bytes(s.get("rss_bytes_per_held_connection")),
               _num(s.get("req_per_s"))]
        if massif:
            m = _summary(revision, "massif")
            row += [human_bytes(m.get("idle_heap_bytes")), human_bytes(m.get("heap_bytes_per_held_connection"))]
        rows.append(row)
    return ["## Per revision", "", *table(header, rows, "lll" + "r" * (len(header) - 3)), "",
            "Struct sizes are DWARF's `DW_AT_byte_size` of the built binary; the slot is the first of them a revision "
            "has, times the descriptor limit: what its preallocated table costs if every slot is touched. Idle RSS is "
            "the median over the idle phase with no clients (rss probe, the whole process tree, read in /proc).", ""]


def _reductions(revisions: list[dict[str, Any]], structs: list[str], slots: int | None) -> list[str]:
    measured = [r for r in revisions if _summary(r, "rss").get("idle_rss_bytes") is not None]
    if len(measured) < 2:
        return []
    first = measured[0]
    base = _summary(first, "rss")["idle_rss_bytes"]
    base_slot = slot_struct(first, structs)
    rows = []
    for revision in measured[1:]:
        idle = _summary(revision, "rss")["idle_rss_bytes"]
        slot = slot_struct(revision, structs)
        slot_change = (percent_change(1 - slot[1]["size"] / base_slot[1]["size"], 1)
                       if slot and base_slot else MISSING)
        rows.append([f"{first['short']} -> {revision['short']}", _mib(base), _mib(idle), percent_change(1 - idle / base, 1),
                     f"{base_slot[1]['size']:,} -> {slot[1]['size']:,} B" if slot and base_slot else MISSING, slot_change])
    return ["## Reduction from the first revision", "",
            *table(["revisions", "idle RSS before", "idle RSS after", "change", "slot bytes", "slot change"], rows), ""]


def _mirrors(revisions: list[dict[str, Any]], structs: list[str], mirrors: dict[str, str], anatomy_path: Path) -> list[str]:
    try:
        anatomy = read_json_file(anatomy_path, ResultError, missing="no anatomy.json")
        layouts = {entry["layout"]: entry for entry in anatomy.get("layouts", [])}
    except ResultError:
        layouts = {}
    rows = []
    for revision in revisions:
        layout = mirrors.get(revision["short"]) or mirrors.get(revision.get("label", ""))
        if not layout:
            continue
        slot = slot_struct(revision, structs)
        entry = layouts.get(layout, {})
        python_bytes = sum(entry.get("parts", {}).values()) if entry.get("parts") else None
        rows.append([revision["short"], f"{slot[1]['size']:,} B ({slot[1]['name']})" if slot else MISSING, f"`{layout}`",
                     _num(entry.get("c_bytes_per_slot")) + " B" if entry.get("c_bytes_per_slot") is not None else MISSING,
                     slot_bytes(python_bytes)])
    if not rows:
        return []
    return ["## Beside memdiet's layouts", "",
            "Which of memdiet's Python layouts mirrors which commit, and what its slot costs (C bytes: `ctypes.sizeof` "
            f"of a Structure mirroring the slot's fields; Python bytes: the parts of `{_here(str(anatomy_path))}`).", "",
            *table(["commit", "Lwan's slot (DWARF)", "memdiet layout", "layout's C B/slot", "layout's Python B/slot"], rows),
            ""]


def _bisections(out_dir: Path) -> list[str]:
    """The bisections kept beside the report (``memdiet bisect -o OUT/bisect-*.json``), one row each."""
    rows = []
    for path in sorted(out_dir.glob("bisect-*.json")):
        found = read_json_file(path, BadInput, missing=f"{path} vanished")
        threshold = found["threshold"]
        shown = f"{threshold / 2**20:,.1f} MiB" if threshold >= 2**20 else f"{threshold:,.0f}"
        measured = [step for step in found["steps"] if step.get("figure") is not None]
        skipped = [step for step in found["steps"] if step.get("skipped")]
        first = found.get("first")
        rows.append([f"`{found['figure']}`".replace("|", "\\|"), shown, f"{found['good']['short']}..{found['bad']['short']}",
                     f"{found['walked']:,}", f"{len(measured)} ({found['repeats']} run{'s' if found['repeats'] > 1 else ''} each)"
                     if not found["figure"].startswith("struct:") else f"{len(measured)} (builds only)",
                     str(len(skipped)),
                     f"**{first['short']}** {first['subject'][:50]}" if first else "one of " + ", ".join(
                         c["short"] for c in found["candidates"]),
                     f"{_figure(found['figure'], found.get('figure_before'))} -> {_figure(found['figure'], found.get('figure_at'))}",
                     f"`{path.name}`"])
    if not rows:
        return []
    return ["## Bisections", "", "`memdiet bisect` on the same build cache: the first revision after good whose figure "
            "crossed the threshold, unbuildable revisions skipped; the figure at its parent and at it.", "",
            *table(["figure", "threshold", "good..bad", "walked", "measured", "skipped", "first crossed", "parent -> it",
                    "steps"], rows, "lrlrrrlrl"), ""]


def _figure(figure: str, value: float | None) -> str:
    if value is None:
        return MISSING
    return whole_bytes(value) if figure.startswith("struct:") else _mib(value) if "bytes" in figure else f"{value:,.1f}"


def _layouts(revisions: list[dict[str, Any]], structs: list[str]) -> list[str]:
    lines = ["## Struct layouts", "", "As pahole shows them: each member's offset and size, the holes between "
             "members and the padding after the last (bytes no member covers).", ""]
    seen: dict[str, str] = {}
    for name in structs:
        for revision in revisions:
            layout = (revision.get("structs") or {}).get(name)
            if layout is None:
                continue
            key = repr((layout["size"], [(m["name"], m["offset"], m["size"]) for m in layout["members"]]))
            if seen.get(name + key):
                lines += [f"- `{layout['name']}` at {revision['short']}: as at {seen[name + key]}", ""]
                continue
            seen[name + key] = revision["short"]
            lines += [f"### `{layout['name']}` at {revision['short']}: {layout['size']:,} B, "
                      f"{len(layout['members'])} members, holes {layout['hole_bytes']} B, padding {layout['padding']} B", ""]
            rows = [[f"`{m['name']}`", f"`{m['type']}`", f"{m['offset']:,}", f"{m['size']:,}",
                     f"{m['bit_size']} bits at bit {m['bit_offset']}" if m.get("bit_size") is not None else ""]
                    for m in layout["members"]]
            rows += [["(hole)", "", f"{offset:,}", f"{length:,}", ""] for offset, length in layout["holes"]]
            lines += [*table(["member", "type", "offset", "size", "bit field"], rows, "llrrl"), ""]
    return lines


def _curves(revisions: list[dict[str, Any]], probes: list[str], out_dir: Path) -> tuple[list[Path], list[str]]:
    notes: list[str] = []
    loaded: dict[str, list[tuple[str, Any]]] = {}
    for probe in probes:
        for revision in revisions:
            run = (revision.get("runs") or {}).get(probe) or {}
            if not run.get("run") or run.get("status") != "complete":
                continue
            try:
                loaded.setdefault(probe, []).append((revision["short"], load_run(run["run"])))
            except ResultError:
                notes.append(f"{revision['short']}'s {probe} run, {run['run']}")
    written: list[Path] = []
    if notes:  # a partial chart would put some revisions on the scale and not others
        return [], notes
    if loaded.get("rss"):
        written += _chart(loaded["rss"], "rss_bytes", "RSS (MiB)", "RSS of each revision through the scenario (phases shaded: the first revision's; every curve from its own first phase)",
                          out_dir / "rss-curves", rss=True)
    if loaded.get("massif"):
        written += _chart(loaded["massif"], "heap_bytes", "heap (MiB, massif's mem_heap_B)",
                          "massif's heap of each revision (phases 10x longer under valgrind; shaded: the first revision's)", out_dir / "massif-curves")
    return written, notes


def _first_phase_start(run: Any) -> float:
    phases = run.phases
    return phases[0].start_s if phases else 0.0


def _chart(runs: list[tuple[str, Any]], column: str, ylabel: str, title: str, stem: Path, rss: bool = False) -> list[Path]:
    figure = new_figure(9.0, 4.5)
    axes = figure.add_subplot(1, 1, 1)
    for label, run in runs:
        series = run.rss if rss else run.heap
        if series is None or column not in series.columns:
            continue
        start = _first_phase_start(run)  # each curve from its own first phase: start-ups differ (valgrind's most)
        points = [(t - start, v) for t, v in zip(series["time_s"], series[column]) if t is not None and v is not None]
        if points:
            axes.plot([t for t, _ in points], [v / 2**20 for _, v in points], label=label, linewidth=1.2)
    if runs:
        start = _first_phase_start(runs[0][1])
        shade_phases(axes, [Phase(p.name, p.start_s - start, p.end_s - start) for p in runs[0][1].phases])
    axes.set_xlabel("seconds since the revision's idle-empty phase began (its start-up before 0)")
    axes.set_ylabel(ylabel)
    axes.set_ylim(bottom=0)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, ncols=2)
    return save_figure(figure, stem)
