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
#: A value byte: visible ASCII, obs-text or a control other than NUL (h11 issue 57: real clients send
#: them); never whitespace. h11 spells it [^\x00\s]; explicit ranges match the same bytes faster.
_FIELD_VCHAR = rb"[\x01-\x08\x0e-\x1f\x21-\xff]"
# The quantifiers below are possessive (*+, ++: never give back what they matched). That leaves the
# language as in h11, because whatever follows each one cannot begin with what it consumed, but it
# makes matching linear: with plain quantifiers, a line of whitespace ending in a bad byte costs
# quadratic backtracking (~150 ms for a 4 KiB head; h11's own regex takes ~50 ms).
_OWS = rb"[ \t]*+"
_FIELD_CONTENT = _FIELD_VCHAR + rb"++(?:[ \t]++" + _FIELD_VCHAR + rb"++)*+"
_FIELD = rb"(" + _TOKEN + rb"):" + _OWS + rb"(" + _FIELD_CONTENT + rb")?" + _OWS
#: The request line with its line ending (CRLF or bare LF); groups: method, target, version.
_REQUEST_LINE = re.compile(
    rb"(" + _TOKEN + rb") (" + _VCHAR + rb"+) HTTP/([0-9]\.[0-9])\r?\n"
)
#: One complete header line at a line start, with its ending; groups: name, value. findall() over
#: the header block yields one match per valid line and skips invalid ones (which makes the
#: match count come out short, see parse_head).
_FIELD_LINE = re.compile(rb"^" + _FIELD + rb"\r?\n", re.MULTILINE)
#: A header line without its ending, after obs-fold joining (the slow path).
_HEADER_FIELD = re.compile(_FIELD)
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

    The head ends after the first blank line (``\\n\\n`` or ``\\n\\r\\n``). Bytes that cannot start a
    request line (a first byte below 0x21: control, whitespace, or a leading empty line) raise 400
    at once instead of holding the connection until the buffer fills, as h11 does; a complete head
    that is invalid is :func:`parse_head`'s to refuse.
    """
    match = _BLANK_LINE.search(buffer, 0, used)
    if match is None:
        if used and buffer[0] < 0x21:
            raise HTTPError(400, "illegal request line")
        return 0
    return match.end()


def parse_head(head: bytes, request) -> None:
    """Parse a complete request head (as delimited by :func:`find_head_end`) into ``request``.

    Sets ``request.method``, ``.target`` (bytes), ``.version`` (bytes such as ``b"1.1"``),
    ``.headers`` (appends ``(lowercased name, value)`` byte pairs, in order), ``.keep_alive``,
    ``.content_length`` (declared body length in bytes, 0 when absent) and ``.chunked``.

    Raises :class:`HTTPError` on anything h11 would refuse, with h11's status (501 for a transfer
    coding other than chunked, else 400) and in h11's order of checks: the syntax of every line
    first, then Content-Length and Transfer-Encoding in the order they appear, then Host. It also
    refuses (400) a request with both Content-Length and Transfer-Encoding, which h11 accepts, and
    (400, RFC 9112 6.3) a coding list in which chunked is not the final coding, where h11 says 501.
    """
    match = _REQUEST_LINE.match(head)
    if match is None:
        raise HTTPError(400, "illegal request line")
    method, target, version = match.groups()
    request.method = method
    request.target = target
    request.version = version

    start = match.end()
    fields = _FIELD_LINE.findall(head, start)
    # The block holds one line per newline, less the blank line that ends it. Fewer matches means a
    # line that is invalid or an obs-fold continuation: take the line-by-line path for those.
    if len(fields) != head.count(b"\n", start) - 1:
        fields = _unfolded_fields(head[start:])

    headers = request.headers
    host_count = 0
    content_length = None
    chunked = False
    connection = None
    for name, value in fields:
        name = name.lower()
        if name in _SEMANTIC_NAMES:
            if name == b"host":
                host_count += 1
            elif name == b"content-length":
                value = _content_length(value, content_length)
                if value == content_length:
                    continue  # a repeated identical Content-Length is kept once, as h11 does
                content_length = value
            elif name == b"transfer-encoding":
                if chunked:
                    raise HTTPError(501, "multiple Transfer-Encoding headers")
                value = value.lower()
                if value != b"chunked":
                    # RFC 9112 6.3: chunked anywhere but last leaves the body's length unknown: 400.
                    if b"chunked" in [coding.strip() for coding in value.split(b",")][:-1]:
                        raise HTTPError(400, "chunked is not the final transfer coding")
                    raise HTTPError(501, "only Transfer-Encoding: chunked is supported")
                chunked = True
            else:  # connection
                connection = value if connection is None else connection + b"," + value
        headers.append((name, value))

    if host_count != 1 and (host_count or version == b"1.1"):
        # RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one otherwise (h11 checks == 1.1).
        raise HTTPError(400, "found multiple Host: headers" if host_count else "missing mandatory Host: header")
    if chunked and content_length is not None:
        # RFC 9112 6.3 (3): both framings is a request smuggling vector; a server MAY reject it.
        raise HTTPError(400, "both Content-Length and Transfer-Encoding")
    request.content_length = int(content_length) if content_length is not None else 0
    request.chunked = chunked
    tokens = _connection_tokens(connection) if connection is not None else ()
    if b"close" in tokens:
        request.keep_alive = False
    elif version == b"1.0":
        # RFC 9112 9.3: HTTP/1.0 persists only on request. RFC 9112 6.1: Transfer-Encoding in
        # HTTP/1.0 means faulty framing: close after answering.
        request.keep_alive = b"keep-alive" in tokens and not chunked
    else:
        request.keep_alive = True  # HTTP/1.1 (or later 1.x) persists by default


#: Lowercased header names parse_head looks at; every other header is only recorded.
_SEMANTIC_NAMES = frozenset((b"host", b"content-length", b"transfer-encoding", b"connection"))


def _content_length(value: bytes, seen: bytes | None) -> bytes:
    """Return the single length a Content-Length value states (a comma list of identical lengths
    counts as one, as in h11), checked against ``seen``, the one stated before (or None)."""
    if b"," in value:
        lengths = {length.strip() for length in value.split(b",")}
        if len(lengths) != 1:
            raise HTTPError(400, "conflicting Content-Length headers")
        value = lengths.pop()
    if _CONTENT_LENGTH.fullmatch(value) is None or len(value) > _CONTENT_LENGTH_MAX_DIGITS:
        raise HTTPError(400, "bad Content-Length")
    if seen is not None and value != seen:
        raise HTTPError(400, "conflicting Content-Length headers")
    return value


def _connection_tokens(value: bytes) -> set[bytes]:
    """The lowercased tokens of a (joined) Connection header value."""
    return {token.strip() for token in value.lower().split(b",")}


def _unfolded_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """Split the header block (everything after the request line, through the blank line) into
    (name, value) pairs one line at a time, joining obs-fold continuation lines with one space as
    h11 does; raises 400 on an invalid line."""
    lines = block.split(b"\n")
    del lines[-2:]  # the blank line and what follows it (nothing)
    fields = []
    last = None
    for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        fold = _OBS_FOLD.match(line)
        if fold:
            if last is None:
                raise HTTPError(400, "continuation line at start of headers")
            last += b" " + line[fold.end():]
            continue
        if last is not None:
            fields.append(_field(last))
        last = line
    if last is not None:
        fields.append(_field(last))
    return fields


def _field(line: bytes) -> tuple[bytes, bytes]:
    match = _HEADER_FIELD.fullmatch(line)
    if match is None:
        raise HTTPError(400, "illegal header line")
    return match.groups(default=b"")


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


#: A chunk-size line without its CRLF: up to 20 hex digits (as in h11), extensions (ignored), OWS.
#: As in h11, an extension may hold a bare CR: RFC 9112 2.2 allows reading it as SP, and extensions
#: are ignored anyway.
_CHUNK_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;[^\n]*+)?[ \t]*+")
#: What follows the leading whitespace of an obs-fold continuation line in the trailer section.
_FOLDED_VALUE = re.compile(rb"(?:" + _FIELD_CONTENT + rb")?" + _OWS)
#: Longest chunk-size line accepted (with extensions), in bytes.
_MAX_CHUNK_LINE = 1024
#: Largest trailer section accepted, in bytes (as much as a request head); more gets 431.
_MAX_TRAILER = HEAD_BUFFER_SIZE


class ChunkedDecoder:
    """Sans-I/O decoder for a ``Transfer-Encoding: chunked`` request body (RFC 9112 section 7.1).

    Feed it the bytes that follow the head, split anywhere, with :meth:`feed`. It takes every byte
    it is given until the body ends (a partial chunk-size line, trailer line or chunk CRLF is kept
    until the rest arrives), then sets :attr:`done`; the bytes of the last piece after the body
    belong to the next pipelined request. Decoded bytes are counted in :attr:`body_length` (bytes)
    and kept in :attr:`body`; a body over ``max_body_bytes`` raises 413, malformed framing 400.
    Chunk extensions are ignored; trailer fields are checked as h11 checks them (obs-fold included)
    and dropped.
    """

    __slots__ = (
        "max_body_bytes", "body", "body_length", "done",
        "_remaining", "_state", "_partial", "_trailer_length", "_trailer_fields",
    )

    _SIZE, _DATA, _DATA_CRLF, _TRAILER = range(4)

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self.body = bytearray()
        self.body_length = 0
        self.done = False
        self._remaining = 0  # bytes of the current chunk still to come
        self._state = self._SIZE
        self._partial = b""  # an incomplete line (or chunk CRLF) carried over to the next feed
        self._trailer_length = 0  # length of the complete trailer lines seen, in bytes
        self._trailer_fields = 0  # trailer field lines seen (a continuation line needs one before it)

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Decode ``data``; return how many of its bytes belong to the body: all of them until the
        body ends, then the count up to its end (the rest is the next request). 0 once done."""
        if self.done:
            return 0
        carried = len(self._partial)
        data = self._partial + bytes(data) if carried else bytes(data)
        self._partial = b""
        pos = 0
        end = len(data)
        while pos < end:
            state = self._state
            if state == self._DATA:
                take = min(self._remaining, end - pos)
                self.body += data[pos:pos + take]
                self.body_length += take
                self._remaining -= take
                pos += take
                if self._remaining == 0:
                    self._state = self._DATA_CRLF
            elif state == self._DATA_CRLF:
                crlf = data[pos:pos + 2]
                if crlf != b"\r\n"[:len(crlf)]:
                    raise HTTPError(400, "chunk data not followed by CRLF")
                if len(crlf) < 2:
                    break
                pos += 2
                self._state = self._SIZE
            else:  # a chunk-size line or a trailer line
                newline = data.find(b"\n", pos)
                line_end = end if newline < 0 else newline + 1
                if state == self._SIZE:
                    if line_end - pos > _MAX_CHUNK_LINE:
                        raise HTTPError(400, "chunk size line too long")
                elif self._trailer_length + line_end - pos > _MAX_TRAILER:
                    raise HTTPError(431, "chunk trailer too long")
                if newline < 0:
                    break
                if state == self._SIZE:
                    self._size_line(data, pos, line_end)
                else:
                    self._trailer_length += line_end - pos
                    if self._trailer_line(data[pos:newline]):
                        self.done = True
                        return line_end - carried
                pos = line_end
        self._partial = data[pos:]
        return end - carried

    def _size_line(self, data: bytes, start: int, end: int) -> None:
        # The line must end in CRLF; h11 looks for CRLF and then refuses the LF inside, same result.
        if end - start < 2 or data[end - 2] != 0x0D:
            raise HTTPError(400, "chunk size line not ended by CRLF")
        match = _CHUNK_SIZE_LINE.fullmatch(data, start, end - 2)
        if match is None:
            raise HTTPError(400, "bad chunk size line")
        size = int(match.group(1), 16)
        if size == 0:
            self._state = self._TRAILER
            return
        if self.body_length + size > self.max_body_bytes:
            raise HTTPError(413, "request body larger than the limit")
        self._remaining = size
        self._state = self._DATA

    def _trailer_line(self, line: bytes) -> bool:
        """Check one trailer line (without its LF); return True for the blank line that ends the body."""
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return True
        fold = _OBS_FOLD.match(line)
        if fold:
            # Joined to the field before it with a space, the value stays valid exactly when this
            # rest is itself a (possibly empty) value.
            if not self._trailer_fields:
                raise HTTPError(400, "continuation line at start of trailer")
            if _FOLDED_VALUE.fullmatch(line, fold.end()) is None:
                raise HTTPError(400, "illegal trailer line")
        elif _HEADER_FIELD.fullmatch(line) is None:
            raise HTTPError(400, "illegal trailer line")
        else:
            self._trailer_fields += 1
        return False
