"""Copying snapshots between repositories with different keys.

Blob ids are keyed hashes, so a blob has another id in the destination: each data blob is read and
decrypted from the source once, hashed with the destination's key, and stored unless the destination
has it; trees are rewritten with the new ids (post-order: a tree after everything it points to). A
source id -> destination id map, kept for the run in memory and across runs in a small SQLite file
(``map_path``, outside both repositories), lets later copies skip every subtree already copied, reading
only the trees of what changed. The copied snapshot keeps time, host, paths, tags and summary; its
``original`` names the source snapshot (or that one's original), by which a snapshot already copied is
recognised and skipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cbr_agent.repository.tree import encode_tree
from cbr_agent.repository.walk import load_tree

if TYPE_CHECKING:
    from cbr_agent.repository.repo import Repository
    from cbr_agent.repository.snapshot import Snapshot
    from cbr_agent.repository.writer import BlobWriter


@dataclass
class CopyResult:
    copied: list[tuple[str, str]] = field(default_factory=list)  # (source id, destination id)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # already there: (source, destination)
    blobs_copied: int = 0
    bytes_copied: int = 0  # plaintext
    blobs_present: int = 0  # found in the destination already
    trees_read: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "copied": [{"source": s, "snapshot": d} for s, d in self.copied],
            "skipped": [{"source": s, "snapshot": d} for s, d in self.skipped],
            "blobs_copied": self.blobs_copied,
            "bytes_copied": self.bytes_copied,
            "blobs_present": self.blobs_present,
            "trees_read": self.trees_read,
        }


class IdMap:
    """Source blob id -> destination blob id, in memory, backed by SQLite when a path is given."""

    def __init__(self, path: Path | None) -> None:
        self._memory: dict[bytes, bytes] = {}
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path)
            self._db.execute("CREATE TABLE IF NOT EXISTS ids (src BLOB PRIMARY KEY, dst BLOB NOT NULL)")

    def this_run(self, src: bytes) -> bytes | None:
        """Copied by this run: stored or on its way (the writer has it)."""
        return self._memory.get(src)

    def earlier(self, src: bytes) -> bytes | None:
        """Copied by an earlier run (the destination may have pruned it since)."""
        if self._db is None:
            return None
        row = self._db.execute("SELECT dst FROM ids WHERE src = ?", (src,)).fetchone()
        return bytes(row[0]) if row else None

    def put(self, src: bytes, dst: bytes) -> None:
        self._memory[src] = dst
        if self._db is not None:
            self._db.execute("INSERT OR REPLACE INTO ids VALUES (?, ?)", (src, dst))

    def commit(self) -> None:
        """Called once the destination holds (and has indexed) every blob recorded so far."""
        if self._db is not None:
            self._db.commit()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def already_copied(destination: Repository) -> dict[str, str]:
    """Source snapshot id -> destination snapshot id, for the copies the destination holds."""
    return {s.original: s.id for s in destination.list_snapshots() if s.original and s.id}


def copy_snapshots(source: Repository, destination: Repository, snapshots: Sequence[Snapshot], *,
                   map_path: Path | None = None,
                   progress: Callable[[CopyResult, int, int], None] | None = None) -> CopyResult:
    """Copy ``snapshots`` of ``source`` into ``destination`` (both locked shared by the caller)."""
    result = CopyResult()
    done = already_copied(destination)
    ids = IdMap(map_path)
    try:
        with destination.writer() as writer:
            copier = _Copier(source, destination, writer, ids, result)
            for i, snap in enumerate(snapshots):
                if progress is not None:
                    progress(result, i, len(snapshots))
                key = snap.original or snap.id or ""
                if key in done or snap.id in done:
                    result.skipped.append((snap.id or "", done.get(key) or done[snap.id or ""]))
                    continue
                tree = copier.copy_tree(snap.tree)
                writer.flush()  # the snapshot may point only at indexed trees
                ids.commit()
                new_id = destination.save_snapshot(_copy_of(snap, tree))
                done[key] = new_id
                result.copied.append((snap.id or "", new_id))
        if progress is not None:
            progress(result, len(snapshots), len(snapshots))
    finally:
        ids.close()
    return result


def _copy_of(snap: Snapshot, tree: str) -> Snapshot:
    import copy

    new = copy.deepcopy(snap)
    new.tree = tree
    new.parent = None  # the parent's id means nothing in the destination
    new.original = snap.original or snap.id
    new.id = None
    return new


class _Copier:
    def __init__(self, source: Repository, destination: Repository, writer: BlobWriter, ids: IdMap,
                 result: CopyResult) -> None:
        self.src, self.dst, self.writer, self.ids, self.result = source, destination, writer, ids, result

    def _known(self, src_id: bytes) -> bytes | None:
        """The destination id of a blob already copied (and still in the destination)."""
        dst_id = self.ids.this_run(src_id)
        if dst_id is not None:
            return dst_id
        dst_id = self.ids.earlier(src_id)
        if dst_id is not None and self.dst.has_blob(dst_id):
            self.ids.put(src_id, dst_id)
            return dst_id
        return None

    def copy_data(self, src_hex: str) -> str:
        src_id = bytes.fromhex(src_hex)
        dst_id = self._known(src_id)
        if dst_id is None:
            plain = self.src.load_blob(src_id)
            dst_id = self.dst.blob_id(plain)
            if self.writer.add(dst_id, plain):
                self.result.blobs_copied += 1
                self.result.bytes_copied += len(plain)
            else:
                self.result.blobs_present += 1
            self.ids.put(src_id, dst_id)
        return dst_id.hex()

    def copy_tree(self, root_hex: str) -> str:
        """The destination id of the source tree ``root_hex``, copying what is missing (post-order)."""
        known = self._known(bytes.fromhex(root_hex))
        if known is not None:
            return known.hex()
        # frames: (source tree id, its nodes, iterator over the subtrees still to copy)
        stack: list[tuple[str, list[dict[str, Any]], Iterator[dict[str, Any]]]] = []
        new_ids: dict[str, str] = {}

        def enter(tree_hex: str) -> None:
            nodes = load_tree(self.src, tree_hex, f"tree {tree_hex}")
            self.result.trees_read += 1
            stack.append((tree_hex, nodes, iter([n for n in nodes if n.get("subtree")])))

        enter(root_hex)
        while stack:
            tree_hex, nodes, pending = stack[-1]
            child = next(pending, None)
            if child is not None:
                sub = child["subtree"]
                if sub not in new_ids:
                    done = self._known(bytes.fromhex(sub))
                    if done is not None:
                        new_ids[sub] = done.hex()
                    else:
                        enter(sub)
                continue
            stack.pop()
            new_ids[tree_hex] = self._store_tree(tree_hex, nodes, new_ids)
        return new_ids[root_hex]

    def _store_tree(self, tree_hex: str, nodes: list[dict[str, Any]], new_ids: dict[str, str]) -> str:
        rewritten = []
        for node in nodes:
            node = dict(node)
            if node.get("subtree"):
                node["subtree"] = new_ids[node["subtree"]]
            if node.get("content"):
                node["content"] = [self.copy_data(h) for h in node["content"]]
            rewritten.append(node)
        data = encode_tree(rewritten)
        dst_id = self.dst.blob_id(data)
        if self.writer.add(dst_id, data, kind="tree"):
            self.result.blobs_copied += 1
            self.result.bytes_copied += len(data)
        else:
            self.result.blobs_present += 1
        self.ids.put(bytes.fromhex(tree_hex), dst_id)
        return dst_id.hex()
