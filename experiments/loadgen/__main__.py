"""``python -m experiments.loadgen``: the load-generator process (see experiments.loadgen.child)."""

import sys

from .child import main

sys.exit(main())
