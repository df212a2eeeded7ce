"""``memdiet view ...``: the viewer's command line under memdiet's name.

``memdiet view chart RUN_DIR`` is ``python -m tracemalloc_viewer chart RUN_DIR`` with ``memdiet view``
as the program name: memdiet's ``view`` command (``experiments/cli/view.py``) passes everything after
``view`` to :func:`run` as is, ``--help`` included, and exits with what it returns. This module
imports nothing from memdiet: the viewer stands alone, and memdiet depends on it, not the other way.
"""

from __future__ import annotations

from typing import Sequence

from .cli import main

PROG = "memdiet view"


def run(argv: Sequence[str], prog: str = PROG) -> int:
    """Run the viewer on ``argv`` under the program name ``prog``; returns its exit status, that of
    argparse's ``--help`` and usage errors included."""
    try:
        return main(list(argv), prog=prog)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
