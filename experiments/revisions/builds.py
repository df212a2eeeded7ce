"""The build cache: each revision built once, in its own worktree, keyed by commit and build command.

Layout, under the source's cache folder (:class:`.source.Source`): ``builds/<sha12>-<cmd8>/`` holds
``src/`` (the revision's worktree; the build runs there), ``out/`` (what the build puts out: the
command gets its path as ``$OUT``), ``build.log`` (the build's stdout and stderr, kept whether it
built or not; an unbuildable revision is reported by its last line naming an error), ``build.json`` (the outcome) and ``structs.json`` (the DWARF layouts read so far).

Rules: the build command is a shell command line (``sh -c``), run in the worktree with ``OUT``,
``SRC`` and ``MEMDIET_CWD`` (the folder memdiet was started in, for scripts named relative to it)
in its environment, bounded by a timeout. A revision whose build exits non-zero (or times out) is
*unbuildable*: reported with its log's last line, kept in the cache as such (its log says why) and
never fatal; changing the build command changes the key, so it is built again. A build that was
interrupted leaves no build.json, so it is redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from ..dataset.results import write_json
from ..errors import BadInput
from .dwarf import struct_layouts
from .source import Commit, Source

#: Seconds one revision's build may take (Lwan's today's head: ~60 s on this shared 2-core machine).
BUILD_TIMEOUT_S = 1800.0
BUILD_FILE, LOG_FILE, STRUCTS_FILE = "build.json", "build.log", "structs.json"


class Build:
    """One revision's build: ``ok`` (it built), ``cached`` (found in the cache, not built now),
    ``seconds`` (the build's own time), ``error`` (its log's last line when it did not build)."""

    __slots__ = ("commit", "folder", "ok", "cached", "seconds", "error")

    def __init__(self, commit: Commit, folder: Path, ok: bool, cached: bool, seconds: float, error: str | None) -> None:
        self.commit, self.folder, self.ok, self.cached, self.seconds, self.error = commit, folder, ok, cached, seconds, error

    @property
    def src(self) -> Path:
        return self.folder / "src"

    @property
    def out(self) -> Path:
        return self.folder / "out"

    @property
    def log(self) -> Path:
        return self.folder / LOG_FILE

    def substitute(self, text: str) -> str:
        """``{src}`` and ``{out}`` in ``text`` replaced by this build's folders."""
        return text.replace("{src}", str(self.src)).replace("{out}", str(self.out))

    def structs(self, binary_template: str, names: list[str]) -> dict[str, dict[str, Any] | None]:
        """The DWARF layouts of ``names`` in the binary ``binary_template`` names (``{out}/lwan``),
        read once per build and name."""
        if not names:
            return {}
        cache_path = self.folder / STRUCTS_FILE
        try:
            cached = json.loads(cache_path.read_text())
        except (OSError, ValueError):
            cached = {}
        binary = Path(self.substitute(binary_template))
        key = str(binary)
        known = cached.get(key, {})
        missing = [name for name in names if name not in known]
        if missing:
            if not binary.is_file():
                raise BadInput(f"{self.commit.short}: --binary {binary} does not exist after the build")
            known.update(struct_layouts(binary, missing))
            cached[key] = known
            write_json(cache_path, cached)
        return {name: known[name] for name in names}

    def as_dict(self) -> dict[str, Any]:
        return {"status": "built" if self.ok else "unbuildable", "cached": self.cached,
                "seconds": round(self.seconds, 1), "log": str(self.log), "error": self.error}


def log_error(log: Path) -> str:
    """What a failed build's log says went wrong: its last line naming an error (a compiler's
    ``error:``, not make's "Leaving directory" after it), else its last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() and not line.startswith(("make", "gmake"))]
    return ((errors or lines or ["(empty log)"])[-1])[:300]


class BuildCache:
    """Builds revisions of ``source`` with ``command`` (see the module's rules)."""

    __slots__ = ("source", "command", "timeout_s", "root")

    def __init__(self, source: Source, command: str, timeout_s: float = BUILD_TIMEOUT_S) -> None:
        if not command.strip():
            raise BadInput("--build is empty")
        self.source, self.command, self.timeout_s = source, command, timeout_s
        self.root = source.cache_dir / "builds"

    def folder(self, commit: Commit) -> Path:
        key = hashlib.sha256(self.command.encode()).hexdigest()[:8]
        return self.root / f"{commit.sha[:12]}-{key}"

    def build(self, commit: Commit) -> Build:
        """The revision built (or found built, or found unbuildable) in the cache."""
        folder = self.folder(commit)
        try:
            done = json.loads((folder / BUILD_FILE).read_text())
            error = done.get("error")
            if not done["ok"] and error and (folder / LOG_FILE).exists():  # the log, read by today's rule
                error = f"{error.split(':', 1)[0]}: {log_error(folder / LOG_FILE)}"
            return Build(commit, folder, done["ok"], True, done["seconds"], error)
        except (OSError, ValueError, KeyError):
            pass
        folder.mkdir(parents=True, exist_ok=True)
        self.source.worktree(commit, folder / "src")
        (folder / "out").mkdir(exist_ok=True)
        env = {**os.environ, "OUT": str(folder / "out"), "SRC": str(folder / "src"), "MEMDIET_CWD": os.getcwd()}
        started = time.monotonic()
        with open(folder / LOG_FILE, "wb") as log:
            log.write(f"$ {self.command}\n".encode())
            log.flush()
            try:
                code = subprocess.run(["sh", "-c", self.command], cwd=folder / "src", env=env, stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=self.timeout_s).returncode
            except subprocess.TimeoutExpired:
                code = None
        seconds = time.monotonic() - started
        error = None
        if code != 0:
            why = f"timed out after {self.timeout_s:.0f} s" if code is None else f"exit {code}"
            error = f"{why}: {log_error(folder / LOG_FILE)}"
        write_json(folder / BUILD_FILE, {"ok": code == 0, "seconds": seconds, "error": error,
                                        "command": self.command, "commit": commit.sha})
        return Build(commit, folder, code == 0, False, seconds, error)
