"""The regression check: a matrix's summary figures against a committed baseline, as data.

- :mod:`.tolerances`: how far each figure may move, and the measurements behind each number;
- :mod:`.baseline`: ``reports/baseline.json`` made from runs, written, read back and checked (same
  matrix parameters, same interpreter minor);
- :mod:`.compare`: one row per figure with its verdict.

Rules: data only. Nothing here runs a matrix, prints, or imports :mod:`experiments.render`: the
``memdiet regress`` and ``memdiet baseline`` commands (:mod:`experiments.cli.regress`,
:mod:`experiments.cli.baseline`) run the matrix and print, and
:mod:`experiments.render.regression_md` writes ``regression.md`` and ``regression.json``. Errors are
:class:`BaselineError` (a :class:`~experiments.errors.BadInput`: exit 2).
"""

from .baseline import (
    BASELINE_SCHEMA,
    COMPARED_PARAMETERS,
    DEFAULT_BASELINE,
    ENVIRONMENT_FIELDS,
    Baseline,
    BaselineError,
    BaselineFigure,
    check_comparable,
    check_same_interpreter,
    common_environment,
    current_interpreter,
    interpreter_minor,
    load_baseline,
    make_baseline,
    matrix_parameters,
    metric_order,
    write_baseline,
)
from .compare import (
    FAILING,
    IMPROVED,
    MISSING,
    NEW,
    OK,
    PROBE_CHANGED,
    REGRESSED,
    Comparison,
    Row,
    compare,
    judge,
    worse_sign,
)
from .tolerances import Tolerance, tolerance_policy

__all__ = [
    "BASELINE_SCHEMA", "COMPARED_PARAMETERS", "DEFAULT_BASELINE", "ENVIRONMENT_FIELDS", "Baseline", "BaselineError",
    "BaselineFigure", "check_comparable", "check_same_interpreter", "common_environment", "current_interpreter",
    "interpreter_minor", "load_baseline", "make_baseline", "matrix_parameters", "metric_order", "write_baseline",
    "FAILING", "IMPROVED", "MISSING", "NEW", "OK", "PROBE_CHANGED", "REGRESSED", "Comparison", "Row", "compare",
    "judge", "worse_sign", "Tolerance", "tolerance_policy",
]
