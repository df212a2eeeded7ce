"""``python -m experiments``: the ``memdiet`` command (:func:`experiments.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
