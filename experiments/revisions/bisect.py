"""``memdiet bisect``: the first revision between a good and a bad one where a figure crosses a
threshold, found as ``git bisect run`` would.

The figure is a run summary's metric (``idle_rss_bytes``, ``rss_bytes_per_held_connection``...,
measured by a run of the scenario, K times per step, the median kept) or ``struct:NAME`` (a struct's
size from the build's DWARF: no run). ``good``'s figure is on one side of the threshold, ``bad``'s on
the other (refused otherwise: there is nothing to find); a revision has *crossed* when its figure is
on bad's side (``>= threshold`` when the figure grew from good to bad, ``<= threshold`` when it shrank).

Rules: the commits walked are those after good up to bad along first parents (:meth:`.source.Source.between`).
A revision that does not build, whose struct is absent, or whose runs all fail is *skipped*, as
``git bisect skip`` does: the next revision tried is the untested one nearest the middle. When only
skipped revisions are left between the last good and the first crossed one, the answer is that
range, not a guess. Builds come from the cache, so a second bisection (or a ``memdiet revisions``
over the same commits) builds nothing again. Each step is printed as it is decided.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

from ..errors import BadInput
from .source import Commit
from .study import Plan

STRUCT_PREFIX = "struct:"

Say = Callable[[str], None]


class Step:
    """One revision measured: its ``values`` (one per repeat), ``figure`` (their median, None when
    skipped) and why it was skipped."""

    __slots__ = ("commit", "values", "figure", "skipped", "runs")

    def __init__(self, commit: Commit, values: list[float], skipped: str | None, runs: list[str]) -> None:
        self.commit, self.values, self.skipped, self.runs = commit, values, skipped, runs
        self.figure = statistics.median(values) if values and skipped is None else None

    def as_dict(self) -> dict[str, Any]:
        return {**self.commit.as_dict(), "values": self.values, "figure": self.figure, "skipped": self.skipped,
                "runs": self.runs}


class Bisection:
    """Measures ``figure`` on revisions of ``plan`` (``repeats`` runs each under ``probe``)."""

    __slots__ = ("plan", "figure", "threshold", "repeats", "probe", "say", "measured")

    def __init__(self, plan: Plan, figure: str, threshold: float, repeats: int, probe: str, say: Say) -> None:
        if repeats < 1:
            raise BadInput("--repeat must be at least 1")
        if figure.startswith(STRUCT_PREFIX) and not plan.binary:
            raise BadInput(f"--figure {figure} reads the binary's DWARF: give --binary")
        self.plan, self.figure, self.threshold, self.repeats, self.probe, self.say = plan, figure, threshold, repeats, probe, say
        self.measured: dict[str, Step] = {}

    def measure(self, commit: Commit) -> Step:
        if commit.sha in self.measured:
            return self.measured[commit.sha]
        build = self.plan.build(commit, self.say)
        values: list[float] = []
        runs: list[str] = []
        skipped = None
        if not build.ok:
            skipped = f"does not build ({build.error})"
        elif self.figure.startswith(STRUCT_PREFIX):
            name = self.figure[len(STRUCT_PREFIX):]
            layout = build.structs(self.plan.binary or "", [name])[name]
            if layout is None:
                skipped = f"has no struct {name}"
            else:
                values.append(float(layout["size"]))
        else:
            for _ in range(self.repeats):
                outcome = self.plan.run(build, self.probe, self.say)
                runs.append(outcome["run"])
                value = outcome["summary"].get(self.figure) if outcome["status"] == "complete" else None
                if value is not None:
                    values.append(float(value))
            if not values:
                skipped = f"no complete run gave {self.figure}"
        step = Step(commit, values, skipped, runs)
        self.measured[commit.sha] = step
        return step

    def bisect(self, good: str, bad: str) -> dict[str, Any]:
        """The first revision after ``good`` up to ``bad`` whose figure has crossed; the document
        ``memdiet bisect`` prints and writes (steps in the order measured, the answer)."""
        source = self.plan.source
        commits = source.between(good, bad)
        good_step, bad_step = self.measure(source.commit(good)), self.measure(commits[-1])
        for role, step in (("good", good_step), ("bad", bad_step)):
            if step.figure is None:
                raise BadInput(f"the {role} revision {step.commit.short} cannot be measured: it {step.skipped}")
            self.say(f"{role} {step.commit.short}: {self.figure} = {_show(step)}")
        above = bad_step.figure > good_step.figure  # type: ignore[operator]  # the figure grows from good to bad
        if self._crossed(good_step.figure, above):  # type: ignore[arg-type]
            raise BadInput(f"good {good_step.commit.short}'s {self.figure} ({good_step.figure:g}) is already past "
                           f"{self.threshold:,.0f}: nothing to find")
        if not self._crossed(bad_step.figure, above):  # type: ignore[arg-type]
            raise BadInput(f"bad {bad_step.commit.short}'s {self.figure} ({bad_step.figure:g}) has not crossed "
                           f"{self.threshold:,.0f} (good's is {good_step.figure:g}): nothing to find")
        low, high = -1, len(commits) - 1  # commits[low] (or good) is on good's side; commits[high] has crossed
        skipped: set[int] = set()
        step_number = 0
        while True:
            untested = [i for i in range(low + 1, high) if i not in skipped]
            if not untested:
                break
            left = high - low - 1
            middle = (low + high) // 2
            index = min(untested, key=lambda i: (abs(i - middle), i))
            step = self.measure(commits[index])
            step_number += 1
            if step.figure is None:
                skipped.add(index)
                self.say(f"step {step_number} ({left} left): {step.commit.short} skipped: it {step.skipped}")
                continue
            crossed = self._crossed(step.figure, above)
            self.say(f"step {step_number} ({left} left): {step.commit.short} {self.figure} = {_show(step)}: "
                     + ("crossed" if crossed else "not crossed"))
            if crossed:
                high = index
            else:
                low = index
        first = commits[high]
        before = self.measured.get(commits[low].sha if low >= 0 else good_step.commit.sha)
        between = [commits[i] for i in range(low + 1, high)]
        if between:
            answer = (f"the first crossing is one of {', '.join(c.short for c in [*between, first])}: "
                      f"the revisions before {first.short} back to {commits[low].short if low >= 0 else good_step.commit.short} "
                      "were skipped")
        else:
            answer = (f"{first.short} is the first revision whose {self.figure} crossed {self.threshold:,.0f}: "
                      f"{_show(self.measured[first.sha])}, from {_show(before)} at its parent {before.commit.short}"
                      if before else f"{first.short}")
        self.say(answer)
        return {"figure": self.figure, "threshold": self.threshold, "repeats": self.repeats, "probe": self.probe,
                "good": good_step.commit.as_dict(), "bad": bad_step.commit.as_dict(), "walked": len(commits),
                "first": first.as_dict() if not between else None,
                "candidates": [c.as_dict() for c in [*between, first]],
                "figure_before": before.figure if before else None, "figure_at": self.measured[first.sha].figure,
                "answer": answer, "steps": [step.as_dict() for step in self.measured.values()]}

    def _crossed(self, value: float, above: bool) -> bool:
        return value >= self.threshold if above else value <= self.threshold


def _show(step: Step | None) -> str:
    if step is None or step.figure is None:
        return "-"
    spread = f" (median of {len(step.values)}: {min(step.values):,.0f}-{max(step.values):,.0f})" if len(step.values) > 1 else ""
    return f"{step.figure:,.0f}{spread}"
