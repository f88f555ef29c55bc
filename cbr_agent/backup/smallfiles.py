"""Small files, read on the walker's own thread in batches.

Tiny files are mostly fixed per-file cost (a handful of system calls, hashing, a node), so another
thread only adds GIL hand-offs: measured on 80,000 files of 0-4 KiB, the walker reading them itself
needs about 15 % less CPU and wall time than handing them to a reader thread. Each file is read with one
pread; a batch of files is stored with one :meth:`BlobWriter.add_many` (one dedup check, one zstd call
that releases the GIL for the whole batch, one pack append) and resolves its slots with one lock round
trip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cbr_agent.backup.dirtree import Resolved, TreeAssembler
from cbr_agent.backup.filesaver import FileProblem, FileSaver, read_small
from cbr_agent.backup.nodes import node_from_stat
from cbr_agent.backup.readers import FileItem, read_file
from cbr_agent.backup.runstate import BackupStats, RunState

#: files up to this size (and the chunker's minimum: such files are one blob) count as small
SMALL_FILE_MAX = 256 * 1024
#: a batch is stored when it holds this many files or bytes
BATCH_FILES = 64
BATCH_BYTES = 4 * 1024 * 1024


class SmallFiles:
    def __init__(self, repo: Any, writer: Any, saver: FileSaver, state: RunState, trees: TreeAssembler,
                 *, tick: Callable[[], None]) -> None:
        self.writer = writer
        self.saver = saver
        self.state = state
        self.trees = trees
        self.tick = tick            # once per batch: stop if asked, checkpoint when due
        self.limit = min(SMALL_FILE_MAX, saver.min_size)
        self._blob_id = repo.blob_id
        self._batch: list[FileItem] = []
        self._bytes = 0

    def add(self, item: FileItem, size: int) -> None:
        self._batch.append(item)
        self._bytes += size
        if len(self._batch) >= BATCH_FILES or self._bytes >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._batch:
            batch, self._batch, self._bytes = self._batch, [], 0
            self.tick()
            self._store(batch)

    def _store(self, batch: list[FileItem]) -> None:
        """Read every file, then store all their blobs in one writer call, then resolve all slots."""
        delta = BackupStats()
        results: list[Resolved] = []
        blobs: list[tuple[bytes, bytes]] = []
        limit, blob_id, warn = self.limit, self._blob_id, self.state.warn
        for item in batch:
            task, index, path, name, st, existed = item
            try:
                got = read_small(path, st, limit)
            except FileProblem as problem:
                warn(f"{path}: not backed up: {problem}")
                results.append((task, index, None))
                continue
            if got is None:  # grew or changed while read: the careful path
                results.append((task, index, read_file(self.saver, self.state, delta, item)))
                continue
            data = got.data
            node = node_from_stat(name, got.stat_before)
            if data:
                bid = blob_id(data)
                blobs.append((bid, data))
                node["content"] = [bid.hex()]
            else:
                node["content"] = []
            if got.xattrs:
                node["xattrs"] = got.xattrs
            elif got.xattr_error:
                warn(f"{path}: cannot read extended attributes: {got.xattr_error}")
            if existed:
                delta.files_changed += 1
            else:
                delta.files_new += 1
            n = len(data)
            delta.bytes_read += n
            delta.bytes_total += n
            delta.bytes_done += n
            results.append((task, index, node))
        if blobs:
            self.writer.add_many(blobs)
        self.state.add(delta)
        self.trees.resolve_many(results)
