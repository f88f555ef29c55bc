"""diff: what changed between two snapshots.

Trees are compared top down; a subtree with the same id on both sides is equal and not read. Each change
is one of ``+`` added, ``-`` removed, ``M`` contents changed (a file's data, a symlink's target, a
device number), ``T`` type changed (the old entry's contents count as removed, the new one's as added),
and, with ``metadata``, ``U`` for entries whose mode, owner, times or extended attributes changed.

Bytes added/removed count the distinct data blobs of the changed entries that only one side has, at
their plaintext size: a file moved to another directory counts as neither; a blob that the other
snapshot also uses in an unchanged directory is counted (those directories are not read).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cbr_agent.repository.walk import Node, load_tree

#: what ``U`` compares (``ctime_ns`` and ``inode`` change with every copy: not compared)
META_KEYS = ("mode", "uid", "gid", "user", "group", "mtime_ns", "xattrs")


@dataclass(frozen=True)
class Change:
    kind: str  # "+", "-", "M", "T", "U"
    path: str
    type: str  # the entry's type (the new one for T)


@dataclass
class DiffStats:
    added: dict[str, int] = field(default_factory=dict)  # per type
    removed: dict[str, int] = field(default_factory=dict)
    changed: int = 0
    type_changed: int = 0
    metadata_changed: int = 0
    bytes_added: int = 0
    bytes_removed: int = 0
    blobs_added: int = 0
    blobs_removed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Descend:
    path: str
    old: str | None
    new: str | None


class Differ:
    """Iterate :meth:`changes`, then read :attr:`stats` (the byte counts are set when it is done)."""

    def __init__(self, repo: Any, *, metadata: bool = False,
                 on_compared: Callable[[int], None] | None = None) -> None:
        """``on_compared(n)``: called with the number of directories compared so far, after each."""
        self.repo = repo
        self.metadata = metadata
        self.on_compared = on_compared
        self.compared = 0
        self.stats = DiffStats()
        self._old_blobs: set[str] = set()
        self._new_blobs: set[str] = set()

    def changes(self, old_tree: str, new_tree: str) -> Iterator[Change]:
        stack: list[Iterator[Change | _Descend]] = [self._compare("", old_tree, new_tree)]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
            elif isinstance(item, _Descend):
                stack.append(self._compare(item.path, item.old, item.new))
            else:
                yield item
        self._count_bytes()

    def _compare(self, where: str, old: str | None, new: str | None) -> Iterator[Change | _Descend]:
        if old == new:
            return
        old_nodes = {n["name"]: n for n in load_tree(self.repo, old, where or "/")} if old else {}
        new_nodes = {n["name"]: n for n in load_tree(self.repo, new, where or "/")} if new else {}
        self.compared += 1
        if self.on_compared is not None:
            self.on_compared(self.compared)
        for name in sorted(old_nodes.keys() | new_nodes.keys()):
            path = where + "/" + name
            a, b = old_nodes.get(name), new_nodes.get(name)
            if b is None:
                assert a is not None
                yield from self._gone(path, a)
            elif a is None:
                yield from self._came(path, b)
            elif a.get("type") != b.get("type"):
                self.stats.type_changed += 1
                yield Change("T", path, str(b.get("type")))
                self._old_blobs.update(a.get("content") or ())
                self._new_blobs.update(b.get("content") or ())
                yield _Descend(path, a.get("subtree"), b.get("subtree"))
            else:
                yield from self._same_type(path, a, b)

    def _gone(self, path: str, node: Node) -> Iterator[Change | _Descend]:
        kind = str(node.get("type"))
        self.stats.removed[kind] = self.stats.removed.get(kind, 0) + 1
        self._old_blobs.update(node.get("content") or ())
        yield Change("-", path, kind)
        if node.get("subtree"):
            yield _Descend(path, node["subtree"], None)

    def _came(self, path: str, node: Node) -> Iterator[Change | _Descend]:
        kind = str(node.get("type"))
        self.stats.added[kind] = self.stats.added.get(kind, 0) + 1
        self._new_blobs.update(node.get("content") or ())
        yield Change("+", path, kind)
        if node.get("subtree"):
            yield _Descend(path, None, node["subtree"])

    def _same_type(self, path: str, a: Node, b: Node) -> Iterator[Change | _Descend]:
        kind = str(b.get("type"))
        if kind == "dir":
            if self.metadata and _meta_differs(a, b):
                self.stats.metadata_changed += 1
                yield Change("U", path, kind)
            if a.get("subtree") != b.get("subtree"):
                yield _Descend(path, a.get("subtree"), b.get("subtree"))
            return
        if (a.get("content") or []) != (b.get("content") or []) or a.get("size") != b.get("size") \
                or a.get("target") != b.get("target") or a.get("rdev") != b.get("rdev"):
            self.stats.changed += 1
            self._old_blobs.update(a.get("content") or ())
            self._new_blobs.update(b.get("content") or ())
            yield Change("M", path, kind)
        elif self.metadata and _meta_differs(a, b):
            self.stats.metadata_changed += 1
            yield Change("U", path, kind)

    def _count_bytes(self) -> None:
        added = self._new_blobs - self._old_blobs
        removed = self._old_blobs - self._new_blobs
        self.stats.blobs_added, self.stats.blobs_removed = len(added), len(removed)
        self.stats.bytes_added = sum(self._size(b) for b in added)
        self.stats.bytes_removed = sum(self._size(b) for b in removed)

    def _size(self, blob_hex: str) -> int:
        try:
            loc = self.repo.blob_location(bytes.fromhex(blob_hex))
        except ValueError:
            return 0
        return loc.raw_length if loc is not None else 0


def _meta_differs(a: Node, b: Node) -> bool:
    return any(a.get(k) != b.get(k) for k in META_KEYS)
