"""Round trips of every on-disk format: pack headers, index files, trees, snapshots, and whole blobs
(compress -> encrypt -> pack -> index -> load) for arbitrary bytes and kinds."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbr_agent.repository import Repository, Snapshot, decode_tree, encode_tree
from cbr_agent.repository.index import MasterIndex, decode_index, encode_index
from cbr_agent.repository.pack import PackEntry, decode_header, encode_header
from cbr_agent.repository.snapshot import decode_snapshot, encode_snapshot
from tests.unit.repository.repo_helpers import init_repo

u32 = st.integers(0, 2**32 - 1)
entry_st = st.builds(PackEntry, st.integers(0, 3), st.binary(min_size=32, max_size=32), u32, u32, u32)
pack_id_st = st.binary(min_size=32, max_size=32).map(bytes.hex)


@given(entries=st.lists(entry_st, max_size=50))
def test_pack_header_round_trip(entries: list[PackEntry]) -> None:
    assert decode_header(encode_header(entries)) == entries


@given(packs=st.dictionaries(pack_id_st, st.lists(entry_st, min_size=1, max_size=20), max_size=8))
def test_index_file_round_trip_and_master_index_lookup(packs: dict[str, list[PackEntry]]) -> None:
    assert decode_index(encode_index(packs)) == packs
    index = MasterIndex()
    for pack_id, entries in packs.items():
        index.add_pack(pack_id, entries)
    from_file = MasterIndex()
    from_file.add_index_file(encode_index(packs))
    assert {b: from_file.lookup(b) for b in from_file.blob_ids()} == {
        b: index.lookup(b) for b in index.blob_ids()
    }
    first: dict[bytes, tuple[str, PackEntry]] = {}  # a blob stored twice: the later location wins
    for pack_id, entries in packs.items():
        for e in entries:
            first[e.blob_id] = (pack_id, e)
    assert len(index) == len(first)
    for blob_id, (pack_id, e) in first.items():
        loc = index.lookup(blob_id)
        assert loc is not None
        assert (loc.pack_id, loc.offset, loc.length, loc.raw_length, loc.flags) == (
            pack_id,
            e.offset,
            e.length,
            e.raw_length,
            e.flags,
        )


def test_malformed_index_is_refused() -> None:
    good = encode_index({"ab" * 32: [PackEntry(0, b"x" * 32, 0, 10, 10)]})
    for bad in (b"", b"nope", good[:-1], good + b"x"):
        with pytest.raises(ValueError):
            decode_index(bad)


name_st = st.text(min_size=1, max_size=30).filter(lambda s: "/" not in s and "\x00" not in s)
surrogate_name_st = st.binary(min_size=1, max_size=20).map(lambda b: b.decode("utf-8", "surrogateescape"))
node_st = st.fixed_dictionaries(
    {
        "name": st.one_of(name_st, surrogate_name_st),
        "type": st.sampled_from(["file", "dir", "symlink", "fifo"]),
        "mode": st.integers(0, 0o7777),
        "mtime_ns": st.integers(0, 2**63),
    },
    optional={"content": st.lists(pack_id_st, max_size=3), "xattrs": st.dictionaries(name_st, name_st)},
)


@given(nodes=st.lists(node_st, max_size=20, unique_by=lambda n: n["name"]))
def test_tree_round_trip_is_canonical(nodes: list[dict]) -> None:
    data = encode_tree(nodes)
    assert encode_tree(list(reversed(nodes))) == data  # order of input does not matter
    assert decode_tree(data) == sorted(nodes, key=lambda n: n["name"])
    data.decode("ascii")


json_leaf = st.one_of(
    st.text(max_size=12),
    st.binary(max_size=8).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
)
json_doc = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(doc=json_doc)
def test_fast_canonical_json_is_byte_identical_to_the_standard_library(doc) -> None:
    import json

    from cbr_agent.repository.tree import canonical_json

    expected = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    assert canonical_json(doc) == expected


def test_tree_refuses_duplicates_and_garbage() -> None:
    with pytest.raises(ValueError):
        encode_tree([{"name": "a", "type": "file"}, {"name": "a", "type": "dir"}])
    for bad in (b"", b"[]", b'{"v":1}', b'{"v":1,"nodes":[{"type":"file"}]}', b"\xff"):
        with pytest.raises(ValueError):
            decode_tree(bad)


def test_snapshot_round_trip() -> None:
    snap = Snapshot(
        time=datetime(2026, 11, 26, 22, 0, 1, 123456, tzinfo=timezone.utc),
        host="h",
        agent_id="a-1",
        paths=["/srv", "/etc"],
        excludes={"/srv": ["*.tmp"]},
        tree="ab" * 32,
        parent="cd" * 32,
        summary={"files_new": 3, "bytes_added": 10},
        tags=["daily"],
    )
    back = decode_snapshot(encode_snapshot(snap), id="ef" * 32)
    snap.id = "ef" * 32
    assert back == snap


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    blobs=st.lists(
        st.tuples(st.one_of(st.binary(max_size=3000), st.text(max_size=2000).map(str.encode)), st.booleans()),
        max_size=12,
    )
)
def test_blob_round_trip_through_packs_and_index(tmp_path_factory, blobs: list[tuple[bytes, bool]]) -> None:
    path = tmp_path_factory.mktemp("r") / "repo"
    repo = init_repo(path)
    with repo.writer(pack_size=2048) as writer:
        for data, is_tree in blobs:
            writer.add(repo.blob_id(data), data, kind="tree" if is_tree else "data")
    reopened = Repository.open(str(path), "pw")
    for data, _ in blobs:
        assert reopened.load_blob(repo.blob_id(data)) == data
    assert len(reopened.index) == len({d for d, _ in blobs})
