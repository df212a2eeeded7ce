"""The per-connection coroutine: read a request head, parse, answer, repeat while kept alive.

One generator per connection, resumed by the event loop when its fd is ready. It yields what it
waits for:

- ``WANT_READ``: mid-request, needs more bytes;
- ``WANT_WRITE``: the socket's send buffer is full;
- ``PARK``: between requests with nothing buffered. It holds no buffer or request state while
  parked, and the layout may drop it altogether (``ConnectionTable.park``);
- ``RUNNABLE``: it has just answered a request and the next one is already buffered (pipelining):
  it gives the loop a turn, so a client pipelining thousands of requests cannot starve the others,
  and asks to be resumed without waiting for an event.

Its deadline (see ``Server.restart_deadline``) runs from the accept and restarts after each
response, so a connection is closed once it has made no progress for one keep-alive timeout, however
it trickles bytes meanwhile.

It returns when the connection should be closed (EOF, reset, ``Connection: close``, or an error
response sent). Request state and the read buffer come from the layout, so the same code keeps them
in the slot (naive) or on the coroutine (the others).
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Generator

from .handlers import dispatch
from .http import HEAD_BUFFER_SIZE, ChunkedDecoder, HTTPError, build_response, check_policy, find_head_end, parse_head
from .layouts.base import KEEP_ALIVE, WRITING

if TYPE_CHECKING:
    from .loop import Server

WANT_READ = 1
WANT_WRITE = 2
PARK = 3
RUNNABLE = 4

#: Bytes read at a time while discarding input or reading a body beyond the head buffer.
_READ_CHUNK = 4096

_readv = os.readv
_read = os.read
_write = os.write


def serve_connection(server: Server, fd: int) -> Generator[int, None, None]:
    """Serve the connection on ``fd`` until it should close (see the module docstring)."""
    table = server.table
    buffer = table.read_buffer(fd)
    view = memoryview(buffer)
    capacity = HEAD_BUFFER_SIZE  # the shared constant: len(buffer) would be a new int per coroutine
    used = 0  # bytes of buffer holding unprocessed input
    request = response = body = None
    while True:
        try:
            # --- request head -------------------------------------------------------------------
            head_length = find_head_end(buffer, used) if used else 0
            while not head_length:
                if used == capacity:
                    raise HTTPError(431, "request head larger than the buffer")
                # Read until EAGAIN before waiting: skipping that read after a short one would miss a
                # FIN that arrived with the request (a half-closed client), which raises no new edge.
                received = _read_into(fd, view[used:])
                if received == _SOCKET_ERROR:
                    return  # reset by peer, or another socket error: nothing to answer
                if received == _NOTHING_YET:
                    if used == 0:
                        # Nothing buffered: hold nothing (not the buffer, not the last request or
                        # response) while waiting for the next request.
                        view.release()
                        buffer = view = request = response = body = None
                        yield PARK
                        buffer = table.read_buffer(fd)
                        view = memoryview(buffer)
                    else:
                        yield WANT_READ
                    continue
                if received == 0:
                    return  # EOF (possibly mid-request): the client is gone
                used += received
                head_length = find_head_end(buffer, used)

            request = table.new_request(fd)  # made once the head is complete, so a park never holds one
            parse_head(bytes(view[:head_length]), request)
            check_policy(request, server.max_body_bytes)
            keep_alive = request.keep_alive and server.running
            flags = table.flags(fd)
            table.set_flags(fd, flags | KEEP_ALIVE if keep_alive else flags & ~KEEP_ALIVE)

            # --- body -------------------------------------------------------------------------
            consumed = head_length
            body = b""
            if (request.chunked or request.content_length) and used == head_length and _expects_continue(request):
                # The client waits for this before sending its body (RFC 9110 10.1.1); without it
                # curl stalls a second on every large POST.
                yield from _write_all(table, fd, _CONTINUE)
            if request.chunked:
                decoder = ChunkedDecoder(server.max_body_bytes)
                # The decoder keeps a partial chunk-size line or CRLF itself; what it does not
                # consume once the body is done belongs to the next pipelined request.
                pending = bytes(view[head_length:used])
                while True:
                    pending = pending[decoder.feed(pending):]
                    if decoder.done:
                        break
                    # The decoder leaves at most ~1 KiB unconsumed, so what is left after the body
                    # always fits the buffer.
                    data = yield from _read_some(fd, capacity - len(pending))
                    if not data:
                        return
                    pending += data
                # Bytes past the body belong to the next pipelined request.
                view[: len(pending)] = pending
                used, consumed = len(pending), 0
                body = bytes(decoder.body)
            elif request.content_length:
                wanted = request.content_length
                available = used - head_length
                if wanted <= available:
                    body = bytes(view[head_length : head_length + wanted])
                    consumed += wanted
                else:
                    collected = bytearray(view[head_length:used])
                    consumed = used
                    while len(collected) < wanted:
                        data = yield from _read_some(fd, min(wanted - len(collected), 65536))
                        if not data:
                            return
                        collected += data
                    body = bytes(collected)
        except HTTPError as error:
            response = build_response(
                error.status, (error.reason + "\n").encode("ascii"),
                keep_alive=False, date=server.date, head_only=False,
            )
            yield from _write_all(table, fd, response)
            yield from _linger(server, fd)
            return

        # Keep the bytes of the next pipelined request, if any, at the start of the buffer.
        remaining = used - consumed
        if remaining > 0:
            view[:remaining] = view[consumed:used]
        used = max(remaining, 0)

        # --- response -------------------------------------------------------------------------
        try:
            status, payload, content_type, extra = dispatch(server, fd, request, body)
        except Exception:  # a handler bug must not take the server down
            server.log_exception(f"handler failed on fd {fd}")
            status, payload, content_type, extra, keep_alive = 500, b"Internal Server Error\n", b"text/plain", (), False
        http10 = request.version == b"1.0"
        head_only = request.method == b"HEAD"
        date = server.date
        if date is not _cache_date[0]:
            _response_cache.clear()
            _cache_date[0] = date
        key = (status, payload, content_type, keep_alive, http10, head_only, extra)
        response = _response_cache.get(key)
        if response is None:
            response = build_response(
                status, payload, content_type=content_type, keep_alive=keep_alive,
                http10=http10, head_only=head_only, date=date, extra_headers=extra,
            )
            if len(_response_cache) < _RESPONSE_CACHE_ENTRIES and len(payload) <= 256:
                _response_cache[key] = response
        written = _write_once(fd, response)
        if written != len(response) and written != _SOCKET_ERROR:
            yield from _write_all(table, fd, memoryview(response)[written:])
        if not keep_alive:
            yield from _linger(server, fd)
            return
        server.restart_deadline(fd)  # progress: the timeout counts from here
        if used:
            yield RUNNABLE


_NOTHING_YET = -1
_SOCKET_ERROR = -2
#: Built responses by what they are made of, valid for the current Date header: the common answers
#: (hello, errors) are built once a second instead of once a request. Bounded to a few small
#: entries so it stays a constant of a few KiB in the heap figures.
_response_cache: dict = {}
_RESPONSE_CACHE_ENTRIES = 8
_cache_date = [b""]


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


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


def _read_some(fd: int, size: int = _READ_CHUNK) -> Generator[int, None, bytes]:
    """Read up to ``size`` bytes, waiting as needed; returns b"" on EOF or a socket error."""
    while True:
        try:
            return _read(fd, size)
        except BlockingIOError:
            yield WANT_READ
        except OSError:
            return b""


def _write_all(table, fd: int, data: bytes) -> Generator[int, None, None]:
    """Write all of ``data``, waiting for writability as needed. A dead peer ends it quietly (the
    coroutine's next read sees the EOF or error). At most one response is ever pending per
    connection: the coroutine reads no further request until this one is written."""
    waited = False  # whether WRITING was set, so it is cleared whichever way this ends
    while data:
        try:
            written = _write(fd, data)
        except BlockingIOError:
            if not waited:
                waited = True
                table.set_flags(fd, table.flags(fd) | WRITING)
            yield WANT_WRITE
            continue
        except OSError:
            break
        if written == len(data):
            break
        data = memoryview(data)[written:]  # a slice of a memoryview copies nothing
    if waited:
        table.set_flags(fd, table.flags(fd) & ~WRITING)


def _linger(server: Server, fd: int) -> Generator[int, None, None]:
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
