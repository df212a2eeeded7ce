"""The baseline file (``reports/baseline.json``): made from a matrix's runs, written, read back and checked.

Rules: a baseline holds every summary figure of every layout, merged per layout as the report does
(each figure from the probe that measures it best, :func:`experiments.dataset.selection.merged_metrics`),
the tolerance of each metric (:mod:`.tolerances`) with the reason for it, the matrix parameters and the
machine the runs were made on. It is made only from complete runs: of one matrix (:func:`make_baseline`,
the fixed policy), or of K >= 3 matrices of one plan (:func:`make_learned_baseline`: each figure the
median of its K values, which it keeps, and tolerances learned from their spread, :mod:`.noise`). It
holds for runs made with the same parameters (:data:`COMPARED_PARAMETERS`) on the same interpreter
minor (a baseline holds for the CPython X.Y its ``environment.python`` names): anything else is
:class:`BaselineError`, a :class:`~experiments.errors.BadInput` with a one-line message. Learned
tolerances hold on the machine they were learned on (:data:`MACHINE_FIELDS`); elsewhere the fixed
policy each keeps applies (:func:`machine_differences`). Files of schema ``memdiet.baseline/1`` (one
matrix, no noise) are still read.
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
from .noise import RULE, MetricNoise, Noise, learn_tolerances, spreads
from .tolerances import FIXED, MIN_REPEAT, Tolerance, tolerance_policy

BASELINE_SCHEMA = "memdiet.baseline/2"
#: Schemas :func:`load_baseline` reads: the first had no noise section and no rule per tolerance.
READABLE_SCHEMAS = ("memdiet.baseline/1", BASELINE_SCHEMA)
DEFAULT_BASELINE = REPORTS_DIR / "baseline.json"

#: Run parameters that must be equal for two matrices' figures to be compared (sizes, times, rates).
COMPARED_PARAMETERS = ("max_conns", "connections", "idle_s", "load_s", "sample_hz", "detail_interval_s",
                       "path", "keep_alive_timeout_s")
#: Environment fields recorded in the baseline: the machine and software its figures came from.
ENVIRONMENT_FIELDS = ("cpu_model", "cpu_count", "memory_total_bytes", "kernel", "machine", "python",
                      "python_implementation", "memray", "psutil", "commit", "dirty")
#: The environment fields that name the machine a figure that depends on it was measured on: learned
#: tolerances hold only where these are equal (the Python version too: its build shapes RSS).
MACHINE_FIELDS = ("cpu_model", "cpu_count", "memory_total_bytes", "kernel", "python")


class BaselineError(BadInput):
    """The baseline (or the runs to compare with it) cannot be used; the message is one line."""


@dataclass(frozen=True)
class BaselineFigure:
    """A figure of the baseline: ``value`` (the median of ``values`` in a learned baseline, whose K
    values it keeps) and the ``probe`` it was taken from."""

    value: float
    probe: str
    values: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"value": self.value, "probe": self.probe}
        if self.values:
            data["values"] = list(self.values)
        return data


@dataclass
class Baseline:
    """A baseline file read back: ``figures[layout][metric]``, ``tolerances[metric]``, the matrix
    ``parameters`` (with ``layouts`` and ``probes``) and the ``environment`` it was made in;
    ``noise`` for a baseline of repeated matrices (K, the rule, the spread of every metric)."""

    figures: dict[str, dict[str, BaselineFigure]]
    tolerances: dict[str, Tolerance]
    parameters: dict[str, Any]
    environment: dict[str, Any]
    created_utc: str
    runs: list[str]
    path: Path | None = None
    noise: Noise | None = None

    @property
    def repeat(self) -> int:
        """How many matrices the baseline was made from (1 without learned noise)."""
        return self.noise.repeat if self.noise else 1

    def to_json(self) -> dict[str, Any]:
        document = {
            "schema": BASELINE_SCHEMA,
            "created_utc": self.created_utc,
            "note": "Written by `memdiet baseline`; compared by `memdiet regress`. A figure fails when it moves "
                    "in its worse direction by more than max(relative x baseline, absolute).",
            "parameters": self.parameters,
            "environment": self.environment,
            "runs": self.runs,
            "tolerances": {name: tolerance.to_json() for name, tolerance in self.tolerances.items()},
            "layouts": {layout: {name: figure.to_json() for name, figure in figures.items()}
                        for layout, figures in self.figures.items()},
        }
        if self.noise is not None:
            document["noise"] = self.noise.to_json()
        return document


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
    """A baseline from the complete ``runs`` of one matrix, with the fixed tolerance policy;
    :class:`BaselineError` if a run is not complete (a baseline must not lack a layout by accident)
    or the runs mix parameters."""
    _check_complete(runs)
    parameters = matrix_parameters(runs)
    merged = merged_metrics(runs)
    figures = {layout: {name: BaselineFigure(figure.value, figure.probe) for name, figure in _in_metric_order(by_name)}
               for layout, by_name in merged.items()}
    names = {name for by_name in figures.values() for name in by_name}
    tolerances = tolerance_policy(metric_order(names), int(parameters.get("connections") or 0))
    return Baseline(figures, tolerances, parameters, common_environment(runs),
                    datetime.now(timezone.utc).isoformat(timespec="seconds"), sorted(run.path.name for run in runs))


def make_learned_baseline(matrices: Sequence[Sequence[RunResult]]) -> Baseline:
    """A baseline from K >= 3 matrices of one plan (complete runs, the same layouts, probes and
    parameters): each figure the median of its K values, tolerances learned from their spread
    (:mod:`.noise`). :class:`BaselineError` for fewer matrices or matrices that differ;
    :class:`~.noise.NotReproducible` when a deterministic figure did not reproduce."""
    if len(matrices) < MIN_REPEAT:
        raise BaselineError(f"learning tolerances from noise needs at least {MIN_REPEAT} matrices, got {len(matrices)}")
    everything = [run for runs in matrices for run in runs]
    _check_complete(everything)
    parameters = matrix_parameters(everything)
    plans = [sorted({(run.layout, run.probe) for run in runs}) for runs in matrices]
    for index, plan in enumerate(plans[1:], start=2):
        if plan != plans[0]:
            lacking = sorted(set(plans[0]) ^ set(plan))
            raise BaselineError(f"matrix {index} of {len(matrices)} does not run what matrix 1 runs (differ in "
                                f"{', '.join('/'.join(pair) for pair in lacking)}): give K matrices of one plan")
    merged = [merged_metrics(runs) for runs in matrices]
    by_layout = spreads(merged)
    figures: dict[str, dict[str, BaselineFigure]] = {}
    for layout, by_name in by_layout.items():
        figures[layout] = {}
        for name, spread in _in_metric_order(by_name):
            probes = {m[layout][name].probe for m in merged if name in m.get(layout, {})}
            if len(probes) > 1:
                raise BaselineError(f"{layout} {name} came from different probes in the matrices "
                                    f"({', '.join(sorted(probes))})")
            figures[layout][name] = BaselineFigure(spread.median, probes.pop(), spread.values)
    names = metric_order({name for by_name in figures.values() for name in by_name})
    tolerances, noise = learn_tolerances(by_layout, names, int(parameters.get("connections") or 0))
    matrix_runs = [sorted(run.path.name for run in runs) for runs in matrices]
    return Baseline(figures, tolerances, parameters, common_environment(everything),
                    datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    sorted(name for names_ in matrix_runs for name in names_),
                    noise=Noise(len(matrices), RULE, noise, matrix_runs))


def _check_complete(runs: Sequence[RunResult]) -> None:
    if not runs:
        raise BaselineError("no runs to make a baseline from")
    unfinished = [run.path.name for run in runs if run.status != "complete"]
    if unfinished:
        raise BaselineError(f"refusing to make a baseline from runs that did not complete: {', '.join(unfinished)}")


def machine_differences(baseline: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The :data:`MACHINE_FIELDS` in which two environment records differ (empty: the same machine)."""
    return [name for name in MACHINE_FIELDS if baseline.get(name) != now.get(name)]


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
    if data.get("schema") not in READABLE_SCHEMAS:
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
            values = entry.get("values", [])
            if not isinstance(values, list) or not all(_is_number(v) for v in values):
                raise BaselineError(f"{where}.values should be a list of numbers, found {values!r}")
            figures[layout][name] = BaselineFigure(float(value), str(entry.get("probe", "?")), tuple(map(float, values)))
    if not any(figures.values()):
        raise BaselineError(f"{path}: the baseline holds no figures")
    environment = data.get("environment") if isinstance(data.get("environment"), dict) else {}
    runs = data.get("runs") if isinstance(data.get("runs"), list) else []
    noise = _read_noise(data["noise"], tolerances, f"{path}: noise") if "noise" in data else None
    return Baseline(figures, tolerances, data["parameters"], environment, str(data.get("created_utc", "?")), runs,
                    Path(path), noise)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _read_tolerance(data: Any, where: str) -> Tolerance:
    """A tolerance of the baseline file (``{"relative": ..., "absolute": ..., "why": ..., "rule": ...}``,
    with ``noise`` and ``other_machine`` in a learned baseline), checked."""
    if not isinstance(data, dict):
        raise BaselineError(f"{where} should be an object with relative, absolute and why")
    values = []
    for key in ("relative", "absolute"):
        value = data.get(key)
        if not _is_number(value) or value < 0:
            raise BaselineError(f"{where}.{key} should be a number >= 0, found {value!r}")
        values.append(float(value))
    noise = _read_tolerance(data["noise"], f"{where}.noise") if data.get("noise") is not None else None
    other = _read_tolerance(data["other_machine"], f"{where}.other_machine") if data.get("other_machine") is not None else None
    return Tolerance(values[0], values[1], str(data.get("why", "")), str(data.get("rule", FIXED)), noise, other)


def _read_noise(data: Any, tolerances: dict[str, Tolerance], where: str) -> Noise:
    """The noise section of a learned baseline, checked: K, the rule, each metric's spread."""
    if not isinstance(data, dict):
        raise BaselineError(f"{where} should be an object")
    repeat = data.get("repeat")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < MIN_REPEAT:
        raise BaselineError(f"{where}.repeat should be a whole number >= {MIN_REPEAT}, found {repeat!r}")
    spread = data.get("spread")
    if not isinstance(spread, dict):
        raise BaselineError(f"{where}.spread should be an object of metrics")
    metrics = {}
    for name, entry in spread.items():
        worst = entry.get("worst_range") if isinstance(entry, dict) else None
        if not _is_number(worst):
            raise BaselineError(f"{where}.spread.{name} should be an object with a numeric worst_range, found {entry!r}")
        band = tolerances.get(name)
        metrics[name] = MetricNoise(str(entry.get("scale", "?")), float(worst), entry.get("worst_layout"),
                                    band.noise if band is not None and band.noise is not None else Tolerance(0.0, 0.0, ""))
    matrices = data.get("matrices") if isinstance(data.get("matrices"), list) else []
    return Noise(repeat, str(data.get("rule", "")), metrics, matrices)


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
