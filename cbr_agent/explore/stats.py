"""stats: sizes of snapshots and of the data they use.

Modes (as restic's):

- ``restore-size``: what a restore of the snapshots would write: files, directories, bytes (each name
  of a hard-linked file counted);
- ``files-by-contents``: files with distinct contents, and their bytes;
- ``raw-data``: the distinct blobs (data and trees) the snapshots use, their plaintext and stored
  (compressed, encrypted) size, and the packs that hold them: the compression ratio is plaintext /
  stored, the deduplication ratio restore size / plaintext of the data blobs.

Every tree is read once, however many snapshots and directories share it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cbr_agent.repository.walk import load_tree

MODES = ("restore-size", "files-by-contents", "raw-data")


@dataclass
class _Totals:
    files: int = 0
    dirs: int = 0
    others: int = 0
    size: int = 0

    def add(self, other: _Totals) -> None:
        self.files += other.files
        self.dirs += other.dirs
        self.others += other.others
        self.size += other.size


@dataclass
class Stats:
    mode: str
    snapshots: int = 0
    files: int = 0
    dirs: int = 0
    others: int = 0
    restore_size: int = 0
    unique_files: int = 0
    unique_files_size: int = 0
    blobs: int = 0
    data_blobs: int = 0
    tree_blobs: int = 0
    raw_size: int = 0
    data_raw_size: int = 0
    stored_size: int = 0
    packs: int = 0
    missing_blobs: int = 0
    repository_packs: int = 0
    repository_size: int = 0
    per_snapshot: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_size(self) -> int:
        return {"restore-size": self.restore_size, "files-by-contents": self.unique_files_size,
                "raw-data": self.raw_size}[self.mode]

    @property
    def total_file_count(self) -> int:
        return self.unique_files if self.mode == "files-by-contents" else self.files

    @property
    def compression_ratio(self) -> float | None:
        return round(self.raw_size / self.stored_size, 3) if self.stored_size else None

    @property
    def dedup_ratio(self) -> float | None:
        return round(self.restore_size / self.data_raw_size, 3) if self.data_raw_size else None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.update(total_size=self.total_size, total_file_count=self.total_file_count,
                   compression_ratio=self.compression_ratio, dedup_ratio=self.dedup_ratio)
        return out


class _Walker:
    """Reads each distinct tree once; totals per tree from its children's (post-order)."""

    def __init__(self, repo: Any, mode: str, tick: Callable[[], None] | None) -> None:
        self.repo, self.mode, self.tick = repo, mode, tick
        self.totals: dict[str, _Totals] = {}
        self._local: dict[str, tuple[_Totals, list[str]]] = {}
        self.contents: dict[tuple[str, ...], int] = {}  # files-by-contents: content -> size
        self.data_blobs: set[str] = set()
        self.tree_blobs: set[str] = set()

    def totals_of(self, root: str) -> _Totals:
        stack = [(root, False)]
        while stack:
            tree, expanded = stack.pop()
            if tree in self.totals:
                continue
            if expanded:
                local, children = self._local.pop(tree)
                total = _Totals(local.files, local.dirs, local.others, local.size)
                for child in children:
                    total.add(self.totals.get(child, _Totals()))
                self.totals[tree] = total
                continue
            if tree not in self._local:
                self._local[tree] = self._read(tree)
            stack.append((tree, True))
            stack.extend((child, False) for child in self._local[tree][1] if child not in self.totals)
        return self.totals[root]

    def _read(self, tree: str) -> tuple[_Totals, list[str]]:
        if self.tick is not None:
            self.tick()
        self.tree_blobs.add(tree)
        local = _Totals()
        children = []
        for node in load_tree(self.repo, tree, f"tree {tree}"):
            kind = node.get("type")
            if kind == "dir":
                local.dirs += 1
                if node.get("subtree"):
                    children.append(node["subtree"])
            elif kind == "file":
                local.files += 1
                size = int(node.get("size", 0))
                local.size += size
                content = node.get("content") or []
                if self.mode == "files-by-contents":
                    self.contents.setdefault(tuple(content), size)
                elif self.mode == "raw-data":
                    self.data_blobs.update(content)
            else:
                local.others += 1
        return local, children


def snapshot_stats(repo: Any, snapshots: Sequence[Any], mode: str = "restore-size",
                   tick: Callable[[], None] | None = None) -> Stats:
    """Statistics over ``snapshots`` (``tick`` is called once per tree read, for a progress line)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    stats = Stats(mode=mode, snapshots=len(snapshots))
    walker = _Walker(repo, mode, tick)
    for snap in snapshots:
        t = walker.totals_of(snap.tree)
        stats.files += t.files
        stats.dirs += t.dirs
        stats.others += t.others
        stats.restore_size += t.size
        stats.per_snapshot.append({"id": snap.id, "files": t.files, "dirs": t.dirs, "others": t.others,
                                   "restore_size": t.size})
    if mode == "files-by-contents":
        stats.unique_files = len(walker.contents)
        stats.unique_files_size = sum(walker.contents.values())
    if mode == "raw-data":
        _raw_data(repo, walker, stats)
    sizes = [size for _name, size in repo.backend.list("data")]
    stats.repository_packs, stats.repository_size = len(sizes), sum(sizes)
    return stats


def _raw_data(repo: Any, walker: _Walker, stats: Stats) -> None:
    packs: set[str] = set()
    for kind, blobs in (("data", walker.data_blobs), ("tree", walker.tree_blobs)):
        for blob_hex in blobs:
            loc = repo.blob_location(bytes.fromhex(blob_hex))
            if loc is None:
                stats.missing_blobs += 1
                continue
            packs.add(loc.pack_id)
            stats.raw_size += loc.raw_length
            stats.stored_size += loc.length
            if kind == "data":
                stats.data_blobs += 1
                stats.data_raw_size += loc.raw_length
            else:
                stats.tree_blobs += 1
    stats.blobs = stats.data_blobs + stats.tree_blobs
    stats.packs = len(packs)
