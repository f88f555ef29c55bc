"""check, forget and prune end to end at the repository level."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbr_agent.errors import RepositoryError, RepositoryLocked
from cbr_agent.repository import Repository
from cbr_agent.repository.check import run_check
from cbr_agent.repository.prune import prune
from tests.unit.repository.repo_helpers import init_repo, minutes_ago, read_files, store_files


def _data_bytes(repo: Repository) -> int:
    return sum(size for _, size in repo.backend.list("data"))


def test_check_of_a_healthy_repository_is_clean(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    store_files(repo, {"a/x": os.urandom(50_000), "a/y": b"text " * 5000, "b/z": b""})
    report = run_check(repo, read_data=True)
    assert report.ok and not report.warnings
    assert report.snapshots == 1 and report.trees == 3 and report.blobs_verified > 5
    assert report.to_dict()["ok"] is True


def test_snapshots_list_find_and_forget(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    s1 = store_files(repo, {"a/x": b"1"}, when=minutes_ago(30))
    s2 = store_files(repo, {"a/x": b"2"}, when=minutes_ago(20))
    s3 = store_files(repo, {"a/x": b"3"}, when=minutes_ago(10))
    assert [s.id for s in repo.list_snapshots()] == [s1, s2, s3]
    assert repo.find_snapshot("latest").id == s3
    assert repo.find_snapshot(s2[:12]).id == s2
    with pytest.raises(RepositoryError, match="no snapshot matches"):
        repo.find_snapshot("zz")
    repo.forget_snapshot(s2)
    assert [s.id for s in repo.list_snapshots()] == [s1, s3]
    with pytest.raises(RepositoryError):
        repo.forget_snapshot(s2)


def test_prune_removes_what_no_snapshot_reaches_and_keeps_the_rest(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    shared = {f"keep/f{i}": os.urandom(6000) for i in range(10)}
    gone = {f"gone/f{i}": os.urandom(6000) for i in range(10)}
    # one backup holds both: packs mix blobs that stay with blobs that go, so they must be rewritten
    s1 = store_files(repo, {**shared, **gone}, when=minutes_ago(10), pack_size=20_000)
    s2 = store_files(repo, shared, when=minutes_ago(5), pack_size=20_000)
    before = _data_bytes(repo)
    repo.forget_snapshot(s1)
    report = prune(repo)
    assert report.packs_rewritten >= 1 and report.blobs_removed >= 10
    assert report.bytes_freed > 50_000
    assert _data_bytes(repo) < before - 50_000
    reopened = Repository.open(repo.location, "pw")
    assert read_files(reopened, s2) == shared
    check = run_check(reopened, read_data=True)
    assert check.ok and not check.warnings
    assert len(list(repo.backend.list("index"))) == 1  # consolidated
    # a second prune finds nothing to do
    again = prune(reopened)
    assert again.blobs_removed == 0 and again.packs_deleted == 0 and again.packs_rewritten == 0
    assert again.index_files_written == 0 and again.index_files_deleted == 0  # and rewrites nothing


def test_prune_of_everything_leaves_an_empty_consistent_repository(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    sid = store_files(repo, {"a/x": os.urandom(10_000)})
    repo.forget_snapshot(sid)
    prune(repo)
    assert _data_bytes(repo) == 0
    assert run_check(repo, read_data=True).ok


def test_prune_removes_packs_left_by_an_interrupted_backup(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    sid = store_files(repo, {"a/x": b"kept" * 100})
    packs_before = len(list(repo.backend.list("data")))
    writer = repo.writer(pack_size=4096)
    for i in range(10):
        data = os.urandom(2000) + bytes([i])
        writer.add(repo.blob_id(data), data)
    writer._queue.join()  # packs are on disk, no index yet: what kill -9 leaves behind
    orphan_packs = len(list(repo.backend.list("data"))) - packs_before
    assert orphan_packs >= 3
    fresh = Repository.open(repo.location, "pw")
    assert len(run_check(fresh).warnings) == orphan_packs and run_check(fresh).ok
    report = prune(fresh)
    assert report.unindexed_packs_deleted == orphan_packs
    assert read_files(fresh, sid) == {"a/x": b"kept" * 100}
    writer.close_without_index()


def test_prune_needs_the_exclusive_lock(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    other = Repository.open(repo.location, "pw")
    with other.lock(exclusive=False), pytest.raises(RepositoryLocked):
        prune(repo)


def test_prune_refuses_to_delete_when_a_snapshot_is_unreadable(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    sid = store_files(repo, {"a/x": os.urandom(5000)})
    path = Path(repo.location) / "snapshots" / sid
    data = bytearray(path.read_bytes())
    data[5] ^= 1
    path.write_bytes(bytes(data))
    before = sorted(repo.backend.list("data"))
    with pytest.raises(RepositoryError, match="nothing deleted"):
        prune(repo)
    assert sorted(repo.backend.list("data")) == before


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    contents=st.lists(st.lists(st.integers(0, 15), min_size=1, max_size=6), min_size=1, max_size=4),
    forget=st.lists(st.booleans(), min_size=4, max_size=4),
    max_unused=st.sampled_from([0.0, 0.3, 1.0]),
)
def test_prune_keeps_exactly_what_remaining_snapshots_need(
    tmp_path_factory, contents: list[list[int]], forget: list[bool], max_unused: float
) -> None:
    import random

    pool = [random.Random(i).randbytes(2000 + 500 * i) for i in range(16)]
    repo = init_repo(tmp_path_factory.mktemp("p") / "r")
    snaps = []
    for n, picks in enumerate(contents):
        files = {f"d/f{i}": pool[i] for i in picks}
        snaps.append((store_files(repo, files, when=minutes_ago(60 - n), pack_size=6000), files))
    kept = [(sid, files) for (sid, files), drop in zip(snaps, forget[: len(snaps)], strict=True) if not drop]
    for (sid, _files), drop in zip(snaps, forget[: len(snaps)], strict=True):
        if drop:
            repo.forget_snapshot(sid)
    prune(repo, max_unused=max_unused)
    reopened = Repository.open(repo.location, "pw")
    for sid, files in kept:
        assert read_files(reopened, sid) == files
    report = run_check(reopened, read_data=True)
    assert report.ok and not report.warnings
    if max_unused == 0.0:  # nothing unreachable is left behind
        needed = {b for _sid, files in kept for b in _blob_ids(reopened, files)}
        data_blobs = {b for b in reopened.index.blob_ids() if not reopened.blob_location(b).flags & 1}
        assert data_blobs == needed


def _blob_ids(repo: Repository, files: dict[str, bytes]) -> set[bytes]:
    from tests.unit.repository.repo_helpers import chunk_ids

    return chunk_ids(repo, files)
