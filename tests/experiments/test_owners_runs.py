"""Ground truths of the owners on memdiet's own layouts, from real runs with heap graphs: nofd's only
owner per held connection is the parked connection coroutine (a generator), whose retained bytes
match the heap per held connection tracemalloc reports within 5%; packed (a 16-byte record per slot
in preallocated arrays, the coroutine dropped while parked) keeps no per-connection owner. Then the
run's owners through ``memdiet view owners``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.measure.runner import RunConfig, run_once
from tracemalloc_viewer.memdiet_command import run as view

CONNECTIONS = 100


def owners_run(layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    config = RunConfig(subject=layout, probe="tracemalloc", max_conns=1024, connections=CONNECTIONS, idle_s=0.3,
                       load_s=0.3, runs_dir=tmp_path, heap_graph=True)
    run_dir = run_once(config)
    document = json.loads((run_dir / "result.json").read_text())
    assert document["files"].get("owners") == "owners.json", document["probe_info"]["notes"]
    return run_dir, json.loads((run_dir / "owners.json").read_text())


def test_nofd_only_owner_is_the_parked_coroutine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    run_dir, owners = owners_run("nofd", tmp_path, monkeypatch)
    process = owners["processes"]["server"]
    full = [row for row in process["owners"] if row["kind"] == "owner"]
    assert [row["type"] for row in full] == ["builtins.generator"]
    assert full[0]["per_connection"] == 1.0
    assert "serve_connection" in json.dumps(process) or full[0]["site"].startswith("server/loop.py")
    heap = process["reconciliation"]["heap_bytes_per_connection"]
    owned = process["reconciliation"]["owned_bytes_per_connection"]
    assert abs(owned - heap) <= 0.05 * heap, process["reconciliation"]
    for phase in ("idle-empty", "idle-held"):
        assert (run_dir / process["files"][phase]).is_file()
    assert view(["owners", str(run_dir)]) == 0
    shown = capsys.readouterr().out
    assert "builtins.generator" in shown and "remainder" in shown


def test_packed_keeps_no_per_connection_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run_dir, owners = owners_run("packed", tmp_path, monkeypatch)
    process = owners["processes"]["server"]
    assert [row for row in process["owners"] if row["kind"] == "owner"] == []


TINY_SERVER = '''
"""A keep-alive HTTP server on asyncio streams that memdiet has never run, left as it is."""
import asyncio, sys

async def handle(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\\r\\n\\r\\n")
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()

asyncio.run(main(int(sys.argv[1])))
'''


def test_a_python_server_never_run_gets_owners_through_cmd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    script = tmp_path / "tiny_http.py"
    script.write_text(TINY_SERVER)
    config = RunConfig(subject="tiny_http", cmd=f"{sys.executable} {script} {{port}}", probe="tracemalloc",
                       connections=CONNECTIONS, idle_s=0.3, load_s=0.3, runs_dir=tmp_path / "runs", heap_graph=True)
    run_dir = run_once(config)
    owners = json.loads((run_dir / "owners.json").read_text())
    (process,) = owners["processes"].values()
    types = [row["type"] for row in process["owners"] if row["kind"] == "owner"]
    # asyncio's streams: the selector's key for each socket keeps its transport, protocol, task and
    # the handler's coroutine, so one owner row holds most of each connection's heap.
    assert "selectors.SelectorKey" in types
    top = process["owners"][0]
    assert top["retained_bytes_per_connection"] > 1000 and top["tree"]
    assert process["reconciliation"]["owned_share_of_heap"] > 0.5
