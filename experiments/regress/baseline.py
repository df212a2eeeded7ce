"""The baseline file (``reports/baseline.json``): made from a matrix's runs, written, read back and checked.

Rules: a baseline holds every summary figure of every layout, merged per layout as the report does
(each figure from the probe that measures it best, :func:`experiments.dataset.selection.merged_metrics`),
the tolerance of each metric (:mod:`.tolerances`) with the reason for it, the matrix parameters and the
machine the runs were made on. It is made only from complete runs of one matrix. It holds for runs
made with the same parameters (:data:`COMPARED_PARAMETERS`) on the same interpreter minor (a
baseline holds for the CPython X.Y its ``environment.python`` names): anything else is
:class:`BaselineError`, a :class:`~experiments.errors.BadInput` with a one-line message.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..dataset.metrics import METRICS
from ..dataset.results import RunResult, read_json_file, write_json
from ..dataset.selection import layout_order, merged_metrics
from ..errors import BadInput
from ..paths import REPORTS_DIR
from .tolerances import Tolerance, tolerance_policy

BASELINE_SCHEMA = "memdiet.baseline/1"
DEFAULT_BASELINE = REPORTS_DIR / "baseline.json"

#: Run parameters that must be equal for two matrices' figures to be compared (sizes, times, rates).
COMPARED_PARAMETERS = ("max_conns", "connections", "idle_s", "load_s", "sample_hz", "detail_interval_s",
                       "path", "keep_alive_timeout_s")
#: Environment fields recorded in the baseline: the machine and software its figures came from.
ENVIRONMENT_FIELDS = ("cpu_model", "cpu_count", "memory_total_bytes", "kernel", "machine", "python",
                      "python_implementation", "memray", "psutil", "commit", "dirty")


class BaselineError(BadInput):
    """The baseline (or the runs to compare with it) cannot be used; the message is one line."""


@dataclass(frozen=True)
class BaselineFigure:
    value: float
    probe: str


@dataclass
class Baseline:
    """A baseline file read back: ``figures[layout][metric]``, ``tolerances[metric]``, the matrix
    ``parameters`` (with ``layouts`` and ``probes``) and the ``environment`` it was made in."""

    figures: dict[str, dict[str, BaselineFigure]]
    tolerances: dict[str, Tolerance]
    parameters: dict[str, Any]
    environment: dict[str, Any]
    created_utc: str
    runs: list[str]
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": BASELINE_SCHEMA,
            "created_utc": self.created_utc,
            "note": "Written by `memdiet baseline`; compared by `memdiet regress`. A figure fails when it moves "
                    "in its worse direction by more than max(relative x baseline, absolute).",
            "parameters": self.parameters,
            "environment": self.environment,
            "runs": self.runs,
            "tolerances": {name: tolerance.to_json() for name, tolerance in self.tolerances.items()},
            "layouts": {layout: {name: {"value": figure.value, "probe": figure.probe} for name, figure in figures.items()}
                        for layout, figures in self.figures.items()},
        }


def matrix_parameters(runs: Sequence[RunResult]) -> dict[str, Any]:
    """The parameters shared by ``runs`` (those of :data:`COMPARED_PARAMETERS`), with the layouts
    and probes they cover; :class:`BaselineError` if the runs disagree on one."""
    parameters: dict[str, Any] = {}
    for name in COMPARED_PARAMETERS:
        values = {json.dumps(run.parameters.get(name)) for run in runs}
        if len(values) > 1:
            raise BaselineError(f"the runs were made with different {name} ({', '.join(sorted(values))}): "
                                "give the run folders of one matrix")
        parameters[name] = runs[0].parameters.get(name) if runs else None
    parameters["layouts"] = layout_order({run.layout for run in runs})
    parameters["probes"] = sorted({run.probe for run in runs})
    return parameters


def common_environment(runs: Sequence[RunResult]) -> dict[str, Any]:
    """The environment fields of :data:`ENVIRONMENT_FIELDS` the runs recorded: one value each, or
    ``"mixed"`` where runs differ."""
    environment: dict[str, Any] = {}
    for name in ENVIRONMENT_FIELDS:
        values = {json.dumps(run.document.get("environment", {}).get(name)): run.document.get("environment", {}).get(name)
                  for run in runs}
        environment[name] = next(iter(values.values())) if len(values) == 1 else "mixed"
    return environment


def make_baseline(runs: Sequence[RunResult]) -> Baseline:
    """A baseline from the complete ``runs`` of one matrix; :class:`BaselineError` if a run is not
    complete (a baseline must not lack a layout by accident) or the runs mix parameters."""
    if not runs:
        raise BaselineError("no runs to make a baseline from")
    unfinished = [run.path.name for run in runs if run.status != "complete"]
    if unfinished:
        raise BaselineError(f"refusing to make a baseline from runs that did not complete: {', '.join(unfinished)}")
    parameters = matrix_parameters(runs)
    merged = merged_metrics(runs)
    figures = {layout: {name: BaselineFigure(figure.value, figure.probe) for name, figure in _in_metric_order(by_name)}
               for layout, by_name in merged.items()}
    names = {name for by_name in figures.values() for name in by_name}
    tolerances = tolerance_policy(metric_order(names), int(parameters.get("connections") or 0))
    return Baseline(figures, tolerances, parameters, common_environment(runs),
                    datetime.now(timezone.utc).isoformat(timespec="seconds"), sorted(run.path.name for run in runs))


def metric_order(names: Iterable[str]) -> list[str]:
    """``names`` in the metric catalog's order, then any it does not know, sorted."""
    names = set(names)
    return [n for n in METRICS if n in names] + sorted(names - set(METRICS))


def _in_metric_order(by_name: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(name, by_name[name]) for name in metric_order(by_name)]


def load_baseline(path: Path) -> Baseline:
    """Read and check the baseline file at ``path``; :class:`BaselineError` (one line) if it is
    missing or malformed."""
    data = read_json_file(path, BaselineError,
                          missing=f"{path}: no such baseline file (make one with `memdiet baseline --quick`)")
    if not isinstance(data, dict):
        raise BaselineError(f"{path}: not a baseline (a JSON object is expected)")
    if data.get("schema") != BASELINE_SCHEMA:
        raise BaselineError(f"{path}: schema {data.get('schema')!r} is not {BASELINE_SCHEMA!r}")
    for key, kind in (("layouts", dict), ("tolerances", dict), ("parameters", dict)):
        if not isinstance(data.get(key), kind):
            raise BaselineError(f"{path}: field {key!r} is missing or not an object")
    tolerances = {name: _read_tolerance(value, f"{path}: tolerances.{name}") for name, value in data["tolerances"].items()}
    figures: dict[str, dict[str, BaselineFigure]] = {}
    for layout, by_name in data["layouts"].items():
        if not isinstance(by_name, dict):
            raise BaselineError(f"{path}: layouts.{layout} should be an object of metrics")
        figures[layout] = {}
        for name, entry in by_name.items():
            where = f"{path}: layouts.{layout}.{name}"
            value = entry.get("value") if isinstance(entry, dict) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BaselineError(f"{where} should be an object with a numeric value, found {entry!r}")
            if name not in tolerances:
                raise BaselineError(f"{where} has no tolerance under 'tolerances'")
            figures[layout][name] = BaselineFigure(float(value), str(entry.get("probe", "?")))
    if not any(figures.values()):
        raise BaselineError(f"{path}: the baseline holds no figures")
    environment = data.get("environment") if isinstance(data.get("environment"), dict) else {}
    runs = data.get("runs") if isinstance(data.get("runs"), list) else []
    return Baseline(figures, tolerances, data["parameters"], environment, str(data.get("created_utc", "?")), runs, Path(path))


def _read_tolerance(data: Any, where: str) -> Tolerance:
    """A tolerance of the baseline file (``{"relative": ..., "absolute": ..., "why": ...}``), checked."""
    if not isinstance(data, dict):
        raise BaselineError(f"{where} should be an object with relative, absolute and why")
    values = []
    for key in ("relative", "absolute"):
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise BaselineError(f"{where}.{key} should be a number >= 0, found {value!r}")
        values.append(float(value))
    return Tolerance(values[0], values[1], str(data.get("why", "")))


def interpreter_minor(environment: dict[str, Any]) -> str | None:
    """``"CPython 3.11"`` from an environment record (``python`` 3.11.7, ``python_implementation``
    CPython); None when it records no version."""
    version = environment.get("python")
    if not isinstance(version, str) or version.count(".") < 1:
        return None
    major, minor = version.split(".")[:2]
    return f"{environment.get('python_implementation') or 'CPython'} {major}.{minor}"


def current_interpreter() -> dict[str, str]:
    """The environment fields of :func:`interpreter_minor` for the Python running this code."""
    return {"python": platform.python_version(), "python_implementation": platform.python_implementation()}


def check_same_interpreter(baseline: Baseline, environments: Iterable[dict[str, Any]], what: str) -> None:
    """:class:`BaselineError` when ``environments`` (of the runs, or of this process) name another
    interpreter minor than the baseline's: object and dict sizes change between CPython minors, so
    the deterministic heap figures (compared at 1%) and C sizes would fail or pass for no reason of
    the code's. A patch release (3.11.7 -> 3.11.9) compares."""
    made = interpreter_minor(baseline.environment)
    now = sorted({minor for environment in environments if (minor := interpreter_minor(environment))})
    if made is None or not now or now == [made]:
        return
    raise BaselineError(f"the baseline was made on {made} but {what} on {', '.join(now)}: heap figures differ between "
                        f"interpreter versions, so they are not compared; make a baseline on this interpreter "
                        f"(`memdiet baseline --quick -o FILE`, or `make baseline` to replace the committed one)")


def check_comparable(baseline: Baseline, runs: Sequence[RunResult]) -> None:
    """:class:`BaselineError` unless ``runs`` were made with the baseline's matrix parameters, on
    the baseline's interpreter minor."""
    if not runs:
        raise BaselineError("no runs to compare with the baseline")
    check_same_interpreter(baseline, (run.document.get("environment") or {} for run in runs), "the runs")
    now = matrix_parameters(runs)
    for name in COMPARED_PARAMETERS:
        if name in baseline.parameters and now.get(name) != baseline.parameters[name]:
            raise BaselineError(f"the runs were made with {name} = {now.get(name)!r} but the baseline with "
                                f"{baseline.parameters[name]!r}: not comparable (run `memdiet regress` without "
                                "run folders to repeat the baseline's matrix, or make a new baseline)")


def write_baseline(baseline: Baseline, path: Path) -> None:
    """Write ``baseline`` to ``path`` (atomically)."""
    write_json(path, baseline.to_json())
