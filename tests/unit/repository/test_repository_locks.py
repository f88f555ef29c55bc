"""Locks: shared vs exclusive, owner in the message, stale locks (dead pid, expired, damaged) taken over."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from cbr_agent.errors import RepositoryLocked
from cbr_agent.repository import Repository
from cbr_agent.repository.lock import STALE_AFTER, LockInfo, RepositoryLock, read_lock, write_lock


def _locks(repo: Repository) -> list[str]:
    return [name for name, _ in repo.backend.list("locks")]


def _foreign_lock(repo: Repository, *, host: str, pid: int, exclusive: bool, age: float) -> str:
    info = LockInfo(host, pid, None, exclusive, time.time() - age)
    return write_lock(repo.backend, repo.key.sealer, info)


def test_shared_locks_coexist_and_exclusive_is_refused(repo: Repository) -> None:
    with repo.lock(exclusive=False), repo.lock(exclusive=False):
        assert len(_locks(repo)) == 2
        with (
            pytest.raises(RepositoryLocked, match=rf"pid .* on host {socket.gethostname()}"),
            repo.lock(exclusive=True),
        ):
            pass
        assert len(_locks(repo)) == 2  # the refused attempt left nothing behind
    assert _locks(repo) == []


def test_exclusive_lock_refuses_shared(repo: Repository) -> None:
    with (
        repo.lock(exclusive=True),
        pytest.raises(RepositoryLocked, match="exclusive"),
        repo.lock(exclusive=False),
    ):
        pass
    with repo.lock(exclusive=False):
        pass


def test_lock_of_a_dead_process_on_this_host_is_taken_over(repo: Repository) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(proc.stdout)
    _foreign_lock(repo, host=socket.gethostname(), pid=dead_pid, exclusive=True, age=1)
    with repo.lock(exclusive=True):
        assert len(_locks(repo)) == 1  # the stale one was removed


def test_expired_lock_of_another_host_is_taken_over_but_a_fresh_one_is_not(repo: Repository) -> None:
    _foreign_lock(repo, host="elsewhere", pid=1, exclusive=True, age=STALE_AFTER + 60)
    with repo.lock(exclusive=False):
        pass
    _foreign_lock(repo, host="elsewhere", pid=1, exclusive=True, age=60)
    with pytest.raises(RepositoryLocked, match="host elsewhere"), repo.lock(exclusive=False):
        pass


def test_damaged_lock_counts_as_stale(repo: Repository) -> None:
    repo.backend.put("locks/" + "ab" * 16, b"garbage that does not decrypt at all")
    with repo.lock(exclusive=True):
        assert len(_locks(repo)) == 1


def test_refresh_replaces_the_lock_and_release_removes_it(repo: Repository) -> None:
    now = [1_000_000.0]
    held = RepositoryLock(repo.backend, repo.key.sealer, exclusive=False, clock=lambda: now[0])
    held.acquire()
    first = held.name
    now[0] += 600
    held.refresh()
    assert held.name != first and _locks(repo) == [held.name.split("/")[1]]
    info = read_lock(repo.backend, repo.key.sealer, held.name)
    assert info is not None and info.time == 1_000_600.0
    held.release()
    assert _locks(repo) == []


def test_live_lock_of_another_process_blocks_until_it_is_killed(repo: Repository, tmp_path) -> None:
    script = tmp_path / "hold.py"
    script.write_text(
        "import sys, time\n"
        "from cbr_agent.repository import Repository\n"
        "r = Repository.open(sys.argv[1], 'pw')\n"
        "with r.lock(exclusive=True):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script), repo.location], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(RepositoryLocked, match=f"pid {proc.pid}"), repo.lock(exclusive=False):
            pass
    finally:
        proc.kill()
        proc.wait()
    with repo.lock(exclusive=False):  # the crashed holder no longer blocks anyone
        pass


def test_a_held_lock_refreshes_itself(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    from cbr_agent.repository import lock as lock_module

    monkeypatch.setattr(lock_module, "REFRESH_INTERVAL", 0.05)
    with repo.lock(exclusive=False):
        first = _locks(repo)
        deadline = time.monotonic() + 5
        while _locks(repo) == first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _locks(repo) != first and len(_locks(repo)) == 1
    assert _locks(repo) == []
