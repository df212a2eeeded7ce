"""The allocators probe end to end: a Python peer (the standard library's asyncio responder) run with no
tracer, its allocators' figures written at each phase end by memdiet's bootstrap, and an RSS ledger of
the untraced run whose parts add up to its RSS; memdiet's own server is refused (exit 2, one line)."""

from __future__ import annotations

import subprocess
import sys

from experiments.dataset.agreement import free_space
from experiments.dataset.results import load_run

from ..fixtures import REPO

ASYNCIO = f"{sys.executable} -m experiments.bench.peers.asyncio_app --host 127.0.0.1 --port {{port}}"


def memdiet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_an_untraced_run_has_a_ledger_of_memory_in_use_and_free_space(tmp_path) -> None:
    runs = tmp_path / "runs"
    result = memdiet("run", "--cmd", ASYNCIO, "--name", "asyncio", "--probe", "allocators", "--connections", "50",
                     "--idle", "0.5", "--load", "0.3", "--runs-dir", str(runs))
    assert result.returncode == 0, result.stderr
    (folder,) = runs.iterdir()
    document = load_run(folder).document
    assert document["summary"].get("heap_bytes_per_held_connection") is None  # nothing traced
    ledger = document["rss_ledger"]
    for phase in ("idle-empty", "idle-held", "idle-after"):
        parts = {part["part"]: part["bytes"] for part in ledger["phases"][phase]["parts"]}
        assert "python_heap" not in parts and "tracer" not in parts and parts["untraced"] > 1_000_000
        assert sum(parts.values()) == ledger["phases"][phase]["rss_bytes"]
    per_held = ledger["per_held_connection"]
    kinds = sum(value for key, value in per_held.items() if key not in ("rss", "kernel"))
    assert abs(per_held["rss"] - kinds) < 1  # the kinds add up to the RSS per held connection
    split = free_space(document)
    assert split is not None and split["in_use"] > 0
    assert "RSS ledger" in result.stderr


def test_memdiets_own_server_is_refused_under_the_allocators_probe(tmp_path) -> None:
    result = memdiet("run", "--layout", "nofd", "--probe", "allocators", "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "allocators probe" in result.stderr
