"""Reading another process from /proc without touching it: its memory, its sockets, its listening port.

Linux only (the bench measures Linux servers). Sizes are bytes.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

#: ``st`` of a socket in LISTEN state in /proc/net/tcp.
_TCP_LISTEN = "0A"
#: Fields of /proc/PID/status read by :func:`memory_status`, in kB there, and their names here.
_STATUS_FIELDS = {"VmRSS": "rss_bytes", "RssAnon": "anon_bytes", "RssFile": "file_bytes", "RssShmem": "shmem_bytes"}


class ProcessGone(Exception):
    """The process exited while being read."""


def memory_status(pid: int) -> dict[str, int]:
    """``rss_bytes`` (VmRSS), ``anon_bytes`` (RssAnon: heap, stacks, anonymous mappings),
    ``file_bytes`` (RssFile: mapped files such as shared libraries) and ``shmem_bytes``, from
    /proc/PID/status."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(f"process {pid} has exited") from None
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in _STATUS_FIELDS:
            values[_STATUS_FIELDS[key]] = int(rest.split()[0]) * 1024
    if "rss_bytes" not in values:  # a zombie has no memory lines
        raise ProcessGone(f"process {pid} has exited")
    return values


def sample_memory(pid: int, samples: int = 5, interval_s: float = 0.1) -> dict[str, int]:
    """The median of each :func:`memory_status` field over ``samples`` reads ``interval_s`` apart."""
    reads = []
    for index in range(samples):
        if index:
            time.sleep(interval_s)
        reads.append(memory_status(pid))
    return {key: int(statistics.median(read[key] for read in reads if key in read))
            for key in reads[0]}


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` has open (from its /proc/PID/fd links)."""
    fd_dir = f"/proc/{pid}/fd"
    inodes = set()
    try:
        names = os.listdir(fd_dir)
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(f"process {pid} has exited") from None
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def socket_count(pid: int) -> int:
    """How many sockets process ``pid`` has open (listening, connected, internal pairs)."""
    return len(socket_inodes(pid))


def parse_listening(table: str) -> dict[int, int]:
    """``{inode: port}`` of the LISTEN sockets in the text of /proc/net/tcp or /proc/net/tcp6."""
    listening = {}
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[3] == _TCP_LISTEN:
            port = int(fields[1].rsplit(":", 1)[1], 16)
            listening[int(fields[9])] = port
    return listening


def listening_ports(pid: int) -> set[int]:
    """TCP ports on which process ``pid`` has a socket in LISTEN state."""
    inodes = socket_inodes(pid)
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            text = Path(f"/proc/{pid}/net/{table}").read_text()
        except FileNotFoundError:
            continue  # no IPv6 in this kernel
        ports.update(port for inode, port in parse_listening(text).items() if inode in inodes)
    return ports
