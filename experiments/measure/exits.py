"""Who of the subject's processes died, when, and how: from the kernel, not guessed.

A pre-fork server's master reaps its workers, so memdiet (not their parent) cannot wait for them; the
kernel's process connector (netlink NETLINK_CONNECTOR, CN_IDX_PROC; root, or CAP_NET_ADMIN) reports
every process's exit with its wait status and the time, and :class:`ExitWatcher` keeps them while a run
lasts. :func:`deaths` then joins each process the sampler saw end (``process_tree.changes``) with its
exit (the signal that killed it, or its exit code), the phase it died in on the run's clock, and the
clients the load generator saw end right after it (``closed_early``, counted in the ramp and idle-held: None in
another phase): what was seen, and a cause only where that names one.

Rules: it only listens (no process is touched); where the kernel refuses the socket, ``error`` says why
and the deaths are recorded without their status ("not seen"). The kernel's timestamps are
CLOCK_MONOTONIC nanoseconds, the clock of :func:`time.monotonic`. Bounded: at most
:data:`MAX_EXITS` exits are kept (the oldest dropped).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
from collections import OrderedDict
from typing import Any, Sequence

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_EXIT = 0x80000000
_NLMSG = struct.Struct("=IHHII")      # nlmsghdr: len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")    # cn_msg: idx, val, seq, ack, len, flags
_EVENT = struct.Struct("=IIQ")        # proc_event: what, cpu, timestamp_ns
_EXIT = struct.Struct("=IIII")        # exit_proc_event: pid, tgid, exit_code (wait status), exit_signal
#: Exits kept at most (a machine busy with other work exits many processes).
MAX_EXITS = 20000
#: Seconds after a death within which clients the load generator saw end count as lost with it: the held
#: phase looks at the clients every 0.25 s (runner.HELD_POLL_S), and a reset takes a look or two to show.
LOST_WITHIN_S = 1.0
#: The phases whose clients' ends the runner counts as they happen (its ``closed_early``).
COUNTED_PHASES = {"ramp", "idle-held"}


class ExitWatcher:
    """Every process exit the kernel reports while it runs: ``{pid: (monotonic s, wait status)}``."""

    __slots__ = ("_socket", "_thread", "_exits", "_lock", "_stop", "error")

    def __init__(self) -> None:
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._exits: OrderedDict[int, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        #: Why exits cannot be seen (the kernel refused the connector), or None.
        self.error: str | None = None

    def start(self) -> None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
            sock.bind((0, CN_IDX_PROC))
            body = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, 4, 0) + struct.pack("=I", PROC_CN_MCAST_LISTEN)
            sock.send(_NLMSG.pack(_NLMSG.size + len(body), 3, 0, 0, 0) + body)  # 3: NLMSG_DONE
            sock.settimeout(0.2)
        except (OSError, AttributeError) as error:  # AttributeError: no AF_NETLINK (not Linux)
            self.error = f"the kernel's process connector could not be opened ({error}): exit statuses not seen"
            return
        self._socket = sock
        self._thread = threading.Thread(target=self._listen, name="memdiet-exits", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        assert self._socket is not None
        while not self._stop.is_set():
            try:
                data = self._socket.recv(65536)
            except socket.timeout:
                continue
            except OSError as error:  # ENOBUFS: events dropped under a burst; go on listening
                if self._stop.is_set():
                    return
                self.error = self.error or f"some exits were not seen ({error})"
                continue
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length = _NLMSG.unpack_from(data, offset)[0]
                start = offset + _NLMSG.size + _CN_MSG.size
                if length < _NLMSG.size or start + _EVENT.size + _EXIT.size > len(data):
                    break
                what, _cpu, stamp_ns = _EVENT.unpack_from(data, start)
                if what == PROC_EVENT_EXIT:
                    pid, tgid, status, _signal = _EXIT.unpack_from(data, start + _EVENT.size)
                    if pid == tgid:  # a process, not one of its threads
                        with self._lock:
                            self._exits[pid] = (stamp_ns / 1e9, status)
                            while len(self._exits) > MAX_EXITS:
                                self._exits.popitem(last=False)
                offset += (length + 3) & ~3

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._socket is not None:
            self._socket.close()

    def exit_of(self, pid: int) -> tuple[float, int] | None:
        """(monotonic seconds, wait status) of ``pid``'s exit, or None when none was seen."""
        with self._lock:
            return self._exits.get(pid)


def status_text(status: int) -> dict[str, Any]:
    """A wait status as ``{signal, exit_code, core_dumped}``: ``signal`` the name of the signal that
    killed it (None when it exited), ``exit_code`` the code it exited with (None when killed)."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return {"signal": name, "exit_code": None, "core_dumped": os.WCOREDUMP(status)}
    return {"signal": None, "exit_code": os.WEXITSTATUS(status), "core_dumped": False}


def deaths(changes: Sequence[dict[str, Any]], watcher: ExitWatcher | None, t0: float,
           phases: Sequence[Any], closed_early: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each process of the subject's tree that ended while the phases ran (``changes``' ``ended``
    entries), with what was seen: ``{pid, name, phase, time_s, signal, exit_code, core_dumped,
    clients_lost, lost_how, seen}``; ``time_s`` and ``phase`` from the kernel's exit time (run clock,
    ``t0`` its start) where it reported one, else the sampler's looks; ``clients_lost`` the clients the
    load generator saw end within :data:`LOST_WITHIN_S` after it (``closed_early``, idle-held and ramp)."""
    out = []
    for change in changes:
        if change.get("event") != "ended":
            continue
        seen = watcher.exit_of(change["pid"]) if watcher is not None else None
        entry: dict[str, Any] = {"pid": change["pid"], "name": change["name"]}
        if seen is not None:
            time_s = seen[0] - t0
            phase = next((p.name for p in phases if p.start_s <= time_s <= p.end_s), change["phase"])
            entry.update(phase=phase, time_s=round(time_s, 3), **status_text(seen[1]),
                         seen="the kernel's exit event (process connector)")
        else:
            low, high = change["between_s"]
            time_s = high
            entry.update(phase=change["phase"], time_s=round(low, 3), signal=None, exit_code=None, core_dumped=None,
                         seen="the sampler's looks at the tree: its exit status was not seen"
                         + (f" ({watcher.error})" if watcher is not None and watcher.error else ""))
        if not set(str(entry["phase"]).split(" or ")) & COUNTED_PHASES:
            entry.update(clients_lost=None, lost_how=None)  # the clients' ends are counted in those phases only
            out.append(entry)
            continue
        lost = [event for event in closed_early if time_s - 0.05 <= event["time_s"] <= time_s + LOST_WITHIN_S]
        entry["clients_lost"] = sum(int(event["closed"]) for event in lost)
        how: dict[str, int] = {}
        for event in lost:
            for kind, ended in (event.get("how") or {}).items():
                how[kind] = how.get(kind, 0) + int(ended.get("count", 0))
        entry["lost_how"] = how
        out.append(entry)
    return out


def death_text(death: dict[str, Any]) -> str:
    """One death as a phrase: ``process 123 (gunicorn) died in idle-held at 4.21 s, killed by SIGKILL;
    20 clients ended within 1 s after it``."""
    if death.get("signal"):
        how = f"killed by {death['signal']}" + (" (core dumped)" if death.get("core_dumped") else "")
    elif death.get("exit_code") is not None:
        how = f"exited with code {death['exit_code']}"
    else:
        how = "its exit status not seen"
    lost = death.get("clients_lost")
    said = f"process {death['pid']} ({death['name']}) died in {death['phase']} at {death['time_s']:.2f} s, {how}; "
    if lost is None:
        return said + f"the clients that ended with it are counted in {' and '.join(sorted(COUNTED_PHASES))} only"
    return said + (f"{lost} client{'' if lost == 1 else 's'} ended within {LOST_WITHIN_S:g} s after it"
                   if lost else f"no client ended within {LOST_WITHIN_S:g} s after it")
