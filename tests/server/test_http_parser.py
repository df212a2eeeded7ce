"""Unit tests for server/http.py: head delimiting, parse errors and their statuses, keep-alive,
request policy, response building and the chunked body decoder. (Agreement with h11 on what a
head means is tests/server/test_http_differential.py's job.)"""

from __future__ import annotations

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.http import (
    HEAD_BUFFER_SIZE,
    KNOWN_METHODS,
    ChunkedDecoder,
    HTTPError,
    build_response,
    check_policy,
    find_head_end,
    parse_head,
)
from server.request import Request
from tests.fixtures.http_corpus import FUZZ_SETTINGS

HEAD = b"GET /x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"


def parsed(head: bytes) -> Request:
    request = Request()
    parse_head(head, request)
    return request


def refusal(call, *args) -> HTTPError:
    with pytest.raises(HTTPError) as caught:
        call(*args)
    assert caught.value.reason  # says why, for the error response's body
    return caught.value


# --- find_head_end --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"", b"G", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n\r",
        b"\x80abc",
    ],
    ids=["empty", "one byte", "request line", "no blank line", "blank line cut after CR", "non-ASCII first byte"],
)
def test_find_head_end_incomplete(data):
    assert find_head_end(bytearray(data), len(data)) == 0


@pytest.mark.parametrize(
    "head",
    [HEAD, b"GET / HTTP/1.1\nHost: a\n\n", b"GET / HTTP/1.1\r\nHost: a\n\r\n", b"GET / HTTP/1.0\r\n\r\n"],
    ids=["CRLF", "bare LF", "LF then CRLF", "no headers"],
)
def test_find_head_end_complete(head):
    for body in (b"", b"hello", b"\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"):
        assert find_head_end(head + body, len(head + body)) == len(head)


def test_find_head_end_looks_only_at_the_used_bytes():
    buffer = bytearray(HEAD_BUFFER_SIZE)
    buffer[:len(HEAD)] = HEAD
    assert find_head_end(buffer, len(HEAD)) == len(HEAD)
    assert find_head_end(buffer, len(HEAD) - 1) == 0  # the last LF is past `used`
    stale = bytearray(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert find_head_end(stale, 10) == 0


@pytest.mark.parametrize(
    "data",
    [b"\x16\x03\x01\x02\x00\x01", b" GET / HTTP/1.1\r\n", b"\x00", b"\r", b"\r\n", b"\n", b"\r\nGET / HTTP/1.1\r\n"],
    ids=["TLS hello", "leading space", "NUL", "lone CR", "empty line", "bare LF", "empty line before request"],
)
def test_find_head_end_refuses_garbage_first_byte_at_once(data):
    assert refusal(find_head_end, bytearray(data), len(data)).status == 400


# --- parse_head -----------------------------------------------------------------------------------


def test_parse_head_fills_the_request():
    request = Request()
    headers = request.headers  # the naive layout hands in a preallocated list: it must be filled
    parse_head(
        b"POST /echo?x=1 HTTP/1.1\r\nHost: a\r\nX-Fold: b\r\n  c\r\nContent-Length: 5, 5\r\nX-Empty:\r\n\r\n", request
    )
    assert request.headers is headers
    assert (request.method, request.target, request.version) == (b"POST", b"/echo?x=1", b"1.1")
    assert request.headers == [(b"host", b"a"), (b"x-fold", b"b c"), (b"content-length", b"5"), (b"x-empty", b"")]
    assert (request.content_length, request.chunked, request.keep_alive) == (5, False, True)


def test_parse_head_chunked():
    request = parsed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n")
    assert (request.content_length, request.chunked) == (0, True)
    assert request.headers[-1] == (b"transfer-encoding", b"chunked")


@pytest.mark.parametrize(
    "head, status",
    [
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),  # illegal request line
        (b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),  # no request line (a leading empty line)
        (b"GET / HTTP/1.1\r\nHost a\r\n\r\n", 400),  # illegal header line
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n", 400),  # illegal header line (NUL)
        (b"GET / HTTP/1.1\r\n X: b\r\nHost: a\r\n\r\n", 400),  # continuation line at start of headers
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # missing Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),  # multiple Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", 400),  # conflicting list
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),  # conflicting headers
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400),  # bad Content-Length
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: " + b"1" * 21 + b"\r\n\r\n", 400),  # too many digits
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),  # both framings
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),  # unsupported coding
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        # RFC 9112 6.3: chunked present but not the final coding: the body's length is unknown, 400.
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
    ],
    ids=[
        "request line", "leading empty line", "header line", "NUL in value", "fold at start", "missing Host",
        "multiple Host",
        "Content-Length list", "Content-Length headers", "bad Content-Length", "long Content-Length",
        "both framings", "gzip coding", "multiple Transfer-Encoding", "chunked then identity", "chunked twice",
    ],
)
def test_parse_head_refusals(head, status):
    assert refusal(parse_head, head, Request()).status == status


@pytest.mark.parametrize(
    "head, keep_alive",
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive , Close\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nConnection: close\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Connection: close\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\nConnection: foo, KEEP-ALIVE\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", False),
        (b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n", False),
    ],
    ids=[
        "1.1 default", "1.1 close", "1.1 CLOSE", "1.1 close in a list", "1.1 close in a second header",
        "1.1 'closed' is not close", "1.1 other header", "1.0 default", "1.0 keep-alive", "1.0 Keep-Alive",
        "1.0 KEEP-ALIVE in a list", "1.0 close wins", "1.0 chunked closes (RFC 9112 6.1)",
    ],
)
def test_keep_alive(head, keep_alive):
    assert parsed(head).keep_alive is keep_alive


# --- check_policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head, max_body, status",
    [
        (b"GET / HTTP/2.0\r\n\r\n", 100, 505),
        (b"GET / HTTP/0.9\r\n\r\n", 100, 505),
        (b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 100, 501),
        (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", 100, 501),  # methods are case-sensitive
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", 100, 413),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + b"9" * 20 + b"\r\n\r\n", 100, 413),
    ],
    ids=["HTTP/2.0", "HTTP/0.9", "unknown method", "lowercase method", "body over limit", "huge body"],
)
def test_check_policy_refusals(head, max_body, status):
    assert refusal(check_policy, parsed(head), max_body).status == status


@pytest.mark.parametrize("method", sorted(KNOWN_METHODS))
@pytest.mark.parametrize("version", [b"1.0", b"1.1", b"1.9"])
def test_check_policy_accepts_known_methods_and_http1(method, version):
    host = b"Host: a\r\n" if version == b"1.1" else b""
    check_policy(parsed(method + b" / HTTP/" + version + b"\r\n" + host + b"Content-Length: 100\r\n\r\n"), 100)


# --- build_response -------------------------------------------------------------------------------


def h11_reads(response: bytes, method: bytes = b"GET") -> tuple[h11.Response, bytes]:
    """Parse ``response`` as h11's client would, after sending a ``method`` request; return the
    response event and the body h11 reads from it."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "a")]))
    client.send(h11.EndOfMessage())
    client.receive_data(response)
    event = client.next_event()
    assert isinstance(event, h11.Response)
    body = b""
    while True:
        part = client.next_event()
        if isinstance(part, h11.EndOfMessage):
            return event, body
        assert isinstance(part, h11.Data), part
        body += part.data


def test_build_response_status_line_and_length():
    response = build_response(404, b"not here\n", keep_alive=True)
    assert response.startswith(b"HTTP/1.1 404 Not Found\r\n")
    event, body = h11_reads(response)
    assert (event.status_code, event.reason, body) == (404, b"Not Found", b"not here\n")
    assert (b"content-length", b"9") in event.headers
    assert (b"content-type", b"text/plain; charset=utf-8") in event.headers
    assert build_response(299, b"", keep_alive=True).startswith(b"HTTP/1.1 299 Unknown\r\n")


def test_build_response_head_keeps_content_length_but_omits_body():
    response = build_response(200, b"hello", keep_alive=True, head_only=True)
    assert response.endswith(b"\r\n\r\n") and b"hello" not in response
    assert b"\r\nContent-Length: 5\r\n" in response
    event, body = h11_reads(response, method=b"HEAD")
    assert (event.status_code, body) == (200, b"")


@pytest.mark.parametrize(
    "keep_alive, http10, connection",
    [(True, False, None), (True, True, b"keep-alive"), (False, False, b"close"), (False, True, b"close")],
)
def test_build_response_connection_header(keep_alive, http10, connection):
    event, _ = h11_reads(build_response(200, b"x", keep_alive=keep_alive, http10=http10))
    values = [value for name, value in event.headers if name == b"connection"]
    assert values == ([connection] if connection else [])


def test_build_response_date_and_extra_headers():
    date = b"Sun, 06 Nov 1994 08:49:37 GMT"
    response = build_response(
        503, b"", keep_alive=False, date=date, extra_headers=((b"Retry-After", b"1"),), content_type=b"application/json"
    )
    event, _ = h11_reads(response)
    headers = list(event.headers)
    assert [value for name, value in headers if name == b"date"] == [date]
    assert (b"retry-after", b"1") in headers and (b"content-type", b"application/json") in headers
    event, _ = h11_reads(build_response(200, b"", keep_alive=True))
    assert all(name != b"date" for name, _ in event.headers)


# --- ChunkedDecoder -------------------------------------------------------------------------------

CHUNKED = b"5\r\nhello\r\n6;name=value;flag\r\n world\r\nA\r\n, and more\r\n0\r\nX-Sum: abc\r\nY:\r\n\r\n"
DECODED = b"hello world, and more"
NEXT_REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def test_chunked_fed_whole():
    decoder = ChunkedDecoder(100)
    assert decoder.feed(CHUNKED) == len(CHUNKED)
    assert decoder.done and bytes(decoder.body) == DECODED and decoder.body_length == len(DECODED)


def test_chunked_fed_byte_by_byte():
    decoder = ChunkedDecoder(100)
    for index in range(len(CHUNKED)):
        assert not decoder.done
        assert decoder.feed(CHUNKED[index:index + 1]) == 1  # partial lines are kept, not handed back
    assert decoder.done and bytes(decoder.body) == DECODED


@pytest.mark.parametrize(
    "encoded, decoded",
    [
        (b"0\r\n\r\n", b""),
        (b"0005\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"0" * 19 + b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"a\r\n0123456789\r\nB\r\n0123456789a\r\n0\r\n\r\n", b"01234567890123456789a"),
        (b"5;a=\"q;uoted\" \t\r\nhello\r\n0;last\r\n\r\n", b"hello"),
        (b"5 \r\nhello\r\n0\r\nTrailer: x\nOther: y\r\n\n", b"hello"),
        (b"5;a\rb\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\r\nhello\r\n0\r\nX: a\r\n folded\r\n\t\r\n\r\n", b"hello"),
    ],
    ids=[
        "empty body", "leading zeros", "20 digits (h11's most)", "hex digits both cases", "extensions and OWS", "trailers with bare LF",
        "bare CR in an (ignored) extension, as h11", "obs-fold in the trailer, as h11",
    ],
)
def test_chunked_valid_variants(encoded, decoded):
    decoder = ChunkedDecoder(100)
    assert decoder.feed(encoded) == len(encoded)
    assert decoder.done and bytes(decoder.body) == decoded


def test_chunked_reports_where_the_next_request_starts():
    decoder = ChunkedDecoder(100)
    assert decoder.feed(CHUNKED + NEXT_REQUEST) == len(CHUNKED)
    assert decoder.feed(NEXT_REQUEST) == 0  # done: nothing more is body

    split = len(CHUNKED) - 3  # the final CRLF CRLF arrives with the next request
    decoder = ChunkedDecoder(100)
    assert decoder.feed(CHUNKED[:split]) == split
    assert decoder.feed(CHUNKED[split:] + NEXT_REQUEST) == 3
    assert decoder.done and bytes(decoder.body) == DECODED


@pytest.mark.parametrize(
    "encoded",
    [
        b"x\r\n", b"\r\n", b"-1\r\n", b" 5\r\nhello\r\n", b"0x5\r\nhello\r\n", b"1" * 21 + b"\r\n",
        b"5\nhello\r\n", b"5;a\nb\r\nhello\r\n", b"5\r\nhelloXX", b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n", b"5\r\nhello\r\n0\r\n folded\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX: a\r\n b\x00\r\n\r\n", b"5\r\nhello\r\n0\r\nX: a\r\r\n\r\n", b"5;" + b"e" * 2000,
    ],
    ids=[
        "not hex", "empty size", "negative", "leading space", "0x prefix", "21 hex digits", "bare LF after size",
        "bare LF in extension", "data not followed by CRLF", "bare LF after data", "bad trailer line",
        "trailer starts with a continuation", "NUL in a trailer continuation", "CR CR LF in trailer",
        "size line too long",
    ],
)
def test_chunked_bad_framing_is_400(encoded):
    decoder = ChunkedDecoder(100)
    assert refusal(decoder.feed, encoded).status == 400


def test_chunked_body_over_the_limit_is_413():
    assert refusal(ChunkedDecoder(10).feed, b"B\r\n").status == 413  # refused before the data comes
    decoder = ChunkedDecoder(10)
    decoder.feed(b"6\r\nabcdef\r\n")
    assert refusal(decoder.feed, b"5\r\n").status == 413
    exact = ChunkedDecoder(10)
    exact.feed(b"6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n")
    assert exact.done and exact.body_length == 10


def test_chunked_trailer_section_is_bounded():
    decoder = ChunkedDecoder(10)
    decoder.feed(b"0\r\n")
    line = b"X-Filler: " + b"f" * 100 + b"\r\n"
    with pytest.raises(HTTPError) as caught:
        for _ in range(HEAD_BUFFER_SIZE // len(line) + 1):
            decoder.feed(line)
    assert caught.value.status == 431


@st.composite
def chunked_encodings(draw):
    """(data, its chunked encoding): random chunk sizes, hex case, extensions and trailers."""
    data = draw(st.binary(max_size=3000))
    encoded = bytearray()
    pos = 0
    while pos < len(data):
        size = draw(st.integers(1, len(data) - pos))
        digits = b"%x" % size
        if draw(st.booleans()):
            digits = digits.upper()
        extension = draw(st.sampled_from((b"", b";a=b", b";x", b'; q="1;2" ')))
        encoded += digits + extension + b"\r\n" + data[pos:pos + size] + b"\r\n"
        pos += size
    encoded += b"0\r\n" + draw(st.sampled_from((b"", b"X-Sum: 1\r\n", b"A: b\nC:d\r\n"))) + b"\r\n"
    return data, bytes(encoded)


@FUZZ_SETTINGS
@given(chunked_encodings(), st.lists(st.integers(0, 4000), max_size=8), st.sampled_from((b"", NEXT_REQUEST)))
def test_chunked_round_trip_in_random_splits(encoding, cuts, following):
    data, encoded = encoding
    stream = encoded + following
    bounds = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    decoder = ChunkedDecoder(len(data))
    consumed = sum(decoder.feed(stream[start:end]) for start, end in zip(bounds, bounds[1:]))
    assert decoder.done
    assert bytes(decoder.body) == data and decoder.body_length == len(data)
    assert consumed == len(encoded)
