"""result.json's two formats: ``memdiet.run/2`` names what was run in ``subject.name`` (a layout, a peer or a
--cmd alike), ``memdiet.run/1`` named it ``layout``; run folders of either are read, by the dataset and by the
viewer, and a report of old folders is the report of the same runs written now."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from experiments.dataset.results import SCHEMA, SCHEMA_WITH_LAYOUT, ResultError, load_run
from experiments.measure.scenario import RUN
from experiments.render.report_md import build_report
from tracemalloc_viewer import LoadOptions, open_series
from tests.fixtures.crafted import run_document, write_run
from tests.fixtures.fake_runs import write_fake_run


def test_a_run_names_its_subject_and_no_layout() -> None:
    parameters = RUN.parameters()
    assert parameters["subject"] == "" and "layout" not in parameters
    assert SCHEMA == "memdiet.run/2" and SCHEMA_WITH_LAYOUT == "memdiet.run/1"


@pytest.mark.parametrize("fields", [
    {"schema": SCHEMA_WITH_LAYOUT, "layout": "uvicorn"},  # what memdiet wrote before the rename
    {"schema": SCHEMA_WITH_LAYOUT, "layout": "uvicorn", "subject": {"name": "uvicorn", "kind": "peer"}},
    {"schema": SCHEMA, "subject": {"name": "uvicorn", "kind": "peer"}},
])
def test_either_format_gives_the_subject(tmp_path: Path, fields: dict) -> None:
    document = run_document(**fields)
    if "layout" not in fields:
        del document["layout"]
    folder = write_run(tmp_path / "run", document)
    assert load_run(folder).subject == "uvicorn" == load_run(folder).layout
    notes = open_series([folder], LoadOptions()).notes
    assert any(note.startswith("run: run (uvicorn layout, tracemalloc probe") for note in notes), notes


@pytest.mark.parametrize("fields, said", [
    ({"schema": SCHEMA}, "field 'subject' should be an object with a name"),  # a new file without its name
    ({"schema": SCHEMA, "subject": {"kind": "peer"}}, "field 'subject' should be an object with a name"),
    ({"schema": SCHEMA_WITH_LAYOUT}, "missing field 'layout'"),
    ({"schema": SCHEMA_WITH_LAYOUT, "layout": 3}, "field 'layout' should be str"),
    ({"schema": "memdiet.run/3", "subject": {"name": "x"}}, "schema 'memdiet.run/3' is not 'memdiet.run/2'"),
])
def test_a_file_that_does_not_name_its_subject_is_refused(tmp_path: Path, fields: dict, said: str) -> None:
    document = run_document(**fields)
    if "layout" not in fields:
        del document["layout"]
    folder = write_run(tmp_path / "run", document)
    with pytest.raises(ResultError, match=said.replace("(", r"\(")):
        load_run(folder)


def _as_schema_1(folder: Path) -> None:
    """Rewrite a run folder's result.json as memdiet wrote it before the rename."""
    path = folder / "result.json"
    document = json.loads(path.read_text())
    name = document.pop("subject")["name"]
    rewritten = {"schema": SCHEMA_WITH_LAYOUT, "layout": name, "subject": {"name": name}}
    rewritten.update((key, value) for key, value in document.items() if key != "schema")
    rewritten["parameters"] = {("layout" if key == "subject" else key): value
                               for key, value in document["parameters"].items()}
    path.write_text(json.dumps(rewritten, indent=2) + "\n")


def test_a_report_of_old_run_folders_is_the_report_of_the_same_runs_now(tmp_path: Path) -> None:
    for layout, probe in (("naive", "rss"), ("packed", "rss"), ("packed", "tracemalloc")):
        write_fake_run(tmp_path / "new", layout, probe)
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    for folder in (tmp_path / "old").iterdir():
        _as_schema_1(folder)
        assert json.loads((folder / "result.json").read_text())["schema"] == SCHEMA_WITH_LAYOUT
    texts = {}
    for which in ("new", "old"):
        runs = [load_run(folder) for folder in sorted((tmp_path / which).iterdir())]
        index = build_report(runs, tmp_path / f"report-{which}", title="t")
        # The first line after the title says when the report was generated; the rest is the runs'.
        texts[which] = [line for line in index.read_text().replace(f"/{which}/", "/RUNS/").splitlines()
                        if not line.startswith("Generated ")]
    assert texts["old"] == texts["new"]
    assert any("naive" in line for line in texts["new"])
