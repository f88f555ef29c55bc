"""BlobWriter: the one place a blob goes through hash -> dedup gate -> compress -> seal -> pack, with
background writes (as restic's ``SaveBlob`` and kopia's ``WriteContent``).

Callers (several pipeline threads) call :meth:`BlobWriter.save` with plaintext; the dedup gate comes
right after hashing, before any expensive step. :meth:`BlobWriter.claim` and
:meth:`BlobWriter.store_claimed` are the same two halves for a caller that needs the id at once and
leaves compression to another thread; :meth:`BlobWriter.add_sealed_many` takes blobs already sealed by
the same :class:`~cbr_agent.repository.codec.BlobCodec` in a helper process. Compression and encryption
run in the calling thread (zstd and AES-GCM release the GIL), full packs go through a bounded queue to
upload threads, so memory stays bounded: ``save`` blocks when the queue is full. A pack's blobs enter the
in-memory index once the pack is durable; index files follow (periodically and at :meth:`flush`), never
before their packs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from cbr_agent.errors import RepositoryError
from cbr_agent.repository.backend import SpoolingBackend
from cbr_agent.repository.codec import BlobCodec, Buffer, PlainBlob, SealedBlob
from cbr_agent.repository.objects import FLAG_TREE
from cbr_agent.repository.pack import MAX_PACK_SIZE, PackBuilder, PackEntry

if TYPE_CHECKING:
    from cbr_agent.repository.repo import Repository

log = logging.getLogger(__name__)

DEFAULT_PACK_SIZE = 8 * 1024 * 1024  # several MiB: few objects, bounded memory (about 5 packs in flight)
DEFAULT_UPLOAD_THREADS = 2
#: write an intermediate index this often, so a killed backup's uploaded blobs are reused next time
INDEX_INTERVAL = 60.0
INDEX_MAX_ENTRIES = 50_000


@dataclass
class WriterStats:
    blobs_new: int = 0
    blobs_duplicate: int = 0
    bytes_new: int = 0  # plaintext bytes of new blobs
    bytes_stored: int = 0  # after compression and encryption
    packs_written: int = 0
    index_files_written: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


_STOP = object()


class ClaimedBlob(NamedTuple):
    """What :meth:`BlobWriter.claim` found: the blob's id, and whether this caller must store it."""

    blob_id: bytes
    new: bool


@runtime_checkable
class ParallelUploads(Protocol):
    """A backend that takes several uploads at once (S3: its connection pool)."""

    upload_parallelism: int


class BlobSink(Protocol):
    """What the backup hands its data to: a :class:`BlobWriter`, or a dry run's counting stand-in."""

    codec: BlobCodec
    #: whether blobs sealed ahead of the dedup check (by the small-file helpers) are worth sealing
    stores_sealed: bool

    def save(self, data: Buffer, *, kind: str = "data") -> bytes: ...
    def claim(self, data: Buffer) -> ClaimedBlob: ...
    def store_claimed(self, blob_id: bytes, data: Buffer, *, kind: str = "data") -> None: ...
    def add_many(self, blobs: Sequence[PlainBlob], *, kind: str = "data") -> int: ...
    def add_sealed_many(self, blobs: Sequence[SealedBlob]) -> int: ...
    def flush(self) -> None: ...


class BlobWriter:
    """One per backup; thread-safe; a context manager that flushes on success."""

    def __init__(
        self,
        repo: Repository,
        *,
        pack_size: int = DEFAULT_PACK_SIZE,
        upload_threads: int | None = None,
        queued_packs: int = 1,
        dedup_against_index: bool = True,
        write_index: bool = True,
        index_interval: float = INDEX_INTERVAL,
        index_max_entries: int = INDEX_MAX_ENTRIES,
        compression_level: int | None = None,
    ) -> None:
        if not 1024 <= pack_size <= MAX_PACK_SIZE // 2:
            raise ValueError("pack_size out of range")
        self._repo = repo
        self._pack_size = pack_size
        self._lock = threading.Lock()
        self._in_flight: set[bytes] = set()
        self._open: dict[int, PackBuilder] = {}
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, queued_packs))
        self._threads: list[threading.Thread] = []
        if upload_threads is None:  # as many as the backend can take at once (s3_connections)
            backend = repo.backend
            upload_threads = (backend.upload_parallelism if isinstance(backend, ParallelUploads)
                              else DEFAULT_UPLOAD_THREADS)
        self._nthreads = max(1, upload_threads)
        self._unindexed: dict[str, list[PackEntry]] = {}
        self._unindexed_count = 0
        self._last_index = time.monotonic()
        self._error: BaseException | None = None
        self._closed = False
        # another level than the repository's (the agent's ``compression``): blobs say whether they are
        # compressed, and zstd frames read back whatever their level
        self.codec: BlobCodec = repo.codec if compression_level is None else \
            BlobCodec.for_key(repo.key, compression_level)
        self._index_interval = index_interval
        self._index_max_entries = index_max_entries
        self._dedup_against_index = dedup_against_index
        self._write_index_files = write_index
        self.stats = WriterStats()
        self.stores_sealed = True
        # packs go to the backend as they fill where it can take them piecewise (a local directory),
        # so memory does not hold every pack in flight whole
        backend = repo.backend
        self._open_spool = backend.open_spool if isinstance(backend, SpoolingBackend) else None

    # -- context manager
    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self.close()
        else:
            self.abort()

    # -- adding plaintext: hash -> dedup gate -> compress -> seal -> pack
    def save(self, data: Buffer, *, kind: str = "data") -> bytes:
        """Store a blob unless the repository has it or another thread is storing it; its id."""
        blob_id, new = self.claim(data)
        if new:
            self.store_claimed(blob_id, data, kind=kind)
        return blob_id

    def save_many(self, datas: Sequence[Buffer], *, kind: str = "data") -> list[bytes]:
        """:meth:`save` for many (small) blobs: one dedup check under one lock, one zstd call for the new
        ones; their ids, in order."""
        blob_id = self.codec.blob_id
        blobs = [PlainBlob(blob_id(data), data) for data in datas]
        self.add_many(blobs, kind=kind)
        return [blob.blob_id for blob in blobs]

    def claim(self, data: Buffer) -> ClaimedBlob:
        """Hash and pass the dedup gate: ``new`` means this caller must :meth:`store_claimed` it (until
        then, other threads saving the same data see it as a duplicate)."""
        blob_id = self.codec.blob_id(data)
        self._raise_error()
        return ClaimedBlob(blob_id, bool(self._claim_many([blob_id])))

    def store_claimed(self, blob_id: bytes, data: Buffer, *, kind: str = "data") -> None:
        """Compress, seal and pack a blob this caller claimed."""
        try:
            sealed = self.codec.seal(blob_id, data, kind=kind)
        except BaseException:
            with self._lock:
                self._in_flight.discard(blob_id)
            raise
        self._append_many([sealed])

    # -- adding hashed or sealed blobs
    def add(self, blob_id: bytes, data: Buffer, *, kind: str = "data") -> bool:
        """Store a blob whose id the caller computed with this repository's key; True if stored."""
        if len(blob_id) != 32:
            raise ValueError("blob id must be 32 bytes")
        self._raise_error()
        if not self._claim_many([blob_id]):
            return False
        self.store_claimed(blob_id, data, kind=kind)
        return True

    def add_many(self, blobs: Sequence[PlainBlob], *, kind: str = "data") -> int:
        """:meth:`add` for many (small) blobs at once: one dedup check, one zstd call (GIL released for
        the whole batch) and one pack append, instead of a lock round trip and a call per blob. Returns
        how many were stored."""
        for blob_id, _data in blobs:
            if len(blob_id) != 32:
                raise ValueError("blob id must be 32 bytes")
        self._raise_error()
        claimed = [blobs[i] for i in self._claim_many([blob_id for blob_id, _data in blobs])]
        if not claimed:
            return 0
        try:
            sealed = self.codec.seal_many(claimed, kind=kind)
        except BaseException:
            with self._lock:
                self._in_flight.difference_update(blob_id for blob_id, _data in claimed)
            raise
        self._append_many(sealed)
        return len(sealed)

    def _claim_many(self, blob_ids: Sequence[bytes]) -> list[int]:
        """:meth:`_claim` for many ids under one lock: the positions of those this call must store."""
        index = self._repo.index
        dedup = self._dedup_against_index
        in_flight = self._in_flight
        claimed = []
        with self._lock:
            if self._closed:
                raise RepositoryError("blob writer is closed")
            for i, blob_id in enumerate(blob_ids):
                if (dedup and blob_id in index) or blob_id in in_flight:
                    self.stats.blobs_duplicate += 1
                    continue
                in_flight.add(blob_id)
                claimed.append(i)
        return claimed

    def _append_many(self, sealed: Sequence[SealedBlob]) -> None:
        full = []
        with self._lock:
            for blob_id, flags, parts, raw_length in sealed:
                kind = flags & FLAG_TREE
                builder = self._open.get(kind)
                if builder is None:
                    builder = self._open[kind] = PackBuilder(self._open_spool)
                before = builder.size
                try:
                    builder.add(flags, blob_id, parts, raw_length)
                except BaseException as exc:
                    # its spool failed (a full disk) and is closed: the pack is gone, and every later
                    # blob meets this error, not the closed spool (that said "Bad file descriptor")
                    del self._open[kind]
                    builder.discard()
                    if self._error is None:
                        self._error = exc
                    raise
                self.stats.blobs_new += 1
                self.stats.bytes_new += raw_length
                self.stats.bytes_stored += builder.size - before
                if builder.size >= self._pack_size:
                    full.append(self._open.pop(kind))
        for builder in full:
            self._submit(builder)

    def add_sealed(self, blob_id: bytes, flags: int, sealed: bytes | tuple[bytes, bytes],
                   raw_length: int) -> bool:
        """Store an already sealed blob as it is (prune copies blobs into new packs this way)."""
        return self.add_sealed_many([SealedBlob(blob_id, flags, sealed, raw_length)]) == 1

    def add_sealed_many(self, blobs: Sequence[SealedBlob]) -> int:
        """Store already sealed blobs ``(id, flags, sealed, plaintext length)`` that the repository does
        not hold yet (sealed by a helper process, or copied by prune); returns how many were stored."""
        self._raise_error()
        fresh = [blobs[i] for i in self._claim_many([blob.blob_id for blob in blobs])]
        self._append_many(fresh)
        return len(fresh)

    def written_packs(self) -> dict[str, list[PackEntry]]:
        """Packs written and not yet covered by an index file (all of them when write_index=False)."""
        with self._lock:
            return {p: list(e) for p, e in self._unindexed.items()}

    def _submit(self, builder: PackBuilder) -> None:
        if not self._threads:
            with self._lock:
                if not self._threads:
                    for i in range(self._nthreads):
                        t = threading.Thread(target=self._upload_loop, name=f"pack-writer-{i}", daemon=True)
                        t.start()
                        self._threads.append(t)
        while True:  # blocks while enough packs are in flight: the byte budget
            try:
                self._queue.put(builder, timeout=0.5)
                return
            except queue.Full:
                if self._closed and not self._threads:  # aborted meanwhile: nobody will take it
                    builder.discard()
                    raise RepositoryError("blob writer is closed") from None

    # -- background
    def _upload_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                assert isinstance(item, PackBuilder)
                if self._error is None:
                    self._write_pack(item)
                else:
                    item.discard()
            except BaseException as exc:  # remembered and raised in the caller's thread
                log.debug("pack write failed", exc_info=True)
                with self._lock:
                    if self._error is None:
                        self._error = exc
            finally:
                self._queue.task_done()

    def _write_pack(self, builder: PackBuilder) -> None:
        try:
            pack_id, buffers = builder.finish(self._repo.key.sealer)
            if builder.spool is not None:
                builder.spool.commit("data/" + pack_id)
            else:
                self._repo.backend.put("data/" + pack_id, buffers)
        except BaseException:
            builder.discard()
            raise
        self._repo.index.add_pack(pack_id, builder.entries)
        due = False
        with self._lock:
            for e in builder.entries:
                self._in_flight.discard(e.blob_id)
            self._unindexed.setdefault(pack_id, []).extend(builder.entries)
            self._unindexed_count += len(builder.entries)
            self.stats.packs_written += 1
            due = self._write_index_files and (
                self._unindexed_count >= self._index_max_entries
                or time.monotonic() - self._last_index >= self._index_interval
            )
        if due:
            self._write_index()

    def _write_index(self) -> None:
        with self._lock:
            packs, self._unindexed = self._unindexed, {}
            self._unindexed_count = 0
            self._last_index = time.monotonic()
        if not packs:
            return
        try:
            self._repo.write_index_file(packs)
        except BaseException:
            with self._lock:  # put them back so a later flush can retry
                for pack_id, entries in packs.items():
                    self._unindexed.setdefault(pack_id, []).extend(entries)
                    self._unindexed_count += len(entries)
            raise
        with self._lock:
            self.stats.index_files_written += 1

    def _raise_error(self) -> None:
        if self._error is not None:
            err = self._error
            if isinstance(err, RepositoryError):
                raise err
            raise RepositoryError(f"writing to the repository failed: {err}") from err

    # -- finishing
    def flush(self) -> None:
        """Write every pending blob: packs written and fsynced, then the index pointing into them."""
        with self._lock:
            builders = list(self._open.values())
            self._open.clear()
        for builder in builders:
            if builder.entries:
                self._submit(builder)
        self._queue.join()
        self._raise_error()
        if self._write_index_files:
            self._write_index()

    def close_without_index(self) -> None:
        """Stop the upload threads without writing an index (prune writes its own)."""
        self._stop_threads()

    def close(self) -> None:
        try:
            self.flush()
        except BaseException:
            self.abort()  # index the packs that did reach the storage, so the next run reuses them
            raise
        finally:
            self._stop_threads()

    def abort(self) -> None:
        """After a failure: keep what reached the repository (index for written packs), drop the rest."""
        with self._lock:
            self._closed = True
            dropped = list(self._open.values())
            self._open.clear()
        for builder in dropped:
            builder.discard()
        try:
            self._queue.join()
            self._write_index()
        except BaseException as exc:  # the caller's exception matters more; forget what is unindexed
            log.warning("could not index the packs of an interrupted backup: %s", exc)
            with self._lock:
                lost = set(self._unindexed)
                self._unindexed.clear()
            self._repo.index.remove_packs(lost)
        finally:
            self._stop_threads()

    def _stop_threads(self) -> None:
        with self._lock:
            self._closed = True
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        for t in threads:
            t.join()


class DryRunWriter:
    """A :class:`BlobSink` that counts what a backup would add and stores nothing (``backup --dry-run``):
    it hashes and deduplicates as :class:`BlobWriter` does, and never compresses or seals."""

    stores_sealed = False  # sealing ahead of the dedup check would be wasted: nothing is stored

    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self.codec: BlobCodec = repo.codec
        self._seen: set[bytes] = set()
        self._lock = threading.Lock()
        self.blobs_new = self.bytes_new = 0

    def _count(self, blob_id: bytes, length: int) -> bool:
        with self._lock:
            if blob_id in self._seen or self._repo.has_blob(blob_id):
                return False
            self._seen.add(blob_id)
            self.blobs_new += 1
            self.bytes_new += length
            return True

    def save(self, data: Buffer, *, kind: str = "data") -> bytes:
        blob_id = self.codec.blob_id(data)
        self._count(blob_id, len(data))
        return blob_id

    def claim(self, data: Buffer) -> ClaimedBlob:
        blob_id = self.codec.blob_id(data)
        self._count(blob_id, len(data))
        return ClaimedBlob(blob_id, False)  # counted: nothing left to store

    def store_claimed(self, blob_id: bytes, data: Buffer, *, kind: str = "data") -> None:
        return None

    def add(self, blob_id: bytes, data: Buffer, *, kind: str = "data") -> bool:
        return self._count(blob_id, len(data))

    def add_many(self, blobs: Sequence[PlainBlob], *, kind: str = "data") -> int:
        return sum(self._count(blob_id, len(data)) for blob_id, data in blobs)

    def add_sealed_many(self, blobs: Sequence[SealedBlob]) -> int:
        return sum(self._count(blob.blob_id, blob.raw_length) for blob in blobs)

    def flush(self) -> None:
        return None
