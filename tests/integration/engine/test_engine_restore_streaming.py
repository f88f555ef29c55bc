"""Restore streams: contents are written while the snapshot is still being walked, small-file work is
spread over every thread, a damaged subtree fails only its directory, and nothing else changes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from cbr_agent.backup.run import backup_paths
from cbr_agent.restore import contents as contents_mod
from cbr_agent.restore import restorer as restorer_mod
from cbr_agent.restore.contents import ContentWriter
from cbr_agent.restore.restorer import Restorer, restore_snapshot
from tests.integration.engine.test_engine_corruption import flip_byte_of_blob
from tests.integration.engine.treeutil import assert_same_tree, build_tree, inode_groups, random_bytes, write


def _many_small_files(root: Path, dirs: int = 6, per_dir: int = 12) -> Path:
    for d in range(dirs):
        for f in range(per_dir):
            write(root / f"d{d}" / f"f{f}.txt", f"file {d}/{f}\n".encode() * (f + 1), mtime_ns=10**18 + f)
        write(root / f"d{d}" / "empty", b"")
    return root


@pytest.fixture
def tiny_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # small batches and items, so a small tree takes every path a large one takes
    monkeypatch.setattr(restorer_mod, "BATCH_FILES", 5)
    monkeypatch.setattr(contents_mod, "ITEM_BLOBS", 3)


def test_many_batches_restore_the_same_tree(engine, tmp_path: Path, tiny_batches) -> None:
    src = build_tree(tmp_path / "src")  # every kind: hard links, sparse file, fifo, long names, xattrs
    _many_small_files(src / "many")
    write(src / "big.bin", random_bytes(300_000, 7))  # several blobs, in more than one item
    backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    result = restore_snapshot(repo, repo.find_snapshot("latest"), str(tmp_path / "out"))
    assert result.errors == [] and result.warnings == []
    out = tmp_path / "out" / str(src).lstrip("/")
    assert_same_tree(src, out)
    assert inode_groups(out) == [{"text.txt", "sub/hardlink-to-text"}]
    assert list(out.rglob(".cbr-restore-*")) == []


def test_contents_are_written_while_the_walk_goes_on(engine, tmp_path: Path, tiny_batches,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole tree's plan is never held before the first write (peak memory does not grow with
    the snapshot): when the last directory's tree is loaded, files of earlier batches exist."""
    src = _many_small_files(tmp_path / "src", dirs=8)
    backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    out = tmp_path / "out"
    files_seen_at_load: list[int] = []
    load_tree = Restorer._load_tree

    def spying_load(self: Restorer, tree_id: str, where: str):
        files_seen_at_load.append(sum(1 for p in out.rglob("f*.txt")) if out.exists() else 0)
        return load_tree(self, tree_id, where)

    monkeypatch.setattr(Restorer, "_load_tree", spying_load)
    result = restore_snapshot(repo, repo.find_snapshot("latest"), str(out))
    assert result.errors == [] and result.files == 8 * 13
    # the pool writes while the main thread walks; by the last tree load, earlier batches are done
    # or under way: wait-free check that at least one earlier batch was written before the walk ended
    assert files_seen_at_load[-1] > 0, files_seen_at_load
    assert_same_tree(src, out / str(src).lstrip("/"))


def test_small_files_are_spread_over_every_thread(engine, tmp_path: Path, tiny_batches,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    src = _many_small_files(tmp_path / "src", dirs=4, per_dir=30)
    backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    writers: dict[str, int] = {}
    write_ = ContentWriter.write
    # each thread waits at its first write until all three hold work: one busy thread cannot take
    # everything (and with the work in one item, the wait times out and the restore fails)
    all_busy = threading.Barrier(3, timeout=20)

    def counting_write(self: ContentWriter, *args):
        name = threading.current_thread().name
        if name not in writers:
            writers[name] = 0
            all_busy.wait()
        writers[name] += 1
        return write_(self, *args)

    monkeypatch.setattr(ContentWriter, "write", counting_write)
    result = restore_snapshot(repo, repo.find_snapshot("latest"), str(tmp_path / "out"), threads=3)
    assert result.errors == [] and result.files == 4 * 31
    # all blobs sit in one pack: without items cut by blob count one thread would write them all
    assert len(writers) == 3, writers
    assert_same_tree(src, tmp_path / "out" / str(src).lstrip("/"))


def _restoring_threads(repo, out: Path, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Restore the latest snapshot into ``out``; the names of the threads that wrote file contents."""
    writers: set[str] = set()
    write_ = ContentWriter.write

    def recording_write(self: ContentWriter, *args):
        writers.add(threading.current_thread().name)
        return write_(self, *args)

    monkeypatch.setattr(ContentWriter, "write", recording_write)
    result = restore_snapshot(repo, repo.find_snapshot("latest"), str(out))
    assert result.errors == [] and result.files == 6 * 13
    return writers


def test_tiny_files_from_a_local_directory_are_written_by_one_thread(
        engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _many_small_files(tmp_path / "src")
    backup_paths(engine.settings(), [str(src)])
    writers = _restoring_threads(engine.open(), tmp_path / "out", monkeypatch)
    # every system call hands the GIL over: a second thread costs CPU and gains nothing here
    assert len(writers) == 1 and threading.current_thread().name not in writers, writers
    assert_same_tree(src, tmp_path / "out" / str(src).lstrip("/"))


def test_larger_files_after_tiny_ones_get_a_second_thread(engine, tmp_path: Path, tiny_batches,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restorer_mod, "SMALL_BLOB", 8192)  # the test chunker's blobs average ~16 KiB
    src = tmp_path / "src"
    for i in range(5):  # the first batch (the walk takes the last directory first): tiny files only
        write(src / "z-small" / f"f{i}", b"tiny %d" % i)
    for i in range(4):
        write(src / "a-large" / f"f{i}.bin", random_bytes(200_000, i))
    backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    small_writers: set[str] = set()
    both_busy = threading.Barrier(2, timeout=20)
    large_writers: set[int] = set()
    write_ = ContentWriter.write

    def recording_write(self: ContentWriter, job, *args):
        if "/z-small/" in job.final:
            small_writers.add(threading.current_thread().name)
        elif threading.get_ident() not in large_writers:
            large_writers.add(threading.get_ident())
            both_busy.wait()  # with one thread only, this times out and the restore fails
        return write_(self, job, *args)

    monkeypatch.setattr(ContentWriter, "write", recording_write)
    result = restore_snapshot(repo, repo.find_snapshot("latest"), str(tmp_path / "out"))
    assert result.errors == [] and result.files == 9
    assert len(small_writers) == 1 and len(large_writers) == 2, (small_writers, large_writers)
    assert_same_tree(src, tmp_path / "out" / str(src).lstrip("/"))


def test_tiny_files_from_a_remote_store_keep_two_threads(engine, tmp_path: Path, tiny_batches,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from cbr_agent.repository import Repository
    from cbr_agent.repository.backend import DirectoryBackend
    from cbr_agent.repository.backends.faulty import Fault, FaultyBackend
    from tests.integration.engine.conftest import PASSWORD

    src = _many_small_files(tmp_path / "src")
    backup_paths(engine.settings(), [str(src)])
    # any store but a local directory: here one whose every pack read waits, as a network's does
    remote = FaultyBackend(DirectoryBackend(engine.repo_path))
    remote.add(Fault("get", prefix="data/", times=0, error=None, delay=0.05))
    writers = _restoring_threads(Repository.open(remote, PASSWORD), tmp_path / "out", monkeypatch)
    assert len(writers) == 2, writers
    assert_same_tree(src, tmp_path / "out" / str(src).lstrip("/"))


def test_work_items_are_cut_by_bytes_blob_count_and_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    from cbr_agent.repository.index import BlobLocation

    monkeypatch.setattr(contents_mod, "ITEM_BLOBS", 4)
    monkeypatch.setattr(contents_mod, "GAP_BYTES", 1000)
    monkeypatch.setattr(contents_mod, "RANGE_BYTES", 10_000)
    locs, refs = {}, {}
    offsets = [0, 100, 200, 300, 400, 500,  # 6 neighbours: cut after 4
               5_000,  # a gap over GAP_BYTES
               5_100]
    for i, off in enumerate(offsets):
        blob_id = bytes([i]) * 32
        locs[blob_id] = BlobLocation("p1", off, 100, 150, 0)
        refs[blob_id] = [(None, 0)]
    big = bytes([99]) * 32
    locs[big], refs[big] = BlobLocation("p2", 0, 12_000, 12_000, 0), [(None, 0)]  # alone: over RANGE_BYTES
    items = contents_mod.work_items(locs, refs)
    shapes = sorted((read.pack_id, [wanted.loc.offset for wanted in read.blobs]) for read in items)
    assert shapes == [("p1", [0, 100, 200, 300]), ("p1", [400, 500]), ("p1", [5_000, 5_100]), ("p2", [0])]
    assert items[0].pack_id == "p2"  # the biggest read first


def test_damaged_subtree_fails_only_its_directory(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "good" / "a.txt", b"a" * 100)
    write(src / "bad" / "b.txt", b"b" * 100)
    write(src / "top.txt", b"top")
    backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    snap = repo.find_snapshot("latest")
    from cbr_agent.repository import decode_tree

    tree = snap.tree
    for part in [*src.parts[1:], "bad"]:  # down the snapshot to the "bad" directory
        nodes = decode_tree(repo.load_blob(bytes.fromhex(tree)))
        tree = next(n["subtree"] for n in nodes if n["name"] == part)
    bad_tree = tree
    flip_byte_of_blob(engine.repo_path, repo, bytes.fromhex(bad_tree))

    proc = engine.cli("restore", "latest", "--target", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr
    assert bad_tree in proc.stderr and "Traceback" not in proc.stderr
    out = tmp_path / "out" / str(src).lstrip("/")
    assert (out / "good" / "a.txt").read_bytes() == b"a" * 100
    assert (out / "top.txt").read_bytes() == b"top"
    assert not (out / "bad" / "b.txt").exists()


def test_a_file_of_one_blob_is_never_written_through_a_planted_link(engine, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary name is created with O_EXCL|O_NOFOLLOW: something already there (a symlink
    planted to redirect the write) fails that file instead of being followed."""
    src = tmp_path / "src"
    write(src / "f.txt", b"payload")
    backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    monkeypatch.setattr(restorer_mod.secrets, "token_hex", lambda n: "fixed")
    out = tmp_path / "out" / str(src).lstrip("/")
    out.mkdir(parents=True)
    os.symlink(victim, out / ".cbr-restore-fixed-1")
    result = restore_snapshot(repo, repo.find_snapshot("latest"), str(tmp_path / "out"))
    assert victim.read_bytes() == b"untouched"
    assert any("f.txt: not restored" in e for e in result.errors), result.errors
    assert not (out / "f.txt").exists()
