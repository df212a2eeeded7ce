"""The notebooks run top to bottom on real results, and the committed ones carry no outputs.

They read the session's small real matrix (every layout, rss and tracemalloc probes, with a
baseline written from it: ``quick_matrix`` in tests/conftest.py); each notebook is executed headless
(experiments.notebook_runner) with ``MEMDIET_REPORTS`` pointing at that matrix and
``MEMDIET_NOTEBOOK_QUICK=1`` shrinking the sweep notebook 02 runs itself.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from experiments.notebook_runner import execute_notebook, main, notebooks_in
from experiments.study import QUICK_ENV, REPORTS_ENV

from ..conftest import QuickMatrix
from ..fixtures import REPO

NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = ("01-slot-anatomy", "02-idle-vs-loaded", "03-massif-curves", "04-regressions", "05-scaling-laws")


@pytest.fixture(scope="module")
def reports(quick_matrix: QuickMatrix) -> Path:
    """A reports folder as `make experiment` leaves it (runs/, latest/), plus a baseline.json made
    from the same runs: the session's shared small matrix (tests/conftest.py)."""
    return quick_matrix.root


def _outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def test_the_four_notebooks_are_committed_without_outputs():
    paths = notebooks_in(NOTEBOOK_DIR)
    assert [p.stem for p in paths] == list(NOTEBOOKS)
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for number, cell in enumerate(notebook.cells, start=1):
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, \
                    f"{path.name} cell {number} has outputs: clear them before committing"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom_on_real_results(name, reports, tmp_path, monkeypatch):
    monkeypatch.setenv(REPORTS_ENV, str(reports))
    monkeypatch.setenv(QUICK_ENV, "1")
    executed = nbformat.read(execute_notebook(NOTEBOOK_DIR / f"{name}.ipynb", tmp_path), as_version=4)

    outputs = _outputs(executed)
    assert not [o for o in outputs if o.output_type == "error"]
    assert all(cell.execution_count for cell in executed.cells if cell.cell_type == "code")
    # Every notebook draws at least one chart, and read the results it was pointed at.
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{name} drew no chart"
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert str(reports) in printed, f"{name} did not say it read {reports}"


def test_runner_names_the_failing_notebook_and_cell(tmp_path, capsys):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# broken"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise ValueError('boom')"),
        nbformat.v4.new_code_cell("print('never reached')"),
    ])
    nbformat.write(notebook, source / "broken.ipynb")

    assert main([str(source), str(out)]) == 1
    error = capsys.readouterr().err
    assert "broken.ipynb: cell 3" in error and "ValueError: boom" in error
    executed = nbformat.read(out / "broken.ipynb", as_version=4)
    assert executed.cells[2].outputs[0].output_type == "error"
    assert executed.cells[3].execution_count is None  # execution stopped at the failing cell
    # The committed copy is never written.
    assert nbformat.read(source / "broken.ipynb", as_version=4).cells[2].outputs == []


def test_runner_refuses_to_write_outputs_into_the_notebooks(tmp_path, capsys):
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "empty.ipynb")
    assert main([str(tmp_path), str(tmp_path)]) == 2
    assert "must differ" in capsys.readouterr().err

