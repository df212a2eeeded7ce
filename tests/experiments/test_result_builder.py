"""The result builder (experiments/dataset/builder.py): what a run observed in, result.json's sections out,
without a process: phase marks, sampler rows, load-generator replies and probe data made up here, and
each figure checked against the arithmetic it stands for."""

from __future__ import annotations

from typing import Any

from experiments.dataset.builder import Observed, ProbeData, build, kernel_per_held_connection
from experiments.dataset.results import (IDLE_AFTER, IDLE_EMPTY, IDLE_HELD, LOAD, PHASES, RAMP, SCHEMA, Phase,
                                         validate_document)

C = 100
MIB = 1 << 20
#: Each phase lasts 1 s, one after the other from t = 1 s.
PHASE_MARKS = [Phase(name, 1.0 + index, 2.0 + index) for index, name in enumerate(PHASES)]
#: The subject's RSS in each phase (bytes): 2 MiB more while it holds its C clients.
RSS_BY_PHASE = {IDLE_EMPTY: 10 * MIB, RAMP: 11 * MIB, IDLE_HELD: 12 * MIB, LOAD: 13 * MIB, "drain": 12 * MIB,
                IDLE_AFTER: 12 * MIB}


def _rss_rows() -> list[tuple]:
    """Ten samples a phase, each at its phase's level (PSS half of RSS, USS 90% of it)."""
    rows = []
    for phase in PHASE_MARKS:
        for tenth in range(10):
            rss = RSS_BY_PHASE[phase.name]
            rows.append((phase.start_s + tenth / 10, rss, int(rss * 0.9), rss // 2))
    return rows


def _process_rows(pids: dict[str, list[int]] | None = None) -> list[tuple]:
    """processes.csv's rows: one look a phase, at its middle, of the processes ``pids[phase]`` (pid 10 alone)."""
    rows = []
    for phase in PHASE_MARKS:
        for pid in (pids or {}).get(phase.name, [10]):
            rss = RSS_BY_PHASE[phase.name]
            rows.append((phase.start_s + 0.5, pid, 1, f"p{pid}", rss, rss, rss, rss, 0, 0))
    return rows


def _load(held: int = C, errors: dict[str, int] | None = None) -> dict[str, Any]:
    return {RAMP: {"ok": True, "tried": C, "connections_open": held, "requests": held, "errors": {}},
            LOAD: {"ok": True, "requests": 5_000, "req_per_s": 5_000.0, "latency_p50_ms": 1.0, "latency_p99_ms": 3.0,
                   "errors": errors or {}, "connections_open": held},
            "drain": {"ok": True, "errors": {}}}


def _document() -> dict[str, Any]:
    """result.json as the runner keeps it during the run (what :func:`build` starts from)."""
    return {"schema": SCHEMA, "status": "running", "error": None, "subject": {"name": "packed"},
            "probe": "rss", "parameters": {"connections": C, "max_conns": 1024}, "phases": [], "summary": {},
            "load": {}, "probe_info": {"name": "rss", "note": "", "notes": []}, "files": {"rss": "rss.csv"},
            "kernel": {IDLE_EMPTY: {"skmem_bytes": 1_000, "tcp_slab": {"object_bytes": 2_368}},
                       IDLE_HELD: {"skmem_bytes": 1_000 + 50 * C, "tcp_slab": {"object_bytes": 2_368}}}}


def _observed(**overrides: Any) -> Observed:
    fields: dict[str, Any] = dict(
        subject="packed", connections=C, phases=PHASE_MARKS, load=_load(), server_cpu_s={LOAD: {"process": 0.5,
                                                                                              "main_thread": 0.4}},
        closed_early=[], server_held={IDLE_EMPTY: 0, IDLE_HELD: C}, rss_rows=_rss_rows(), process_rows=_process_rows(),
        root_pid=10, ready_pids={10}, ready_s=0.5, rescan_s=0.1, outcome_names={"closed_idle": "closed by the server"})
    fields.update(overrides)
    return Observed(**fields)


def test_a_run_that_held_its_clients_has_every_figure_from_its_phases() -> None:
    document = build(_document(), _observed())
    summary = document["summary"]
    assert summary["idle_rss_bytes"] == 10 * MIB and summary["held_rss_bytes"] == 12 * MIB
    assert summary["rss_bytes_per_held_connection"] == 2 * MIB / C
    assert summary["pss_bytes_per_held_connection"] == MIB / C
    assert summary["cpu_us_per_request"] == 0.5 * 1e6 / 5_000
    assert summary["kernel_buffer_bytes_per_held_connection"] == 50
    assert summary["kernel_bytes_per_held_connection"] == 50 + 2_368
    assert document["not_measured"] == {} and document["warnings"] == []
    assert "held" not in document and "rss_ledger" not in document
    assert [phase["name"] for phase in document["phases"]] == list(PHASES)
    assert set(document["process_tree"]["phase_end"]) == set(PHASES)
    assert document["process_tree"]["changes"] == []
    document["status"] = "complete"
    validate_document(document, "built")  # what the readers accept


def test_a_subject_that_held_some_divides_by_what_it_held_and_says_so() -> None:
    closed = [{"phase": IDLE_HELD, "time_s": 4.5, "closed": 40,
               "how": {"closed_idle": {"count": 40, "requests_min": 1, "requests_max": 1,
                                       "idle_s_min": 0.5, "idle_s_max": 0.5}}}]
    document = build(_document(), _observed(closed_early=closed, server_held={IDLE_EMPTY: 0, IDLE_HELD: 60}))
    held = document["held"]
    assert held["asked"] == C and held["held"] == 60 and held["held_by_clients"] == C - 40
    assert held["outcomes"]["closed_idle"]["count"] == 40
    assert document["summary"]["rss_bytes_per_held_connection"] == 2 * MIB / 60
    assert document["summary"]["kernel_buffer_bytes_per_held_connection"] == 50 * C / 60
    assert document["closed_early"] == {"closed": 40, "events": closed}
    assert document["warnings"] == [held["text"]]
    assert held["text"].startswith("packed held 60 of the 100 clients at the end of idle-held")
    assert "40 closed by the server (after 1 response, 0.5 s after it)" in held["text"]


def test_a_subject_that_held_none_has_no_held_figure_and_its_reason() -> None:
    document = build(_document(), _observed(load=_load(held=0), server_held={IDLE_EMPTY: 0, IDLE_HELD: 0}))
    reason = document["not_measured"]["rss_bytes_per_held_connection"]
    assert reason.startswith("it held none of the 100 clients at the end of idle-held")
    for key in ("rss_bytes_per_held_connection", "pss_bytes_per_held_connection",
                "kernel_bytes_per_held_connection"):
        assert document["summary"].get(key) is None, key  # an empty figure, never a 0
    assert document["summary"]["req_per_s"] == 5_000.0  # the load phase's figures stand
    # The clients' "ramp: only 0 of 100" gives way to the held line, which says more.
    assert not any(line.startswith("ramp: only") for line in document["warnings"])
    assert document["warnings"][0].startswith("packed held none of the 100 clients")


def test_a_process_that_started_while_held_takes_the_held_figures_away() -> None:
    pids = {name: [10] for name in PHASES}
    pids.update({IDLE_HELD: [10, 11], LOAD: [10, 11], "drain": [10, 11], IDLE_AFTER: [10, 11]})
    document = build(_document(), _observed(process_rows=_process_rows(pids)))
    change, = document["process_tree"]["changes"]
    assert (change["pid"], change["event"]) == (11, "started") and IDLE_HELD in change["phase"]
    assert "the process tree changed" in document["not_measured"]["rss_bytes_per_held_connection"]
    assert document["summary"]["rss_bytes_per_held_connection"] is None
    assert any(line.startswith("process 11 (p11) started during phase") for line in document["warnings"])


def test_a_load_phase_that_answered_nothing_has_no_load_figure() -> None:
    load = _load(errors={"reset": 7})
    load[LOAD].update(requests=0, req_per_s=0.0)
    document = build(_document(), _observed(load=load, extra_warnings=["the runner's own"]))
    assert "the load phase answered no request" in document["not_measured"]["req_per_s"]
    assert document["summary"]["req_per_s"] is None and "cpu_us_per_request" not in document["summary"]
    assert document["warnings"] == ["load: 7 client errors: reset 7", "the runner's own"]


def _ledger(rss: int, heap: int) -> dict[str, Any]:
    return {"rss_bytes": rss, "parts": [{"part": "python_heap", "label": "heap", "bytes": heap, "source": "t"},
                                        {"part": "remainder", "label": "rest", "bytes": rss - heap, "source": "t"}],
            "remainder_share": (rss - heap) / rss, "threads": 1, "stacks_found": 1}


def test_the_rss_ledger_is_summed_over_the_traced_processes_and_divided_by_what_was_held() -> None:
    ledgers = {IDLE_EMPTY: {10: _ledger(10 * MIB, MIB), 11: _ledger(5 * MIB, MIB)},
               IDLE_HELD: {10: _ledger(11 * MIB, 2 * MIB), 11: _ledger(6 * MIB, MIB)}}
    trees = {IDLE_EMPTY: [10, 11], IDLE_HELD: [10, 11]}
    document = build(_document(), _observed(ledgers=ledgers, ledger_trees=trees))
    section = document["rss_ledger"]
    assert section["summed_over"] == 2 and section["per_held_connection_not_measured"] is None
    assert section["phases"][IDLE_HELD]["rss_bytes"] == 17 * MIB
    assert section["per_held_connection"]["rss"] == 2 * MIB / C
    assert section["per_held_connection"]["python_heap"] == MIB / C
    assert section["per_held_connection"]["kernel"] == 50 + 2_368
    assert section["processes"]["10"]["root"] and not section["processes"]["11"]["root"]
    assert section["processes"]["11"]["per_held_connection"]["rss"] == MIB / C
    # A process of the tree that was not traced: the sum is not the tree's, so no figure per connection.
    trees[IDLE_HELD] = trees[IDLE_EMPTY] = [10, 11, 12]
    untraced = build(_document(), _observed(ledgers=ledgers, ledger_trees=trees))["rss_ledger"]
    assert untraced["per_held_connection"] is None
    assert "processes [12] of the tree have no ledger" in untraced["per_held_connection_not_measured"]


def test_probe_data_gives_the_heap_figures_and_each_traced_process_its_own() -> None:
    heap_rows = [(row[0], 1_000 if row[0] < PHASE_MARKS[1].start_s else 5_000, None, 10) for row in _rss_rows()]
    probe = ProbeData(
        heap_rows=heap_rows, table={"table_heap_bytes": 16_384}, files={"snapshots": []}, notes=["a probe note"],
        phase_end_heap={IDLE_EMPTY: 1_000, IDLE_HELD: 3_000},
        processes={"pid-10": ProbeData(heap_rows=heap_rows, phase_end_heap={IDLE_EMPTY: 500, IDLE_HELD: 1_500})},
        process_info=[{"key": "pid-10", "pid": 10, "argv": ["server"]}])
    document = build(_document(), _observed(probe=probe))
    assert document["summary"]["heap_bytes_per_held_connection"] == (3_000 - 1_000) / C  # the phase-end dumps'
    assert document["summary"]["bytes_per_slot"] == 16_384 / 1024
    assert document["files"]["heap"] == "heap.csv" and "sites" not in document["files"]
    assert document["probe_info"]["notes"] == ["a probe note"]
    entry, = document["traced_processes"]
    assert entry["files"]["heap"] == "processes/pid-10/heap.csv" and "key" not in entry
    assert entry["heap_bytes_per_held_connection"] == (1_500 - 500) / C


def test_the_kernel_figure_needs_both_reads() -> None:
    assert kernel_per_held_connection({IDLE_HELD: {"skmem_bytes": 10}}, C) == {
        "kernel_buffer_bytes_per_held_connection": None, "kernel_bytes_per_held_connection": None}
    assert kernel_per_held_connection({IDLE_EMPTY: {"skmem_bytes": 0}, IDLE_HELD: {"skmem_bytes": 200}}, C) == {
        "kernel_buffer_bytes_per_held_connection": 2.0, "kernel_bytes_per_held_connection": None}


def test_a_process_that_died_is_said_once_with_how_it_ended() -> None:
    pids = {name: [10, 11] for name in PHASES}
    pids.update({LOAD: [10], "drain": [10], IDLE_AFTER: [10]})  # 11 ended during the load phase
    death = {"pid": 11, "name": "p11", "phase": LOAD, "time_s": 4.5, "signal": "SIGKILL"}
    document = build(_document(), _observed(process_rows=_process_rows(pids), ready_pids={10, 11}, deaths=[death],
                                            death_texts={11: "process 11 (p11) died in load, killed by SIGKILL"}))
    change, = document["process_tree"]["changes"]
    assert (change["pid"], change["event"]) == (11, "ended")
    assert document["process_tree"]["deaths"] == [death]
    assert document["warnings"] == ["packed: process 11 (p11) died in load, killed by SIGKILL"]  # not twice
