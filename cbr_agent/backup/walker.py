"""The directory walk (caller's thread): sorted listings, excludes, one-file-system, change detection.

Unchanged entries resolve their slot at once (from the files cache or the parent snapshot); regular
files to read go to :class:`~cbr_agent.backup.readers.Readers`; directories are walked depth-first with an
explicit stack (deep trees need no recursion).
"""

from __future__ import annotations

import bisect
import itertools
import os
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cbr_agent.backup.changehint import BELOW, CLEAN, DEGRADED, ChangeHint
from cbr_agent.backup.filesaver import describe
from cbr_agent.backup.filescache import DirRecord, FilesCache
from cbr_agent.backup.keptlistings import KeptListings
from cbr_agent.backup.listing import join, list_dir, list_dir_reusing, listing_fingerprint
from cbr_agent.backup.previous import (
    RACY_NS,
    LazyPrev,
    ListingNodes,
    Prev,
    kept,
    kept_nodes,
    materialize,
    prev_listing,
    prev_of_node,
    prev_of_subtree,
)
from cbr_agent.backup.readers import FileItem
from cbr_agent.backup.runstate import RunState
from cbr_agent.backup.treesaver import DirTask, TreeAssembler
from cbr_agent.fs.longpath import LongPaths
from cbr_agent.fs.nodes import TYPE_BY_FMT, Node, node_from_stat, read_xattrs, same_file
from cbr_agent.pathrules import ExcludeMatcher
from cbr_agent.repository.tree import (
    NO_TOTALS,
    TOTALS,
    AnyNode,
    EncodedListing,
    EncodedNode,
    decode_node,
    totals_of,
)

Ancestors = tuple[tuple[int, int], ...]
#: a directory still to walk: its task, its previous listing, the (dev, ino) of its parents and whether
#: the change hint (the daemon's journal) speaks for it
Pending = tuple[DirTask, "Prev | LazyPrev | None", Ancestors, bool]


@dataclass
class Root:
    """One backup path with its exclude matcher."""

    path: str
    matcher: ExcludeMatcher


class WalkedRepository(Protocol):
    """What the walker asks of the repository: the parent snapshot's trees, and whether the blobs a files
    cache row names are all still stored."""

    def load_blob(self, blob_id: bytes) -> bytes: ...

    def has_all_blobs(self, blob_ids: Iterable[bytes]) -> bool: ...


class Walker:
    def __init__(self, repo: WalkedRepository, cache: FilesCache | None, state: RunState,
                 trees: TreeAssembler, *, one_file_system: bool, queue_file: Callable[[FileItem, int], None],
                 tick: Callable[[], None], longpaths: LongPaths, hint: ChangeHint | None = None,
                 listings: KeptListings | None = None) -> None:
        self.repo = repo
        self.longpaths = longpaths      # the run's: paths longer than PATH_MAX
        self.hint = hint                # which directories changed, or None: walk everything
        self.listings = listings        # the daemon's, of directories earlier journal-led backups edited
        self.cache = cache
        self.state = state
        self.trees = trees
        self.one_file_system = one_file_system
        self.queue_file = queue_file    # a file to read, and its size
        self.tick = tick                # once per directory: stop if asked, checkpoint when due

    def walk_all(self, roots: Sequence[Root], parent_tree: str | None, parent_time_ns: int) -> None:
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
        st = os.lstat("/")
        top = DirTask("/", node_from_stat("", st), None, 0, (st.st_dev, st.st_ino))
        prev = prev_of_subtree(self.repo, parent_tree, parent_time_ns)
        if "" in trie:  # the root directory itself is a backup path
            self._walk(top, trie[""], st.st_dev, prev)
        else:
            self._virtual_dir(top, trie, prev)

    def _virtual_dir(self, task: DirTask, children: dict[str, Any], prev: Prev | None) -> None:
        for name in sorted(children):
            child = children[name]
            path = join(task.path, name)
            try:
                st = os.lstat(path)
            except OSError as exc:
                self.state.warn(f"{path}: cannot back up: {describe(exc)}")
                continue
            prev_node = prev.nodes.get(name) if prev else None
            index = self.trees.new_slots(task, 1)
            if isinstance(child, Root) and not stat.S_ISDIR(st.st_mode):
                self._entry(task, index, path, name, st, prev)
                continue
            if not stat.S_ISDIR(st.st_mode):
                self.state.warn(f"{path}: not a directory; paths below it are skipped")
                self.trees.resolve(task, index, None)
                continue
            sub = DirTask(path, self._dir_node(path, name, st), task, index, (st.st_dev, st.st_ino))
            sub_prev = prev_of_node(self.repo, prev_node, prev)
            if isinstance(child, Root):
                self._walk(sub, child, st.st_dev, sub_prev)
            else:
                self._virtual_dir(sub, child, sub_prev)
        self.trees.walked(task)

    def _walk(self, top: DirTask, root: Root, root_dev: int, top_prev: Prev | None) -> None:
        journal = self.hint is not None and top_prev is not None and not self.hint.full(root.path)
        if journal:
            self.state.journal_roots += 1
        stack: list[Pending] = [(top, top_prev, (), journal)]
        while stack:
            task, prev, ancestors, journal = stack.pop()
            self.tick()
            subdirs = None
            if journal:
                assert self.hint is not None
                state = self.hint.state(task.path)
                if state == DEGRADED:
                    journal = False
                elif state in (BELOW, CLEAN):  # its own entries did not change: none named
                    subdirs = self._unlisted_dir(task, self._journal_prev(task, prev), frozenset(), root,
                                                 root_dev, ancestors)
                else:
                    changed = self.hint.changed_names(task.path)
                    if changed is not None:
                        before = self._journal_prev(task, prev)
                        if self.hint.names_complete:
                            subdirs = self._unlisted_dir(task, before, changed, root, root_dev, ancestors)
                        if subdirs is None:
                            subdirs = self._named_dir(task, before, changed, root, root_dev, ancestors)
            if subdirs is None:
                subdirs = self._scan_dir(task, prev, root, root_dev, ancestors, journal)
            stack.extend(reversed(subdirs))
            self.trees.walked(task)

    def _journal_prev(self, task: DirTask, prev: Prev | LazyPrev | None) -> Prev | None:
        """What a directory held in the parent snapshot, for the journal: the listing of the very tree the
        parent snapshot has for it, kept by the daemon or in its files cache row (no tree blob read,
        decrypted and decoded, no object per entry), else the parent's tree itself."""
        if isinstance(prev, LazyPrev) and not prev.loaded and prev.node is not None and prev.prev is not None:
            subtree = prev.node.get("subtree")
            listing = self._listing_of(task.path, subtree) if subtree else None
            if listing is not None:
                return Prev(ListingNodes(listing), prev.prev.scan_ns)
        return materialize(prev)

    def _listing_of(self, path: str, tree_id: str) -> EncodedListing | None:
        if self.listings is not None:
            listing = self.listings.get(path, tree_id)
            if listing is not None:
                return listing
        if self.cache is not None:
            record = self.cache.get(os.fsencode(path))
            if record is not None and record.tree == tree_id:
                return record.listing()
        return None

    def _unlisted_dir(self, task: DirTask, prev: Prev | None, changed: frozenset[str], root: Root,
                      root_dev: int, ancestors: Ancestors) -> list[Pending] | None:
        """A directory where the journal named every entry that changed, came or went (none: its own
        entries did not change, something below them did): not listed. The named entries, and the
        subdirectories below which something changed, are looked at as in a full scan; every other entry
        is the previous node as it is, taken with its neighbours as the previous listing's columns. None:
        list it after all (a subdirectory is gone or another one: the journal missed something)."""
        assert self.hint is not None
        if prev is None:
            return None
        path = task.path
        before = prev_listing(prev)
        old = before.listing
        looked: dict[str, os.stat_result] = {}
        for name in changed:
            child = join(path, name)
            if root.matcher and root.matcher.excluded(child):
                continue
            try:
                looked[name] = os.lstat(self.longpaths.short(child))
            except FileNotFoundError:
                continue  # went: left out
            except OSError as exc:
                self.state.warn(f"{child}: cannot stat: {describe(exc)}")
        kept_dirs = []  # nothing changed below them: their previous nodes as they are
        for i in _dir_indexes(old):
            name = old.names[i]
            child = join(path, name)
            if name in changed:
                continue
            if self.hint.state(child) == CLEAN:
                kept_dirs.append(i)
                continue
            try:
                st = os.lstat(self.longpaths.short(child))
            except OSError:
                return None
            if not stat.S_ISDIR(st.st_mode) or st.st_ino != old.inodes[i]:
                return None
            looked[name] = st
        # every previous entry the journal named is replaced (looked at again) or left out (gone)
        named = {i for i in map(before.index, changed | looked.keys()) if i is not None}
        files = old.types.count("file") - sum(old.types[i] == "file" for i in named)
        size = sum(old.sizes) - sum(old.sizes[i] for i in named)
        self._count_kept(before, kept_dirs, files, size)
        if changed:
            with self.state.lock:
                self.state.stats.dirs_scanned += 1
        listing = old.copy()
        for i in sorted((i for i in named if old.names[i] not in looked), reverse=True):
            listing.delete(i)
        for name in sorted(looked.keys() - set(old.names)):  # a stand-in until its slot is resolved
            listing.insert(bisect.bisect_left(listing.names, name), EncodedNode(name, "", None, 0, "", b""))
        order = sorted(looked)
        first = self.trees.add_listing(task, listing, [bisect.bisect_left(listing.names, n) for n in order])
        prev = Prev(before, prev.scan_ns)
        here = (*ancestors, task.ident)
        subdirs: list[Pending] = []
        for index, name in enumerate(order, first):
            st, child = looked[name], join(path, name)
            if stat.S_ISDIR(st.st_mode):
                sub = self._subdir(task, index, child, name, st, root_dev, here, before.get(name), prev, True)
                if sub is not None:
                    subdirs.append(sub)
            else:
                self._entry(task, index, child, name, st, prev)
        return subdirs

    def _count_kept(self, before: ListingNodes, kept_dirs: list[int], files: int, size: int) -> None:
        """Count a journal-led directory's entries taken as they were: ``files`` and ``size`` of its files,
        and the totals of the subdirectories at ``kept_dirs`` (reused unopened)."""
        dirs = 0
        for i in kept_dirs:
            totals = totals_of(decode_node(before.listing.datas[i]))
            if totals is not None:
                files, size, dirs = files + totals.files, size + totals.bytes, dirs + totals.dirs
        self._count_unopened(files, size, dirs, len(kept_dirs))

    def _named_dir(self, task: DirTask, prev: Prev | None, changed: frozenset[str], root: Root,
                   root_dev: int, ancestors: Ancestors) -> list[Pending] | None:
        """A directory where the journal saw which entries changed. It is listed without a stat per
        entry (readdir gives names, types and inode numbers): the entries the journal named, new ones,
        subdirectories and any whose type or inode is not the previous listing's are looked at as in a
        full scan; the others are the previous nodes as they are. Writes no files cache row (it has no
        fingerprint of the whole listing). None: scan it as usual after all."""
        if prev is None:
            return None
        nodes = prev.nodes
        entries = kept_nodes(prev)

        def unchanged(entry: os.DirEntry[str]) -> AnyNode | None:
            node = entries.get(entry.name)
            if node is None or entry.name in changed:
                return None
            inode: int | None
            kind: str | None
            if isinstance(node, EncodedNode):
                inode, kind = node.inode, node.type
            else:
                inode, kind = node.get("inode"), node.get("type")
            if entry.inode() != inode:
                return None
            # readdir's type, as the previous node's (directories and the rare FIFOs and devices are
            # always looked at)
            if entry.is_file(follow_symlinks=False) if kind == "file" else \
                    kind == "symlink" and entry.is_symlink():
                return node
            return None

        path = task.path
        listing = list_dir_reusing(path, root.matcher, self.state.warn, self.longpaths, unchanged)
        with self.state.lock:
            self.state.stats.dirs_scanned += 1
        here = (*ancestors, task.ident)
        subdirs: list[Pending] = []
        kept_slots: list[tuple[DirTask, int, AnyNode | None]] = []
        files = size = 0
        index = self.trees.new_slots(task, len(listing))
        for name, item in listing:
            if not isinstance(item, os.stat_result):
                file_size = _file_size(item)
                if file_size is not None:
                    files += 1
                    size += file_size
                kept_slots.append((task, index, item))
            elif stat.S_ISDIR(item.st_mode):
                sub = self._subdir(task, index, join(path, name), name, item, root_dev, here,
                                   nodes.get(name), prev, True)
                if sub is not None:
                    subdirs.append(sub)
            else:
                self._entry(task, index, join(path, name), name, item, prev)
            index += 1
        self.trees.resolve_many(kept_slots)
        self._count_unopened(files, size, 0, 0)
        return subdirs

    def _count_unopened(self, files: int, size: int, dirs: int, reused: int) -> None:
        """Count what the parent snapshot's trees hold where they are taken unopened: the summary (and
        the CBR backup's size) stays that of the whole snapshot, as a full scan would count it."""
        with self.state.lock:
            s = self.state.stats
            s.files_unchanged += files
            s.bytes_total += size
            s.bytes_done += size
            s.dirs += dirs
            s.dirs_reused += reused

    def _scan_dir(self, task: DirTask, prev: Prev | LazyPrev | None, root: Root, root_dev: int,
                  ancestors: Ancestors, journal: bool = False) -> list[Pending]:
        path = task.path
        scan_ns = time.time_ns()
        entries = list_dir(path, root.matcher, self.state.warn, self.longpaths)
        with self.state.lock:
            self.state.stats.dirs_scanned += 1
        fingerprint, newest = listing_fingerprint(entries)
        task.fingerprint = fingerprint
        task.trusted = newest < scan_ns - RACY_NS
        task.scan_ns = scan_ns
        # led by the journal, the previous state is the parent snapshot's (what the hint counts from):
        # a cache row may be older, from before backups that skipped this directory and changed below it
        record = self.cache.get(os.fsencode(path)) if self.cache is not None and not journal else None
        task.record = record
        here = (*ancestors, task.ident)
        if record is not None and record.fingerprint == fingerprint and self._blobs_present(record):
            return self._reuse_dir(task, record, entries, root_dev, here, journal)
        now = Prev(record.nodes_by_name(), record.scan_ns) if record is not None else materialize(prev)
        subdirs: list[Pending] = []
        index = self.trees.new_slots(task, len(entries))
        # taken from the end of the reversed listing, each stat result is let go once looked at, while
        # the record's nodes are decoded as the listing reaches them: the two are never both whole
        entries.reverse()
        pop = entries.pop
        while entries:
            name, st = pop()
            child = join(path, name)
            if stat.S_ISDIR(st.st_mode):
                prev_node = now.nodes.get(name) if now is not None else None
                sub = self._subdir(task, index, child, name, st, root_dev, here, prev_node, now, journal)
                if sub is not None:
                    subdirs.append(sub)
            else:
                self._entry(task, index, child, name, st, now)
            index += 1
        return subdirs

    def _reuse_dir(self, task: DirTask, record: DirRecord, entries: list[tuple[str, os.stat_result]],
                   root_dev: int, here: Ancestors, journal: bool) -> list[Pending]:
        """The listing matched the cache: file nodes come from the record, only subdirectories are walked."""
        task.reuse = True
        with self.state.lock:
            s = self.state.stats
            s.files_unchanged += record.files
            s.bytes_total += record.size
            s.bytes_done += record.size
        dirs = [(name, st) for name, st in entries if stat.S_ISDIR(st.st_mode)]
        subdirs: list[Pending] = []
        if not dirs:
            return subdirs
        cached_nodes = record.nodes_by_name()  # decoded only as far as the last subdirectory's name
        prev = Prev(cached_nodes, record.scan_ns)
        index = self.trees.new_slots(task, len(dirs))
        for name, st in dirs:
            sub = self._subdir(task, index, join(task.path, name), name, st, root_dev, here,
                               cached_nodes.get(name), prev, journal)
            if sub is not None:
                subdirs.append(sub)
            index += 1
        return subdirs

    def _blobs_present(self, record: DirRecord) -> bool:
        blobs = record.blobs
        ids = [bytes.fromhex(record.tree)] + [blobs[i:i + 32] for i in range(0, len(blobs), 32)]
        return self._all_present(ids)

    def _all_present(self, ids: list[bytes]) -> bool:
        return self.repo.has_all_blobs(ids)

    def _dir_node(self, path: str, name: str, st: os.stat_result) -> Node:
        node = node_from_stat(name, st)
        self._add_xattrs(node, path)
        return node

    def _add_xattrs(self, node: Node, path: str) -> None:
        try:
            xattrs = read_xattrs(self.longpaths.short(path))
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError):
                self.state.warn(f"{path}: cannot read extended attributes: {describe(exc)}")
            return
        if xattrs:
            node["xattrs"] = xattrs

    def _subdir(self, task: DirTask, index: int, path: str, name: str, st: os.stat_result, root_dev: int,
                ancestors: Ancestors, prev_node: Node | None, prev: Prev | None,
                journal: bool = False) -> Pending | None:
        """A subdirectory entry: a mount point, a loop, a subtree the journal vouches for, or a directory
        to walk later."""
        if prev_node is not None and prev_node.get("type") == "dir" and same_file(prev_node, st) \
                and prev_node.get("ctime_ns", 0) < (prev.scan_ns if prev else 0) - RACY_NS:
            node = {k: v for k, v in prev_node.items() if k != "subtree" and k != TOTALS}
        else:
            node = self._dir_node(path, name, st)
        if self.one_file_system and st.st_dev != root_dev:
            node["subtree"] = self.trees.empty_tree()
            node[TOTALS] = NO_TOTALS.as_node_value()
            self.trees.resolve(task, index, node)
            return None
        if (st.st_dev, st.st_ino) in ancestors:
            self.state.warn(f"{path}: directory loop (same directory as one of its parents); not descended")
            self.trees.resolve(task, index, None)
            return None
        if journal:
            assert self.hint is not None
            if self.hint.state(path) == CLEAN:
                if prev_node is not None and prev_node.get("subtree") and same_file(prev_node, st):
                    # nothing below changed: its previous tree as it is
                    totals = totals_of(prev_node) or NO_TOTALS
                    self._count_unopened(totals.files, totals.bytes, totals.dirs, 1)
                    self.trees.resolve(task, index, prev_node)
                    return None
                journal = False  # new, or changed without the journal seeing it: walk all of it
        sub = DirTask(path, node, task, index, (st.st_dev, st.st_ino))
        lazy = LazyPrev(self.repo, prev_node, prev) if prev_node is not None else None
        return (sub, lazy, ancestors, journal)

    def _entry(self, task: DirTask, index: int, path: str, name: str, st: os.stat_result,
               prev: Prev | None) -> None:
        """One entry (not a directory) of a directory that is compared file by file."""
        mode = st.st_mode
        prev_node = prev.nodes.get(name) if prev is not None else None
        if prev_node is None:  # new: the common case of a first backup, kept short
            if stat.S_ISREG(mode):
                self.queue_file(FileItem(task, index, path, name, st, False), st.st_size)
            else:
                self._other(task, index, path, name, st)
            return
        assert prev is not None
        trusted = prev_node.get("ctime_ns", 0) < prev.scan_ns - RACY_NS and same_file(prev_node, st)
        if stat.S_ISREG(mode):
            if trusted and prev_node.get("type") == "file" and self._content_present(prev_node):
                with self.state.lock:
                    s = self.state.stats
                    s.files_unchanged += 1
                    s.bytes_total += st.st_size
                    s.bytes_done += st.st_size
                self.trees.resolve(task, index, kept(prev, name, prev_node))
                return
            known = prev_node.get("content") or () if prev_node.get("type") == "file" else ()
            self.queue_file(FileItem(task, index, path, name, st, True, known), st.st_size)
            return
        if trusted and prev_node.get("type") == TYPE_BY_FMT.get(stat.S_IFMT(mode)):
            self.trees.resolve(task, index, kept(prev, name, prev_node))
            return
        self._other(task, index, path, name, st)

    def _other(self, task: DirTask, index: int, path: str, name: str, st: os.stat_result) -> None:
        """A symlink, device, FIFO or socket: metadata only."""
        node = node_from_stat(name, st)
        if stat.S_ISLNK(st.st_mode):
            try:
                node["target"] = os.readlink(self.longpaths.short(path))
            except OSError as exc:
                if not isinstance(exc, FileNotFoundError):
                    self.state.warn(f"{path}: cannot read link: {describe(exc)}")
                self.trees.resolve(task, index, None)
                return
        self._add_xattrs(node, path)
        with self.state.lock:
            self.state.stats.others += 1
        self.trees.resolve(task, index, node)

    def _content_present(self, node: Node) -> bool:
        return self._all_present([bytes.fromhex(c) for c in node.get("content") or ()])


def _dir_indexes(listing: EncodedListing) -> list[int]:
    """Where the subdirectories are in ``listing`` (found in C: a directory of files costs no Python)."""
    return list(itertools.compress(itertools.count(), map("dir".__eq__, listing.types)))


def _file_size(node: AnyNode) -> int | None:
    """A regular file's size, None for anything else."""
    if isinstance(node, EncodedNode):
        return node.size if node.type == "file" else None
    return node.get("size", 0) if node.get("type") == "file" else None
