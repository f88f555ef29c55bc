"""BlobWriter.add_many (batched small blobs) and Repository.has_all_blobs."""

from __future__ import annotations

import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent import compress as zc
from cbr_agent.errors import RepositoryError
from cbr_agent.repository import Repository
from cbr_agent.repository.objects import FLAG_COMPRESSED


def _flags(repo: Repository) -> dict[bytes, int]:
    out = {}
    for pack_id, size in repo.backend.list("data"):
        out.update({e.blob_id: e.flags for e in repo.read_pack_header(pack_id, size)})
    return out


def test_batch_round_trips_and_compresses_only_what_shrinks(repo: Repository) -> None:
    text = b"a line of text that repeats\n" * 40
    noise = os.urandom(2000)
    tiny = b"x" * 10
    blobs = [(repo.blob_id(d), d) for d in (text, noise, tiny)]
    with repo.writer(pack_size=4096) as writer:
        assert writer.add_many(blobs) == 3
        assert writer.stats.blobs_new == 3
    flags = _flags(repo)
    assert flags[blobs[0][0]] & FLAG_COMPRESSED
    assert not flags[blobs[1][0]] & FLAG_COMPRESSED and not flags[blobs[2][0]] & FLAG_COMPRESSED
    for blob_id, data in blobs:
        assert repo.load_blob(blob_id) == data


def test_duplicates_in_the_batch_the_index_and_other_threads_are_stored_once(repo: Repository) -> None:
    old = os.urandom(300)
    with repo.writer() as writer:
        writer.add(repo.blob_id(old), old)
    datas = [os.urandom(200) + bytes([i]) for i in range(150)]
    batch = [(repo.blob_id(d), d) for d in datas]
    batch += [*batch[:20], (repo.blob_id(old), old)]
    stored: list[int] = []
    with repo.writer(pack_size=8 * 1024) as writer:  # several packs fill up within one batch
        threads = [threading.Thread(target=lambda: stored.append(writer.add_many(batch))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert writer.stats.blobs_new == len(datas)
    assert sum(stored) == len(datas)
    assert repo.has_all_blobs(bid for bid, _ in batch)
    for blob_id, data in batch:
        assert repo.load_blob(blob_id) == data
    ids_in_packs = []
    for pack_id, size in repo.backend.list("data"):
        ids_in_packs.extend(e.blob_id for e in repo.read_pack_header(pack_id, size))
    assert len(ids_in_packs) == len(set(ids_in_packs)) == len(datas) + 1


def test_bad_ids_and_closed_writer_are_refused(repo: Repository) -> None:
    writer = repo.writer()
    with pytest.raises(ValueError, match="32 bytes"):
        writer.add_many([(b"short", b"data")])
    writer.close()
    with pytest.raises(RepositoryError, match="closed"):
        writer.add_many([(repo.blob_id(b"d"), b"d")])


def test_has_all_blobs(repo: Repository) -> None:
    data = [os.urandom(100) for _ in range(3)]
    ids = [repo.blob_id(d) for d in data]
    with repo.writer() as writer:
        writer.add_many(list(zip(ids[:2], data[:2], strict=True)))
    assert repo.has_all_blobs(ids[:2]) and repo.has_all_blobs([])
    assert not repo.has_all_blobs(ids)
    assert repo.has_all_blobs(ids[:2]) == all(map(repo.has_blob, ids[:2]))


@settings(max_examples=60, deadline=None)
@given(datas=st.lists(st.one_of(st.binary(max_size=3000), st.text(max_size=2000).map(str.encode)),
                      max_size=20),
       level=st.integers(1, 5))
def test_compress_many_matches_compress(datas: list[bytes], level: int) -> None:
    got = zc.compress_many(datas, level)
    assert len(got) == len(datas)
    for data, (payload, compressed) in zip(datas, got, strict=True):
        assert compressed == zc.compress(data, level)[1]
        if compressed:
            assert len(payload) < len(data) and zc.decompress(payload, len(data)) == data
        else:
            assert payload == data
