"""``memdiet revisions``' work: each revision built (cached), its structs read, run under each probe,
and ``revisions.json`` written.

revisions.json (schema :data:`SCHEMA`): ``source`` (the repository or bundle), ``build`` (the
command), ``command`` (the subject's), ``binary``, ``templates``, ``structs`` (the names asked
for), ``probes``, ``parameters`` (the scenario's, as result.json's), ``fd_limit`` (RLIMIT_NOFILE as
the subject inherits it: a program that preallocates a slot per descriptor, as Lwan does, has that
many), and ``revisions``: per revision its ``commit``, ``short``, ``date``, ``subject``, ``build``
(built or unbuildable, cached, seconds, log, error), ``structs`` (``{name: layout or null}``: null
is a struct the revision does not have) and ``runs`` (``{probe: {run, status, summary, error}}``,
``summary`` being the run's result.json summary).

Rules: a revision that does not build is recorded and skipped (no run), as is a run that fails;
neither stops the others. The document is rewritten after each revision, so an interrupted study
keeps what it measured. Figures come from the runs; nothing here computes a memory figure.
"""

from __future__ import annotations

import resource
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..dataset.results import write_json
from ..paths import repository_relative
from ..measure.scenario import RunConfig
from .builds import Build, BuildCache
from .runs import Template, run_revision
from .source import Commit, Source

SCHEMA = "memdiet-revisions/1"
REVISIONS_FILE = "revisions.json"

Say = Callable[[str], None]


class Plan:
    """What is built and run for each revision: the build cache, the subject's ``command`` (with
    ``{port}``, ``{src}``, ``{out}``, ``{workdir}``), the ``binary`` whose DWARF is read, the config
    ``templates``, the ``structs`` asked for, and the scenario ``config`` (its probe is set per run)."""

    __slots__ = ("source", "cache", "command", "binary", "templates", "structs", "config", "name")

    def __init__(self, source: Source, cache: BuildCache, command: str, binary: str | None, templates: list[Template],
                 structs: list[str], config: RunConfig, name: str) -> None:
        self.source, self.cache, self.command, self.binary = source, cache, command, binary
        self.templates, self.structs, self.config, self.name = templates, structs, config, name

    def build(self, commit: Commit, say: Say) -> Build:
        say(f"{commit.short} {commit.subject[:60]}: building")
        build = self.cache.build(commit)
        state = "built" if build.ok else f"does not build ({build.error}); skipped"
        say(f"{commit.short}: {state}{' (cached)' if build.cached else f' in {build.seconds:.0f} s'}; log {build.log}")
        return build

    def structs_of(self, build: Build) -> dict[str, dict[str, Any] | None]:
        if not self.structs or not build.ok or self.binary is None:
            return {}
        return build.structs(self.binary, self.structs)

    def run(self, build: Build, probe: str, say: Say, config: RunConfig | None = None) -> dict[str, Any]:
        run_config = replace(config or self.config, probe=probe)
        say(f"{build.commit.short}: running under {probe}")
        outcome = run_revision(build, self.command, self.templates, run_config, f"{self.name}-{build.commit.short}",
                               lambda phase: None)
        if outcome["status"] != "complete":
            say(f"{build.commit.short}: the {probe} run did not complete: {outcome['error']}")
        return outcome


def fd_limit() -> dict[str, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"soft": soft, "hard": hard}


def measure_revisions(plan: Plan, commits: list[Commit], probes: list[str], out_dir: Path, say: Say,
                      config_for: Callable[[str], RunConfig] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Build, read and run every commit; write ``out_dir/revisions.json`` after each (with ``extra``'s
    keys, such as a preset's ``mirrors``); return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "schema": SCHEMA, "source": str(plan.source.origin), "build": plan.cache.command, "command": plan.command,
        "binary": plan.binary, "templates": [repr(t) for t in plan.templates], "structs": plan.structs,
        "probes": probes, "parameters": {p: (config_for(p) if config_for else plan.config).parameters() for p in probes},
        "fd_limit": fd_limit(), "name": plan.name,
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "revisions": [], **(extra or {}),
    }
    path = out_dir / REVISIONS_FILE
    for commit in commits:
        build = plan.build(commit, say)
        entry: dict[str, Any] = {**commit.as_dict(), "is_head": commit.sha == plan.source.commit("HEAD").sha, "build": build.as_dict(), "structs": {}, "runs": {}}
        document["revisions"].append(entry)
        if build.ok:
            entry["structs"] = plan.structs_of(build)
            for name, layout in entry["structs"].items():
                say(f"{commit.short}: {name}: " + ("absent" if layout is None else f"{layout['size']} B ({layout['name']})"))
            for probe in probes:
                entry["runs"][probe] = plan.run(build, probe, say, config_for(probe) if config_for else None)
        write_json(path, repository_relative(document))
    document["finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json(path, repository_relative(document))
    return path
