"""``naive``: one ordinary object per fd holding connection, request, response and parse state.

Mirrors Lwan before ebda2aaf (2013-08): ``struct lwan_request`` of ~4,376 B per fd, with the 4 KiB
read buffer inline and every parse-only field beside the connection's. Here each slot is a plain
object (with a ``__dict__``) of 40 attributes, a preallocated 4 KiB ``bytearray`` and its header
containers, all made at start for every possible fd. Between keep-alive requests the request fields
are reset one by one, Lwan's ``memset``.
"""

from __future__ import annotations

import ctypes
from typing import Any

from ..http import HEAD_BUFFER_SIZE
from .base import NO_SLOT, Peer, PeerLookup
from ._slots import BooleanFlags, SlotObjectTable, StoredAddress


class NaiveSlot:
    """Everything about one fd: connection, request, parse and response state (~6 KB per slot).

    The parser fills ``method``, ``target``, ``version``, ``headers``, ``keep_alive``,
    ``content_length`` and ``chunked`` directly on the slot.
    """

    def __init__(self) -> None:
        # read buffer, preallocated inline as Lwan's char buffer[DEFAULT_BUFFER_SIZE]
        self.buffer = bytearray(HEAD_BUFFER_SIZE)
        # header and response containers, preallocated too; reset_request empties them
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_index: dict[bytes, bytes] = {}
        self.query_params: dict[bytes, bytes] = {}
        self.cookies: dict[bytes, bytes] = {}
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.reset_connection()
        self.reset_request()

    def reset_connection(self) -> None:
        """Clear the connection fields (at start, and when the connection closes)."""
        self.fd = -1
        self.peer = None
        self.remote_port = 0
        self.is_alive = False
        self.is_keep_alive = False
        self.is_writing = False
        self.is_idle = False
        self.is_queued = False
        self.coroutine = None
        self.expiry = 0
        self.prev = NO_SLOT
        self.next = NO_SLOT
        self.requests_served = 0

    def reset_request(self) -> None:
        """Clear the request, parse and response fields for the next keep-alive request, field by
        field (the containers are emptied, not replaced: they stay preallocated)."""
        self.buffer_used = 0
        self.method = b""
        self.target = b""
        self.version = b""
        self.headers.clear()
        self.keep_alive = False
        self.content_length = 0
        self.chunked = False
        self.path = b""
        self.query_string = b""
        self.host = b""
        self.user_agent = b""
        self.accept_encoding = b""
        self.if_modified_since = 0
        self.range_from = -1
        self.range_to = -1
        self.parse_state = 0
        self.parse_position = 0
        self.header_start = 0
        self.header_index.clear()
        self.query_params.clear()
        self.cookies.clear()
        self.response_status = 0
        self.response_mime_type = b""
        self.response_length = 0
        self.response_headers.clear()


class NaiveStruct(ctypes.Structure):
    """C equivalent of :class:`NaiveSlot`: 4 KiB buffer inline plus fixed header arrays, ~4.4 KB
    (Lwan's request struct was ~4,376 B at this stage)."""

    _fields_ = [
        ("buffer", ctypes.c_char * HEAD_BUFFER_SIZE),
        ("coroutine", ctypes.c_void_p),
        ("method", ctypes.c_char_p),
        ("target", ctypes.c_char_p),
        ("path", ctypes.c_char_p),
        ("query_string", ctypes.c_char_p),
        ("host", ctypes.c_char_p),
        ("user_agent", ctypes.c_char_p),
        ("accept_encoding", ctypes.c_char_p),
        ("response_mime_type", ctypes.c_char_p),
        ("header_start", ctypes.c_char_p * 16),  # pointers to header lines, as Lwan's parser kept
        ("if_modified_since", ctypes.c_int64),
        ("range_from", ctypes.c_int64),
        ("range_to", ctypes.c_int64),
        ("content_length", ctypes.c_int64),
        ("response_length", ctypes.c_int64),
        ("requests_served", ctypes.c_uint64),
        ("fd", ctypes.c_int),
        ("remote_ip", ctypes.c_uint32),
        ("expiry", ctypes.c_uint32),
        ("prev", ctypes.c_int32),
        ("next", ctypes.c_int32),
        ("buffer_used", ctypes.c_uint32),
        ("parse_state", ctypes.c_uint32),
        ("parse_position", ctypes.c_uint32),
        ("response_status", ctypes.c_uint16),
        ("remote_port", ctypes.c_uint16),
        ("version", ctypes.c_uint8),
        ("is_alive", ctypes.c_bool),
        ("is_keep_alive", ctypes.c_bool),
        ("is_writing", ctypes.c_bool),
        ("is_idle", ctypes.c_bool),
        ("is_queued", ctypes.c_bool),
        ("keep_alive", ctypes.c_bool),
        ("chunked", ctypes.c_bool),
    ]


class NaiveTable(BooleanFlags, StoredAddress, SlotObjectTable):
    name = "naive"
    summary = "one plain object per fd with connection, request and parse state, a 4 KiB buffer and header containers"
    slot_class = NaiveSlot
    c_struct = NaiveStruct

    def open(self, fd: int, peer: Peer) -> None:
        slot = self.slots[fd]
        slot.fd = fd
        slot.peer = peer
        slot.remote_port = peer[1] if len(peer) > 1 else 0
        slot.is_alive = True
        slot.requests_served = 0

    def close(self, fd: int) -> None:
        # The slot stays allocated (that is the point of preallocation): reset it in place.
        slot = self.slots[fd]
        slot.reset_request()
        slot.reset_connection()

    def read_buffer(self, fd: int) -> bytearray:
        return self.slots[fd].buffer

    def new_request(self, fd: int) -> Any:
        slot = self.slots[fd]
        slot.reset_request()
        slot.requests_served += 1
        return slot
