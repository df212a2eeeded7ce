"""The import rules (docs/ARCHITECTURE.md, "Import rules") are import-linter contracts in
pyproject.toml's ``[tool.importlinter]``; this runs ``lint-imports`` on the tree, then on copies of the
tree that each break one contract, and shows that one contract reported broken, naming the import.

A copy holds the three packages' ``.py`` files, pyproject.toml and tests/import_contracts.py (the
custom contracts); lint-imports runs in it, so it reads the copy's packages, not the installed ones.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("server", "experiments", "tracemalloc_viewer")


def lint(root: Path) -> tuple[int, str]:
    """lint-imports' exit status and output in ``root`` (no cache: every copy is a new tree)."""
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=root, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": "", "COLUMNS": "250"},
    )
    return done.returncode, done.stdout + done.stderr


def broken_contracts(output: str) -> list[str]:
    return re.findall(r"^(.+?) BROKEN(?: \(.*\))?$", output, flags=re.MULTILINE)


def test_the_tree_keeps_every_contract() -> None:
    status, output = lint(REPO)
    assert status == 0 and "0 broken" in output, output


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tree that lint-imports can check (copied once; each case copies it again)."""
    root = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", root)
    (root / "tests").mkdir()
    (root / "tests" / "__init__.py").write_text("")
    shutil.copy(REPO / "tests" / "import_contracts.py", root / "tests")
    return root


def test_the_copy_keeps_every_contract(tree_copy: Path) -> None:
    status, output = lint(tree_copy)
    assert status == 0 and "0 broken" in output, output


#: What each case appends to a file of the copy (a new file when it does not exist), the one contract
#: then broken (by name, as pyproject.toml gives it), and what the report must say about it.
BREAKS = {
    "a lower layer imports a higher one": (
        "experiments/dataset/__init__.py", "\nfrom experiments.measure import runner\n",
        "experiments: no module imports a layer above its own",
        ["experiments.dataset -> experiments.measure.runner"]),
    "a module outside cli imports cli inside a function": (
        "experiments/study.py", "\n\ndef _late():\n    from experiments.cli import main\n",
        "experiments: no module imports a layer above its own", ["experiments.study -> experiments.cli"]),
    "a module in no layer": (
        "experiments/stray.py", "", "experiments: no module imports a layer above its own",
        ["experiments.stray"]),
    "regress imports render inside a function": (
        "experiments/regress/__init__.py", "\n\ndef _show():\n    from experiments.render import units\n",
        "regress does not import render", ["experiments.regress -> experiments.render.units"]),
    "render imports measure": (
        "experiments/render/units.py", "\nfrom experiments.measure import runner\n",
        "render reaches no live code", ["experiments.render.units -> experiments.measure.runner"]),
    "render imports the server under TYPE_CHECKING": (
        "experiments/render/units.py", "\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import server.loop\n",
        "render reaches no live code", ["experiments.render.units -> server.loop"]),
    "render imports the bench inside a function": (
        "experiments/render/bench_md.py", "\n\ndef _late():\n    from experiments.bench import document\n",
        "render reaches no live code", ["experiments.render.bench_md -> experiments.bench.document"]),
    "dataset imports the server": (
        "experiments/dataset/__init__.py", "\nfrom server.layouts import base\n",
        "dataset does not import the server", ["experiments.dataset -> server.layouts.base"]),
    "the viewer imports experiments": (
        "tracemalloc_viewer/__init__.py", "\nfrom experiments import paths\n",
        "the viewer imports neither the server nor experiments", ["tracemalloc_viewer -> experiments.paths"]),
    "the server imports experiments": (
        "server/loop.py", "\nfrom experiments import paths\n",
        "the server imports neither experiments nor the viewer", ["server.loop -> experiments.paths"]),
    "the server imports a third-party package": (
        "server/loop.py", "\nimport psutil\n",
        "the server imports the standard library only", ["server.loop:", "imports psutil, not from the standard library"]),
    "server.cli imports memray at module level": (
        "server/cli.py", "\nimport memray\n",
        "the server imports the standard library only", ["server.cli:", "imports memray"]),
    "a cycle through a function-local import": (
        "server/http.py", "\n\ndef _late():\n    from . import connection\n",
        "no import cycle", ["import cycle:", "server.connection", "server.http"]),
    # 448e0ba's cycle put back: grimp records tracemalloc_viewer.pickle_bounds, the statement runs the
    # package's __init__, which imports sources.
    "a submodule taken from its package (from .. import submodule)": (
        "tracemalloc_viewer/sources/tracemalloc_dumps.py", "\nfrom .. import pickle_bounds\n",
        "no import cycle", ["import cycle: tracemalloc_viewer (line", "tracemalloc_viewer.sources (line",
                            "tracemalloc_viewer.sources.tracemalloc_dumps (line"]),
    "a package __init__ imported back by its submodule": (
        "experiments/cli/args.py", "\nfrom experiments import cli\n",
        "no import cycle", ["import cycle: experiments.cli (line", "experiments.cli.args"]),
}


@pytest.mark.parametrize("case", list(BREAKS))
def test_each_contract_fails_on_a_tree_that_breaks_it(tree_copy: Path, tmp_path: Path, case: str) -> None:
    name, addition, contract, expected = BREAKS[case]
    root = tmp_path / "tree"
    shutil.copytree(tree_copy, root)
    path = root / name
    path.write_text((path.read_text() if path.exists() else "") + addition)
    status, output = lint(root)
    assert status == 1, f"{case}: lint-imports passed:\n{output}"
    broken = broken_contracts(output)
    assert len(broken) == 1 and broken[0].startswith(contract), f"{case}: broke {broken}, not {contract!r}:\n{output}"
    for part in expected:
        assert part in output, f"{case}: the report does not say {part!r}:\n{output}"


#: A package of three modules whose __init__ imports ``reader``; ``reader`` takes ``names`` as written here.
ACYCLIC_ONLY = """[tool.importlinter]
root_packages = ["demo"]
contract_types = ["acyclic: tests.import_contracts.AcyclicContract"]

[[tool.importlinter.contracts]]
name = "no import cycle in demo"
type = "acyclic"
packages = ["demo"]
"""


@pytest.mark.parametrize("statement, kept", [("from . import names", False), ("from demo import names", False),
                                             ("from .names import NAME", True), ("import demo.names", True)])
def test_acyclic_finds_a_submodule_taken_from_its_package(tmp_path: Path, statement: str, kept: bool) -> None:
    """``from package import submodule`` runs ``package``'s __init__: inside a module that __init__
    imports, a cycle, though grimp records the import of ``package.submodule`` only; ``from
    package.submodule import name`` and ``import package.submodule`` read no attribute of the package."""
    (tmp_path / "pyproject.toml").write_text(ACYCLIC_ONLY)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").write_text("")
    shutil.copy(REPO / "tests" / "import_contracts.py", tmp_path / "tests")
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "__init__.py").write_text("from .reader import read\n")
    (demo / "reader.py").write_text(f"{statement}\n\n\ndef read():\n    return 1\n")
    (demo / "names.py").write_text("NAME = 'n'\n")
    status, output = lint(tmp_path)
    if kept:
        assert status == 0 and "0 broken" in output, output
    else:
        assert status == 1 and broken_contracts(output) == ["no import cycle in demo"], output
        assert "import cycle: demo (line 1) -> demo.reader (line 1) -> demo" in output, output
