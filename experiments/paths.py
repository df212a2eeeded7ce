"""Where the toolkit's files are: the repository root and the report folders under it.

Every path a command writes by default is named here once. Relative defaults (``reports/runs``) are
read against the working folder, as a user expects of a command-line tool; code that must find the
repository's own files (the server package, git metadata) uses :data:`REPO_ROOT`.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository (the folder holding ``server/`` and ``experiments/``).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: The reports folder, relative to the working folder (``make`` runs from the repository root).
REPORTS_DIR = Path("reports")
#: Where run folders go (git-ignored: run folders are never committed).
DEFAULT_RUNS_DIR = REPORTS_DIR / "runs"
#: Where ``make experiment`` writes the full study's report: committed, so the repository shows it.
DEFAULT_LATEST_DIR = REPORTS_DIR / "latest"
#: Where a quick matrix writes its report (``make experiment QUICK=1``, the notebooks' own matrix):
#: git-ignored, so a quick try never overwrites the committed full report.
QUICK_LATEST_DIR = REPORTS_DIR / "quick"


def relative_posix(path: os.PathLike[str] | str, base: os.PathLike[str] | str) -> str:
    """``path`` relative to the folder ``base``, both resolved, with ``/`` separators: how a report or
    sweep.json names a file beside it (the same in every clone)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def repository_relative(document: object, root: os.PathLike[str] | str = REPO_ROOT) -> object:
    """``document`` (JSON-shaped: dicts, lists, strings, numbers) with every absolute path inside the
    repository, or beside it, written relative to its root (``build/...``, ``../shared/...``), in plain
    path strings and in command lines alike: a file that is committed names no one's home folder, and
    reads the same in every clone."""
    inside, beside = f"{Path(root).resolve()}/", f"{Path(root).resolve().parent}/"
    if isinstance(document, str):
        return document.replace(inside, "").replace(beside, "../")
    if isinstance(document, dict):
        return {key: repository_relative(value, root) for key, value in document.items()}
    if isinstance(document, list):
        return [repository_relative(value, root) for value in document]
    return document
