"""The per-connection coroutine: read a request head, parse, answer, repeat while kept alive.

One generator per connection, resumed by the event loop when its fd is ready. It yields what it
waits for; the loop resumes it with the epoll event mask that woke it, or with 0 when it resumes it
without an event, and closes it (``GeneratorExit`` at the ``yield``) when its deadline passes or the
server shuts down. What it holds while it waits is what a waiting connection costs:

============== ================================= ====================== ==========================
yields         waits for                         resumed by             holds meanwhile
============== ================================= ====================== ==========================
``WANT_READ``  the rest of a request head or     an event (bytes, FIN,  the read buffer; mid-body
               body; or, lingering after a last  error)                 also the request and the
               response, the client's EOF                               body so far; lingering:
                                                                        nothing
``WANT_WRITE`` room in the socket's send buffer  an event (EPOLLOUT)    the unsent rest of the
               (a response or 100 Continue)                             response; WRITING is set
``PARK``       the next request, nothing         an event; if the       no read buffer, request,
               buffered and the socket empty     layout dropped it      response or cache key: the
                                                 (packed), the loop     sub-generator that held
                                                 starts a new one       them has returned
``RUNNABLE``   nothing: the next request is      the loop's next turn   the read buffer with the
               already buffered (pipelining)     (mask 0), or an event  next request(s), the last
                                                 before that            request and response
============== ================================= ====================== ==========================

There is no coroutine before the first event of an accepted connection: the loop starts one then,
with that event's mask. ``RUNNABLE`` gives the loop a turn, so a client pipelining thousands of
requests cannot starve the others. Every wait retries when resumed, so a resume with 0 in another
state (a RUNNABLE entry that an event served first) costs one read or write that says ``EAGAIN``.

The mask lets it skip the read that would only say ``EAGAIN``: after a short read the socket was
empty, and with edge-triggered epoll any byte (or FIN) that arrives later raises a new event. The one
thing a short read cannot tell is a FIN that came *with* the request (a half-closed client); the
event that delivered it carries ``EPOLLRDHUP``, and once the coroutine has seen that bit it reads to
EOF every time.

Its deadline (see ``Server.restart_deadline``) runs from the accept and restarts after each
response, so a connection is closed once it has made no progress for one keep-alive timeout, however
it trickles bytes meanwhile.

A request head that arrives whole and alone in one read (the common case) is parsed straight from
the bytes that read returned. Only a head split across reads, pipelined requests or a body take the
layout's read buffer.

The outer generator only parks; one request after another is served by sub-generators (the
head, each body framing, the response's writes), and a returned sub-generator frees its frame, so
nothing of a request outlives it by a hand-kept list of locals set to None.

It returns when the connection should be closed (EOF, reset, ``Connection: close``, or an error
response sent). Request state and the read buffer come from the layout, so the same code keeps them
in the slot (naive) or on the coroutine (the others).

Both shortcuts are for throughput (``memdiet bench``): the skipped read saves a system call and an
exception per request, the unbuffered head a buffer, a memoryview and a copy.
"""

from __future__ import annotations

import os
import select
import socket
from typing import TYPE_CHECKING, Generator

from .handlers import dispatch
from .http import HEAD_BUFFER_SIZE, ChunkedDecoder, HTTPError, build_response, check_policy, find_head_end, parse_head
from .layouts.base import IDLE, KEEP_ALIVE, WRITING

if TYPE_CHECKING:  # type hints only: the server never loads it (see server/services.py)
    from .services import LoopServices

#: What the coroutine yields: what it waits for (module docstring).
WANT_READ = 1
WANT_WRITE = 2
PARK = 3
RUNNABLE = 4

#: Event bits meaning the peer has half-closed or the socket failed: read until EOF from then on.
_PEER_CLOSED = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR

#: Bytes read at a time while discarding input or reading a body beyond the head buffer.
_READ_CHUNK = 4096

#: Returned instead of a byte count by the read helpers (:func:`_read_into`; :func:`_write_once`
#: returns ``_SOCKET_ERROR`` too): nothing to read yet (EAGAIN), or any other socket error.
_NOTHING_YET = -1
_SOCKET_ERROR = -2

#: Built responses by what they are made of, valid for the current Date header: the common answers
#: (hello, errors) are built once a second instead of once a request. Bounded to a few small
#: entries so it stays a constant of a few KiB in the heap figures.
_response_cache: dict = {}
_RESPONSE_CACHE_ENTRIES = 8
#: The Date header value (the object itself) the cache holds responses for; a list, so the
#: generator updates it without a ``global`` statement.
_cache_date = [b""]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

#: The system calls bound once: a global lookup per call instead of a global and an attribute.
_readv = os.readv
_read = os.read
_write = os.write


def serve_connection(server: LoopServices, fd: int, events: int = 0) -> Generator[int, int | None, None]:
    """Serve the connection on ``fd`` until it should close (see the module docstring). ``events``
    is the epoll mask of the wakeup that started it.

    It only parks: everything else is :func:`_serve_requests`, whose frame (the read buffer, the
    last request, its body and response) is freed when it returns, so a parked coroutine holds
    nothing but ``server``, ``fd`` and two event masks (``tests/server/test_parked_frame.py``)."""
    peer_closed = events & _PEER_CLOSED  # a FIN may be queued: never skip a read again
    while True:
        peer_closed = yield from _serve_requests(server, fd, peer_closed)
        if peer_closed is None:
            return
        events = yield PARK
        if events:
            peer_closed |= events & _PEER_CLOSED


def _serve_requests(server: LoopServices, fd: int, peer_closed: int) -> Generator[int, int | None, int | None]:
    """Serve requests on ``fd`` until nothing is buffered and the socket has nothing to read, then
    return ``peer_closed`` (the caller parks); None when the connection should close."""
    table = server.table
    # The layout's read buffer, taken only when a request head does not arrive whole and alone in
    # one read (see below); None meanwhile.
    buffer = view = None
    used = 0  # bytes of buffer holding unprocessed input
    # The last read was short and no event came since: the socket holds nothing to read.
    drained = False
    while True:
        try:
            # --- request head -------------------------------------------------------------------
            head = None  # the head as bytes when it came whole and alone in one read
            head_length = find_head_end(buffer, used) if used else 0
            if not used:
                if drained and not peer_closed:
                    return peer_closed  # the read would only say EAGAIN (module docstring)
                # Nothing buffered: read into a bytes object of its own. The common case, one whole
                # request head and nothing after it, is parsed from it as it is: no buffer, no copy.
                # Anything else goes into the buffer.
                data = _read_bytes(fd, HEAD_BUFFER_SIZE)
                if data is None:
                    return peer_closed  # nothing to read: park
                if not data:
                    return None  # EOF, reset, or another socket error
                received = len(data)
                drained = received < HEAD_BUFFER_SIZE
                head_length = find_head_end(data, received)
                if head_length == received:
                    head = data
                else:
                    if buffer is None:
                        buffer = table.read_buffer(fd)
                        view = memoryview(buffer)
                    view[:received] = data
                    used = received
                data = None  # the buffer or head holds it now: do not keep a second reference
            if not head_length:
                found = yield from _read_head(fd, view, used, drained, peer_closed)
                if found is None:
                    return None  # EOF mid-request, reset, or another socket error
                head_length, used, drained, peer_closed = found

            request = table.new_request(fd)  # made once the head is complete, so a park never holds one
            parse_head(head if head is not None else bytes(view[:head_length]), request)
            check_policy(request, server.max_body_bytes)
            keep_alive = request.keep_alive and server.running
            # A request is in progress (IDLE off) and asked to be kept alive or not: one write.
            flags = table.flags(fd)
            if flags & (IDLE | KEEP_ALIVE) != (KEEP_ALIVE if keep_alive else 0):
                table.set_flags(fd, flags & ~(IDLE | KEEP_ALIVE) | (KEEP_ALIVE if keep_alive else 0))

            # --- body -------------------------------------------------------------------------
            consumed = head_length
            body = b""
            if request.chunked or request.content_length:
                drained = False  # the body's reads and waits below see events this frame does not
                if head is not None:  # the body is read into the buffer, behind its head
                    if buffer is None:
                        buffer = table.read_buffer(fd)
                        view = memoryview(buffer)
                    view[:head_length] = head
                    used = head_length
                if used == head_length and _expects_continue(request):
                    # The client waits for this before sending its body (RFC 9110 10.1.1); without
                    # it curl stalls a second on every large POST.
                    peer_closed |= (yield from _write_all(table, fd, _CONTINUE)) & _PEER_CLOSED
                if request.chunked:
                    read = yield from _read_chunked_body(server, fd, view, head_length, used)
                else:
                    read = yield from _read_length_body(fd, view, head_length, used, request.content_length)
                if read is None:
                    return None  # EOF or a socket error mid-body
                body, used, consumed, seen = read
                peer_closed |= seen & _PEER_CLOSED
        except HTTPError as error:
            response = build_response(
                error.status, (error.reason + "\n").encode("ascii"),
                keep_alive=False, date=server.date, head_only=False,
            )
            yield from _write_all(table, fd, response)
            yield from _linger(server, fd)
            return None

        # Keep the bytes of the next pipelined request, if any, at the start of the buffer.
        used -= consumed
        if used > 0:
            view[:used] = view[consumed : consumed + used]
        else:
            used = 0  # a body read beyond the buffer leaves nothing in it

        # --- response -------------------------------------------------------------------------
        response, keep_alive = _response(server, fd, request, body, keep_alive)
        written = _write_once(fd, response)
        if written != len(response) and written != _SOCKET_ERROR:
            peer_closed |= (yield from _write_all(table, fd, memoryview(response)[written:])) & _PEER_CLOSED
            drained = False  # bytes may have come while it waited
        if not keep_alive:
            yield from _linger(server, fd)
            return None
        server.restart_deadline(fd)  # progress: the timeout counts from here
        if used:
            events = yield RUNNABLE
            if events:  # resumed by an event, not from the runnable queue: bytes or a FIN came
                drained = False
                peer_closed |= events & _PEER_CLOSED


def _read_head(
    fd: int, view: memoryview, used: int, drained: bool, peer_closed: int,
) -> Generator[int, int | None, tuple[int, int, bool, int] | None]:
    """Read into ``view`` behind the ``used`` bytes already there until they hold a whole request
    head. Returns ``(head_length, used, drained, peer_closed)``, or None on EOF or a socket error;
    raises 431 when the buffer fills first. ``used`` is never 0 here, so it waits, never parks."""
    head_length = 0
    while not head_length:
        if used == HEAD_BUFFER_SIZE:
            raise HTTPError(431, "request head larger than the buffer")
        if drained and not peer_closed:
            received = _NOTHING_YET  # the read would only say EAGAIN (module docstring)
        else:
            received = _read_into(fd, view[used:])
            drained = 0 <= received < HEAD_BUFFER_SIZE - used
        if received <= 0:
            if received != _NOTHING_YET:
                return None
            events = yield WANT_READ
            drained = False
            if events:
                peer_closed |= events & _PEER_CLOSED
            continue
        used += received
        head_length = find_head_end(view.obj, used)
    return head_length, used, drained, peer_closed


def _read_chunked_body(
    server: LoopServices, fd: int, view: memoryview, head_length: int, used: int,
) -> Generator[int, int | None, tuple[bytes, int, int, int] | None]:
    """The chunked body after the head in ``view`` (``used`` bytes buffered), read on as needed.
    Returns ``(body, used, consumed, seen)``, the bytes past the body moved to the start of the
    buffer (``used`` of them, none consumed), with the OR of the event masks it was resumed with;
    None on EOF or a socket error."""
    decoder = ChunkedDecoder(server.max_body_bytes)
    seen = 0
    # The decoder keeps a partial chunk-size line or CRLF itself; what it does not consume once the
    # body is done belongs to the next pipelined request.
    pending = bytes(view[head_length:used])
    while True:
        pending = pending[decoder.feed(pending):]
        if decoder.done:
            break
        # The decoder leaves at most ~1 KiB unconsumed, so what is left after the body always fits
        # the buffer.
        data, mask = yield from _read_some(fd, HEAD_BUFFER_SIZE - len(pending))
        seen |= mask
        if not data:
            return None
        pending += data
    # Bytes past the body belong to the next pipelined request.
    view[: len(pending)] = pending
    return bytes(decoder.body), len(pending), 0, seen


def _read_length_body(
    fd: int, view: memoryview, head_length: int, used: int, wanted: int,
) -> Generator[int, int | None, tuple[bytes, int, int, int] | None]:
    """The ``wanted`` bytes of body after the head in ``view`` (``used`` bytes buffered), read on
    as needed into a bytearray of its own. Returns ``(body, used, consumed, seen)`` (what of the
    buffer the request took, and the OR of the event masks it was resumed with); None on EOF or a
    socket error."""
    available = used - head_length
    if wanted <= available:
        return bytes(view[head_length : head_length + wanted]), used, head_length + wanted, 0
    seen = 0
    collected = bytearray(view[head_length:used])
    while len(collected) < wanted:
        data, mask = yield from _read_some(fd, min(wanted - len(collected), 65536))
        seen |= mask
        if not data:
            return None
        collected += data
    return bytes(collected), used, used, seen


def _response(server: LoopServices, fd: int, request, body: bytes, keep_alive: bool) -> tuple[bytes, bool]:
    """The response to ``request`` and whether the connection stays open after it: built by the
    handler's answer, or taken from the cache of common answers (module constants)."""
    try:
        status, payload, content_type, extra = dispatch(server, fd, request, body)
    except Exception:  # a handler bug must not take the server down
        server.log_exception(f"handler failed on fd {fd}")
        status, payload, content_type, extra, keep_alive = 500, b"Internal Server Error\n", b"text/plain", (), False
    date = server.date
    if date is not _cache_date[0]:
        _response_cache.clear()
        _cache_date[0] = date
    key = (status, payload, content_type, keep_alive, request.version, request.method, extra)
    response = _response_cache.get(key)
    if response is None:
        response = build_response(
            status, payload, content_type=content_type, keep_alive=keep_alive,
            http10=request.version == b"1.0", head_only=request.method == b"HEAD", date=date,
            extra_headers=extra,
        )
        if len(_response_cache) < _RESPONSE_CACHE_ENTRIES and len(payload) <= 256:
            _response_cache[key] = response
    return response, keep_alive


def _expects_continue(request) -> bool:
    """True when an HTTP/1.1 request carries ``Expect: 100-continue``."""
    if request.version != b"1.1":
        return False
    for name, value in request.headers:
        if name == b"expect" and value.lower() == b"100-continue":
            return True
    return False


def _write_once(fd: int, data: bytes) -> int:
    """One write attempt: bytes written (0 when the socket is full) or ``_SOCKET_ERROR``."""
    try:
        return _write(fd, data)
    except BlockingIOError:
        return 0
    except OSError:
        return _SOCKET_ERROR


def _read_into(fd: int, view: memoryview) -> int:
    """Read into ``view``: bytes read, 0 at EOF, ``_NOTHING_YET`` (EAGAIN) or ``_SOCKET_ERROR``.

    A function of its own so that EAGAIN, the common case, is raised and caught outside the
    connection generator: an exception passing through a generator gives it a frame object
    (~430 B) that then lives as long as the generator, i.e. as long as the connection.
    """
    try:
        return _readv(fd, (view,))
    except BlockingIOError:
        return _NOTHING_YET
    except OSError:
        return _SOCKET_ERROR


def _read_bytes(fd: int, size: int) -> bytes | None:
    """Read up to ``size`` bytes: the bytes (b"" at EOF or on a socket error), or None (EAGAIN).
    Outside the generator for the reason given at :func:`_read_into`."""
    try:
        return _read(fd, size)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _read_some(fd: int, size: int = _READ_CHUNK) -> Generator[int, int | None, tuple[bytes, int]]:
    """Read up to ``size`` bytes, waiting as needed. Returns the bytes (b"" on EOF or a socket
    error) and the OR of the event masks it was resumed with."""
    seen = 0
    while True:
        try:
            return _read(fd, size), seen
        except BlockingIOError:
            seen |= (yield WANT_READ) or 0
        except OSError:
            return b"", seen


def _write_all(table, fd: int, data: bytes) -> Generator[int, int | None, int]:
    """Write all of ``data``, waiting for writability as needed. A dead peer ends it quietly (the
    coroutine's next read sees the EOF or error). At most one response is ever pending per
    connection: the coroutine reads no further request until this one is written. Returns the OR
    of the event masks it was resumed with (a FIN or reset may come while it waits)."""
    seen = 0
    waited = False  # whether WRITING was set, so it is cleared whichever way this ends
    while data:
        try:
            written = _write(fd, data)
        except BlockingIOError:
            if not waited:
                waited = True
                table.set_flags(fd, table.flags(fd) | WRITING)
            seen |= (yield WANT_WRITE) or 0
            continue
        except OSError:
            break
        if written == len(data):
            break
        data = memoryview(data)[written:]  # a slice of a memoryview copies nothing
    if waited:
        table.set_flags(fd, table.flags(fd) & ~WRITING)
    return seen


def _linger(server: LoopServices, fd: int) -> Generator[int, None, None]:
    """Half-close, then read and discard until the client closes or one more keep-alive timeout
    passes: closing with unread input would make the kernel send a RST, which can destroy the
    response in flight."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    finally:
        sock.detach()
    server.restart_deadline(fd)
    while True:
        try:
            if not _read(fd, _READ_CHUNK):
                return
        except BlockingIOError:
            yield WANT_READ
        except OSError:
            return
