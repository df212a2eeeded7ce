"""The request parser fuzzed through live servers, one per layout.

Each example opens a connection, sends a stream of one to three request heads (valid, mutated from
valid, random bytes, or larger than the 4 KiB head buffer), in pieces, then half-closes. The server
must:

- answer with well-formed responses only, each with a status it can give (a route's 200/404/405 or a
  refusal's 400/413/431/501/505), refusals always with ``Connection: close`` and nothing after them;
- answer the first head as its own parser decides (a refusal's status, or no answer at all, just the
  close, when the head is incomplete): the connection code must deliver what the parser says;
- close the connection after the half-close;
- stay alive with no traceback on stderr, and keep answering a bystander client that holds a
  keep-alive connection through the whole run.

What the parser decides is checked against h11 in test_http_differential.py; the strategies come
from tests/fixtures/http_corpus.py, plus byte-level mutations and oversized heads here. ``make test`` runs a
fixed, derandomized set; ``MEMDIET_SOAK=1`` (``make soak``) runs many more random examples.

Optionally, ``MEMDIET_ATHERIS=RUNS`` adds coverage-guided fuzzing of the same parsing path in-process
with atheris (``pip install -e '.[fuzz]'``): this module is also its harness
(``python -m tests.server.test_parser_fuzz -runs=RUNS``).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.http import (
    HEAD_BUFFER_SIZE,
    ChunkedDecoder,
    HTTPError,
    check_policy,
    find_head_end,
    parse_head,
)
from server.request import Request

from ..fixtures.http_corpus import mutated_heads, random_bytes
from ..fixtures.server_client import (
    REPO_ROOT,
    RawClient,
    ServerProcess,
    request_bytes,
    running_server,
)

SOAK = os.environ.get("MEMDIET_SOAK") == "1"
_COMMON = dict(deadline=None,  # a live server on a noisy machine
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: ``make test``: a fixed (derandomized) set of examples per layout.
SHORT_SETTINGS = settings(max_examples=250, derandomize=True, **_COMMON)
#: ``make soak``: many more random examples per layout.
SOAK_SETTINGS = settings(max_examples=3000, **_COMMON)
#: --max-body of the fuzzed servers (the default), in bytes: larger declared bodies get 413.
MAX_BODY = 1 << 20

ROUTE_STATUSES = {200, 404, 405}
REFUSAL_STATUSES = {400, 413, 431, 501, 505}
INCOMPLETE = "incomplete"  # the head never completes: no answer, only the close
ACCEPTED = "accepted"  # the head is accepted: a route answers, or its body is refused, or incomplete

# --- strategies ----------------------------------------------------------------------------------

#: Well-formed requests, sent as they are and mutated byte by byte: every route, method, framing and
#: connection option, and one of each refusal the policy makes (505, 501, 413).
TEMPLATES = (
    request_bytes("GET", "/"),
    request_bytes("GET", "/echo?a=1", headers={"Accept": "*/*", "User-Agent": "fuzz"}),
    request_bytes("HEAD", "/"),
    request_bytes("GET", "/", version="1.0"),
    request_bytes("GET", "/", version="1.0", headers={"Connection": "keep-alive"}),
    request_bytes("GET", "/", headers={"Connection": "close"}),
    request_bytes("POST", "/echo", headers={"Content-Length": "5"}, body=b"hello"),
    request_bytes("POST", "/echo", headers={"Transfer-Encoding": "chunked"}, body=b"5\r\nhello\r\n0\r\n\r\n"),
    request_bytes("GET", "/missing"),
    request_bytes("DELETE", "/"),
    request_bytes("GET", "/", version="2.0"),
    request_bytes("BREW", "/"),
    request_bytes("POST", "/echo", headers={"Content-Length": str(2 << 20)}),
)
_SPECIAL_BYTES = (b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b"\xff", b"\x7f")


@st.composite
def byte_mutations(draw) -> bytes:
    """A valid request with one to four byte-level edits: flip, insert a CR/LF/NUL/space...,
    delete, duplicate a slice (repeated headers and lines), truncate."""
    data = bytearray(draw(st.sampled_from(TEMPLATES)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(("flip", "insert", "insert", "delete", "duplicate", "truncate")))
        if kind == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.one_of(st.sampled_from(_SPECIAL_BYTES), st.binary(min_size=1, max_size=3)))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 3))]
        elif kind == "duplicate":
            end = min(len(data), at + draw(st.integers(1, 40)))
            data[at:at] = data[at:end] * draw(st.integers(1, 3))
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


@st.composite
def oversized_heads(draw) -> bytes:
    """A head around and beyond the 4 KiB buffer: a long target, name or value, many headers, or a
    line with no end at all."""
    size = draw(st.sampled_from((HEAD_BUFFER_SIZE - 64, HEAD_BUFFER_SIZE - 1, HEAD_BUFFER_SIZE,
                                 HEAD_BUFFER_SIZE + 1, 2 * HEAD_BUFFER_SIZE, 16 * 1024)))
    where = draw(st.sampled_from(("target", "name", "value", "many headers", "endless line")))
    if where == "target":
        return request_bytes("GET", "/echo?" + "t" * size)
    if where == "name":
        return b"GET / HTTP/1.1\r\nHost: a\r\n" + b"N" * size + b": v\r\n\r\n"
    if where == "value":
        return request_bytes("GET", "/", headers={"X-Big": "v" * size})
    if where == "many headers":
        return request_bytes("GET", "/", headers={f"X-{index}": "v" for index in range(size // 8)})
    return b"GET / HTTP/1.1\r\nX-Endless: " + b"e" * size


REQUESTS = st.one_of(
    st.sampled_from(TEMPLATES), mutated_heads(), random_bytes(), byte_mutations(), oversized_heads()
)
#: One to three requests back to back (pipelined), and where to cut the stream into sends.
STREAMS = st.lists(REQUESTS, min_size=1, max_size=3).map(b"".join)
CUTS = st.lists(st.floats(0, 1), max_size=3)

# --- what the server must answer -----------------------------------------------------------------


def first_head_verdict(data: bytes) -> int | str:
    """What the server must do with the first head of ``data`` when no more bytes follow: a refusal
    status, INCOMPLETE or ACCEPTED. Decided with the server's own parser on what fits its buffer,
    as the connection does."""
    window = bytearray(data[:HEAD_BUFFER_SIZE])
    try:
        head_length = find_head_end(window, len(window))
        if not head_length:
            return 431 if len(window) == HEAD_BUFFER_SIZE else INCOMPLETE
        request = Request()
        parse_head(bytes(window[:head_length]), request)
        check_policy(request, MAX_BODY)
    except HTTPError as error:
        return error.status
    return ACCEPTED


_RESPONSE_HEAD = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n")


def split_responses(stream: bytes) -> list[tuple[int, dict[bytes, bytes]]]:
    """Split everything the server sent into (status, headers) pairs; fail on anything that is not a
    well-formed response. A body is as long as Content-Length says, except after HEAD, which gets
    none: that is recognised by the next response (or the end) starting where a body would."""
    responses = []
    position = 0
    while position < len(stream):
        match = _RESPONSE_HEAD.match(stream, position)
        assert match, f"not a response at byte {position}: {stream[position:position + 200]!r}"
        headers = {}
        for line in match.group(2).split(b"\r\n")[:-1]:
            name, _, value = line.partition(b":")
            assert name.lower() not in headers, f"repeated header in {match.group(0)!r}"
            headers[name.lower()] = value.strip()
        length = int(headers[b"content-length"])
        position = match.end()
        bodiless = position == len(stream) or stream.startswith(b"HTTP/1.1 ", position)
        if not bodiless:
            assert position + length <= len(stream), f"body cut short in {stream[match.start():][:300]!r}"
            position += length
        responses.append((int(match.group(1)), headers))
    return responses


def check_answers(sent: bytes, received: bytes) -> int | None:
    """Check what the server sent back for ``sent`` (see the module docstring); return the first
    status, or None when nothing was answered."""
    responses = split_responses(received)
    for index, (status, headers) in enumerate(responses):
        assert status in ROUTE_STATUSES | REFUSAL_STATUSES, status
        closing = headers.get(b"connection", b"").lower() == b"close"
        if status in REFUSAL_STATUSES:
            assert closing, f"refusal {status} without Connection: close"
        if closing:
            assert index == len(responses) - 1, "a response after Connection: close"
    verdict = first_head_verdict(sent)
    first = responses[0][0] if responses else None
    if verdict == INCOMPLETE:
        assert first is None, f"answered {first} to an incomplete head"
    elif verdict == ACCEPTED:  # a route, a refused body (chunked framing or size), or a body never sent
        assert first in ROUTE_STATUSES | {400, 413, None}, first
    else:
        assert first == verdict, f"answered {first}; the parser says {verdict}"
    return first


# --- the servers ---------------------------------------------------------------------------------


@dataclass
class Fuzzed:
    """A server under fuzzing, a bystander client holding a keep-alive connection to it throughout,
    and a tally of what was sent and answered (printed when the server stops)."""

    server: ServerProcess
    bystander: RawClient
    examples: int = 0
    bytes_sent: int = 0
    first_answers: Counter = field(default_factory=Counter)  #: first status (or "none") -> examples


@pytest.fixture(scope="module")
def fuzzed(layout: str) -> Iterator[Fuzzed]:
    with running_server(layout, max_conns=256) as server:
        with server.client() as bystander:
            tally = Fuzzed(server, bystander)
            yield tally
    answers = " ".join(f"{status}:{count}" for status, count in sorted(tally.first_answers.items(), key=str))
    print(f"\nreliability: parser fuzz layout={layout} examples={tally.examples} bytes_sent={tally.bytes_sent} "
          f"first_answers={answers}", flush=True)


def send_in_pieces(client: RawClient, data: bytes, cuts: list[float]) -> None:
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    offsets = sorted({int(cut * len(data)) for cut in cuts} | {0, len(data)})
    for start, end in zip(offsets, offsets[1:]):
        client.send(data[start:end])


def read_until_closed(client: RawClient) -> bytes:
    chunks = []
    while chunk := client.sock.recv(65536):  # READ_TIMEOUT bounds a server that never closes
        chunks.append(chunk)
    return b"".join(chunks)


def fuzz_once(fuzzed: Fuzzed, stream: bytes, cuts: list[float]) -> None:
    with fuzzed.server.client() as client:
        send_in_pieces(client, stream, cuts)
        client.sock.shutdown(socket.SHUT_WR)
        received = read_until_closed(client)
    first_status = check_answers(stream, received)
    fuzzed.server.assert_alive()
    assert fuzzed.bystander.exchange(request_bytes("GET", "/")).status == 200
    fuzzed.examples += 1
    fuzzed.bytes_sent += len(stream)
    fuzzed.first_answers[first_status or "none"] += 1


@SHORT_SETTINGS
@given(stream=STREAMS, cuts=CUTS)
def test_fuzzed_heads_get_valid_answers_and_the_server_survives(fuzzed, stream: bytes, cuts: list[float]) -> None:
    fuzz_once(fuzzed, stream, cuts)


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason="long version: set MEMDIET_SOAK=1 (make soak)")
@SOAK_SETTINGS
@given(stream=STREAMS, cuts=CUTS)
def test_fuzzed_heads_soak(fuzzed, stream: bytes, cuts: list[float]) -> None:
    fuzz_once(fuzzed, stream, cuts)


def test_fuzz_checks_can_fail() -> None:
    """The checks reject what a broken server would send."""
    with pytest.raises(AssertionError):
        check_answers(b"GET / HTTP/1.1\r\nHost: a\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(AssertionError):
        check_answers(b"GET  / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(AssertionError):
        check_answers(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    with pytest.raises(AssertionError):
        check_answers(b"\x00", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")  # no close
    assert first_head_verdict(b"GET / HTTP/1.1\r\nX: " + b"v" * HEAD_BUFFER_SIZE) == 431
    assert first_head_verdict(b"GET / HTTP/1.1\r\nHost: a\r\n") == INCOMPLETE


# --- optional: coverage-guided, in-process -------------------------------------------------------

#: Runs of the atheris fuzzer (0: skipped).
ATHERIS_RUNS = int(os.environ.get("MEMDIET_ATHERIS", "0") or 0)
ATHERIS_TIMEOUT_S = 600


def parse_as_a_connection_would(data: bytes) -> None:
    """The sans-I/O path a connection takes through ``data``: delimit the head in a 4 KiB buffer,
    parse it, apply the policy, decode a chunked body. Only HTTPError may come out."""
    window = bytearray(data[:HEAD_BUFFER_SIZE])
    try:
        head_length = find_head_end(window, len(window))
        if not head_length:
            return
        request = Request()
        parse_head(bytes(window[:head_length]), request)
        check_policy(request, MAX_BODY)
        if request.chunked:
            ChunkedDecoder(MAX_BODY).feed(data[head_length:])
    except HTTPError:
        pass


@pytest.mark.skipif(not ATHERIS_RUNS, reason="coverage-guided fuzzing: set MEMDIET_ATHERIS=RUNS (needs atheris)")
def test_atheris_finds_no_crash_in_the_parser(tmp_path) -> None:
    pytest.importorskip("atheris")
    for index, template in enumerate(TEMPLATES):  # seed corpus: well-formed requests
        (tmp_path / f"seed-{index}").write_bytes(template)
    result = subprocess.run(
        [sys.executable, "-m", "tests.server.test_parser_fuzz", f"-runs={ATHERIS_RUNS}", "-max_len=8192", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=ATHERIS_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    print(f"\nreliability: atheris runs={ATHERIS_RUNS} {result.stderr.strip().splitlines()[-1]}", flush=True)


if __name__ == "__main__":  # the atheris harness that test_atheris_finds_no_crash_in_the_parser runs
    import inspect

    import atheris

    import server.http

    # Coverage of the parser's own functions and methods (instrumenting every loaded module, pytest
    # and hypothesis included, would take a minute).
    for value in vars(server.http).values():
        if inspect.isfunction(value) and value.__module__ == server.http.__name__:
            atheris.instrument_func(value)
        elif inspect.isclass(value) and value.__module__ == server.http.__name__:
            for method in vars(value).values():
                if inspect.isfunction(method):
                    atheris.instrument_func(method)
    atheris.Setup(sys.argv, parse_as_a_connection_would)
    atheris.Fuzz()
