"""The file system ``mount`` shows: snapshots as read-only directories, independent of any FUSE binding.

Layout::

    /snapshots/<time>/...        every snapshot by its local time (2026-12-04T16:29:09), and ``latest``
    /hosts/<host>/<time>/...     per host, with ``latest``
    /tags/<tag>/<time>/...       per tag, with ``latest``
    /ids/<short id>/...          by the first 8 characters of the id

``latest`` is a symlink to the newest time's name. Below a snapshot directory is the snapshot's own tree
(its absolute backup paths). Reading a file fetches only the blobs that cover the range asked for, blob
by blob, through a cache bounded in bytes; decoded directory listings are cached by tree id, bounded in
count. Everything raises ``OSError`` with an errno, which the FUSE adapter passes on.
"""

from __future__ import annotations

import base64
import bisect
import errno
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from cbr_agent.errors import IntegrityError
from cbr_agent.repository.walk import Node, load_tree

TYPE_BITS = {"dir": stat.S_IFDIR, "file": stat.S_IFREG, "symlink": stat.S_IFLNK, "fifo": stat.S_IFIFO,
             "chardev": stat.S_IFCHR, "blockdev": stat.S_IFBLK, "socket": stat.S_IFSOCK}
TOP = ("snapshots", "hosts", "tags", "ids")
BLOB_CACHE_BYTES = 64 * 1024 * 1024
TREE_CACHE_ENTRIES = 4096
SNAPSHOT_LIST_TTL = 30.0


class _LRU:
    """A thread-safe LRU bounded by the total ``weight`` of its values."""

    def __init__(self, limit: int, weigh: Callable[[Any], int]) -> None:
        self.limit, self.weigh = limit, weigh
        self.total = 0
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self.total += self.weigh(value)
            while self.total > self.limit and len(self._items) > 1:
                _old, dropped = self._items.popitem(last=False)
                self.total -= self.weigh(dropped)


def _fail(code: int) -> OSError:
    return OSError(code, errno.errorcode.get(code, "error"))


def time_name(t: Any) -> str:
    return str(t.astimezone().strftime("%Y-%m-%dT%H:%M:%S"))


class SnapshotFS:
    def __init__(self, repo: Any, snapshots: Callable[[], Sequence[Any]], *,
                 blob_cache_bytes: int = BLOB_CACHE_BYTES, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.repo = repo
        self._list_snapshots = snapshots
        self._clock = clock
        self._trees = _LRU(TREE_CACHE_ENTRIES, lambda _v: 1)
        self._blobs = _LRU(blob_cache_bytes, len)
        self._offsets = _LRU(1024, lambda _v: 1)  # file content -> cumulative blob ends
        self._lock = threading.Lock()
        self._loaded_at = -SNAPSHOT_LIST_TTL
        self._views: dict[str, dict[str, Any]] = {}
        self.mounted_at = time.time_ns()

    # ------------------------------------------------------------------ the virtual directories
    def _refresh(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if self._clock() - self._loaded_at >= SNAPSHOT_LIST_TTL:
                snaps = sorted(self._list_snapshots(), key=lambda s: (s.time, s.id or ""))
                self._views = _build_views(snaps)
                self._loaded_at = self._clock()
            return self._views

    def _resolve(self, path: str) -> tuple[str, Any]:
        """``("virtual", entries)``, ``("link", target)`` or ``("node", (snapshot, node))``."""
        parts = [p for p in path.split("/") if p]
        views = self._refresh()
        if not parts:
            return "virtual", {name: None for name in TOP}
        level: Any = views.get(parts[0])
        if level is None:
            raise _fail(errno.ENOENT)
        for i, part in enumerate(parts[1:], start=1):
            if isinstance(level, dict):
                if part not in level:
                    raise _fail(errno.ENOENT)
                level = level[part]
                continue
            if isinstance(level, str):
                raise _fail(errno.ENOTDIR)
            return "node", (level, self._node_in(level, parts[i:]))
        if isinstance(level, str):
            return "link", level
        if isinstance(level, dict):
            return "virtual", level
        return "node", (level, self._root_node(level))

    def _root_node(self, snap: Any) -> Node:
        return {"name": "", "type": "dir", "subtree": snap.tree, "mode": 0o555,
                "mtime_ns": int(snap.time.timestamp() * 1e9)}

    def _tree(self, tree_hex: str, where: str) -> dict[str, Node]:
        nodes = self._trees.get(tree_hex)
        if nodes is None:
            try:
                nodes = {n["name"]: n for n in load_tree(self.repo, tree_hex, where)}
            except IntegrityError:
                raise _fail(errno.EIO) from None
            self._trees.put(tree_hex, nodes)
        return nodes  # type: ignore[no-any-return]

    def _node_in(self, snap: Any, parts: list[str]) -> Node:
        node = self._root_node(snap)
        for i, part in enumerate(parts):
            if node.get("type") != "dir":
                raise _fail(errno.ENOTDIR)
            if not node.get("subtree"):
                raise _fail(errno.ENOENT)
            found = self._tree(node["subtree"], "/" + "/".join(parts[:i])).get(part)
            if found is None:
                raise _fail(errno.ENOENT)
            node = found
        return node

    # ------------------------------------------------------------------ operations
    def getattr(self, path: str) -> dict[str, int]:
        kind, what = self._resolve(path)
        now = self.mounted_at
        if kind == "virtual":
            return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2, "st_size": 0,
                    "st_mtime": now, "st_ctime": now, "st_atime": now}
        if kind == "link":
            return {"st_mode": stat.S_IFLNK | 0o777, "st_nlink": 1, "st_size": len(what),
                    "st_mtime": now, "st_ctime": now, "st_atime": now}
        _snap, node = what
        kind = node.get("type", "file")
        mtime = int(node.get("mtime_ns", 0))
        attrs = {"st_mode": TYPE_BITS.get(kind, stat.S_IFREG) | (int(node.get("mode", 0o444)) & 0o7777),
                 "st_nlink": 2 if kind == "dir" else int(node.get("links", 1)),
                 "st_uid": int(node.get("uid", 0)), "st_gid": int(node.get("gid", 0)),
                 "st_size": int(node.get("size", 0)) if kind == "file" else
                 len(node.get("target", "").encode("utf-8", "surrogateescape")) if kind == "symlink" else 0,
                 "st_mtime": mtime, "st_ctime": int(node.get("ctime_ns", mtime)), "st_atime": mtime}
        if kind in ("chardev", "blockdev"):
            attrs["st_rdev"] = int(node.get("rdev", 0))
        return attrs

    def readdir(self, path: str) -> list[str]:
        kind, what = self._resolve(path)
        if kind == "virtual":
            return sorted(what)
        if kind == "link":
            raise _fail(errno.ENOTDIR)
        _snap, node = what
        if node.get("type") != "dir":
            raise _fail(errno.ENOTDIR)
        return sorted(self._tree(node["subtree"], path)) if node.get("subtree") else []

    def readlink(self, path: str) -> str:
        kind, what = self._resolve(path)
        if kind == "link":
            return str(what)
        if kind == "node" and what[1].get("type") == "symlink":
            return str(what[1].get("target", ""))
        raise _fail(errno.EINVAL)

    def listxattr(self, path: str) -> list[str]:
        kind, what = self._resolve(path)
        return sorted(what[1].get("xattrs") or {}) if kind == "node" else []

    def getxattr(self, path: str, name: str) -> bytes:
        kind, what = self._resolve(path)
        values = (what[1].get("xattrs") or {}) if kind == "node" else {}
        if name not in values:
            raise _fail(errno.ENODATA)
        return base64.b64decode(values[name])

    def file_node(self, path: str) -> Node:
        """For open(): the node of a regular file (EISDIR, EINVAL otherwise)."""
        kind, what = self._resolve(path)
        node_type = what[1].get("type") if kind == "node" else "dir" if kind == "virtual" else "symlink"
        if node_type == "file":
            return what[1]  # type: ignore[no-any-return]
        raise _fail(errno.EISDIR if node_type == "dir" else errno.EINVAL)

    def read(self, node: Node, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` of a file: only the blobs that cover them are fetched."""
        content = node.get("content") or []
        ends = self._ends(content)
        total = ends[-1] if ends else 0
        if offset >= total or size <= 0:
            return b""
        stop = min(total, offset + size)
        first = bisect.bisect_right(ends, offset)
        out = []
        for i in range(first, len(content)):
            start = ends[i - 1] if i else 0
            if start >= stop:
                break
            data = self._blob(content[i])
            out.append(data[max(0, offset - start): stop - start])
        return b"".join(out)

    def _ends(self, content: list[str]) -> list[int]:
        key = tuple(content)
        ends = self._offsets.get(key)
        if ends is None:
            ends, total = [], 0
            for blob_hex in content:
                loc = self.repo.blob_location(bytes.fromhex(blob_hex))
                if loc is None:
                    raise _fail(errno.EIO)
                total += loc.raw_length
                ends.append(total)
            self._offsets.put(key, ends)
        return ends  # type: ignore[no-any-return]

    def _blob(self, blob_hex: str) -> bytes:
        data = self._blobs.get(blob_hex)
        if data is None:
            try:
                data = self.repo.load_blob(bytes.fromhex(blob_hex))
            except IntegrityError:
                raise _fail(errno.EIO) from None
            self._blobs.put(blob_hex, data)
        return data  # type: ignore[no-any-return]

    @property
    def cached_blob_bytes(self) -> int:
        return self._blobs.total


def _unique_names(snaps: Sequence[Any]) -> dict[str, Any]:
    """Snapshots by time name (oldest first); equal times get ``-1``, ``-2``..., and ``latest``."""
    out: dict[str, Any] = {}
    for snap in snaps:
        name = time_name(snap.time)
        base, n = name, 0
        while name in out:
            n += 1
            name = f"{base}-{n}"
        out[name] = snap
    if out:
        out["latest"] = list(out)[-1]  # a str value: the symlink's target
    return out


def _build_views(snaps: Sequence[Any]) -> dict[str, dict[str, Any]]:
    hosts: dict[str, list[Any]] = {}
    tags: dict[str, list[Any]] = {}
    for snap in snaps:
        hosts.setdefault(snap.host, []).append(snap)
        for tag in snap.tags:
            tags.setdefault(tag, []).append(snap)
    return {
        "snapshots": _unique_names(snaps),
        "hosts": {_safe(h): _unique_names(s) for h, s in hosts.items()},
        "tags": {_safe(t): _unique_names(s) for t, s in tags.items()},
        "ids": {(s.id or "")[:8]: s for s in snaps},
    }


def _safe(name: str) -> str:
    return name.replace("/", "_") or "_"
