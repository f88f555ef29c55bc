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


def _file_nodes(names: list[str]) -> list[dict]:
    return [{"name": n, "type": "file", "size": i, "content": ["ab" * 32]} for i, n in enumerate(names)]




def test_a_large_directory_is_stored_in_parts_decoded_as_the_listing_reaches_them() -> None:
    from cbr_agent.backup.filescache import NODES_PER_PART, RecordNodes

    names = [f"f{i:06d}" for i in range(5 * NODES_PER_PART + 3)]
    rec = DirRecord.build(scan_ns=1, fingerprint=b"", tree="ef" * 32, nodes=_file_nodes(names),
                          blobs=b"", files=len(names), size=0)
    again = DirRecord.from_bytes(rec.to_bytes())
    assert len(again.nodes_data) == 6 and [n["name"] for n in again.nodes] == names
    decoded: list[int] = []

    def parts():
        for part in again.encoded_parts():
            decoded.append(len(part))
            yield part

    nodes = RecordNodes(parts())
    assert nodes.get(names[0])["size"] == 0 and decoded == [NODES_PER_PART]
    assert nodes.get(names[NODES_PER_PART - 1]) is not None and len(decoded) == 1
    # a new name inside the decoded range is known absent without decoding on
    assert nodes.get("f000000x") is None and len(decoded) == 1
    assert nodes.get(names[2 * NODES_PER_PART + 7])["size"] == 2 * NODES_PER_PART + 7
    assert len(decoded) == 3
    assert nodes.get("zzz") is None and len(decoded) == 6  # past the end: every part looked at
    assert len(nodes) == len(names) and nodes[names[-1]]["size"] == len(names) - 1


def test_a_rows_listing_is_its_nodes_columns_across_parts() -> None:
    """A journal-led backup takes a directory's row as one listing (its parts' columns joined): the same
    listing the tree was encoded from."""
    from cbr_agent.backup.filescache import NODES_PER_PART
    from cbr_agent.repository.tree import encode_listing

    names = [f"f{i:06d}" for i in range(2 * NODES_PER_PART + 5)]
    rec = DirRecord.from_bytes(DirRecord.build(scan_ns=1, fingerprint=b"", tree="ef" * 32,
                                               nodes=_file_nodes(names), blobs=b"", files=len(names),
                                               size=0).to_bytes())
    assert len(rec.nodes_data) == 3
    assert rec.listing() == encode_listing(_file_nodes(names))
    empty = DirRecord.build(scan_ns=1, fingerprint=b"", tree="ef" * 32, nodes=[], blobs=b"", files=0, size=0)
    assert empty.listing() == encode_listing([])


def test_a_row_out_of_order_or_damaged_gives_no_listing() -> None:
    """The listing is edited by bisection: a row whose names are not strictly in order (written by hand,
    or damaged) is not taken, and neither is one whose parts do not decode."""
    import marshal

    import zstandard

    rec = DirRecord.build(scan_ns=1, fingerprint=b"", tree="ef" * 32, nodes=_file_nodes(["a", "b", "c"]),
                          blobs=b"", files=3, size=0)
    columns = marshal.loads(zstandard.ZstdDecompressor().decompress(rec.nodes_data[0]))

    def with_names(names: list[str]) -> DirRecord:
        part = zstandard.ZstdCompressor().compress(marshal.dumps((names, *columns[1:])))
        return DirRecord(**{**rec.__dict__, "nodes_data": (part,)})

    assert with_names(["a", "b", "c"]).listing() is not None
    assert with_names(["a", "c", "b"]).listing() is None
    assert with_names(["a", "a", "c"]).listing() is None
    assert DirRecord(**{**rec.__dict__, "nodes_data": (b"not zstd",)}).listing() is None
    short = zstandard.ZstdCompressor().compress(marshal.dumps((["a", "b"], *columns[1:])))
    assert DirRecord(**{**rec.__dict__, "nodes_data": (short,)}).listing() is None


def test_a_record_is_stored_in_name_order_whatever_order_it_is_given() -> None:
    rec = DirRecord.build(scan_ns=1, fingerprint=b"", tree="ef" * 32,
                          nodes=_file_nodes(["b", "c", "a"]), blobs=b"", files=3, size=0)
    assert [n["name"] for n in rec.nodes] == ["a", "b", "c"]
    assert rec.nodes_by_name().get("a")["size"] == 2


@settings(max_examples=200, deadline=None)
@given(st.sets(st.text(min_size=1, max_size=6), max_size=60),
       st.lists(st.text(min_size=1, max_size=6), max_size=30),
       st.integers(1, 7), st.booleans())
def test_lookups_answer_as_a_dict_does(names, extra, per_part, in_order) -> None:
    """Whatever is asked, in listing order or not, present or not, the answer is the dict's."""
    from cbr_agent.backup import filescache

    old, filescache.NODES_PER_PART = filescache.NODES_PER_PART, per_part
    try:
        rec = DirRecord.build(scan_ns=1, fingerprint=b"", tree="ef" * 32, nodes=_file_nodes(sorted(names)),
                              blobs=b"", files=len(names), size=0)
    finally:
        filescache.NODES_PER_PART = old
    plain = {n["name"]: n for n in rec.nodes}
    asked = list(names) + extra
    asked = sorted(asked) if in_order else asked
    lazy = rec.nodes_by_name()
    for name in asked:
        assert lazy.get(name) == plain.get(name)
    assert dict(lazy) == plain


def test_marking_a_large_row_seen_does_not_write_it_again(tmp_path: Path) -> None:
    """An unchanged re-run marks every directory seen: a few bytes each, not their rows again."""
    cache = FilesCache(tmp_path / "fc.db", "r")
    big = DirRecord(1, b"fp", "ef" * 32, (os.urandom(2 << 20),), b"", 0, 0, {})
    cache.stage(b"/big", big)
    cache.commit(*cache.take_staged())
    cache.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = tmp_path / "fc.db-wal"
    assert wal.stat().st_size == 0
    cache.touch(b"/big")
    cache.commit(*cache.take_staged())
    assert wal.stat().st_size < 64 * 1024  # the 2 MiB row was not rewritten
    assert cache.get(b"/big") == big
    cache.close()


def test_a_cache_of_an_older_layout_starts_empty_and_works(tmp_path: Path) -> None:
    import sqlite3

    old = sqlite3.connect(tmp_path / "fc.db")
    old.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                      "INSERT INTO meta VALUES ('format', '2/py3.11/m4');"
                      "CREATE TABLE dirs (repo TEXT NOT NULL, path BLOB NOT NULL, gen INTEGER NOT NULL,"
                      " data BLOB NOT NULL, PRIMARY KEY (repo, path)) WITHOUT ROWID;"
                      "INSERT INTO dirs VALUES ('r', X'2F78', 1, X'00');")
    old.commit()
    old.close()
    cache = FilesCache(tmp_path / "fc.db", "r")
    assert cache.get(b"/x") is None
    cache.stage(b"/x", record())
    cache.commit(*cache.take_staged())
    cache.finish()
    assert cache.get(b"/x") == record()
    cache.close()


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(
    st.text(min_size=1, max_size=8) | st.builds(lambda s, b: s + chr(0xDC80 + b), st.text(max_size=5),
                                                 st.integers(0, 127)),
    st.tuples(st.sampled_from(["file", "dir", "symlink"]), st.integers(0, 2**64 - 1)), max_size=40),
    st.integers(1, 7))
def test_a_row_gives_back_each_node_as_it_was_and_as_its_tree_bytes(entries, per_part) -> None:
    """Whatever the names (not UTF-8 ones too), the row's nodes decode to the nodes it was built from,
    and their bytes are those the tree of the listing holds."""
    from cbr_agent.backup import filescache
    from cbr_agent.repository.tree import encode_tree

    nodes = []
    for name, (kind, n) in entries.items():
        node = {"name": name, "type": kind, "inode": n, "size": n if kind == "file" else 0}
        if kind == "file":
            node["content"] = [f"{n:064x}"]
        elif kind == "dir":
            node["subtree"] = f"{n:064x}"
        nodes.append(node)
    old, filescache.NODES_PER_PART = filescache.NODES_PER_PART, per_part
    try:
        rec = DirRecord.from_bytes(DirRecord.build(scan_ns=1, fingerprint=b"", tree="ef" * 32, nodes=nodes,
                                                   blobs=b"", files=0, size=0).to_bytes())
    finally:
        filescache.NODES_PER_PART = old
    ordered = sorted(nodes, key=lambda n: n["name"])
    assert rec.nodes == ordered
    encoded = [e for part in rec.encoded_parts() for e in part]
    assert b'{"nodes":[' + b",".join(e.data for e in encoded) + b'],"v":1}' == encode_tree(nodes)
    assert [(e.name, e.type, e.inode, e.size, e.blobs) for e in encoded] == [
        (n["name"], n["type"], n["inode"], n["size"], "".join(n.get("content", ())))
        for n in ordered]
    assert rec.subtrees() == {n["name"]: n["subtree"] for n in nodes if n["type"] == "dir"}
