"""The comparison of a matrix's runs with a baseline: one row per figure, each with its verdict.

Rules: data only; nothing here prints or renders (``memdiet regress`` prints, and
:mod:`experiments.render.regression_md` writes ``regression.md`` and ``regression.json``). The runs'
figures are merged per layout as the report does, and compared within the baseline's own
tolerances. Only a change in the worse direction (:attr:`~experiments.dataset.metrics.Metric.lower_is_better`)
beyond the tolerance fails (*REGRESSED*); a change as large in the better direction is *improved*.
A figure in the baseline but missing now fails (*MISSING*), as does one now taken from another probe
(*PROBE CHANGED*); a figure new since the baseline is reported (*new*) and passes.

Against a baseline of repeated matrices every row also says whether the change, in either direction,
is *beyond the noise* those matrices showed (:attr:`Row.beyond_noise`): a deterministic figure may be
within its 1% and still beyond the noise, which is worth a look; and a figure is *improved* only when
it is better beyond the noise too (req/s, whose learned drop is capped below its noise, is not
improved by a rise the noise explains). Learned tolerances hold on the machine
they were learned on: when the runs come from another (:data:`~.baseline.MACHINE_FIELDS` differ),
each figure with a learned tolerance is judged by the fixed policy it keeps (rule ``other machine``)
and has no noise band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..dataset.metrics import METRICS
from ..dataset.results import RunResult
from ..dataset.selection import layout_order, merged_metrics
from .baseline import Baseline, common_environment, machine_differences, metric_order
from .tolerances import Tolerance

OK, IMPROVED, NEW = "ok", "improved", "new"
#: The rule of a learned tolerance replaced by its fixed policy because the runs come from another machine.
OTHER_MACHINE = "other machine"
REGRESSED, MISSING, PROBE_CHANGED = "REGRESSED", "MISSING", "PROBE CHANGED"
#: Verdicts that fail the check.
FAILING = (REGRESSED, MISSING, PROBE_CHANGED)


@dataclass(frozen=True)
class Row:
    """One figure compared: ``baseline`` and ``now`` in the metric's unit (None where absent),
    ``allowed`` the tolerance in that unit, ``worse`` +1 if a rise is worse, -1 if a drop is;
    ``noise`` the change the baseline's repeated matrices allow either way (None without them) and
    ``rule`` how the tolerance applied was set (``fixed``, ``learned`` or ``other machine``)."""

    layout: str
    metric: str
    baseline: float | None
    now: float | None
    tolerance: Tolerance | None
    allowed: float | None
    worse: int
    verdict: str
    probe: str | None
    note: str = ""
    noise: float | None = None
    rule: str | None = None

    @property
    def failed(self) -> bool:
        """True when the verdict fails the check (one of :data:`FAILING`)."""
        return self.verdict in FAILING

    @property
    def change(self) -> float | None:
        """now - baseline, in the metric's unit."""
        return None if self.baseline is None or self.now is None else self.now - self.baseline

    @property
    def relative_change(self) -> float | None:
        """(now - baseline) / |baseline|, None when the baseline is 0 or a figure is absent."""
        change = self.change
        return None if change is None or not self.baseline else change / abs(self.baseline)

    @property
    def beyond_noise(self) -> bool:
        """True when the figure moved, either way, further than its noise band (False without one)."""
        change = self.change
        return change is not None and self.noise is not None and abs(change) > self.noise

    @property
    def severity(self) -> float:
        """How far past its tolerance a failing figure is (for naming the worst): the worse-direction
        change over the allowed change, infinite for exact tolerances, missing figures first."""
        if self.verdict in (MISSING, PROBE_CHANGED):
            return math.inf
        change = (self.change or 0.0) * self.worse
        return math.inf if not self.allowed else change / self.allowed

    def to_json(self) -> dict[str, Any]:
        metric = METRICS.get(self.metric)
        return {
            "layout": self.layout, "metric": self.metric, "unit": metric.unit if metric else None,
            "baseline": self.baseline, "now": self.now, "change": self.change, "relative_change": self.relative_change,
            "allowed_change": self.allowed, "worse_when": "higher" if self.worse > 0 else "lower",
            "tolerance": self.tolerance.to_json() if self.tolerance else None,
            "verdict": self.verdict, "probe": self.probe, "note": self.note or None,
            "rule": self.rule, "noise_band": self.noise, "beyond_noise": self.beyond_noise,
        }


def worse_sign(name: str) -> int:
    """+1 when a rise of metric ``name`` is worse (memory, latency, errors), -1 when a drop is."""
    metric = METRICS.get(name)
    return 1 if metric is None or metric.lower_is_better else -1


def judge(baseline: float, now: float, tolerance: Tolerance, worse: int) -> str:
    """``REGRESSED`` if ``now`` moved past the tolerance in the ``worse`` direction, ``IMPROVED`` if
    as far the other way, else ``OK``."""
    allowed = tolerance.allowed(baseline)
    worse_by = (now - baseline) * worse
    if worse_by > allowed:
        return REGRESSED
    if -worse_by > allowed:
        return IMPROVED
    return OK


@dataclass
class Comparison:
    """Every figure of the baseline and of the runs, compared; ``rows`` in study then metric order."""

    rows: list[Row]
    baseline: Baseline
    runs: list[RunResult]
    run_failures: list[str]
    #: The machine fields in which the runs differ from the baseline's (empty: the same machine).
    machine_changes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Row]:
        return [row for row in self.rows if row.failed]

    @property
    def beyond_noise(self) -> list[Row]:
        """Rows that hold (or improved) yet moved further than the baseline's noise."""
        return [row for row in self.rows if row.beyond_noise and not row.failed]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def worst(self) -> Row | None:
        """The failing row furthest past its tolerance (ties: the larger relative change)."""
        failures = self.failures
        if not failures:
            return None
        return max(failures, key=lambda row: (row.severity, abs(row.relative_change or 0.0)))

    @property
    def environment(self) -> dict[str, Any]:
        """The machine and software the runs were made on (:func:`~.baseline.common_environment`);
        empty without runs."""
        return common_environment(self.runs) if self.runs else {}

    def count(self, verdict: str) -> int:
        return sum(row.verdict == verdict for row in self.rows)


def compare(baseline: Baseline, runs: Sequence[RunResult], run_failures: Sequence[str] = ()) -> Comparison:
    """Compare the complete ``runs`` (merged per layout) with ``baseline``."""
    merged = merged_metrics(runs)
    changes = machine_differences(baseline.environment, common_environment(runs)) if runs else []
    rows = []
    for layout in layout_order(set(baseline.figures) | set(merged)):
        before = baseline.figures.get(layout, {})
        after = merged.get(layout, {})
        for name in metric_order(set(before) | set(after)):
            base, figure = before.get(name), after.get(name)
            worse = worse_sign(name)
            if base is None:
                rows.append(Row(layout, name, None, figure.value, None, None, worse, NEW, figure.probe,
                                "not in the baseline"))
                continue
            tolerance, rule = baseline.tolerances[name], baseline.tolerances[name].rule
            if changes and tolerance.other_machine is not None:
                tolerance, rule = tolerance.other_machine, OTHER_MACHINE
            allowed = tolerance.allowed(base.value)
            noise = tolerance.noise.allowed(base.value) if tolerance.noise is not None else None
            if figure is None:
                rows.append(Row(layout, name, base.value, None, tolerance, allowed, worse, MISSING, None,
                                "in the baseline but not in these runs", noise, rule))
            elif figure.probe != base.probe:
                rows.append(Row(layout, name, base.value, figure.value, tolerance, allowed, worse, PROBE_CHANGED,
                                figure.probe, f"baseline from the {base.probe} probe, now from {figure.probe}", noise, rule))
            else:
                verdict = judge(base.value, figure.value, tolerance, worse)
                if verdict == IMPROVED and noise is not None and abs(figure.value - base.value) <= noise:
                    verdict = OK  # better by more than a capped tolerance, but not beyond the noise: no news
                rows.append(Row(layout, name, base.value, figure.value, tolerance, allowed, worse, verdict,
                                figure.probe, "", noise, rule))
    return Comparison(rows, baseline, list(runs), list(run_failures), changes)
