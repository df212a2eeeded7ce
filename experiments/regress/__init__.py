"""The regression check: a matrix's summary figures against a committed baseline, as data.

- :mod:`.tolerances`: how far each figure may move, and the measurements behind each number;
- :mod:`.noise`: tolerances learned from the spread of K repeated matrices (``--repeat K``);
- :mod:`.baseline`: ``reports/baseline.json`` made from runs, written, read back and checked (same
  matrix parameters, same interpreter minor);
- :mod:`.compare`: one row per figure with its verdict, and whether it moved beyond the noise;
- :mod:`.history`: one record per check appended to a JSON-lines file, read back as trends over
  commits, with slow creeps found.

Rules: data only. Nothing here runs a matrix, prints, or imports :mod:`experiments.render`: the
``memdiet regress`` and ``memdiet baseline`` commands (:mod:`experiments.cli.regress`,
:mod:`experiments.cli.baseline`) run the matrix and print, and
:mod:`experiments.render.regression_md` writes ``regression.md`` and ``regression.json``; ``memdiet
history`` (:mod:`experiments.cli.history`) reads the history and the ``history_*`` renderers draw it.
Errors are :class:`BaselineError` and :class:`HistoryError` (:class:`~experiments.errors.BadInput`:
exit 2), and :class:`NotReproducible` (exit 1: a deterministic figure moved across repeated matrices).
"""

from .baseline import (
    BASELINE_SCHEMA,
    COMPARED_PARAMETERS,
    DEFAULT_BASELINE,
    ENVIRONMENT_FIELDS,
    MACHINE_FIELDS,
    Baseline,
    BaselineError,
    BaselineFigure,
    check_comparable,
    check_same_interpreter,
    common_environment,
    current_interpreter,
    interpreter_minor,
    load_baseline,
    machine_differences,
    make_baseline,
    make_learned_baseline,
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
    OTHER_MACHINE,
    PROBE_CHANGED,
    REGRESSED,
    Comparison,
    Row,
    compare,
    judge,
    worse_sign,
)
from .history import (
    DEFAULT_HISTORY,
    DEFAULT_TREND_METRICS,
    HISTORY_FILE,
    Creep,
    HistoryError,
    Record,
    Trend,
    append_record,
    find_creeps,
    history_record,
    read_history,
    trends,
)
from .noise import RULE, MetricNoise, Noise, NotReproducible, Spread, learn_tolerances, spreads
from .tolerances import FIXED, LEARNED, MIN_REPEAT, Tolerance, tolerance_policy

__all__ = [
    "BASELINE_SCHEMA", "COMPARED_PARAMETERS", "DEFAULT_BASELINE", "ENVIRONMENT_FIELDS", "MACHINE_FIELDS", "Baseline",
    "BaselineError", "BaselineFigure", "check_comparable", "check_same_interpreter", "common_environment",
    "current_interpreter", "interpreter_minor", "load_baseline", "machine_differences", "make_baseline",
    "make_learned_baseline", "matrix_parameters", "metric_order", "write_baseline",
    "FAILING", "IMPROVED", "MISSING", "NEW", "OK", "OTHER_MACHINE", "PROBE_CHANGED", "REGRESSED", "Comparison", "Row",
    "compare", "judge", "worse_sign",
    "DEFAULT_HISTORY", "DEFAULT_TREND_METRICS", "HISTORY_FILE", "Creep", "HistoryError", "Record", "Trend",
    "append_record", "find_creeps", "history_record", "read_history", "trends",
    "RULE", "MetricNoise", "Noise", "NotReproducible", "Spread", "learn_tolerances", "spreads",
    "FIXED", "LEARNED", "MIN_REPEAT", "Tolerance", "tolerance_policy",
]
