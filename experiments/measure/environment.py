"""What machine and software a run was made on, recorded in every result.json."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from ..paths import REPO_ROOT
from .procfs import meminfo_bytes


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def git_commit(cwd: Path | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout at ``cwd``."""
    cwd = cwd or REPO_ROOT
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=10)
        return {"commit": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


def describe() -> dict[str, Any]:
    """The environment of this process: git commit, Python, key package versions, CPU, kernel,
    cores, memory (bytes) and RLIMIT_NOFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        **git_commit(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "memray": _version("memray"),
        "psutil": _version("psutil"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_total_bytes": meminfo_bytes("MemTotal"),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "rlimit_nofile": {"soft": soft, "hard": hard},
    }
