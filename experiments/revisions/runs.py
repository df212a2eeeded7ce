"""One built revision run through the scenario by memdiet's own runner, as a ``--cmd`` subject.

Rules: the run is :func:`experiments.measure.runner.run_once` on a :class:`RunConfig` whose ``cmd``
is the subject's command line; nothing here launches or measures a process itself. Each run gets a
working folder of its own (``<build>/work/<n>/``), into which every config template is rendered
before the subject starts, and the subject runs there (``env -C FOLDER``: a program that reads
``lwan.conf`` from where it runs finds its own). In the command and the templates ``{port}``
becomes a loopback port chosen for this run, ``{src}`` the revision's worktree, ``{out}`` its build
output and ``{workdir}`` the run's folder; every other brace is left alone (config files are full
of them). The port is chosen here because a template needs it before the runner starts the subject;
the runner then finds it among the subject's listening sockets.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..dataset.results import load_run
from ..errors import BadInput, ExperimentError
from ..measure.runner import run_once
from ..measure.scenario import RunConfig
from ..measure.subjects import free_loopback_port
from .builds import Build


class Template:
    """A config template: ``source`` (a path, which may name ``{src}`` or ``{out}``) rendered to
    ``target`` (a path relative to the run's working folder)."""

    __slots__ = ("source", "target")

    def __init__(self, spec: str) -> None:
        source, _equals, target = spec.partition("=")
        if not source or (_equals and not target):
            raise BadInput(f"--config-template {spec!r}: give TEMPLATE or TEMPLATE=NAME")
        target = target or Path(source).name
        if Path(target).is_absolute() or ".." in Path(target).parts:
            raise BadInput(f"--config-template {spec!r}: NAME must stay inside the run's working folder")
        self.source, self.target = source, target

    def __repr__(self) -> str:
        return f"{self.source}={self.target}"


def substitute(text: str, values: dict[str, str]) -> str:
    """Each ``{name}`` of ``values`` replaced in ``text``; other braces kept as they are."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def working_folder(build: Build) -> Path:
    """A new folder for one run of ``build``."""
    root = build.folder / "work"
    root.mkdir(parents=True, exist_ok=True)
    number = 1 + max((int(p.name) for p in root.iterdir() if p.name.isdigit()), default=0)
    folder = root / str(number)
    folder.mkdir()
    return folder


def run_revision(build: Build, command: str, templates: list[Template], config: RunConfig, name: str,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``build`` under ``config.probe``; returns ``{"run": folder, "status", "summary", "error"}``.
    A run that fails (the subject crashed, did not listen) is returned with its error, not raised:
    the next revision is measured all the same."""
    workdir = working_folder(build)
    values = {"port": str(free_loopback_port()), "src": str(build.src), "out": str(build.out), "workdir": str(workdir)}
    for template in templates:
        path = Path(substitute(template.source, values))
        try:
            text = path.read_text()
        except OSError as error:
            raise BadInput(f"{build.commit.short}: config template {path}: {error.strerror or error}") from None
        target = workdir / template.target
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(substitute(text, values))
    command_line = f"env -C {shlex.quote(str(workdir))} {substitute(command, values)}"
    run_config = replace(config, subject=name, cmd=command_line)
    try:
        run_dir = run_once(run_config, progress)
    except BadInput:
        raise
    except ExperimentError as error:
        folder = getattr(error, "run_dir", None)
        return {"run": str(folder) if folder else None, "status": "failed", "summary": {}, "error": str(error),
                "workdir": str(workdir)}
    result = load_run(run_dir)
    return {"run": str(run_dir), "status": result.status, "summary": result.summary, "error": result.document.get("error"),
            "workdir": str(workdir)}
