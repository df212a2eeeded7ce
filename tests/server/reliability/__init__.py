"""The server under hostile and faulty clients, for every layout: it stays up, serves others, holds
bounded memory and leaks nothing.

Each test runs at two scales: ``short`` (in ``make test``) and ``soak`` (marked ``soak``, run only
with ``MEMDIET_SOAK=1``, as ``make soak`` does). Every test prints its figures on one line starting
with ``reliability:`` (shown with ``pytest -s``); docs/testing.md, "Reliability", quotes them.

What is tried: slowloris connections trickling a head, a body or garbage after a refusal; resets
(SO_LINGER 0) at every stage of a request and response; half-closed connections; clients that pipeline
without ever reading; a pipelining flood; a connection table kept full; a process out of file
descriptors; and many connect/request/close cycles and keep-alive requests followed by a heap and RSS
comparison. The parser fuzzer against live servers is tests/server/test_parser_fuzz.py.
"""
