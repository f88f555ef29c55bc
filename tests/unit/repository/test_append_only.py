"""Append-only storage: a backend that refuses every delete (as a bucket policy without s3:DeleteObject
does). Backups, restores and checks work and leave their locks behind with a tombstone; forget and prune
say they need full credentials; a run with full credentials clears what was left behind."""

from __future__ import annotations

import os
import threading
import time

import pytest

from cbr_agent.errors import RepositoryAccessDenied, RepositoryLocked
from cbr_agent.repository import Repository
from cbr_agent.repository.backends.faulty import Fault, FaultyBackend
from cbr_agent.repository.backends.memory import MemoryBackend
from cbr_agent.repository.check import run_check
from cbr_agent.repository.lock import RELEASED, RepositoryLock
from cbr_agent.repository.prune import prune
from tests.unit.repository.repo_helpers import CHEAP_KDF, SMALL_CHUNKS, read_files, store_files

FILES = {f"d{i}/f": os.urandom(30_000) for i in range(4)}


@pytest.fixture
def append_only():
    inner = MemoryBackend()
    Repository.init(inner, "pw", kdf=CHEAP_KDF, chunker=SMALL_CHUNKS)
    faulty = FaultyBackend(inner)
    faulty.add(Fault("delete", times=0, error=RepositoryAccessDenied("S3 refused deleting: AccessDenied")))
    return faulty


def test_backup_restore_check_work_and_never_delete(append_only) -> None:
    repo = Repository.open(append_only, "pw")
    for _ in range(2):  # the second run must not be blocked by the first one's lock
        with repo.lock(exclusive=False):
            sid = store_files(repo, FILES)
    with repo.lock(exclusive=False):
        assert read_files(repo, sid) == FILES
        assert run_check(repo, read_data=True).ok
    locks = [n for n, _ in append_only.list("locks")]
    tombstones = [n for n in locks if n.endswith(RELEASED)]
    assert len(tombstones) == 3 and len(locks) == 6  # every lock left behind, each with its tombstone
    assert append_only.faults[0].hits == 3  # the three releases tried to delete, and were refused


def test_forget_and_prune_say_they_need_full_credentials(append_only) -> None:
    repo = Repository.open(append_only, "pw")
    sid = store_files(repo, FILES)
    with pytest.raises(RepositoryAccessDenied, match="prune and repair need credentials that may delete"):
        prune(repo)
    with pytest.raises(RepositoryAccessDenied, match="append-only"), repo.lock(exclusive=True):
        repo.forget_snapshot(sid)
    assert repo.snapshot_ids() == [sid]


def test_full_credentials_clear_what_append_only_runs_left(append_only) -> None:
    repo = Repository.open(append_only, "pw")
    with repo.lock(exclusive=False):
        store_files(repo, FILES)
    assert len(list(append_only.list("locks"))) == 2
    full = Repository.open(append_only.inner, "pw")  # same storage, credentials that may delete
    report = prune(full)
    assert report.snapshots == 1
    assert list(append_only.inner.list("locks")) == []


def test_a_run_that_meets_a_lock_withdraws_with_a_tombstone_and_retry_lock_waits(append_only) -> None:
    """The same-instant withdraw logic (write, look, withdraw on a conflict) works where deletes are
    refused: the withdrawn lock gets a tombstone, so it blocks nobody, and --retry-lock's wait ends as
    soon as the holder (a run with full credentials) is done."""
    full = Repository.open(append_only.inner, "pw")
    holder = RepositoryLock(full.backend, full.key.sealer, exclusive=True)  # e.g. a prune elsewhere
    holder.acquire()
    repo = Repository.open(append_only, "pw")
    with pytest.raises(RepositoryLocked, match="exclusive lock"), repo.lock(exclusive=False):
        pass
    names = [n for n, _ in append_only.list("locks")]
    assert len(names) == 3 and sum(n.endswith(RELEASED) for n in names) == 1  # holder's, ours, tombstone
    timer = threading.Timer(0.3, holder.release)
    timer.start()
    try:
        started = time.monotonic()
        with repo.lock(exclusive=False, wait=10.0):  # --retry-lock 10s
            store_files(repo, FILES)
        assert time.monotonic() - started < 5.0
    finally:
        timer.join()
    assert len(repo.snapshot_ids()) == 1
