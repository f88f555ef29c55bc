"""File contents of a restore: reads of neighbouring blobs of one pack, decoded and written into the files
that use them, each file finished under its temporary name (see :class:`FileJob`) and renamed into place
when that differs from its real name.

The same code runs on the restore's threads and in its helper processes
(:mod:`cbr_agent.restore.helpers`): what it is given is picklable (files to write, blobs to read), and what
becomes of each file is told to a :class:`Reporter`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from cbr_agent.errors import IntegrityError, RepositoryError
from cbr_agent.repository.index import BlobLocation
from cbr_agent.restore.metadata import FileMeta

#: neighbouring blobs of one pack are fetched in one read of at most this many bytes ...
RANGE_BYTES = 8 * 1024 * 1024
#: ... and at most this many blobs (many tiny files: every thread gets a share)
ITEM_BLOBS = 64
#: a gap between two wanted blobs of a pack larger than this starts a new read
GAP_BYTES = 256 * 1024
#: blobs at least this large that hold only zeros are left as holes
HOLE_MIN = 4096
_ZEROS = bytes(8 * 1024 * 1024 + 1)
CREATE = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
CREATE_NEW = CREATE | os.O_EXCL


class FileJob:
    """One regular file to write: where, under which name until complete (``tmp``: the real name itself
    in a directory that is not in place yet), with what metadata."""

    __slots__ = ("create_mode", "failed", "final", "flags", "meta", "remaining", "size", "tmp", "written")

    def __init__(self, final: str, tmp: str, meta: FileMeta, create_mode: int, size: int) -> None:
        self.final, self.tmp, self.meta, self.create_mode, self.size = final, tmp, meta, create_mode, size
        self.remaining = 0  # blob references not written yet
        self.flags = CREATE  # CREATE_NEW for a file of one blob: created and finished in one go
        self.failed: str | None = None
        self.written = 0  # end of the data written so far


#: a file that needs a blob, and where in the file (plain pairs: one per blob reference, many)
Use = tuple[FileJob, int]


class Wanted(NamedTuple):
    """One blob of a read: where it is, and the files that use it."""

    blob_id: bytes
    loc: BlobLocation
    users: list[Use]


class Read(NamedTuple):
    """One read of neighbouring blobs of one pack."""

    pack_id: str
    blobs: list[Wanted]

    @property
    def span(self) -> int:
        """Bytes read: from the first blob's start to the last one's end."""
        first, last = self.blobs[0].loc, self.blobs[-1].loc
        return last.offset + last.length - first.offset


#: what the threads or a helper are handed: a read, or files with nothing to read (empty files)
Item = Read | list[FileJob]


def work_items(batch_locs: dict[bytes, BlobLocation], refs: dict[bytes, list[Use]]) -> list[Read]:
    """The reads for a batch: per pack, blobs by offset, cut at RANGE_BYTES, ITEM_BLOBS and gaps over
    GAP_BYTES; the biggest reads first, so the slowest do not end up last."""
    by_pack: dict[str, list[Wanted]] = {}
    for blob_id, loc in batch_locs.items():
        by_pack.setdefault(loc.pack_id, []).append(Wanted(blob_id, loc, refs[blob_id]))
    items: list[Read] = []
    for pack_id, blobs in by_pack.items():
        blobs.sort(key=_pack_offset)
        batch: list[Wanted] = []
        start = end = 0
        for wanted in blobs:
            loc = wanted.loc
            if batch and (loc.offset + loc.length - start > RANGE_BYTES or len(batch) >= ITEM_BLOBS
                          or loc.offset - end > GAP_BYTES):
                items.append(Read(pack_id, batch))
                batch = []
            if not batch:
                start = loc.offset
            batch.append(wanted)
            end = loc.offset + loc.length
        if batch:
            items.append(Read(pack_id, batch))
    items.sort(key=lambda read: -read.span)
    return items


def _pack_offset(wanted: Wanted) -> int:
    return wanted.loc.offset


def jobs_of(items: list[Item]) -> list[FileJob]:
    """Every file of ``items`` once, in an order both ends of a pipe compute alike (a batch sent to a
    helper is answered by position in this list)."""
    seen: set[int] = set()
    jobs: list[FileJob] = []
    for item in items:
        if isinstance(item, Read):
            for wanted in item.blobs:
                for job, _offset in wanted.users:
                    if id(job) not in seen:
                        seen.add(id(job))
                        jobs.append(job)
        else:
            for job in item:
                if id(job) not in seen:
                    seen.add(id(job))
                    jobs.append(job)
    return jobs


#: a batch as plain values for a pipe (pickled in C, no class named): one row per file, and the items with
#: each file as its place among the rows
Wire = tuple[list[tuple[Any, ...]], list[Any]]


def to_wire(items: list[Item]) -> tuple[list[FileJob], Wire]:
    """The files of ``items`` (in :func:`jobs_of` order) and ``items`` as plain values."""
    jobs = jobs_of(items)
    place = {id(job): i for i, job in enumerate(jobs)}
    rows = [(j.final, j.tmp, j.create_mode, j.size, j.flags, j.remaining, j.failed, j.written, j.meta.state())
            for j in jobs]
    wire: list[Any] = []
    for item in items:
        if isinstance(item, Read):
            blobs = [(w.blob_id, tuple(w.loc), [(place[id(job)], at) for job, at in w.users])
                     for w in item.blobs]
            wire.append((item.pack_id, blobs))
        else:
            wire.append([place[id(job)] for job in item])
    return jobs, (rows, wire)


def from_wire(message: Wire) -> tuple[list[FileJob], list[Item]]:
    """The reverse of :func:`to_wire`: new file objects, and the items that use them."""
    rows, wire = message
    jobs = []
    for final, tmp, create_mode, size, flags, remaining, failed, written, meta in rows:
        job = FileJob(final, tmp, FileMeta.from_state(meta), create_mode, size)
        job.flags, job.remaining, job.failed, job.written = flags, remaining, failed, written
        jobs.append(job)
    items: list[Item] = []
    for entry in wire:
        if isinstance(entry, tuple):
            pack_id, blobs = entry
            items.append(Read(pack_id, [Wanted(blob_id, BlobLocation(*loc), [(jobs[i], at) for i, at in uses])
                                        for blob_id, loc, uses in blobs]))
        else:
            items.append([jobs[i] for i in entry])
    return jobs, items


class Reporter(Protocol):
    """What becomes of each file: restored (with metadata problems, if any) or failed."""

    def restored(self, job: FileJob, problems: list[str]) -> None: ...

    def failed(self, job: FileJob, reason: str) -> None: ...


ReadRange = Callable[[str, int, int], bytes]      # pack id, offset, length
Decode = Callable[[bytes, BlobLocation, memoryview], bytes]


class ContentWriter:
    """Runs items: one read per :class:`Read`, each blob decoded once and written into every file that
    uses it; a file's last blob finishes it (size, metadata, rename). Thread-safe."""

    def __init__(self, read_range: ReadRange, decode: Decode, short: Callable[[str], str],
                 reporter: Reporter) -> None:
        self.read_range = read_range
        self.decode = decode
        self.short = short          # the form of a path short enough for one system call
        self.reporter = reporter
        self._lock = threading.Lock()

    def run(self, item: Item) -> None:
        if isinstance(item, Read):
            self._restore_range(item.pack_id, item.blobs)
        else:
            for job in item:
                self.finish_file(job)

    def _restore_range(self, pack_id: str, blobs: list[Wanted]) -> None:
        start = blobs[0].loc.offset
        end = blobs[-1].loc.offset + blobs[-1].loc.length
        try:
            raw = self.read_range(pack_id, start, end - start)
        except (OSError, RepositoryError) as exc:
            for _blob_id, _loc, users in blobs:
                self._blob_failed(users, f"pack {pack_id} cannot be read: {exc}")
            return
        view = memoryview(raw)
        decode = self.decode
        for blob_id, loc, users in blobs:
            stored = view[loc.offset - start: loc.offset - start + loc.length]
            try:
                data = decode(blob_id, loc, stored)
            except IntegrityError as exc:
                self._blob_failed(users, str(exc))
                continue
            zero = is_zeros(data)
            for job, offset in users:
                self.write(job, offset, data, zero)

    def write(self, job: FileJob, offset: int, data: bytes, zero: bool) -> None:
        fd = -1
        if job.failed is None:
            try:
                # a file of one blob is created here and finished through this descriptor: one open
                fd = os.open(self.short(job.tmp), job.flags, job.create_mode)
                if not zero:
                    os.pwrite(fd, data, offset)
            except OSError as exc:
                job.failed = f"cannot write: {exc.strerror}"
        with self._lock:
            job.remaining -= 1
            done = job.remaining == 0
            if not zero:
                job.written = max(job.written, offset + len(data))
        if done:  # the last blob of the file: finish it through the same descriptor
            self.finish_file(job, fd)
        elif fd >= 0:
            os.close(fd)

    def _blob_failed(self, users: list[Use], reason: str) -> None:
        for job, _offset in users:
            job.failed = job.failed or reason
            with self._lock:
                job.remaining -= 1
                done = job.remaining == 0
            if done:
                self.finish_file(job)

    def finish_file(self, job: FileJob, fd: int = -1) -> None:
        if job.failed:
            if fd >= 0:
                os.close(fd)
            self._fail(job, f"not restored: {job.failed}")
            return
        try:
            if fd < 0:
                fd = os.open(self.short(job.tmp), CREATE, job.create_mode)
            if job.written != job.size:
                os.ftruncate(fd, job.size)  # the size, holes at the end included
            problems = job.meta.apply(fd)
        except OSError as exc:
            self._fail(job, f"cannot write: {exc.strerror}")
            return
        finally:
            if fd >= 0:
                os.close(fd)
        try:
            if job.tmp != job.final:  # else written under its own name, in a directory not yet in place
                os.rename(self.short(job.tmp), self.short(job.final))
        except OSError as exc:
            self._fail(job, f"cannot move into place: {exc.strerror}")
            return
        self.reporter.restored(job, problems)

    def _fail(self, job: FileJob, reason: str) -> None:
        self.unlink_quietly(job.tmp)
        self.reporter.failed(job, reason)

    def unlink_quietly(self, path: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.short(path))


def is_zeros(data: bytes) -> bool:
    """A blob worth a hole: large enough and only zeros (the prefix test rejects most data at once)."""
    n = len(data)
    return n >= HOLE_MIN and data[:64] == _ZEROS[:64] and data == _ZEROS[:n]
