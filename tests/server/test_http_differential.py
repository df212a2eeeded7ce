"""Differential test: server/http.py's request-head parser against h11 as an oracle.

Both sides see the same received bytes and give a :class:`Verdict`:

- h11: ``Connection(SERVER)``, ``receive_data``, ``next_event``: a ``Request`` accepts,
  ``RemoteProtocolError`` rejects (its ``error_status_hint`` is the status), ``NEED_DATA`` waits;
- ours: :func:`find_head_end` on a buffer holding the bytes (0 waits, :class:`HTTPError` rejects),
  then :func:`parse_head` on the head it delimits.

They must agree on the decision, the status of a rejection, the length of an accepted head, and the
parsed request line and header list (lowercased names, values, order), except where this server
deliberately differs: :func:`expected_from_h11` states those differences.

Version policy (505), unknown methods (501) and the body limit (413) belong to check_policy and
are tested in test_http_parser.py; h11 has no such policy.

The chunked body decoder is compared with h11's the same way, on bodies that follow a head with
``Transfer-Encoding: chunked``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.http import ChunkedDecoder, HTTPError, find_head_end, parse_head
from server.request import Request
from tests.fixtures.http_corpus import (
    ACCEPT,
    CORPUS,
    FUZZ_SETTINGS,
    INCOMPLETE,
    REJECT,
    chunked_bodies,
    mutated_heads,
    random_bytes,
)

#: h11 refuses an incomplete head past this many bytes (431); inputs stay below so that its
#: NEED_DATA always means "incomplete". (Our own limit, 431 at HEAD_BUFFER_SIZE, is the connection's.)
H11_MAX_INCOMPLETE = 16 * 1024


@dataclass(frozen=True)
class Verdict:
    """What a parser made of some received bytes.

    ``kind`` is ACCEPT, REJECT or INCOMPLETE; ``status`` the HTTP status of a rejection; for an
    acceptance, ``head_length`` is the head's length in bytes, ``request`` is (method, target,
    version, headers as a tuple of (lowercased name, value)) and ``framing`` is (content length in
    bytes, chunked).
    """

    kind: str
    status: int | None = None
    head_length: int | None = None
    request: tuple | None = None
    framing: tuple[int, bool] | None = None


def h11_verdict(data: bytes) -> Verdict:
    assert len(data) < H11_MAX_INCOMPLETE
    connection = h11.Connection(h11.SERVER)
    if data:  # receive_data(b"") would mean EOF
        connection.receive_data(data)
    try:
        event = connection.next_event()
    except h11.RemoteProtocolError as error:
        return Verdict(REJECT, status=error.error_status_hint)
    if event is h11.NEED_DATA:
        return Verdict(INCOMPLETE)
    assert isinstance(event, h11.Request), event
    headers = tuple(event.headers)
    names = [name for name, _ in headers]
    # h11's body framing (_connection._body_framing): Transfer-Encoding wins over Content-Length.
    chunked = b"transfer-encoding" in names
    content_length = 0 if chunked or b"content-length" not in names else int(dict(headers)[b"content-length"])
    return Verdict(
        ACCEPT,
        head_length=len(data) - len(connection.trailing_data[0]),
        request=(event.method, event.target, event.http_version, headers),
        framing=(content_length, chunked),
    )


def our_verdict(data: bytes) -> Verdict:
    # Like the server's read buffer: bytes past `used` are stale and must be ignored, so pad with
    # bytes that would end a head if they were looked at.
    buffer = bytearray(data) + b"\r\n\r\n\n\n"
    try:
        head_length = find_head_end(buffer, len(data))
        if not head_length:
            return Verdict(INCOMPLETE)
        request = Request()
        parse_head(bytes(buffer[:head_length]), request)
    except HTTPError as error:
        return Verdict(REJECT, status=error.status)
    return Verdict(
        ACCEPT,
        head_length=head_length,
        request=(request.method, request.target, request.version, tuple(request.headers)),
        framing=(request.content_length if not request.chunked else 0, request.chunked),
    )


def expected_from_h11(oracle: Verdict, data: bytes) -> Verdict:
    """What our parser must answer, given h11's verdict: the same, with one deliberate difference."""
    if oracle.kind == ACCEPT:
        names = {name for name, _ in oracle.request[3]}
        if b"content-length" in names and b"transfer-encoding" in names:
            # RFC 9112 section 6.3 (3): a request with both Transfer-Encoding and Content-Length
            # "ought to be handled as an error" (a request smuggling vector), and "A server MAY
            # reject" it. h11 lets Transfer-Encoding win; this server refuses with 400.
            return Verdict(REJECT, status=400)
    if oracle.kind == REJECT and oracle.status == 501 and _chunked_not_final(data):
        # RFC 9112 section 6.3: chunked not the final coding "MUST" get 400; h11 says 501.
        return Verdict(REJECT, status=400)
    return oracle


def _chunked_not_final(data: bytes) -> bool:
    """True when the head's first Transfer-Encoding line that is not plain ``chunked`` lists chunked
    before another coding, and no plain ``chunked`` line came before it (that is 501: two headers)."""
    for line in re.split(rb"\r?\n", data)[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"transfer-encoding":
            value = value.strip().lower()
            if value == b"chunked":
                return False
            return b"chunked" in [coding.strip() for coding in value.split(b",")][:-1]
    return False


def assert_agrees(data: bytes) -> None:
    expected = expected_from_h11(h11_verdict(data), data)
    assert our_verdict(data) == expected, data


@pytest.mark.parametrize("case", CORPUS, ids=[case.note for case in CORPUS])
def test_corpus_case_is_what_its_note_says(case):
    # Keeps the corpus honest: each entry really sits on the side of the rule it claims to.
    assert h11_verdict(case.data).kind == case.expected


@pytest.mark.parametrize("case", CORPUS, ids=[case.note for case in CORPUS])
def test_corpus_agrees_with_h11(case):
    assert_agrees(case.data)


def test_every_prefix_of_the_corpus_agrees_with_h11():
    # Heads arrive in pieces: every prefix must be "incomplete" or refused exactly when h11 says so.
    for case in CORPUS:
        for end in range(len(case.data)):
            assert_agrees(case.data[:end])


def test_the_deliberate_difference_is_narrow():
    # Only "both framings present" is answered differently; the same head without either header
    # is accepted exactly as h11 accepts it.
    both = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert h11_verdict(both).kind == ACCEPT
    assert our_verdict(both) == Verdict(REJECT, status=400)
    for line in (b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n"):
        single = both.replace(line, b"")
        assert our_verdict(single) == h11_verdict(single)
        assert our_verdict(single).kind == ACCEPT


@FUZZ_SETTINGS
@given(mutated_heads())
def test_mutated_heads_agree_with_h11(data):
    assert_agrees(data)


@FUZZ_SETTINGS
@given(random_bytes())
def test_random_bytes_agree_with_h11(data):
    assert_agrees(data)


#: (template, where the byte goes): every byte value is tried at each of these places.
_BYTE_PLACES = (
    (b"%sGET / HTTP/1.1\r\nHost: a\r\n\r\n", "first byte"),
    (b"G%sT / HTTP/1.1\r\nHost: a\r\n\r\n", "method"),
    (b"GET%s/ HTTP/1.1\r\nHost: a\r\n\r\n", "after the method"),
    (b"GET /%sx HTTP/1.1\r\nHost: a\r\n\r\n", "target"),
    (b"GET / HTTP/1.%s\r\nHost: a\r\n\r\n", "minor version"),
    (b"GET / HTTP/1.1%s\nHost: a\r\n\r\n", "before LF"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX%sy: v\r\n\r\n", "header name"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX:%s\r\n\r\n", "whole value"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a%sb\r\n\r\n", "inside a value"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a%s\r\n\r\n", "end of a value"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n%sb\r\n\r\n", "start of a line"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1%s\r\n\r\n", "Content-Length"),
)


@pytest.mark.parametrize(
    "template", [template for template, _ in _BYTE_PLACES], ids=[place for _, place in _BYTE_PLACES]
)
def test_every_byte_value_in_every_place_agrees_with_h11(template):
    for value in range(256):
        assert_agrees(template % bytes((value,)))


# --- chunked bodies -----------------------------------------------------------------------------

CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
#: No body limit in the comparison: h11 has none (413 is tested in test_http_parser.py).
UNLIMITED = 16**21


def h11_body_verdict(encoded: bytes) -> tuple:
    """("done", body, bytes of ``encoded`` that were body), ("reject",) or ("incomplete",)."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(CHUNKED_HEAD + encoded)
    assert isinstance(connection.next_event(), h11.Request)
    body = b""
    try:
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                return (INCOMPLETE,)
            if isinstance(event, h11.EndOfMessage):
                return ("done", body, len(encoded) - len(connection.trailing_data[0]))
            body += event.data
    except h11.RemoteProtocolError:
        return (REJECT,)


def our_body_verdict(encoded: bytes, split: int) -> tuple:
    """The decoder's verdict on ``encoded`` fed in two pieces, cut at ``split``."""
    decoder = ChunkedDecoder(UNLIMITED)
    try:
        consumed = decoder.feed(encoded[:split]) + decoder.feed(encoded[split:])
    except HTTPError as error:
        assert error.status == 400
        return (REJECT,)
    return ("done", bytes(decoder.body), consumed) if decoder.done else (INCOMPLETE,)


@FUZZ_SETTINGS
@given(chunked_bodies(), st.integers(0, 200))
def test_chunked_bodies_agree_with_h11(encoded, split):
    oracle = h11_body_verdict(encoded)
    ours = our_body_verdict(encoded, split % (len(encoded) + 1))
    if oracle == (INCOMPLETE,) and ours == (REJECT,):
        # We check each line as its LF arrives; h11 waits for a CRLF (chunk-size line) or for the
        # blank line (trailer section) before it looks. Refusing early is right only if h11 refuses
        # once the line and the section are complete.
        oracle = h11_body_verdict(encoded + b"\r\n\r\n")
    assert ours == oracle
