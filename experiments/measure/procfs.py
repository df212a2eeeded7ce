"""Reading another process from /proc without touching it: its memory, CPU time, descriptors, sockets,
listening ports and children; and the machine's memory (/proc/meminfo). memdiet's one /proc reader,
with :mod:`server.procfs`.

The root (opening a /proc file, :class:`ProcessGone`, the RSS read) is :mod:`server.procfs`,
re-exported here: the server reads its own RSS with the same code and may import only the standard
library and itself, and only what it needs (its idle heap is measured). Everything the measuring
side reads beyond that is here: the runner (CPU time), the bench (memory, sockets, ports), the
launcher (listening ports of a process tree), the RSS sampler (RSS, USS, PSS) and the tests.

Rules: Linux only. A ``pid`` is a process id or ``"self"``. Sizes in bytes, times in seconds. A
process that has exited raises :class:`ProcessGone` (an OSError). Each function is one read, except
:func:`sample_memory`, the one that measures over time.
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

from server.procfs import PAGE_SIZE, ProcessGone, read_proc, rss_bytes

__all__ = [
    "CLOCK_TICKS", "PAGE_SIZE", "TCP_LISTEN", "ProcessGone", "TcpSocket", "cpu_seconds", "fd_count",
    "Mapping", "listening_ports", "listening_sockets", "memory_status", "parse_smaps", "smaps", "thread_stack_pointers", "smaps_rollup", "parent_pids", "parse_listening", "parse_tcp_table", "process_tree",
    "meminfo_bytes", "parent_and_name", "read_proc", "rss_bytes", "sample_memory", "socket_count", "socket_inodes", "tcp_sockets",
    "thread_ids", "tree_state", "TreeState", "uss_pss_bytes", "TCP_ESTABLISHED", "established_on_port", "process_ids",
    "session_and_group", "start_time", "listener_owners",
]

#: Units of the CPU times in /proc/PID/stat, per second.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: ``st`` of a socket in LISTEN state in /proc/net/tcp.
TCP_LISTEN = 0x0A
#: ``st`` of an established connection in /proc/net/tcp.
TCP_ESTABLISHED = 0x01
#: Fields of /proc/PID/status read by :func:`memory_status`, in kB there, and their names here.
_STATUS_FIELDS = {"VmRSS": "rss_bytes", "RssAnon": "anon_bytes", "RssFile": "file_bytes", "RssShmem": "shmem_bytes"}


def _list_proc(pid: int | str, name: str) -> list[str]:
    """The entries of the folder /proc/PID/NAME (fd, task)."""
    try:
        return os.listdir(f"/proc/{pid}/{name}")
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(f"process {pid} has exited") from None


def _stat_fields(pid: int | str, name: str = "stat") -> list[bytes]:
    """The fields of /proc/PID/stat (or task/TID/stat) after the command name, which may hold spaces:
    ``[0]`` is the state, ``[1]`` the parent pid, ``[11]`` and ``[12]`` user and system CPU ticks."""
    return read_proc(pid, name).rsplit(b")", 1)[1].split()


# --- memory ----------------------------------------------------------------------------------------
def uss_pss_bytes(pid: int | str) -> tuple[int, int]:
    """``(USS, PSS)``, as psutil's ``memory_full_info()`` reads them: USS, the pages only this process
    maps (the ``Private_*`` lines), and PSS, its pages each divided by the processes sharing them. From
    /proc/PID/smaps_rollup (summed by the kernel, ~1.5 ms for 400 MB), or smaps before Linux 4.14."""
    try:
        text = read_proc(pid, "smaps_rollup")
    except ProcessGone:
        if not os.path.exists(f"/proc/{pid}"):
            raise
        text = read_proc(pid, "smaps")
    uss = pss = 0
    for line in text.splitlines():
        if line.startswith(b"Private_"):  # Private_Clean, Private_Dirty, Private_Hugetlb
            uss += int(line.split()[1]) * 1024
        elif line.startswith(b"Pss:"):
            pss += int(line.split()[1]) * 1024
    return uss, pss


#: Lines of /proc/PID/smaps_rollup read by :func:`smaps_rollup`, in kB there, and their names here.
_ROLLUP_FIELDS = {b"Rss:": "rss_bytes", b"Pss:": "pss_bytes", b"Pss_Anon:": "pss_anon_bytes",
                  b"Pss_File:": "pss_file_bytes", b"Pss_Shmem:": "pss_shmem_bytes", b"Anonymous:": "anon_bytes",
                  b"Swap:": "swap_bytes"}


def smaps_rollup(pid: int | str) -> dict[str, int]:
    """One read of /proc/PID/smaps_rollup: ``rss_bytes``, ``pss_bytes`` (and its anonymous, file and
    shmem parts, Linux 5.9+), ``uss_bytes`` (the ``Private_*`` lines), ``anon_bytes`` (anonymous
    pages), ``swap_bytes``; with /proc/PID/status's split of RSS: ``rss_anon_bytes``,
    ``rss_file_bytes``, ``rss_shmem_bytes`` (RssAnon, RssFile, RssShmem)."""
    text = read_proc(pid, "smaps_rollup")
    values = {"uss_bytes": 0}
    for line in text.splitlines():
        key = line.split(None, 1)[0] if line else b""
        if key.startswith(b"Private_"):
            values["uss_bytes"] += int(line.split()[1]) * 1024
        elif key in _ROLLUP_FIELDS:
            values[_ROLLUP_FIELDS[key]] = int(line.split()[1]) * 1024
    status = memory_status(pid)
    values.update(rss_anon_bytes=status.get("anon_bytes", 0), rss_file_bytes=status.get("file_bytes", 0),
                  rss_shmem_bytes=status.get("shmem_bytes", 0))
    return values


class Mapping(NamedTuple):
    """One mapping of /proc/PID/smaps: its address range ``[start, end)``, ``perms`` (``rw-p``...),
    ``inode`` (0: anonymous), ``path`` (a file, ``[heap]``, ``[stack]``..., or empty), and its pages:
    ``size_bytes`` (address space), ``rss_bytes`` (resident), ``anon_bytes`` (resident anonymous
    pages: in a file mapping, the ones the process wrote, .data and .bss)."""

    start: int
    end: int
    perms: str
    inode: int
    path: str
    size_bytes: int
    rss_bytes: int
    anon_bytes: int


def parse_smaps(text: str) -> list[Mapping]:
    """Every mapping of an /proc/PID/smaps text (see :class:`Mapping`)."""
    mappings: list[Mapping] = []
    header: list[str] | None = None
    fields: dict[str, int] = {}

    def close() -> None:
        if header is not None:
            start, end = (int(address, 16) for address in header[0].split("-"))
            mappings.append(Mapping(start, end, header[1], int(header[4]), header[5] if len(header) > 5 else "",
                                    fields.get("Size", 0), fields.get("Rss", 0), fields.get("Anonymous", 0)))

    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if " " not in name and rest.endswith(" kB"):
            fields[name] = int(rest.split()[0]) * 1024
        elif "-" in line.split(" ", 1)[0] and not line.endswith(" kB"):
            close()
            header, fields = line.split(None, 5), {}
    close()
    return mappings


def smaps(pid: int | str) -> list[Mapping]:
    """One read of /proc/PID/smaps: every mapping with its pages (:class:`Mapping`)."""
    return parse_smaps(read_proc(pid, "smaps").decode(errors="replace"))


def thread_stack_pointers(pid: int | str) -> dict[int, int | None]:
    """Each thread's stack pointer, from /proc/PID/task/TID/syscall (the second-to-last field while it
    waits in a system call; /proc/PID/task/TID/stat's ``kstkesp`` otherwise, 0 on most kernels):
    None when neither tells (a thread running, or the file unreadable)."""
    pointers: dict[int, int | None] = {}
    for tid in thread_ids(pid):
        pointer = None
        try:
            fields = read_proc(pid, f"task/{tid}/syscall").split()
            if fields and fields[0] != b"running" and len(fields) >= 3:
                pointer = int(fields[-2], 16)
            if not pointer:
                pointer = int(_stat_fields(pid, f"task/{tid}/stat")[26]) or None
        except (OSError, ValueError, IndexError):
            pointer = None
        pointers[tid] = pointer
    return pointers


def memory_status(pid: int | str) -> dict[str, int]:
    """``rss_bytes`` (VmRSS), ``anon_bytes`` (RssAnon: heap, stacks, anonymous mappings),
    ``file_bytes`` (RssFile: mapped files such as shared libraries) and ``shmem_bytes``, from
    /proc/PID/status."""
    values: dict[str, int] = {}
    for line in read_proc(pid, "status").decode().splitlines():
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


# --- CPU time ----------------------------------------------------------------------------------------
def cpu_seconds(pid: int | str, thread: int | None = None) -> float:
    """User plus system CPU seconds used so far, from /proc/PID/stat: the whole process (every thread,
    exited ones included), or with ``thread`` only that thread (/proc/PID/task/TID/stat; the main
    thread's id is the pid)."""
    fields = _stat_fields(pid, "stat" if thread is None else f"task/{thread}/stat")
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# --- descriptors and sockets -------------------------------------------------------------------------
def fd_count(pid: int | str) -> int:
    """How many file descriptors the process holds."""
    return len(_list_proc(pid, "fd"))


def socket_inodes(pid: int | str) -> set[int]:
    """Inodes of the sockets the process has open (from its /proc/PID/fd links)."""
    inodes = set()
    for name in _list_proc(pid, "fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def socket_count(pid: int | str) -> int:
    """How many sockets the process has open (listening, connected, internal pairs)."""
    return len(socket_inodes(pid))


class TcpSocket(NamedTuple):
    """One row of /proc/net/tcp: ports, ``state`` (``TCP_LISTEN``...), bytes written and not yet
    acknowledged by the peer's kernel (``tx_queue``), the socket's inode and its local address
    (``127.0.0.1``, ``::``...)."""

    local_port: int
    remote_port: int
    state: int
    tx_queue_bytes: int
    inode: int
    local_address: str = ""


def parse_tcp_table(text: str) -> list[TcpSocket]:
    """The rows of a /proc/net/tcp or /proc/net/tcp6 text."""
    rows = []
    for line in text.splitlines()[1:]:  # after the header line
        fields = line.split()
        if len(fields) > 9:
            address, _, port = fields[1].rpartition(":")
            rows.append(TcpSocket(int(port, 16), int(fields[2].rsplit(":", 1)[1], 16),
                                  int(fields[3], 16), int(fields[4].split(":")[0], 16), int(fields[9]),
                                  _address(address)))
    return rows


def _address(hex_address: str) -> str:
    """An address as /proc/net/tcp{,6} writes it (32-bit words in host order) in its usual text."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] if sys.byteorder == "little" else raw[i:i + 4] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(words) == 4 else socket.AF_INET6, words)


def tcp_sockets(pid: int | str = "self", ipv6: bool = False) -> list[TcpSocket]:
    """The TCP sockets of the process's network namespace (every process's, not only its own):
    /proc/PID/net/tcp, or tcp6 (empty when the kernel has no IPv6)."""
    try:
        text = read_proc(pid, "net/tcp6" if ipv6 else "net/tcp")
    except ProcessGone:
        if ipv6 and os.path.exists(f"/proc/{pid}"):
            return []
        raise
    return parse_tcp_table(text.decode())


def parse_listening(table: str) -> dict[int, int]:
    """``{inode: port}`` of the LISTEN sockets in the text of /proc/net/tcp or /proc/net/tcp6."""
    return {row.inode: row.local_port for row in parse_tcp_table(table) if row.state == TCP_LISTEN}


def listening_ports(pid: int, descendants: bool = False) -> set[int]:
    """TCP ports on which the process (with ``descendants``, or any process it started, and theirs)
    has a socket in LISTEN state."""
    return {port for _address, port in listening_sockets(pid, descendants)}


def listening_sockets(pid: int, descendants: bool = False) -> set[tuple[str, int]]:
    """``(address, port)`` of each TCP socket in LISTEN state the process (with ``descendants``, or any
    process below it) holds: ``("127.0.0.1", 8000)``, ``("::", 8000)``."""
    inodes = set()
    for member in process_tree(pid) if descendants else [pid]:
        try:
            inodes |= socket_inodes(member)
        except ProcessGone:
            if member == pid:
                raise
    return {(row.local_address, row.local_port) for ipv6 in (False, True) for row in tcp_sockets(pid, ipv6)
            if row.state == TCP_LISTEN and row.inode in inodes}


def established_on_port(pids: list[int], port: int) -> int:
    """How many established TCP connections on local ``port`` the processes ``pids`` hold open (each
    socket once, however many of them share it): a server's own count of the clients it holds. A
    connection the kernel completed but the server never accepted is in no process's descriptors, so
    it is not counted. Processes that exited meanwhile are skipped."""
    inodes: set[int] = set()
    for pid in pids:
        try:
            inodes |= socket_inodes(pid)
        except ProcessGone:
            continue
    where = next((pid for pid in pids if os.path.exists(f"/proc/{pid}")), "self")
    return sum(1 for ipv6 in (False, True) for row in tcp_sockets(where, ipv6)
               if row.state == TCP_ESTABLISHED and row.local_port == port and row.inode in inodes)


def listener_owners(port: int, candidates: list[int]) -> list[int]:
    """Those of ``candidates`` that hold a socket listening on ``port``."""
    listening = {row.inode for ipv6 in (False, True) for row in tcp_sockets("self", ipv6)
                 if row.state == TCP_LISTEN and row.local_port == port}
    owners = []
    for pid in candidates:
        try:
            if socket_inodes(pid) & listening:
                owners.append(pid)
        except ProcessGone:
            continue
    return owners


# --- processes -----------------------------------------------------------------------------------------
def process_ids() -> list[int]:
    """Every process's pid, from /proc."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def session_and_group(pid: int | str) -> tuple[int, int]:
    """The session id and the process group id of a process (/proc/PID/stat)."""
    fields = _stat_fields(pid)
    return int(fields[3]), int(fields[2])


def start_time(pid: int | str) -> int:
    """When the process started, in clock ticks since boot: with its pid, it names one process
    (a pid can be reused, never with the same start time)."""
    return int(_stat_fields(pid)[19])
def thread_ids(pid: int | str) -> list[int]:
    """The ids of the process's threads (the main thread's is the pid), from /proc/PID/task."""
    return [int(name) for name in _list_proc(pid, "task")]


def parent_pids() -> dict[int, int]:
    """``{pid: parent pid}`` of every process, from each /proc/PID/stat."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parents[int(name)] = int(_stat_fields(name)[1])
            except (ProcessGone, IndexError, ValueError):  # exited meanwhile
                continue
    return parents


def parent_and_name(pid: int | str) -> tuple[int, str]:
    """The parent pid and the command name (/proc/PID/comm) of a process."""
    stat = read_proc(pid, "stat")
    name = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
    return int(stat.rsplit(b")", 1)[1].split()[1]), name


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (children, their children...), parents first."""
    children: dict[int, list[int]] = {}
    for child, parent in parent_pids().items():
        children.setdefault(parent, []).append(child)
    tree = [pid]
    for member in tree:  # grows while it is walked: breadth first
        tree.extend(sorted(children.get(member, ())))
    return tree


class TreeState(NamedTuple):
    """What a process tree is at one moment: its ``pids`` (root first), its threads per process, its RSS
    summed (statm) and its CPU seconds summed (user + system, every thread). Processes that exited
    while it was read are left out."""

    pids: tuple[int, ...]
    threads: tuple[int, ...]
    rss_bytes: int
    cpu_s: float


def tree_state(pid: int) -> TreeState:
    """The tree below ``pid`` now (:class:`TreeState`); raises :class:`ProcessGone` when ``pid`` has exited."""
    pids, threads, rss, cpu = [], [], 0, 0.0
    for member in process_tree(pid):
        try:
            member_threads, member_rss, member_cpu = len(thread_ids(member)), rss_bytes(member), cpu_seconds(member)
        except (ProcessGone, PermissionError):
            if member == pid:
                raise ProcessGone(f"process {pid} has exited") from None
            continue
        pids.append(member)
        threads.append(member_threads)
        rss += member_rss
        cpu += member_cpu
    return TreeState(tuple(pids), tuple(threads), rss, cpu)


def meminfo_bytes(field: str, meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The machine's ``field`` of /proc/meminfo (``MemTotal``, ``MemAvailable``...) in bytes; None
    when the file or the field cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
