"""The ``allocators`` probe: RSS from outside as ``rss`` gives it, and, with no tracer, the allocators'
own figures read inside each Python process at the end of each phase: the RSS ledger of an untraced run.

Rules: for a Python program only (memdiet's bootstrap, :mod:`..inject`, in every Python process of its
tree); nothing is traced: at each phase end the bootstrap's thread runs a full collection and writes
pymalloc's and glibc malloc's figures (``snapshots/NNN.alloc.json``, as a tracemalloc dump's sidecar),
from which the runner's ledger splits the untraced RSS into memory in use and the allocators' free
space. What it costs the subject is one sleeping thread and ctypes, loaded before the first phase: the
same at both ends of every figure per held connection. Say so beside its figures; take clean req/s
from ``rss``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ...errors import BadInput
from .. import inject
from .base import Probe, ProbeFailed
from .tracemalloc import DUMP_TIMEOUT_S, READY_FILE

if TYPE_CHECKING:
    from ..scenario import RunConfig


class AllocatorsProbe(Probe):
    name = "allocators"
    note = ("Nothing traced: RSS from outside as under rss, and at the end of each phase each Python process's "
            "allocators' figures (pymalloc's blocks and pools from sys._debugmallocstats, glibc's mallinfo2), "
            "read after a full collection by a thread memdiet's bootstrap starts in it; with its pages from "
            "/proc, the RSS ledger of an untraced run: memory in use and the allocators' free space, apart.")
    subjects = "python"

    def wrap(self, argv: list[str], env: dict[str, str], trace_dir: Path, config: RunConfig,
             in_server: bool) -> tuple[list[str], dict[str, str]]:
        if in_server:
            raise BadInput("the allocators probe measures a --cmd Python program; memdiet's own server has "
                              "tracemalloc's ledger")
        return argv, {**env, **inject.environment("allocators", trace_dir, config)}

    def ready(self, trace_dir: Path, pids: Sequence[int]) -> bool:
        folders = inject.live_process_dirs(trace_dir, pids)
        return bool(folders) and all((folder / READY_FILE).exists() for folder in folders)

    def phase_end(self, index: int, phase: str, pids: Sequence[int], trace_dir: Path,
                  check: Callable[[], None]) -> bool:
        """Ask for figures ``index`` in ``dump-requests``; wait until every live process wrote them."""
        inject.request_dumps(trace_dir, index + 1)
        targets = [folder / "snapshots" / f"{index:03d}.alloc.json" for folder in inject.live_process_dirs(trace_dir, pids)]
        deadline = time.monotonic() + DUMP_TIMEOUT_S
        while not all(target.exists() for target in targets):
            check()
            if time.monotonic() > deadline:
                missing = ", ".join(str(target) for target in targets if not target.exists())
                raise ProbeFailed(f"the allocators' figures after {phase} did not appear within {DUMP_TIMEOUT_S:g} s: "
                                  f"{missing}")
            time.sleep(0.02)
        return True
