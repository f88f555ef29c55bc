"""The backup pipeline: walk, change detection, threaded reading, trees built bottom-up.

Threads::

    walker (caller's thread)  sorted scandir + lstat, excludes, one-file-system, change detection
        | bounded queue of files to read
    reader threads            open (O_NOATIME, O_NOFOLLOW), chunk, hash, dedup, writer.add
        | chunks of large files, bounded by bytes in flight
    blob pool threads         writer.add (compress + encrypt) so one big file uses every core

A directory's tree is built as soon as all its entries are resolved, by whichever thread resolved the
last one; its node then resolves a slot in the parent's listing. Memory is bounded by the queues,
the byte budgets and the directories still waiting for files.

A directory whose listing fingerprint (names and stat fields of every entry) equals the one in the
files cache reuses its cached nodes without comparing files one by one; when its subdirectories'
trees are unchanged too, even its tree blob id is reused without encoding anything.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import blake3

from cbr_agent.backup.blobpool import BlobPool
from cbr_agent.backup.filesaver import FileProblem, FileSaver, describe
from cbr_agent.backup.filescache import DirRecord, FilesCache
from cbr_agent.backup.longpath import close_all, short
from cbr_agent.backup.nodes import TYPE_BY_FMT, Node, node_from_stat, read_xattrs, same_file
from cbr_agent.errors import Cancelled, RepositoryError
from cbr_agent.pathrules import ExcludeMatcher
from cbr_agent.repository import decode_tree, encode_tree

log = logging.getLogger(__name__)

#: a file whose ctime is this close to the moment it was looked at may change again unnoticed
#: (same timestamp tick); such entries are never trusted from the cache
RACY_NS = 100_000_000
READ_QUEUE = 64
#: files up to this size are read in batches of BATCH_FILES files or BATCH_BYTES bytes per hand-off
BATCH_FILE_MAX = 256 * 1024
BATCH_FILES = 64
BATCH_BYTES = 4 * 1024 * 1024
#: one thread for batches of small files: measured, a second one halves the speed (GIL contention)
SMALL_READERS = 1


@dataclass
class BackupStats:
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    dirs: int = 0
    others: int = 0
    bytes_read: int = 0
    bytes_total: int = 0      # size of every regular file in the snapshot
    bytes_done: int = 0       # size of the files handled so far (read or reused)
    warnings: list[str] = field(default_factory=list)

    @property
    def files_done(self) -> int:
        return self.files_new + self.files_changed + self.files_unchanged


@dataclass
class Root:
    """One backup path with its exclude matcher."""

    path: str
    matcher: ExcludeMatcher


class DirTask:
    """A directory whose tree is being built."""

    __slots__ = (
        "fingerprint",
        "ident",
        "index",
        "node",
        "parent",
        "path",
        "pending",
        "record",
        "reuse",
        "scan_ns",
        "slots",
        "trusted",
        "walked",
    )

    def __init__(self, path: str, node: Node, parent: DirTask | None, index: int,
                 ident: tuple[int, int]) -> None:
        self.path = path
        self.ident = ident
        self.node = node
        self.parent = parent
        self.index = index
        self.slots: list[Node | None] = []
        self.pending = 0
        self.walked = False
        self.record: DirRecord | None = None
        self.reuse = False          # the listing matched the cache: file nodes come from the record
        self.fingerprint = b""
        self.trusted = False
        self.scan_ns = 0


@dataclass
class _Prev:
    """What a directory held before: nodes by name and when that listing was taken."""

    nodes: dict[str, Node]
    scan_ns: int


def join(parent: str, name: str) -> str:
    return parent + name if parent.endswith("/") else parent + "/" + name


_FIELDS = struct.Struct("<QQQQqqQQQ").pack


def listing_fingerprint(entries: Sequence[tuple[str, os.stat_result]]) -> tuple[bytes, int]:
    """A digest of the names and stat fields of a listing, and the newest ctime in it."""
    parts = []
    newest = 0
    for _name, st in entries:
        try:
            parts.append(_FIELDS(st.st_mode, st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns,
                                 st.st_ctime_ns, st.st_uid, st.st_gid, st.st_nlink))
        except struct.error:  # a value out of 64-bit range: still a faithful, if slower, digest
            parts.append(repr(tuple(st)).encode() + repr((st.st_mtime_ns, st.st_ctime_ns)).encode())
        if st.st_ctime_ns > newest:
            newest = st.st_ctime_ns
    digest = blake3.blake3("\0".join(name for name, _st in entries).encode("utf-8", "surrogateescape"))
    digest.update(b"".join(parts))
    return digest.digest(), newest


class Archiver:
    """Backs up a set of roots into one tree; :meth:`run` returns the root tree id."""

    def __init__(
        self,
        repo: Any,
        writer: Any,
        *,
        cache: FilesCache | None,
        parent_tree: str | None,
        parent_time_ns: int,
        one_file_system: bool,
        cancel: threading.Event | None = None,
        readers: int = 2,
        blob_threads: int = 2,
        checkpoint: Callable[[], None] | None = None,
        checkpoint_interval: float = 60.0,
    ) -> None:
        self.repo = repo
        self.writer = writer
        self.cache = cache
        self.parent_tree = parent_tree
        self.parent_time_ns = parent_time_ns
        self.one_file_system = one_file_system
        self.cancel = cancel or threading.Event()
        self.stats = BackupStats()
        self._lock = threading.Lock()
        self._fatal: BaseException | None = None
        # large files go to `readers` threads; batches of small files to one thread of their own:
        # small files are mostly Python work under the GIL, where more threads only add contention
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=READ_QUEUE)
        self._small_queue: queue.Queue[Any] = queue.Queue(maxsize=READ_QUEUE)
        self._pool = BlobPool(writer, threads=blob_threads)
        self._saver = FileSaver(repo, writer, self._pool, should_stop=self._should_stop)
        self._nreaders = readers
        self._root_tree: str | None = None
        self._done = threading.Event()
        self._empty_tree: str | None = None
        self._checkpoint = checkpoint
        self._checkpoint_interval = checkpoint_interval
        self._batch: list[tuple[Any, ...]] = []
        self._batch_bytes = 0

    # ------------------------------------------------------------------ public
    def run(self, roots: Sequence[Root]) -> str:
        queues = [self._small_queue] * SMALL_READERS + [self._queue] * self._nreaders
        readers = [threading.Thread(target=self._reader_loop, args=(q,), name=f"reader-{i}", daemon=True)
                   for i, q in enumerate(queues)]
        for t in readers:
            t.start()
        try:
            self._walk_all(roots)
            self._flush_batch()
            while not self._done.wait(0.2):
                self._raise_if_stopped()
                self._maybe_checkpoint()
            self._raise_if_stopped()
            self._pool.drain()
        finally:
            for q in queues:
                q.put(None)
            for t in readers:
                t.join()
            self._pool.close()
            close_all()
        if self._fatal is not None:
            raise self._fatal
        assert self._root_tree is not None
        return self._root_tree

    def warn(self, message: str) -> None:
        # the caller reports the collected warnings (CLI, daemon); log them only for debugging
        log.debug("warning: %s", message)
        with self._lock:
            self.stats.warnings.append(message)

    # ------------------------------------------------------------------ control
    def _should_stop(self) -> bool:
        return self.cancel.is_set() or self._fatal is not None

    def _raise_if_stopped(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._pool.error is not None:
            raise self._pool.error
        if self.cancel.is_set():
            raise Cancelled("backup cancelled; no snapshot was written")

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._fatal is None:
                self._fatal = exc
        self.cancel.set()

    # ------------------------------------------------------------------ tree assembly
    def _resolve(self, task: DirTask, index: int, node: Node | None) -> None:
        """Fill one slot of ``task``; build trees upwards as directories complete."""
        while True:
            with self._lock:
                task.slots[index] = node
                task.pending -= 1
                ready = task.walked and task.pending == 0
            if not ready:
                return
            node = self._finish_dir(task)
            if task.parent is None:
                self._root_tree = node["subtree"]
                self._done.set()
                return
            task, index = task.parent, task.index

    def _walked(self, task: DirTask) -> None:
        with self._lock:
            task.walked = True
            ready = task.pending == 0
        if ready:
            # treat completion like the resolution of a virtual last slot
            with self._lock:
                task.pending += 1
                task.slots.append(None)
            self._resolve(task, len(task.slots) - 1, None)

    def _add_tree(self, nodes: list[Node]) -> str:
        data = encode_tree(nodes)
        blob_id = self.repo.blob_id(data)
        self.writer.add(blob_id, data, kind="tree")
        return blob_id.hex()

    def _finish_dir(self, task: DirTask) -> Node:
        record = task.record
        node = dict(task.node)
        if task.reuse:
            assert record is not None
            fresh_subdirs = {n["name"]: n for n in task.slots if n is not None}
            cached = record.subtrees()
            if all(cached.get(name) == n["subtree"] for name, n in fresh_subdirs.items()) \
                    and len(cached) == len(fresh_subdirs):
                node["subtree"] = record.tree
                with self._lock:
                    self.stats.dirs += 1
                if self.cache is not None:
                    self.cache.touch(os.fsencode(task.path))
                return node
            nodes = [fresh_subdirs.get(n["name"], n) if n.get("type") == "dir" else n
                     for n in record.nodes]
            nodes = [n for n in nodes if n.get("type") != "dir" or n["name"] in fresh_subdirs]
        else:
            nodes = [n for n in task.slots if n is not None]
        tree_id = self._add_tree(nodes)
        node["subtree"] = tree_id
        with self._lock:
            self.stats.dirs += 1
        if self.cache is not None and task.scan_ns:
            blobs = b"".join(bytes.fromhex(c) for n in nodes if n.get("type") == "file"
                             for c in n.get("content") or ())
            files = [n for n in nodes if n.get("type") == "file"]
            record = DirRecord.build(
                scan_ns=task.scan_ns,
                fingerprint=task.fingerprint if task.trusted else b"",
                tree=tree_id,
                nodes=nodes,
                blobs=blobs,
                files=len(files),
                size=sum(n.get("size", 0) for n in files),
            )
            self.cache.stage(os.fsencode(task.path), record)
        return node

    # ------------------------------------------------------------------ walking
    def _walk_all(self, roots: Sequence[Root]) -> None:
        """Intermediate directories (``/``, ``/home`` for ``/home/a``) hold only the way to each root."""
        trie: dict[str, Any] = {}
        for root in roots:
            level = trie
            parts = [p for p in root.path.split("/") if p]
            for part in parts[:-1]:
                level = level.setdefault(part, {})
                if isinstance(level, Root):
                    break
            else:
                if parts:
                    level[parts[-1]] = root
                else:
                    trie = {"": root}
        self._last_checkpoint = time.monotonic()
        if "" in trie:  # the root directory itself is a backup path
            root = trie[""]
            st = os.lstat("/")
            top = DirTask("/", node_from_stat("", st), None, 0, (st.st_dev, st.st_ino))
            self._walk(top, root, st.st_dev, self._prev_of_subtree(self.parent_tree, self.parent_time_ns))
            return
        st = os.lstat("/")
        top = DirTask("/", node_from_stat("", st), None, 0, (st.st_dev, st.st_ino))
        self._virtual_dir(top, trie, self._prev_of_subtree(self.parent_tree, self.parent_time_ns))

    def _virtual_dir(self, task: DirTask, children: dict[str, Any], prev: _Prev | None) -> None:
        for name in sorted(children):
            child = children[name]
            path = join(task.path, name)
            try:
                st = os.lstat(path)
            except OSError as exc:
                self.warn(f"{path}: cannot back up: {describe(exc)}")
                continue
            prev_node = prev.nodes.get(name) if prev else None
            index = self._new_slot(task)
            if isinstance(child, Root) and not stat.S_ISDIR(st.st_mode):
                self._entry(task, index, path, name, st, prev)
                continue
            if not stat.S_ISDIR(st.st_mode):
                self.warn(f"{path}: not a directory; paths below it are skipped")
                self._resolve(task, index, None)
                continue
            sub = DirTask(path, self._dir_node(path, name, st), task, index, (st.st_dev, st.st_ino))
            sub_prev = self._prev_of_node(prev_node, prev)
            if isinstance(child, Root):
                self._walk(sub, child, st.st_dev, sub_prev)
            else:
                self._virtual_dir(sub, child, sub_prev)
        self._walked(task)

    def _new_slot(self, task: DirTask) -> int:
        with self._lock:
            task.slots.append(None)
            task.pending += 1
            return len(task.slots) - 1

    def _walk(self, top: DirTask, root: Root, root_dev: int, top_prev: _Prev | None) -> None:
        """Depth-first over one backup path, with an explicit stack (deep trees need no recursion)."""
        stack: list[tuple[DirTask, _Prev | None, tuple[tuple[int, int], ...]]] = [(top, top_prev, ())]
        while stack:
            task, prev, ancestors = stack.pop()
            self._raise_if_stopped()
            self._maybe_checkpoint()
            subdirs = self._scan_dir(task, prev, root, root_dev, ancestors)
            stack.extend(reversed(subdirs))
            self._walked(task)

    def _scan_dir(self, task: DirTask, prev: _Prev | None, root: Root, root_dev: int,
                  ancestors: tuple[tuple[int, int], ...]) -> list[Any]:
        path = task.path
        scan_ns = time.time_ns()
        entries = self._list(path, root.matcher)
        fingerprint, newest = listing_fingerprint(entries)
        task.fingerprint = fingerprint
        task.trusted = newest < scan_ns - RACY_NS
        task.scan_ns = scan_ns
        record = self.cache.get(os.fsencode(path)) if self.cache is not None else None
        task.record = record
        here = (*ancestors, task.ident)
        subdirs: list[Any] = []
        if record is not None and record.fingerprint == fingerprint and self._blobs_present(record):
            task.reuse = True
            with self._lock:
                self.stats.files_unchanged += record.files
                self.stats.bytes_total += record.size
                self.stats.bytes_done += record.size
            cached_nodes: dict[str, Node] | None = None
            for name, st in entries:
                if not stat.S_ISDIR(st.st_mode):
                    continue
                if cached_nodes is None:
                    cached_nodes = {n["name"]: n for n in record.nodes}
                sub = self._subdir(task, join(path, name), name, st, root_dev, here,
                                   cached_nodes.get(name), _Prev(cached_nodes, record.scan_ns))
                if sub is not None:
                    subdirs.append(sub)
            return subdirs
        if record is not None:
            prev = _Prev({n["name"]: n for n in record.nodes}, record.scan_ns)
        else:
            prev = _materialize(prev)
        for name, st in entries:
            child = join(path, name)
            if stat.S_ISDIR(st.st_mode):
                prev_node = prev.nodes.get(name) if prev is not None else None
                sub = self._subdir(task, child, name, st, root_dev, here, prev_node, prev)
                if sub is not None:
                    subdirs.append(sub)
            else:
                self._entry(task, self._new_slot(task), child, name, st, prev)
        return subdirs

    def _list(self, path: str, matcher: ExcludeMatcher) -> list[tuple[str, os.stat_result]]:
        entries: list[tuple[str, os.stat_result]] = []
        excluding = bool(matcher)
        try:
            with os.scandir(short(path)) as it:
                for entry in it:
                    name = entry.name
                    if excluding and matcher.excluded(join(path, name)):
                        continue
                    try:
                        entries.append((name, entry.stat(follow_symlinks=False)))
                    except FileNotFoundError:
                        continue  # vanished between readdir and lstat: as if it never was
                    except OSError as exc:
                        self.warn(f"{join(path, name)}: cannot stat: {describe(exc)}")
        except OSError as exc:
            self.warn(f"{path}: cannot list directory: {describe(exc)}")
        entries.sort(key=lambda e: e[0])
        return entries

    def _blobs_present(self, record: DirRecord) -> bool:
        blobs = record.blobs
        ids = [bytes.fromhex(record.tree)] + [blobs[i:i + 32] for i in range(0, len(blobs), 32)]
        return self._all_present(ids)

    def _all_present(self, ids: list[bytes]) -> bool:
        bulk = getattr(self.repo, "has_all_blobs", None)
        if bulk is not None:
            return bool(bulk(ids))
        return all(map(self.repo.has_blob, ids))

    def _dir_node(self, path: str, name: str, st: os.stat_result) -> Node:
        node = node_from_stat(name, st)
        self._add_xattrs(node, path)
        return node

    def _add_xattrs(self, node: Node, path: str) -> None:
        try:
            xattrs = read_xattrs(short(path))
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError):
                self.warn(f"{path}: cannot read extended attributes: {describe(exc)}")
            return
        if xattrs:
            node["xattrs"] = xattrs

    def _prev_of_subtree(self, subtree: str | None, scan_ns: int) -> _Prev | None:
        if not subtree:
            return None
        try:
            nodes = decode_tree(self.repo.load_blob(bytes.fromhex(subtree)))
        except (RepositoryError, ValueError) as exc:
            log.warning("cannot read the parent snapshot's tree %s (%s); reading files again",
                        subtree, exc)
            return None
        return _Prev({n["name"]: n for n in nodes}, scan_ns)

    def _prev_of_node(self, node: Node | None, prev: _Prev | None) -> _Prev | None:
        if node is None or prev is None or node.get("type") != "dir":
            return None
        return self._prev_of_subtree(node.get("subtree"), prev.scan_ns)

    def _subdir(self, task: DirTask, path: str, name: str, st: os.stat_result, root_dev: int,
                ancestors: tuple[tuple[int, int], ...], prev_node: Node | None,
                prev: _Prev | None) -> Any:
        """A subdirectory entry: a mount point, a loop, or a directory to walk later."""
        index = self._new_slot(task)
        if prev_node is not None and prev_node.get("type") == "dir" and same_file(prev_node, st) \
                and prev_node.get("ctime_ns", 0) < (prev.scan_ns if prev else 0) - RACY_NS:
            node = {k: v for k, v in prev_node.items() if k != "subtree"}
        else:
            node = self._dir_node(path, name, st)
        if self.one_file_system and st.st_dev != root_dev:
            node["subtree"] = self._empty()
            self._resolve(task, index, node)
            return None
        if (st.st_dev, st.st_ino) in ancestors:
            self.warn(f"{path}: directory loop (same directory as one of its parents); not descended")
            self._resolve(task, index, None)
            return None
        sub = DirTask(path, node, task, index, (st.st_dev, st.st_ino))
        return (sub, self._lazy_prev(prev_node, prev), ancestors)

    def _lazy_prev(self, prev_node: Node | None, prev: _Prev | None) -> _Prev | None:
        # the subdirectory's own cache row wins; the parent tree is only read when there is none
        return _LazyPrev(self, prev_node, prev) if prev_node is not None else None  # type: ignore[return-value]

    def _empty(self) -> str:
        if self._empty_tree is None:
            self._empty_tree = self._add_tree([])
        return self._empty_tree

    def _entry(self, task: DirTask, index: int, path: str, name: str, st: os.stat_result,
               prev: _Prev | None) -> None:
        """One entry (not a directory) of a directory that is compared file by file."""
        prev_node = prev.nodes.get(name) if prev is not None else None
        mode = st.st_mode
        trusted = (
            prev_node is not None
            and prev_node.get("ctime_ns", 0) < prev.scan_ns - RACY_NS  # type: ignore[union-attr]
            and same_file(prev_node, st)
        )
        if stat.S_ISREG(mode):
            if trusted and prev_node.get("type") == "file" and self._content_present(prev_node):  # type: ignore[union-attr]
                with self._lock:
                    self.stats.files_unchanged += 1
                    self.stats.bytes_total += st.st_size
                    self.stats.bytes_done += st.st_size
                self._resolve(task, index, prev_node)
                return
            self._queue_file((task, index, path, name, st, prev_node is not None), st.st_size)
            return
        if trusted and prev_node.get("type") == TYPE_BY_FMT.get(stat.S_IFMT(mode)):  # type: ignore[union-attr]
            self._resolve(task, index, prev_node)
            return
        node = node_from_stat(name, st)
        if stat.S_ISLNK(mode):
            try:
                node["target"] = os.readlink(short(path))
            except OSError as exc:
                if not isinstance(exc, FileNotFoundError):
                    self.warn(f"{path}: cannot read link: {describe(exc)}")
                self._resolve(task, index, None)
                return
        self._add_xattrs(node, path)
        with self._lock:
            self.stats.others += 1
        self._resolve(task, index, node)

    def _content_present(self, node: Node) -> bool:
        return self._all_present([bytes.fromhex(c) for c in node.get("content") or ()])

    # ------------------------------------------------------------------ reading
    def _queue_file(self, item: tuple[Any, ...], size: int) -> None:
        """Small files travel in batches: one queue hand-off per batch, not per file."""
        if size > BATCH_FILE_MAX:
            self._put(self._queue, item)
            return
        self._batch.append(item)
        self._batch_bytes += size
        if len(self._batch) >= BATCH_FILES or self._batch_bytes >= BATCH_BYTES:
            self._flush_batch()

    def _flush_batch(self) -> None:
        if self._batch:
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            self._put(self._small_queue, batch)

    def _put(self, target: queue.Queue[Any], item: Any) -> None:
        while True:
            self._raise_if_stopped()
            try:
                target.put(item, timeout=0.2)
                return
            except queue.Full:
                self._maybe_checkpoint()

    def _reader_loop(self, source: queue.Queue[Any]) -> None:
        while True:
            item = source.get()
            if item is None:
                return
            items = item if isinstance(item, list) else [item]
            delta = BackupStats()
            results: list[tuple[DirTask, int, Node | None]] = []
            for one in items:
                node = None
                if not self._should_stop():
                    try:
                        node = self._read_file(delta, *one)
                    except BaseException as exc:  # repository, crypto or a bug: the backup stops
                        self._fail(exc)
                results.append((one[0], one[1], node))
            with self._lock:
                s = self.stats
                s.files_new += delta.files_new
                s.files_changed += delta.files_changed
                s.bytes_read += delta.bytes_read
                s.bytes_total += delta.bytes_total
                s.bytes_done += delta.bytes_done
            for task, index, node in results:
                self._resolve_quietly(task, index, node)

    def _resolve_quietly(self, task: DirTask, index: int, node: Node | None) -> None:
        try:
            self._resolve(task, index, node)
        except BaseException as exc:
            self._fail(exc)

    def _read_file(self, delta: BackupStats, task: DirTask, index: int, path: str, name: str,
                   st: os.stat_result, existed: bool) -> Node | None:
        saved = None
        for attempt in (1, 2):
            try:
                saved = self._saver.save(path, st)
            except FileProblem as problem:
                if self._should_stop():
                    return None
                self.warn(f"{path}: not backed up: {problem}")
                return None
            if not saved.changed:
                break
            if attempt == 1:
                try:
                    st = os.lstat(short(path))
                except OSError as exc:
                    self.warn(f"{path}: not backed up: {describe(exc)}")
                    return None
                if not stat.S_ISREG(st.st_mode):
                    self.warn(f"{path}: not backed up: changed type during backup")
                    return None
            else:
                self.warn(f"{path}: changed while being read; the backed-up copy may be inconsistent")
        assert saved is not None
        node = node_from_stat(name, saved.stat_before)
        node["size"] = saved.size
        node["content"] = saved.content
        if saved.xattrs:
            node["xattrs"] = saved.xattrs
        elif saved.xattr_error:
            self.warn(f"{path}: cannot read extended attributes: {saved.xattr_error}")
        if existed:
            delta.files_changed += 1
        else:
            delta.files_new += 1
        delta.bytes_read += saved.bytes_read
        delta.bytes_total += saved.size
        delta.bytes_done += saved.size
        return node

    # ------------------------------------------------------------------ checkpoints
    def _maybe_checkpoint(self) -> None:
        if self._checkpoint is None:
            return
        now = time.monotonic()
        if now - self._last_checkpoint >= self._checkpoint_interval:
            self._last_checkpoint = now
            self._checkpoint()


class _LazyPrev:
    """The previous listing of a subdirectory, read from the parent tree only if needed."""

    def __init__(self, archiver: Archiver, node: Node | None, prev: _Prev | None) -> None:
        self.archiver, self.node, self.prev = archiver, node, prev
        self.value: _Prev | None = None
        self.loaded = False

    def get(self) -> _Prev | None:
        if not self.loaded:
            self.value = self.archiver._prev_of_node(self.node, self.prev)
            self.loaded = True
        return self.value


def _materialize(prev: Any) -> _Prev | None:
    if isinstance(prev, _LazyPrev):
        return prev.get()
    return prev
