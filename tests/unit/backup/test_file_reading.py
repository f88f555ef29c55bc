"""Reading files (small, chunked, sparse, vanished, replaced while read)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from cbr_agent.backup.filesaver import FileProblem, FileSaver
from cbr_agent.backup.sealthreads import BlobPool
from cbr_agent.chunking import ChunkerParams
from cbr_agent.fs.longpath import LongPaths


@pytest.fixture
def saver(tmp_path: Path):
    from cbr_agent.crypto import KdfParams
    from cbr_agent.repository import Repository

    repo = Repository.init(str(tmp_path / "repo"), "pw", kdf=KdfParams(n=1024),
                           chunker=ChunkerParams(min_size=4096, avg_size=16384, max_size=65536))
    writer = repo.writer()
    pool = BlobPool(writer, threads=2, budget=1 << 20)
    with LongPaths() as longpaths:
        saver = FileSaver(repo, writer, pool, should_stop=lambda: False, longpaths=longpaths)
        yield saver, (repo, writer), pool
    pool.close()
    writer.close()


def _content(store, pool: BlobPool, ids: list[str]) -> bytes:
    repo, writer = store
    pool.drain()
    writer.flush()
    return b"".join(repo.load_blob(bytes.fromhex(i)) for i in ids)


def test_small_large_and_sparse_files_read_back(saver, tmp_path: Path) -> None:
    fs, writer, pool = saver
    small = tmp_path / "small"
    small.write_bytes(b"tiny")
    res = fs.save(str(small))
    assert len(res.content) == 1 and _content(writer, pool, res.content) == b"tiny"

    data = os.urandom(5_000_000)
    big = tmp_path / "big"
    big.write_bytes(data)
    res = fs.save(str(big))
    assert len(res.content) > 20 and _content(writer, pool, res.content) == data
    assert res.bytes_read == len(data) and not res.changed

    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as fh:
        fh.write(b"a" * 10_000)
        fh.truncate(50_000_000)
    res = fs.save(str(sparse))
    assert res.size == 50_000_000 and res.bytes_read < 1_000_000
    assert _content(writer, pool, res.content) == b"a" * 10_000 + bytes(50_000_000 - 10_000)


def test_problems_are_file_problems(saver, tmp_path: Path) -> None:
    fs, _writer, _pool = saver
    f = tmp_path / "f"
    f.write_bytes(b"x")
    f.unlink()
    with pytest.raises(FileProblem, match="vanished"):
        fs.save(str(f))
    os.mkfifo(f)  # replaced by a FIFO after lstat: never opened for reading, never blocks
    with pytest.raises(FileProblem, match="changed type"):
        fs.save(str(f))
    os.unlink(f)
    os.symlink("/etc/hostname", f)
    with pytest.raises(FileProblem, match="changed type"):
        fs.save(str(f))
    assert stat.S_ISLNK(os.lstat(f).st_mode)


def test_a_file_renamed_over_after_the_listing_is_read_as_the_newer_version(saver, tmp_path: Path) -> None:
    fs, writer, pool = saver
    f = tmp_path / "f"
    f.write_bytes(b"old" * 3000)
    listed = os.lstat(f)
    (tmp_path / "new").write_bytes(b"new" * 4000)
    os.rename(tmp_path / "new", f)  # saved by write-then-rename after the directory was listed
    res = fs.save(str(f))
    assert not res.changed and res.stat_before.st_ino != listed.st_ino
    assert res.stat_before.st_size == res.size == 12_000
    assert _content(writer, pool, res.content) == b"new" * 4000


def test_a_version_renamed_over_while_read_counts_as_unchanged(tmp_path: Path) -> None:
    from cbr_agent.backup.filesaver import unchanged_while_read

    f = tmp_path / "f"
    f.write_bytes(b"v1")
    fd = os.open(f, os.O_RDONLY)
    try:
        before = os.fstat(fd)
        (tmp_path / "tmp").write_bytes(b"v2")
        os.rename(tmp_path / "tmp", f)  # the open version loses its last link (its ctime may move)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    assert after.st_nlink == 0 and unchanged_while_read(before, after)
    linked = os.lstat(f)
    os.utime(f, ns=(linked.st_atime_ns, linked.st_mtime_ns + 1))
    assert not unchanged_while_read(linked, os.lstat(f))  # a new mtime is a change
    fields = {k: getattr(linked, k) for k in ("st_size", "st_mtime_ns", "st_ctime_ns", "st_nlink")}
    still_linked = SimpleNamespace(**{**fields, "st_ctime_ns": linked.st_ctime_ns + 1})
    assert not unchanged_while_read(SimpleNamespace(**fields), still_linked)  # ctime moved, not renamed


def test_read_file_backs_up_the_version_found_and_gives_up_only_on_a_non_file(saver, tmp_path: Path) -> None:
    from cbr_agent.backup.readers import FileItem, read_file
    from cbr_agent.backup.runstate import BackupStats, RunState

    fs, store, pool = saver
    f = tmp_path / "f"
    f.write_bytes(b"old")
    listed = os.lstat(f)
    (tmp_path / "new").write_bytes(b"new version")
    os.rename(tmp_path / "new", f)
    state = RunState(None)
    node = read_file(fs, state, BackupStats(), FileItem(None, 0, str(f), "f", listed, True))
    assert node is not None and node["inode"] == os.lstat(f).st_ino != listed.st_ino
    assert node["size"] == 11 and _content(store, pool, node["content"]) == b"new version"
    assert state.stats.warnings == []
    os.unlink(f)
    os.mkfifo(f)  # a FIFO now, on every look: left out, with one warning
    assert read_file(fs, state, BackupStats(), FileItem(None, 0, str(f), "f", listed, True)) is None
    assert state.stats.warnings == [f"{f}: not backed up: changed type during backup"]
