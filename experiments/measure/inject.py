"""Injecting a probe into a Python program that was not edited for it: the environment that makes the
bootstrap (``experiments/measure/bootstrap/sitecustomize.py``) start in each of its Python processes,
and reading the per-process folders it writes.

Rules: the bootstrap folder goes first on PYTHONPATH, before the subject's own entries; each process
writes ``pid-PID/`` under the trace folder; the runner asks for a phase-end dump by raising the count
in ``dump-requests`` (written atomically), never by a signal, so the subject's own handlers (gunicorn
uses SIGUSR1) stay its own. Before a run, :func:`check_interpreter` starts the subject's interpreter once
with the bootstrap in its check mode: a tracer it cannot import or start is refused (BadInput, exit 2)
with one line naming the interpreter and the missing module, instead of a run without a trace.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import server.tracing

from ..dataset.results import write_atomic
from ..errors import BadInput

if TYPE_CHECKING:
    from .scenario import RunConfig

#: The folder put first on the subject's PYTHONPATH.
BOOTSTRAP_DIR = Path(__file__).resolve().parent / "bootstrap"
#: The file whose content is the number of phase-end dumps asked for so far.
DUMP_REQUESTS = "dump-requests"
#: What the bootstrap's check mode writes in the trace folder (also kept in result.json).
CHECK_FILE = "probe-check.json"
#: Seconds the check may take (importing memray and starting its tracker once: ~0.2 s here).
CHECK_TIMEOUT_S = 60.0
#: What argv[0] (or a ``#!`` line) is called when the program is a Python interpreter.
PYTHON_NAME = re.compile(r"^(python|pypy)[0-9.]*$")
#: Interpreter options that take a value (``-X importtime``, ``-W error``).
_OPTIONS_WITH_VALUE = ("-X", "-W", "-Q")


def environment(probe: str, trace_dir: Path, config: RunConfig) -> dict[str, str]:
    """The variables that start ``probe`` (``tracemalloc`` or ``memray``) in every Python process
    started with them."""
    existing = os.environ.get("PYTHONPATH")
    return {
        "PYTHONPATH": os.pathsep.join([str(BOOTSTRAP_DIR), *([existing] if existing else [])]),
        "MEMDIET_TRACE_PROBE": probe,
        "MEMDIET_TRACE_DIR": str(trace_dir.resolve()),
        "MEMDIET_TRACING_PY": str(Path(server.tracing.__file__).resolve()),
        "MEMDIET_TRACE_HZ": f"{config.sample_hz:g}",
        "MEMDIET_DETAIL_INTERVAL": f"{config.detail_interval_s:g}",
        "MEMDIET_TRACE_FRAMES": str(config.trace_frames),
        "MEMDIET_HEAP_GRAPH": "1" if config.heap_graph else "0",
    }


def process_dirs(trace_dir: Path) -> list[Path]:
    """The per-process folders the bootstrap wrote, in the order the processes began (by pid)."""
    folders = [path for path in trace_dir.glob("pid-*") if path.is_dir() and path.name[4:].isdigit()]
    return sorted(folders, key=lambda path: int(path.name[4:]))


def live_process_dirs(trace_dir: Path, pids: Sequence[int]) -> list[Path]:
    """The per-process folders of the processes in ``pids`` (those still running)."""
    alive = set(pids)
    return [folder for folder in process_dirs(trace_dir) if int(folder.name[4:]) in alive]


def request_dumps(trace_dir: Path, count: int) -> None:
    """Ask every traced process for dumps up to number ``count`` (counted from 1)."""
    write_atomic(trace_dir / DUMP_REQUESTS, str(count))


def describe_processes(folders: Sequence[Path]) -> list[dict[str, Any]]:
    """What each traced process's ``process.json`` says (pid, parent pid, argv, began), plus its folder."""
    described = []
    for folder in folders:
        try:
            entry = json.loads((folder / "process.json").read_text())
        except (OSError, ValueError):
            entry = {"pid": int(folder.name[4:])}
        entry["key"] = folder.name
        described.append(entry)
    return described


def interpreter_of(argv: Sequence[str], env: Mapping[str, str]) -> list[str] | None:
    """The interpreter that runs ``argv`` with its own options (``["/usr/bin/python3", "-I"]``): argv[0]
    when it is a Python interpreter (its options up to ``-m``, ``-c`` or the script), else the ``#!``
    line of the script argv[0] (``#!/usr/bin/env python3`` looked up on ``env``'s PATH). None when
    neither names one."""
    if not argv:
        return None
    first = argv[0]
    if PYTHON_NAME.match(Path(first).name):
        interpreter, rest = [first], list(argv[1:])
        while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c", "-"):
            option = rest.pop(0)
            interpreter.append(option)
            if option in _OPTIONS_WITH_VALUE and rest:
                interpreter.append(rest.pop(0))
        return interpreter
    try:
        with open(shutil.which(first, path=env.get("PATH")) or first, "rb") as handle:
            line = handle.readline(256)
    except OSError:
        return None
    if not line.startswith(b"#!"):
        return None
    words = line[2:].decode(errors="replace").split()
    if words and Path(words[0]).name == "env":
        words = [word for word in words[1:] if word != "-S"]
        if words:
            words[0] = shutil.which(words[0], path=env.get("PATH")) or words[0]
    if not words or not PYTHON_NAME.match(Path(words[0]).name):
        return None
    return words


def check_interpreter(probe: str, argv: Sequence[str], env: Mapping[str, str], trace_dir: Path,
                      config: RunConfig, name: str) -> dict[str, Any]:
    """Start the interpreter of ``argv`` once, with ``env`` and the bootstrap in its check mode: it
    imports ``probe``'s tracer and starts it, tracing nothing. Returns what it said (``executable``,
    ``version``); raises :class:`BadInput` with one line naming the interpreter and what is missing
    when the tracer cannot be imported or started there, or when the bootstrap did not run at all (an
    interpreter started with -I, -E or -S ignores PYTHONPATH or imports no site)."""
    interpreter = interpreter_of(argv, env)
    if interpreter is None:
        raise BadInput(f"{name}: the {probe} probe runs in a Python interpreter, and {argv[0]!r} neither is one "
                       "nor starts one with its #! line; use --probe rss (or massif)")
    report = trace_dir / CHECK_FILE
    report.unlink(missing_ok=True)
    check_env = {**env, **environment(probe, trace_dir, config), "MEMDIET_TRACE_CHECK": str(report.resolve())}
    shown = " ".join(interpreter)
    try:
        result = subprocess.run([*interpreter, "-c", "pass"], env=check_env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    except OSError as error:
        raise BadInput(f"{name}: cannot start its interpreter {shown!r} to check the {probe} probe: "
                       f"{error.strerror or error}") from None
    except subprocess.TimeoutExpired:
        raise BadInput(f"{name}: its interpreter {shown} did not finish starting the {probe} probe within "
                       f"{CHECK_TIMEOUT_S:g} s") from None
    try:
        outcome = json.loads(report.read_text())
    except (OSError, ValueError):
        tail = (result.stderr.strip().splitlines() or [""])[-1]
        raise BadInput(f"{name}: the {probe} probe cannot be injected into {shown}: memdiet's bootstrap did not run "
                       "there (an interpreter started with -I or -E ignores PYTHONPATH, -S imports no site)"
                       + (f"; it said {tail!r}" if tail else "")) from None
    if not outcome.get("ok"):
        where = f"{outcome.get('executable') or shown} (Python {outcome.get('version', '?')})"
        if outcome.get("missing"):
            raise BadInput(f"{name}: the {probe} probe cannot run in {where}: module {outcome['missing']!r} is not "
                           f"importable there ({outcome.get('error')}); install it in that interpreter, "
                           "or use --probe rss")
        raise BadInput(f"{name}: the {probe} probe could not start in {where}: {outcome.get('error')}")
    return {"interpreter": shown, "executable": outcome.get("executable"), "version": outcome.get("version")}
