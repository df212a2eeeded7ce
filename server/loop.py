"""The event loop: epoll, accept, resume coroutines, expire idle connections.

It knows nothing of layouts beyond the :class:`~server.layouts.base.ConnectionTable` interface, and
nothing of HTTP beyond starting :func:`~server.connection.serve_connection` for a connection.

Connections are registered edge-triggered for input and output once, when accepted (as Lwan does), so
the loop makes no ``epoll_ctl`` call per request. A coroutine only waits once its socket is known to be
empty (it said ``EAGAIN``, or a read came back short and no FIN was announced), so no edge is missed;
the loop hands it the event mask that woke it for that (see :mod:`server.connection`). The one
exception is ``RUNNABLE`` (a pipelined request is already buffered): the loop resumes that coroutine
on its next turn without waiting for an event, with a mask of 0.
"""

from __future__ import annotations

import errno
import os
import resource
import select
import signal
import socket
import sys
import time
import traceback
from collections import deque
from typing import Any

from . import procfs
from .connection import PARK, RUNNABLE, serve_connection
from .http import build_response
from .deathqueue import CLOCK_MODULUS, DeathQueue
from .descriptors import held_fds_below
from .layouts.base import ALIVE, ConnectionTable

_EPOLL_CONNECTION = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
#: Connections accepted per readiness event before the loop serves others (fairness under a ramp).
_ACCEPT_BATCH = 256
#: Accept errors that mean "out of descriptors or memory": stop accepting until a connection closes.
_RESOURCE_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))

#: Sent to a connection whose fd has no slot (table full), before it is closed.
RESPONSE_TABLE_FULL = build_response(
    503, b"connection table full\n", keep_alive=False, extra_headers=((b"Retry-After", b"1"),)
)


def loopback_addresses() -> frozenset[str]:
    """Client addresses ``/__stats`` answers by default: IPv4 loopback (the whole 127.0.0.0/8 network,
    as README's "loopback clients" reads) and IPv6 loopback (``::1``); entries are addresses or
    networks, matched by :func:`server.handlers.client_allowed`."""
    return frozenset(("127.0.0.0/8", "::1"))


class Server:
    """An HTTP/1.1 server over one connection table.

    ``keep_alive_timeout`` is in seconds: a connection that is idle, or that has not completed a
    request, that long after its last response (or its accept) is closed. ``max_body_bytes`` bounds
    request bodies (413 beyond). ``local_addresses`` are the client addresses ``/__stats`` serves.
    """

    def __init__(
        self,
        table: ConnectionTable,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        keep_alive_timeout: float = 15.0,
        max_body_bytes: int = 1 << 20,
        local_addresses: frozenset[str] | None = None,
        log=None,
    ) -> None:
        self.table = table
        self.keep_alive_ms = max(1, int(keep_alive_timeout * 1000))
        #: Deadlines are rounded up to a multiple of this many ms (1/32 of the timeout, within
        #: 1..1000 ms; Lwan counts its death queue in whole seconds). A connection may so live up
        #: to one tick past its timeout, never less; in exchange a busy connection refreshed again
        #: within the same tick keeps its place in the expiry queue (see DeathQueue.refresh).
        self.deadline_tick_ms = min(max(1, self.keep_alive_ms // 32), 1000)
        self.max_body_bytes = max_body_bytes
        self.local_addresses = local_addresses if local_addresses is not None else loopback_addresses()
        self.log_stream = log if log is not None else sys.stderr
        self.deathqueue = DeathQueue(table)
        #: Number of connections holding a slot.
        self.open_connections = 0
        #: Connections refused with 503 because their fd had no slot.
        self.refused_connections = 0
        self.running = False
        #: Set by :meth:`stop` and SIGTERM/SIGINT, and kept: a stop asked before serve_forever
        #: starts (a runner that refuses the run as soon as the server listens) must still stop it.
        self._stop_requested = False
        self.date = b""
        self._date_second = -1
        self._started = time.monotonic()
        self._accept_paused = False
        self._logged_once: set[str] = set()
        #: Deadline of a connection that makes progress in this turn of the loop, in ms.
        self._turn_deadline_ms = self._deadline_from(self.now_ms())
        #: fds whose coroutine yielded RUNNABLE: resumed on the next turn of the loop, without an event.
        self._runnable: deque[int] = deque()

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, port), family=family, backlog=4096)
        self.listener.setblocking(False)
        # Accepted sockets inherit TCP_NODELAY on Linux: pipelined responses go out without waiting
        # for the peer's delayed ACK.
        self.listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.address = self.listener.getsockname()[:2]
        self.epoll = select.epoll()
        self.epoll.register(self.listener.fileno(), select.EPOLLIN)
        # Signals wake epoll through this pair; the handlers only set flags.
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self.epoll.register(self._wake_reader.fileno(), select.EPOLLIN)
        self._signal_handlers: dict[int, Any] = {}

    # --- clock ---------------------------------------------------------------------------------
    def now_ms(self) -> int:
        """Milliseconds since the server started, on the wrapping deadline clock."""
        return int((time.monotonic() - self._started) * 1000) % CLOCK_MODULUS

    def restart_deadline(self, fd: int) -> None:
        """Close ``fd`` if it is still open one keep-alive timeout from now (the coroutine calls it
        after each response; the accept sets the first deadline), rounded up to a tick. Every
        deadline is "now + the same timeout", so the new one is the latest and the expiry queue
        stays sorted by moving ``fd`` to its tail (a shorter delay for some connections would break
        that)."""
        self.deathqueue.refresh(fd, self._turn_deadline_ms)

    def _deadline_from(self, now_ms: int) -> int:
        """The deadline of a connection that makes progress at ``now_ms``: one keep-alive timeout
        later, rounded up to the next tick (ms on the wrapping clock)."""
        tick = self.deadline_tick_ms
        return (-(-(now_ms + self.keep_alive_ms) // tick) * tick) % CLOCK_MODULUS

    def _update_date(self) -> None:
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            self.date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(second)).encode("ascii")

    # --- running -------------------------------------------------------------------------------
    def install_signal_handlers(self, extra: dict[int, Any] | None = None) -> None:
        """Stop cleanly on SIGTERM and SIGINT; ``extra`` maps more signals to callables run in the
        loop (not in the handler)."""
        signal.set_wakeup_fd(self._wake_writer.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)
        for signum, action in (extra or {}).items():
            self._signal_handlers[signum] = action
            signal.signal(signum, lambda signum, frame: None)  # the wakeup fd carries it

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        self._stop_requested = True
        self.running = False

    def serve_forever(self) -> None:
        """Run until :meth:`stop` (or SIGTERM/SIGINT), then close every connection."""
        self.running = not self._stop_requested
        epoll = self.epoll
        listen_fd = self.listener.fileno()
        wake_fd = self._wake_reader.fileno()
        resume = self._resume
        runnable = self._runnable
        try:
            while self.running:
                self._update_date()
                events = epoll.poll(0 if runnable else self._poll_timeout())
                # One clock read per turn, for every deadline it restarts. An unchanged deadline keeps
                # its int object, so the connections refreshed within one tick share it instead of
                # each holding a 32-byte copy (heap per held connection stays exact across runs).
                deadline_ms = self._deadline_from(self.now_ms())
                if deadline_ms != self._turn_deadline_ms:
                    self._turn_deadline_ms = deadline_ms
                for fd, mask in events:
                    if fd == listen_fd:
                        self._accept()
                    elif fd == wake_fd:
                        self._drain_wakeups()
                    else:
                        resume(fd, mask)
                if runnable:
                    # Only those queued before this turn: one that yields RUNNABLE again waits for
                    # the next turn, after the events that came meanwhile.
                    for _ in range(len(runnable)):
                        resume(runnable.popleft(), 0)
                if self.deathqueue.length:
                    for fd in self.deathqueue.pop_expired(self.now_ms()):
                        self.close_connection(fd)
        finally:
            self.shutdown()

    def stop(self) -> None:
        """Ask the loop to stop (safe from another thread or a signal handler)."""
        self._stop_requested = True
        self.running = False
        try:
            self._wake_writer.send(b"\0")
        except OSError:
            pass

    def _poll_timeout(self) -> float:
        deadline = self.deathqueue.next_deadline()
        if deadline is None:
            return 1.0
        wait_ms = (deadline - self.now_ms()) % CLOCK_MODULUS
        if wait_ms >= CLOCK_MODULUS // 2:  # already past
            return 0
        return min(wait_ms / 1000 + 0.001, 1.0)

    def _drain_wakeups(self) -> None:
        try:
            data = self._wake_reader.recv(512)
        except BlockingIOError:
            return
        for signum in data:
            action = self._signal_handlers.get(signum)
            if action is not None:
                action()

    def shutdown(self) -> None:
        """Close every open connection, the listener and epoll."""
        table = self.table
        for fd in list(self.deathqueue):
            self.close_connection(fd)
        for fd in range(table.max_conns):  # connections not queued (none in practice)
            if table.flags(fd) & ALIVE:
                self.close_connection(fd)
        self.epoll.close()
        self.listener.close()
        self._wake_reader.close()
        self._wake_writer.close()

    # --- connections ---------------------------------------------------------------------------
    def _accept(self) -> None:
        accept = self.listener._accept  # (fd, address) without making a socket object
        table = self.table
        max_conns = table.max_conns
        for _ in range(_ACCEPT_BATCH):
            try:
                fd, address = accept()
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in _RESOURCE_ERRNOS:
                    # Out of fds: stop accepting until a connection closes, instead of spinning on
                    # a listener that stays readable.
                    self.log_once("accept", f"accept failed ({os.strerror(error.errno)}); pausing accepts until a connection closes")
                    self._pause_accept()
                return  # ECONNABORTED and the like: the connection is already gone
            if fd >= max_conns:
                self._refuse(fd)
                continue
            os.set_blocking(fd, False)
            table.open(fd, address)
            self.open_connections += 1
            self.epoll.register(fd, _EPOLL_CONNECTION)
            self.deathqueue.push(fd, self._turn_deadline_ms)

    def _refuse(self, fd: int) -> None:
        """The table has no slot for ``fd``: answer 503 and close, without reading the request."""
        self.refused_connections += 1
        try:
            os.write(fd, RESPONSE_TABLE_FULL)
            sock = socket.socket(fileno=fd)
            try:
                sock.shutdown(socket.SHUT_WR)
            finally:
                sock.detach()
        except OSError:
            pass
        os.close(fd)

    def _pause_accept(self) -> None:
        if not self._accept_paused:
            self._accept_paused = True
            self.epoll.unregister(self.listener.fileno())

    def _resume(self, fd: int, events: int) -> None:
        """Run ``fd``'s coroutine until it waits, starting one if the layout holds none. ``events``
        is the epoll mask that woke it, 0 for a RUNNABLE resume (see :mod:`server.connection`)."""
        table = self.table
        flags = table.flags(fd)
        if not flags & ALIVE:
            return  # stale event (or RUNNABLE entry) for a connection closed since
        coroutine = table.coroutine(fd)
        try:
            if coroutine is None:
                coroutine = serve_connection(self, fd, events)
                wants = next(coroutine)
                if wants != PARK:  # a park hands it to the layout below; packed drops it there
                    table.set_coroutine(fd, coroutine)
            else:
                wants = coroutine.send(events)
        except StopIteration:
            self.close_connection(fd)
            return
        except Exception:
            self.log_exception(f"connection coroutine failed on fd {fd}")
            self.close_connection(fd)
            return
        if wants == PARK:
            table.park(fd, coroutine)
        elif wants == RUNNABLE:
            self._runnable.append(fd)

    def close_connection(self, fd: int) -> None:
        """Close ``fd`` and return its slot to the table."""
        table = self.table
        if not table.flags(fd) & ALIVE:
            return
        self.deathqueue.remove(fd)
        coroutine = table.coroutine(fd)
        table.close(fd)
        if coroutine is not None:
            coroutine.close()
        try:
            os.close(fd)  # also removes it from the epoll set
        except OSError:
            pass
        self.open_connections -= 1
        if self._accept_paused:
            self._accept_paused = False
            self.epoll.register(self.listener.fileno(), select.EPOLLIN)

    def peer(self, fd: int) -> tuple:
        """The peer address of ``fd`` as ``(host, port, ...)``, from the layout."""
        return self.table.peer(fd, _getpeername)

    # --- reporting -----------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """What ``/__stats`` reports. Sizes in bytes."""
        import tracemalloc

        result: dict[str, Any] = {
            "layout": self.table.name,
            "max_conns": self.table.max_conns,
            "open_connections": self.open_connections,
            "refused_connections": self.refused_connections,
            "usable_slots": self.usable_slots(),
            "rss_bytes": _rss_bytes_or_none(),
            "c_bytes_per_slot": self.table.c_bytes_per_slot(),
        }
        if tracemalloc.is_tracing():
            current, peak = tracemalloc.get_traced_memory()
            result["tracemalloc_current_bytes"] = current
            result["tracemalloc_peak_bytes"] = peak
            result["tracemalloc_overhead_bytes"] = tracemalloc.get_tracemalloc_memory()
        return result

    def usable_slots(self) -> int | None:
        """How many connections the table can hold at most, now: its slots below RLIMIT_NOFILE
        whose fd number is not one of the server's own descriptors (stdio, listener, epoll, wake-up
        pair, tracer files). A slot's index is the fd the kernel hands out, so every descriptor the
        process holds below ``max_conns`` is a slot no client can get: at ``--max-conns 10`` the
        server's own 7 descriptors leave 3. A file the tracer's thread has open for a moment (a
        dump) is no slot lost and is not counted (:mod:`server.descriptors`). None while the
        process is out of descriptors (EMFILE)."""
        table = self.table
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limit = table.max_conns if nofile == resource.RLIM_INFINITY else min(table.max_conns, nofile)
        held = held_fds_below(limit)
        if held is None:
            return None
        own = sum(1 for fd in held if not table.flags(fd) & ALIVE)
        return limit - own

    def log(self, message: str) -> None:
        print(f"memdiet-server: {message}", file=self.log_stream, flush=True)

    def log_once(self, key: str, message: str) -> None:
        if key not in self._logged_once:
            self._logged_once.add(key)
            self.log(message)

    def log_exception(self, message: str) -> None:
        self.log(message + "\n" + traceback.format_exc().rstrip())


#: The peer of a connection the client has already reset: it has no address any more (and will not
#: read the response). An empty host is never a --stats-from address, so /__stats refuses it.
UNKNOWN_PEER = ("", 0)


def _getpeername(fd: int) -> tuple:
    sock = socket.socket(fileno=fd)
    try:
        return sock.getpeername()
    except OSError:  # ENOTCONN: reset while its pipelined requests were still being answered
        return UNKNOWN_PEER
    finally:
        sock.detach()


def _rss_bytes_or_none() -> int | None:
    """This process's resident set size in bytes (:func:`procfs.rss_bytes`), or None while it is out
    of file descriptors (EMFILE) and cannot open /proc/self/statm: /__stats still answers then."""
    try:
        return procfs.rss_bytes("self")
    except OSError:
        return None
