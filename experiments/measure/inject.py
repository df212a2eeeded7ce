"""Injecting a probe into a Python program that was not edited for it: the environment that makes the
bootstrap (``experiments/measure/bootstrap/sitecustomize.py``) start in each of its Python processes,
and reading the per-process folders it writes.

Rules: the bootstrap folder goes first on PYTHONPATH, before the subject's own entries; each process
writes ``pid-PID/`` under the trace folder; the runner asks for a phase-end dump by raising the count
in ``dump-requests`` (written atomically), never by a signal, so the subject's own handlers (gunicorn
uses SIGUSR1) stay its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import server.tracing

from ..dataset.results import write_atomic

if TYPE_CHECKING:
    from .scenario import RunConfig

#: The folder put first on the subject's PYTHONPATH.
BOOTSTRAP_DIR = Path(__file__).resolve().parent / "bootstrap"
#: The file whose content is the number of phase-end dumps asked for so far.
DUMP_REQUESTS = "dump-requests"


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
