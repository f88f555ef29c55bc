"""restore --verify: read back every restored regular file and compare it with the snapshot.

Each file is read in the pieces its blobs cut it into; each piece is hashed with the repository's keyed
id function and compared with the blob id the snapshot records, and the size with the recorded size.
Nothing is fetched from the repository but the trees (the blob ids are the expected hashes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cbr_agent.fs.longpath import LongPaths
from cbr_agent.progress import Progress
from cbr_agent.restore.select import Excluded, Selection, selected_files


@dataclass
class VerifyResult:
    files: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def verify_restore(repo: Any, tree: str, target: str, paths: Sequence[str] = ("/",),
                   excluded: Excluded | None = None, progress: Progress | None = None) -> VerifyResult:
    """``progress``: files and bytes read back so far (its totals are the caller's to set)."""
    result = VerifyResult()
    target = os.path.abspath(target).rstrip("/")
    with LongPaths() as longpaths:
        for snap_path, node in selected_files(repo, tree, Selection(paths, excluded)):
            problem = _verify_file(repo, target + snap_path, node, result, longpaths)
            if problem:
                result.errors.append(f"{target + snap_path}: {problem}")
            else:
                result.files += 1
            if progress is not None:
                progress.items_done += 1
                progress.bytes_done += int(node.get("size", 0))
    return result


def _verify_file(repo: Any, path: str, node: dict[str, Any], result: VerifyResult,
                 longpaths: LongPaths) -> str | None:
    try:
        fd = os.open(longpaths.short(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        return f"cannot be read back: {exc.strerror}"
    try:
        if os.fstat(fd).st_size != int(node.get("size", 0)):
            return f"size {os.fstat(fd).st_size} differs from the snapshot's {node.get('size', 0)}"
        offset = 0
        for blob_hex in node.get("content") or ():
            blob_id = bytes.fromhex(blob_hex)
            loc = repo.blob_location(blob_id)
            if loc is None:
                return f"blob {blob_hex} is not in the repository"
            data = os.pread(fd, loc.raw_length, offset)
            if len(data) != loc.raw_length or repo.blob_id(data) != blob_id:
                return f"contents differ from the snapshot at offset {offset}"
            offset += loc.raw_length
            result.bytes += loc.raw_length
        return None
    except OSError as exc:
        return f"cannot be read back: {exc.strerror}"
    finally:
        os.close(fd)
