"""Sealing of metadata objects (config, index, snapshots, locks, pack headers) and blob flags.

Every metadata object is ``AES-256-GCM(master key, plaintext, aad=<role>)``; blobs use their own id as
associated data. Stored objects are named by the unkeyed BLAKE3 of their stored bytes, so a whole-file
check can name a damaged object without the key.
"""

from __future__ import annotations

import blake3

from cbr_agent.crypto import AuthenticationFailed, Sealer
from cbr_agent.errors import IntegrityError

AAD_CONFIG = b"cbr-agent config"
AAD_INDEX = b"cbr-agent index"
AAD_SNAPSHOT = b"cbr-agent snapshot"
AAD_LOCK = b"cbr-agent lock"
AAD_PACK_HEADER = b"cbr-agent pack header"

#: blob flags (one byte in pack headers and index entries)
FLAG_TREE = 1
FLAG_COMPRESSED = 2

KINDS = ("data", "tree")


def kind_flag(kind: str) -> int:
    if kind == "data":
        return 0
    if kind == "tree":
        return FLAG_TREE
    raise ValueError(f"blob kind must be 'data' or 'tree', not {kind!r}")


def kind_of(flags: int) -> str:
    return "tree" if flags & FLAG_TREE else "data"


def content_name(stored: bytes | memoryview) -> str:
    return blake3.blake3(stored, max_threads=1).hexdigest()


def open_object(sealer: Sealer, stored: bytes, aad: bytes, what: str) -> bytes:
    """Decrypt a metadata object or raise IntegrityError naming it."""
    try:
        return sealer.open(stored, aad)
    except AuthenticationFailed:
        raise IntegrityError(f"{what} is damaged (authentication failed)") from None
