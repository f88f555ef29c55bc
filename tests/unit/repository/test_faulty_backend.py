"""The fault-injecting wrapper, and what the repository does when its backend fails: a failed or cut-short
pack write stops the "backup" with a RepositoryError and no snapshot, check stays clean, the next run
succeeds and reuses the packs that did reach the storage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cbr_agent.errors import RepositoryError
from cbr_agent.repository import Repository
from cbr_agent.repository.backends.faulty import Fault, FaultyBackend
from cbr_agent.repository.backends.memory import MemoryBackend
from cbr_agent.repository.check import run_check
from tests.unit.repository.repo_helpers import CHEAP_KDF, SMALL_CHUNKS, read_files, store_files

FILES = {f"d{i}/f{j}": os.urandom(20_000) for i in range(3) for j in range(4)}


def _repo(backend) -> Repository:
    return Repository.init(backend, "pw", kdf=CHEAP_KDF, chunker=SMALL_CHUNKS)


def test_fault_hits_the_nth_call_for_times_calls() -> None:
    faulty = FaultyBackend(MemoryBackend())
    faulty.fail("put", nth=2, times=2, error=OSError("boom"))
    faulty.put("index/a", b"1")
    for name in ("index/b", "index/c"):
        with pytest.raises(OSError, match="boom"):
            faulty.put(name, b"2")
    faulty.put("index/d", b"4")
    assert [n for n, _ in faulty.list("index")] == ["a", "d"]
    assert faulty.calls["put"] == 4


def test_fault_forever_prefix_and_delay() -> None:
    slept: list[float] = []
    faulty = FaultyBackend(MemoryBackend(), sleep=slept.append)
    faulty.add(Fault("get", times=0, prefix="data/", error=RepositoryError("down")))
    faulty.add(Fault("put", delay=1.5, error=None))
    faulty.put("index/a", b"x")
    assert slept == [1.5]
    assert faulty.get("index/a") == b"x"
    faulty.inner.put("data/" + "ab" * 32, b"y")
    for _ in range(3):
        with pytest.raises(RepositoryError, match="down"):
            faulty.get("data/" + "ab" * 32)


def test_cut_put_leaves_a_truncated_object_and_raises() -> None:
    faulty = FaultyBackend(MemoryBackend())
    faulty.fail("put", cut=3)
    with pytest.raises(RepositoryError):
        faulty.put("index/a", [b"12", b"3456"])
    assert faulty.inner.get("index/a") == b"123"


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError):
        Fault("rename")


@pytest.mark.parametrize("cut", [None, 100])
def test_failed_pack_write_means_no_snapshot_and_next_run_reuses(cut) -> None:
    faulty = FaultyBackend(MemoryBackend())
    repo = _repo(faulty)
    faulty.add(Fault("put", nth=3, prefix="data/", cut=cut, error=RepositoryError("endpoint went away")))
    with pytest.raises(RepositoryError, match="endpoint went away"):
        store_files(repo, FILES, pack_size=16 * 1024)
    assert repo.snapshot_ids() == []
    uploaded = {n for n, _ in faulty.list("data")}
    assert len(uploaded) >= 2  # the packs written before the failure
    report = run_check(Repository.open(faulty, "pw"))
    assert report.ok, report.errors  # unindexed packs are only warnings
    fresh = Repository.open(faulty, "pw")
    stats: dict = {}
    sid = store_files(fresh, FILES, pack_size=16 * 1024, stats=stats)
    assert stats["blobs_duplicate"] > 0  # blobs of the packs the failed run indexed were reused
    assert read_files(fresh, sid) == FILES
    assert run_check(Repository.open(faulty, "pw"), read_data=True).ok


def test_repository_module_does_not_import_check_or_prune() -> None:
    source = (Path(__file__).parents[3] / "cbr_agent" / "repository" / "repo.py").read_text()
    assert "repository.check" not in source and "repository.prune" not in source
