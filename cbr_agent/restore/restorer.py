"""Restore a snapshot (or some paths of it) into a target directory.

1. plan: walk the snapshot's trees, create directories, decide per entry what the overwrite policy
   allows, and list every blob each file needs at which offset;
2. contents: blobs are read grouped by pack (ranges of neighbouring blobs in one read) by several
   threads; each file is written under a temporary name and renamed once complete, so an interrupted
   restore never leaves a half-written file under the real name; chunks of zeros become holes;
3. hard links, symlinks, FIFOs and device nodes;
4. directory metadata, deepest first (writing into a directory changes its mtime).

A blob that fails its integrity check fails exactly the files that use it, loudly; the rest is restored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cbr_agent.backup.longpath import close_all, short
from cbr_agent.errors import IntegrityError, RepositoryError, RestoreError
from cbr_agent.restore.metadata import IS_ROOT, apply_fd, apply_path

log = logging.getLogger(__name__)

OVERWRITE = ("always", "if-changed", "never")
#: neighbouring blobs of one pack are fetched in one read of at most this many bytes
RANGE_BYTES = 8 * 1024 * 1024
#: blobs at least this large that hold only zeros are left as holes
HOLE_MIN = 4096
#: average blob size from which a restore uses four threads instead of two
LARGE_BLOB = 256 * 1024
_ZEROS = bytes(8 * 1024 * 1024 + 1)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
#: what finishing a file needs of its node
_META_KEYS = ("mode", "uid", "gid", "user", "group", "mtime_ns", "xattrs")


@dataclass
class RestoreSummary:
    files: int = 0
    dirs: int = 0
    others: int = 0
    hardlinks: int = 0
    bytes_written: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _FileJob:
    __slots__ = ("failed", "final", "node", "remaining", "size", "tmp", "written")

    def __init__(self, final: str, tmp: str, node: dict[str, Any], remaining: int, size: int) -> None:
        self.final, self.tmp, self.node, self.remaining, self.size = final, tmp, node, remaining, size
        self.failed: str | None = None
        self.written = 0  # end of the data written so far


def check_name(name: Any) -> str:
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
        raise IntegrityError(f"snapshot tree holds an invalid name {name!r}; refusing to restore it")
    return name


def _inside(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


class Restorer:
    def __init__(self, repo: Any, target: str, *, overwrite: str = "always", dry_run: bool = False,
                 threads: int = 0) -> None:
        if overwrite not in OVERWRITE:
            raise ValueError(f"overwrite must be one of {', '.join(OVERWRITE)}")
        self.repo = repo
        self.target = os.path.abspath(target)
        self.overwrite = overwrite
        self.dry_run = dry_run
        self.threads = threads
        self.summary = RestoreSummary(dry_run=dry_run)
        self._lock = threading.Lock()
        self._dirs: list[tuple[str, dict[str, Any]]] = []
        self._jobs: list[_FileJob] = []
        self._refs: dict[bytes, list[tuple[_FileJob, int]]] = {}
        self._locs: dict[bytes, Any] = {}
        self._fresh_dirs: set[str] = set()  # created by this restore: nothing in them to overwrite
        self._links: list[tuple[str, dict[str, Any], tuple[int, int]]] = []
        self._others: list[tuple[str, dict[str, Any]]] = []
        self._first_of_inode: dict[tuple[int, int], _FileJob] = {}
        self._new_gid: dict[str, int] = {}
        self._run_tag = secrets.token_hex(4)
        self._tmp_count = 0
        self._euid = os.geteuid()
        umask = os.umask(0o077)
        os.umask(umask)
        self._umask = umask

    # ------------------------------------------------------------------ public
    def run(self, tree_id: str, includes: Sequence[str] = ()) -> RestoreSummary:
        includes = [os.path.normpath("/" + p.strip("/")) if p != "/" else "/" for p in includes] or ["/"]
        if not self.dry_run:
            try:
                os.makedirs(self.target, exist_ok=True)
            except OSError as exc:
                raise RestoreError(f"cannot create target {self.target}: {exc.strerror}") from None
        try:
            found = self._plan(tree_id, includes)
            missing = [p for p in includes if p not in found]
            if missing:
                raise RestoreError(f"not in the snapshot: {', '.join(missing)}",
                                   hint="list the snapshot with 'cbr-agent ls SNAPSHOT'")
            if not self.dry_run:
                self._contents()
                self._finish_links_and_others()
                for path, node in reversed(self._dirs):
                    self._problems(path, apply_path(path, node))
        finally:
            close_all()
        return self.summary

    # ------------------------------------------------------------------ plan
    def _plan(self, tree_id: str, includes: list[str]) -> set[str]:
        found: set[str] = set()
        if "/" in includes:
            found.add("/")
        stack: list[tuple[str, str]] = [(tree_id, "/")]
        everything = "/" in includes
        while stack:
            tid, snap_dir = stack.pop()
            for node in self._load_tree(tid, snap_dir):
                name = check_name(node.get("name"))
                snap_path = snap_dir.rstrip("/") + "/" + name
                wanted = everything or any(_inside(snap_path, inc) for inc in includes)
                if not everything:
                    if wanted and snap_path in includes:
                        found.add(snap_path)
                    if not (wanted or any(_inside(inc, snap_path) for inc in includes)):
                        continue
                dest = os.path.join(self.target, snap_path.lstrip("/"))
                kind = node.get("type")
                if kind == "dir":
                    self._plan_dir(dest, node)
                    if node.get("subtree"):
                        stack.append((node["subtree"], snap_path))
                elif wanted:
                    self._plan_entry(dest, node)
        return found

    def _load_tree(self, tree_id: str, where: str) -> list[dict[str, Any]]:
        from cbr_agent.repository import decode_tree

        try:
            return decode_tree(self.repo.load_blob(bytes.fromhex(tree_id)))
        except ValueError as exc:
            raise IntegrityError(f"tree of {where} ({tree_id}) is damaged: {exc}") from None

    def _plan_dir(self, dest: str, node: dict[str, Any]) -> None:
        self.summary.dirs += 1
        self._dirs.append((dest, node))
        if self.dry_run:
            return
        try:
            st = os.lstat(short(dest))
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            if self.overwrite == "never":
                self._error(dest, "exists and is not a directory; not replaced (--overwrite never)")
                return
            try:
                os.unlink(short(dest))
            except OSError as exc:
                self._error(dest, f"cannot replace with a directory: {exc.strerror}")
                return
            st = None
        if st is None:
            try:
                os.mkdir(short(dest), 0o700)
                st = os.lstat(short(dest))
                self._fresh_dirs.add(dest)
            except OSError as exc:
                self._error(dest, f"cannot create directory: {exc.strerror}")
                return
        # the group a new file gets here: the directory's when it is setgid, else ours
        self._new_gid[dest] = st.st_gid if st.st_mode & stat.S_ISGID else os.getegid()

    def _skip_existing(self, dest: str, node: dict[str, Any]) -> bool:
        try:
            st = os.lstat(short(dest))
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            self._error(dest, "exists as a directory; not replaced")
            return True
        if self.overwrite == "never":
            return True
        if self.overwrite == "if-changed" and node.get("type") == "file" and stat.S_ISREG(st.st_mode):
            return st.st_size == node.get("size") and st.st_mtime_ns == node.get("mtime_ns")
        return False

    def _tmp_name(self, dest: str) -> str:
        # unique: a random part per run, a counter within it
        self._tmp_count += 1
        return f"{dest.rpartition('/')[0]}/.cbr-restore-{self._run_tag}-{self._tmp_count}"

    def _plan_entry(self, dest: str, node: dict[str, Any]) -> None:
        if os.path.dirname(dest) not in self._fresh_dirs and self._skip_existing(dest, node):
            self.summary.skipped += 1
            return
        kind = node.get("type")
        if kind == "file":
            key = (int(node.get("dev", 0)), int(node.get("inode", 0)))
            if int(node.get("links", 1)) > 1 and key in self._first_of_inode:
                self._links.append((dest, node, key))
                return
            content = node.get("content") or []
            meta = {k: node[k] for k in _META_KEYS if k in node}  # not the whole node: memory
            job = _FileJob(dest, self._tmp_name(dest), meta, len(content), int(node.get("size", 0)))
            if int(node.get("links", 1)) > 1:
                self._first_of_inode[key] = job
            self._jobs.append(job)
            self.summary.files += 1
            offset = refs = 0
            for hexid in content:
                blob_id = bytes.fromhex(hexid)
                loc = self.repo.blob_location(blob_id)
                if loc is None:
                    job.failed = f"blob {hexid} is not in the repository"
                    break
                users = self._refs.get(blob_id)
                if users is None:
                    users = self._refs[blob_id] = []
                    self._locs[blob_id] = loc
                users.append((job, offset))
                refs += 1
                offset += loc.raw_length
            job.remaining = refs
            self.summary.bytes_written += offset
        else:
            self._others.append((dest, node))
            self.summary.others += 1

    # ------------------------------------------------------------------ contents
    def _work_items(self) -> list[tuple[str, list[tuple[bytes, Any]]]]:
        by_pack: dict[str, list[tuple[bytes, Any]]] = {}
        for blob_id, loc in self._locs.items():
            by_pack.setdefault(loc.pack_id, []).append((blob_id, loc))
        items: list[tuple[str, list[tuple[bytes, Any]]]] = []
        for pack_id, blobs in by_pack.items():
            blobs.sort(key=lambda b: b[1].offset)
            batch: list[tuple[bytes, Any]] = []
            start = 0
            for blob in blobs:
                loc = blob[1]
                if batch and loc.offset + loc.length - start > RANGE_BYTES:
                    items.append((pack_id, batch))
                    batch = []
                if not batch:
                    start = loc.offset
                batch.append(blob)
            if batch:
                items.append((pack_id, batch))
        # big ranges first: the slowest items do not end up last
        items.sort(key=lambda it: -(it[1][-1][1].offset + it[1][-1][1].length - it[1][0][1].offset))
        return items

    def _thread_count(self) -> int:
        """Large blobs (decompression, decryption, big writes release the GIL) gain from more threads;
        many small files are mostly Python work under the GIL, where more threads only contend."""
        if self.threads:
            return self.threads
        blobs = len(self._locs) or 1
        average = sum(loc.raw_length for loc in self._locs.values()) / blobs
        return 4 if average >= LARGE_BLOB else 2

    def _contents(self) -> None:
        for job in self._jobs:  # files without blobs (empty, or failed planning) finish right away
            if job.remaining == 0:
                self._finish_file(job)
        items = self._work_items()
        if not items:
            return
        with ThreadPoolExecutor(max_workers=self._thread_count(), thread_name_prefix="restore") as pool:
            for future in [pool.submit(self._restore_range, pack, blobs) for pack, blobs in items]:
                future.result()

    def _restore_range(self, pack_id: str, blobs: list[tuple[bytes, Any]]) -> None:
        start = blobs[0][1].offset
        end = blobs[-1][1].offset + blobs[-1][1].length
        try:
            raw = self.repo.backend.get("data/" + pack_id, start, end - start)
        except (OSError, RepositoryError) as exc:
            for blob_id, _loc in blobs:
                self._blob_failed(blob_id, f"pack {pack_id} cannot be read: {exc}")
            return
        view = memoryview(raw)
        for blob_id, loc in blobs:
            stored = view[loc.offset - start: loc.offset - start + loc.length]
            try:
                data = self.repo.decode_blob(blob_id, loc, bytes(stored))
            except IntegrityError as exc:
                self._blob_failed(blob_id, str(exc))
                continue
            zero = is_zeros(data)
            for job, offset in self._refs[blob_id]:
                self._write(job, offset, data, zero)

    def _create_mode(self, job: _FileJob) -> int:
        # created with its final permission bits where the umask allows (one fchmod less per file),
        # and always writable by its owner while it is being written
        return (int(job.node.get("mode", 0o644)) & 0o777) | 0o600

    def _write(self, job: _FileJob, offset: int, data: bytes, zero: bool) -> None:
        fd = -1
        if job.failed is None:
            try:
                fd = os.open(short(job.tmp), _CREATE, self._create_mode(job))
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
            self._finish_file(job, fd)
        elif fd >= 0:
            os.close(fd)

    def _blob_failed(self, blob_id: bytes, reason: str) -> None:
        for job, _offset in self._refs[blob_id]:
            job.failed = job.failed or reason
            with self._lock:
                job.remaining -= 1
                done = job.remaining == 0
            if done:
                self._finish_file(job)

    def _finish_file(self, job: _FileJob, fd: int = -1) -> None:
        if job.failed:
            if fd >= 0:
                os.close(fd)
            self._error(job.final, f"not restored: {job.failed}")
            _unlink_quietly(job.tmp)
            return
        try:
            if fd < 0:
                fd = os.open(short(job.tmp), _CREATE, self._create_mode(job))
            if job.written != job.size:
                os.ftruncate(fd, job.size)  # the size, holes at the end included
            gid = self._new_gid.get(os.path.dirname(job.final))
            problems = apply_fd(fd, job.node,
                                created_owner=None if gid is None else (self._euid, gid),
                                created_mode=self._create_mode(job) & ~self._umask)
        except OSError as exc:
            self._error(job.final, f"cannot write: {exc.strerror}")
            _unlink_quietly(job.tmp)
            return
        finally:
            if fd >= 0:
                os.close(fd)
        try:
            os.rename(short(job.tmp), short(job.final))
        except OSError as exc:
            self._error(job.final, f"cannot move into place: {exc.strerror}")
            _unlink_quietly(job.tmp)
            return
        self._problems(job.final, problems)

    # ------------------------------------------------------------------ the rest
    def _finish_links_and_others(self) -> None:
        for dest, _node, key in self._links:
            first = self._first_of_inode[key]
            if first.failed:
                self._error(dest, f"not restored: hard link of {first.final}, which failed")
                continue
            tmp = self._tmp_name(dest)
            try:
                os.link(short(first.final), short(tmp))
                os.rename(short(tmp), short(dest))
                self.summary.hardlinks += 1
            except OSError as exc:
                _unlink_quietly(tmp)
                self._error(dest, f"cannot create hard link: {exc.strerror}")
        for dest, node in self._others:
            self._restore_other(dest, node)

    def _restore_other(self, dest: str, node: dict[str, Any]) -> None:
        kind = node.get("type")
        tmp = self._tmp_name(dest)
        mode = int(node.get("mode", 0o644))
        try:
            if kind == "symlink":
                os.symlink(node["target"], short(tmp))
            elif kind == "fifo":
                os.mkfifo(short(tmp), mode)
            elif kind in ("chardev", "blockdev"):
                if not IS_ROOT:
                    self._warn(dest, f"{kind} not recreated (needs root)")
                    return
                fmt = stat.S_IFCHR if kind == "chardev" else stat.S_IFBLK
                os.mknod(short(tmp), mode | fmt, int(node.get("rdev", 0)))
            else:
                self._warn(dest, f"{kind} not recreated")
                return
        except OSError as exc:
            self._error(dest, f"cannot create {kind}: {exc.strerror}")
            return
        problems = apply_path(tmp, node, symlink=kind == "symlink")
        try:
            os.rename(short(tmp), short(dest))
        except OSError as exc:
            _unlink_quietly(tmp)
            self._error(dest, f"cannot move into place: {exc.strerror}")
            return
        self._problems(dest, problems)

    def _problems(self, path: str, problems: Iterable[str]) -> None:
        for p in problems:
            self._warn(path, p)

    def _warn(self, path: str, message: str) -> None:
        log.warning("%s: %s", path, message)
        with self._lock:
            self.summary.warnings.append(f"{path}: {message}")

    def _error(self, path: str, message: str) -> None:
        log.error("%s: %s", path, message)
        with self._lock:
            self.summary.errors.append(f"{path}: {message}")


def is_zeros(data: bytes) -> bool:
    """A blob worth a hole: large enough and only zeros (the prefix test rejects most data at once)."""
    n = len(data)
    return n >= HOLE_MIN and data[:64] == _ZEROS[:64] and data == _ZEROS[:n]


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(short(path))


def restore_snapshot(repo: Any, snapshot: Any, target: str, *, paths: Sequence[str] = (),
                     overwrite: str = "always", dry_run: bool = False, threads: int = 0) -> RestoreSummary:
    """Restore ``snapshot`` (or ``paths`` inside it) below ``target``; see the module docstring."""
    restorer = Restorer(repo, target, overwrite=overwrite, dry_run=dry_run, threads=threads)
    return restorer.run(snapshot.tree, paths)
