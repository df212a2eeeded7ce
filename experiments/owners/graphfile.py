"""Reading a heap graph file (``server/heapgraph.py`` writes it) as arrays: an untrusted-input reader.

Rules: every size is bounded before anything is allocated for it (the file, each chunk once
decompressed, the trailer, the counts), every field is checked against the tables it indexes, and a
bad file raises :class:`~experiments.errors.BadInput` with one line naming the file and what is wrong.
Nodes are renumbered 0..N-1 by address (an untracked object written twice is kept once, its first
record); a referent that is not a node (an object the writer left out: the probe's own) is dropped.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInput

MAGIC = b"MDHGRAF1"
VERSION = 1
#: Bounds: a heap graph of ten million objects is far past any subject this project measures.
MAX_FILE_BYTES = 4 << 30
MAX_CHUNK_BYTES = 64 << 20
MAX_WORDS = 1 << 30
MAX_TRAILER_BYTES = 256 << 20
MAX_NODES = 20_000_000
TRACKED = 1
HAS_DICT = 2
RECORD_HEADER_WORDS = 6


@dataclass(slots=True)
class HeapGraph:
    """One moment's heap: node ``i`` has ``address[i]``, ``type_index[i]`` (into ``types``),
    ``size[i]`` (``sys.getsizeof``), ``site_index[i]`` (into ``sites``, -1 unknown), ``flags[i]``;
    edges ``source -> target`` (node indices); ``roots`` the node indices of modules and frames."""

    path: Path
    address: np.ndarray
    type_index: np.ndarray
    size: np.ndarray
    site_index: np.ndarray
    flags: np.ndarray
    source: np.ndarray
    target: np.ndarray
    roots: np.ndarray
    types: list[str]
    sites: list[str]
    trailer: dict[str, Any]

    @property
    def nodes(self) -> int:
        return len(self.address)

    def type_names(self) -> np.ndarray:
        """Each node's type name (an object array)."""
        return np.asarray(self.types, dtype=object)[self.type_index]


def read_graph(path: Path) -> HeapGraph:
    """The heap graph in ``path``; :class:`BadInput` (one line) when it is not a valid one."""
    path = Path(path)
    try:
        raw = path.read_bytes() if path.stat().st_size <= MAX_FILE_BYTES else None
    except OSError as error:
        raise BadInput(f"{path}: cannot read the heap graph: {error.strerror or error}") from None
    if raw is None:
        raise BadInput(f"{path}: larger than {MAX_FILE_BYTES >> 30} GiB, not read")
    try:
        return _parse(path, raw)
    except _Bad as error:
        raise BadInput(f"{path}: not a heap graph file: {error}") from None


class _Bad(Exception):
    pass


def _parse(path: Path, raw: bytes) -> HeapGraph:
    if raw[:8] != MAGIC:
        raise _Bad("wrong magic")
    pos, pieces, total = 8, [], 0
    while True:
        if pos + 4 > len(raw):
            raise _Bad("truncated before the end of its chunks")
        length = int.from_bytes(raw[pos:pos + 4], "little")
        pos += 4
        if length == 0:
            break
        if length > MAX_CHUNK_BYTES or pos + length > len(raw):
            raise _Bad(f"a chunk of {length} bytes at offset {pos - 4} runs past the file or the bound")
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(raw[pos:pos + length], MAX_CHUNK_BYTES)
        except zlib.error as error:
            raise _Bad(f"chunk at offset {pos - 4} is not zlib data ({error})") from None
        if inflater.unconsumed_tail or len(data) % 8:
            raise _Bad(f"chunk at offset {pos - 4} is larger than the bound or not whole words")
        total += len(data) // 8
        if total > MAX_WORDS:
            raise _Bad("more words than the bound")
        pieces.append(np.frombuffer(data, dtype="<u8"))
        pos += length
    if pos + 4 > len(raw):
        raise _Bad("no trailer")
    length = int.from_bytes(raw[pos:pos + 4], "little")
    if length > MAX_TRAILER_BYTES or pos + 4 + length != len(raw):
        raise _Bad("the trailer's length does not match the file")
    try:
        trailer = json.loads(raw[pos + 4:])
    except ValueError as error:
        raise _Bad(f"the trailer is not JSON ({error})") from None
    types, sites, roots = _check_trailer(trailer)
    words = np.concatenate(pieces) if pieces else np.zeros(0, dtype="<u8")
    starts = _record_starts(words)
    if len(starts) != trailer["nodes"]:
        raise _Bad(f"{len(starts)} records where the trailer says {trailer['nodes']}")
    address = words[starts].astype(np.uint64)
    type_index = words[starts + 1].astype(np.int64)
    size = words[starts + 2].astype(np.int64)
    site_index = words[starts + 3].astype(np.int64) - 1
    flags = words[starts + 4].astype(np.int64)
    counts = words[starts + 5].astype(np.int64)
    if len(starts) and (type_index.max() >= len(types) or site_index.max() >= len(sites)
                        or size.max() >= 1 << 40 or (flags & 0xFFFC).any() or (flags >> 32).any()):
        raise _Bad("a record's type, site, size or flags is out of range")
    # The edges' words: for record r, counts[r] words from starts[r] + 6.
    owner = np.repeat(np.arange(len(starts)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    referent = words[np.repeat(starts + RECORD_HEADER_WORDS, counts) + offsets]
    # One node per address, its first record kept.
    unique, first = np.unique(address, return_index=True)
    keep = np.zeros(len(starts), dtype=bool)
    keep[first] = True
    old_to_new = np.full(len(starts), -1, dtype=np.int64)
    order = np.sort(first)
    old_to_new[order] = np.arange(len(order))
    edge_kept = keep[owner]
    source = old_to_new[owner[edge_kept]]
    found = np.searchsorted(unique, referent[edge_kept])
    found = np.minimum(found, max(len(unique) - 1, 0))
    hit = unique[found] == referent[edge_kept] if len(unique) else np.zeros(0, dtype=bool)
    # unique is sorted by address; the nodes are numbered in record order: map between the two.
    unique_to_new = old_to_new[first]
    target = unique_to_new[found[hit]]
    source = source[hit]
    root_positions = np.searchsorted(unique, np.asarray(roots, dtype=np.uint64)) if len(unique) else np.zeros(0, int)
    root_positions = np.minimum(root_positions, max(len(unique) - 1, 0))
    root_hit = unique[root_positions] == np.asarray(roots, dtype=np.uint64) if len(unique) else np.zeros(0, bool)
    return HeapGraph(path, address[order], type_index[order], size[order], site_index[order], flags[order],
                     source, target, np.unique(unique_to_new[root_positions[root_hit]]), types, sites, trailer)


def _check_trailer(trailer: Any) -> tuple[list[str], list[str], list[int]]:
    if not isinstance(trailer, dict) or trailer.get("version") != VERSION:
        raise _Bad(f"trailer version {trailer.get('version') if isinstance(trailer, dict) else '?'!r}, "
                   f"this reader knows {VERSION}")
    nodes = trailer.get("nodes")
    if not isinstance(nodes, int) or not 0 <= nodes <= MAX_NODES:
        raise _Bad("the trailer's node count is missing or out of range")
    types, sites, roots = trailer.get("types"), trailer.get("sites"), trailer.get("roots")
    if not (isinstance(types, list) and all(isinstance(t, str) and len(t) < 1000 for t in types)):
        raise _Bad("the trailer's types are not a list of names")
    if not (isinstance(sites, list) and all(isinstance(s, str) and len(s) < 5000 for s in sites)):
        raise _Bad("the trailer's sites are not a list of file:line")
    if not isinstance(roots, dict):
        raise _Bad("the trailer's roots are not an object")
    listed = [roots.get("modules", []), roots.get("frames", [])]
    if not all(isinstance(part, list) and all(isinstance(a, int) and 0 <= a < 1 << 64 for a in part)
               for part in listed):
        raise _Bad("the trailer's roots are not lists of addresses")
    return types, sites, [*listed[0], *listed[1]]


def _record_starts(words: np.ndarray) -> np.ndarray:
    """Where each record begins (records are variable length: their sixth word counts the rest)."""
    view = memoryview(words.astype("<u8", copy=False).view(np.uint64)).cast("B").cast("Q")
    starts, pos, end = [], 0, len(view)
    append = starts.append
    while pos < end:
        if pos + RECORD_HEADER_WORDS > end:
            raise _Bad(f"a record at word {pos} is cut short")
        append(pos)
        pos += RECORD_HEADER_WORDS + view[pos + 5]
    if pos != end:
        raise _Bad(f"the last record runs {pos - end} words past the end")
    return np.asarray(starts, dtype=np.int64)
