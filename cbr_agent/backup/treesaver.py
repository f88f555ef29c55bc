"""Trees built bottom-up: a directory's tree blob is written as soon as every entry is resolved.

Each directory has one slot per entry. Whoever resolves the last slot of a directory that the walker
has finished listing builds its tree (by whichever thread that is), which in turn resolves a slot of the
parent, up to the root. A directory whose listing matched the files cache takes its file nodes from the
cache record and, when its subdirectories' trees are unchanged too, even its tree id.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any, cast

from cbr_agent.backup.filescache import DirRecord, FilesCache
from cbr_agent.backup.keptlistings import KeptListings
from cbr_agent.backup.runstate import RunState
from cbr_agent.fs.nodes import Node
from cbr_agent.repository import encode_tree
from cbr_agent.repository.tree import (
    TOTALS,
    AnyNode,
    EncodedListing,
    EncodedNode,
    Totals,
    encode_listing,
    listing_totals,
    tree_of,
    tree_totals,
)


class DirTask:
    """A directory whose tree is being built."""

    __slots__ = (
        "base",
        "fingerprint",
        "ident",
        "index",
        "node",
        "parent",
        "path",
        "pending",
        "positions",
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
        self.slots: list[AnyNode | None] = []
        self.pending = 0
        self.walked = False
        self.record: DirRecord | None = None
        self.reuse = False          # the listing matched the cache: file nodes come from the record
        self.fingerprint = b""
        self.trusted = False
        self.scan_ns = 0
        #: the previous listing this directory's tree is spliced from (add_listing): its slots are the
        #: entries at ``positions`` in it, the rest stays as it is
        self.base: EncodedListing | None = None
        self.positions: list[int] = []


#: a slot's entry: a node, decoded or as its previous tree's bytes (an unchanged entry), or None (left out)
Resolved = tuple[DirTask, int, "AnyNode | None"]


class TreeAssembler:
    """Slots, resolution and tree blobs; :attr:`done` is set once the root tree is written."""

    def __init__(self, repo: Any, writer: Any, cache: FilesCache | None, state: RunState,
                 listings: KeptListings | None = None) -> None:
        self.repo = repo
        self.writer = writer
        self.cache = cache
        #: where the listings of directories that get no files cache row are kept (the daemon's)
        self.listings = listings
        self.state = state
        self._lock = state.lock
        self.root_tree: str | None = None
        self.done = threading.Event()
        self._empty_tree: str | None = None

    # ------------------------------------------------------------------ slots
    def new_slots(self, task: DirTask, n: int) -> int:
        """Reserve ``n`` slots (one per entry to come); returns the first index."""
        with self._lock:
            first = len(task.slots)
            task.slots.extend([None] * n)
            task.pending += n
            return first

    def add_slots(self, task: DirTask, nodes: list[AnyNode | None]) -> int:
        """Slots already resolved to ``nodes``, but for each None: a slot to resolve later. Returns the
        first index. The caller resolves the open ones, or calls :meth:`walked`, only after this."""
        with self._lock:
            first = len(task.slots)
            task.slots.extend(nodes)
            task.pending += nodes.count(None)
            return first

    def add_listing(self, task: DirTask, listing: EncodedListing, positions: list[int]) -> int:
        """The tree of ``task`` is ``listing`` (sorted, names unique, the caller's to give away) but for
        the entries at ``positions`` (ascending): a slot each, resolved as usual; one resolved to None is
        left out. Returns the first slot's index. No object is made per entry that is kept."""
        with self._lock:
            assert not task.slots and task.base is None
            task.base, task.positions = listing, positions
            task.slots.extend([None] * len(positions))
            task.pending += len(positions)
            return 0

    def resolve(self, task: DirTask, index: int, node: AnyNode | None) -> None:
        """Fill one slot of ``task``; build trees upwards as directories complete."""
        while True:
            with self._lock:
                task.slots[index] = node
                task.pending -= 1
                ready = task.walked and task.pending == 0
            if not ready:
                return
            up = self._complete(task)
            if up is None:
                return
            task, index, node = up

    def resolve_many(self, results: Iterable[Resolved]) -> None:
        """:meth:`resolve` for a batch, with one lock round trip for all the slots."""
        ready = []
        with self._lock:
            for task, index, node in results:
                task.slots[index] = node
                task.pending -= 1
                if task.walked and task.pending == 0:
                    ready.append(task)
        for task in ready:
            up = self._complete(task)
            if up is not None:
                self.resolve(*up)

    def walked(self, task: DirTask) -> None:
        """The walker has given every entry of ``task`` a slot."""
        with self._lock:
            task.walked = True
            ready = task.pending == 0
            if ready:  # completion resolves a virtual last slot
                task.pending += 1
                task.slots.append(None)
        if ready:
            self.resolve(task, len(task.slots) - 1, None)

    def _complete(self, task: DirTask) -> Resolved | None:
        node = self._finish_dir(task)
        if task.parent is None:
            self.root_tree = node["subtree"]
            self.done.set()
            return None
        return task.parent, task.index, node

    # ------------------------------------------------------------------ trees
    def add_tree(self, nodes: list[Node]) -> str:
        return self.writer.save(encode_tree(nodes), kind="tree").hex()

    def empty_tree(self) -> str:
        if self._empty_tree is None:
            self._empty_tree = self.add_tree([])
        return self._empty_tree

    def _finish_dir(self, task: DirTask) -> Node:
        record = task.record
        node = dict(task.node)
        if task.reuse:
            assert record is not None
            fresh_subdirs = {n["name"]: n for n in task.slots if isinstance(n, dict)}
            cached = record.subtrees()
            # the cached tree as it is, unless its subdirectories' nodes lack totals (written by an
            # older version): then it is written again, once, with them
            if all(cached.get(name) == n["subtree"] for name, n in fresh_subdirs.items()) \
                    and len(cached) == len(fresh_subdirs) and (record.totals or not cached):
                node["subtree"] = record.tree
                _set_totals(node, _reused_totals(record, fresh_subdirs.values()))
                self._count_dir()
                if self.cache is not None:
                    self.cache.touch(os.fsencode(task.path))
                return node
            # its files as the record has them (their tree's bytes), its subdirectories as walked now
            nodes: list[AnyNode] = [
                n if n.type != "dir" else fresh_subdirs[n.name]
                for part in record.encoded_parts() for n in part
                if n.type != "dir" or n.name in fresh_subdirs]
        elif task.base is not None:
            listing = _spliced(task.base, task.positions, task.slots)
            task.slots, task.base = [], None
            self._save_tree(node, listing, listing_totals(listing))
            self._keep(task, node, listing)
            return node
        else:
            nodes = [n for n in task.slots if n is not None]
        task.slots = []
        listing = encode_listing(nodes)
        totals = listing_totals(listing, nodes)
        self._save_tree(node, listing, totals)
        if self.cache is not None and task.scan_ns:
            self._stage_record(task, node["subtree"], nodes, listing)
        else:
            self._keep(task, node, listing)
        return node

    def _keep(self, task: DirTask, node: Node, listing: EncodedListing) -> None:
        """A listing no files cache row will hold (the journal led to it): kept for the next backup."""
        if self.listings is not None:
            self.listings.put(task.path, node["subtree"], listing)

    def _save_tree(self, node: Node, listing: EncodedListing, totals: Totals | None) -> Node:
        node["subtree"] = self.writer.save(tree_of(listing), kind="tree").hex()
        _set_totals(node, totals)
        self._count_dir()
        return node

    def _count_dir(self) -> None:
        with self._lock:
            self.state.stats.dirs += 1

    def _stage_record(self, task: DirTask, tree_id: str, nodes: list[AnyNode],
                      listing: EncodedListing) -> None:
        assert self.cache is not None
        record = DirRecord.build(
            scan_ns=task.scan_ns,
            fingerprint=task.fingerprint if task.trusted else b"",
            tree=tree_id,
            nodes=nodes,
            listing=listing,
            blobs=bytes.fromhex("".join(listing.blobs)),    # only files have blob ids, and sizes
            files=listing.types.count("file"),
            size=sum(listing.sizes),
        )
        self.cache.stage(os.fsencode(task.path), record)


def _spliced(listing: EncodedListing, positions: list[int], slots: list[AnyNode | None]) -> EncodedListing:
    """``listing`` with the entry at each position replaced by its slot's node, or left out for None."""
    gone = []
    for pos, node in zip(positions, slots, strict=False):  # slots may hold one more: walked()'s
        if node is None:
            gone.append(pos)
            continue
        encoded = node if type(node) is EncodedNode else EncodedNode.of(cast(Node, node))
        if encoded.name != listing.names[pos]:
            raise AssertionError(f"entry {encoded.name!r} resolved in the slot of {listing.names[pos]!r}")
        listing.put(pos, encoded)
    for pos in reversed(gone):
        listing.delete(pos)
    return listing


def _reused_totals(record: DirRecord, subdirs: Iterable[Node]) -> Totals | None:
    """Totals of a directory whose tree is the cache record's: its files from the record, no node read."""
    below = tree_totals(list(subdirs))  # the directory itself and its subdirectories
    return None if below is None else Totals(below.files + record.files, below.bytes + record.size,
                                             below.dirs)


def _set_totals(node: Node, totals: Totals | None) -> None:
    """Unknown totals (a subtree from an older version) are left out, never guessed."""
    if totals is None:
        node.pop(TOTALS, None)
    else:
        node[TOTALS] = totals.as_node_value()
