"""The files cache: rows round-trip, are per repository, only appear after commit, survive damage."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.backup.archiver import listing_fingerprint
from cbr_agent.backup.filescache import DirRecord, FilesCache


def record(n: int = 3) -> DirRecord:
    nodes = [{"name": f"f{i}", "type": "file", "size": i, "content": ["ab" * 32]} for i in range(n)]
    nodes.append({"name": "sub", "type": "dir", "subtree": "cd" * 32})
    return DirRecord.build(scan_ns=123, fingerprint=b"fp", tree="ef" * 32, nodes=nodes,
                           blobs=bytes.fromhex("ab" * 32) * n, files=n, size=sum(range(n)))


def test_rows_appear_only_after_commit(tmp_path: Path) -> None:
    cache = FilesCache(tmp_path / "fc.db", "repo-a")
    cache.stage(b"/data", record())
    assert cache.get(b"/data") is None  # staged rows wait for the writer flush
    cache.commit(*cache.take_staged())
    got = cache.get(b"/data")
    assert got == record() and got.subtrees() == {"sub": "cd" * 32}
    assert got.nodes == record().nodes and got.nodes[0]["content"] == ["ab" * 32]
    cache.close()


def test_rows_are_per_repository_and_persist(tmp_path: Path) -> None:
    cache = FilesCache(tmp_path / "fc.db", "repo-a")
    cache.stage(os.fsencode("/d\udcff"), record())
    cache.commit(*cache.take_staged())
    cache.finish()
    cache.close()
    assert FilesCache(tmp_path / "fc.db", "repo-b").get(os.fsencode("/d\udcff")) is None
    again = FilesCache(tmp_path / "fc.db", "repo-a")
    assert again.get(os.fsencode("/d\udcff")) == record()
    assert again.generation == 2


def test_old_rows_are_dropped(tmp_path: Path) -> None:
    from cbr_agent.backup import filescache

    cache = FilesCache(tmp_path / "fc.db", "r")
    cache.stage(b"/gone", record())
    cache.commit(*cache.take_staged())
    cache.finish()
    cache.close()
    for _ in range(filescache.KEEP_GENERATIONS + 1):
        c = FilesCache(tmp_path / "fc.db", "r")
        c.stage(b"/kept", record())
        c.commit(*c.take_staged())
        c.finish()
        c.close()
    c = FilesCache(tmp_path / "fc.db", "r")
    assert c.get(b"/gone") is None and c.get(b"/kept") is not None


def test_a_damaged_cache_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "fc.db"
    path.write_bytes(b"this is not a database" * 100)
    cache = FilesCache(path, "r")
    assert cache.get(b"/x") is None
    cache.stage(b"/x", record())
    cache.commit(*cache.take_staged())
    assert cache.get(b"/x") is not None


def _stat(mode: int, ino: int, size: int, mtime: int, ctime: int) -> os.stat_result:
    return os.stat_result((mode, ino, 1, 1, 0, 0, size, 0, 0, 0, 0, 0, 0, 0, 0, mtime, ctime))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=20), st.integers(0, 2**40),
                          st.integers(0, 2**40), st.integers(0, 2**62)), min_size=1, max_size=20),
       st.integers(0, 3))
def test_fingerprint_sees_every_field(entries, which) -> None:
    listing = [(n, _stat(0o100644, i, s, t, t)) for n, i, s, t in entries]
    fp, newest = listing_fingerprint(listing)
    assert newest == max(t for *_x, t in entries)
    name, ino, size, t = entries[0]
    changed = [name, ino, size, t]
    changed[which] = changed[which] + ("x" if which == 0 else 1)
    n2, i2, s2, t2 = changed
    other = [(n2, _stat(0o100644, i2, s2, t2, t2)), *listing[1:]]
    assert listing_fingerprint(other)[0] != fp
