"""The files cache: what each directory held at the last backup, so unchanged files are not read again.

One SQLite row per directory (never per file: an unchanged re-run of 200,000 files makes one query
per directory, not per file). A row holds the directory's tree nodes as they went into the snapshot,
the tree blob id, and a fingerprint of the listing (names and stat fields of every entry). When the
fingerprint matches, the whole directory is reused without decoding its nodes; otherwise the nodes
are looked up by name and each file is compared on size, mtime_ns, ctime_ns and inode. The nodes are
kept in parts decoded as the sorted listing reaches them (:class:`RecordNodes`), so a changed directory
of 20,000 files never holds all their decoded nodes and all their stat results at once (24 + 14 MiB).
Each node is kept in its tree's bytes (:class:`~cbr_agent.repository.tree.EncodedNode`): an unchanged
one goes into the new tree as it is, and only a node that is compared is decoded.

Crash safety: rows are written only after the repository writer was flushed (the blobs they name are
in an index), and every reuse checks that the blobs are still in the repository, so a stale row only
ever costs a re-read. The cache is disposable: a corrupt or foreign file is recreated empty.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import marshal
import operator
import os
import sqlite3
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from cbr_agent.repository.tree import (
    TOTALS,
    AnyNode,
    EncodedListing,
    EncodedNode,
    encode_listing,
    node_type,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = "7"  # 4: nodes in parts, generations apart; 6: nodes as their tree's bytes; 7: a file's
#                      blob ids joined (older tables are dropped: the parent snapshot stands in once)
#: marshal's format may change between Python versions; a row written by another one is ignored
FORMAT_TAG = f"{SCHEMA_VERSION}/py{sys.version_info[0]}.{sys.version_info[1]}/m{marshal.version}"
#: rows of directories not seen for this many backups of the repository are dropped
KEEP_GENERATIONS = 20
#: nodes per separately compressed part of a row: a changed directory decodes its nodes part by part,
#: as its listing reaches them, not all of them beside the listing's stat results
NODES_PER_PART = 512

_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS dirs (
    repo TEXT NOT NULL,
    path BLOB NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (repo, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (
    repo TEXT NOT NULL,
    path BLOB NOT NULL,
    gen INTEGER NOT NULL,
    PRIMARY KEY (repo, path)
) WITHOUT ROWID;
"""
#: the generation a row was last seen in lives apart from the row: marking an unchanged directory seen
#: then writes a few bytes, not its row again (rows of large directories span hundreds of pages)


@dataclass
class DirRecord:
    """What one directory held when it was last backed up.

    Stored as a small header and the node list compressed apart, so a directory whose fingerprint
    matches never decodes its nodes."""

    scan_ns: int              # when it was listed (wall clock); racy entries are judged against it
    fingerprint: bytes        # of the listing (see listing.listing_fingerprint); b"" = do not trust
    tree: str                 # hex id of its tree blob
    nodes_data: tuple[bytes, ...]  # the tree's nodes in parts, each marshal + zstd (see .encoded_parts)
    blobs: bytes              # every content blob id of its direct files, concatenated (32 bytes each)
    files: int                # direct regular files
    size: int                 # bytes of those files
    subdirs: dict[str, str]   # name -> subtree id of its subdirectories
    totals: bool = False      # every subdirectory's node in its tree carries totals (older rows: no)

    @classmethod
    def build(cls, *, scan_ns: int, fingerprint: bytes, tree: str, nodes: Sequence[AnyNode],
              blobs: bytes, files: int, size: int, listing: EncodedListing | None = None) -> DirRecord:
        """``listing``: ``nodes`` as the tree was encoded from them (else they are encoded here)."""
        if listing is None:
            listing = encode_listing(list(nodes))
        compress = _codec()[0].compress
        # a part is its nodes' fields column by column: marshal writes and reads a column at C speed
        per = NODES_PER_PART
        data = tuple(compress(marshal.dumps(tuple(column[i:i + per] for column in listing)))
                     for i in range(0, len(listing.names), per))
        dirs = [n if isinstance(n, dict) else n.decode() for n in nodes if node_type(n) == "dir"]
        subdirs = {n["name"]: n["subtree"] for n in dirs}
        return cls(scan_ns, fingerprint, tree, data, blobs, files, size, subdirs,
                   all(TOTALS in n for n in dirs))

    @property
    def nodes(self) -> list[dict[str, Any]]:
        return [node.decode() for part in self.encoded_parts() for node in part]

    def encoded_parts(self) -> Iterator[list[EncodedNode]]:
        """The nodes a part at a time, in tree order (sorted by name)."""
        decompress = _codec()[1].decompress
        for part in self.nodes_data:
            yield EncodedListing(*marshal.loads(decompress(part))).nodes()

    def nodes_by_name(self) -> RecordNodes:
        return RecordNodes(self.encoded_parts())

    def listing(self) -> EncodedListing | None:
        """The tree's nodes as one listing, column by column (no object per node), or None when the row
        is damaged or its names are not strictly in order."""
        decompress = _codec()[1].decompress
        columns: list[list[Any]] = [[] for _ in EncodedListing._fields]
        try:
            for part in self.nodes_data:
                for column, values in zip(columns, marshal.loads(decompress(part)), strict=True):
                    column += values
            listing = EncodedListing(*columns)
            names = listing.names
            if not all(len(column) == len(names) for column in columns) or not _strictly_increasing(names):
                return None
        except Exception as exc:  # a damaged row only costs the parent snapshot's tree
            log.debug("files cache row unreadable: %s", exc)
            return None
        return listing

    def subtrees(self) -> dict[str, str]:
        return self.subdirs

    def to_bytes(self) -> bytes:
        return marshal.dumps((self.scan_ns, self.fingerprint, self.tree, self.nodes_data, self.blobs,
                              self.files, self.size, self.subdirs, self.totals))

    @classmethod
    def from_bytes(cls, data: bytes) -> DirRecord:
        return cls(*marshal.loads(data))


class RecordNodes(Mapping[str, dict[str, Any]]):
    """A record's nodes by name, decoded a part at a time as lookups go past the parts decoded so far;
    :meth:`get` decodes the node it answers with, :meth:`encoded` gives it as its tree's bytes.

    Looked up in name order (as a directory's sorted listing does), a changed directory holds the
    nodes up to the entry it is at, not all of them at once beside its listing's stat results. Parts
    are in name order (:meth:`DirRecord.build` sees to it), so a name that sorts before the last decoded
    one and is not among the decoded nodes is not there. A row found out of order turns that shortcut
    off; until it is found out, a name may be missed, which costs reading the file again, never a wrong
    reuse."""

    def __init__(self, parts: Iterator[list[EncodedNode]]) -> None:
        self._parts: Iterator[list[EncodedNode]] | None = parts
        self._nodes: dict[str, EncodedNode] = {}
        self._last: str | None = None
        self._sorted = True

    def _more(self) -> bool:
        part = next(self._parts, None) if self._parts is not None else None
        if part is None:
            self._parts = None
            return False
        names = list(map(_node_name, part))
        if self._sorted and not (names == sorted(names) and (self._last is None or self._last < names[0])):
            self._sorted = False
        self._nodes.update(zip(names, part, strict=True))
        self._last = names[-1] if names else self._last
        return True

    def encoded(self, name: str) -> EncodedNode | None:
        node = self._nodes.get(name)
        while node is None and self._parts is not None:
            if self._sorted and self._last is not None and name < self._last:
                break  # sorted parts already went past it
            if not self._more():
                break
            node = self._nodes.get(name)
        return node

    def get(self, name: str, default: Any = None) -> Any:
        node = self.encoded(name)
        return default if node is None else node.decode()

    def encoded_all(self) -> dict[str, EncodedNode]:
        """Every node by name, in its tree's bytes (all parts decoded)."""
        return self._all()

    def __getitem__(self, name: str) -> dict[str, Any]:
        node = self.get(name)
        if node is None:
            raise KeyError(name)
        return node

    def _all(self) -> dict[str, EncodedNode]:
        while self._more():
            pass
        return self._nodes

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


_node_name = operator.itemgetter(0)
_local = threading.local()


def _strictly_increasing(names: list[str]) -> bool:
    """Sorted without duplicates, checked in C (sorting a set of them again cost a tenth of the row)."""
    return all(map(operator.lt, names, itertools.islice(names, 1, None)))


def _codec() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    codec = getattr(_local, "codec", None)
    if codec is None:
        codec = _local.codec = (zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor())
    return codec


class FilesCache:
    """Per-repository directory records in ``<state_dir>/filescache.db``.

    Reads happen on the walker thread only; :meth:`stage` may be called from any thread and
    :meth:`commit` writes what was staged in one transaction.
    """

    def __init__(self, path: Path, repo_id: str) -> None:
        self.path = path
        self.repo_id = repo_id
        self._lock = threading.Lock()
        self._staged: list[tuple[bytes, bytes]] = []
        self.staged_bytes = 0   # of the rows staged since the last take_staged
        self._touched: list[bytes] = []
        self.db = self._open()
        self.generation = self._next_generation()
        # a first backup asks nothing per directory until rows are committed
        self._empty = self.db.execute("SELECT 1 FROM dirs WHERE repo=? LIMIT 1",
                                      (repo_id,)).fetchone() is None

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(2):
            try:
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA busy_timeout=10000")
                db.execute(_META)
                row = db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
                if row is not None and row[0] != FORMAT_TAG:  # another layout: start empty
                    db.executescript("DROP TABLE IF EXISTS dirs; DROP TABLE IF EXISTS seen;")
                db.executescript(_SCHEMA)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (FORMAT_TAG,))
                return db
            except sqlite3.DatabaseError as exc:
                if attempt:
                    raise
                # disposable by design: a damaged cache costs one slower backup, never an error
                log.warning("files cache %s is unusable (%s); starting a new one", self.path, exc)
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{self.path}{suffix}")
        raise AssertionError("unreachable")

    def _next_generation(self) -> int:
        key = f"gen:{self.repo_id}"
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        gen = int(row[0]) + 1 if row else 1
        return gen

    def get(self, path: bytes) -> DirRecord | None:
        if self._empty:
            return None
        row = self.db.execute("SELECT data FROM dirs WHERE repo=? AND path=?",
                              (self.repo_id, path)).fetchone()
        if row is None:
            return None
        try:
            return DirRecord.from_bytes(row[0])
        except Exception as exc:
            log.debug("files cache row for %r unreadable: %s", path, exc)
            return None

    def stage(self, path: bytes, record: DirRecord) -> None:
        """Keep a row for the next commit (serialized now: staged rows wait for a writer flush)."""
        data = record.to_bytes()
        with self._lock:
            self._staged.append((path, data))
            self.staged_bytes += len(data)

    def touch(self, path: bytes) -> None:
        """Keep an unchanged row alive (its generation is bumped at commit)."""
        with self._lock:
            self._touched.append(path)

    def take_staged(self) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
        """Everything staged so far; call before flushing the writer, commit after."""
        with self._lock:
            staged, touched = self._staged, self._touched
            self._staged, self._touched = [], []
            self.staged_bytes = 0
        return staged, touched

    def commit(self, staged: Iterable[tuple[bytes, bytes]], touched: Iterable[bytes]) -> None:
        gen = self.generation
        repo = self.repo_id
        rows = [(repo, p, data) for p, data in staged]
        seen = [(repo, p, gen) for _repo, p, _data in rows]
        seen += [(repo, p, gen) for p in touched]
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany("INSERT OR REPLACE INTO dirs VALUES (?, ?, ?)", rows)
                self.db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?, ?)", seen)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            if rows:
                self._empty = False

    def finish(self) -> None:
        """Record this generation and drop rows of directories not seen for a long time."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            (f"gen:{self.repo_id}", str(self.generation)))
            old = (self.repo_id, self.generation - KEEP_GENERATIONS)
            self.db.execute("DELETE FROM dirs WHERE repo=? AND path IN "
                            "(SELECT path FROM seen WHERE repo=? AND gen<?)", (self.repo_id, *old))
            self.db.execute("DELETE FROM seen WHERE repo=? AND gen<?", old)
            self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()
