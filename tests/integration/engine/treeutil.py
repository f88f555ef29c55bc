"""Real trees on disk for engine tests: build one with every file kind, and compare two trees."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path
from typing import Any

IS_ROOT = os.geteuid() == 0
BAD_NAME = os.fsdecode(b"bad-\xff\xfe-name")  # not valid UTF-8: surrogate-escaped str
LONG_NAME = "L" * 250
NEWLINE_NAME = "new\nline name"


def write(path: Path, data: bytes, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def build_tree(root: Path, *, seed: int = 1) -> Path:
    """A small tree with every kind the engine must handle."""
    root.mkdir(parents=True, exist_ok=True)
    write(root / "text.txt", b"hello world\n" * 100)
    write(root / "empty", b"")
    write(root / "random.bin", random_bytes(300_000, seed))
    write(root / "sub" / "deeper" / "file", b"deep file")
    (root / "emptydir").mkdir()
    write(root / BAD_NAME, b"bad name contents")
    write(root / LONG_NAME, b"long name contents")
    write(root / NEWLINE_NAME, b"newline name contents")
    os.symlink("text.txt", root / "link-to-text")
    os.symlink("/nonexistent/target", root / "dangling")
    os.link(root / "text.txt", root / "sub" / "hardlink-to-text")
    os.mkfifo(root / "fifo")
    exe = write(root / "script.sh", b"#!/bin/sh\necho hi\n")
    os.chmod(exe, 0o4755)
    os.setxattr(root / "text.txt", "user.color", b"blue")
    os.setxattr(root / "sub", "user.dir", b"\x00\x01binary")
    # a sparse file: 1 MiB data, 8 MiB hole, 1 MiB data
    with open(root / "sparse.img", "wb") as fh:
        fh.write(random_bytes(1 << 20, seed + 1))
        fh.seek(9 << 20)
        fh.write(random_bytes(1 << 20, seed + 2))
    if IS_ROOT:
        os.mknod(root / "null-dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        os.chown(root / "random.bin", 12345, 54321)
    os.utime(root / "sub" / "deeper", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    return root


def describe(path: Path) -> dict[str, Any]:
    """Everything the engine promises to keep about one entry (not its inode number)."""
    st = os.lstat(path)
    info: dict[str, Any] = {
        "type": stat.S_IFMT(st.st_mode),
        "mode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }
    if not stat.S_ISDIR(st.st_mode):
        info["mtime_ns"] = st.st_mtime_ns
    if stat.S_ISREG(st.st_mode):
        info["data"] = path.read_bytes()
        info["links"] = st.st_nlink
    if stat.S_ISLNK(st.st_mode):
        info["target"] = os.readlink(path)
    else:
        info["mtime_ns"] = st.st_mtime_ns
        info["xattrs"] = {n: os.getxattr(path, n) for n in os.listxattr(path)}
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info["rdev"] = st.st_rdev
    return info


def snapshot_tree(root: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            out[str(full.relative_to(root))] = describe(full)
    return out


def assert_same_tree(original: Path, restored: Path) -> None:
    a, b = snapshot_tree(original), snapshot_tree(restored)
    assert sorted(a) == sorted(b), f"different entries: {set(a) ^ set(b)}"
    for rel in a:
        assert a[rel] == b[rel], f"{rel!r} differs: {_diff(a[rel], b[rel])}"


def _diff(x: dict[str, Any], y: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(x.get(k))[:80], str(y.get(k))[:80]) for k in set(x) | set(y) if x.get(k) != y.get(k)}


def inode_groups(root: Path) -> list[set[str]]:
    """Names that share an inode (hard links), as sets of relative paths."""
    by_inode: dict[int, set[str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                by_inode.setdefault(st.st_ino, set()).add(str(full.relative_to(root)))
    return sorted((g for g in by_inode.values() if len(g) > 1), key=sorted)
