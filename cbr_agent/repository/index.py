"""The blob index: blob id -> (pack, offset, stored length, raw length, flags).

In memory, each entry is one dict item ``bytes -> int`` with the five fields packed into the int (about
150 bytes per blob all told, a third of a dict of tuples); packs are numbered in a list. On disk, index
files are sealed binary tables grouped by pack, written only after the packs they point into.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from cbr_agent.repository.pack import PackEntry

INDEX_MAGIC = b"CBRI\x01"
_PACK_HEAD = struct.Struct("<32sI")
_ENTRY = struct.Struct("<B32sIII")
#: prune splits its consolidated index into files of at most this many entries
INDEX_MAX_FILE_ENTRIES = 500_000

# packed value: pack_no | offset (32) | length (32) | raw length (32) | flags (8)
_F = 8
_R = _F + 32
_L = _R + 32
_O = _L + 32
_M32 = 0xFFFFFFFF


class BlobLocation(NamedTuple):
    pack_id: str
    offset: int
    length: int
    raw_length: int
    flags: int


class MasterIndex:
    """All index entries known to this process; thread-safe for concurrent lookups and additions."""

    def __init__(self) -> None:
        self._entries: dict[bytes, int] = {}
        self._packs: list[str] = []
        self._pack_no: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self._entries

    def has_all(self, blob_ids: Iterable[bytes]) -> bool:
        """True when every id is indexed (one C-level loop: a directory's worth of ids at once)."""
        return all(map(self._entries.__contains__, blob_ids))

    def _pack_number(self, pack_id: str) -> int:
        no = self._pack_no.get(pack_id)
        if no is None:
            no = self._pack_no[pack_id] = len(self._packs)
            self._packs.append(pack_id)
        return no

    def add_pack(self, pack_id: str, entries: Iterable[PackEntry]) -> None:
        """Add (or move) entries; a blob stored twice has equal content in both places, the later wins."""
        with self._lock:
            base = self._pack_number(pack_id) << _O
            self._entries.update(
                {bid: base | (off << _L) | (ln << _R) | (raw << _F) | fl for fl, bid, off, ln, raw in entries}
            )

    def add_index_file(self, plain: bytes) -> dict[str, int]:
        """Parse a decrypted index file straight into the index (the fast path of open); returns the
        number of entries per pack. ValueError when malformed (nothing is added then)."""
        parsed = _parse_index(plain)
        with self._lock:
            counts = {}
            for pack_id, view in parsed:
                base = self._pack_number(pack_id) << _O
                self._entries.update(
                    {
                        bid: base | (off << _L) | (ln << _R) | (raw << _F) | fl
                        for fl, bid, off, ln, raw in _ENTRY.iter_unpack(view)
                    }
                )
                counts[pack_id] = counts.get(pack_id, 0) + len(view) // _ENTRY.size
            return counts

    def lookup(self, blob_id: bytes) -> BlobLocation | None:
        v = self._entries.get(blob_id)
        if v is None:
            return None
        return BlobLocation(
            self._packs[v >> _O], (v >> _L) & _M32, (v >> _R) & _M32, (v >> _F) & _M32, v & 0xFF
        )

    def packs(self) -> set[str]:
        """Packs that hold at least one indexed blob."""
        nos = {v >> _O for v in self._entries.values()}
        return {self._packs[n] for n in nos}

    def by_pack(self) -> dict[str, list[PackEntry]]:
        out: dict[str, list[PackEntry]] = {}
        packs = self._packs
        for blob_id, v in self._entries.items():
            out.setdefault(packs[v >> _O], []).append(
                PackEntry(v & 0xFF, blob_id, (v >> _L) & _M32, (v >> _R) & _M32, (v >> _F) & _M32)
            )
        return out

    def remove_packs(self, pack_ids: set[str]) -> None:
        with self._lock:
            nos = {self._pack_no[p] for p in pack_ids if p in self._pack_no}
            if nos:
                self._entries = {k: v for k, v in self._entries.items() if (v >> _O) not in nos}

    def blob_ids(self) -> Iterator[bytes]:
        return iter(list(self._entries))


def encode_index(packs: dict[str, list[PackEntry]]) -> bytes:
    parts = [INDEX_MAGIC, struct.pack("<I", len(packs))]
    for pack_id, entries in packs.items():
        parts.append(_PACK_HEAD.pack(bytes.fromhex(pack_id), len(entries)))
        parts.extend(_ENTRY.pack(e.flags, e.blob_id, e.offset, e.length, e.raw_length) for e in entries)
    return b"".join(parts)


def _parse_index(plain: bytes) -> list[tuple[str, memoryview]]:
    """``(pack id, view of its packed entries)`` for each pack of an index file; ValueError if malformed."""
    if not plain.startswith(INDEX_MAGIC):
        raise ValueError("index file has no magic")
    view = memoryview(plain)
    pos = len(INDEX_MAGIC)
    out: list[tuple[str, memoryview]] = []
    try:
        (npacks,) = struct.unpack_from("<I", view, pos)
        pos += 4
        for _ in range(npacks):
            raw_id, count = _PACK_HEAD.unpack_from(view, pos)
            pos += _PACK_HEAD.size
            end = pos + count * _ENTRY.size
            if end > len(view):
                raise ValueError("index file is truncated")
            out.append((raw_id.hex(), view[pos:end]))
            pos = end
    except struct.error as exc:
        raise ValueError(f"index file is malformed: {exc}") from None
    if pos != len(view):
        raise ValueError("index file has trailing bytes")
    return out


def decode_index(plain: bytes) -> dict[str, list[PackEntry]]:
    """Inverse of :func:`encode_index`; ValueError when malformed."""
    out: dict[str, list[PackEntry]] = {}
    for pack_id, view in _parse_index(plain):
        out.setdefault(pack_id, []).extend(map(PackEntry._make, _ENTRY.iter_unpack(view)))
    return out
