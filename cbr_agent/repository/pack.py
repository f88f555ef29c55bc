"""Pack files: many sealed blobs in one object.

Layout: ``blob_0 || blob_1 || ... || sealed header || u32 header length (LE)``. The header lists, for each
blob, ``flags (u8), id (32), offset (u32), stored length (u32), raw length (u32)``; it lets a pack be
checked (and an index rebuilt) without any index file.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import blake3

from cbr_agent.crypto import Sealer
from cbr_agent.repository.objects import AAD_PACK_HEADER, FLAG_COMPRESSED, FLAG_TREE

if TYPE_CHECKING:
    from cbr_agent.repository.backend import Spool

HEADER_MAGIC = b"CBRP\x01"
ENTRY = struct.Struct("<B32sIII")
TAIL = struct.Struct("<I")
MAX_PACK_SIZE = 2**32 - 1


class PackEntry(NamedTuple):
    flags: int
    blob_id: bytes
    offset: int
    length: int
    raw_length: int


#: a spooled pack keeps at most this many bytes of blobs in memory before writing them out
SPOOL_BUFFER = 1024 * 1024


@dataclass
class PackBuilder:
    """Collects sealed blobs of one kind until the pack is big enough to write.

    With ``open_spool`` (a backend that can store an object written piece by piece), the blobs go to
    the spool in writes of about :data:`SPOOL_BUFFER` bytes, so a pack is never held whole in memory;
    a pack that never fills one buffer opens no spool and is stored with one ``put``.
    """

    open_spool: Callable[[], Spool | None] | None = None
    pieces: list[bytes] = field(default_factory=list)
    entries: list[PackEntry] = field(default_factory=list)
    size: int = 0
    spool: Spool | None = None
    _buffered: int = 0
    _hasher: Any = None

    def add(self, flags: int, blob_id: bytes, sealed: bytes | tuple[bytes, ...], raw_length: int) -> None:
        """``sealed``: the sealed blob, whole or as consecutive pieces (nonce, ciphertext)."""
        if isinstance(sealed, tuple):
            n = sum(map(len, sealed))
            self.pieces.extend(sealed)
        else:
            n = len(sealed)
            self.pieces.append(sealed)
        self.entries.append(PackEntry(flags, blob_id, self.size, n, raw_length))
        self.size += n
        self._buffered += n
        if self._buffered >= SPOOL_BUFFER and self.open_spool is not None:
            self._spill()

    def _spill(self) -> None:
        if self.spool is None:
            assert self.open_spool is not None
            self.spool = self.open_spool()
            if self.spool is None:  # the backend wants whole puts
                self.open_spool = None
                return
            self._hasher = blake3.blake3(max_threads=1)
        body = _joined(self.pieces)
        for buf in body:
            self._hasher.update(buf)
        self.spool.write(body)
        self.pieces = []
        self._buffered = 0

    def finish(self, sealer: Sealer) -> tuple[str, list[bytes]]:
        """``(pack id hex, buffers to store)``; the id is the BLAKE3 of the stored bytes. A spooled pack
        has written every buffer to :attr:`spool` (returned empty): commit it under the id."""
        header = sealer.seal(encode_header(self.entries), AAD_PACK_HEADER)
        buffers = [*_joined(self.pieces), header, TAIL.pack(len(header))]
        hasher = self._hasher or blake3.blake3(max_threads=1)
        for buf in buffers:
            hasher.update(buf)
        if self.spool is None:
            return hasher.hexdigest(), buffers
        self.spool.write(buffers)
        self.pieces = []
        return hasher.hexdigest(), []

    def discard(self) -> None:
        """Drop a pack that will not be stored (its spool file too)."""
        self.pieces = []
        if self.spool is not None:
            self.spool.discard()


def _joined(pieces: list[bytes]) -> list[bytes]:
    if len(pieces) > 64 and sum(map(len, pieces)) < len(pieces) * 16384:
        return [b"".join(pieces)]  # many tiny blobs: one copy beats a Python call per piece
    return pieces


def encode_header(entries: list[PackEntry]) -> bytes:
    parts = [HEADER_MAGIC]
    parts.extend(ENTRY.pack(e.flags, e.blob_id, e.offset, e.length, e.raw_length) for e in entries)
    return b"".join(parts)


def decode_header(plain: bytes) -> list[PackEntry]:
    """The entries of a decrypted header; ValueError when malformed."""
    if not plain.startswith(HEADER_MAGIC) or (len(plain) - len(HEADER_MAGIC)) % ENTRY.size:
        raise ValueError("pack header is malformed")
    return [PackEntry._make(fields) for fields in ENTRY.iter_unpack(memoryview(plain)[len(HEADER_MAGIC) :])]


def header_range(pack_size: int, tail: bytes) -> tuple[int, int]:
    """(offset, length) of the sealed header, from the pack size and its last 4 bytes; ValueError when
    the pack is too short to hold a header (0-3 bytes: the leftover of a crash or a bad copy)."""
    if pack_size < TAIL.size or len(tail) != TAIL.size:
        raise ValueError(f"pack is truncated ({pack_size} bytes, too short for a header)")
    (length,) = TAIL.unpack(tail)
    if length + TAIL.size > pack_size or length < 28:
        raise ValueError("pack header length is out of range")
    return pack_size - TAIL.size - length, length


def entries_fit(entries: list[PackEntry], header_offset: int) -> str | None:
    """Why the entries of a header cannot describe the pack's body (overlapping or beyond the header,
    a bad kind flag), or None. A header that authenticates is normally right; this guards index repair
    against a header written by a buggy or foreign writer."""
    end = 0
    for e in sorted(entries, key=lambda e: e.offset):
        if e.offset < end or e.offset + e.length > header_offset or e.length < 28:
            return f"blob {e.blob_id.hex()} at offset {e.offset} does not fit the pack body"
        if e.flags & ~(FLAG_TREE | FLAG_COMPRESSED):
            return f"blob {e.blob_id.hex()} has unknown flags {e.flags:#x}"
        end = e.offset + e.length
    return None
