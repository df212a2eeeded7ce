"""README's and the documentation's measured tables agree with their one source, within the rounding
they show.

Read at test time, never copied here:

- README's "What it measured": the committed full report, ``reports/latest/index.md`` (its "Summary
  metrics" and "Reduction versus naive" tables, and its parameters line), figure by figure.
- README's "Profiling any server" table: the same report's summary, per server.
- docs/study.md's layouts table: "Python B/slot" against tests/server/test_layouts_memory.py's measurement
  (tracemalloc's delta around building 20,000 slots in this process, the measurement README names;
  the report's ``bytes_per_slot`` is at 65,536 slots and differs in the first decimal), on the
  interpreter minor README says it measured on; "C B/slot" against ``c_bytes_per_slot()``.
- docs/ledger.md's table: the full report's ledger summary (``| subject | RSS (idle-empty) |``).
- (docs/scaling.md's fits are checked against sweep.json by tests/experiments/test_sweep.py.)
- docs/bench.md's table: ``reports/bench/bench.json`` (each subject's medians and its req/s ratio to
  the asyncio responder).

A README figure passes when the source's figure rounds to it: |README - source| is at most half a
unit of README's last digit (of the report's, where the report shows fewer digits than README).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass

import pytest

from server.layouts import LAYOUTS

from .fixtures import REPO

README = REPO / "README.md"
#: The documentation pages holding tables that moved out of README, and the section of each.
STUDY, STUDY_SECTION = REPO / "docs" / "study.md", "The five layouts"
LEDGER, LEDGER_SECTION = REPO / "docs" / "ledger.md", "The ledger of the committed report"
BENCH, BENCH_SECTION = REPO / "docs" / "bench.md", "Benchmark against the servers people use"
REPORT = REPO / "reports" / "latest" / "index.md"
BENCH_JSON = REPO / "reports" / "bench" / "bench.json"

#: Units README and the reports write figures in, as multiples of the base unit (bytes, us, ...).
UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "us": 1, "ms": 1, "req/s": 1, "x": 1, "%": 1,
         "": 1}
QUANTITY = re.compile(r"^([+-]?)(\d[\d,]*(?:\.\d+)?)\s*(B|KiB|MiB|GiB|us|ms|req/s|x|%)?$")


@dataclass(frozen=True)
class Quantity:
    """A figure as written: its value in the base unit and half a unit of its last digit."""

    value: float
    half_step: float

    @classmethod
    def parse(cls, text: str) -> Quantity:
        match = QUANTITY.match(text.replace("*", "").strip())
        if not match:
            raise ValueError(f"not a figure: {text!r}")
        sign, digits, unit = match.group(1), match.group(2), match.group(3) or ""
        decimals = len(digits.split(".")[1]) if "." in digits else 0
        scale = UNITS[unit]
        value = float(digits.replace(",", "")) * scale * (-1 if sign == "-" else 1)
        return cls(value, 0.5 * 10 ** -decimals * scale)


def agrees(shown: str, source: float | str) -> bool:
    """Whether README's ``shown`` figure is ``source`` (a number, or a figure as the report writes
    it) within the rounding each shows."""
    figure = Quantity.parse(shown)
    if isinstance(source, str):
        # Both rounded: README must show the report's figure at README's own precision (or, where
        # README shows more digits than the report, agree to the report's precision).
        other = Quantity.parse(source)
        return abs(figure.value - other.value) <= max(figure.half_step, other.half_step) * (1 + 1e-9)
    return abs(figure.value - source) <= figure.half_step * (1 + 1e-9)


# --- reading markdown tables ---------------------------------------------------------------------
def table_after(text: str, header_start: str) -> list[dict[str, str]]:
    """The rows of the first markdown table whose header row starts with ``header_start``, as
    ``{column header: cell}``, markers (``**``, backticks) kept."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(header_start)), None)
    assert start is not None, f"no table starting {header_start!r}"
    header = [cell.strip() for cell in lines[start].strip().strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows.append(dict(zip(header, cells)))
    return rows


def section(text: str, title: str) -> str:
    """The markdown section under ``## title`` (up to the next ``## ``)."""
    assert f"## {title}\n" in text, f"no section {title!r}"
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def plain(cell: str) -> str:
    return cell.replace("`", "").replace("*", "").strip()


# --- the checks, on texts given (so a test can feed them a README with one figure changed) ------
def measured_table_mismatches(readme: str, report: str) -> list[str]:
    """README's "What it measured" table (and its parameters sentence) against the full report."""
    mismatches = []
    summary = {plain(row["metric"]): row for row in table_after(report, "| metric |")}
    reductions = {row["figure"]: row for row in table_after(report, "| figure |")}
    clients = re.search(r"C \(clients\) = ([\d,]+)", report).group(1)
    slots = re.search(r"max_conns \(preallocated slots\) = ([\d,]+)", report).group(1)
    measured = section(readme, "What it measured")
    stated = re.search(r"--max-conns (\d+)` with C = ([\d,]+) clients", measured)
    if stated is None or (int(stated.group(1)), stated.group(2)) != (int(slots.replace(",", "")), clients):
        mismatches.append(f"README's parameters {stated and stated.groups()} are not the report's ({slots}, {clients})")
    columns = {
        "idle RSS": ("summary", "idle_rss_bytes"),
        f"RSS with {clients} held": ("summary", "held_rss_bytes"),
        "heap per held connection": ("summary", "heap_bytes_per_held_connection"),
        "bytes per slot": ("summary", "bytes_per_slot"),
        "vs naive": ("reduction", "idle RSS (no clients)"),
    }
    rows = table_after(measured, "| layout |")
    if [row["layout"] for row in rows] != list(LAYOUTS):
        mismatches.append(f"README's measured table lists {[row['layout'] for row in rows]}, not {list(LAYOUTS)}")
    for row in rows:
        layout = row["layout"]
        if set(row) - {"layout"} != set(columns):
            mismatches.append(f"README's measured table has columns {sorted(row)}, expected {sorted(columns)}")
            break
        for column, (table, key) in columns.items():
            shown = row[column]
            source = (summary if table == "summary" else reductions)[key][layout]
            if not shown and (table, layout) == ("reduction", "naive"):
                continue  # naive is the baseline of the reductions: nothing shown
            if not agrees(shown, source):
                mismatches.append(f"What it measured: {layout} {column}: README {shown!r}, report {source!r}")
    return mismatches


def servers_table_mismatches(readme: str, report: str) -> list[str]:
    """README's "where each server's bytes per held connection go" table against the full report's
    summary (RSS per held connection from the rss run, heap per held connection from the tracemalloc run)."""
    summary = {plain(row["metric"]): row for row in table_after(report, "| metric |")}
    # The table sits in a list item, indented two spaces.
    rows = table_after(re.sub(r"^  (?=\|)", "", section(readme, "Profiling any server"), flags=re.M), "| server |")
    if not rows:
        return ["README's Profiling any server section has no table of servers"]
    mismatches = []
    for row in rows:
        for column, key in (("RSS per held connection", "rss_bytes_per_held_connection"),
                            ("heap per held connection", "heap_bytes_per_held_connection")):
            source = summary[key].get(row["server"])
            if source is None or not agrees(row[column], source):
                mismatches.append(f"Profiling any server: {row['server']} {column}: README {row[column]!r}, report {source!r}")
    return mismatches


def layouts_table_mismatches(readme: str, python_bytes_per_slot, c_bytes_per_slot) -> list[str]:
    """README's layouts table: Python B/slot and C B/slot against the measurements given."""
    mismatches = []
    rows = table_after(section(readme, STUDY_SECTION), "| layout |")
    if [plain(row["layout"]) for row in rows] != list(LAYOUTS):
        mismatches.append(f"README's layouts table lists {[row['layout'] for row in rows]}, not {list(LAYOUTS)}")
    for row in rows:
        layout = plain(row["layout"])
        python_bytes, c_bytes = python_bytes_per_slot(layout), c_bytes_per_slot(layout)
        if not agrees(row["Python B/slot"], python_bytes):
            mismatches.append(f"layouts table: {layout} Python B/slot: README {row['Python B/slot']!r}, "
                              f"measured {python_bytes:.2f}")
        if not agrees(row["C B/slot"], c_bytes):
            mismatches.append(f"layouts table: {layout} C B/slot: README {row['C B/slot']!r}, ctypes {c_bytes}")
    return mismatches


def bench_table_mismatches(readme: str, bench: dict) -> list[str]:
    """README's bench table against bench.json: medians, and req/s as a multiple of asyncio's."""
    mismatches = []
    rows = table_after(section(readme, BENCH_SECTION), "| subject |")
    subjects = {subject["label"]: subject for subject in bench["subjects"]}
    if [row["subject"] for row in rows] != list(subjects):
        mismatches.append(f"README's bench table lists {[row['subject'] for row in rows]}, bench.json {list(subjects)}")
    held_columns = [column for column in (rows[0] if rows else {}) if re.fullmatch(r"RSS, [\d,]+ held", column)]
    held_column = held_columns[0] if held_columns else None
    if held_column is None:
        return mismatches + ["README's bench table has no 'RSS, N held' column"]
    held = int(re.sub(r"\D", "", held_column))
    columns = {
        "idle RSS": lambda s: s["summary"]["idle_rss_bytes"]["median"],
        held_column: lambda s: s["summary"][f"held_rss_bytes_{held}"]["median"],
        "B / held conn": lambda s: s["summary"][f"bytes_per_connection_{held}"]["median"],
        "req/s": lambda s: s["summary"]["req_per_s"]["median"],
        "x asyncio": lambda s: s["ratios"]["req_per_s"]["asyncio"],
        "CPU / request": lambda s: s["summary"]["cpu_us_per_request"]["median"],
    }
    for row in rows:
        subject = subjects.get(row["subject"])
        if subject is None:
            continue
        for column, source in columns.items():
            if column not in row:
                mismatches.append(f"README's bench table has no column {column!r}")
                continue
            if not agrees(row[column], source(subject)):
                mismatches.append(f"bench table: {row['subject']} {column}: README {row[column]!r}, "
                                  f"bench.json {source(subject)!r}")
    return mismatches


# --- the tests -----------------------------------------------------------------------------------
def ledger_table_mismatches(readme: str, report: str) -> list[str]:
    """docs/ledger.md's RSS ledger table against the full report's ledger summary, cell by cell:
    figures within rounding, the rest (the largest part, remainders) as written."""
    header = "| subject | RSS (idle-empty) |"
    source = {plain(row["subject"]): row for row in table_after(report, header)}
    rows = table_after(section(readme, LEDGER_SECTION), header)
    if not rows:
        return [f"docs/ledger.md's {LEDGER_SECTION} section has no RSS ledger table"]
    mismatches = []
    for row in rows:
        subject = plain(row["subject"])
        if subject not in source:
            mismatches.append(f"RSS ledger: {subject} is not in the report's ledger summary")
            continue
        for column, shown in row.items():
            if column == "subject":
                continue
            other = source[subject].get(column)
            try:
                same = other is not None and agrees(shown, other)
            except ValueError:  # not a figure: the same text
                same = plain(shown) == plain(other or "")
            if not same:
                mismatches.append(f"RSS ledger: {subject} {column}: README {shown!r}, report {other!r}")
    return mismatches


def readme_python_minor(readme: str) -> str:
    """The CPython minor README's measured figures were made on (from "CPython 3.11.7)" in "What it measured")."""
    return re.search(r"CPython (\d+\.\d+)\.\d+", section(readme, "What it measured")).group(1)


def test_what_it_measured_is_the_committed_report() -> None:
    assert measured_table_mismatches(README.read_text(), REPORT.read_text()) == []


def test_servers_table_is_the_committed_report() -> None:
    readme, report = README.read_text(), REPORT.read_text()
    assert servers_table_mismatches(readme, report) == []
    row = next(line for line in section(readme, "Profiling any server").splitlines()
               if line.lstrip().startswith("| uvicorn |"))
    changed = readme.replace(row, row.replace("| uvicorn | ", "| uvicorn | 9", 1))
    assert len(servers_table_mismatches(changed, report)) == 1


def test_ledger_table_is_the_committed_report() -> None:
    readme, report = LEDGER.read_text(), REPORT.read_text()
    assert ledger_table_mismatches(readme, report) == []
    ledger = section(readme, LEDGER_SECTION).split("| subject | RSS (idle-empty) |", 1)[1]
    row = next(line for line in ledger.splitlines() if line.startswith("| nofd |"))
    cells = row.split(" | ")
    cells[1] = f"{Quantity.parse(cells[1]).value / 1024 ** 2 + 0.1:.1f} MiB"
    assert len(ledger_table_mismatches(readme.replace(row, " | ".join(cells)), report)) == 1


def test_readme_and_report_name_the_same_interpreter() -> None:
    readme = README.read_text()
    machine = re.search(r"Python (\d+\.\d+\.\d+)", REPORT.read_text()).group(1)
    assert re.search(r"CPython (\d+\.\d+\.\d+)", section(readme, "What it measured")).group(1) == machine


def test_layouts_table_is_this_interpreters_measurement() -> None:
    readme = STUDY.read_text()
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    if readme_python_minor(README.read_text()) != minor:
        pytest.skip(f"README's bytes per slot were measured on CPython {readme_python_minor(README.read_text())}, this is "
                    f"{minor}: measure them here (pytest -s tests/server/test_layouts_memory.py) to check them")
    from .server.test_layouts_memory import python_bytes_per_slot

    assert layouts_table_mismatches(readme, python_bytes_per_slot, lambda name: LAYOUTS[name].c_bytes_per_slot()) == []


def test_bench_table_is_the_committed_bench() -> None:
    assert bench_table_mismatches(BENCH.read_text(), json.loads(BENCH_JSON.read_text())) == []


def changed_figure(readme: str, section_title: str, old: str, new: str) -> str:
    """``readme`` with the first ``old`` in the section's first table row holding it replaced by ``new``."""
    body = section(readme, section_title)
    line = next(line for line in body.splitlines() if line.startswith("|") and f"| {old} |" in line)
    assert line in readme
    return readme.replace(line, line.replace(f"| {old} |", f"| {new} |", 1), 1)


def test_a_changed_readme_figure_is_caught() -> None:
    """One figure moved by one unit of its last digit, in each table, is reported, naming it."""
    readme, report = README.read_text(), REPORT.read_text()
    bench = json.loads(BENCH_JSON.read_text())
    measured = table_after(section(readme, "What it measured"), "| layout |")
    nofd_idle = next(row for row in measured if row["layout"] == "nofd")["idle RSS"]
    moved = f"{Quantity.parse(nofd_idle).value / 1024 ** 2 + 0.1:.1f} MiB"
    assert measured_table_mismatches(changed_figure(readme, "What it measured", nofd_idle, moved), report) == [
        f"What it measured: nofd idle RSS: README {moved!r}, report {nofd_idle!r}"]

    study = STUDY.read_text()
    layouts = table_after(section(study, STUDY_SECTION), "| layout |")
    split_python = next(row for row in layouts if plain(row["layout"]) == "split")["Python B/slot"]
    grown = f"{float(split_python) + 0.1:.1f}"
    shown_python = {plain(row["layout"]): Quantity.parse(row["Python B/slot"]).value for row in layouts}
    mismatches = layouts_table_mismatches(changed_figure(study, STUDY_SECTION, split_python, grown),
                                          shown_python.__getitem__, lambda name: LAYOUTS[name].c_bytes_per_slot())
    assert [m.split(":")[1].strip() for m in mismatches] == ["split Python B/slot"]

    bench_page = BENCH.read_text()
    rows = table_after(section(bench_page, BENCH_SECTION), "| subject |")
    uvicorn_rate = next(row for row in rows if row["subject"] == "uvicorn")["req/s"]
    faster = f"{int(uvicorn_rate.replace(',', '')) + 1:,}"
    mismatches = bench_table_mismatches(changed_figure(bench_page, BENCH_SECTION, uvicorn_rate, faster), bench)
    assert [m.split(":")[1].strip() for m in mismatches] == ["uvicorn req/s"]


def test_quantities_keep_the_rounding_they_show() -> None:
    assert Quantity.parse("6,105.2 B") == Quantity(6105.2, 0.05)
    assert Quantity.parse("401.3 MiB").value == pytest.approx(401.3 * 1024 ** 2)
    assert Quantity.parse("**-94.7%**") == Quantity(-94.7, 0.05)
    assert agrees("1.0 KiB", 1042.8) and not agrees("1.0 KiB", 1100.0)
    assert agrees("-93.9%", "-93.9%") and not agrees("-93.9%", "-94.1%")
    assert agrees("88,648", 88647.83) and not agrees("88,648", 88646.0)


# --- the real Lwan ---------------------------------------------------------------------------------
LWAN_REVISIONS = REPO / "reports" / "lwan" / "revisions.json"


def lwan_table_mismatches(readme: str, revisions: dict) -> list[str]:
    """README's table of Lwan's commits against reports/lwan/revisions.json: the slot struct's size
    from DWARF and the idle RSS of the rss run, commit by commit."""
    by_short = {revision["short"]: revision for revision in revisions["revisions"]}
    rows = table_after(section(readme, "The real Lwan"), "| Lwan commit |")
    mismatches = [] if rows else ["README's The real Lwan section has no table of commits"]
    for row in rows:
        revision = by_short.get(row["Lwan commit"])
        if revision is None:
            mismatches.append(f"The real Lwan: {row['Lwan commit']} is not in revisions.json")
            continue
        struct_name, size = plain(row["slot struct (DWARF)"]).split()[0], plain(row["slot struct (DWARF)"]).split()[1:]
        sizes = {struct["name"]: struct["size"] for struct in revision["structs"].values() if struct}
        if sizes.get(struct_name) is None or not agrees(" ".join(size), sizes[struct_name]):
            mismatches.append(f"The real Lwan: {row['Lwan commit']} {struct_name}: README {size}, DWARF {sizes.get(struct_name)}")
        idle = plain(row["idle RSS"]).split(" (")[0]
        if not agrees(idle, revision["runs"]["rss"]["summary"]["idle_rss_bytes"]):
            mismatches.append(f"The real Lwan: {row['Lwan commit']} idle RSS: README {idle!r}, "
                              f"report {revision['runs']['rss']['summary']['idle_rss_bytes']}")
    return mismatches


def test_lwan_table_is_the_committed_lwan_study() -> None:
    revisions = json.loads(LWAN_REVISIONS.read_text())
    readme = README.read_text()
    assert lwan_table_mismatches(readme, revisions) == []
    changed = readme.replace("| 58c4bd8b | `lwan_request_t` 4,376 B | 83.8 MiB |", "| 58c4bd8b | `lwan_request_t` 4,376 B | 88.8 MiB |")
    assert changed != readme and lwan_table_mismatches(changed, revisions)
