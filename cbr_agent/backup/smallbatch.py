"""Reading, hashing, compressing and sealing a batch of small files: the per-file work of a first backup
of many small files, as one pure function that runs the same in the backup process and in its helper
processes (:mod:`cbr_agent.backup.helpers`).

A batch is a list of ``(path, inode seen by lstat)``; the result has one outcome per file, in order:

- :class:`Ready`: the file's tree node (from the stat of the open file) and its one blob, either sealed
  (id, flags, nonce + ciphertext, plaintext length: ready for the pack) or, when asked for ``seal=False``,
  as plaintext (id and data) for the caller to deduplicate before compressing; ``None`` for an empty file;
- a ``str``: a per-file problem (vanished, permission denied, ...), the backup goes on without the file;
- ``None``: the file grew or changed while it was read; the caller takes the careful path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import blake3

from cbr_agent.backup.filesaver import (
    FileProblem,
    describe,
    fstat_or_problem,
    fstat_regular,
    open_or_problem,
    unchanged_while_read,
)
from cbr_agent.backup.nodes import Node, node_from_stat, read_xattrs
from cbr_agent.crypto.aead import Sealer
from cbr_agent.repository.objects import kind_flag
from cbr_agent.repository.writer import SealedBlob, seal_blobs

#: (blob id, plaintext)
PlainBlob = tuple[bytes, bytes]


class SmallRead(NamedTuple):
    data: bytes
    stat_before: os.stat_result
    xattrs: dict[str, str] | None
    xattr_error: str | None


class Ready(NamedTuple):
    node: Node                            # the file's tree node, with its content and xattrs
    blob: SealedBlob | PlainBlob | None   # None: an empty file
    xattr_error: str | None


Outcome = Ready | str | None


def read_small(path: str, inode: int, limit: int) -> SmallRead | None:
    """A regular file of at most ``limit`` bytes, read with one pread (the common case of small files,
    kept to the fewest calls). None when it is not that simple (it grew, or changed while read): the
    caller then takes :meth:`FileSaver.save`, which handles those cases. FileProblem as there.

    ``inode`` is what the directory listing saw; another one is a newer version saved by rename since,
    read as it is (its own stat goes into the node)."""
    fd = open_or_problem(path)
    try:
        before = fstat_regular(fd)
        size = before.st_size
        if size > limit:
            return None
        try:
            data = os.pread(fd, size + 1, 0)
        except OSError as exc:
            raise FileProblem(f"read error: {describe(exc)}") from None
        after = fstat_or_problem(fd)
        if len(data) != size or not unchanged_while_read(before, after):
            return None
        try:
            return SmallRead(data, before, read_xattrs(fd), None)
        except OSError as exc:
            return SmallRead(data, before, None, describe(exc))
    finally:
        os.close(fd)


class BlobSealer:
    """Blob ids, compression and sealing of data blobs with a repository's keys, without the repository:
    what a helper process needs, and no more (it never sees the master key or the password)."""

    def __init__(self, id_key: bytes, encryption_key: bytes, level: int) -> None:
        self.id_key = id_key
        self.encryption_key = encryption_key
        self.level = level
        self._sealer = Sealer(encryption_key)

    @classmethod
    def for_repository(cls, repo: Any) -> BlobSealer:
        return cls(repo.key.id_key, repo.key.encryption_key, repo.compression_level)

    def to_message(self) -> dict[str, Any]:
        """What a helper process is started with (sent over its stdin pipe, never argv or environment)."""
        return {"id_key": self.id_key, "encryption_key": self.encryption_key, "level": self.level}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> BlobSealer:
        return cls(message["id_key"], message["encryption_key"], message["level"])

    def blob_id(self, data: bytes) -> bytes:
        return blake3.blake3(data, key=self.id_key, max_threads=1).digest()

    def seal_many(self, blobs: Sequence[PlainBlob]) -> list[SealedBlob]:
        """Compress (one zstd call for the batch) and seal data blobs."""
        return seal_blobs(self._sealer, self.level, blobs, kind_flag("data"))


def prepare_batch(items: Sequence[tuple[str, int]], limit: int, sealer: BlobSealer, *,
                  seal: bool = True) -> list[Outcome]:
    """Read every file of the batch and hash its content; with ``seal``, also compress and seal it."""
    outcomes: list[Any] = []
    plain: list[PlainBlob] = []
    holders: list[int] = []
    blob_id = sealer.blob_id
    for path, inode in items:
        try:
            got = read_small(path, inode, limit)
        except FileProblem as problem:
            outcomes.append(str(problem))
            continue
        if got is None:
            outcomes.append(None)
            continue
        data = got.data
        node = node_from_stat(path.rpartition("/")[2], got.stat_before)
        blob: PlainBlob | None = None
        if data:
            blob = (blob_id(data), data)
            node["content"] = [blob[0].hex()]
            plain.append(blob)
            holders.append(len(outcomes))
        else:
            node["content"] = []
        if got.xattrs:
            node["xattrs"] = got.xattrs
        outcomes.append(Ready(node, blob, got.xattr_error))
    if seal and plain:
        for i, sealed in zip(holders, sealer.seal_many(plain), strict=True):
            outcomes[i] = outcomes[i]._replace(blob=sealed)
    return outcomes
