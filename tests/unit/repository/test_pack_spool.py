"""Packs spooled to the repository directory as they fill: same bytes as a pack built in memory, at
most about one buffer of blobs in memory, and no temp file left behind, stored or dropped."""

from __future__ import annotations

import os
from pathlib import Path

import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.repository import Repository
from cbr_agent.repository.backend import DirectoryBackend
from cbr_agent.repository.backends.faulty import FaultyBackend
from cbr_agent.repository.check import run_check
from cbr_agent.repository.pack import SPOOL_BUFFER, PackBuilder
from tests.unit.repository.repo_helpers import init_repo


def _temp_files(root: Path) -> list[Path]:
    return list((root / "data").rglob(".tmp-*"))


def _stored(backend: DirectoryBackend, pack_id: str) -> bytes:
    return backend.get("data/" + pack_id)


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(min_value=28, max_value=600_000), min_size=1, max_size=12),
       split=st.booleans())
def test_a_spooled_pack_is_byte_for_byte_the_pack_built_in_memory(tmp_path_factory, sizes, split) -> None:
    root = tmp_path_factory.mktemp("repo")
    repo = init_repo(root)
    backend = repo.backend
    assert isinstance(backend, DirectoryBackend)
    plain, spooled = PackBuilder(), PackBuilder(backend.open_spool)
    for i, size in enumerate(sizes):
        sealed = os.urandom(size)
        blob_id = bytes([i]) * 32
        piece = (sealed[:12], sealed[12:]) if split else sealed
        plain.add(0, blob_id, piece, size)
        spooled.add(0, blob_id, piece, size)
    assert spooled.entries == plain.entries
    held = sum(map(len, spooled.pieces))
    assert held < SPOOL_BUFFER  # what was not spilled yet: less than one buffer
    assert (spooled.spool is not None) == (sum(sizes) >= SPOOL_BUFFER)

    sealer = repo.key.sealer
    _plain_id, buffers = plain.finish(sealer)
    spooled_id, rest = spooled.finish(sealer)
    if spooled.spool is None:
        assert rest, "a pack that never spilled is returned for one put"
        return
    assert rest == []
    spooled.spool.commit("data/" + spooled_id)
    stored = _stored(backend, spooled_id)
    # the header is sealed with a fresh nonce each time: compare the bodies, and the id with the bytes
    body = b"".join(bytes(b) for b in buffers[:-2])
    assert stored[: len(body)] == body
    assert len(stored) == len(b"".join(bytes(b) for b in buffers))
    assert blake3.blake3(stored).hexdigest() == spooled_id
    assert _temp_files(root) == []


def test_a_pack_being_filled_lives_on_disk_not_in_memory(repo: Repository) -> None:
    root = Path(repo.location)
    writer = repo.writer(pack_size=64 * 1024 * 1024)
    for _ in range(6):
        writer.save(os.urandom(1024 * 1024))
    # six MiB saved, the pack far from full: all but the last buffer is already in the temp file
    spools = _temp_files(root)
    assert len(spools) == 1
    assert spools[0].stat().st_size >= 5 * 1024 * 1024
    writer.close()
    assert _temp_files(root) == []
    assert writer.stats.packs_written == 1
    assert run_check(Repository.open(repo.location, "pw"), read_data=True).ok


def test_an_aborted_writer_leaves_no_temp_file(repo: Repository) -> None:
    root = Path(repo.location)
    writer = repo.writer(pack_size=64 * 1024 * 1024)
    for _ in range(3):
        writer.save(os.urandom(1024 * 1024))
    assert len(_temp_files(root)) == 1
    writer.abort()
    assert _temp_files(root) == []
    assert list(repo.backend.list("data")) == []


def test_wrapped_backends_take_packs_through_put_where_their_faults_apply(tmp_path: Path) -> None:
    inner = DirectoryBackend(tmp_path / "d")
    wrapped = FaultyBackend(inner)
    assert wrapped.open_spool() is None
    builder = PackBuilder(wrapped.open_spool)
    for i in range(3):
        builder.add(0, bytes([i]) * 32, os.urandom(SPOOL_BUFFER), SPOOL_BUFFER)
    assert builder.spool is None and len(builder.pieces) == 3  # kept for one put
