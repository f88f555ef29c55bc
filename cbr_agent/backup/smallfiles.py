"""Small files, in batches: read, hashed, compressed and sealed by helper processes when there are many,
by the reader threads until the helpers start when they hold a megabyte or more (the few batches of a
re-run: beside the walk), and on the walker's own thread otherwise and whenever every helper is busy, so
no core idles.

Tiny files are mostly fixed per-file cost (a handful of system calls, hashing, a node). Another thread
only adds GIL hand-offs (measured on 80,000 files of 0-4 KiB: 15 % more CPU and wall time than the
walker reading them itself), so the parallelism comes from processes (:mod:`cbr_agent.backup.helperprocs`):
once a backup has seen :data:`HELPERS_AFTER` batches, each further batch goes to a helper with room for
it, or is done right here. Either way a batch is :func:`~cbr_agent.backup.smallbatch.prepare_batch`
(each file read with one pread, one zstd call for the batch), then one writer call and one lock round
trip for its slots.

Blobs are sealed before the dedup check, which costs nothing while they are new (a first backup) and
wastes the compression while they are not: when the last batch was mostly blobs the repository already
had, the next one comes back unsealed and only the new blobs are compressed (:meth:`BlobWriter.add_many`).
Either way the blobs are hashed and sealed by the repository's codec (``writer.codec``), the same code the
writer seals with; this module only batches files and turns outcomes into nodes.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Sequence

from cbr_agent.backup.filesaver import FileSaver
from cbr_agent.backup.helperprocs import HelperPool, init_message
from cbr_agent.backup.readers import FileItem, Job, read_file
from cbr_agent.backup.runstate import BackupStats, RunState
from cbr_agent.backup.smallbatch import Outcome, prepare_batch
from cbr_agent.backup.treesaver import Resolved, TreeAssembler
from cbr_agent.repository.codec import PlainBlob, SealedBlob
from cbr_agent.repository.writer import BlobSink

log = logging.getLogger(__name__)

#: files up to this size (and the chunker's minimum: such files are one blob) count as small
SMALL_FILE_MAX = 256 * 1024
#: a batch is stored when it holds this many files or bytes
BATCH_FILES = 64
BATCH_BYTES = 4 * 1024 * 1024
#: helpers start after this many batches: a backup of a few hundred files never pays for them
HELPERS_AFTER = 16
#: a batch of at least this many bytes may go to the reader threads (see SmallFiles._dispatch)
OFFLOAD_BYTES = 1024 * 1024
#: seal in the batch (before the dedup check) unless the last batch had more duplicates than this
DUPLICATES_MAX = 0.5


class SmallFiles:
    def __init__(self, writer: BlobSink, saver: FileSaver, state: RunState, trees: TreeAssembler,
                 *, tick: Callable[[], None], helpers: int = 0, helpers_after: int = HELPERS_AFTER,
                 offload: Callable[[Job], None] | None = None, offload_bytes: int = OFFLOAD_BYTES) -> None:
        self.writer = writer
        self.saver = saver
        self.state = state
        self.trees = trees
        self.tick = tick            # once per batch: stop if asked, checkpoint when due
        self.limit = min(SMALL_FILE_MAX, saver.min_size)
        self._codec = writer.codec
        self._can_seal = writer.stores_sealed  # a dry run stores nothing: never seal
        self._seal = self._can_seal
        self._helpers = helpers
        self._helpers_after = helpers_after
        #: while no helper runs, batches go to the reader threads (see _dispatch)
        self._offload = offload
        self._offload_bytes = offload_bytes
        self._pool: HelperPool | None = None
        self._pending: dict[int, list[FileItem]] = {}
        self._tokens = itertools.count()
        self._batches = 0
        self.batches_by_helpers = 0
        self.batches_redone = 0     # a helper died holding them
        self.batches_offloaded = 0  # stored by the reader threads
        self._batch: list[FileItem] = []
        self._bytes = 0

    def add(self, item: FileItem, size: int) -> None:
        self._batch.append(item)
        self._bytes += size
        if len(self._batch) >= BATCH_FILES or self._bytes >= BATCH_BYTES:
            self._dispatch()

    def flush(self) -> None:
        """Store everything added so far, waiting for the helpers' answers."""
        self._dispatch()
        while self._pending:
            self.tick()
            self._take_answers(wait=0.2)

    def close(self) -> None:
        log.debug("small files: %d batches, %d by helper processes, %d redone after a helper died, %d by "
                  "the reader threads", self._batches, self.batches_by_helpers, self.batches_redone,
                  self.batches_offloaded)
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _start_helpers(self) -> None:
        pool = HelperPool(self._helpers, init_message(self._codec, self.limit))
        try:
            pool.start()
        except OSError as exc:  # e.g. no processes left: slower, never a failed backup
            log.warning("cannot start backup helper processes (%s); reading small files in one process",
                        exc)
            pool.close()
            self._helpers = 0
            return
        self._pool = pool

    # -- dispatching
    def _dispatch(self) -> None:
        if not self._batch:
            return
        batch, nbytes, self._batch, self._bytes = self._batch, self._bytes, [], 0
        self.tick()
        self._take_answers()
        self._batches += 1
        if self._pool is None and self._helpers > 0 and self._batches > self._helpers_after:
            self._start_helpers()
        if self._pool is not None:
            token = next(self._tokens)
            self._pending[token] = batch
            if self._pool.try_submit(token, (token, _items(batch), self._seal)):
                return
            del self._pending[token]
        elif self._offload is not None and nbytes >= self._offload_bytes:
            # the few batches of a re-run (or the first ones of a backup) are stored beside the walk, by
            # the reader threads, mostly idle then: the walk of a 1 %-changed tree no longer stops for
            # them. Only batches whose cost is mostly compression (GIL released): one of tiny files is
            # mostly Python, and handing it over only lets the walk run ahead, holding more directories
            # open (+13.5 MB peak on the 200,000-file 1 %-changed re-run)
            self._offload(functools.partial(self._store_here, batch))
            self.batches_offloaded += 1
            return
        self._store_here(batch)

    def _take_answers(self, wait: float = 0.0) -> None:
        """Store the batches the helpers have answered; with ``wait``, wait that long for the first."""
        if self._pool is None:
            return
        for token, outcomes in self._pool.answers(wait):
            batch = self._pending.pop(token)
            if outcomes is None:  # a helper died: do its batch here
                self.batches_redone += 1
                self._store_here(batch)
            else:
                self._store(batch, outcomes)
                self.batches_by_helpers += 1

    # -- storing
    def _store_here(self, batch: list[FileItem]) -> None:
        """Prepare a batch in this process (no helper, none with room, or its helper died)."""
        self._store(batch, prepare_batch(_items(batch), self.limit, self._codec, self.saver.longpaths,
                                          seal=self._seal))

    def _store(self, batch: list[FileItem], outcomes: Sequence[Outcome]) -> None:
        """Turn a batch's outcomes into nodes, store its blobs in one writer call, resolve its slots."""
        delta = BackupStats()
        results: list[Resolved] = []
        sealed: list[SealedBlob] = []
        plain: list[PlainBlob] = []
        warn = self.state.warn
        for item, outcome in zip(batch, outcomes, strict=True):
            task, index, path = item.task, item.slot, item.path
            if outcome is None:  # grew or changed while read: the careful path
                results.append((task, index, read_file(self.saver, self.state, delta, item)))
                continue
            if isinstance(outcome, str):
                warn(f"{path}: not backed up: {outcome}")
                results.append((task, index, None))
                continue
            node = outcome.node
            node["name"] = item.name  # the walker's name for it (a backup root's may differ from the path's)
            blob = outcome.blob
            if isinstance(blob, SealedBlob):
                sealed.append(blob)
            elif blob is not None:
                plain.append(blob)
            if outcome.xattr_error:
                warn(f"{path}: cannot read extended attributes: {outcome.xattr_error}")
            n = node["size"]
            if item.existed:
                delta.files_changed += 1
                delta.bytes_changed += n
            else:
                delta.files_new += 1
                delta.bytes_new += n
            delta.bytes_read += n
            delta.bytes_total += n
            delta.bytes_done += n
            results.append((task, index, node))
        stored = 0
        if sealed:
            stored += self.writer.add_sealed_many(sealed)
        if plain:
            stored += self.writer.add_many(plain)
        if sealed or plain:
            self._seal = self._can_seal and stored >= (1 - DUPLICATES_MAX) * (len(sealed) + len(plain))
        self.state.add(delta)
        self.trees.resolve_many(results)


def _items(batch: list[FileItem]) -> list[tuple[str, int]]:
    """What prepare_batch needs of each file: its path and the inode lstat saw."""
    return [(item.path, item.lstat.st_ino) for item in batch]
