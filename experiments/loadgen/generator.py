"""The library: :class:`LoadGenerator` holds keep-alive connections (asyncio Protocols, one request
outstanding each, never pipelining) and runs ``ramp``, ``load`` and ``drain``, each returning a
:class:`PhaseResult`."""

from __future__ import annotations

import asyncio
import errno
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .histogram import LatencyHistogram
from .params import (
    DEFAULT_CONNECT_CONCURRENCY,
    DEFAULT_RAMP_S,
    DEFAULT_STALL_S,
    DEFAULT_TIMEOUT_S,
    MAX_LOAD_S,
    LoadGeneratorError,
    ensure_fd_capacity,
    loopback_host,
    request_bytes,
)
from .response import ProtocolError, ResponseParser

_perf_counter = time.perf_counter

#: How a connection ended, as the client saw it (the runner names causes from these, nothing more):
END_KINDS = {
    "closed_announced": "closed by the server after a response that said Connection: close (or HTTP/1.0)",
    "closed_idle": "closed by the server (FIN) with no request outstanding",
    "reset_idle": "reset by the server (RST) with no request outstanding",
    "closed_with_request": "closed by the server (FIN) with a request outstanding",
    "reset_with_request": "reset by the server (RST) with a request outstanding",
    "no_answer": "connected (the client saw the SYN-ACK) but no response within the timeout, or before the ramp "
                 "stalled; aborted by the client",
    "client": "closed by the client (drain, or after its one request in load-fresh)",
    "client_abort": "aborted by the client after a response it could not parse or did not ask for",
}


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
    #: How the connections that ended since the previous result ended, as seen from the client, by
    #: :data:`END_KINDS` kind: ``{kind: {"count", "requests_min", "requests_max", "idle_s_min",
    #: "idle_s_max"}}`` (requests answered on it before it ended; seconds since its last response, or
    #: since its connect when none came). Connects that failed are in ``errors`` (``connect_*``).
    ended: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Why the ramp ended before every client had its answer (``deadline``: its time bound passed;
    #: ``no_progress``: that many clients in a row failed with none held between; ``stalled``: no
    #: connect and no response for its stall time); None otherwise. ``tried``: the clients it started.
    stopped_early: str | None = None
    tried: int = 0
    #: The most connections open at once during the operation.
    peak_open: int = 0
    #: ``load``: True when each request went on a new connection (``load-fresh``).
    fresh_connections: bool = False

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

    __slots__ = ("requests", "bytes_received", "errors", "latency", "deadline", "budget", "repeat", "progress_at")

    def __init__(self, *, repeat: bool = False, deadline: float = math.inf, budget: int | None = None) -> None:
        self.requests = 0
        self.bytes_received = 0
        self.errors: dict[str, int] = {}
        self.latency = LatencyHistogram()
        self.deadline = deadline
        self.budget = budget
        self.repeat = repeat
        #: perf_counter() of the last response or connect: a ramp with none for a while has stalled.
        self.progress_at = _perf_counter()

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

    __slots__ = ("owner", "transport", "parser", "run", "sent_at", "done", "lost", "timed_out", "answered",
                 "last_seen", "ending")

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
        #: Responses received on it; perf_counter() of its connect, then of its last response.
        self.answered = 0
        self.last_seen = _perf_counter()
        #: Set when the client ends it (an END_KINDS key): who closed it, for connection_lost.
        self.ending: str | None = None

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
            self.ending = "client_abort"
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
        reset = isinstance(exc, ConnectionResetError)
        if self.timed_out:
            kind = "no_answer"
        elif self.ending is not None:
            kind = self.ending
        elif self.sent_at is not None:
            kind = "reset_with_request" if reset else "closed_with_request"
        else:
            kind = "reset_idle" if reset else "closed_idle"
        self.owner.record_end(kind, self.answered, _perf_counter() - self.last_seen)
        if self.sent_at is not None:
            self.sent_at = None
            if not self.timed_out:
                self.run.error("reset" if reset else "closed")
        self._finish()
        if not self.lost.done():
            self.lost.set_result(None)

    # driving
    def start(self, run: _Run, taken: bool = False) -> asyncio.Future:
        """Work for ``run``: send a request (if its budget allows, or ``taken``: the caller took
        it from the budget already), and keep sending after each response while ``run`` says so.
        The future resolves when it stops."""
        self.run = run
        self.done = self.owner.loop.create_future()
        if self.transport is None or self.transport.is_closing() or not (taken or run.take()):
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
        run.progress_at = now
        self.answered += 1
        self.last_seen = now
        run.latency.record(now - sent_at)
        if not 200 <= status < 300:
            run.error(f"status_{status}")
        if self.parser.mid_response:  # part of a second response to one request
            self._unsolicited(1, run)
        elif close:
            self.sent_at = None
            self.ending = "closed_announced"
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
        self.ending = "client_abort"
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
        #: How connections ended since the last result: ``{kind: [count, requests min, max, idle min, max]}``.
        self.ends: dict[str, list[float]] = {}
        #: The most connections open at once since the last result.
        self.peak_open = 0

    def record_end(self, kind: str, answered: int, idle_s: float) -> None:
        """One connection ended (``kind`` from :data:`END_KINDS`), after ``answered`` responses and
        ``idle_s`` seconds since its last response (or its connect)."""
        entry = self.ends.get(kind)
        if entry is None:
            self.ends[kind] = [1, answered, answered, idle_s, idle_s]
        else:
            entry[0] += 1
            entry[1], entry[2] = min(entry[1], answered), max(entry[2], answered)
            entry[3], entry[4] = min(entry[3], idle_s), max(entry[4], idle_s)

    def ended_so_far(self) -> dict[str, dict[str, float]]:
        """:attr:`PhaseResult.ended` of the events since the last result, without resetting them."""
        return {kind: {"count": int(count), "requests_min": int(low), "requests_max": int(high),
                       "idle_s_min": round(idle_low, 3), "idle_s_max": round(idle_high, 3)}
                for kind, (count, low, high, idle_low, idle_high) in sorted(self.ends.items())}

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
    async def ramp(self, connections: int, deadline_s: float = DEFAULT_RAMP_S,
                   stall_s: float = DEFAULT_STALL_S) -> PhaseResult:
        """Open ``connections`` more connections, at most ``connect_concurrency`` at a time; each
        sends one request and reads its response before its connect slot is given to the next.

        Bounded, and ended with what was accepted (:attr:`PhaseResult.stopped_early` says why): no
        connect starts after ``deadline_s`` seconds (``deadline``), nor once ``connect_concurrency``
        clients in a row (at least 8) were not held (a connect failed, no answer, or closed by the
        server) with none held between (``no_progress``); and once ``stall_s`` seconds pass with no
        connect completed and no response (``stalled``: a full listen backlog, or no free worker),
        the requests outstanding are aborted as ``no_answer`` and the connects in flight as
        ``connect_timeout``, rather than each waiting out the whole timeout while the clients the
        server did keep go idle past its keep-alive timeout."""
        if connections < 1:
            raise LoadGeneratorError(f"ramp needs at least 1 connection, got {connections}")
        if not deadline_s > 0 or not stall_s > 0:
            raise LoadGeneratorError(f"ramp deadline and stall time must be positive, got {deadline_s}, {stall_s}")
        ensure_fd_capacity(len(self.connections) + connections)
        run, started, cpu_started = self._begin()
        slots = asyncio.Semaphore(self.connect_concurrency)
        give_up_after = max(8, min(self.connect_concurrency, connections))
        opened = tried = failures_in_a_row = 0
        stopped: str | None = None
        connecting: set[asyncio.Task] = set()

        async def open_one() -> None:
            nonlocal opened, tried, failures_in_a_row, stopped
            async with slots:
                if stopped is None and _perf_counter() - started > deadline_s:
                    stopped = "deadline"
                elif stopped is None and failures_in_a_row >= give_up_after:
                    stopped = "no_progress"
                if stopped is not None:
                    return
                tried += 1
                task = asyncio.ensure_future(self._connect(run))
                connecting.add(task)
                try:
                    connection = await task
                except asyncio.CancelledError:  # the ramp stalled while it connected
                    run.error("connect_timeout")
                    return
                finally:
                    connecting.discard(task)
                if connection is not None:
                    opened += 1
                    run.progress_at = _perf_counter()
                    self.peak_open = max(self.peak_open, len(self.connections))
                    await connection.start(run)
                    if connection in self.connections and not connection.transport.is_closing():
                        failures_in_a_row = 0
                        return
                failures_in_a_row += 1

        async def watch_for_a_stall() -> None:
            nonlocal stopped
            while True:
                await asyncio.sleep(min(0.1, stall_s / 4))
                if _perf_counter() - run.progress_at > stall_s:
                    stopped = stopped or "stalled"
                    for task in list(connecting):
                        task.cancel()
                    for connection in list(self.connections):
                        if connection.run is run and connection.sent_at is not None:
                            connection.time_out()
                    run.progress_at = _perf_counter()  # what was aborted gets its own stall time

        try:
            async with self._watchdog(run):
                monitor = asyncio.ensure_future(watch_for_a_stall())
                try:
                    await asyncio.gather(*(open_one() for _ in range(connections)))
                finally:
                    monitor.cancel()
        finally:
            self._busy = False
        result = self._result("ramp", run, started, cpu_started, opened)
        result.stopped_early, result.tried = stopped, tried
        return result

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

    async def load_fresh(self, duration_s: float, workers: int, max_requests: int | None = None) -> PhaseResult:
        """``workers`` clients, each sending one request per connection: connect, one request, read
        the response, close, again, for ``duration_s`` seconds (or ``max_requests`` requests): the
        load phase of a server that closes each connection after its response. The held connections,
        if any, are left alone."""
        if not 0 < duration_s <= MAX_LOAD_S:
            raise LoadGeneratorError(f"load duration must be more than 0 and at most {MAX_LOAD_S:g} s, got {duration_s}")
        if workers < 1:
            raise LoadGeneratorError(f"load-fresh needs at least 1 worker, got {workers}")
        ensure_fd_capacity(len(self.connections) + workers)
        run, started, cpu_started = self._begin()
        run.deadline = started + duration_s
        run.budget = max_requests
        opened = 0

        async def worker() -> None:
            nonlocal opened
            while _perf_counter() < run.deadline and run.take():
                connection = await self._connect(run)
                if connection is None:
                    if run.budget is not None:
                        run.budget += 1  # no request was sent: give it back
                    await asyncio.sleep(0.01)  # a refused or timed-out connect: do not spin
                    continue
                opened += 1
                self.peak_open = max(self.peak_open, len(self.connections))
                await connection.start(run, taken=True)
                if not connection.lost.done():
                    connection.ending = "client"
                    connection.transport.close()
                    await asyncio.wait([connection.lost], timeout=self.timeout_s)
                    if not connection.lost.done():
                        connection._abort()

        try:
            async with self._watchdog(run):
                await asyncio.wait([asyncio.ensure_future(worker()) for _ in range(workers)],
                                   timeout=duration_s + 2 * self.timeout_s + 5)
        finally:
            self._busy = False
        result = self._result("load", run, started, cpu_started, opened)
        result.fresh_connections = True
        return result

    async def drain(self) -> PhaseResult:
        """Close every connection and wait (up to the timeout) until they are closed."""
        run, started, cpu_started = self._begin()
        try:
            connections = list(self.connections)
            for connection in connections:
                connection.ending = "client"
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
        ended, self.ends = self.ended_so_far(), {}
        peak, self.peak_open = max(self.peak_open, len(self.connections)), len(self.connections)
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
            ended=ended,
            peak_open=peak,
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
