"""``memdiet revisions --repo REPO --build CMD --cmd COMMAND [--binary B --struct NAME ...] REV...``:
a program's revisions, each built (cached), its structs read from DWARF, run through the scenario.

``REV`` is a commit (hash, tag, HEAD) or a range ``A..B[:STEP]``. ``--preset lwan`` fills in every
option not given for Lwan's own history (:mod:`experiments.revisions.lwan`; ``make lwan``). Writes
``OUT/revisions.json`` and the report (``OUT/index.md`` and its charts); prints each step on stderr.
Exit 2 on bad arguments (an unknown revision, a missing repository); a revision that does not build,
or whose run fails, is reported and skipped. :func:`add_subject_options` and :func:`plan_from` serve
``memdiet bisect`` too.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from ..errors import EXIT_OK, BadInput
from ..measure.probes import PROBES
from ..measure.scenario import RUN, RunConfig
from ..render.revisions_md import render_revisions
from ..revisions import lwan
from ..revisions.builds import BuildCache
from ..revisions.runs import Template
from ..revisions.source import Source
from ..revisions.study import Plan, measure_revisions
from .args import add_run_options, choices_list, config_from, install_interrupt_handlers, stderr_console

#: The build cache's default folder (git-ignored, as build/ is).
DEFAULT_CACHE = Path("build") / "revisions"
PRESETS = {"lwan": lwan.preset}


def add_subject_options(parser: argparse.ArgumentParser) -> None:
    """The options naming the program, how to build it and how to run it."""
    parser.add_argument("--preset", choices=list(PRESETS), help="fill in every option not given for a known program "
                        "(lwan: Lwan's history from ../shared/lwan.bundle or $MEMDIET_LWAN_BUNDLE)")
    parser.add_argument("--repo", type=Path, help="the git repository or bundle the revisions come from (never written)")
    parser.add_argument("--build", help="shell command that builds a revision, run in its worktree with $OUT (where "
                                        "its products go), $SRC and $MEMDIET_CWD; exit non-zero: unbuildable")
    parser.add_argument("--cmd", help="the subject's command line; {port} (a free loopback port), {src}, {out} and "
                                      "{workdir} are substituted; it runs in a working folder of its own")
    parser.add_argument("--binary", help="the built program whose DWARF --struct reads ({out}/NAME)")
    parser.add_argument("--struct", action="append", default=None, metavar="NAME",
                        help="a struct whose size, members and holes are read (repeatable; NAME|OTHER: the first "
                             "name found; a struct a revision lacks is reported absent)")
    parser.add_argument("--config-template", action="append", default=None, metavar="TEMPLATE[=NAME]",
                        help="a file rendered into each run's working folder ({port}, {src}, {out} substituted; "
                             "TEMPLATE may name {src} or {out}); repeatable")
    parser.add_argument("--name", help="what the runs are filed under (default: the repository's name)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"the build cache (default: {DEFAULT_CACHE})")
    add_run_options(parser, RUN)


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:
    parser = commands.add_parser(name, help="build and measure a program at several revisions (struct sizes, RSS)")
    parser.add_argument("revisions", nargs="*", metavar="REV",
                        help="commits or ranges A..B[:STEP] (with --preset: the preset's commits when none given)")
    add_subject_options(parser)
    parser.add_argument("--probes", type=choices_list(list(PROBES), "probe"), default=["rss"],
                        help="probes each revision runs under, comma-separated (default: rss; massif for a native "
                             "program's heap curve)")
    parser.add_argument("--massif-idle", type=float, default=None, metavar="SECONDS",
                        help="seconds of each idle phase under massif, before its 10x stretch (default: --idle); "
                             "keep it under the program's keep-alive timeout over 10")
    parser.add_argument("-o", "--out", type=Path, default=Path("reports") / "revisions",
                        help="where revisions.json and the report go (default: reports/revisions)")
    parser.add_argument("--report-only", action="store_true",
                        help="only write the report again from OUT/revisions.json (nothing built or run)")


def plan_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Plan, RunConfig]:
    """The plan the options describe (a preset's values where options are missing), and its scenario."""
    if args.preset:
        for key, value in PRESETS[args.preset]().items():
            if getattr(args, key, None) in (None, []):
                setattr(args, key, value)
    for option in ("repo", "build", "cmd"):
        if getattr(args, option) is None:
            parser.error(f"--{option} is required (or --preset)")
    if args.struct and not args.binary:
        parser.error("--struct reads the built binary's DWARF: give --binary too")
    try:
        config = config_from(args, replace(RUN, subject="", probe="rss"))
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    templates = [Template(spec) for spec in args.config_template or []]
    source = Source(args.repo, args.cache).open()
    name = args.name or source.origin.name.split(".")[0]
    plan = Plan(source, BuildCache(source, args.build), args.cmd, args.binary, templates, args.struct or [], config, name)
    return plan, config


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    console = stderr_console()
    if args.report_only:
        written = render_revisions(args.out)
        console.print(f"wrote {', '.join(str(p) for p in written)}")
        return EXIT_OK
    plan, config = plan_from(args, parser)
    if not args.revisions:
        parser.error("name the revisions to measure (commits or ranges A..B[:STEP])")
    commits = plan.source.resolve(args.revisions)
    massif_config = replace(config, idle_s=args.massif_idle) if args.massif_idle else config

    def config_for(probe: str) -> RunConfig:
        return massif_config if probe == "massif" else config

    install_interrupt_handlers()
    console.print(f"{len(commits)} revisions of {plan.source.origin}; builds cached in {plan.cache.root}")
    extra = {}
    if getattr(args, "mirrors", None):  # a preset's: which of memdiet's layouts mirrors which commit
        extra["mirrors"] = {plan.source.commit(rev).short: layout for rev, layout in args.mirrors.items()}
    if getattr(args, "notes", None):
        extra["notes"] = list(args.notes)
    path = measure_revisions(plan, commits, args.probes, args.out, lambda line: console.print(line), config_for, extra)
    try:
        written = render_revisions(args.out)
    except BadInput as error:
        raise BadInput(f"{path} was written, but its report was not: {error}") from None
    console.print(f"wrote {path} and {', '.join(str(p) for p in written)}")
    return EXIT_OK
