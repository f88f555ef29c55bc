"""Reading files (small, chunked, sparse, vanished, replaced while read)."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# -- a changed file read with its previous version's chunks (FileSaver._save_known)

def _saved_before(fs: FileSaver, store, pool: BlobPool, path: Path, data: bytes) -> list[str]:
    """``data`` written and backed up at ``path``: its chunk ids, in the index."""
    path.write_bytes(data)
    content = fs.save(str(path)).content
    pool.drain()
    store[1].flush()
    return content


def _edited(data: bytes, edit: tuple[str, float, int, int]) -> bytes:
    op, where, n, seed = edit
    at = int(where * len(data))
    new = random.Random(seed).randbytes(n)
    if op == "overwrite":
        return data[:at] + new + data[at + n:]
    if op == "insert":
        return data[:at] + new + data[at:]
    if op == "delete":
        return data[:at] + data[at + n:]
    if op == "append":
        return data + new
    return data[:at]  # truncate


_edits = st.lists(st.tuples(st.sampled_from(["overwrite", "insert", "delete", "append", "truncate"]),
                            st.floats(0, 1), st.integers(1, 40_000), st.integers(0, 2**32)), max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), size=st.integers(0, 400_000), edits=_edits,
       lost=st.one_of(st.none(), st.integers(0, 1000)))
def test_a_changed_file_read_with_its_previous_chunks_is_cut_as_if_read_whole(
        saver, tmp_path: Path, seed: int, size: int, edits: list, lost: int | None) -> None:
    fs, store, pool = saver
    f = tmp_path / "f"
    old = random.Random(seed).randbytes(size)
    known = _saved_before(fs, store, pool, f, old)
    if lost is not None and known:  # a previous chunk the repository no longer has
        known[lost % len(known)] = os.urandom(32).hex()
    new = old
    for edit in edits:
        new = _edited(new, edit)
    f.write_bytes(new)
    with_known = fs.save(str(f), known)
    whole = fs.save(str(f))
    assert with_known.content == whole.content  # the same cuts, so the same dedup
    assert with_known.size == len(new) and not with_known.changed
    assert _content(store, pool, with_known.content) == new


def test_a_file_changed_in_the_middle_has_only_the_changed_part_cut_again(saver, tmp_path: Path) -> None:
    fs, store, pool = saver
    writer = store[1]
    f = tmp_path / "f"
    rng = random.Random(5)
    data = rng.randbytes(2_000_000)
    known = _saved_before(fs, store, pool, f, data)
    f.write_bytes(data[:1_000_000] + rng.randbytes(5000) + data[1_005_000:])
    gate = writer.stats.blobs_duplicate
    res = fs.save(str(f), known)
    # chunks proven by their hash never reach the writer; the ones cut again around the change are new,
    # and cutting stops where a cut lands on a previous chunk's start. The 5,000 bytes overlap up to three
    # previous chunks (4 KiB at least each), and the cut that lands on a previous start may come one
    # chunk later (the repository's random key decides where cuts fall: a bound of 3 failed once in
    # about 30 runs)
    assert writer.stats.blobs_duplicate == gate
    assert len(set(res.content) & set(known)) >= len(known) - 4
    gate = writer.stats.blobs_duplicate
    whole = fs.save(str(f))  # without the previous chunks: every chunk through the gate again
    assert whole.content == res.content and writer.stats.blobs_duplicate - gate == len(res.content)
    # bytes inserted: past them, the first chunk cut again that equals a previous one picks the
    # previous chunks up again, shifted
    f.write_bytes(data[:700_000] + rng.randbytes(3000) + data[700_000:])
    gate = writer.stats.blobs_duplicate
    res = fs.save(str(f), known)
    assert writer.stats.blobs_duplicate - gate <= 1 and res.content == fs.save(str(f)).content
    # a log that grew: every previous chunk but the last is kept without cutting, and the last one is
    # cut again with what follows it, as reading the whole file would
    f.write_bytes(data + rng.randbytes(30_000))
    gate = writer.stats.blobs_duplicate
    res = fs.save(str(f), known)
    assert res.content[: len(known) - 1] == known[:-1] and writer.stats.blobs_duplicate == gate
    assert res.content == fs.save(str(f)).content


def test_a_cancelled_backup_stops_reading_a_changed_file_with_an_error(saver, tmp_path: Path) -> None:
    """Never a shorter content: a stop asked for while a changed file is cut again is a FileProblem."""
    fs, store, pool = saver
    f = tmp_path / "f"
    known = _saved_before(fs, store, pool, f, random.Random(9).randbytes(300_000))
    f.write_bytes(random.Random(10).randbytes(300_000))  # nothing of it is known: cut from the start
    calls = iter(range(1_000))
    fs.should_stop = lambda: next(calls) >= 1  # asked for once the cutting has begun
    with pytest.raises(FileProblem, match="cancelled"):
        fs.save(str(f), known)


def test_a_repository_error_while_a_changed_file_is_cut_again_stops_the_backup(saver, tmp_path: Path) -> None:
    """Not a per-file warning: a write that fails (a full disk under the repository) propagates."""
    fs, store, pool = saver
    f = tmp_path / "f"
    known = _saved_before(fs, store, pool, f, random.Random(11).randbytes(300_000))
    f.write_bytes(random.Random(12).randbytes(300_000))

    class FullDisk:  # the writer's disk, full
        codec = store[1].codec

        def save(self, data: bytes) -> bytes:
            raise OSError(28, "No space left on device")

    fs.writer = FullDisk()
    with pytest.raises(OSError, match="No space left"):
        fs.save(str(f), known)
