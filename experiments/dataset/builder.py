"""The result builder: what a run observed in, result.json's document out.

The runner sequences the scenario and records what it sees as it goes (phase marks, the load
generator's replies, the kernel's and the server's counts of held connections, the sampler's rows,
the RSS ledgers read at the idle phases' ends, what the probe collected): an :class:`Observed`.
:func:`build` turns that into the finished sections of result.json: the process tree and its changes,
``held`` (a subject that held fewer than C), the summary metrics (:func:`.metrics.summarize`) with
the kernel's share, ``not_measured``, each traced process's figures, ``rss_ledger`` and the warnings.

Rules: data only: no process, no clock, no file (the runner writes the CSVs and result.json); every
figure per held connection divides by the connections held at the end of idle-held; a figure a phase
did not drive is None with its reason in ``not_measured``, never a 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from .agreement import beside_heap
from .metrics import client_warnings, errors_text, summarize
from .results import (HEAP_COLUMNS, HEAP_FILE, IDLE_EMPTY, IDLE_HELD, LOAD, PROCESS_COLUMNS, RAMP, RSS_COLUMNS,
                      SITES_FILE, Phase, Series)
from .rss_ledger import PARTS, per_held_connection, summed_ledger


@dataclass
class ProbeData:
    """What a probe contributes to the run folder, on the run's clock (seconds since server start)."""

    heap_rows: list[tuple[float, int, int | None, int | None]] = field(default_factory=list)
    site_rows: list[tuple[float, str, int, int]] = field(default_factory=list)
    table: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: The live heap at the end of each phase, bytes by phase name: the server's allocations in the
    #: phase-end dump (taken after a full collection), the probe's own left out.
    phase_end_heap: dict[str, int] = field(default_factory=dict)
    #: Per site, bytes and blocks live at each phase end, as the phase-end dump holds them (probes
    #: with dumps): ``{phase: {site: (bytes, count)}}``, the probe's own lines as ``(probe)``.
    phase_end_sites: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    #: Where the bytes of the held connections go (:func:`.processes.held_connection_sites`).
    held_sites: dict[str, Any] | None = None
    #: A program with several traced processes: each one's own series, by key (``pid-PID``).
    processes: dict[str, ProbeData] = field(default_factory=dict)
    #: What each traced process is (pid, parent pid, argv, how it began), in the order they began.
    process_info: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Observed:
    """What the runner saw of one run, times on the run's clock (seconds since the subject started)."""

    #: The subject's name, as the warnings say it, and C, the clients asked for.
    subject: str
    connections: int
    phases: list[Phase]
    #: The load generator's replies by phase (``ramp``, ``load``, ``drain``; ``reopen``).
    load: dict[str, Any]
    #: The subject's CPU seconds by phase (``{"load": {"process": s, "main_thread": s}}``).
    server_cpu_s: dict[str, dict[str, float]]
    #: Clients the subject closed before the held phase ended: ``{phase, time_s, closed, how}`` each.
    closed_early: list[dict[str, Any]]
    #: Established connections the subject held, counted on its side, at the end of each idle phase.
    server_held: dict[str, int | None]
    #: rss.csv's and processes.csv's rows (:data:`.results.RSS_COLUMNS`, :data:`.results.PROCESS_COLUMNS`).
    rss_rows: list[tuple]
    process_rows: list[tuple]
    #: The subject's root process, and its processes when it was found ready at ``ready_s``.
    root_pid: int | None
    ready_pids: set[int | None]
    ready_s: float
    #: Seconds between two scans of the tree by the sampler (a change is dated to within it).
    rescan_s: float
    #: What each way a client ended (or failed to connect) is called (the load generator's kinds).
    outcome_names: Mapping[str, str]
    #: Each traced process's RSS ledger at the ends of :data:`.rss_ledger.LEDGER_PHASES`
    #: (``{phase: {pid: ledger}}``, the root first), the processes of the tree there, traced or not,
    #: and the bare interpreter's ledger (or why not).
    ledgers: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    ledger_trees: dict[str, list[int]] = field(default_factory=dict)
    bare_interpreter: dict[str, Any] | None = None
    #: Warnings the runner itself added (a subject listening beyond loopback, its exit code...).
    extra_warnings: list[str] = field(default_factory=list)
    #: What the probe collected, None when it could not be read.
    probe: ProbeData | None = None
    #: Each process of the tree that ended while the phases ran, with how (the runner's kernel exit
    #: events: ``experiments.measure.exits.deaths``), and each one's phrase for the warnings, by pid.
    deaths: list[dict[str, Any]] = field(default_factory=list)
    death_texts: dict[int, str] = field(default_factory=dict)


#: How a ramp that ended early is described (the load generator's ``stopped_early``).
RAMP_STOPS = {"deadline": "reached its time bound", "no_progress": "stopped after a run of clients not held",
              "stalled": "stalled (no connect and no response for its stall time) and aborted what was outstanding"}


def build(document: dict[str, Any], observed: Observed) -> dict[str, Any]:
    """Fill in ``document`` (result.json as the runner kept it during the run: parameters, kernel
    reads, readiness, daemon, stop) with every section computed from ``observed``; returns it. The
    status, the error and the finishing time are the runner's."""
    phases = observed.phases
    document["process_tree"] = tree_summary(observed.process_rows, phases)
    document["process_tree"]["changes"] = tree_changes(observed.process_rows, phases,
                                                       observed.ready_pids or {observed.root_pid},
                                                       observed.ready_s, observed.rescan_s)
    document["process_tree"]["deaths"] = observed.deaths
    if observed.closed_early:
        closed = sum(int(event["closed"]) for event in observed.closed_early)
        document["closed_early"] = {"closed": closed, "events": observed.closed_early}
    held = held_document(observed, document)
    if held is not None:
        document["held"] = held
    held_count = held["held"] if held is not None else observed.connections
    probe_data = observed.probe
    heap_series = None
    if probe_data is not None:
        document["probe_info"]["notes"].extend(probe_data.notes)
        document["files"].update(probe_data.files)
        document["table"] = probe_data.table
        if probe_data.heap_rows:
            document["files"]["heap"] = HEAP_FILE
            heap_series = Series({c: [r[i] for r in probe_data.heap_rows] for i, c in enumerate(HEAP_COLUMNS)})
        if probe_data.site_rows:
            document["files"]["sites"] = SITES_FILE
        if probe_data.phase_end_heap:
            document["phase_end_heap_bytes"] = probe_data.phase_end_heap
        if probe_data.held_sites is not None:
            document["held_connection_sites"] = probe_data.held_sites
        if probe_data.processes:
            document["traced_processes"] = traced_processes(probe_data, phases, document["parameters"])
    rss_series = Series({c: [r[i] for r in observed.rss_rows] for i, c in enumerate(RSS_COLUMNS)})
    document["phases"] = [asdict(p) for p in phases]
    document["load"] = observed.load
    document["server_cpu_s"] = observed.server_cpu_s
    document["summary"] = summarize(
        phases, rss_series, heap_series, observed.load, document["parameters"],
        probe_data.table if probe_data else None, server_cpu_s=observed.server_cpu_s,
        phase_end_heap=probe_data.phase_end_heap if probe_data else None, held_connections=held_count,
    )
    document["summary"].update(kernel_per_held_connection(document.get("kernel", {}), held_count))
    daemon_phase = (document.get("daemon") or {}).get("phase")
    document["not_measured"] = not_measured(
        observed.load, held, held_count, document["process_tree"]["changes"],
        daemon_phase if daemon_phase not in (None, "start", IDLE_EMPTY) else None)
    held_reason = document["not_measured"].get("heap_bytes_per_held_connection")
    for entry in document.get("traced_processes", []):  # each process's own heap per held connection
        heap_at = entry.get("phase_end_heap_bytes") or {}
        if held_reason is None and heap_at.get(IDLE_EMPTY) is not None and heap_at.get(IDLE_HELD) is not None:
            entry["heap_bytes_per_held_connection"] = (heap_at[IDLE_HELD] - heap_at[IDLE_EMPTY]) / held_count
        elif held_reason is None and entry.get("heap_bytes_per_held_connection") is not None:
            pass  # from its heap samples (memray), as the run's own figure is
        else:
            entry["heap_bytes_per_held_connection"] = None
            entry["heap_bytes_per_held_connection_not_measured"] = held_reason or \
                f"no heap of this process at the ends of {IDLE_EMPTY} and {IDLE_HELD}"
    if observed.ledgers:
        document["rss_ledger"] = ledger_document(observed, document, observed.ledgers, document["summary"],
                                                 document["not_measured"])
    for key in document["not_measured"]:  # an empty figure, never a 0 that reads as one
        if key in document["summary"]:
            document["summary"][key] = None
    if (beside := beside_heap(document)) is not None:  # what RSS holds beside the heap, from the ledger
        document["heap_beside_rss"] = beside
    document["warnings"] = warnings(observed, document["process_tree"]["changes"], held)
    return document


def warnings(observed: Observed, changes: list[dict[str, Any]], held: dict[str, Any] | None) -> list[str]:
    """result.json's ``warnings``: the clients' (:func:`.metrics.client_warnings`), each change of
    the process tree after the subject was found ready (a death said with how it ended), ``held``'s line in place of the clients' "ramp:
    only N of C" (it says more: counted on the subject's side, how the others ended), the runner's own."""
    said = client_warnings(observed.load, observed.connections)
    for death in observed.deaths:
        said.append(f"{observed.subject}: " + observed.death_texts[death["pid"]])
    for change in changes:
        if change["event"] == "ended" and observed.deaths:
            continue  # said above, with how it ended
        low, high = change["between_s"]
        said.append(
            f"process {change['pid']} ({change['name']}) {change['event']} during phase {change['phase']}, after "
            f"the subject was found ready (between the looks at {low:.2f} s and {high:.2f} s)")
    if held is not None:
        said = [w for w in said if not w.startswith("ramp: only")]
        said.append(held["text"])
    said.extend(observed.extra_warnings)
    return said


def traced_processes(data: ProbeData, phases: list[Phase], parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """result.json's ``traced_processes``: what the run says of each traced process, its own series
    named in ``processes/pid-PID/`` (the runner writes them there)."""
    described = []
    for info in data.process_info:
        key = info["key"]
        one = data.processes.get(key)
        entry = {k: v for k, v in info.items() if k != "key"}
        if one is not None:
            entry["files"] = {"heap": f"processes/{key}/{HEAP_FILE}", "sites": f"processes/{key}/{SITES_FILE}",
                              "snapshots": one.files.get("snapshots", [])}
            entry["phase_end_heap_bytes"] = one.phase_end_heap
            if not one.phase_end_heap and one.heap_rows:  # memray: no dumps, the samples' idle medians
                series = Series({c: [r[i] for r in one.heap_rows] for i, c in enumerate(HEAP_COLUMNS)})
                own = summarize(phases, None, series, None, parameters, None)
                entry["heap_bytes_per_held_connection"] = own.get("heap_bytes_per_held_connection")
        described.append(entry)
    return described


def held_document(observed: Observed, run_document: dict[str, Any]) -> dict[str, Any] | None:
    """result.json's ``held`` when the subject did not hold all C clients to the end of idle-held
    (None when it did): how many it held, counted on its side; how the others ended, as the
    clients saw it; where it stopped keeping connections; one line of text for the warnings."""
    asked = observed.connections
    ramp = observed.load.get(RAMP)
    if ramp is None:
        return None
    on_server = observed.server_held.get(IDLE_HELD)
    by_clients = ramp.get("connections_open", 0) - sum(
        int(event["closed"]) for event in observed.closed_early if event["phase"] == IDLE_HELD)
    if IDLE_HELD not in observed.server_held:  # the run ended before idle-held did
        by_clients = ramp.get("connections_open", 0)
    held = on_server if on_server is not None else by_clients
    if held >= asked and not observed.closed_early:
        return None
    outcomes: dict[str, dict[str, Any]] = {}
    for kind, count in (ramp.get("errors") or {}).items():
        if kind.startswith("connect_"):
            outcomes[kind] = {"count": count, "phase": RAMP}
    for phase, ended in [(RAMP, ramp.get("ended") or {})] + [
            (event["phase"], event.get("how") or {}) for event in observed.closed_early if event["phase"] == IDLE_HELD]:
        for kind, entry in ended.items():
            if kind == "client":
                continue
            into = outcomes.setdefault(kind, {"count": 0, "phase": phase})
            into["count"] += entry["count"]
            for key in ("requests_min", "idle_s_min"):
                into[key] = min(into.get(key, entry[key]), entry[key])
            for key in ("requests_max", "idle_s_max"):
                into[key] = max(into.get(key, entry[key]), entry[key])
    for kind, entry in outcomes.items():
        entry["seen"] = observed.outcome_names.get(kind, kind)
    ramp_held = ramp.get("connections_open", 0)
    stopped_at = ramp_held if ramp_held < asked else None
    document = {
        "asked": asked, "held": held, "held_by_server_count": on_server, "held_by_clients": by_clients,
        "counted": "the subject's established sockets on its port, from /proc, at the end of idle-held"
                   if on_server is not None else "the load generator's open connections (the server's side "
                                                     "could not be read)",
        "ramp": {"tried": ramp.get("tried"), "stopped_early": ramp.get("stopped_early"),
                 "elapsed_s": ramp.get("elapsed_s"), "peak_open": ramp.get("peak_open")},
        "stopped_keeping_at": stopped_at,
        "outcomes": outcomes,
        "events": observed.closed_early,
    }
    parts = "; ".join(f"{entry['count']} {entry['seen']}" + _ended_detail(entry)
                      for _kind, entry in sorted(outcomes.items(), key=lambda item: -item[1]["count"]))
    if held == 0:
        document["not_held"] = (f"it held none of the {asked} clients at the end of idle-held: "
                                + (parts or "every connection ended"))
        text = (f"{observed.subject} held none of the {asked} clients (the held phase is not held): {parts}; "
                "no figure per held connection; its load phase sent each request on a new connection")
    else:
        text = (f"{observed.subject} held {held} of the {asked} clients at the end of idle-held (counted on its "
                f"side)" + (f"; it stopped keeping connections at {stopped_at}" if stopped_at is not None else "")
                + (f"; the others: {parts}" if parts else "")
                + f"; figures per held connection divide by {held}")
        if ramp.get("stopped_early"):
            text += f"; the ramp {RAMP_STOPS.get(ramp['stopped_early'], ramp['stopped_early'])}"
            if (ramp.get("tried") or asked) < asked:
                text += f" ({ramp.get('tried')} of the {asked} clients tried)"
    phase_end = (run_document.get("process_tree") or {}).get("phase_end") or {}
    before = {one["pid"]: one["name"] for one in (phase_end.get(IDLE_EMPTY) or {}).get("processes", [])}
    after = {one["pid"] for one in (phase_end.get(IDLE_HELD) or {}).get("processes", [])}
    gone = {pid: name for pid, name in before.items() if pid not in after} if after else {}
    if gone:  # evidence beside what the clients saw: a worker that exited may have taken its clients
        document["processes_gone"] = [{"pid": pid, "name": name} for pid, name in sorted(gone.items())]
        died = {death["pid"] for death in (run_document.get("process_tree") or {}).get("deaths", ())}
        text += ("; between the ends of idle-empty and idle-held these processes of its tree exited: "
                 + ", ".join(observed.death_texts[pid] if pid in died and pid in observed.death_texts
                             else f"{name} (pid {pid})" for pid, name in sorted(gone.items())))
    overflows = run_document.get("listen_overflows")
    if overflows:
        text += (f"; the kernel counted {overflows} listen-queue overflows during the ramp (TcpExtListenOverflows, "
                 "the machine's: a full listen backlog drops the handshake)")
    document["text"] = text
    return document


def ledger_document(observed: Observed, document: dict[str, Any], ledgers: dict[str, dict[int, dict[str, Any]]], summary: dict[str, Any],
                     not_measured: dict[str, str]) -> dict[str, Any]:
    """result.json's ``rss_ledger``: each phase's ledger summed over the traced processes (``phases``;
    with one process, its own), each process's own (``processes``: the master and each worker, with
    its argv), the bare interpreter's, and what one more held connection costs by kind, per process
    and summed. A figure that cannot be attributed is None with its reason in
    ``per_held_connection_not_measured``: the subject did not hold its clients, the tree changed
    between the two phase ends, or a process of the tree was not traced (its allocators unread)."""
    connections, kernel = observed.connections, summary.get("kernel_bytes_per_held_connection")
    pids = list(dict.fromkeys(pid for each in ledgers.values() for pid in each))
    argv = {entry["pid"]: entry.get("argv") for entry in document.get("traced_processes", [])}
    processes: dict[str, dict[str, Any]] = {}
    for pid in pids:
        own = {phase: each[pid] for phase, each in ledgers.items() if pid in each}
        per_held = None
        held_here = (document.get("held") or {}).get("held", connections)
        if IDLE_EMPTY in own and IDLE_HELD in own and held_here and not not_measured.get("rss_bytes_per_held_connection"):
            per_held = per_held_connection(own[IDLE_EMPTY], own[IDLE_HELD], held_here, None)
        processes[str(pid)] = {"pid": pid, "root": pid == observed.root_pid,
                               "argv": argv.get(pid), "phases": own, "per_held_connection": per_held}
    summed = {phase: summed_ledger(list(each.values())) for phase, each in ledgers.items()}
    reason = not_measured.get("rss_bytes_per_held_connection")
    per_held = None
    held = (document.get("held") or {}).get("held", connections)
    if reason is None and (IDLE_EMPTY not in ledgers or IDLE_HELD not in ledgers):
        reason = f"no ledger at the end of {IDLE_EMPTY} or {IDLE_HELD}"
    if reason is None:
        traced = {phase: set(ledgers[phase]) for phase in (IDLE_EMPTY, IDLE_HELD)}
        trees = {phase: set(observed.ledger_trees.get(phase, ())) for phase in (IDLE_EMPTY, IDLE_HELD)}
        if traced[IDLE_EMPTY] != traced[IDLE_HELD] or trees[IDLE_EMPTY] != trees[IDLE_HELD]:
            reason = (f"the processes differ between the ends of {IDLE_EMPTY} and {IDLE_HELD} "
                      f"({sorted(trees[IDLE_EMPTY])} and {sorted(trees[IDLE_HELD])})")
        elif trees[IDLE_HELD] - traced[IDLE_HELD]:
            reason = (f"processes {sorted(trees[IDLE_HELD] - traced[IDLE_HELD])} of the tree have no ledger "
                      "(not traced: their allocators could not be read)")
    if reason is None:
        per_held = per_held_connection(summed[IDLE_EMPTY], summed[IDLE_HELD], held, kernel)
    return {"phases": summed, "processes": processes, "summed_over": len(pids),
            "bare_interpreter": observed.bare_interpreter, "per_held_connection": per_held,
            "per_held_connection_not_measured": reason,
            "parts": {name: {"label": label, "source": source} for name, (label, source) in PARTS.items()}}


def kernel_per_held_connection(kernel_at: dict[str, Any], connections: int) -> dict[str, float | None]:
    """The kernel's memory per held connection, from :mod:`.kernel`'s reads at the ends of idle-empty
    and idle-held: ``kernel_buffer_bytes_per_held_connection`` (the subject's sockets' skmem
    charge, over C) and ``kernel_bytes_per_held_connection`` (that plus one ``struct tcp_sock``, the
    TCP slab's object size). None where a read is missing."""
    held, empty = kernel_at.get(IDLE_HELD) or {}, kernel_at.get(IDLE_EMPTY) or {}
    if held.get("skmem_bytes") is None or empty.get("skmem_bytes") is None or connections <= 0:
        return {"kernel_buffer_bytes_per_held_connection": None, "kernel_bytes_per_held_connection": None}
    buffers = (held["skmem_bytes"] - empty["skmem_bytes"]) / connections
    slab = (held.get("tcp_slab") or {}).get("object_bytes")
    return {"kernel_buffer_bytes_per_held_connection": buffers,
            "kernel_bytes_per_held_connection": buffers + slab if slab is not None else None}


#: The figures a load phase that answered no request cannot give.
LOAD_FIGURES = ("req_per_s", "requests", "latency_p50_ms", "latency_p99_ms", "cpu_us_per_request",
                "main_thread_cpu_us_per_request", "rss_bytes_per_active_connection", "heap_bytes_per_active_connection")
#: The figures that divide by the C clients held in idle-held.
HELD_FIGURES = ("rss_bytes_per_held_connection", "pss_bytes_per_held_connection", "heap_bytes_per_held_connection",
                "kernel_bytes_per_held_connection", "kernel_buffer_bytes_per_held_connection")


def tree_changes(process_rows: list[tuple], phases: list[Phase], ready_pids: set[int | None],
                 ready_s: float, rescan_s: float) -> list[dict[str, Any]]:
    """Each process of the subject's tree that started after it was found ready (at ``ready_s``, with
    ``ready_pids``), or ended after the first phase began and before the last one ended, from
    ``processes.csv``'s rows (run clock): ``{pid, name, event: started | ended, time_s, between_s,
    phase}``. The sampler looks at the tree every few tenths of a second, so the change happened
    between two looks: ``between_s`` (the last look without it, the first with it; for an end, the
    last with it and the first without), and ``phase`` names every phase those two looks span
    (``"ramp or idle-held"``; ``start`` before the first phase, ``stop`` after the last). A look
    reads the tree found by the sampler's last scan, up to ``rescan_s`` before it."""
    if not process_rows or not phases:
        return []
    looks = sorted({row[0] for row in process_rows})
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    names: dict[int, str] = {}
    for row in process_rows:
        time_s, pid, name = row[0], row[1], row[3]
        first.setdefault(pid, time_s)
        last[pid] = time_s
        names[pid] = name
    end_s = phases[-1].end_s

    def phases_between(low_s: float, high_s: float) -> str:
        names_ = [phase.name for phase in phases if phase.start_s <= high_s and phase.end_s >= low_s]
        if low_s < phases[0].start_s:
            names_.insert(0, "start")
        if high_s > end_s:
            names_.append("stop")
        return " or ".join(dict.fromkeys(names_))

    changes = []
    for pid in first:
        index = looks.index(first[pid])
        if pid not in ready_pids and first[pid] >= ready_s and index > 0:
            between = (looks[index - 1] - rescan_s, first[pid])
            changes.append({"pid": pid, "name": names[pid], "event": "started", "time_s": round(first[pid], 3),
                            "between_s": [round(t, 3) for t in between], "phase": phases_between(*between)})
        index = looks.index(last[pid])
        if last[pid] >= phases[0].start_s and index + 1 < len(looks) and looks[index + 1] <= end_s:
            between = (last[pid], looks[index + 1])
            changes.append({"pid": pid, "name": names[pid], "event": "ended", "time_s": round(last[pid], 3),
                            "between_s": [round(t, 3) for t in between], "phase": phases_between(*between)})
    return sorted(changes, key=lambda change: change["time_s"])


def not_measured(load: dict[str, Any], held: dict[str, Any] | None, held_count: int,
                 changes: list[dict[str, Any]] | None = None, daemon_phase: str | None = None) -> dict[str, str]:
    """The figures a phase did not drive, each with what was seen instead (result.json's
    ``not_measured``; the tables print "not measured" there): the held figures when the subject held
    none of its clients at the end of idle-held (``held``, the runner's account of it), when its process
    tree changed between the ends of idle-empty and idle-held (a difference of two trees is no
    connection's cost), or when the process measured changed then (a daemon followed after its starter
    exited in ``daemon_phase``); the load figures when the load phase answered no request. A subject
    that held some but not all of its clients has held figures: they divide by ``held_count``."""
    reasons: dict[str, str] = {}
    # Within these three phases the held figures' two ends (idle-empty's, idle-held's) are taken.
    spanning = [change for change in changes or ()
                if set(change["phase"].split(" or ")) & {IDLE_EMPTY, RAMP, IDLE_HELD}]
    if spanning:
        said = ", ".join(f"process {change['pid']} ({change['name']}) {change['event']} during {change['phase']}"
                         for change in spanning[:3])
        why = f"the process tree changed between the ends of {IDLE_EMPTY} and {IDLE_HELD}: {said}"
        reasons.update({key: why for key in HELD_FIGURES})
    if daemon_phase is not None:
        why = (f"the process measured changed in phase {daemon_phase} (its starter exited and left a daemon), "
               f"between the ends of {IDLE_EMPTY} and {IDLE_HELD}")
        reasons.update({key: why for key in HELD_FIGURES})
    if held is not None and not held_count:
        why = held.get("not_held") or f"it held none of its {held.get('asked')} clients at the end of {IDLE_HELD}"
        reasons.update({key: why for key in HELD_FIGURES})
    loaded = load.get(LOAD) or {}
    if loaded and not loaded.get("requests"):
        why = (f"the load phase answered no request: {loaded.get('connections_open', 0)} clients were open "
               f"during it ({loaded.get('connections_opened', 0)} opened, {loaded.get('connections_closed', 0)} "
               f"closed, {errors_text(loaded)})")
        reasons.update({key: why for key in LOAD_FIGURES})
    return reasons


def tree_summary(process_rows: list[tuple], phases: list[Phase]) -> dict[str, Any]:
    """Per process, its memory at the last full sample of each phase (RSS, USS, PSS, RssAnon,
    RssFile, RssShmem; the last before the phase's end when none fell inside it), and the tree's
    totals: what ``processes.csv`` holds, at the phase ends."""
    by_phase: dict[str, dict[str, Any]] = {}
    for phase in phases:
        inside = [row for row in process_rows if phase.start_s <= row[0] <= phase.end_s]
        if not inside:  # a phase shorter than the full samples' period: the last sample before its end
            before = [row for row in process_rows if row[0] <= phase.end_s]
            inside = [row for row in before if row[0] == before[-1][0]] if before else []
        if not inside:
            continue
        last_time = {}
        for row in inside:
            last_time[row[1]] = row
        processes = [dict(zip(PROCESS_COLUMNS[1:], row[1:])) for row in last_time.values()]
        totals = {column: sum(p[column] for p in processes) for column in PROCESS_COLUMNS[4:]}
        by_phase[phase.name] = {"processes": processes, "total": totals}
    pids = sorted({row[1] for row in process_rows})
    return {"processes_seen": len(pids), "phase_end": by_phase}


def outcomes_text(reply: dict[str, Any]) -> str:
    """What a ramp's clients saw, as text: its connect errors and how its connections ended."""
    parts = [f"{kind} {count}" for kind, count in sorted((reply.get("errors") or {}).items())]
    parts += [f"{kind} {entry['count']}" for kind, entry in sorted((reply.get("ended") or {}).items())]
    return ", ".join(parts) or "no client saw anything"


def _ended_detail(entry: dict[str, Any]) -> str:
    """`` (after 1 request, 0.0-0.1 s after it)`` for an outcome with requests and idle times."""
    if "requests_min" not in entry:
        return ""
    low, high = entry["requests_min"], entry["requests_max"]
    requests = f"{low}" if low == high else f"{low}-{high}"
    idle = f"{entry['idle_s_min']:.1f}" if round(entry["idle_s_min"], 1) == round(entry["idle_s_max"], 1) \
        else f"{entry['idle_s_min']:.1f}-{entry['idle_s_max']:.1f}"
    since = "after it" if high else "after its connect"
    return f" (after {requests} response{'' if high == 1 else 's'}, {idle} s {since})"
