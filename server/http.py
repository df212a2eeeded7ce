"""HTTP/1.1 request-head parsing and response building, sans I/O.

Nothing here touches a socket: the connection coroutine hands in the bytes it has read and gets back
either "need more", a parsed head, or an :class:`HTTPError` carrying the status code to answer with.

The grammar is RFC 9112's, written to agree with h11 (the test suite uses h11 as an oracle): a request
line ``METHOD SP TARGET SP HTTP/d.d``, header fields ``name ":" OWS value OWS``, obsolete line folding
joined with a space, lines ending in CRLF or a bare LF, and the head ending at the first blank line.

The parser writes into a *request state* object given by the connection table's layout (the naive
layout hands in its preallocated slot, the others a fresh :class:`server.request.Request`): it only
needs the attributes ``method``, ``target``, ``version``, ``headers``, ``keep_alive``,
``content_length`` and ``chunked``. That is how parse state can live in the slot or on the coroutine
without the parser knowing which.
"""

from __future__ import annotations

import re

__all__ = [
    "HTTPError",
    "HEAD_BUFFER_SIZE",
    "KNOWN_METHODS",
    "find_head_end",
    "parse_head",
    "check_policy",
    "build_response",
    "ChunkedDecoder",
]

#: Size of the buffer a request head must fit in, in bytes (Lwan's DEFAULT_BUFFER_SIZE). A head that
#: does not fit gets 431.
HEAD_BUFFER_SIZE = 4096

#: Methods this server recognises. Any other well-formed method gets 501 Not Implemented; a recognised
#: method a route does not serve gets 405.
KNOWN_METHODS = frozenset(
    (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT")
)

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_VCHAR = rb"[\x21-\x7e]"
_FIELD_VCHAR = rb"[^\x00\s]"
_FIELD_CONTENT = _FIELD_VCHAR + rb"+(?:[ \t]+" + _FIELD_VCHAR + rb"+)*"
_REQUEST_LINE = re.compile(
    rb"(?P<method>" + _TOKEN + rb") (?P<target>" + _VCHAR + rb"+) HTTP/(?P<version>[0-9]\.[0-9])"
)
_HEADER_FIELD = re.compile(
    rb"(?P<name>" + _TOKEN + rb"):[ \t]*(?P<value>(?:" + _FIELD_CONTENT + rb")?)[ \t]*"
)
_OBS_FOLD = re.compile(rb"[ \t]+")
_BLANK_LINE = re.compile(rb"\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"[0-9]+")
#: More digits than this is "bad Content-Length" (as in h11): no body that large is ever accepted.
_CONTENT_LENGTH_MAX_DIGITS = 20

_REASONS = {
    200: b"OK",
    204: b"No Content",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}


class HTTPError(Exception):
    """A request the server must refuse: ``status`` is the code to answer with, ``reason`` why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def find_head_end(buffer: bytes | bytearray, used: int) -> int:
    """Return the length in bytes of the request head in ``buffer[:used]``, or 0 if it is incomplete.

    The head ends after the first blank line (``\\n\\n`` or ``\\n\\r\\n``). A buffer that starts with a
    blank line holds no request line: that raises 400 at once rather than waiting for more.
    """
    if used and (buffer[0] == 0x0A or (buffer[0] == 0x0D and used > 1 and buffer[1] == 0x0A)):
        raise HTTPError(400, "no request line received")
    match = _BLANK_LINE.search(buffer, 0, used)
    if match is None:
        # A head whose first byte cannot start a method will never become valid: refuse it now
        # instead of holding the connection until the buffer fills (h11 does the same).
        if used and buffer[0] < 0x21:
            raise HTTPError(400, "illegal request line")
        return 0
    return match.end()


def parse_head(head: bytes, request) -> None:
    """Parse a complete request head (as delimited by :func:`find_head_end`) into ``request``.

    Sets ``request.method``, ``.target`` (bytes), ``.version`` (bytes such as ``b"1.1"``),
    ``.headers`` (appends ``(lowercased name, value)`` byte pairs, in order), ``.keep_alive``,
    ``.content_length`` (int, 0 when absent) and ``.chunked``. Raises :class:`HTTPError` (400, or 501
    for a transfer coding other than chunked) on anything h11 would refuse.
    """
    lines = head.split(b"\n")
    del lines[-2:]  # the blank line and what follows it (nothing)
    request_line = lines[0]
    if request_line.endswith(b"\r"):
        request_line = request_line[:-1]
    match = _REQUEST_LINE.fullmatch(request_line)
    if match is None:
        raise HTTPError(400, "illegal request line")
    request.method, request.target, version = match.group("method", "target", "version")
    request.version = version

    headers = request.headers
    host_count = 0
    content_length = None
    chunked = False
    connection_tokens = []
    for line in _unfold(lines):
        field = _HEADER_FIELD.fullmatch(line)
        if field is None:
            raise HTTPError(400, "illegal header line")
        name = field.group("name").lower()
        value = field.group("value")
        if name == b"host":
            host_count += 1
        elif name == b"content-length":
            lengths = {length.strip() for length in value.split(b",")}
            if len(lengths) != 1:
                raise HTTPError(400, "conflicting Content-Length headers")
            value = lengths.pop()
            if _CONTENT_LENGTH.fullmatch(value) is None or len(value) > _CONTENT_LENGTH_MAX_DIGITS:
                raise HTTPError(400, "bad Content-Length")
            if content_length is None:
                content_length = value
            elif content_length != value:
                raise HTTPError(400, "conflicting Content-Length headers")
            else:
                continue  # a repeated identical Content-Length is kept once, as h11 does
        elif name == b"transfer-encoding":
            if chunked:
                raise HTTPError(501, "multiple Transfer-Encoding headers")
            value = value.lower()
            if value != b"chunked":
                raise HTTPError(501, "only Transfer-Encoding: chunked is supported")
            chunked = True
        elif name == b"connection":
            connection_tokens.extend(token.strip().lower() for token in value.split(b","))
        headers.append((name, value))

    if version == b"1.1" and host_count == 0:
        raise HTTPError(400, "missing mandatory Host: header")
    if host_count > 1:
        raise HTTPError(400, "found multiple Host: headers")
    if chunked and content_length is not None:
        # RFC 9112 6.3: a message with both is a smuggling vector; refuse it.
        raise HTTPError(400, "both Content-Length and Transfer-Encoding")
    request.content_length = int(content_length) if content_length is not None else 0
    request.chunked = chunked
    if version == b"1.0":
        request.keep_alive = b"keep-alive" in connection_tokens
    else:
        request.keep_alive = b"close" not in connection_tokens


def _unfold(lines: list[bytes]):
    """Yield header lines (CR stripped) with obsolete line folding joined by one space."""
    last = None
    for index in range(1, len(lines)):
        line = lines[index]
        if line.endswith(b"\r"):
            line = line[:-1]
        fold = _OBS_FOLD.match(line)
        if fold:
            if last is None:
                raise HTTPError(400, "continuation line at start of headers")
            last = last + b" " + line[fold.end():]
        else:
            if last is not None:
                yield last
            last = line
    if last is not None:
        yield last


def check_policy(request, max_body_bytes: int) -> None:
    """Refuse what this server does not serve, after a successful parse: 505 for an HTTP major version
    other than 1, 501 for an unknown method, 413 for a declared body over ``max_body_bytes``."""
    if request.version[:2] != b"1.":
        raise HTTPError(505, "only HTTP/1.x is supported")
    if request.method not in KNOWN_METHODS:
        raise HTTPError(501, "method not implemented")
    if request.content_length > max_body_bytes:
        raise HTTPError(413, "request body larger than the limit")


def build_response(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    keep_alive: bool,
    http10: bool = False,
    head_only: bool = False,
    date: bytes = b"",
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """Return a complete HTTP/1.1 response as bytes.

    ``Content-Length`` always states the body's length (also for HEAD, whose body is then left out).
    An HTTP/1.0 client that is kept alive gets ``Connection: keep-alive``; a connection the server
    will close gets ``Connection: close``.
    """
    parts = [
        b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown")),
        b"Content-Length: %d\r\nContent-Type: %s\r\n" % (len(body), content_type),
    ]
    if date:
        parts.append(b"Date: " + date + b"\r\n")
    for name, value in extra_headers:
        parts.append(name + b": " + value + b"\r\n")
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    elif http10:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(body)
    return b"".join(parts)


_CHUNK_HEADER = re.compile(rb"([0-9A-Fa-f]{1,20})(;[^\r\n]*)?[ \t]*\r\n")


class ChunkedDecoder:
    """Sans-I/O decoder for a ``Transfer-Encoding: chunked`` request body.

    Feed it bytes with :meth:`feed`; it returns how many of them it consumed (the rest belong to the
    next pipelined request once :attr:`done`). Decoded bytes are counted in :attr:`body_length`
    (bytes) and kept in :attr:`body` up to ``max_body_bytes``, past which it raises 413.
    """

    __slots__ = ("max_body_bytes", "body", "body_length", "done", "_remaining", "_state")

    _SIZE, _DATA, _DATA_CRLF, _TRAILER = range(4)

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self.body = bytearray()
        self.body_length = 0
        self.done = False
        self._remaining = 0
        self._state = self._SIZE

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        data = bytes(data)
        pos = 0
        end = len(data)
        while pos < end and not self.done:
            if self._state == self._SIZE:
                newline = data.find(b"\n", pos)
                if newline < 0:
                    if end - pos > 1024:
                        raise HTTPError(400, "chunk header too long")
                    return pos
                match = _CHUNK_HEADER.fullmatch(data, pos, newline + 1)
                if match is None:
                    raise HTTPError(400, "bad chunk header")
                size = int(match.group(1), 16)
                pos = newline + 1
                if size == 0:
                    self._state = self._TRAILER
                else:
                    if self.body_length + size > self.max_body_bytes:
                        raise HTTPError(413, "request body larger than the limit")
                    self._remaining = size
                    self._state = self._DATA
            elif self._state == self._DATA:
                take = min(self._remaining, end - pos)
                self.body += data[pos:pos + take]
                self.body_length += take
                self._remaining -= take
                pos += take
                if self._remaining == 0:
                    self._state = self._DATA_CRLF
            elif self._state == self._DATA_CRLF:
                if end - pos < 2:
                    return pos
                if data[pos:pos + 2] != b"\r\n":
                    raise HTTPError(400, "chunk data not followed by CRLF")
                pos += 2
                self._state = self._SIZE
            else:  # trailer section: header lines until a blank line
                newline = data.find(b"\n", pos)
                if newline < 0:
                    if end - pos > 1024:
                        raise HTTPError(400, "chunk trailer too long")
                    return pos
                line = data[pos:newline].rstrip(b"\r")
                pos = newline + 1
                if not line:
                    self.done = True
                elif _HEADER_FIELD.fullmatch(line) is None:
                    raise HTTPError(400, "illegal trailer line")
        return pos
