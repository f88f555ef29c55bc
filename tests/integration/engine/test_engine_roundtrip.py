"""Backup -> restore -> compare contents and metadata, for every file kind the engine promises."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cbr_agent.backup.run import backup_paths
from cbr_agent.restore.restorer import restore_snapshot
from tests.integration.engine.treeutil import (
    BAD_NAME,
    IS_ROOT,
    LONG_NAME,
    NEWLINE_NAME,
    assert_same_tree,
    build_tree,
    inode_groups,
    write,
)


def restored(target: Path, src: Path) -> Path:
    return target / str(src).lstrip("/")


def test_roundtrip_every_kind(engine, tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src")
    summary = backup_paths(engine.settings(), [str(src)])
    assert summary.warnings == []
    assert summary.snapshot_id
    assert summary.files_new >= 8

    repo = engine.open()
    snap = repo.find_snapshot("latest")
    assert snap.paths == [str(src)] and snap.tree and snap.summary["files_new"] == summary.files_new
    result = restore_snapshot(repo, snap, str(tmp_path / "out"))
    assert result.errors == [] and result.warnings == []
    out = restored(tmp_path / "out", src)
    assert_same_tree(src, out)

    # kinds checked one by one as well, so a failure says what broke
    assert (out / BAD_NAME).read_bytes() == b"bad name contents"
    assert (out / LONG_NAME).exists() and (out / NEWLINE_NAME).exists()
    assert os.readlink(out / "dangling") == "/nonexistent/target"
    assert stat.S_ISFIFO(os.lstat(out / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(out / "script.sh").st_mode) == 0o4755
    assert os.getxattr(out / "sub", "user.dir") == b"\x00\x01binary"
    assert inode_groups(out) == [{"text.txt", "sub/hardlink-to-text"}]
    sparse = os.lstat(out / "sparse.img")
    assert sparse.st_size == 10 << 20
    assert sparse.st_blocks * 512 < 4 << 20, "the 8 MiB hole was written out instead of left as a hole"
    assert os.lstat(out / "sub" / "deeper").st_mtime_ns == 1_600_000_000_123_456_789
    if IS_ROOT:
        assert os.lstat(out / "null-dev").st_rdev == os.makedev(1, 3)
        assert os.lstat(out / "random.bin").st_uid == 12345


def test_sparse_file_holes_are_not_read(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "huge-hole", "wb") as fh:
        fh.write(b"x" * 5000)
        fh.truncate(512 << 20)  # 512 MiB apparent size, 5000 bytes of data
    summary = backup_paths(engine.settings(), [str(src)])
    assert summary.bytes_total == 512 << 20
    assert summary.bytes_read < 1 << 20, "holes must be skipped with SEEK_DATA, not read"
    assert summary.bytes_stored < 100_000  # the zero chunk compresses to almost nothing
    repo = engine.open()
    restore_snapshot(repo, repo.find_snapshot("latest"), str(tmp_path / "out"))
    out = restored(tmp_path / "out", src) / "huge-hole"
    st = os.lstat(out)
    assert st.st_size == 512 << 20 and st.st_blocks * 512 < 4 << 20
    with open(out, "rb") as fh:
        assert fh.read(5000) == b"x" * 5000
        fh.seek(300 << 20)
        assert fh.read(10) == bytes(10)


def test_paths_subset_and_overwrite_policies(engine, tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src")
    backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    snap = repo.find_snapshot("latest")
    target = tmp_path / "out"
    res = restore_snapshot(repo, snap, str(target), paths=[str(src / "sub")])
    assert res.errors == []
    out = restored(target, src)
    assert (out / "sub" / "deeper" / "file").read_bytes() == b"deep file"
    assert not (out / "text.txt").exists()

    (out / "sub" / "deeper" / "file").write_bytes(b"local change")
    res = restore_snapshot(repo, snap, str(target), paths=[str(src / "sub")], overwrite="never")
    assert (out / "sub" / "deeper" / "file").read_bytes() == b"local change" and res.skipped >= 1
    res = restore_snapshot(repo, snap, str(target), paths=[str(src / "sub")], overwrite="if-changed")
    assert (out / "sub" / "deeper" / "file").read_bytes() == b"deep file"
    res = restore_snapshot(repo, snap, str(target), paths=[str(src / "sub")], overwrite="if-changed")
    assert res.skipped >= 1  # unchanged now: left alone
    res = restore_snapshot(repo, snap, str(target), paths=[str(src / "sub")], overwrite="always")
    assert res.errors == [] and res.skipped == 0
    leftovers = [p for p in target.rglob(".cbr-restore-*")]
    assert leftovers == []


def test_dry_run_restore_writes_nothing(engine, tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src")
    backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    res = restore_snapshot(repo, repo.find_snapshot("latest"), str(tmp_path / "out"), dry_run=True)
    assert res.files >= 8 and res.bytes_written > 0
    assert not (tmp_path / "out").exists()


def test_excludes_are_applied(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "keep.txt", b"keep")
    write(src / "drop.tmp", b"drop")
    write(src / "node_modules" / "x.js", b"x")
    write(src / "deep" / "node_modules" / "y.js", b"y")
    write(src / "build" / "a.o", b"o")
    write(src / "build" / "a.c", b"c")
    write(src / "secret" / "key", b"k")
    excludes = ("*.tmp", "node_modules", "build/*.o", str(src / "secret"))
    summary = backup_paths(engine.settings(), [(str(src), excludes)])
    repo = engine.open()
    snap = repo.find_snapshot(summary.snapshot_id)
    assert snap.excludes == {str(src): list(excludes)}
    restore_snapshot(repo, snap, str(tmp_path / "out"))
    out = restored(tmp_path / "out", src)
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert got == ["build", "build/a.c", "deep", "keep.txt"]


def test_several_paths_and_a_single_file(engine, tmp_path: Path) -> None:
    a = write(tmp_path / "one" / "a.txt", b"a").parent
    b = write(tmp_path / "two" / "b.txt", b"b")
    summary = backup_paths(engine.settings(), [str(a), str(b)])
    assert summary.warnings == []
    repo = engine.open()
    restore_snapshot(repo, repo.find_snapshot("latest"), str(tmp_path / "out"))
    assert restored(tmp_path / "out", a / "a.txt").read_bytes() == b"a"
    assert restored(tmp_path / "out", b).read_bytes() == b"b"


def test_nested_paths_are_backed_up_once(engine, tmp_path: Path) -> None:
    write(tmp_path / "top" / "inner" / "f", b"f")
    summary = backup_paths(engine.settings(), [str(tmp_path / "top"), str(tmp_path / "top" / "inner")])
    assert summary.files_new == 1


@pytest.mark.parametrize("depth", [60])
def test_deep_tree_with_a_path_longer_than_path_max_parts(engine, tmp_path: Path, depth: int) -> None:
    # 60 levels of 60-character names: about 3.7 KB of path, deeper than any recursion would like
    path = tmp_path / "src"
    for i in range(depth):
        path = path / (f"{i:02d}" + "d" * 58)
    write(path / "leaf", b"leaf")
    summary = backup_paths(engine.settings(), [str(tmp_path / "src")])
    assert summary.warnings == [] and summary.files_new == 1
    repo = engine.open()
    restore_snapshot(repo, repo.find_snapshot("latest"), str(tmp_path / "o"))
    assert restored(tmp_path / "o", path / "leaf").read_bytes() == b"leaf"


def _fwalk_files(root: Path) -> dict[str, bytes]:
    """Relative path -> contents, through directory descriptors (paths longer than PATH_MAX work)."""
    out: dict[str, bytes] = {}
    for dirpath, _dirs, files, dirfd in os.fwalk(root):
        for name in files:
            fd = os.open(name, os.O_RDONLY, dir_fd=dirfd)
            with os.fdopen(fd, "rb") as fh:
                out[os.path.relpath(os.path.join(dirpath, name), root)] = fh.read()
    return out


def test_paths_longer_than_path_max(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    depth = 0
    try:
        for depth in range(1, 25):  # 24 levels of 250-byte names: about 6 KB of path
            name = f"{depth:03d}" + "n" * 247
            os.mkdir(name, dir_fd=fd)
            new = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = new
            if depth % 8 == 0:
                leaf = os.open(f"file-at-{depth}", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
                os.write(leaf, f"level {depth}".encode() * 100)
                os.close(leaf)
        os.symlink("file-at-24", "link", dir_fd=fd)
    finally:
        os.close(fd)
    summary = backup_paths(engine.settings(), [str(src)])
    assert summary.warnings == [] and summary.files_new == 3
    repo = engine.open()
    result = restore_snapshot(repo, repo.find_snapshot("latest"), str(tmp_path / "out"))
    assert result.errors == [] and result.warnings == []
    out = restored(tmp_path / "out", src)
    original, copy = _fwalk_files(src), _fwalk_files(out)
    assert len(original) == 4 and copy == original  # three files and the link (read through)
    assert max(len(os.fsencode(p)) for p in copy) > 5000


@pytest.mark.skipif(not os.path.ismount("/dev/pts") or not os.path.exists("/dev/pts/ptmx"),
                    reason="needs /dev/pts mounted below /dev")
def test_one_file_system(engine) -> None:
    from cbr_agent.repository import decode_tree

    def pts_listing(settings) -> list[str]:
        summary = backup_paths(settings, ["/dev"])
        repo = engine.open()
        tree = repo.find_snapshot(summary.snapshot_id).tree
        for name in ("dev", "pts"):
            node = next(n for n in decode_tree(repo.load_blob(bytes.fromhex(tree))) if n["name"] == name)
            tree = node["subtree"]
        return [n["name"] for n in decode_tree(repo.load_blob(bytes.fromhex(tree)))]

    assert pts_listing(engine.settings()) == []  # a mount point: kept as an empty directory
    assert "ptmx" in pts_listing(engine.settings(one_file_system=False))


_NAME_BYTES = st.binary(min_size=1, max_size=40).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.dictionaries(_NAME_BYTES, st.binary(max_size=70_000), min_size=1, max_size=8),
       subdir=_NAME_BYTES)
def test_property_any_names_and_contents_round_trip(engine, tmp_path: Path, files, subdir) -> None:
    import shutil
    import uuid

    assume(subdir not in files)
    base = tmp_path / uuid.uuid4().hex
    src = base / "src"
    for i, (name, data) in enumerate(files.items()):
        parent = src / os.fsdecode(subdir) if i % 2 else src
        parent.mkdir(parents=True, exist_ok=True)
        (parent / os.fsdecode(name)).write_bytes(data)
    summary = backup_paths(engine.settings(), [str(src)])
    assert summary.warnings == []
    repo = engine.open()
    result = restore_snapshot(repo, repo.find_snapshot(summary.snapshot_id), str(base / "out"))
    assert result.errors == []
    assert_same_tree(src, restored(base / "out", src))
    shutil.rmtree(base)
