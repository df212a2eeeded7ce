"""Where the toolkit's files are: the repository root and the report folders under it.

Every path a command writes by default is named here once. Relative defaults (``reports/runs``) are
read against the working folder, as a user expects of a command-line tool; code that must find the
repository's own files (the server package, git metadata) uses :data:`REPO_ROOT`.
"""

from __future__ import annotations

from pathlib import Path

#: The repository (the folder holding ``server/`` and ``experiments/``).
REPO_ROOT = Path(__file__).resolve().parent.parent
