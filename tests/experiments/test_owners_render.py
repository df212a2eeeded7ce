"""The owners shown: the report's section, the interactive page's retainers tree and ``memdiet view
owners`` on a run folder whose owners.json is the analysis of two synthetic graphs; bad owners files
give one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.dataset.results import load_run
from experiments.owners.graphfile import read_graph
from experiments.owners.owners import owners
from experiments.render.owners_md import owner_tables, owners_markdown, owners_page_section
from tests.experiments.test_owners_graphs import CONNECTIONS, OWNER_PROGRAM, run_program
from tests.fixtures.fake_runs import write_fake_run
from tracemalloc_viewer.memdiet_command import run as view
from tracemalloc_viewer.outputs.html.document import _section
from tracemalloc_viewer.outputs.html.build import _section as section_data


@pytest.fixture(scope="module")
def run_with_owners(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("owners")
    run_program(f"K = {CONNECTIONS}\n" + OWNER_PROGRAM, folder, tracemalloc_frames=1)
    result = owners(read_graph(folder / "empty.graph"), read_graph(folder / "held.graph"), CONNECTIONS, 1200.0)
    run_dir = write_fake_run(folder / "runs", "nofd", "tracemalloc", connections=CONNECTIONS)
    (run_dir / "owners.json").write_text(json.dumps({
        "connections": CONNECTIONS, "processes": {"server": {**result, "connections": CONNECTIONS}},
        "costs": {"idle-held": {"seconds": 1.5, "file_bytes": 123456, "peak_growth_bytes": 4096}}}))
    document = json.loads((run_dir / "result.json").read_text())
    document["files"]["owners"] = "owners.json"
    (run_dir / "result.json").write_text(json.dumps(document))
    return run_dir


def test_report_section_names_the_owner_and_the_remainder(run_with_owners: Path) -> None:
    run = load_run(run_with_owners)
    tables = owner_tables({"nofd": {"tracemalloc": run}})
    assert len(tables) == 1
    text = "\n".join(owners_markdown(tables))
    assert "`__main__.Conn`" in text and "remainder" in text
    assert "of the 1.2 KiB of heap per held connection" in text, text
    assert "The heap graphs cost: idle-held 1.5 s" in text
    assert "`__slots__` candidates" in text


def test_page_tree_opens_on_the_owner_with_hover_figures(run_with_owners: Path) -> None:
    section = owners_page_section([load_run(run_with_owners)])
    data = section_data(section, 0)
    owner = data["tree"][0]["children"][0]
    assert owner["label"].startswith("__main__.Conn") and "retained" in owner["hover"]
    assert any(child["label"].startswith("builtins.bytearray") for child in owner["children"])
    written: list[str] = []
    _section(data, written.append)
    page = "".join(written)
    assert "<details" in page and "<summary title=\"retained" in page


def test_view_owners_prints_table_and_tree(run_with_owners: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert view(["owners", str(run_with_owners)]) == 0
    out = capsys.readouterr().out
    assert "__main__.Conn" in out and "  builtins.bytearray" in out and "what a diet would save" in out


@pytest.mark.parametrize("content, message", [
    ("{", "not JSON"),
    ('{"processes": []}', "no processes object"),
    ('{"processes": {"server": {"connections": 1, "owners": [{"type": 3}]}}}', "an owner without a type"),
    ('{"processes": {"server": {"connections": 1, "owners": [], "reconciliation": {"x": "y"}}}}', "is not a number"),
])
def test_bad_owners_files_give_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str,
                                        message: str) -> None:
    (tmp_path / "owners.json").write_text(content)
    assert view(["owners", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_report_names_an_owners_file_that_fails_its_checks(tmp_path: Path) -> None:
    from experiments.render.report_md import _owners_lines

    run_dir = write_fake_run(tmp_path / "runs", "nofd", "tracemalloc", connections=CONNECTIONS)
    (run_dir / "owners.json").write_text('{"processes": {"server": {"connections": 1, "owners": [{"type": 3}]}}}')
    document = json.loads((run_dir / "result.json").read_text())
    document["files"]["owners"] = "owners.json"
    (run_dir / "result.json").write_text(json.dumps(document))
    lines = _owners_lines({"nofd": {"tracemalloc": load_run(run_dir)}})
    assert any(line.startswith("- owners not shown for nofd: ") and "without a type" in line for line in lines), lines
    assert "No tracemalloc run of this report took heap graphs" in "\n".join(lines)
