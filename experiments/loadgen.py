"""A bounded asyncio HTTP/1.1 load generator for loopback servers, run in its own process.

Three parts, top to bottom:

- the library: :class:`LoadGenerator` holds keep-alive connections (asyncio Protocols, one outstanding
  request per connection: keep-alive, never pipelining) and runs ``ramp``, ``load`` and ``drain``, each
  returning a :class:`PhaseResult` (requests, errors by kind, req/s, latency percentiles in ms, bytes);
- the process: ``python -m experiments.loadgen`` in one-shot mode (``-c 50 -d 10``, like wrk) or command
  mode (``--commands``: one command per stdin line, one JSON line per reply on stdout);
- :class:`LoadGeneratorProcess`: what the experiment runner uses to drive command mode from outside.

Bounds: loopback addresses only; every connect and every request has a timeout; ``load`` lasts at most
``MAX_LOAD_S`` seconds and stops after ``MAX_REQUESTS`` when given; the process exits after
``--max-lifetime`` seconds whatever happens; connections are opened at most ``connect_concurrency`` at a
time, so a ramp of thousands does not overflow the server's listen backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import errno
import ipaddress
import json
import math
import os
import queue
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback
from array import array
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

#: Longest ``load``, in seconds.
MAX_LOAD_S = 600.0
#: Default seconds a connect, or a request's response, may take before it counts as a ``timeout``.
DEFAULT_TIMEOUT_S = 10.0
#: Default number of connects in flight at once during a ramp.
DEFAULT_CONNECT_CONCURRENCY = 256
#: Default bound on the process's whole life, in seconds.
DEFAULT_MAX_LIFETIME_S = 900.0
#: File descriptors kept free beyond the connections (stdio, epoll, self-pipe, imports...).
FD_MARGIN = 64
#: A response head longer than this (bytes) is a protocol error rather than a reason to buffer forever.
MAX_RESPONSE_HEAD = 65536
#: Exit code of the process when ``--max-lifetime`` ends it.
EXIT_LIFETIME = 3

_perf_counter = time.perf_counter
_PATH = re.compile(r"/[\x21-\x7e]*")


class LoadGeneratorError(Exception):
    """A refused parameter (non-loopback host, bad path, too many connections) or, in
    :class:`LoadGeneratorProcess`, a child that died, timed out or answered nonsense."""


class FdLimitError(LoadGeneratorError):
    """More connections were asked for than RLIMIT_NOFILE's hard limit allows."""


# --- parameters -------------------------------------------------------------------------------------
def loopback_host(host: str) -> str:
    """The IP address to connect to for ``host``, which must be ``localhost``, in 127.0.0.0/8 or
    ``::1`` (brackets allowed); raises :class:`LoadGeneratorError` for anything else."""
    text = host.strip()
    if text.lower() == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise LoadGeneratorError(
            f"host {host!r} is not a loopback address: the load generator only connects to 127.0.0.0/8, ::1 or localhost"
        )
    return str(address)


def request_bytes(host: str, path: str) -> bytes:
    """The one request every connection sends: ``GET path HTTP/1.1`` with a Host header."""
    if not _PATH.fullmatch(path):
        raise LoadGeneratorError(f"path {path!r} must start with '/' and hold only visible ASCII characters")
    host_header = f"[{host}]" if ":" in host else host
    return f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode("ascii")


def fd_hard_limit() -> int:
    """RLIMIT_NOFILE's hard limit; when "unlimited", the kernel's ``fs.nr_open`` (the real ceiling)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        return hard
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        return 1 << 20


def _open_fd_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 3


def ensure_fd_capacity(extra: int) -> int:
    """Make room for ``extra`` more file descriptors: raise RLIMIT_NOFILE's soft limit as far as needed
    (up to the hard limit). Returns the soft limit in force; raises :class:`FdLimitError`, naming the
    limit, when even the hard limit is too low."""
    needed = _open_fd_count() + extra + FD_MARGIN
    hard = fd_hard_limit()
    if needed > hard:
        raise FdLimitError(
            f"{extra} connections need about {needed} file descriptors, above this process's "
            f"RLIMIT_NOFILE hard limit of {hard} (raise it with `ulimit -Hn` as root, or ask for fewer)"
        )
    soft, real_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, real_hard))
        soft = needed
    return soft


# --- latency ----------------------------------------------------------------------------------------
class LatencyHistogram:
    """Latencies in a fixed-size log-linear histogram (like HdrHistogram): exact to the microsecond
    below 2,048 us, then within 1/1,024 (0.1 %) of the value, up to about 19 hours. Its memory
    (~220 KB) does not grow with the number of requests."""

    _EXACT = 2048  # microseconds recorded exactly; also 2 x the sub-buckets per power of two
    _SUB_BITS = 10
    _MAX_SHIFT = 25
    _SIZE = ((_MAX_SHIFT + 1) << _SUB_BITS) + _EXACT

    __slots__ = ("counts", "count", "min_s", "max_s")

    def __init__(self) -> None:
        self.counts = array("Q", bytes(8 * self._SIZE))
        #: Latencies recorded.
        self.count = 0
        #: Smallest and largest latency recorded, in seconds (exact).
        self.min_s = math.inf
        self.max_s = 0.0

    def record(self, seconds: float) -> None:
        """Record one latency, in seconds."""
        micros = int(seconds * 1e6)
        if micros < 2048:
            index = micros if micros > 0 else 0
        else:
            shift = micros.bit_length() - 11
            index = (shift << 10) + (micros >> shift)
            if index >= self._SIZE:
                index = self._SIZE - 1
        self.counts[index] += 1
        self.count += 1
        if seconds > self.max_s:
            self.max_s = seconds
        if seconds < self.min_s:
            self.min_s = seconds

    @classmethod
    def _bucket_middle_us(cls, index: int) -> float:
        if index < cls._EXACT:
            return index + 0.5
        shift = (index >> cls._SUB_BITS) - 1
        mantissa = index - (shift << cls._SUB_BITS)
        return (mantissa + 0.5) * (1 << shift)

    def percentiles_ms(self, quantiles: Sequence[float]) -> list[float | None]:
        """The latency (ms) at each quantile (0..1, ascending): the middle of the bucket holding the
        ``ceil(q * count)``-th smallest latency, kept within the exact min and max. None when empty."""
        if not self.count:
            return [None] * len(quantiles)
        ranks = [max(1, math.ceil(q * self.count)) for q in quantiles]
        values: list[float | None] = []
        seen = 0
        wanted = 0
        for index, bucket in enumerate(self.counts):
            if not bucket:
                continue
            seen += bucket
            while wanted < len(ranks) and seen >= ranks[wanted]:
                middle_s = self._bucket_middle_us(index) / 1e6
                values.append(min(max(middle_s, self.min_s), self.max_s) * 1000)
                wanted += 1
            if wanted == len(ranks):
                break
        return values


# --- responses --------------------------------------------------------------------------------------
class ProtocolError(Exception):
    """A response this client cannot parse (or does not support: chunked bodies)."""


def _header_value(lowered_headers: bytes, name: bytes) -> bytes | None:
    start = lowered_headers.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    end = lowered_headers.find(b"\r\n", start)
    return lowered_headers[start : end if end >= 0 else len(lowered_headers)].strip()


def parse_response_head(head: bytes) -> tuple[int, int | None, bool]:
    """Parse a response head (status line and headers, without the blank line) into ``(status,
    content_length or None, close)``, where ``close`` means the server ends the connection after it."""
    line_end = head.find(b"\r\n")
    status_line = head if line_end < 0 else head[:line_end]
    code = status_line[9:12]
    if not (status_line[:7] == b"HTTP/1." and status_line[8:9] == b" " and code.isdigit()
            and status_line[12:13] in (b" ", b"")):
        raise ProtocolError(f"bad status line {status_line[:80]!r}")
    headers = b"" if line_end < 0 else head[line_end:].lower()
    length = None
    value = _header_value(headers, b"content-length")
    if value is not None:
        if not value.isdigit():
            raise ProtocolError(f"bad Content-Length {value[:40]!r}")
        length = int(value)
    if _header_value(headers, b"transfer-encoding") is not None:
        raise ProtocolError("Transfer-Encoding responses are not supported")
    connection = _header_value(headers, b"connection")
    tokens = {token.strip() for token in connection.split(b",")} if connection is not None else set()
    close = b"close" in tokens or (status_line[7:8] == b"0" and b"keep-alive" not in tokens)
    return int(code), length, close


#: Parsed heads by their bytes: a server repeats the same head (its Date changes once a second), so
#: most responses skip parsing. Cleared when full, so it stays small.
_parsed_heads: dict[bytes, tuple[int, int | None, bool]] = {}
_PARSED_HEADS_MAX = 256


def _parse_head_cached(head: bytes) -> tuple[int, int | None, bool]:
    parsed = _parsed_heads.get(head)
    if parsed is None:
        parsed = parse_response_head(head)
        if len(_parsed_heads) >= _PARSED_HEADS_MAX:
            _parsed_heads.clear()
        _parsed_heads[head] = parsed
    return parsed


class ResponseParser:
    """Sans-I/O HTTP/1.x response parser for one connection. :meth:`feed` takes bytes as they arrive
    and returns the responses they complete, as ``(status, close)`` pairs. Bodies are counted, never
    kept. A response without Content-Length (other than 1xx/204/304) lasts until EOF: see
    :meth:`feed_eof`."""

    __slots__ = ("_pending", "_body_left", "_status", "_close", "_until_eof")

    def __init__(self) -> None:
        self._pending = b""  # bytes of an incomplete head
        self._body_left = 0  # body bytes still to come of the current response
        self._status = 0
        self._close = False
        self._until_eof = False

    @property
    def mid_response(self) -> bool:
        """True while part of a response has arrived but not all of it."""
        return bool(self._pending or self._body_left or self._until_eof)

    def feed(self, data: bytes) -> list[tuple[int, bool]]:
        if self._pending:
            data = self._pending + data
            self._pending = b""
        completed = []
        position = 0
        size = len(data)
        while position < size:
            if self._body_left:
                taken = min(self._body_left, size - position)
                position += taken
                self._body_left -= taken
                if self._body_left:
                    break
                completed.append((self._status, self._close))
                continue
            if self._until_eof:
                break
            head_end = data.find(b"\r\n\r\n", position)
            if head_end < 0:
                if size - position > MAX_RESPONSE_HEAD:
                    raise ProtocolError(f"response head longer than {MAX_RESPONSE_HEAD} bytes")
                self._pending = data[position:]
                break
            status, length, close = _parse_head_cached(data[position:head_end])
            position = head_end + 4
            if status < 200:
                continue  # 1xx: informational, no body, the real response follows
            if length is None:
                if status in (204, 304):
                    length = 0
                else:
                    self._status, self._close, self._until_eof = status, True, True
                    break
            available = size - position
            if length <= available:
                position += length
                completed.append((status, close))
            else:
                self._status, self._close, self._body_left = status, close, length - available
                break
        return completed

    def feed_eof(self) -> list[tuple[int, bool]]:
        """The server closed: completes a response whose body lasts until EOF."""
        if self._until_eof:
            self._until_eof = False
            return [(self._status, True)]
        return []


# --- results ----------------------------------------------------------------------------------------
@dataclass
class PhaseResult:
    """What one operation (``ramp``, ``load`` or ``drain``) did.

    ``requests`` counts responses received, whatever their status. ``errors`` counts failures by kind:
    ``connect_refused``, ``connect_reset``, ``connect_timeout``, ``connect_<errno>``; ``status_NNN``
    (a response outside 2xx, also counted in ``requests``); ``timeout`` (no response within the
    timeout; the connection is aborted); ``reset``, ``closed`` (the server reset or closed a
    connection with a request outstanding); ``protocol`` (an unparseable response); ``unsolicited``
    (a response nobody asked for). Events between operations count in the next one.
    """

    phase: str
    #: Connections this operation opened.
    connections_opened: int
    #: Connections that ended since the previous operation's result, whoever closed them.
    connections_closed: int
    #: Connections open when the operation finished.
    connections_open: int
    requests: int
    errors: dict[str, int]
    #: Wall time of the operation, seconds.
    elapsed_s: float
    #: ``requests / elapsed_s``.
    req_per_s: float
    #: Per-request latency percentiles and maximum, milliseconds (None without requests).
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    #: Response bytes received (heads and bodies).
    bytes_received: int
    #: CPU seconds (user + system) the load generator's process used during the operation: near
    #: ``elapsed_s`` means the generator, not the server, was the bottleneck.
    cpu_s: float

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """A few human lines, wrk-style."""
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f} ms"

        errors = ", ".join(f"{kind}: {count}" for kind, count in sorted(self.errors.items())) or "none"
        return (
            f"{self.phase}: {self.requests} requests in {self.elapsed_s:.2f} s, {self.req_per_s:,.0f} req/s, "
            f"{self.bytes_received / 1e6:.2f} MB read, generator CPU {self.cpu_s:.2f} s\n"
            f"  connections: {self.connections_opened} opened, {self.connections_closed} closed, "
            f"{self.connections_open} open\n"
            f"  latency: p50 {ms(self.latency_p50_ms)}  p90 {ms(self.latency_p90_ms)}  "
            f"p99 {ms(self.latency_p99_ms)}  max {ms(self.latency_max_ms)}\n"
            f"  errors: {errors}"
        )


class _Run:
    """Counters of one operation, shared by its connections. ``deadline`` is a ``perf_counter``
    value after which no request is sent; ``budget`` the requests still allowed (None: no cap);
    ``repeat`` whether a connection sends again after a response (load) or stops (ramp)."""

    __slots__ = ("requests", "bytes_received", "errors", "latency", "deadline", "budget", "repeat")

    def __init__(self, *, repeat: bool = False, deadline: float = math.inf, budget: int | None = None) -> None:
        self.requests = 0
        self.bytes_received = 0
        self.errors: dict[str, int] = {}
        self.latency = LatencyHistogram()
        self.deadline = deadline
        self.budget = budget
        self.repeat = repeat

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def take(self) -> bool:
        """May one more request be sent? (Uses up one from the budget.)"""
        if self.budget is None:
            return True
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True


# --- connections ------------------------------------------------------------------------------------
class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request outstanding."""

    __slots__ = ("owner", "transport", "parser", "run", "sent_at", "done", "lost", "timed_out")

    def __init__(self, owner: LoadGenerator, run: _Run) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.run = run  # the operation it works for, or the owner's between-operations run
        #: perf_counter() when the outstanding request was sent; None when none is outstanding.
        self.sent_at: float | None = None
        self.done: asyncio.Future | None = None  # resolved when it stops working for ``run``
        self.lost = owner.loop.create_future()  # resolved by connection_lost
        self.timed_out = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.owner.connections.add(self)

    def data_received(self, data: bytes) -> None:
        run = self.run
        run.bytes_received += len(data)
        try:
            responses = self.parser.feed(data)
        except ProtocolError:
            run.error("protocol")
            self.sent_at = None  # counted once, as protocol, not again as closed
            self._abort()
            self._finish()
            return
        if responses:
            self._on_response(*responses[0])
            if len(responses) > 1:  # more responses than requests: nothing here can be trusted
                self._unsolicited(len(responses) - 1, run)

    def eof_received(self) -> None:
        for status, close in self.parser.feed_eof():
            self._on_response(status, close)
        # returning None closes the transport; connection_lost counts what was outstanding

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.connections.discard(self)
        self.owner.closed_since_result += 1
        if self.sent_at is not None:
            self.sent_at = None
            if not self.timed_out:
                self.run.error("reset" if isinstance(exc, ConnectionResetError) else "closed")
        self._finish()
        if not self.lost.done():
            self.lost.set_result(None)

    # driving
    def start(self, run: _Run) -> asyncio.Future:
        """Work for ``run``: send a request (if its budget allows), and keep sending after each
        response while ``run`` says so. The future resolves when it stops."""
        self.run = run
        self.done = self.owner.loop.create_future()
        if self.transport is None or self.transport.is_closing() or not run.take():
            self._finish()
        else:
            self.sent_at = _perf_counter()
            self.transport.write(self.owner.request)
        return self.done

    def _on_response(self, status: int, close: bool) -> None:
        run = self.run
        sent_at = self.sent_at
        if sent_at is None:
            self._unsolicited(1, run)
            return
        now = _perf_counter()
        run.requests += 1
        run.latency.record(now - sent_at)
        if not 200 <= status < 300:
            run.error(f"status_{status}")
        if self.parser.mid_response:  # part of a second response to one request
            self._unsolicited(1, run)
        elif close:
            self.sent_at = None
            self.transport.close()
            self._finish()
        elif run.repeat and now < run.deadline and run.take():
            self.sent_at = now  # the microsecond of bookkeeping since is part of this request's latency
            self.transport.write(self.owner.request)
        else:
            self.sent_at = None
            self._finish()

    def _unsolicited(self, count: int, run: _Run) -> None:
        """``count`` responses (or parts) came that no request asked for: count them in ``run`` (the
        operation the data arrived in), drop the connection."""
        for _ in range(count):
            run.error("unsolicited")
        self.sent_at = None
        self._abort()
        self._finish()

    def time_out(self) -> None:
        """Called by the watchdog: the outstanding request is too old."""
        self.timed_out = True
        self.run.error("timeout")
        self._abort()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _finish(self) -> None:
        self.run = self.owner.between
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


# --- the generator ----------------------------------------------------------------------------------
class LoadGenerator:
    """Keep-alive connections to one loopback HTTP server, driven phase by phase.

    ``timeout_s`` bounds each connect and each response (seconds); ``connect_concurrency`` is how many
    connects are in flight at once. Operations run one at a time; use it from one event loop::

        generator = LoadGenerator("127.0.0.1", port)
        print((await generator.ramp(1000)).summary())
        print((await generator.load(10.0)).summary())
        await generator.drain()
    """

    def __init__(
        self,
        host: str,
        port: int,
        path: str = "/",
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_concurrency: int = DEFAULT_CONNECT_CONCURRENCY,
    ) -> None:
        self.host = loopback_host(host)
        if not 0 < port < 65536:
            raise LoadGeneratorError(f"port {port} is not between 1 and 65535")
        if not timeout_s > 0:
            raise LoadGeneratorError(f"timeout must be positive, got {timeout_s}")
        if connect_concurrency < 1:
            raise LoadGeneratorError(f"connect concurrency must be at least 1, got {connect_concurrency}")
        self.port = port
        self.path = path
        #: The bytes each request sends.
        self.request = request_bytes(self.host, path)
        self.timeout_s = timeout_s
        self.connect_concurrency = connect_concurrency
        #: Open connections.
        self.connections: set[_Connection] = set()
        #: Connections that ended since the last result.
        self.closed_since_result = 0
        #: Where connections count events between operations (folded into the next result).
        self.between = _Run()
        self._current: _Run | None = None
        self._busy = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running event loop (operations must run inside one)."""
        return asyncio.get_running_loop()

    @property
    def open_connections(self) -> int:
        return len(self.connections)

    @property
    def live_requests(self) -> int:
        """Responses received so far by the operation in progress (0 between operations)."""
        return self._current.requests if self._current is not None else 0

    # --- operations ---------------------------------------------------------------------------
    async def ramp(self, connections: int) -> PhaseResult:
        """Open ``connections`` more connections, at most ``connect_concurrency`` at a time; each
        sends one request and reads its response before its connect slot is given to the next."""
        if connections < 1:
            raise LoadGeneratorError(f"ramp needs at least 1 connection, got {connections}")
        ensure_fd_capacity(len(self.connections) + connections)
        run, started, cpu_started = self._begin()
        slots = asyncio.Semaphore(self.connect_concurrency)
        opened = 0

        async def open_one() -> None:
            nonlocal opened
            async with slots:
                connection = await self._connect(run)
                if connection is not None:
                    opened += 1
                    await connection.start(run)

        try:
            async with self._watchdog(run):
                await asyncio.gather(*(open_one() for _ in range(connections)))
        finally:
            self._busy = False
        return self._result("ramp", run, started, cpu_started, opened)

    async def load(self, duration_s: float, max_requests: int | None = None) -> PhaseResult:
        """Every open connection sends keep-alive requests, each as soon as the previous response
        arrives, for ``duration_s`` seconds (at most ``MAX_LOAD_S``) or until ``max_requests`` have
        been sent. Requests in flight at the deadline are waited for (up to the timeout)."""
        if not 0 < duration_s <= MAX_LOAD_S:
            raise LoadGeneratorError(f"load duration must be more than 0 and at most {MAX_LOAD_S:g} s, got {duration_s}")
        if max_requests is not None and max_requests < 1:
            raise LoadGeneratorError(f"max requests must be at least 1, got {max_requests}")
        run, started, cpu_started = self._begin()
        run.repeat = True
        run.deadline = started + duration_s
        run.budget = max_requests
        try:
            futures = [connection.start(run) for connection in list(self.connections)]
            if futures:
                async with self._watchdog(run):
                    await asyncio.wait(futures, timeout=duration_s + self.timeout_s + 5)
                # A safety net (the watchdog times requests out first): abort whatever still works.
                stuck = [connection for connection in self.connections if connection.run is run]
                for connection in stuck:
                    connection.time_out()
                if stuck:
                    await asyncio.wait([connection.lost for connection in stuck], timeout=self.timeout_s)
        finally:
            self._busy = False
        return self._result("load", run, started, cpu_started, 0)

    async def drain(self) -> PhaseResult:
        """Close every connection and wait (up to the timeout) until they are closed."""
        run, started, cpu_started = self._begin()
        try:
            connections = list(self.connections)
            for connection in connections:
                connection.transport.close()
            if connections:
                await asyncio.wait([connection.lost for connection in connections], timeout=self.timeout_s)
                for connection in connections:
                    if not connection.lost.done():
                        connection._abort()
        finally:
            self._busy = False
        return self._result("drain", run, started, cpu_started, 0)

    async def __aenter__(self) -> LoadGenerator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for connection in list(self.connections):
            connection._abort()

    # --- internals ----------------------------------------------------------------------------
    def _begin(self) -> tuple[_Run, float, float]:
        if self._busy:
            raise LoadGeneratorError("another operation is in progress")
        self._busy = True
        run = _Run()
        # what happened between operations counts in this one
        run.errors, run.bytes_received = self.between.errors, self.between.bytes_received
        self.between = _Run()
        for connection in self.connections:
            connection.run = self.between
        self._current = run
        return run, _perf_counter(), time.process_time()

    def _result(self, phase: str, run: _Run, started: float, cpu_started: float, opened: int) -> PhaseResult:
        elapsed = _perf_counter() - started
        cpu = time.process_time() - cpu_started
        self._current = None
        p50, p90, p99, top = (
            None if value is None else round(value, 4)  # 0.1 us: finer than the histogram
            for value in (*run.latency.percentiles_ms((0.5, 0.9, 0.99)),
                          run.latency.max_s * 1000 if run.latency.count else None)
        )
        closed, self.closed_since_result = self.closed_since_result, 0
        return PhaseResult(
            phase=phase,
            connections_opened=opened,
            connections_closed=closed,
            connections_open=len(self.connections),
            requests=run.requests,
            errors=dict(sorted(run.errors.items())),
            elapsed_s=round(elapsed, 6),
            req_per_s=round(run.requests / elapsed, 1) if elapsed > 0 else 0.0,
            latency_p50_ms=p50,
            latency_p90_ms=p90,
            latency_p99_ms=p99,
            latency_max_ms=top,
            bytes_received=run.bytes_received,
            cpu_s=round(cpu, 4),
        )

    async def _connect(self, run: _Run) -> _Connection | None:
        try:
            _transport, connection = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Connection(self, run), self.host, self.port),
                self.timeout_s,
            )
        except asyncio.TimeoutError:
            run.error("connect_timeout")
            return None
        except OSError as error:
            run.error(_connect_error_kind(error))
            return None
        return connection

    def _watchdog(self, run: _Run) -> _Watchdog:
        return _Watchdog(self, run)


def _connect_error_kind(error: OSError) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connect_refused"
    if isinstance(error, ConnectionResetError):
        return "connect_reset"
    if error.errno == errno.ETIMEDOUT:
        return "connect_timeout"
    name = errno.errorcode.get(error.errno or 0)
    return f"connect_{name.lower()}" if name else "connect_error"


class _Watchdog:
    """While entered, times out requests of ``run`` outstanding for longer than the generator's
    timeout (one periodic scan instead of a timer per request, which would cost at every request)."""

    def __init__(self, generator: LoadGenerator, run: _Run) -> None:
        self.generator = generator
        self.run = run
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> None:
        self.task = asyncio.create_task(self._scan())

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass

    async def _scan(self) -> None:
        timeout = self.generator.timeout_s
        period = min(0.25, timeout / 4)
        while True:
            await asyncio.sleep(period)
            oldest_allowed = _perf_counter() - timeout
            for connection in list(self.generator.connections):
                sent_at = connection.sent_at
                if connection.run is self.run and sent_at is not None and sent_at < oldest_allowed:
                    connection.time_out()


# --- the process ------------------------------------------------------------------------------------
def _event_loop_factory() -> tuple[Any, str]:
    """uvloop's loop when it is installed (it is not a dependency), else asyncio's."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return asyncio.new_event_loop, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def _parse_command(line: str) -> tuple[str, list[str]]:
    words = line.split()
    return words[0].lower(), words[1:]


def _whole_number(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise LoadGeneratorError(f"{what} must be a whole number, got {text!r}") from None


async def execute_command(generator: LoadGenerator, line: str) -> dict[str, Any]:
    """Run one command-mode line (``ramp C``, ``load SECONDS [MAX_REQUESTS]``, ``drain``, ``status``)
    and return its reply. Raises :class:`LoadGeneratorError` for a bad command."""
    verb, args = _parse_command(line)
    if verb == "ramp" and len(args) == 1:
        result = await generator.ramp(_whole_number(args[0], "ramp's connection count"))
    elif verb == "load" and len(args) in (1, 2):
        try:
            seconds = float(args[0])
        except ValueError:
            raise LoadGeneratorError(f"load's duration must be seconds, got {args[0]!r}") from None
        cap = _whole_number(args[1], "load's MAX_REQUESTS") if len(args) == 2 else None
        result = await generator.load(seconds, cap)
    elif verb == "drain" and not args:
        result = await generator.drain()
    elif verb == "status" and not args:
        return {"ok": True, "command": verb, "connections_open": generator.open_connections}
    else:
        raise LoadGeneratorError(
            f"unknown command {line!r}: expected 'ramp C', 'load SECONDS [MAX_REQUESTS]', 'drain', 'status' or 'quit'"
        )
    return {"ok": True, "command": verb, **result.to_dict()}


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue:
    """Stdin's lines (str) on a queue, then None at EOF. A thread does the blocking reads, with
    os.read rather than sys.stdin so no buffered-file lock is held at interpreter exit."""
    lines: asyncio.Queue = asyncio.Queue()

    def put(item: str | None) -> None:
        try:
            loop.call_soon_threadsafe(lines.put_nowait, item)
        except RuntimeError:  # the loop has closed: we are exiting
            pass

    def read() -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(0, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                put(line.decode("utf-8", errors="replace"))
        if pending:
            put(pending.decode("utf-8", errors="replace"))
        put(None)

    threading.Thread(target=read, name="loadgen-stdin", daemon=True).start()
    return lines


async def _command_mode(generator: LoadGenerator, ready: dict[str, Any]) -> int:
    lines = _stdin_lines(asyncio.get_running_loop())
    _emit(ready)
    sequence = 0
    try:
        while (line := await lines.get()) is not None:
            line = line.strip()
            if not line:
                continue
            sequence += 1
            if line.lower() == "quit":
                _emit({"ok": True, "command": "quit", "seq": sequence})
                break
            try:
                reply = await execute_command(generator, line)
            except LoadGeneratorError as error:
                reply = {"ok": False, "error": str(error)}
            except Exception as error:  # a bug: keep stdout one JSON line, the traceback on stderr
                traceback.print_exc(file=sys.stderr)
                reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            reply["seq"] = sequence
            _emit(reply)
    finally:
        await generator.__aexit__(None, None, None)
    return 0


async def _one_shot(generator: LoadGenerator, args: argparse.Namespace, loop_name: str) -> int:
    async with generator:
        try:
            ramp = await generator.ramp(args.connections)
        except LoadGeneratorError as error:
            print(f"{PROG}: error: {error}", file=sys.stderr)
            return 2
        load = await generator.load(args.duration, args.max_requests)
        drain = await generator.drain()
    if args.json:
        _emit({"ramp": ramp.to_dict(), "load": load.to_dict(), "drain": drain.to_dict()})
    else:
        print(f"{args.connections} connections to {generator.host}:{generator.port}{generator.path} "
              f"for {args.duration:g} s ({loop_name} event loop)")
        for result in (ramp, load, drain):
            print(result.summary())
    return 0


PROG = "python -m experiments.loadgen"


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one readable line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(kind: type, what: str, ceiling: float | None = None):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: expected a number, got {text!r}") from None
        if not value > 0 or (ceiling is not None and value > ceiling):
            bound = f" and at most {ceiling:g}" if ceiling is not None else ""
            raise argparse.ArgumentTypeError(f"{what}: must be more than 0{bound}, got {text}")
        return value

    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog=PROG, description="Bounded keep-alive HTTP/1.1 load against a loopback server.")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address of the server (default: 127.0.0.1)")
    parser.add_argument("--port", type=_positive(int, "port", 65535), required=True, help="server port")
    parser.add_argument("--path", default="/", help="path every request asks for (default: /)")
    parser.add_argument("--commands", action="store_true",
                        help="command mode: read 'ramp C', 'load SECONDS [MAX_REQUESTS]', 'drain', 'status', 'quit' "
                             "lines on stdin, write one JSON line per command on stdout")
    parser.add_argument("-c", "--connections", type=_positive(int, "connections"), default=50,
                        help="one-shot mode: connections (default: 50)")
    parser.add_argument("-d", "--duration", type=_positive(float, "duration", MAX_LOAD_S), default=10.0,
                        help=f"one-shot mode: seconds of load (default: 10, at most {MAX_LOAD_S:g})")
    parser.add_argument("--max-requests", type=_positive(int, "max requests"), default=None,
                        help="one-shot mode: stop the load after this many requests")
    parser.add_argument("--json", action="store_true", help="one-shot mode: print the results as one JSON line")
    parser.add_argument("--timeout", type=_positive(float, "timeout", 3600), default=DEFAULT_TIMEOUT_S,
                        help=f"seconds a connect or a response may take (default: {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--connect-concurrency", type=_positive(int, "connect concurrency"),
                        default=DEFAULT_CONNECT_CONCURRENCY,
                        help=f"connects in flight at once (default: {DEFAULT_CONNECT_CONCURRENCY})")
    parser.add_argument("--max-lifetime", type=_positive(float, "max lifetime", 86400), default=DEFAULT_MAX_LIFETIME_S,
                        help=f"seconds after which the process exits whatever happens (default: {DEFAULT_MAX_LIFETIME_S:g})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The process's entry point (it sets a SIGALRM hard stop: do not call it inside another program)."""
    args = build_parser().parse_args(argv)
    try:
        generator = LoadGenerator(args.host, args.port, args.path, timeout_s=args.timeout,
                                  connect_concurrency=args.connect_concurrency)
        if not args.commands:
            ensure_fd_capacity(args.connections)
    except LoadGeneratorError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    # The hard stop: SIGALRM's default action ends the process even if the loop is stuck.
    signal.alarm(math.ceil(args.max_lifetime) + 5)
    loop_factory, loop_name = _event_loop_factory()
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ready = {"ok": True, "ready": True, "pid": os.getpid(), "host": generator.host, "port": generator.port,
             "path": generator.path, "event_loop": loop_name, "nofile_soft": soft,
             "nofile_hard": fd_hard_limit(), "max_lifetime_s": args.max_lifetime, "timeout_s": args.timeout}

    async def bounded() -> int:
        try:
            async with asyncio.timeout(args.max_lifetime):
                if args.commands:
                    return await _command_mode(generator, ready)
                return await _one_shot(generator, args, loop_name)
        except TimeoutError:
            print(f"{PROG}: max lifetime of {args.max_lifetime:g} s reached; exiting", file=sys.stderr)
            return EXIT_LIFETIME

    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(bounded())
    except BrokenPipeError:  # whoever read stdout went away
        return 1
    except KeyboardInterrupt:
        return 130


# --- driving the process from outside -----------------------------------------------------------------
class LoadGeneratorProcess:
    """``python -m experiments.loadgen --commands`` as a child process, driven line by line.

    ::

        with LoadGeneratorProcess(python=sys.executable) as generator:
            generator.start("127.0.0.1", port)
            reply = generator.command("ramp 1000", timeout_s=60)   # the JSON reply, as a dict
            if not reply["ok"]: ...                                # reply["error"] says why

    :meth:`command` returns the child's reply (``ok`` false for a refused or failed command) and
    raises :class:`LoadGeneratorError` when the child dies or does not answer within ``timeout_s``
    seconds: give ``load D`` a timeout above D plus the request timeout. ``max_lifetime_s`` bounds the
    child's life; ``request_timeout_s`` is its per-connect and per-response timeout.
    """

    def __init__(
        self,
        python: str = sys.executable,
        *,
        max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S,
        request_timeout_s: float = DEFAULT_TIMEOUT_S,
        ready_timeout_s: float = 30.0,
    ) -> None:
        self.python = python
        self.max_lifetime_s = max_lifetime_s
        self.request_timeout_s = request_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen | None = None
        #: The child's ``ready`` message (pid, event loop, fd limits...), once started.
        self.ready: dict[str, Any] | None = None
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._threads: list[threading.Thread] = []
        self._sent = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stderr_tail(self) -> str:
        """The child's last stderr lines (for error messages)."""
        return "".join(self._stderr_tail)

    def start(self, host: str, port: int, path: str = "/") -> dict[str, Any]:
        """Start the child against ``host:port`` and wait for its ready message, which is returned."""
        if self.process is not None:
            raise LoadGeneratorError("already started")
        loopback_host(host)  # refuse here, with the same message, rather than in the child
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (package_root, env.get("PYTHONPATH"))))
        argv = [self.python, "-m", "experiments.loadgen", "--commands", "--host", host, "--port", str(port),
                "--path", path, "--timeout", str(self.request_timeout_s),
                "--max-lifetime", str(self.max_lifetime_s)]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", bufsize=1, env=env,
        )
        self._threads = [
            threading.Thread(target=self._pump, args=(self.process.stdout, self._replies.put, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.process.stderr, self._stderr_tail.append, False), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        try:
            self.ready = self._read_reply(self.ready_timeout_s, "the ready message")
        except LoadGeneratorError:
            self.close(grace_s=0)
            raise
        if not self.ready.get("ready"):
            self.close(grace_s=0)
            raise LoadGeneratorError(f"load generator did not start: {self.ready.get('error', self.ready)}")
        return self.ready

    def command(self, line: str, timeout_s: float) -> dict[str, Any]:
        """Send one command line and return the child's JSON reply as a dict."""
        process = self.process
        if process is None or self.ready is None:
            raise LoadGeneratorError("not started")
        if "\n" in line or not line.strip():
            raise LoadGeneratorError(f"a command is one non-empty line, got {line!r}")
        try:
            process.stdin.write(line + "\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise LoadGeneratorError(self._death_note(f"could not send {line!r}")) from None
        self._sent += 1
        deadline = time.monotonic() + timeout_s
        while True:  # skip replies to earlier commands that timed out
            reply = self._read_reply(deadline - time.monotonic(), f"the reply to {line!r}")
            if reply.get("seq", self._sent) >= self._sent:
                return reply

    def close(self, grace_s: float = 5.0) -> int | None:
        """Stop the child: ``quit``, then SIGTERM by PID after ``grace_s`` seconds, then SIGKILL.
        Returns its exit code (negative: the signal that ended it)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            try:
                process.stdin.write("quit\n")
                process.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass
            if not self._exited_within(grace_s):
                process.terminate()  # Popen signals its own PID only
                if not self._exited_within(grace_s):
                    process.kill()
                    process.wait(10)
        for stream in (process.stdin, process.stdout, process.stderr):
            try:
                stream.close()
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=2)
        return process.returncode

    def _exited_within(self, seconds: float) -> bool:
        try:
            self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def __enter__(self) -> LoadGeneratorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # internals
    @staticmethod
    def _pump(stream, sink, mark_eof: bool) -> None:
        """Copy a child's pipe, line by line, into ``sink`` (then None when ``mark_eof``)."""
        try:
            for line in stream:
                sink(line)
        except (OSError, ValueError):
            pass
        if mark_eof:
            sink(None)

    def _read_reply(self, timeout_s: float, what: str) -> dict[str, Any]:
        try:
            line = self._replies.get(timeout=max(timeout_s, 0))
        except queue.Empty:
            raise LoadGeneratorError(f"no answer from the load generator within the timeout, waiting for {what}") from None
        if line is None:
            self._replies.put(None)  # every later read sees the EOF too
            raise LoadGeneratorError(self._death_note(f"load generator exited while waiting for {what}"))
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            raise LoadGeneratorError(f"load generator wrote a line that is not JSON: {line[:200]!r}") from None
        if not isinstance(reply, dict):
            raise LoadGeneratorError(f"load generator wrote unexpected JSON: {line[:200]!r}")
        return reply

    def _death_note(self, message: str) -> str:
        code = self.process.poll() if self.process is not None else None
        tail = self.stderr_tail().strip()
        return f"{message} (exit code {code}){': ' + tail if tail else ''}"


if __name__ == "__main__":
    sys.exit(main())
