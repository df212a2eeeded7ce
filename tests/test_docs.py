"""The documentation site (mkdocs.yml, docs/) builds with ``mkdocs build --strict``: a broken link, a
link to a missing anchor or a nav entry without its page fails ``make test``. A page that nav does
not list builds (reported, not an error), so a branch can add a page before nav names it.

The failing cases build a copy of docs/ and mkdocs.yml with one thing broken."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import REPO

MKDOCS = Path(sys.executable).with_name("mkdocs")


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(MKDOCS), "build", "--strict", "--site-dir", str(site)], cwd=root,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    done = build(REPO, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()


@pytest.fixture
def docs_copy(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "mkdocs.yml", root)
    return root


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


BREAKS = {
    "a link to a missing page": ("docs/study.md", "\nSee [nowhere](no-such-page.md).\n", "no-such-page.md"),
    "a link to a missing anchor": ("docs/study.md", "\nSee [the runs](runs.md#no-such-section).\n", "no-such-section"),
    "a nav entry without its page": ("mkdocs.yml", "  - Gone: gone.md\n", "gone.md"),
}


@pytest.mark.parametrize("case", list(BREAKS))
def test_a_broken_site_fails_the_strict_build(docs_copy: Path, tmp_path: Path, case: str) -> None:
    name, addition, named = BREAKS[case]
    _append(docs_copy / name, addition)
    done = build(docs_copy, tmp_path / "site")
    assert done.returncode != 0, f"{case}: the strict build passed"
    assert named in done.stderr, done.stderr[-4000:]


def test_a_page_nav_does_not_list_still_builds(docs_copy: Path, tmp_path: Path) -> None:
    (docs_copy / "docs" / "new-topic.md").write_text("# A page another branch added\n")
    done = build(docs_copy, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "new-topic.md" in done.stderr  # reported, not an error


def test_the_folder_map_has_one_row_per_module() -> None:
    """docs/ARCHITECTURE.md's folder map names every module of the three packages in a row of its own,
    and names no module that does not exist."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    rows = re.findall(r"^\| `([^`]+\.py)` \|", text, flags=re.MULTILINE)
    modules = {path.relative_to(REPO).as_posix() for package in ("server", "experiments", "tracemalloc_viewer")
               for path in (REPO / package).rglob("*.py")}
    assert len(rows) == len(set(rows)), "a module has two rows"
    assert sorted(modules - set(rows)) == [], "modules with no row in the folder map"
    assert sorted(set(rows) - modules) == [], "rows naming no module"
