"""BlobWriter: dedup gate under concurrency, write order, failure paths (full disk, permission denied)."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from cbr_agent.errors import RepositoryError
from cbr_agent.repository import Repository
from cbr_agent.repository.check import run_check
from cbr_agent.repository.objects import FLAG_COMPRESSED
from tests.unit.repository.repo_helpers import init_repo


def _pack_header_ids(repo: Repository) -> list[bytes]:
    ids = []
    for pack_id, size in repo.backend.list("data"):
        ids.extend(e.blob_id for e in repo.read_pack_header(pack_id, size))
    return ids


def test_concurrent_adds_with_duplicates_store_each_blob_once(repo: Repository) -> None:
    blobs = [os.urandom(500) + bytes([i]) * 500 for i in range(200)]
    results: list[list[bool]] = [[] for _ in range(6)]
    barrier = threading.Barrier(6)
    with repo.writer(pack_size=8 * 1024) as writer:

        def work(t: int) -> None:
            barrier.wait()
            order = blobs if t % 2 else list(reversed(blobs))
            for data in order:
                results[t].append(writer.add(repo.blob_id(data), data))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sum(sum(r) for r in results) == len(blobs)  # exactly one add per blob reported "stored"
    stored = _pack_header_ids(repo)
    assert sorted(stored) == sorted(repo.blob_id(b) for b in blobs)  # in the packs exactly once
    assert writer.stats.blobs_new == 200 and writer.stats.blobs_duplicate == 1000
    reopened = Repository.open(repo.location, "pw")
    assert all(reopened.load_blob(repo.blob_id(b)) == b for b in blobs)


@pytest.mark.parametrize("level", [0, 1, 19])
def test_a_writer_at_another_level_stores_its_blobs_at_that_level(tmp_path, level: int) -> None:
    """The agent's ``compression`` setting: blobs at the writer's level, the repository's level unchanged,
    and every blob read back as it was (0: stored as it is)."""
    text = b"".join(b"%06d GET /api/v1/items/%d 200 OK\n" % (n, n % 97) for n in range(20_000))
    lengths = {}
    for lvl in (3, level):
        repo = init_repo(tmp_path / f"repo-{lvl}")
        with repo.writer(compression_level=None if lvl == 3 else lvl) as writer:
            writer.save(text)
            assert writer.codec.level == lvl and repo.compression_level == 3
        (entry,) = [e for pack_id, size in repo.backend.list("data")
                    for e in repo.read_pack_header(pack_id, size)]
        lengths[lvl] = entry.length
        assert bool(entry.flags & FLAG_COMPRESSED) == (lvl != 0)
        assert Repository.open(repo.location, "pw").load_blob(repo.blob_id(text)) == text
    if level == 0:
        assert lengths[0] > len(text)  # as it is, sealed
    else:
        assert lengths[level] != lengths[3], lengths


def test_existing_blobs_are_not_stored_again(repo: Repository) -> None:
    data = b"some data" * 100
    with repo.writer() as w:
        assert w.add(repo.blob_id(data), data) is True
    with repo.writer() as w:
        assert w.add(repo.blob_id(data), data) is False
    assert w.stats.blobs_new == 0 and w.stats.packs_written == 0


def test_flush_writes_packs_before_the_index(repo: Repository) -> None:
    writer = repo.writer(pack_size=4096)
    for i in range(30):
        data = os.urandom(1000) + bytes([i])
        writer.add(repo.blob_id(data), data)
    assert not list(repo.backend.list("index"))  # nothing indexed before the flush
    writer.flush()
    packs = {name for name, _ in repo.backend.list("data")}
    assert len(packs) >= 7
    indexed = Repository.open(repo.location, "pw").index.packs()
    assert indexed == packs
    writer.close()


def test_failed_backup_keeps_only_consistent_data(repo: Repository) -> None:
    kept = []
    with pytest.raises(RuntimeError), repo.writer(pack_size=4096) as writer:
        for i in range(20):
            data = os.urandom(1500) + bytes([i])
            writer.add(repo.blob_id(data), data)
            kept.append(data)
        raise RuntimeError("the pipeline failed")
    reopened = Repository.open(repo.location, "pw")
    present = [d for d in kept if reopened.has_blob(repo.blob_id(d))]
    assert present  # full packs that reached the disk were indexed, so the next run reuses them
    assert all(reopened.load_blob(repo.blob_id(d)) == d for d in present)
    assert run_check(reopened, read_data=True).ok


def test_add_refuses_bad_input(repo: Repository) -> None:
    with repo.writer() as w:
        with pytest.raises(ValueError):
            w.add(b"short", b"x")
        with pytest.raises(ValueError):
            w.add(repo.blob_id(b"x"), b"x", kind="symlink")


@pytest.fixture
def failing_disk(monkeypatch: pytest.MonkeyPatch):
    """A disk that fails writes under one directory with a chosen errno (the disk is outside our code)."""
    real_open = os.open

    def install(root, err: int) -> None:
        def fake_open(path, flags, *args, **kwargs):
            if str(path).startswith(str(root)) and flags & os.O_CREAT:
                raise OSError(err, os.strerror(err), str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", fake_open)

    return install


def test_full_disk_is_a_clear_repository_error(repo: Repository, failing_disk) -> None:
    failing_disk(repo.location, errno.ENOSPC)
    writer = repo.writer(pack_size=2048)
    with pytest.raises(RepositoryError, match="disk is full") as info:
        for i in range(50):
            data = os.urandom(1000) + bytes([i])
            writer.add(repo.blob_id(data), data)
        writer.flush()
    assert "Traceback" not in str(info.value)
    writer.abort()
    assert not list(repo.backend.list("index"))


def test_permission_denied_names_the_path(repo: Repository, failing_disk) -> None:
    from tests.unit.repository.repo_helpers import CHEAP_KDF

    failing_disk(repo.location, errno.EACCES)
    with pytest.raises(RepositoryError, match=r"permission denied .*keys"):
        repo.add_key("another password", kdf=CHEAP_KDF)


def test_a_snapshot_is_refused_before_its_tree_is_durable(repo: Repository) -> None:
    from cbr_agent.repository import Snapshot, encode_tree
    from tests.unit.repository.repo_helpers import minutes_ago

    tree = encode_tree([])
    tree_id = repo.blob_id(tree)
    writer = repo.writer()
    writer.add(tree_id, tree, kind="tree")
    snap = Snapshot(time=minutes_ago(0), host="h", paths=["/"], tree=tree_id.hex())
    with pytest.raises(RepositoryError, match="flush"):
        repo.save_snapshot(snap)
    writer.close()
    assert repo.save_snapshot(snap) == snap.id


def test_stored_packs_are_the_sealed_and_named_objects(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    with repo.writer() as w:
        w.add(repo.blob_id(b"abc" * 100), b"abc" * 100)
    ((name, size),) = list(repo.backend.list("data"))
    raw = repo.backend.get("data/" + name)
    assert len(raw) == size and b"abc" not in raw  # encrypted
    from cbr_agent.repository.objects import content_name

    assert content_name(raw) == name
    (entry,) = repo.read_pack_header(name, size)
    assert entry.raw_length == 300


def test_flushes_while_other_threads_add_lose_nothing(repo: Repository) -> None:
    blobs = [os.urandom(300) + bytes([i % 256, i // 256]) for i in range(600)]
    stop = threading.Event()
    with repo.writer(pack_size=4096, index_interval=0.0) as writer:

        def flusher() -> None:
            while not stop.is_set():
                writer.flush()

        def adder(part: int) -> None:
            for data in blobs[part::3] + blobs[::7]:  # overlapping: duplicates across threads
                writer.add(repo.blob_id(data), data)

        f = threading.Thread(target=flusher)
        f.start()
        adders = [threading.Thread(target=adder, args=(p,)) for p in range(3)]
        for t in adders:
            t.start()
        for t in adders:
            t.join()
        stop.set()
        f.join()
    reopened = Repository.open(repo.location, "pw")
    assert len(reopened.index) == len(blobs)
    assert all(reopened.load_blob(repo.blob_id(b)) == b for b in blobs)
    assert sorted(_pack_header_ids(repo)) == sorted(repo.blob_id(b) for b in blobs)
    assert run_check(reopened, read_data=True).ok
