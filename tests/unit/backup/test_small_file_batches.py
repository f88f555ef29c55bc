"""Small files read in batches, on the walker's thread or by helper processes: one pread each, one
writer call per batch, slots resolved together, and the careful path when a file changed between lstat
and reading."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from cbr_agent.backup.filesaver import FileProblem, FileSaver
from cbr_agent.backup.readers import FileItem, ReaderThreads
from cbr_agent.backup.runstate import RunState
from cbr_agent.backup.sealthreads import BlobPool
from cbr_agent.backup.smallbatch import read_small
from cbr_agent.backup.smallfiles import SmallFiles
from cbr_agent.backup.treesaver import DirTask, TreeAssembler
from cbr_agent.chunking import ChunkerParams
from cbr_agent.crypto import KdfParams
from cbr_agent.fs.longpath import LongPaths
from cbr_agent.fs.nodes import node_from_stat
from cbr_agent.repository import Repository, decode_tree


def _xattrs_supported(path: Path) -> bool:
    try:
        os.setxattr(path, "user.probe", b"1")
    except OSError:
        return False
    os.removexattr(path, "user.probe")
    return True


def test_read_small_reads_content_stat_and_xattrs_through_the_fd(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"hello")
    if _xattrs_supported(f):
        os.setxattr(f, "user.note", b"\x00\xff")
    got = read_small(str(f), os.lstat(f).st_ino, 4096, LongPaths())
    assert got is not None and got.data == b"hello" and got.stat_before.st_size == 5
    if _xattrs_supported(f):
        assert got.xattrs == {"user.note": "AP8="}
    assert read_small(str(f), os.lstat(f).st_ino, 4, LongPaths()) is None  # over the limit: not a small file


def test_read_small_refuses_what_is_no_longer_a_regular_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    st = os.lstat(f)
    os.link(f, tmp_path / "keep")  # the listed inode stays alive: a new file cannot reuse its number
    f.unlink()
    with pytest.raises(FileProblem, match="vanished"):
        read_small(str(f), st.st_ino, 4096, LongPaths())
    os.mkfifo(f)  # a FIFO now: opened without blocking, never read
    with pytest.raises(FileProblem, match="changed type"):
        read_small(str(f), st.st_ino, 4096, LongPaths())
    os.unlink(f)
    f.write_bytes(b"other file, other inode")  # a newer version saved by rename: read as it is
    got = read_small(str(f), st.st_ino, 4096, LongPaths())
    assert got is not None and got.data == b"other file, other inode"
    assert got.stat_before.st_ino == os.lstat(f).st_ino != st.st_ino


@pytest.fixture(params=[0, 1, "readers"], ids=["in-process", "helper-process", "reader-threads"])
def parts(request, tmp_path: Path):
    repo = Repository.init(str(tmp_path / "repo"), "pw", kdf=KdfParams(n=1024),
                           chunker=ChunkerParams(min_size=4096, avg_size=16384, max_size=65536))
    writer = repo.writer()
    pool = BlobPool(writer, threads=1, budget=1 << 20)
    state = RunState(None)
    saver = FileSaver(repo, writer, pool, should_stop=state.should_stop,
                      longpaths=LongPaths())
    trees = TreeAssembler(repo, writer, None, state)
    readers = ReaderThreads(saver, state, trees, readers=2, tick=lambda: None)
    readers.start()
    offload = request.param == "readers"
    small = SmallFiles(writer, saver, state, trees, tick=lambda: None,
                       helpers=0 if offload else request.param, helpers_after=0,
                       offload=readers.submit if offload else None, offload_bytes=0)
    yield repo, writer, pool, state, trees, small
    small.close()
    readers.stop()
    pool.close()
    writer.close()


def test_batch_builds_the_tree_and_takes_the_careful_path_when_needed(parts, tmp_path: Path) -> None:
    repo, writer, pool, state, trees, small = parts
    src = tmp_path / "src"
    src.mkdir()
    contents = {f"t{i:03d}": (b"line %d\n" % i) * (i % 50) for i in range(150)}  # incl. empty files
    contents["dup"] = contents["t010"]
    for name, data in contents.items():
        (src / name).write_bytes(data)
    (src / "grows").write_bytes(b"g" * 1000)
    (src / "gone").write_bytes(b"soon deleted")
    entries = sorted((p.name, os.lstat(p)) for p in src.iterdir())
    top = DirTask(str(src), node_from_stat("", os.lstat(src)), None, 0, (0, 0))
    first = trees.new_slots(top, len(entries))
    (src / "gone").unlink()
    # over three times the chunker's maximum, so it is always several chunks, read by the FileSaver
    grown = random.Random(7).randbytes(200_000)
    with open(src / "grows", "r+b") as fh:
        fh.write(grown)
    for i, (name, st) in enumerate(entries):
        small.add(FileItem(top, first + i, str(src / name), name, st, name == "dup"), st.st_size)
    assert trees.root_tree is None
    small.flush()
    trees.walked(top)
    assert trees.done.wait(30)  # batches given to the reader threads may still be running
    pool.drain()
    writer.flush()
    nodes = {n["name"]: n for n in decode_tree(repo.load_blob(bytes.fromhex(trees.root_tree)))}
    assert set(nodes) == set(contents) | {"grows"}

    def load(node: dict) -> bytes:
        return b"".join(repo.load_blob(bytes.fromhex(c)) for c in node["content"])

    for name, data in contents.items():
        assert load(nodes[name]) == data and nodes[name]["size"] == len(data)
    assert nodes["t000"]["content"] == []
    assert nodes["dup"]["content"] == nodes["t010"]["content"]
    assert load(nodes["grows"]) == grown and len(nodes["grows"]["content"]) > 1
    s = state.stats
    assert (s.files_new, s.files_changed) == (len(contents), 1)
    assert s.bytes_read == sum(map(len, contents.values())) + len(grown)
    assert s.warnings == [f"{src / 'gone'}: not backed up: vanished during backup"]
    if small._helpers:
        assert small.batches_by_helpers > 0  # the helper did take batches
    elif small._offload is not None:
        assert small.batches_offloaded == 3  # every batch, beside the walk
    else:
        assert small.batches_offloaded == 0


def _listed(src: Path, trees: TreeAssembler) -> tuple[DirTask, int, list[tuple[str, os.stat_result]]]:
    """``src`` as the walker would list it: its task, its first slot and its sorted entries."""
    entries = sorted((p.name, os.lstat(p)) for p in src.iterdir())
    top = DirTask(str(src), node_from_stat("", os.lstat(src)), None, 0, (0, 0))
    return top, trees.new_slots(top, len(entries)), entries


def test_a_helper_killed_mid_backup_loses_no_file(tmp_path: Path) -> None:
    import signal

    repo = Repository.init(str(tmp_path / "repo"), "pw", kdf=KdfParams(n=1024))
    writer = repo.writer()
    pool = BlobPool(writer, threads=1, budget=1 << 20)
    state = RunState(None)
    saver = FileSaver(repo, writer, pool, should_stop=state.should_stop,
                      longpaths=LongPaths())
    trees = TreeAssembler(repo, writer, None, state)
    small = SmallFiles(writer, saver, state, trees, tick=lambda: None, helpers=1, helpers_after=0)
    src = tmp_path / "src"
    src.mkdir()
    contents = {f"f{i:04d}": b"%d\n" % i * (1 + i % 30) for i in range(64 * 12)}
    for name, data in contents.items():
        (src / name).write_bytes(data)
    top, first, entries = _listed(src, trees)
    try:
        for i, (name, st) in enumerate(entries):
            small.add(FileItem(top, first + i, str(src / name), name, st, False), st.st_size)
            if i == 64:  # the first batch started the helper: freeze it so batches pile up, then kill it
                helper = small._pool._helpers[0].proc
                os.kill(helper.pid, signal.SIGSTOP)
            if i == 64 * 6:
                helper.kill()
        small.flush()
        trees.walked(top)
    finally:
        small.close()
    assert trees.done.is_set()
    pool.drain()
    writer.close()
    nodes = {n["name"]: n for n in decode_tree(repo.load_blob(bytes.fromhex(trees.root_tree)))}
    assert {name: b"".join(repo.load_blob(bytes.fromhex(c)) for c in n["content"])
            for name, n in nodes.items()} == contents
    assert small.batches_redone > 0 and state.stats.files_new == len(contents)
    assert state.stats.warnings == []
    pool.close()


def test_batches_of_tiny_files_stay_on_the_walkers_thread(tmp_path: Path) -> None:
    """Only a batch of a megabyte or more goes to the reader threads: one of tiny files is mostly Python
    work, and handing it over would only let the walk run ahead with more directories open."""
    repo = Repository.init(str(tmp_path / "repo"), "pw", kdf=KdfParams(n=1024))
    writer = repo.writer()
    pool = BlobPool(writer, threads=1, budget=1 << 20)
    state = RunState(None)
    saver = FileSaver(repo, writer, pool, should_stop=state.should_stop, longpaths=LongPaths())
    trees = TreeAssembler(repo, writer, None, state)
    handed: list = []
    small = SmallFiles(writer, saver, state, trees, tick=lambda: None, offload=handed.append)
    src = tmp_path / "src"
    src.mkdir()
    sizes = [100] * 64 + [200_000] * 8  # a batch of 64 tiny files, then one of 1.6 MB
    for i, size in enumerate(sizes):
        (src / f"f{i:03d}").write_bytes(random.Random(i).randbytes(size))
    top, first, entries = _listed(src, trees)
    try:
        for i, (name, st) in enumerate(entries):
            small.add(FileItem(top, first + i, str(src / name), name, st, False), st.st_size)
        small.flush()
        trees.walked(top)
        assert small.batches_offloaded == 1 and len(handed) == 1 and not trees.done.is_set()
        handed[0]()  # what a reader thread would do
        assert trees.done.is_set()
    finally:
        small.close()
        pool.close()
        writer.close()
