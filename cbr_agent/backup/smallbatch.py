"""Reading, hashing, compressing and sealing a batch of small files: the per-file work of a first backup
of many small files, as one pure function that runs the same in the backup process and in its helper
processes (:mod:`cbr_agent.backup.helperprocs`).

A batch is a list of ``(path, inode seen by lstat)``; the result has one outcome per file, in order:

- :class:`Ready`: the file's tree node (from the stat of the open file) and its one blob, either sealed
  (a :class:`~cbr_agent.repository.codec.SealedBlob`, ready for the pack) or, when asked for
  ``seal=False``, as a :class:`~cbr_agent.repository.codec.PlainBlob` (id and data) for the writer to
  deduplicate before compressing; ``None`` for an empty file;
- a ``str``: a per-file problem (vanished, permission denied, ...), the backup goes on without the file;
- ``None``: the file grew or changed while it was read; the caller takes the careful path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

from cbr_agent.backup.filesaver import (
    FileProblem,
    describe,
    fstat_or_problem,
    fstat_regular,
    open_or_problem,
    unchanged_while_read,
)
from cbr_agent.fs.longpath import LongPaths
from cbr_agent.fs.nodes import Node, node_from_stat, read_xattrs
from cbr_agent.repository.codec import BlobCodec, PlainBlob, SealedBlob


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


def read_small(path: str, inode: int, limit: int, longpaths: LongPaths) -> SmallRead | None:
    """A regular file of at most ``limit`` bytes, read with one pread (the common case of small files,
    kept to the fewest calls). None when it is not that simple (it grew, or changed while read): the
    caller then takes :meth:`FileSaver.save`, which handles those cases. FileProblem as there.

    ``inode`` is what the directory listing saw; another one is a newer version saved by rename since,
    read as it is (its own stat goes into the node)."""
    fd = open_or_problem(path, longpaths)
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


def prepare_batch(items: Sequence[tuple[str, int]], limit: int, codec: BlobCodec, longpaths: LongPaths, *,
                  seal: bool = True) -> list[Outcome]:
    """Read every file of the batch and hash its content; with ``seal``, also compress and seal it (the
    repository's codec: the same ids and sealed form whether this runs in a helper or in the backup)."""
    outcomes: list[Outcome] = []
    plain: list[PlainBlob] = []
    holders: list[int] = []
    blob_id = codec.blob_id
    for path, inode in items:
        try:
            got = read_small(path, inode, limit, longpaths)
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
            blob = PlainBlob(blob_id(data), data)
            node["content"] = [blob.blob_id.hex()]
            plain.append(blob)
            holders.append(len(outcomes))
        else:
            node["content"] = []
        if got.xattrs:
            node["xattrs"] = got.xattrs
        outcomes.append(Ready(node, blob, got.xattr_error))
    if seal and plain:
        for i, sealed in zip(holders, codec.seal_many(plain), strict=True):
            ready = outcomes[i]
            assert isinstance(ready, Ready)
            outcomes[i] = ready._replace(blob=sealed)
    return outcomes
