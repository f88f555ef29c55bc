"""Locks: shared vs exclusive, owner in the message, stale locks (dead pid, expired, damaged) taken over."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from cbr_agent.errors import Cancelled, RepositoryLocked
from cbr_agent.repository import Repository
from cbr_agent.repository.lock import (
    STALE_AFTER,
    LockInfo,
    RepositoryLock,
    acquire_waiting,
    read_lock,
    write_lock,
)


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


class _InStep:
    """The repository's own backend, except that the runs of ``parties`` threads take their first lock
    in step: each has written its lock before any lists the locks, and each has looked at the others
    before any withdraws its own: two runs that started at the same instant."""

    def __init__(self, backend, parties: int) -> None:
        self._backend = backend
        self._barrier = threading.Barrier(parties, timeout=10)
        self._listed: set[int] = set()
        self._withdrawn: set[int] = set()

    def list(self, type_: str):
        me = threading.get_ident()
        if type_ == "locks" and me not in self._listed:
            self._listed.add(me)
            self._barrier.wait()
        return self._backend.list(type_)

    def delete(self, name: str) -> None:
        me = threading.get_ident()
        if name.startswith("locks/") and me in self._listed and me not in self._withdrawn:
            self._withdrawn.add(me)
            self._barrier.wait()
        self._backend.delete(name)

    def __getattr__(self, name: str):
        return getattr(self._backend, name)


@pytest.mark.parametrize("second_exclusive", [True, False])
def test_two_runs_locking_at_the_same_instant_one_wins(repo: Repository, second_exclusive: bool) -> None:
    backend = _InStep(repo.backend, 2)
    locks = [RepositoryLock(backend, repo.key.sealer, exclusive=True),
             RepositoryLock(backend, repo.key.sealer, exclusive=second_exclusive)]
    outcomes: dict[int, str] = {}

    def take(i: int) -> None:
        try:
            locks[i].acquire()
            outcomes[i] = "won"
        except RepositoryLocked as exc:
            outcomes[i] = str(exc)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert list(outcomes.values()).count("won") == 1, outcomes
        lost = [o for o in outcomes.values() if o != "won"]
        assert len(lost) == 1 and "repository is locked" in lost[0], outcomes
        assert len(_locks(repo)) == 1  # the loser left nothing behind
    finally:
        for held in locks:
            held.release()
    assert _locks(repo) == []


def test_acquire_waiting_takes_the_lock_once_it_is_released(repo: Repository) -> None:
    holder = RepositoryLock(repo.backend, repo.key.sealer, exclusive=True)
    holder.acquire()
    threading.Timer(0.6, holder.release).start()
    started = time.monotonic()
    waiting = RepositoryLock(repo.backend, repo.key.sealer, exclusive=False)
    acquire_waiting(waiting, 10.0)
    assert 0.5 < time.monotonic() - started < 5
    waiting.release()


def test_acquire_waiting_gives_up_naming_the_holder(repo: Repository) -> None:
    with repo.lock(exclusive=True):
        started = time.monotonic()
        with pytest.raises(RepositoryLocked, match=r"exclusive lock of pid \d+ .*; still locked after "
                           r"waiting 0.7 s"), repo.lock(exclusive=False, wait=0.7):
            pass
        assert 0.7 <= time.monotonic() - started < 3
        cancel = threading.Event()
        threading.Timer(0.2, cancel.set).start()
        with pytest.raises(Cancelled), repo.lock(exclusive=False, wait=30, cancel=cancel):
            pass
    assert _locks(repo) == []


def test_process_start_times_read_from_proc_agree_with_psutil() -> None:
    """A lock records its owner's start time without psutil; another process judges it with psutil."""
    import psutil

    from cbr_agent.repository.lock import process_start_time

    for pid in (os.getpid(), os.getppid(), 1):
        assert abs(process_start_time(pid) - psutil.Process(pid).create_time()) < 0.02
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert process_start_time(gone.pid) is None


def test_a_backup_command_does_not_load_psutil() -> None:
    code = ("import sys; import cbr_agent.cli.main, cbr_agent.backup.run, cbr_agent.restore.restorer; "
            "from cbr_agent.repository.lock import process_start_time; process_start_time(1); "
            "print('psutil' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
