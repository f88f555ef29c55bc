"""Restore a snapshot (or some paths of it) into a target directory.

The snapshot's trees are walked once, depth first, and restored as they are walked (streaming: memory
does not grow with the size of the snapshot):

1. walk (main thread): create directories, decide per entry what the overwrite policy allows, create
   symlinks, FIFOs and device nodes, and list every blob each file needs at which offset; every
   ``BATCH_FILES`` files (or ``BATCH_BYTES``) the batch's blobs are grouped by pack into work items;
2. contents (worker threads, while the walk goes on): each item is one read of neighbouring blobs of one
   pack, limited in bytes and in blob count (so thousands of tiny files in one pack are spread over every
   thread); each file is written under a temporary name (created with O_EXCL, one open for a file of one
   blob, its metadata applied through the same descriptor) and renamed once complete, so an interrupted
   restore never leaves a half-written file under the real name; chunks of zeros become holes;
3. hard links, once every file is in place;
4. directory metadata, deepest first (writing into a directory changes its mtime).

A blob that fails its integrity check fails exactly the files that use it, loudly; a damaged subtree
fails that directory's contents, loudly; the rest is restored.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cbr_agent.errors import IntegrityError, RestoreError
from cbr_agent.fs.longpath import LongPaths
from cbr_agent.memtune import cap_malloc_arenas
from cbr_agent.procpool import helper_count
from cbr_agent.progress import Progress
from cbr_agent.repository.backend import DirectoryBackend
from cbr_agent.repository.index import BlobLocation
from cbr_agent.repository.snapshot import Snapshot
from cbr_agent.restore.contents import CREATE_NEW, ContentWriter, FileJob, Item, Read, Use, work_items
from cbr_agent.restore.helpers import Answer, RestoreHelpers
from cbr_agent.restore.metadata import IS_ROOT, FileMeta, apply_path
from cbr_agent.restore.select import Excluded, Selection, normal_paths

log = logging.getLogger(__name__)

OVERWRITE = ("always", "if-changed", "never")
#: the walk hands its files to the threads every this many files or bytes of content
BATCH_FILES = 2048
BATCH_BYTES = 64 * 1024 * 1024
#: average blob size from which a restore uses four threads instead of two
LARGE_BLOB = 256 * 1024
#: average blob size under which a restore from a local directory uses one thread instead of two (when
#: its batches are not for helper processes)
SMALL_BLOB = 16 * 1024
#: a batch goes to helper processes when it holds at least this many files (a small restore never pays
#: for starting them) ...
HELPER_BATCH_FILES = BATCH_FILES // 2
#: ... and its blobs average under this size (larger ones gain as much from threads: decompression,
#: decryption and big writes release the GIL)
HELPER_BLOB = 64 * 1024
#: what a directory's metadata needs of its node
_META_KEYS = ("mode", "uid", "gid", "user", "group", "mtime_ns", "xattrs")


@dataclass
class RestoreSummary:
    files: int = 0          # files restored (with --dry-run: that would be restored)
    files_failed: int = 0   # files not restored (damaged data, write errors); each is in ``errors``
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


class _Batch:
    """Files planned since the last hand-over, and which of them use each blob."""

    __slots__ = ("bytes", "empty", "files", "locs", "refs")

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self.empty: list[FileJob] = []  # nothing to read: finished by a worker as they are
        self.refs: dict[bytes, list[Use]] = {}
        self.locs: dict[bytes, BlobLocation] = {}


def check_name(name: Any) -> str:
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
        raise IntegrityError(f"snapshot tree holds an invalid name {name!r}; refusing to restore it")
    return name


class Restorer:
    def __init__(self, repo: Any, target: str, *, overwrite: str = "always", dry_run: bool = False,
                 threads: int = 0, processes: int | str = "auto", progress: Progress | None = None) -> None:
        if overwrite not in OVERWRITE:
            raise ValueError(f"overwrite must be one of {', '.join(OVERWRITE)}")
        self.repo = repo
        self.target = os.path.abspath(target)
        self.overwrite = overwrite
        self.dry_run = dry_run
        self.threads = threads      # 0: chosen from the first batch
        self.processes = processes  # in all, this one included ("auto": one per usable CPU, at most 4)
        self.summary = RestoreSummary(dry_run=dry_run)
        #: files and bytes of file contents handled so far (restored, failed or left alone)
        self.progress = progress or Progress()
        self._lock = threading.Lock()
        #: every directory visited: the path it is filled at, its metadata, and whether this restore made it
        self._dirs: list[tuple[str, dict[str, Any], bool]] = []
        #: directories made under a temporary name in one that existed, and their real names (see _plan_dir)
        self._tops: dict[str, str] = {}
        self._links: list[tuple[str, tuple[int, int]]] = []
        self._first_of_inode: dict[tuple[int, int], FileJob] = {}
        self._run_tag = secrets.token_hex(4)
        self._tmp_count = 0
        self._euid = os.geteuid()
        self._egid = os.getegid()
        umask = os.umask(0o077)
        os.umask(umask)
        self._umask = umask
        self._batch = _Batch()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_threads = 0
        self._in_flight = 0  # items handed to the threads and not collected yet, at most
        self._pending: deque[Future[None]] = deque()
        self._planned = (0, 0)  # files and content bytes the walk found so far
        #: this restore's long-path descriptors, closed when :meth:`run` ends (never another run's)
        self._longpaths = LongPaths()
        self._short = self._longpaths.short
        # the codec's decode, bound once: Repository.decode_blob would look the codec up for every blob
        self._contents = ContentWriter(self._read_range, repo.codec.decode, self._short, self)
        self._helpers: RestoreHelpers | None = None
        self._helpers_refused = False  # none to be had: one process, a remote store, or they failed
        self.batches_by_helpers = 0
        self.batches_redone = 0     # a helper died holding them

    # ------------------------------------------------------------------ public
    def run(self, tree_id: str, includes: Sequence[str] = (), *, excluded: Excluded | None = None,
            check_missing: bool = True) -> RestoreSummary:
        """``excluded(path, name)``: entries left out with everything below them; ``check_missing``:
        refuse include paths the snapshot does not have (off when they come from a walk of it)."""
        includes = normal_paths(includes)
        self._selection = Selection(includes, excluded)
        missing = self._missing(tree_id, includes) if check_missing else []
        if missing:
            raise RestoreError(f"not in the snapshot: {', '.join(missing)}",
                               hint="list the snapshot with 'cbr-agent ls SNAPSHOT'")
        if not self.dry_run:
            try:
                os.makedirs(self.target, exist_ok=True)
            except OSError as exc:
                raise RestoreError(f"cannot create target {self.target}: {exc.strerror}") from None
        try:
            try:
                self.progress.start("restoring", "files", items_total=self.progress.items_total,
                                    bytes_total=self.progress.bytes_total)
                self._walk(tree_id, includes)
                # every file is planned now: the totals are exact
                self.progress.items_total, self.progress.bytes_total = self._planned
                self._hand_over()
            finally:
                self._drain()
            if not self.dry_run:
                self._finish_links()
                self._finish_dirs()
        except BaseException:
            if self._tops:
                kept = ", ".join(f"{tmp} for {final}" for tmp, final in self._tops.items())
                log.warning("restore stopped: what it restored into new directories stays under temporary "
                            "names (%s)", kept)
            raise
        finally:
            self._longpaths.close()
        return self.summary

    def _finish_dirs(self) -> None:
        """Directory metadata, deepest first; the new directories' before they take their real names, those
        that existed after (a rename into one changes its mtime)."""
        for path, node, created in reversed(self._dirs):
            if created:
                self._problems(path, apply_path(self._short(path), node))
        for tmp, final in self._tops.items():
            try:
                os.rename(self._short(tmp), self._short(final))
            except OSError as exc:
                self._error(final, f"restored as {tmp}, but cannot move into place: {exc.strerror}")
        self._tops.clear()
        for path, node, created in reversed(self._dirs):
            if not created:
                self._problems(path, apply_path(self._short(path), node))

    # ------------------------------------------------------------------ walk
    def _missing(self, tree_id: str, includes: list[str]) -> list[str]:
        """The include paths the snapshot does not have (checked before anything is written)."""
        missing = []
        for inc in includes:
            tid: str | None = tree_id
            parts = [p for p in inc.split("/") if p]
            for i, part in enumerate(parts):
                node = None if tid is None else next(
                    (n for n in self._load_tree(tid, "/" + "/".join(parts[:i])) if n.get("name") == part),
                    None)
                if node is None:
                    missing.append(inc)
                    break
                tid = node.get("subtree") if node.get("type") == "dir" else None
        return missing

    def _walk(self, tree_id: str, includes: list[str]) -> None:
        visit = self._selection.visit
        root_gid = self._new_file_gid(self.target)
        # (tree id, path in the snapshot, destination, group of new files there, created by us)
        stack: list[tuple[str, str, str, int, bool]] = [(tree_id, "/", self.target, root_gid, False)]
        while stack:
            tid, snap_dir, dest_dir, gid, fresh = stack.pop()
            try:
                nodes = self._load_tree(tid, snap_dir)
            except IntegrityError as exc:
                if snap_dir == "/":
                    raise
                self._error(dest_dir, f"contents not restored: {exc}")
                continue
            for i, node in enumerate(nodes):
                nodes[i] = None  # type: ignore[call-overload]  # freed as we go: a directory may be huge
                try:
                    name = check_name(node.get("name"))
                except IntegrityError as exc:
                    self._error(dest_dir, str(exc))
                    continue
                snap_path = snap_dir.rstrip("/") + "/" + name
                wanted, walk_in = visit(snap_path, name)
                if not walk_in:
                    continue
                dest = dest_dir + "/" + name
                kind = node.get("type")
                if kind == "dir":
                    made = self._plan_dir(dest, node, gid, fresh)
                    if made is not None and node.get("subtree"):
                        fill, new_files_gid, created = made
                        stack.append((node["subtree"], snap_path, fill, new_files_gid, created))
                elif wanted:
                    self._plan_entry(dest, node, gid, fresh)
                    if self._batch.files >= BATCH_FILES or self._batch.bytes >= BATCH_BYTES:
                        self._hand_over()

    def _load_tree(self, tree_id: str, where: str) -> list[dict[str, Any]]:
        from cbr_agent.repository import decode_tree

        try:
            return decode_tree(self.repo.load_blob(bytes.fromhex(tree_id)))
        except ValueError as exc:
            raise IntegrityError(f"tree of {where} ({tree_id}) is damaged: {exc}") from None

    def _new_file_gid(self, path: str) -> int:
        """The group a new file gets in this directory: the directory's when it is setgid, else ours."""
        try:
            st = os.stat(self._short(path))
        except OSError:
            return self._egid
        return st.st_gid if st.st_mode & stat.S_ISGID else self._egid

    def _plan_dir(self, dest: str, node: dict[str, Any], parent_gid: int,
                  parent_made: bool) -> tuple[str, int, bool] | None:
        """Create the directory; ``(path to fill, gid of new files in it, made now)``, or None when it
        cannot be used (the error is recorded). A new directory gets the group its parent gives new
        entries (and a setgid parent's setgid bit), so its new files get ``parent_gid`` too: no stat.

        A directory made in one this restore made is made under its real name. One made in a directory
        that existed is made under a temporary name (a "top") and takes its real name once everything
        below it is restored: nothing in it is seen under its real path before then, so the files
        below it need no temporary names of their own (half the directory operations of a restore)."""
        self.summary.dirs += 1
        meta = {k: node[k] for k in _META_KEYS if k in node}
        if self.dry_run:
            self._dirs.append((dest, meta, False))
            return dest, self._egid, False
        if parent_made:
            try:
                os.mkdir(self._short(dest), 0o700)
                self._dirs.append((dest, meta, True))
                return dest, parent_gid, True
            except FileExistsError:  # not expected in a directory of ours: look at it as at any other
                pass
            except OSError as exc:
                self._error(dest, f"cannot create directory: {exc.strerror}")
                return None
        try:
            st = os.lstat(self._short(dest))
        except FileNotFoundError:
            return self._make_top(dest, meta, parent_gid)
        except OSError as exc:
            self._error(dest, f"cannot look at the directory: {exc.strerror}")
            return None
        if stat.S_ISDIR(st.st_mode):
            self._dirs.append((dest, meta, False))
            return dest, (st.st_gid if st.st_mode & stat.S_ISGID else self._egid), False
        if self.overwrite == "never":
            self._error(dest, "exists and is not a directory; not replaced (--overwrite never)")
            return None
        try:
            os.unlink(self._short(dest))
        except OSError as exc:
            self._error(dest, f"cannot replace with a directory: {exc.strerror}")
            return None
        return self._make_top(dest, meta, parent_gid)

    def _make_top(self, dest: str, meta: dict[str, Any], parent_gid: int) -> tuple[str, int, bool] | None:
        tmp = self._tmp_name(dest)
        try:
            os.mkdir(self._short(tmp), 0o700)
        except OSError as exc:
            self._error(dest, f"cannot create directory: {exc.strerror}")
            return None
        self._tops[tmp] = dest
        self._dirs.append((tmp, meta, True))
        return tmp, parent_gid, True

    def _skip_existing(self, dest: str, node: dict[str, Any]) -> bool:
        try:
            st = os.lstat(self._short(dest))
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

    def _tmp_name(self, dest: str, made: bool = False) -> str:
        """Where ``dest`` is written until complete: the name itself in a directory this restore made
        (see :meth:`_plan_dir`), else a temporary name beside it (unique: a random part per run, a
        counter within it)."""
        if made:
            return dest
        self._tmp_count += 1
        return f"{dest.rpartition('/')[0]}/.cbr-restore-{self._run_tag}-{self._tmp_count}"

    def _plan_entry(self, dest: str, node: dict[str, Any], gid: int, fresh: bool) -> None:
        if not fresh and self._skip_existing(dest, node):
            self.summary.skipped += 1
            if node.get("type") == "file":
                self._count_planned(int(node.get("size", 0)))
                self._count_done(int(node.get("size", 0)))
            return
        kind = node.get("type")
        if kind != "file":
            self.summary.others += 1
            if not self.dry_run:
                self._restore_other(dest, node, fresh)
            return
        links = int(node.get("links", 1))
        if links > 1:
            key = (int(node.get("dev", 0)), int(node.get("inode", 0)))
            if key in self._first_of_inode:
                self._links.append((dest, key))
                return
        mode = int(node.get("mode", 0o644))
        # created with its final permission bits where the umask allows (one fchmod less per file),
        # and always writable by its owner while it is being written
        create_mode = (mode & 0o777) | 0o600
        meta = FileMeta(node, created_owner=(self._euid, gid), created_mode=create_mode & ~self._umask)
        job = FileJob(dest, self._tmp_name(dest, fresh), meta, create_mode, int(node.get("size", 0)))
        if links > 1:
            self._first_of_inode[key] = job
        self._count_planned(job.size)
        batch = self._batch
        batch.files += 1
        offset = 0
        locate = self.repo.blob_location
        for hexid in node.get("content") or ():
            blob_id = bytes.fromhex(hexid)
            users = batch.refs.get(blob_id)
            if users is None:
                loc = locate(blob_id)
                if loc is None:
                    job.failed = f"blob {hexid} is not in the repository"
                    break
                users = batch.refs[blob_id] = []
                batch.locs[blob_id] = loc
                batch.bytes += loc.raw_length
            else:
                loc = batch.locs[blob_id]
            users.append((job, offset))
            job.remaining += 1
            offset += loc.raw_length
        if job.failed:  # never handed to a thread: the blobs it did list are written for nobody
            for users in batch.refs.values():
                users[:] = [(user, at) for user, at in users if user is not job]
            job.remaining = 0
        if self.dry_run:
            if job.failed:
                self.failed(job, job.failed)
            else:
                self.restored(job)
            return
        if job.remaining == 0:
            batch.empty.append(job)
        elif job.remaining == 1:
            job.flags = CREATE_NEW

    # ------------------------------------------------------------------ contents
    def _hand_over(self) -> None:
        """Give the batch planned so far to a helper process or the threads; blocks while too much is in
        flight."""
        batch, self._batch = self._batch, _Batch()
        if self.dry_run or not (batch.empty or batch.locs):
            return
        # drop whole-batch references: each item holds what it needs, and is freed when done
        items: list[Item] = [*work_items(batch.locs, batch.refs)]
        if batch.empty:
            items.append(batch.empty)
        batch.refs, batch.locs, batch.empty = {}, {}, []
        if self._for_helpers(items, batch.files):
            assert self._helpers is not None
            self._take_answers()
            if self._helpers.try_submit(items):
                self.batches_by_helpers += 1
            else:
                self._run_here(items)  # every helper is busy: no core idles
            return
        if self._pool is not None and self._pool_threads == 1 and self._thread_count_for(items) > 1:
            self._drain_threads()  # one thread was chosen for tiny files, and larger ones follow: one pause
        if self._pool is None:
            threads = self._thread_count_for(items)
            self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="restore")
            self._pool_threads, self._in_flight = threads, threads * 3
        pending = self._pending
        for item in items:
            pending.append(self._pool.submit(self._contents.run, item))
            # bounded memory: wait for the oldest item (no semaphore: its wake-ups cost 10 % of the
            # GIL's time with tiny files); an unexpected error in a thread surfaces here
            while len(pending) > self._in_flight or pending[0].done():
                pending.popleft().result()
                if not pending:
                    break

    def _for_helpers(self, items: list[Item], files: int) -> bool:
        """Whether a batch goes to helper processes (started at the first that does, see
        :mod:`cbr_agent.restore.helpers`): many small files from a local directory. A remote store's
        reads and credentials stay with this process."""
        if files < HELPER_BATCH_FILES or self._helpers_refused or _average_blob(items) >= HELPER_BLOB:
            return False
        if self._helpers is not None:
            return True
        count = helper_count(self.processes)
        backend = self.repo.backend
        if self.threads or count < 1 or not isinstance(backend, DirectoryBackend):
            self._helpers_refused = True
            return False
        helpers = RestoreHelpers(count, self.repo.codec, str(backend.root))
        try:
            helpers.start()
        except OSError as exc:  # e.g. no processes left: slower, never a failed restore
            log.warning("cannot start restore helper processes (%s); restoring in one process", exc)
            helpers.close()
            self._helpers_refused = True
            return False
        self._helpers = helpers
        return True

    def _run_here(self, items: list[Item]) -> None:
        for item in items:
            self._contents.run(item)

    def _take_answers(self, wait: float = 0.0) -> None:
        assert self._helpers is not None
        for items, jobs, answer in self._helpers.answers(wait):
            if answer is None:  # its helper died: what it left under temporary names goes, then redo
                self.batches_redone += 1
                for job in jobs:
                    self._contents.unlink_quietly(job.tmp)
                self._run_here(items)
            else:
                self._apply(jobs, answer)

    def _apply(self, jobs: list[FileJob], answer: Answer) -> None:
        finished, outcomes = answer
        if finished != len(jobs):  # never expected: a helper that lost track of files must not hide it
            raise RestoreError(f"a restore helper process finished {finished} of the {len(jobs)} files "
                               "it was sent; restore again, and report this as a bug")
        special = dict(outcomes)
        clean = size = 0
        for position, job in enumerate(jobs):
            outcome = special.get(position)
            if outcome is None:
                clean += 1
                size += job.size
            elif isinstance(outcome, str):
                self.failed(job, outcome)
            else:
                self.restored(job, outcome)
        self._count_restored(clean, size)

    def _thread_count_for(self, items: list[Item]) -> int:
        """Large blobs (decompression, decryption, big writes release the GIL) gain from more threads.
        Many small files are mostly Python work and short system calls, each a GIL hand-over: from a
        local directory one thread beside the walk is best (200,000 files of 0-4 KiB on ext4: 22-24 s
        and 22-24 CPU-s, against 24-28 s and 33-36 CPU-s with two); a remote store's reads wait on
        the network, so two threads keep one read in flight while the other writes."""
        if self.threads:
            return self.threads
        average = _average_blob(items)
        if average >= LARGE_BLOB:
            return 4
        if average < SMALL_BLOB and isinstance(self.repo.backend, DirectoryBackend):
            return 1
        return 2

    def _drain(self) -> None:
        try:
            if self._helpers is not None:
                try:
                    while self._helpers.busy:
                        self._take_answers(wait=0.2)
                finally:
                    self._helpers.close()
                    self._helpers = None
        finally:
            self._drain_threads()

    def _drain_threads(self) -> None:
        if self._pool is None:
            return
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _read_range(self, pack_id: str, offset: int, length: int) -> bytes:
        return self.repo.backend.get("data/" + pack_id, offset, length)

    def _count_planned(self, size: int) -> None:
        files, nbytes = self._planned
        self._planned = (files + 1, nbytes + size)

    def _count_done(self, size: int) -> None:
        with self._lock:
            self.progress.items_done += 1
            self.progress.bytes_done += size

    # the contents' reporter (threads, or this thread for helpers' answers)
    def restored(self, job: FileJob, problems: list[str] | None = None) -> None:
        self._count_restored(1, job.size)
        if problems:
            self._problems(job.final, problems)

    def _count_restored(self, files: int, size: int) -> None:
        with self._lock:  # one lock round trip per file (or per helper's batch)
            self.summary.files += files
            self.summary.bytes_written += size
            self.progress.items_done += files
            self.progress.bytes_done += size

    def failed(self, job: FileJob, reason: str) -> None:
        job.failed = job.failed or reason  # a hard link to it is not made
        self._error(job.final, reason)
        with self._lock:
            self.summary.files_failed += 1
            self.progress.items_done += 1
            self.progress.bytes_done += job.size

# ------------------------------------------------------------------ the rest
    def _finish_links(self) -> None:
        for dest, key in self._links:
            first = self._first_of_inode[key]
            if first.failed:
                self._error(dest, f"not restored: hard link of {first.final}, which failed")
                continue
            tmp = self._tmp_name(dest)
            try:
                os.link(self._short(first.final), self._short(tmp))
                os.rename(self._short(tmp), self._short(dest))
                self.summary.hardlinks += 1
            except OSError as exc:
                self._contents.unlink_quietly(tmp)
                self._error(dest, f"cannot create hard link: {exc.strerror}")

    def _restore_other(self, dest: str, node: dict[str, Any], made: bool) -> None:
        kind = node.get("type")
        tmp = self._tmp_name(dest, made)
        mode = int(node.get("mode", 0o644))
        try:
            if kind == "symlink":
                os.symlink(node["target"], self._short(tmp))
            elif kind == "fifo":
                os.mkfifo(self._short(tmp), mode)
            elif kind in ("chardev", "blockdev"):
                if not IS_ROOT:
                    self._warn(dest, f"{kind} not recreated (needs root)")
                    return
                fmt = stat.S_IFCHR if kind == "chardev" else stat.S_IFBLK
                os.mknod(self._short(tmp), mode | fmt, int(node.get("rdev", 0)))
            else:
                self._warn(dest, f"{kind} not recreated")
                return
        except OSError as exc:
            self._error(dest, f"cannot create {kind}: {exc.strerror}")
            return
        problems = apply_path(self._short(tmp), node, symlink=kind == "symlink")
        try:
            if tmp != dest:
                os.rename(self._short(tmp), self._short(dest))
        except OSError as exc:
            self._contents.unlink_quietly(tmp)
            self._error(dest, f"cannot move into place: {exc.strerror}")
            return
        self._problems(dest, problems)

    def _problems(self, path: str, problems: Iterable[str]) -> None:
        for p in problems:
            self._warn(path, p)

    def _shown(self, path: str) -> str:
        """A path as the user knows it: below a new directory still under its temporary name, the
        real name."""
        at = path.find("/.cbr-restore-" + self._run_tag + "-")
        if at < 0:
            return path
        end = path.find("/", at + 1)
        top = path if end < 0 else path[:end]
        final = self._tops.get(top)
        return path if final is None else final + path[len(top):]

    def _warn(self, path: str, message: str) -> None:
        path = self._shown(path)
        log.warning("%s: %s", path, message)
        with self._lock:
            self.summary.warnings.append(f"{path}: {message}")

    def _error(self, path: str, message: str) -> None:
        path = self._shown(path)
        log.error("%s: %s", path, message)
        with self._lock:
            self.summary.errors.append(f"{path}: {message}")


def _average_blob(items: list[Item]) -> float:
    blobs = sizes = 0
    for item in items:
        if isinstance(item, Read):
            blobs += len(item.blobs)
            sizes += sum(wanted.loc.raw_length for wanted in item.blobs)
    return sizes / blobs if blobs else 0.0


def restore_snapshot(repo: Any, snapshot: Snapshot, target: str, *, paths: Sequence[str] = (),
                     overwrite: str = "always", dry_run: bool = False, threads: int = 0,
                     processes: int | str = "auto", progress: Progress | None = None,
                     include: Sequence[str] = (),
                     exclude: Sequence[str] = ()) -> RestoreSummary:
    """Restore ``snapshot`` (or ``paths`` inside it) below ``target``; see the module docstring.
    ``progress`` counts files and bytes as they are done (totals from the snapshot's summary for a
    whole snapshot, else once the walk has found every file). ``include`` / ``exclude``: patterns (see
    :mod:`cbr_agent.restore.select`)."""
    from cbr_agent.restore.select import compile_patterns, exclude_predicate, include_matches

    cap_malloc_arenas()
    excluded = exclude_predicate(compile_patterns(exclude, "--exclude"), snapshot.paths)
    whole = not any(p.strip("/") for p in paths) and not include and not exclude
    if progress is not None and whole:
        summary = snapshot.summary or {}
        if "bytes_total" in summary:
            progress.items_total = sum(int(summary.get(k, 0)) for k in
                                       ("files_new", "files_changed", "files_unchanged"))
            progress.bytes_total = int(summary["bytes_total"])
    restorer = Restorer(repo, target, overwrite=overwrite, dry_run=dry_run, threads=threads,
                        processes=processes, progress=progress)
    if not include:
        return restorer.run(snapshot.tree, paths, excluded=excluded)
    if paths:
        missing = restorer._missing(snapshot.tree, normal_paths(paths))
        if missing:
            raise RestoreError(f"not in the snapshot: {', '.join(missing)}",
                               hint="list the snapshot with 'cbr-agent ls SNAPSHOT'")
    matches = include_matches(repo, snapshot.tree, snapshot.paths, compile_patterns(include, "--include"),
                              paths or ("/",), excluded)
    if not matches:
        raise RestoreError("nothing in the snapshot matches the --include patterns",
                           hint="try them with 'cbr-agent find PATTERN'")
    return restorer.run(snapshot.tree, matches, excluded=excluded, check_missing=False)
