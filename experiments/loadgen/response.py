"""Reading the server's responses: one head parser and an incremental response parser (no chunked bodies)."""

from __future__ import annotations

from .params import MAX_RESPONSE_HEAD


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
