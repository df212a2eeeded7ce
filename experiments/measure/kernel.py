"""The kernel's memory for a subject's connections, which no probe inside the process sees and RSS
does not count: each TCP socket's buffers as ``ss -tmi`` reports them (``skmem``), and the machine's
TCP memory in /proc/net/sockstat.

Rules: read from outside, at phase ends, never from the subject. ``skmem`` fields (bytes): ``r``
receive queue (rmem_alloc), ``t`` transmit in flight (wmem_alloc), ``f`` forward allocation (memory
charged to the socket ahead of use), ``w`` queued for sending (wmem_queued, which holds ``t``), ``o``
options, ``bl`` backlog; a socket's charge is ``r + w + f + o + bl``. Only the subject's side is
counted: established sockets whose local port is the one it listens on. sockstat's ``mem`` (pages)
is the whole machine's TCP memory, the load generator's sockets included, so it is recorded as is,
beside. Each socket also costs its ``struct tcp_sock``, an object of the kernel's ``TCP`` slab cache
(/proc/slabinfo: its size, e.g. 2,368 B). ``ss`` comes with iproute2 (``make system-deps``); without
it the per-socket figures are None.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .procfs import PAGE_SIZE

#: ``skmem:(r0,rb131072,t0,tb16384,f0,w0,o0,bl0,d0)``: each field's name and value.
_SKMEM_FIELD = re.compile(r"([a-z]+)(\d+)")
#: The fields that are memory charged to a socket (see the module's rules).
CHARGED_FIELDS = ("r", "w", "f", "o", "bl")


def parse_skmem(text: str) -> list[dict[str, int]]:
    """Every ``skmem:(...)`` of an ``ss -m`` output, as ``{field: bytes}``."""
    sockets = []
    for match in re.finditer(r"skmem:\(([^)]*)\)", text):
        sockets.append({name: int(value) for name, value in _SKMEM_FIELD.findall(match.group(1))})
    return sockets


def socket_memory(port: int) -> dict[str, Any]:
    """The subject's established TCP sockets on ``port``: how many, and their summed charge in bytes
    (``skmem_bytes``; None when ``ss`` is absent or fails)."""
    ss = shutil.which("ss") or shutil.which("ss", path="/usr/sbin:/sbin:/usr/bin")
    if ss is None:
        return {"sockets": None, "skmem_bytes": None, "note": "ss (iproute2) is not installed"}
    result = subprocess.run([ss, "-tmnH", "state", "established", f"( sport = :{port} )"],
                            capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        return {"sockets": None, "skmem_bytes": None, "note": f"ss failed: {result.stderr.strip()[:200]}"}
    sockets = parse_skmem(result.stdout)
    return {"sockets": len(sockets),
            "skmem_bytes": sum(sum(one.get(field, 0) for field in CHARGED_FIELDS) for one in sockets)}


def tcp_slab(path: Path = Path("/proc/slabinfo")) -> dict[str, int] | None:
    """The kernel's ``TCP`` slab cache (one ``struct tcp_sock`` per TCP socket, every socket of the
    machine): ``active_objects`` and ``object_bytes``; None when /proc/slabinfo is unreadable (it is
    root's only) or has no such cache."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if fields and fields[0] == "TCP":
            return {"active_objects": int(fields[1]), "object_bytes": int(fields[3])}
    return None


def describe(port: int) -> dict[str, Any]:
    """What :func:`socket_memory`, :func:`tcp_sockstat` and :func:`tcp_slab` read now."""
    return {**socket_memory(port), "sockstat": tcp_sockstat(), "tcp_slab": tcp_slab()}


def listen_overflows(path: Path = Path("/proc/net/netstat")) -> int | None:
    """The machine's count of connections dropped because a listen queue was full (TcpExt
    ``ListenOverflows``, since boot); None when it cannot be read."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[0::2], lines[1::2]):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            fields = dict(zip(names.split()[1:], values.split()[1:]))
            return int(fields["ListenOverflows"]) if "ListenOverflows" in fields else None
    return None


def tcp_sockstat(path: Path = Path("/proc/net/sockstat")) -> dict[str, int]:
    """The machine's TCP line of /proc/net/sockstat: sockets in use, allocated, and ``mem_bytes``
    (its ``mem`` pages in bytes)."""
    for line in path.read_text().splitlines():
        if line.startswith("TCP:"):
            words = line.split()[1:]
            values = dict(zip(words[0::2], (int(word) for word in words[1::2])))
            return {"inuse": values.get("inuse", 0), "alloc": values.get("alloc", 0),
                    "mem_bytes": values.get("mem", 0) * PAGE_SIZE}
    return {}
