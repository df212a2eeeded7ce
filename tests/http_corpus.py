"""Request heads for the HTTP parser's differential test against h11.

Two sources of input:

- :data:`CORPUS`: hand-written heads, valid and invalid, each with a note on what it exercises and the
  verdict we expect from h11 (so the corpus is checked to really cover both sides of every rule);
- hypothesis strategies: :func:`random_bytes` (arbitrary bytes and a "token soup" of HTTP fragments)
  and :func:`mutated_heads` (a mostly valid head built from the grammar, then mutated in the ways
  parsers tend to get wrong).

:data:`FUZZ_SETTINGS` is the hypothesis configuration of the differential properties. Set
``HTTP_FUZZ_EXAMPLES`` in the environment for a deeper run than the default (which keeps the test
file within a few seconds).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

ACCEPT = "accept"
REJECT = "reject"
INCOMPLETE = "incomplete"

#: Examples per differential property (override with HTTP_FUZZ_EXAMPLES for a deeper run).
FUZZ_EXAMPLES = int(os.environ.get("HTTP_FUZZ_EXAMPLES", "1500"))
FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,  # the machine is noisy; h11 and our parser are both fast
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@dataclass(frozen=True)
class Case:
    """One corpus entry: the bytes received, what h11 does with them, and why it is here."""

    data: bytes
    expected: str  # ACCEPT, REJECT or INCOMPLETE (h11's verdict)
    note: str


def _ok(data: bytes, note: str) -> Case:
    return Case(data, ACCEPT, note)


def _bad(data: bytes, note: str) -> Case:
    return Case(data, REJECT, note)


def _wait(data: bytes, note: str) -> Case:
    return Case(data, INCOMPLETE, note)


#: Starts of an HTTP/1.1 request (with its Host) that most entries share.
GET_A = b"GET / HTTP/1.1\r\nHost: a\r\n"
POST_A = b"POST / HTTP/1.1\r\nHost: a\r\n"

CORPUS: tuple[Case, ...] = (
    # --- minimal and ordinary requests --------------------------------------------------------
    _ok(GET_A + b"\r\n", "minimal HTTP/1.1 request"),
    _ok(b"GET / HTTP/1.0\r\n\r\n", "HTTP/1.0 needs no Host"),
    _ok(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n", "HTTP/1.0 may send Host"),
    _ok(
        b"GET /index.html?q=1&r=%20 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: curl/8.5.0\r\n"
        b"Accept: */*\r\n\r\n",
        "curl-like request with a query string",
    ),
    _ok(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "asterisk-form target"),
    _ok(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "authority-form target"),
    _ok(b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n", "absolute-form target"),
    _ok(b"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", "unknown but well-formed method: parse accepts, policy says 501"),
    _ok(b"get / HTTP/1.1\r\nHost: a\r\n\r\n", "methods are case-sensitive tokens; lowercase is still a token"),
    _ok(b"GET / HTTP/2.0\r\n\r\n", "version 2.0 parses (policy says 505); Host is required only for exactly 1.1"),
    _ok(b"GET / HTTP/1.2\r\n\r\n", "HTTP/1.2 needs no Host either (h11 checks == 1.1)"),
    _ok(b"GET / HTTP/0.9\r\n\r\n", "version 0.9 parses (policy says 505)"),
    _ok(GET_A + b"\r\nBODY", "bytes after the blank line are not part of the head"),
    _ok(GET_A + b"\r\nGET / HTTP/1.1\r\n", "pipelined request after the head"),
    # --- line endings ---------------------------------------------------------------------------
    _ok(b"GET / HTTP/1.1\nHost: a\n\n", "bare LF line endings throughout"),
    _ok(b"GET / HTTP/1.1\r\nHost: a\n\r\n", "mixed CRLF and LF"),
    _ok(b"GET / HTTP/1.1\nHost: a\r\n\n", "CRLF header line, bare LF blank line"),
    _bad(b"GET / HTTP/1.1\rHost: a\r\n\r\n", "bare CR inside the request line"),
    _bad(b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", "two CRs before LF: only one is a line ending"),
    _bad(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", "bare CR inside a header value"),
    _bad(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "leading empty line (RFC 9112 allows ignoring it; h11 refuses)"),
    _bad(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "leading bare LF"),
    _bad(b"\r\n", "only an empty line"),
    _bad(b"\r", "lone CR: cannot start a request line, refused before the head is complete"),
    # --- incomplete heads -------------------------------------------------------------------------
    _wait(b"", "nothing received yet"),
    _wait(b"G", "one byte of a method"),
    _wait(GET_A, "no blank line yet"),
    _wait(GET_A + b"\r", "blank line cut after its CR"),
    _wait(b"GET / HTTP/1.1\r\n", "request line only"),
    _wait(b"\x80\x81", "non-ASCII first byte is not 'obviously invalid' to h11: it waits"),
    _bad(b"\x16\x03\x01\x02\x00", "TLS ClientHello: first byte below 0x21 is refused at once"),
    _bad(b" GET / HTTP/1.1\r\n", "leading space, incomplete: refused at once"),
    _bad(b"\x00", "NUL first byte"),
    # --- request line -----------------------------------------------------------------------------
    _bad(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "two spaces after the method"),
    _bad(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "trailing space after the version"),
    _bad(b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", "tab as request-line separator"),
    _bad(b"GET / http/1.1\r\nHost: a\r\n\r\n", "HTTP-name is case-sensitive"),
    _bad(b"GET / HTTP/11\r\nHost: a\r\n\r\n", "version without a dot"),
    _bad(b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", "two-digit minor version"),
    _bad(b"GET / HTTP/1\r\nHost: a\r\n\r\n", "version without minor"),
    _bad(b"GET /\r\nHost: a\r\n\r\n", "HTTP/0.9-style request line without version"),
    _bad(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", "space inside the target"),
    _bad(b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", "DEL inside the target"),
    _bad(b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", "non-ASCII target (must be percent-encoded)"),
    _bad(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", "delimiter inside the method token"),
    _bad(b" / HTTP/1.1\r\nHost: a\r\n\r\n", "empty method"),
    _bad(b"GET  HTTP/1.1\r\nHost: a\r\n\r\n", "empty target"),
    _ok(b"M-_.!#$%&'*+^`|~9 / HTTP/1.1\r\nHost: a\r\n\r\n", "every tchar class in a method"),
    _ok(b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", "long target (fits the 4 KiB buffer)"),
    # --- header fields ----------------------------------------------------------------------------
    _ok(b"GET / HTTP/1.1\r\nHost:a\r\n\r\n", "no whitespace after the colon"),
    _ok(b"GET / HTTP/1.1\r\nHost: \t a \t \r\n\r\n", "OWS around the value is stripped"),
    _ok(GET_A + b"X-Empty:\r\n\r\n", "empty header value"),
    _ok(GET_A + b"X-Empty:   \r\n\r\n", "whitespace-only value is empty"),
    _ok(GET_A + b"X-A: b  \t c\r\n\r\n", "internal whitespace is kept as sent"),
    _ok(b"GET / HTTP/1.1\r\nHOST: a\r\nx-MiXeD: V\r\n\r\n", "names are lowercased, values are not"),
    _ok(
        GET_A + b"X-Ctl: a\x01b\x7fc\r\n\r\n",
        "control chars other than NUL/whitespace are allowed in values (h11 issue 57)",
    ),
    _ok(GET_A + b"X-Obs: caf\xc3\xa9 \xff\r\n\r\n", "obs-text (non-ASCII) in a value"),
    _ok(GET_A + b"X: 1\r\nX: 2\r\n\r\n", "repeated ordinary header keeps both, in order"),
    _ok(GET_A + b"X: a:b:c\r\n\r\n", "colons inside a value"),
    _bad(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "whitespace between name and colon (RFC 9112 5.1 MUST reject)"),
    _bad(b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n", "space inside a name"),
    _bad(b"GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", "empty name"),
    _bad(b"GET / HTTP/1.1\r\nHost a\r\n\r\n", "no colon"),
    _bad(GET_A + b"X: a\x00b\r\n\r\n", "NUL in a value"),
    _bad(GET_A + b"X: a\x0bb\r\n\r\n", "vertical tab in a value (regex whitespace)"),
    _bad(GET_A + b"X: a\x0cb\r\n\r\n", "form feed in a value"),
    _bad(GET_A + b"X\xc3\xa9: a\r\n\r\n", "non-ASCII name"),
    _bad(GET_A + b"X\x01: a\r\n\r\n", "control char in a name"),
    _ok(GET_A + b"X" * 2000 + b": " + b"v" * 1000 + b"\r\n\r\n", "long name and value"),
    # --- obsolete line folding --------------------------------------------------------------------
    _ok(GET_A + b"X: b\r\n c\r\n\r\n", "obs-fold joined with one space"),
    _ok(GET_A + b"X: b\r\n\t \tc\r\n\r\n", "obs-fold with tab and mixed whitespace"),
    _ok(GET_A + b"X: b\r\n c\r\n d\r\n\r\n", "two continuation lines"),
    _ok(GET_A + b"X:\r\n c\r\n\r\n", "value entirely on the continuation line"),
    _ok(GET_A + b"X: b\r\n  \r\n\r\n", "whitespace-only continuation line"),
    _ok(b"GET / HTTP/1.1\nHost: a\nX: b\n c\n\n", "obs-fold with bare LF"),
    _ok(b"GET / HTTP/1.1\r\nHost:\r\n a\r\n\r\n", "Host value folded onto the next line"),
    _bad(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", "continuation line before any header"),
    _bad(GET_A + b"X: b\r\n c\x00\r\n\r\n", "NUL on a continuation line"),
    # --- Host -------------------------------------------------------------------------------------
    _bad(b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 without Host (RFC 9112 3.2 MUST 400)"),
    _bad(GET_A + b"Host: a\r\n\r\n", "duplicate Host, same value"),
    _bad(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", "duplicate Host in HTTP/1.0"),
    _ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n", "empty Host value is allowed (RFC 9110 7.2: empty authority)"),
    _ok(b"GET / HTTP/1.1\r\nhOsT: a\r\n\r\n", "Host name matched case-insensitively"),
    _bad(b"GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", "X-Host is not Host"),
    # --- Content-Length ---------------------------------------------------------------------------
    _ok(POST_A + b"Content-Length: 5\r\n\r\n", "plain Content-Length"),
    _ok(POST_A + b"Content-Length: 0\r\n\r\n", "zero Content-Length"),
    _ok(POST_A + b"Content-Length: 007\r\n\r\n", "leading zeros are still digits"),
    _ok(POST_A + b"Content-Length: 5, 5\r\n\r\n", "list of identical lengths collapses to one"),
    _ok(POST_A + b"Content-Length: 5\r\ncontent-length: 5\r\n\r\n", "repeated identical header is kept once"),
    _ok(POST_A + b"Content-Length: " + b"9" * 20 + b"\r\n\r\n", "20 digits: the most h11 allows"),
    _bad(POST_A + b"Content-Length: " + b"9" * 21 + b"\r\n\r\n", "21 digits"),
    _bad(POST_A + b"Content-Length: 5, 6\r\n\r\n", "list of different lengths"),
    _bad(POST_A + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", "conflicting repeated header"),
    _bad(POST_A + b"Content-Length: 5,\r\n\r\n", "trailing comma leaves an empty member"),
    _bad(POST_A + b"Content-Length: -1\r\n\r\n", "negative length"),
    _bad(POST_A + b"Content-Length: +5\r\n\r\n", "signed length"),
    _bad(POST_A + b"Content-Length: 0x10\r\n\r\n", "hex length"),
    _bad(POST_A + b"Content-Length: 5 5\r\n\r\n", "two numbers separated by a space"),
    _bad(POST_A + b"Content-Length:\r\n\r\n", "empty length"),
    _bad(POST_A + b"Content-Length: \xd9\xa5\r\n\r\n", "non-ASCII digit"),
    # --- Transfer-Encoding ------------------------------------------------------------------------
    _ok(POST_A + b"Transfer-Encoding: chunked\r\n\r\n", "chunked body"),
    _ok(POST_A + b"Transfer-Encoding: CHUNKED\r\n\r\n", "coding names are case-insensitive (value lowercased)"),
    _ok(
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "chunked in HTTP/1.0 parses (the server then closes)",
    ),
    _bad(POST_A + b"Transfer-Encoding: gzip\r\n\r\n", "unsupported coding: 501"),
    _bad(POST_A + b"Transfer-Encoding: gzip, chunked\r\n\r\n", "coding list: 501"),
    _bad(POST_A + b"Transfer-Encoding: chunked, chunked\r\n\r\n", "chunked twice in a list"),
    _bad(
        POST_A + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "repeated Transfer-Encoding header: 501",
    ),
    _bad(POST_A + b"Transfer-Encoding: identity\r\n\r\n", "identity coding (removed from HTTP/1.1)"),
    _bad(POST_A + b"Transfer-Encoding:\r\n\r\n", "empty coding"),
    _bad(POST_A + b"Transfer-Encoding: chunked;q=1\r\n\r\n", "chunked with a parameter"),
    # Both framings: h11 accepts (Transfer-Encoding wins); this server refuses. See the differential test.
    _ok(
        POST_A + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "both Content-Length and chunked: h11 accepts, we deliberately refuse",
    ),
    _ok(POST_A + b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", "both framings, other order"),
    # --- several errors in one head: the status must follow h11's order of checks -----------------
    _bad(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nBad Line\r\n\r\n",
        "syntax error after a 501 coding: 400 wins",
    ),
    _bad(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "501 coding and missing Host: 501 wins"),
    _bad(
        POST_A + b"Transfer-Encoding: gzip\r\nContent-Length: x\r\n\r\n",
        "501 coding before a bad length: first in order wins",
    ),
    _bad(
        POST_A + b"Content-Length: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        "bad length before a 501 coding: first in order wins",
    ),
    # --- Connection -------------------------------------------------------------------------------
    _ok(GET_A + b"Connection: close\r\n\r\n", "Connection: close"),
    _ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "HTTP/1.0 keep-alive"),
    _ok(
        GET_A + b"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "Upgrade request parses like any other",
    ),
)


# --- hypothesis strategies ----------------------------------------------------------------------

_TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VCHARS = "".join(chr(code) for code in range(0x21, 0x7F))
#: Bytes that break or stress a head when inserted somewhere: controls, whitespace of every kind,
#: delimiters, DEL and non-ASCII.
_NASTY_BYTES = (
    b"\x00", b"\x01", b"\x08", b"\x0b", b"\x0c", b"\x1f", b"\x7f", b"\x80", b"\xc3\xa9", b"\xff",
    b" ", b"\t", b"\r", b"\n", b"\r\n", b":", b",", b";", b'"', b"(", b"/", b"@",
)

_tokens = st.text(alphabet=_TCHARS, min_size=1, max_size=12).map(str.encode)
_methods = st.one_of(
    st.sampled_from((b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT")), _tokens
)
_targets = st.one_of(
    st.sampled_from((b"/", b"*", b"/echo", b"/?a=b", b"http://example.com/x", b"example.com:443")),
    st.text(alphabet=_VCHARS, min_size=1, max_size=20).map(lambda text: b"/" + text.encode()),
)
_versions = st.sampled_from((b"1.1", b"1.1", b"1.1", b"1.0", b"1.0", b"2.0", b"0.9", b"1.2"))
_field_vchars = st.one_of(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E),
    st.characters(min_codepoint=0x80, max_codepoint=0xFF),  # obs-text, encoded as latin-1 below
)
_free_values = st.lists(
    st.one_of(st.text(_field_vchars, min_size=1, max_size=6), st.sampled_from((" ", "\t", "  "))),
    max_size=6,
).map(lambda parts: "".join(parts).encode("latin-1"))
_OWS = st.sampled_from((b"", b" ", b" ", b"\t", b"  \t"))

#: Values worth trying for the headers with framing or connection semantics.
_SPECIAL_VALUES = {
    b"Host": (b"a", b"", b"example.com:80", b"[::1]:8080", b"a b"),
    b"Content-Length": (
        b"0", b"5", b"10", b"05", b"5, 5", b"5,5,5", b"5, 6", b"5,", b"", b"+5", b"-1", b"0x5", b"5 5",
        b"9" * 20, b"9" * 21,
    ),
    b"Transfer-Encoding": (
        b"chunked", b"Chunked", b"CHUNKED", b"gzip", b"gzip, chunked", b"chunked, gzip", b"identity", b"",
        b"chunked;a=b",
    ),
    b"Connection": (b"close", b"keep-alive", b"Keep-Alive", b"Upgrade, close", b"", b"close,close"),
}
_special_names = st.sampled_from(tuple(_SPECIAL_VALUES))


@st.composite
def _special_header(draw) -> bytes:
    """A Host/Content-Length/Transfer-Encoding/Connection line, name in any case, value from the pool."""
    name = draw(_special_names)
    value = draw(st.sampled_from(_SPECIAL_VALUES[name]))
    casing = draw(st.sampled_from((bytes, bytes.lower, bytes.upper)))
    return casing(name) + b":" + draw(_OWS) + value + draw(_OWS)


@st.composite
def _ordinary_header(draw) -> bytes:
    name = draw(st.one_of(st.sampled_from((b"User-Agent", b"Accept", b"Cookie", b"X-Foo")), _tokens))
    return name + b":" + draw(_OWS) + draw(_free_values) + draw(_OWS)


_header_lines = st.one_of(_ordinary_header(), _special_header())
_EOLS = st.sampled_from((b"\r\n", b"\r\n", b"\r\n", b"\n"))


class _Head:
    """A head under construction: lines without their endings, and the ending of each line."""

    def __init__(self, lines: list[bytes], endings: list[bytes]) -> None:
        self.lines = lines
        self.endings = endings

    def insert_line(self, index: int, line: bytes, ending: bytes) -> None:
        self.lines.insert(index, line)
        self.endings.insert(index, ending)

    def serialize(self) -> bytes:
        return b"".join(line + ending for line, ending in zip(self.lines, self.endings))


def _add_special(draw, head: _Head) -> None:
    """Duplicate or add a framing/Host/Connection header anywhere after the request line."""
    head.insert_line(draw(st.integers(1, len(head.lines) - 1)), draw(_special_header()), b"\r\n")


def _fold(draw, head: _Head) -> None:
    """Insert an obs-fold continuation line (possibly right after the request line: invalid)."""
    continuation = draw(st.sampled_from((b" ", b"\t", b"  \t"))) + draw(_free_values)
    head.insert_line(draw(st.integers(1, len(head.lines) - 1)), continuation, draw(_EOLS))


def _change_ending(draw, head: _Head) -> None:
    """Bare LF, bare CR, CR CR LF or LF CR as a line ending (the blank line's included)."""
    index = draw(st.integers(0, len(head.endings) - 1))
    head.endings[index] = draw(st.sampled_from((b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\n\r\n")))


def _insert_byte(draw, head: _Head) -> None:
    """Put a control, whitespace, delimiter or non-ASCII byte somewhere in a line."""
    index = draw(st.integers(0, len(head.lines) - 1))
    line = head.lines[index]
    at = draw(st.integers(0, len(line)))
    head.lines[index] = line[:at] + draw(st.sampled_from(_NASTY_BYTES)) + line[at:]


def _delete_byte(draw, head: _Head) -> None:
    index = draw(st.integers(0, len(head.lines) - 1))
    line = head.lines[index]
    if line:
        at = draw(st.integers(0, len(line) - 1))
        head.lines[index] = line[:at] + line[at + 1:]


def _empty_value(draw, head: _Head) -> None:
    """Cut a header line just after its colon (an empty value, or no colon at all)."""
    if len(head.lines) > 2:
        index = draw(st.integers(1, len(head.lines) - 2))
        line = head.lines[index]
        head.lines[index] = line[: line.find(b":") + 1]


def _long_token(draw, head: _Head) -> None:
    """A long method, target, header name or value (kept well under h11's 16 KiB head limit)."""
    length = draw(st.sampled_from((100, 1000, 3000)))
    where = draw(st.sampled_from(("method", "target", "name", "value")))
    if where in ("method", "target"):
        parts = head.lines[0].split(b" ")
        parts[0 if where == "method" else min(1, len(parts) - 1)] = b"M" * length
        head.lines[0] = b" ".join(parts)
    elif where == "name":
        head.insert_line(1, b"N" * length + b": v", b"\r\n")
    else:
        head.insert_line(1, b"X-Long: " + b"v" * length, b"\r\n")


def _mangle_request_line(draw, head: _Head) -> None:
    """Odd separators or casing in the request line."""
    old, new = draw(st.sampled_from(((b" ", b"  "), (b" ", b"\t"), (b"HTTP", b"http"), (b"/", b""), (b".", b""))))
    head.lines[0] = head.lines[0].replace(old, new, 1)


def _leading_blank_line(draw, head: _Head) -> None:
    head.insert_line(0, b"", draw(_EOLS))


def _drop_host(draw, head: _Head) -> None:
    kept = [(line, ending) for line, ending in zip(head.lines, head.endings) if not line.lower().startswith(b"host:")]
    head.lines = [line for line, _ in kept]
    head.endings = [ending for _, ending in kept]


_MUTATIONS = (
    _add_special, _add_special, _fold, _change_ending, _insert_byte, _insert_byte, _delete_byte,
    _empty_value, _long_token, _mangle_request_line, _leading_blank_line, _drop_host,
)


@st.composite
def mutated_heads(draw) -> bytes:
    """A request head built from the grammar (mostly valid), with zero to three mutations applied,
    sometimes cut short (an incomplete head) or followed by body bytes."""
    request_line = draw(_methods) + b" " + draw(_targets) + b" HTTP/" + draw(_versions)
    headers = draw(st.lists(_header_lines, max_size=6))
    if draw(st.booleans()):
        headers.insert(draw(st.integers(0, len(headers))), b"Host: " + draw(st.sampled_from((b"a", b"localhost:8080"))))
    lines = [request_line, *headers, b""]
    head = _Head(lines, [draw(_EOLS) for _ in lines])
    for mutation in draw(st.lists(st.sampled_from(_MUTATIONS), max_size=3)):
        mutation(draw, head)
    data = head.serialize()
    tail = draw(st.sampled_from(("whole", "whole", "cut", "body")))
    if tail == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif tail == "body":
        data += draw(st.sampled_from((b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n", b"\r\n")))
    return data


#: Fragments of request heads; random sequences of them hit the grammar far more often than bytes do.
_FRAGMENTS = (
    b"GET", b"POST", b" ", b"  ", b"/", b"/x", b"*", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/", b"1.1",
    b"Host", b"host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"chunked", b"close",
    b":", b": ", b"a", b"5", b",", b"\r\n", b"\r\n", b"\n", b"\r", b"\t", *_NASTY_BYTES,
)


def random_bytes() -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, sequences of HTTP fragments, and a valid request line followed by either."""
    soup = st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map(b"".join)
    anything = st.one_of(st.binary(max_size=200), soup)
    return st.one_of(
        anything,
        anything.map(lambda rest: b"GET / HTTP/1.1\r\n" + rest),
        anything.map(lambda rest: b"GET / HTTP/1.1\r\nHost: a\r\n" + rest + b"\r\n\r\n"),
    )


@st.composite
def chunked_bodies(draw) -> bytes:
    """A chunked body (chunk extensions, hex in both cases, leading zeros, trailers with obs-fold),
    sometimes with a chunk size off by one, then zero to two byte-level mutations, sometimes
    followed by the next pipelined request."""
    encoded = bytearray()
    for data in draw(st.lists(st.binary(min_size=1, max_size=20), max_size=4)):
        size = len(data) + draw(st.sampled_from((0,) * 8 + (1, -1)))
        digits = draw(st.sampled_from((b"", b"0", b"000", b"0" * 18, b"0" * 19))) + b"%x" % size  # h11: 20 at most
        if draw(st.booleans()):
            digits = digits.upper()
        extension = draw(st.sampled_from((b"", b";a=b", b";x", b'; q="1;2" ', b" ", b";a\rb")))
        encoded += digits + extension + b"\r\n" + data + b"\r\n"
    encoded += b"0" + draw(st.sampled_from((b"", b";end"))) + b"\r\n"
    for _ in range(draw(st.integers(0, 3))):
        encoded += draw(st.one_of(_ordinary_header(), st.sampled_from((b" folded", b"\t")))) + draw(_EOLS)
    encoded += draw(_EOLS)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(encoded)))
        if draw(st.booleans()):
            encoded[at:at] = draw(st.sampled_from(_NASTY_BYTES))
        else:
            del encoded[at:at + 1]
    if draw(st.booleans()):
        encoded += b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    return bytes(encoded)
