"""The RSS ledger as the report shows it (experiments/render/ledger.py, its section in index.md, and
html_report's ledger figure), from made-up run folders whose result.json carries an ``rss_ledger`` of
the runner's shape (tests/fixtures/fake_runs.py writes the rest of the folder). No server.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from experiments.dataset.results import RESULT_FILE, find_runs, load_run, write_json
from experiments.dataset.selection import latest_runs
from experiments.render import ledger as render_ledger
from experiments.render.html_report import _ledger, build_html_report
from experiments.render.ledger import ledger_markdown, ledger_tables, render_ledger_chart
from experiments.render.units import KIB, MIB
from tests.fixtures.fake_runs import write_fake_matrix

CONNECTIONS = 4
LABELS = {
    "file": "file-backed pages: the interpreter, shared libraries, mapped files",
    "shmem": "shared memory",
    "written": "pages written in the interpreter's and libraries' mappings (.data, .bss, relocations)",
    "stacks": "thread stacks",
    "special": "kernel-provided mappings ([vdso], [vvar])",
    "python_heap": "Python heap, as tracemalloc traces it",
    "rounding": "allocators' rounding of the traced blocks (size classes, chunk headers)",
    "tracer": "tracemalloc's own tables",
    "untraced": "in use, not traced: allocated before tracing began, by C code, by the interpreter",
    "pymalloc_free": "pymalloc: free blocks of used pools, pool headers and tails",
    "pymalloc_empty": "pymalloc: empty pools",
    "malloc_free": "malloc: free chunks (the top one included)",
    "untouched": "held by the allocators, never touched (not resident)",
    "remainder": "remainder: what no part explains",
}
#: A naive run's ledger at the end of idle-empty, as a real run recorded it (bytes).
EMPTY = {"file": 7_467_008, "shmem": 0, "written": 1_593_344, "stacks": 69_632, "special": 4_096,
         "python_heap": 14_084_793, "rounding": 193_368, "tracer": 2_347_888, "untraced": 8_573_199,
         "pymalloc_free": 360_848, "pymalloc_empty": 2_064_384, "malloc_free": 3_451_872, "untouched": -1_318_912,
         "remainder": 487_424}
#: What the C held connections add to each part at the end of idle-held (bytes, all of them).
HELD_GROWTH = {"python_heap": 3_600, "rounding": 252, "tracer": 1_368, "untraced": 2_900, "pymalloc_free": -1_200,
               "pymalloc_empty": -65_536, "malloc_free": 88_000, "untouched": 820, "stacks": 4_096}
AFTER_GROWTH = {"malloc_free": 120_000, "remainder": 4_096}
BARE = {"file": 7_507_968, "shmem": 0, "written": 1_593_344, "stacks": 36_864, "special": 4_096,
        "untraced": 7_591_040, "pymalloc_free": 295_968, "pymalloc_empty": 81_920, "malloc_free": 690_016,
        "untouched": -962_560, "remainder": 438_272}
KERNEL_PER_HELD = 2_368.0


def one_ledger(parts: dict[str, int]) -> dict:
    """A LEDGER as the runner writes it: its parts add up to rss_bytes."""
    rss = sum(parts.values())
    return {"rss_bytes": rss, "remainder_share": parts["remainder"] / rss, "threads": 2, "stacks_found": 2,
            "parts": [{"part": name, "label": LABELS[name], "bytes": size, "source": "made up"}
                      for name, size in parts.items()]}


def grown(parts: dict[str, int], growth: dict[str, int]) -> dict[str, int]:
    return {name: size + growth.get(name, 0) for name, size in parts.items()}


def rss_ledger(empty: dict[str, int] = EMPTY, bare: dict | None = None) -> dict:
    held = grown(empty, HELD_GROWTH)
    after = grown(held, AFTER_GROWTH)
    per_held = {"rss": (sum(held.values()) - sum(empty.values())) / CONNECTIONS,
                "python_heap": HELD_GROWTH["python_heap"] / CONNECTIONS,
                "allocator": sum(HELD_GROWTH.get(name, 0) for name in ("rounding", "pymalloc_free", "pymalloc_empty",
                                                                        "malloc_free", "untouched")) / CONNECTIONS,
                "untraced": (HELD_GROWTH["untraced"] + HELD_GROWTH["tracer"]) / CONNECTIONS,
                "pages_and_stacks": HELD_GROWTH["stacks"] / CONNECTIONS, "remainder": 0.0, "kernel": KERNEL_PER_HELD}
    return {"phases": {"idle-empty": one_ledger(empty), "idle-held": one_ledger(held), "idle-after": one_ledger(after)},
            "bare_interpreter": {**one_ledger(BARE), "modules": 144, "failed_imports": []} if bare is None else bare,
            "per_held_connection": per_held,
            "parts": {name: {"label": label, "source": "made up"} for name, label in LABELS.items()}}


def add_ledger(run_dir: Path, ledger: dict) -> None:
    document = json.loads((run_dir / RESULT_FILE).read_text())
    document["rss_ledger"] = ledger
    write_json(run_dir / RESULT_FILE, document)


@pytest.fixture
def runs(tmp_path) -> list:
    """naive and packed, rss and tracemalloc runs; the tracemalloc runs carry a ledger (as the runner
    writes it: only memdiet's own server under tracemalloc has one). packed's remainder is 10% of RSS and
    its bare interpreter failed."""
    paths = write_fake_matrix(tmp_path / "runs", ("naive", "packed"), connections=CONNECTIONS)
    by_name = {path.name.split("-", 1)[1]: path for path in paths}
    add_ledger(by_name["naive-tracemalloc"], rss_ledger())
    packed = {**EMPTY, "python_heap": 1_614_065, "remainder": 0}
    packed["remainder"] = round(0.1 * sum(packed.values()) / 0.9)
    add_ledger(by_name["packed-tracemalloc"], rss_ledger(packed, bare={"error": "the bare interpreter failed: exit 1"}))
    return [load_run(path) for path in find_runs(tmp_path / "runs")]


# --- reading the markdown back -------------------------------------------------------------------------
_SIZE = re.compile(r"(-?[\d,]+(?:\.\d+)?) (B|KiB|MiB)")
_UNIT = {"B": 1, "KiB": KIB, "MiB": MIB}


def size_of(cell: str) -> tuple[float, float] | None:
    """(bytes, how far the shown figure may be from them) of a cell such as ``**37.6 MiB**``; None for ``–``."""
    match = _SIZE.search(cell)
    if match is None:
        return None
    unit = _UNIT[match.group(2)]
    return float(match.group(1).replace(",", "")) * unit, (0.5 if unit == 1 else 0.05 * unit)


def subject_table(markdown: list[str], subject: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the table under ``### subject``."""
    start = markdown.index(f"### {subject}")
    lines = []
    for line in markdown[start + 1:]:
        if line.startswith("### "):
            break
        if line.startswith("|"):
            lines.append([cell.strip() for cell in line.strip("|").split("|")])
    header, _rule, *rows = lines
    return header, rows


# --- the data ------------------------------------------------------------------------------------------
def test_one_table_per_subject_from_its_tracemalloc_run(runs):
    tables = ledger_tables(latest_runs(runs))
    assert [(table.subject, table.probe) for table in tables] == [("naive", "tracemalloc"), ("packed", "tracemalloc")]
    naive = tables[0]
    assert list(naive.labels) == list(LABELS)
    assert list(naive.phases) == ["idle-empty", "idle-held", "idle-after"]
    for moment in naive.moments():
        assert sum(moment.parts.values()) == moment.rss_bytes, moment.name
    assert naive.bare is not None and "python_heap" not in naive.bare.parts
    assert tables[1].bare is None and "exit 1" in tables[1].bare_note


def test_per_held_column_is_idle_held_less_idle_empty_over_c(runs):
    naive = ledger_tables(latest_runs(runs))[0]
    column = naive.per_held_column()
    assert column.parts == {name: HELD_GROWTH.get(name, 0) / CONNECTIONS for name in LABELS}
    assert column.rss_bytes == sum(HELD_GROWTH.values()) / CONNECTIONS


# --- the markdown --------------------------------------------------------------------------------------
def test_a_row_per_part_and_rss_the_sum_of_the_parts_in_every_column(runs):
    markdown = ledger_markdown(ledger_tables(latest_runs(runs)))
    header, rows = subject_table(markdown, "naive")
    assert header == ["part", "bare interpreter", "idle-empty", "idle-held", f"per held connection (C = {CONNECTIONS})"]
    assert len(rows) == len(LABELS) + 1, "a row per part, then RSS"
    for (name, label), row in zip(LABELS.items(), rows):
        assert label in row[0], (name, row[0])
    assert rows[-1][0] == "**RSS**"
    expected_rss = [sum(BARE.values()), sum(EMPTY.values()), sum(grown(EMPTY, HELD_GROWTH).values()),
                    sum(HELD_GROWTH.values()) / CONNECTIONS]
    for column in range(1, 5):
        shown = [size_of(row[column]) for row in rows[:-1]]
        total = sum(value for value, _slack in filter(None, shown))
        slack = sum(slack for _value, slack in filter(None, shown))
        rss, rss_slack = size_of(rows[-1][column])
        assert abs(rss - expected_rss[column - 1]) <= rss_slack, (header[column], rows[-1][column])
        assert abs(total - rss) <= slack + rss_slack, f"{header[column]}: parts {total:,.0f} B, RSS {rss:,.0f} B"
    # The bare interpreter has no traced heap, rounding or tracer: shown as missing, not as zero.
    [python_heap] = [row for row in rows if LABELS["python_heap"] in row[0]]
    assert python_heap[1] == "–" and size_of(python_heap[2]) is not None
    # Per held connection: each part's growth over C.
    for name, label in LABELS.items():
        row = next(row for row in rows if label in row[0])
        value, slack = size_of(row[4])
        assert abs(value - HELD_GROWTH.get(name, 0) / CONNECTIONS) <= slack, (name, row[4])


def test_the_remainder_is_its_own_row_with_its_share_and_the_5_percent_bar(runs):
    markdown = ledger_markdown(ledger_tables(latest_runs(runs)))
    text = "\n".join(markdown)
    assert "never folded into another part" in text and "5%" in text
    _header, rows = subject_table(markdown, "naive")
    [remainder] = [row for row in rows if row[0].startswith("remainder")]
    share = 100 * EMPTY["remainder"] / sum(EMPTY.values())
    assert f"({share:.1f}% of RSS)" in remainder[2] and "over 5%" not in remainder[2]
    _header, rows = subject_table(markdown, "packed")
    [remainder] = [row for row in rows if row[0].startswith("remainder")]
    assert "(10.0% of RSS) (over 5%)" in remainder[2]
    assert all(cell == "–" for cell in rows[-1][1:2]), "packed's bare interpreter was not measured"
    assert "exit 1" in "\n".join(markdown[markdown.index("### packed"):])


def test_summary_row_per_subject(runs):
    markdown = ledger_markdown(ledger_tables(latest_runs(runs)))
    rows = [line for line in markdown if line.startswith("| naive ")]
    assert len(rows) == 1
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    rss, bare = sum(EMPTY.values()), sum(BARE.values())
    assert abs(size_of(cells[1])[0] - rss) <= 0.05 * MIB and abs(size_of(cells[2])[0] - bare) <= 0.05 * MIB
    assert abs(size_of(cells[3])[0] - (rss - bare)) <= 0.05 * MIB
    assert cells[4].startswith("`python_heap`")
    assert cells[-1] == "2.3 KiB"  # the kernel's, outside RSS


# --- the chart -----------------------------------------------------------------------------------------
def test_chart_writes_png_and_svg_and_each_waterfall_ends_at_rss(runs, tmp_path, monkeypatch):
    drawn = []
    save = render_ledger.save_figure

    def keep(figure, out_stem):
        drawn.append(figure)
        return save(figure, out_stem)

    monkeypatch.setattr(render_ledger, "save_figure", keep)
    tables = ledger_tables(latest_runs(runs))
    paths = render_ledger_chart(tables, tmp_path / "ledger")
    assert [path.name for path in paths] == ["ledger.png", "ledger.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[0].stat().st_size > 20_000
    assert b"<svg" in paths[1].read_bytes()[:1000]
    axes = drawn[0].axes[0]
    centres = [(patch.get_x() + patch.get_width() / 2, patch) for patch in axes.patches]
    # idle-empty's waterfall is drawn left of each position, idle-held's right of it.
    empty = [patch for centre, patch in sorted(centres, key=lambda item: item[0]) if centre < round(centre)]
    *parts, total = empty
    assert len(parts) == len(LABELS)
    level = 0.0
    for bar, (name, size) in zip(parts, EMPTY.items()):
        assert bar.get_y() == pytest.approx(level), name  # each part starts where the previous ended
        assert bar.get_height() == pytest.approx(size / MIB), name  # negative: it goes down
        level += bar.get_height()
    assert level == pytest.approx(sum(EMPTY.values()) / MIB)
    assert total.get_y() == 0 and total.get_height() == pytest.approx(sum(EMPTY.values()) / MIB)
    assert parts[-1].get_facecolor() != parts[0].get_facecolor(), "the remainder in a colour of its own"
    dashed = [line for line in axes.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_ydata()[0] for line in dashed] == [pytest.approx(sum(BARE.values()) / MIB)]


# --- index.md and index.html ---------------------------------------------------------------------------
def test_report_has_the_ledger_section_after_the_held_connections(runs, tmp_path, monkeypatch):
    from experiments.render import report_md

    def placeholder(_what, stem, *_args, **_kwargs):
        for suffix in (".png", ".svg"):
            Path(f"{stem}{suffix}").write_bytes(b"")

    for name in ("render_comparison", "render_anatomy", "render_massif_curve"):
        monkeypatch.setattr(report_md, name, placeholder)
    index = report_md.build_report(runs, tmp_path / "report")
    text = index.read_text()
    sections = re.findall(r"^## (.+)$", text, re.MULTILINE)
    at = sections.index("Where the RSS goes: the ledger")
    # After the held connections' sites (and who keeps them), before the curves.
    assert sections.index("Where each server's bytes per held connection go") < at
    assert sections.index("Who keeps each connection's bytes: owners and retained sizes") < at
    assert at < sections.index("Memory over time, per layout")
    assert "![RSS ledger per layout](ledger.png)" in text
    assert (tmp_path / "report" / "ledger.png").stat().st_size > 0 and (tmp_path / "report" / "ledger.svg").is_file()


def test_report_without_ledgers_has_no_ledger_section(tmp_path, monkeypatch):
    from experiments.render import report_md

    monkeypatch.setattr(report_md, "render_ledger_chart", lambda *_: pytest.fail("no ledger to draw"))
    for name in ("render_comparison", "render_anatomy", "render_massif_curve"):
        monkeypatch.setattr(report_md, name, lambda *_args, **_kwargs: [])
    write_fake_matrix(tmp_path / "runs", ("naive",), connections=CONNECTIONS)
    index = report_md.build_report([load_run(p) for p in find_runs(tmp_path / "runs")], tmp_path / "report")
    assert "the ledger" not in index.read_text()


def test_html_ledger_reads_the_runners_shape():
    document = {"rss_ledger": rss_ledger()}
    moments = _ledger(document)
    assert [moment for moment, _parts in moments] == ["bare interpreter", "idle-empty", "idle-held", "idle-after"]
    ledger = document["rss_ledger"]
    expected = [ledger["bare_interpreter"], *ledger["phases"].values()]
    for (moment, parts), recorded in zip(moments, expected):
        assert sum(parts.values()) == recorded["rss_bytes"], moment
        assert set(parts) == {part["label"] for part in recorded["parts"]}
    assert moments[1][1][LABELS["untouched"]] == EMPTY["untouched"] < 0, "negative parts kept"
    # A failed bare interpreter is left out; the phases stay.
    failed = _ledger({"rss_ledger": rss_ledger(bare={"error": "exit 1"})})
    assert [moment for moment, _parts in failed] == ["idle-empty", "idle-held", "idle-after"]
    # Without a ledger: the kernel's split of the process tree's RSS.
    tree = {"process_tree": {"phase_end": {"idle-empty": {"total": {"rss_anon_bytes": 5, "rss_file_bytes": 7,
                                                                     "rss_shmem_bytes": 0}}}}}
    assert _ledger(tree) == [("idle-empty", {"anonymous (heap, stacks)": 5.0, "file-backed (code, libraries)": 7.0,
                                             "shared memory": 0.0})]


def test_html_ledger_figure_stacks_negatives_relative_to_zero(runs, tmp_path):
    page = build_html_report(runs, tmp_path / "anatomy.json", out_dir=tmp_path / "report")
    [section] = [section for section in page.data["sections"] if section["title"] == "RSS ledger"]
    figure = section["figure"]
    assert figure["layout"]["barmode"] == "relative"
    bars = figure["data"]
    assert bars[0]["y"][:4] == ["naive · tracemalloc · bare interpreter", "naive · tracemalloc · idle-empty",
                                "naive · tracemalloc · idle-held", "naive · tracemalloc · idle-after"]
    untouched = next(bar for bar in bars if bar["name"] == LABELS["untouched"])
    assert untouched["x"][1] == EMPTY["untouched"]
    assert sum(bar["x"][1] for bar in bars) == sum(EMPTY.values())
    low, _high = figure["layout"]["xaxis"]["range"]
    assert low < EMPTY["untouched"], "the axis reaches the negative parts"
