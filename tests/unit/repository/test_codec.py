"""The blob codec: ids, compression and sealing in one place, the same in the writer and in the helper
processes, and readable as the repository has always stored blobs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.backup.helperprocs import HelperPool, init_message
from cbr_agent.backup.smallbatch import Ready, prepare_batch
from cbr_agent.chunking import ChunkerParams
from cbr_agent.crypto import AuthenticationFailed, KdfParams, MasterKey
from cbr_agent.fs.longpath import LongPaths
from cbr_agent.repository import Repository
from cbr_agent.repository.codec import BlobCodec, PlainBlob, SealedBlob
from cbr_agent.repository.objects import FLAG_COMPRESSED, FLAG_TREE

MASTER = MasterKey(bytes(range(64)))
LEVELS = st.integers(min_value=1, max_value=19)
# both incompressible (random-looking) and compressible (repeated) inputs, around the 64-byte cut-off
DATA = st.one_of(st.binary(max_size=4096),
                 st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=40), st.integers(1, 300)))


def codec(level: int = 3) -> BlobCodec:
    return BlobCodec.for_key(MASTER, level)


def _clear_fields(blob: SealedBlob) -> tuple[bytes, int, int]:
    """All but the nonce and ciphertext (random per seal)."""
    return blob.blob_id, blob.flags, blob.raw_length


@settings(max_examples=150, deadline=None)
@given(data=DATA, level=LEVELS, kind=st.sampled_from(["data", "tree"]))
def test_seal_then_open_gives_back_the_data_for_any_bytes_and_level(data: bytes, level: int,
                                                                     kind: str) -> None:
    c = codec(level)
    blob_id = c.blob_id(data)
    sealed = c.seal(blob_id, data, kind=kind)
    assert sealed.blob_id == blob_id == MASTER.blob_id(data)  # one keyed BLAKE3, as the key file derives
    assert sealed.raw_length == len(data)
    assert bool(sealed.flags & FLAG_TREE) == (kind == "tree")
    assert c.open(sealed) == data
    if sealed.flags & FLAG_COMPRESSED:  # compressed only where it pays
        assert sum(map(len, sealed.sealed)) - 28 < len(data)


@settings(max_examples=60, deadline=None)
@given(datas=st.lists(DATA, max_size=20), level=LEVELS)
def test_seal_many_is_seal_for_each(datas: list[bytes], level: int) -> None:
    c = codec(level)
    blobs = [PlainBlob(c.blob_id(d), d) for d in datas]
    many = c.seal_many(blobs)
    one = [c.seal(b.blob_id, b.data) for b in blobs]
    assert list(map(_clear_fields, many)) == list(map(_clear_fields, one))
    assert [c.open(s) for s in many] == datas


def test_a_blob_opens_only_under_its_own_id_and_key() -> None:
    c = codec()
    data = b"some text " * 50
    sealed = c.seal(c.blob_id(data), data)
    with pytest.raises(AuthenticationFailed):
        c.open(sealed._replace(blob_id=c.blob_id(b"other")))
    other = BlobCodec.for_key(MasterKey(bytes(64)), 3)
    with pytest.raises(AuthenticationFailed):
        other.open(sealed)


@given(level=LEVELS)
def test_the_codec_pickles_to_its_keys_and_level(level: int) -> None:
    c = codec(level)
    back = pickle.loads(pickle.dumps(c, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == c and back.level == level
    data = b"abc" * 100
    assert back.blob_id(data) == c.blob_id(data)
    assert back.open(c.seal(c.blob_id(data), data)) == data  # each side's AES context is its own
    assert "key" not in repr(c) and MASTER.id_key.hex() not in repr(c)


def test_sealed_blobs_pickle_as_named_tuples() -> None:
    c = codec()
    sealed = c.seal(c.blob_id(b"x" * 100), b"x" * 100)
    back = pickle.loads(pickle.dumps(sealed))
    assert isinstance(back, SealedBlob) and back == sealed


def test_the_helper_process_and_this_process_produce_the_same_blobs(tmp_path: Path) -> None:
    """Same ids, flags, lengths and plaintext from a real helper process and from prepare_batch here;
    only the random nonces differ (never reused across processes)."""
    c = codec(3)
    src = tmp_path / "src"
    src.mkdir()
    items = []
    for i in range(40):
        f = src / f"f{i}"
        f.write_bytes((b"line %d of text\n" % i) * i + os.urandom(i % 5))
        items.append((str(f), os.lstat(f).st_ino))
    local = prepare_batch(items, 64 * 1024, c, LongPaths(), seal=True)
    pool = HelperPool(1, init_message(c, 64 * 1024))
    pool.start()
    try:
        assert pool.try_submit(1, (1, items, True))
        token, remote = pool.results.get(timeout=30)
    finally:
        pool.close()
    assert token == 1 and len(remote) == len(local) == 40
    for got, want in zip(remote, local, strict=True):
        assert isinstance(got, Ready) and isinstance(want, Ready)
        if want.blob is None:
            assert got.blob is None
            continue
        assert isinstance(got.blob, SealedBlob) and isinstance(want.blob, SealedBlob)
        assert (got.blob.blob_id, got.blob.flags, got.blob.raw_length) == (
            want.blob.blob_id, want.blob.flags, want.blob.raw_length)
        assert c.open(got.blob) == c.open(want.blob)
        assert got.blob.sealed != want.blob.sealed


def test_the_writer_stores_what_the_repository_reads_back(tmp_path: Path) -> None:
    """save, add_sealed_many (helper-sealed) and save_many all land as blobs load_blob verifies."""
    repo = Repository.init(str(tmp_path / "repo"), "pw", kdf=KdfParams(n=2**10),
                           chunker=ChunkerParams(min_size=1024, avg_size=4096, max_size=16384))
    c = repo.codec
    assert c == BlobCodec.for_key(repo.key, repo.compression_level)
    one, two, three = b"first blob " * 40, os.urandom(500), b"third " * 9
    sealed = c.seal_many([PlainBlob(c.blob_id(two), two)])
    with repo.writer() as writer:
        assert writer.save(one) == c.blob_id(one)
        assert writer.save(one) == c.blob_id(one)  # the dedup gate: stored once
        assert writer.add_sealed_many(sealed) == 1
        assert writer.save_many([three, one]) == [c.blob_id(three), c.blob_id(one)]
        assert writer.stats.blobs_new == 3 and writer.stats.blobs_duplicate == 2
    for data in (one, two, three):
        assert repo.load_blob(c.blob_id(data)) == data


@pytest.mark.parametrize(("repo_level", "tree_level"), [(1, 1), (2, 1), (3, 1), (9, 9), (19, 19)])
def test_tree_blobs_use_level_1_unless_the_repository_asks_for_more_than_the_default(
        repo_level: int, tree_level: int) -> None:
    """JSON listings are smaller and cheaper at level 1 than at 3; a repository set to a high level keeps
    it for its trees too. File data always uses the repository's level."""
    import zstandard

    c = codec(repo_level)
    listing = b'{"nodes":[' + b",".join(
        b'{"content":["%064x"],"name":"file-%d.txt","size":%d,"type":"file"}' % (i * 7919, i, i * 13)
        for i in range(400)) + b'],"v":1}'

    def payload_length(kind: str) -> int:
        sealed = c.seal(c.blob_id(listing), listing, kind=kind)
        assert c.open(sealed) == listing
        nonce_and_tag = 12 + 16
        parts = sealed.sealed
        return (len(parts) if isinstance(parts, bytes) else sum(map(len, parts))) - nonce_and_tag

    def zstd_length(level: int) -> int:
        return len(zstandard.ZstdCompressor(level=level, write_content_size=True).compress(listing))

    assert payload_length("tree") == zstd_length(tree_level)
    assert payload_length("data") == zstd_length(repo_level)
    many = c.seal_many([PlainBlob(c.blob_id(listing), listing)], kind="tree")[0]
    assert c.open(many) == listing
