"""experiments.study's sweep of notebook 02: its plan is a ``measure.sweep`` plan that keeps that
module's rules, and its line fit is ``dataset.fit.ols``, checked against the standard library's own
least squares (``statistics.linear_regression``, ``statistics.correlation``) on sweep-shaped data.
The sweep's runs themselves are made by tests/experiments/test_notebooks.py (notebook 02)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from experiments import study
from experiments.measure.sweep import SweepPlan, check_plan

#: Idle RSS of four runs of a grid (max_conns 2048 and 8192, each at two C): bytes, as a run reports them.
SLOTS = [2048, 2048, 8192, 8192]
IDLE_RSS = [19_791_872.0, 19_800_064.0, 57_061_376.0, 57_049_088.0]


@pytest.mark.parametrize("xs, ys", [(SLOTS, IDLE_RSS), ([50, 400, 50, 400], [41_000.0, 330_000.0, 45_056.0, 319_488.0]),
                                    ([1e4, 2e4, 3e4], [1.0, 2.5, 2.9])])
def test_fit_line_gives_the_standard_librarys_least_squares(xs: list[float], ys: list[float]) -> None:
    fit = study.fit_line(xs, ys)
    expected = statistics.linear_regression(xs, ys)
    assert math.isclose(fit.slope, expected.slope, rel_tol=1e-9)
    assert math.isclose(fit.intercept, expected.intercept, rel_tol=1e-9, abs_tol=1e-6 * max(map(abs, ys)))
    assert math.isclose(fit.r2, statistics.correlation(xs, ys) ** 2, rel_tol=1e-9)


def test_fit_line_refuses_what_cannot_be_fitted() -> None:
    with pytest.raises(ValueError, match="two distinct x"):
        study.fit_line([2048, 2048, 2048], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):  # two points leave no error estimate (dataset.fit.FitError)
        study.fit_line([2048, 8192], [1.0, 2.0])


@pytest.mark.parametrize("quick", [True, False])
def test_the_notebook_sweep_is_a_measure_sweep_plan_within_its_rules(quick: bool) -> None:
    plan = study.sweep_plan(quick)
    assert isinstance(plan, SweepPlan) and not plan.heap_runs and not plan.allocator
    check_plan(plan, hard=20_000)  # the hard limit of the machine the committed sweep was made on
    configs = plan.configs(Path("runs"))
    assert {config.probe for config in configs} == {"rss"}
    assert len(configs) == len(plan.layouts) * len(plan.max_conns_values) * len(plan.connections_values)
