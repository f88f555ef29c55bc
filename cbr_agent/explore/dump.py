"""dump: one entry of a snapshot as a byte stream.

A regular file is written as it is, blob by blob (memory holds one blob). Anything else (a directory
with everything below it, a symlink, a device) becomes a POSIX (pax) tar stream with the recorded
metadata: mode, owner ids and names, mtime (to the nanosecond, in pax headers), symlink targets, hard
links (the second name of an inode is a link to the first), FIFOs and device nodes, and extended
attributes as ``SCHILY.xattr.*`` records (what GNU tar and bsdtar read). Names that are not UTF-8 keep
their bytes. Member names are relative: the dumped entry's own name, then its contents below it.
"""

from __future__ import annotations

import base64
import io
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from cbr_agent.errors import IntegrityError
from cbr_agent.progress import Progress
from cbr_agent.repository.tree import totals_of
from cbr_agent.repository.walk import Node, lookup, normalize, walk

_TAR_TYPES = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "fifo": tarfile.FIFOTYPE,
              "chardev": tarfile.CHRTYPE, "blockdev": tarfile.BLKTYPE}


class NotInSnapshot(LookupError):
    """The path is not in the snapshot."""


def find_entry(repo: Any, snapshot: Any, path: str) -> Node:
    node = lookup(repo, snapshot.tree, path)
    if node is None:
        raise NotInSnapshot(normalize(path))
    return node


def dump_progress(node: Node) -> Progress:
    """Counters for dumping ``node``: files and bytes, with totals where the snapshot records them (a
    directory's node carries its subtree's totals; trees of older versions do not)."""
    progress = Progress()
    if node.get("type") == "file":
        progress.start("dumping", "files", items_total=1, bytes_total=int(node.get("size", 0)))
    else:
        totals = totals_of(node)
        progress.start("dumping", "files", items_total=totals.files if totals else None,
                       bytes_total=totals.bytes if totals else None)
    return progress


def file_blobs(repo: Any, node: Node, path: str, progress: Progress | None = None) -> Iterator[bytes]:
    """A file's contents, one blob at a time (counted in ``progress`` as they are handed out)."""
    for blob_hex in node.get("content") or ():
        try:
            blob_id = bytes.fromhex(blob_hex)
        except ValueError:
            raise IntegrityError(f"{path}: blob id {blob_hex!r} is not hex") from None
        data = repo.load_blob(blob_id)
        if progress is not None:
            progress.bytes_done += len(data)
        yield data


def file_length(repo: Any, node: Node, path: str) -> int:
    """The length of a file's contents from the index (the tar header needs it before the data)."""
    total = 0
    for blob_hex in node.get("content") or ():
        loc = repo.blob_location(bytes.fromhex(blob_hex))
        if loc is None:
            raise IntegrityError(f"{path}: blob {blob_hex} is not in the repository")
        total += loc.raw_length
    return total


def write_file(repo: Any, node: Node, path: str, out: BinaryIO, progress: Progress | None = None) -> int:
    written = 0
    for data in file_blobs(repo, node, path, progress):
        out.write(data)
        written += len(data)
    if progress is not None:
        progress.items_done += 1
    return written


class _BlobStream(io.RawIOBase):
    """A file's contents as a readable stream (for tarfile), one blob in memory at a time."""

    def __init__(self, blobs: Iterator[bytes]) -> None:
        self._blobs = blobs
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._current:
            data = next(self._blobs, None)
            if data is None:
                return 0
            self._current = memoryview(data)
        n = min(len(buffer), len(self._current))
        buffer[:n] = self._current[:n]
        self._current = self._current[n:]
        return n


def write_tar(repo: Any, snapshot: Any, path: str, out: BinaryIO, progress: Progress | None = None) -> int:
    """Write ``path`` of the snapshot (and everything below it) as a tar stream; returns the number of
    entries. ``progress`` counts the regular files and their bytes."""
    path = normalize(path)
    node = find_entry(repo, snapshot, path)
    base = posixpath.basename(path)  # "" for the snapshot root: its contents are the top level
    count = 0
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        entries: Iterator[tuple[str, Node]] = iter(())
        if base:
            entries = iter([(base, node)])
        if node.get("type") == "dir" and node.get("subtree"):
            entries = _chain(entries, ((base + rel, n) for rel, n in walk(repo, node["subtree"], "")))
        for name, entry in entries:
            count += _add(repo, tar, name.lstrip("/"), entry, path, links, progress)
    return count


def _chain(first: Iterator[tuple[str, Node]], rest: Iterator[tuple[str, Node]]
           ) -> Iterator[tuple[str, Node]]:
    yield from first
    yield from rest


def _add(repo: Any, tar: tarfile.TarFile, name: str, node: Node, where: str,
         links: dict[tuple[int, int], str], progress: Progress | None) -> bool:
    """Add one member; False for what tar cannot hold (sockets)."""
    info = tarfile.TarInfo(name)
    kind = node.get("type")
    info.mode = stat.S_IMODE(int(node.get("mode", 0o644)))
    info.uid, info.gid = int(node.get("uid", 0)), int(node.get("gid", 0))
    info.uname, info.gname = node.get("user") or "", node.get("group") or ""
    mtime_ns = int(node.get("mtime_ns", 0))
    info.mtime = mtime_ns // 1_000_000_000
    pax = {"mtime": f"{mtime_ns // 1_000_000_000}.{mtime_ns % 1_000_000_000:09d}"}
    for key, value in (node.get("xattrs") or {}).items():
        pax["SCHILY.xattr." + key] = base64.b64decode(value).decode("utf-8", "surrogateescape")
    info.pax_headers = pax
    full = where.rstrip("/") + "/" + name
    if kind == "file":
        if progress is not None:
            progress.items_done += 1
        key = (int(node.get("dev", 0)), int(node.get("inode", 0)))
        if int(node.get("links", 1)) > 1 and key in links:
            info.type, info.linkname = tarfile.LNKTYPE, links[key]
            tar.addfile(info)
            if progress is not None:  # the totals count each name of a file
                progress.bytes_done += int(node.get("size", 0))
            return True
        if int(node.get("links", 1)) > 1:
            links[key] = name
        info.size = file_length(repo, node, full)
        tar.addfile(info, io.BufferedReader(_BlobStream(file_blobs(repo, node, full, progress)), 1 << 20))
        return True
    if kind not in _TAR_TYPES:  # sockets and unknown types have no tar form
        return False
    info.type = _TAR_TYPES[kind]
    if kind == "symlink":
        info.linkname = str(node.get("target", ""))
    if kind in ("chardev", "blockdev"):
        rdev = int(node.get("rdev", 0))
        info.devmajor, info.devminor = os.major(rdev), os.minor(rdev)
    tar.addfile(info)
    return True
