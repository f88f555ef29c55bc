"""Reading one regular file: open without following links, chunk, hand the chunks to the writer.

A file is opened by name and everything recorded of it comes from ``fstat`` of the open descriptor, so
what is read is always the file that was opened: when the name now points to another inode (an editor,
a database or a config manager saved it by write-then-rename after the directory was listed), that
newer version is read. A version renamed over while it is read was complete when it was replaced, so
that does not count as a change while reading.

File-side failures (the file vanished, cannot be read, is no longer a regular file) raise
:class:`FileProblem`, a per-file warning. Everything that comes from the repository (the writer's
``save``, ``claim``) is left to propagate: those errors stop the backup.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from cbr_agent.backup.sealthreads import BlobPool
from cbr_agent.chunking import Chunker, ChunkerParams
from cbr_agent.fs.longpath import LongPaths
from cbr_agent.fs.nodes import read_xattrs
from cbr_agent.repository.index import BlobLocation
from cbr_agent.repository.writer import BlobSink

#: holes are recorded as chunks of zeros of at most this size (restored as holes again)
ZERO_CHUNK = 1024 * 1024
#: chunks of files larger than this go to the blob pool (parallel compression within one file)
POOL_THRESHOLD = 4 * 1024 * 1024
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_NOATIME = getattr(os, "O_NOATIME", 0)
_SEEK_DATA = getattr(os, "SEEK_DATA", None)
_SEEK_HOLE = getattr(os, "SEEK_HOLE", None)


class FileProblem(Exception):
    """A per-file problem (tier 1): the backup goes on without this file."""


class TypeChanged(FileProblem):
    """The name no longer is a regular file (a symlink, FIFO, directory ... now): worth a look again."""

    def __init__(self) -> None:
        super().__init__("changed type during backup")


@dataclass
class SavedFile:
    content: list[str]
    size: int
    bytes_read: int
    stat_before: os.stat_result
    changed: bool
    xattrs: dict[str, str] | None = None
    xattr_error: str | None = None


def open_file(path: str) -> int:
    """Open for reading without touching atime where allowed; never follows a symlink, never blocks."""
    if _NOATIME:
        try:
            return os.open(path, _OPEN_FLAGS | _NOATIME)
        except PermissionError:
            pass  # O_NOATIME needs ownership or CAP_FOWNER: fall back
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, _OPEN_FLAGS)


def describe(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "vanished during backup"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


def open_or_problem(path: str, longpaths: LongPaths) -> int:
    try:
        return open_file(longpaths.short(path))
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            raise TypeChanged() from None
        raise FileProblem(describe(exc)) from None


def fstat_or_problem(fd: int) -> os.stat_result:
    try:
        return os.fstat(fd)
    except OSError as exc:
        raise FileProblem(describe(exc)) from None


def fstat_regular(fd: int) -> os.stat_result:
    """The open file's stat; TypeChanged unless it is a regular file (whatever inode it is)."""
    st = fstat_or_problem(fd)
    if not stat.S_ISREG(st.st_mode):
        raise TypeChanged()
    return st


def unchanged_while_read(before: os.stat_result, after: os.stat_result) -> bool:
    """Size, mtime and ctime as before. A ctime that moved only because the file was unlinked (renamed
    over by a newer version: no links left) still means a whole version: writers that save by rename
    never write to the old inode again."""
    if after.st_size != before.st_size or after.st_mtime_ns != before.st_mtime_ns:
        return False
    return after.st_ctime_ns == before.st_ctime_ns or after.st_nlink == 0


class _RangeReader:
    """``readinto`` over ``[pos, end)`` of a descriptor with pread (no shared file offset, no GIL)."""

    def __init__(self, fd: int, pos: int, end: int | None) -> None:
        self.fd, self.pos, self.end = fd, pos, end
        self.total = 0

    def readinto(self, buf: memoryview) -> int:
        want = len(buf)
        if self.end is not None:
            want = min(want, self.end - self.pos)
            if want <= 0:
                return 0
        view = buf if want == len(buf) else memoryview(buf)[:want]
        n = os.preadv(self.fd, [view], self.pos)
        self.pos += n
        self.total += n
        return n


def _data_segments(fd: int, size: int) -> list[tuple[int, int, bool]]:
    """``(start, end, is_data)`` covering the file, from SEEK_DATA/SEEK_HOLE."""
    segments: list[tuple[int, int, bool]] = []
    pos = 0
    while pos < size:
        try:
            data = os.lseek(fd, pos, _SEEK_DATA)  # type: ignore[arg-type]
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole up to the end
                data = size
            else:
                raise
        data = min(data, size)
        if data > pos:
            segments.append((pos, data, False))
        if data >= size:
            break
        hole = min(os.lseek(fd, data, _SEEK_HOLE), size)  # type: ignore[arg-type]
        segments.append((data, hole, True))
        pos = hole
    return segments


class SaverRepository(Protocol):
    """What a FileSaver needs of the repository: its chunker (sizes and secret seed), and where a blob is
    (its length: the previous version's chunks are looked for where they were)."""

    chunker: ChunkerParams

    def new_chunker(self) -> Chunker: ...

    def blob_location(self, blob_id: bytes) -> BlobLocation | None: ...


class FileSaver:
    """Reads files, chunks them and hands the chunks to the writer (which hashes, deduplicates,
    compresses, seals and packs them); one instance shared by the reader threads."""

    def __init__(self, repo: SaverRepository, writer: BlobSink, pool: BlobPool, *,
                 should_stop: Callable[[], bool], longpaths: LongPaths) -> None:
        self.writer = writer
        #: the run's long-path descriptors (the walker and the small-file batches use them too)
        self.longpaths = longpaths
        self.pool = pool
        self.should_stop = should_stop
        params = repo.chunker
        self.min_size = params.min_size
        self._blob_location = repo.blob_location
        self._local_chunker = repo.new_chunker()
        self._zero_ids: dict[int, str] = {}
        self.blobs_new = 0

    def _store(self, data: bytes, use_pool: bool) -> str:
        """A chunk's id; the writer stores it unless the repository has it. With ``use_pool`` only the
        hash and the dedup gate run here, compressing and sealing a new chunk go to the blob pool."""
        if not use_pool:
            return self.writer.save(data).hex()
        blob_id, new = self.writer.claim(data)
        if new:
            self.pool.submit(blob_id, data)
        return blob_id.hex()

    def _zero_chunks(self, length: int) -> Iterator[str]:
        while length > 0:
            n = min(length, ZERO_CHUNK)
            hexid = self._zero_ids.get(n)
            if hexid is None:
                hexid = self._store(bytes(n), False)
                self._zero_ids[n] = hexid
            yield hexid
            length -= n

    def save(self, path: str, known: Sequence[str] = ()) -> SavedFile:
        """The file now at ``path`` (see the module docstring); ``changed`` if it changed while read.
        ``known``: the content of the version backed up before, if any (see :meth:`_save_known`)."""
        fd = open_or_problem(path, self.longpaths)
        try:
            return self._save_fd(fd, known)
        finally:
            os.close(fd)

    def _save_fd(self, fd: int, known: Sequence[str] = ()) -> SavedFile:
        before = fstat_regular(fd)
        content: list[str] = []
        size = before.st_size
        if size <= self.min_size:
            read = length = self._save_small(fd, before, content)
        elif _SEEK_DATA is not None and before.st_blocks * 512 < size:
            read, length = self._save_sparse(fd, before, content)
        elif known:
            read, length = self._save_known(fd, size, known, content, size > POOL_THRESHOLD)
        else:
            read = length = self._save_stream(fd, 0, None, content, size > POOL_THRESHOLD, size)
        after = fstat_or_problem(fd)
        saved = SavedFile(content, length, read, before, not unchanged_while_read(before, after))
        try:
            saved.xattrs = read_xattrs(fd)
        except OSError as exc:
            saved.xattr_error = describe(exc)
        return saved

    def _read(self, fd: int, n: int, pos: int) -> bytes:
        try:
            return os.pread(fd, n, pos)
        except OSError as exc:
            raise FileProblem(f"read error: {describe(exc)}") from None

    def _save_small(self, fd: int, before: os.stat_result, content: list[str]) -> int:
        data = self._read(fd, before.st_size + 1, 0)
        if len(data) > self.min_size:  # it grew meanwhile: chunk what is there
            parts = [data]
            pos = len(data)
            while True:
                more = self._read(fd, 1 << 20, pos)
                if not more:
                    break
                parts.append(more)
                pos += len(more)
            data = b"".join(parts)
            for chunk in self._local_chunker.chunks_of_buffer(data):
                content.append(self._store(bytes(chunk), False))
            return len(data)
        if data:
            content.append(self._store(data, False))
        return len(data)

    def _save_stream(self, fd: int, start: int, end: int | None, content: list[str], use_pool: bool,
                     size: int | None = None) -> int:
        """Chunk ``[start, end)`` (to EOF: ``size`` bytes expected) and store the chunks."""
        reader = _RangeReader(fd, start, end)
        for chunk in self._chunks(reader, size if end is None else end - start):
            content.append(self._store(chunk, use_pool))
        return reader.total

    def _chunks(self, reader: _RangeReader, size_hint: int | None) -> Iterator[bytes]:
        """The chunks read through ``reader``. Only the reading is the file's problem (a FileProblem, as a
        stop asked for is); what the caller does with a chunk (the repository's errors) propagates."""
        chunks = self._local_chunker.chunks(reader, size_hint)
        while True:
            if self.should_stop():
                raise FileProblem("backup cancelled")
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except OSError as exc:
                raise FileProblem(f"read error: {describe(exc)}") from None
            yield chunk

    def _save_known(self, fd: int, size: int, known: Sequence[str], content: list[str],
                    use_pool: bool) -> tuple[int, int]:
        """A changed file whose previous version had the chunks ``known``: bytes read, bytes stored.

        Where a previous chunk is still there, at the place it had or right after a chunk that is,
        hashing it proves it (same id, already in the repository) at the cost of the hash alone; where
        one is not, the file is chunked as usual from there until a cut lands where a previous chunk
        began, or a chunk equals a previous one. A database or disk image changed in a few places, or a
        log that grew, is then hashed once and content-defined cuts are searched only around the
        changes. The cuts are the ones chunking the whole file would make: a chunk is cut by its own
        bytes alone, from a cut onwards, except the last one of a file, which is taken only where it
        ends the file again. The content is right whatever the previous chunks were: every id is of
        bytes just read and hashed."""
        previous = self._previous_chunks(known)
        starts = {start: j for j, (start, _length, _hexid) in enumerate(previous)}
        ids = {hexid: j for j, (_start, _length, hexid) in enumerate(previous)}
        codec = self.writer.codec
        last = len(previous) - 1
        pos = read = 0
        j: int | None = 0  # the previous chunk to look for at pos
        while pos < size:
            if self.should_stop():
                raise FileProblem("backup cancelled")
            if j is not None and j <= last:
                _start, length, hexid = previous[j]
                end = pos + length
                if end == size if j == last else end <= size:
                    data = self._read(fd, length, pos)
                    read += len(data)
                    if len(data) == length and codec.blob_id(data).hex() == hexid:
                        content.append(hexid)
                        pos += length
                        j += 1
                        continue
            j = None
            reader = _RangeReader(fd, pos, None)
            for chunk in self._chunks(reader, size - pos):
                hexid = self._store(chunk, use_pool)
                content.append(hexid)
                pos += len(chunk)
                j = starts.get(pos)
                if j is None and hexid in ids:
                    j = ids[hexid] + 1
                if j is not None:
                    break
            read += reader.total
            if j is None:  # chunked to the end
                break
        return read, pos

    def _previous_chunks(self, known: Sequence[str]) -> list[tuple[int, int, str]]:
        """``(start, length, id)`` of the previous version's chunks, up to the first one the repository
        does not have."""
        chunks = []
        start = 0
        for hexid in known:
            loc = self._blob_location(bytes.fromhex(hexid))
            if loc is None:
                break
            chunks.append((start, loc.raw_length, hexid))
            start += loc.raw_length
        return chunks

    def _save_sparse(self, fd: int, before: os.stat_result, content: list[str]) -> tuple[int, int]:
        """Data segments are chunked; holes become zero chunks without reading them."""
        try:
            segments = _data_segments(fd, before.st_size)
        except OSError:
            read = self._save_stream(fd, 0, None, content, True, before.st_size)
            return read, read
        read = length = 0
        for start, end, is_data in segments:
            if is_data:
                n = self._save_stream(fd, start, end, content, True)
                read += n
                length += n
            else:
                content.extend(self._zero_chunks(end - start))
                length += end - start
        return read, length
