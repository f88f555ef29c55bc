"""Repository locks: shared (backup) or exclusive (prune), with an owner and an expiry.

A lock is a sealed object ``locks/<random>`` holding host, pid, the process start time, the kind and the
last refresh time. The holder refreshes it every :data:`REFRESH_INTERVAL` seconds (a new object, then the
old one removed); a lock not refreshed for :data:`STALE_AFTER` seconds, or whose process on this host is
gone, is stale and is removed by the next run, so a crash never blocks the next backup for long.

Taking a lock is write-then-look: write ours, list the others, withdraw ours on a conflict. Two runs
that do it at the same instant both see a conflict; so a run that meets a conflict withdraws, waits a
random moment and looks once more: when the other lock's owner is gone too, it was such a contender and
the run tries again (the one whose wait ends first wins); when the owner is still there, it holds the
lock. :func:`acquire_waiting` adds waiting for a held lock (``--retry-lock``), with backoff.

Append-only storage (credentials that may add objects but not delete them) needs no deletion for a
shared lock: where a delete is refused, the lock is left behind and a tombstone ``locks/<name>-released``
says it is released, so no other run waits for it; runs with full credentials clear both. An exclusive
lock is for deleting (forget, prune), so taking one first checks that deletes are allowed.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cbr_agent.crypto import AuthenticationFailed, Sealer
from cbr_agent.errors import Cancelled, RepositoryAccessDenied, RepositoryError, RepositoryLocked
from cbr_agent.repository.backend import Backend
from cbr_agent.repository.objects import AAD_LOCK

log = logging.getLogger(__name__)

STALE_AFTER = 30 * 60.0
RELEASED = "-released"  # suffix of a tombstone: the lock of that name is released
REFRESH_INTERVAL = 5 * 60.0
#: rounds of write-then-look between contenders that started at the same instant before giving up
CONTENTION_ROUNDS = 5
#: a contender waits a random moment in [1, 5] times this (times the round) before looking again
CONTENTION_PAUSE = 0.05
#: ``acquire_waiting``: first pause between attempts, doubled after each, at most LOCK_RETRY_MAX
LOCK_RETRY_FIRST = 0.5
LOCK_RETRY_MAX = 30.0
Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class LockInfo:
    host: str
    pid: int
    pid_start: float | None
    exclusive: bool
    time: float  # last refresh, seconds since the epoch
    #: random, one per held lock and kept across refreshes (absent in locks of older versions)
    owner: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LockInfo:
        d: dict[str, Any] = json.loads(raw)
        owner = d.get("owner")
        return cls(str(d["host"]), int(d["pid"]), d.get("pid_start"), bool(d["exclusive"]), float(d["time"]),
                   str(owner) if owner else None)

    def holder(self) -> tuple[str, int, str | None]:
        """Who holds it, the same across its refreshes."""
        return (self.host, self.pid, self.owner)

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))
        return f"{kind} lock of pid {self.pid} on host {self.host} (refreshed {when})"


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started, in seconds since the epoch as psutil counts them; None if it is gone.

    On Linux read from /proc as psutil does (boot time plus the start tick), so that a command that
    takes a lock does not import psutil: 2 MB of resident memory and 12 ms of every backup."""
    if sys.platform.startswith("linux"):
        return _proc_start_time(pid)
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def _proc_start_time(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        with open("/proc/stat", "rb") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def is_stale(info: LockInfo, now: float, host: str | None = None) -> bool:
    """Expired, or owned by a process of this host that no longer exists (or is another process now)."""
    if now - info.time > STALE_AFTER:
        return True
    if info.host == (host or socket.gethostname()):
        import psutil

        if not psutil.pid_exists(info.pid):
            return True
        start = process_start_time(info.pid)
        if info.pid_start is not None and start is not None and abs(start - info.pid_start) > 1.0:
            return True  # the pid was reused by another process
    return False


def write_lock(backend: Backend, sealer: Sealer, info: LockInfo) -> str:
    name = "locks/" + secrets.token_hex(16)
    backend.put(name, sealer.seal(info.to_json(), AAD_LOCK))
    return name


def delete_or_tombstone(backend: Backend, sealer: Sealer, name: str) -> None:
    """Remove a lock we held; where deletes are refused (append-only), say it is released instead."""
    try:
        backend.delete(name)
    except RepositoryAccessDenied:
        log.debug("may not delete %s (append-only storage); leaving a tombstone", name)
        backend.put(name + RELEASED, sealer.seal(json.dumps({"released": name}).encode(), AAD_LOCK))


def _try_delete(backend: Backend, name: str) -> None:
    try:
        backend.delete(name)
    except FileNotFoundError:
        pass  # another run removed it first
    except RepositoryAccessDenied:
        log.debug("may not delete %s (append-only storage); left for a run with full credentials", name)


def check_delete_allowed(backend: Backend, sealer: Sealer) -> None:
    """RepositoryAccessDenied, with what to do, when the storage refuses deletes (append-only)."""
    probe = "locks/" + secrets.token_hex(16) + RELEASED  # a tombstone of nothing: harmless if it stays
    backend.put(probe, sealer.seal(json.dumps({"released": None}).encode(), AAD_LOCK))
    try:
        backend.delete(probe)
    except RepositoryAccessDenied:
        raise RepositoryAccessDenied(
            f"the storage of {backend.location} refuses deletes with these credentials (append-only): "
            "forget, prune and repair need credentials that may delete objects",
            hint="run them where the full credentials are, e.g. on a management host") from None


def read_lock(backend: Backend, sealer: Sealer, name: str) -> LockInfo | None:
    """The lock's owner, or None when it vanished or cannot be read (damaged locks count as stale)."""
    try:
        raw = backend.get(name)
    except FileNotFoundError:
        return None
    try:
        return LockInfo.from_json(sealer.open(raw, AAD_LOCK))
    except (AuthenticationFailed, ValueError, KeyError, TypeError):
        log.warning("repository lock %s is damaged; treating it as stale", name)
        return None


class RepositoryLock:
    """A held lock; refreshes itself in a daemon thread until released."""

    def __init__(
        self, backend: Backend, sealer: Sealer, *, exclusive: bool, clock: Clock = time.time,
        sleep: Sleep = time.sleep, rng: random.Random | None = None,
    ) -> None:
        self._backend = backend
        self._sealer = sealer
        self.exclusive = exclusive
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._pid_start = process_start_time(self._pid)
        self._owner = secrets.token_hex(8)
        self._name: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    @property
    def name(self) -> str | None:
        return self._name

    def _info(self) -> LockInfo:
        return LockInfo(self._host, self._pid, self._pid_start, self.exclusive, self._clock(), self._owner)

    def acquire(self) -> None:
        """Take the lock now, or RepositoryLocked naming who holds it (see the module docstring)."""
        if self.exclusive:  # an exclusive lock is for deleting: say at once when the storage refuses it
            check_delete_allowed(self._backend, self._sealer)
        for round_ in range(1, CONTENTION_ROUNDS + 1):
            self._name = write_lock(self._backend, self._sealer, self._info())
            try:
                conflicts = self._conflicts()
            except BaseException:
                self._withdraw()
                raise
            if not conflicts:
                break
            self._withdraw()
            self._sleep(CONTENTION_PAUSE * round_ * self._rng.uniform(1.0, 5.0))
            holders = {info.holder() for info in self._conflicts()}
            staying = [info for info in conflicts if info.holder() in holders]
            if staying or round_ == CONTENTION_ROUNDS:
                raise RepositoryLocked(f"repository is locked: {(staying or conflicts)[0].describe()}")
            log.debug("lock contention with a run that withdrew too; trying again")
        self._thread = threading.Thread(target=self._refresh_loop, name="repo-lock-refresh", daemon=True)
        self._thread.start()

    def _withdraw(self) -> None:
        name, self._name = self._name, None
        if name is not None:
            delete_or_tombstone(self._backend, self._sealer, name)

    def _conflicts(self) -> list[LockInfo]:
        """Live locks of others that conflict with ours; stale ones are removed on the way."""
        now = self._clock()
        found: list[LockInfo] = []
        names = ["locks/" + base for base, _size in self._backend.list("locks")]
        released = {n[: -len(RELEASED)] for n in names if n.endswith(RELEASED)}
        for name in names:
            if name == self._name:
                continue
            if name.endswith(RELEASED) or name in released:
                if self.exclusive:  # tidy up after append-only runs (we may delete: checked above)
                    _try_delete(self._backend, name)
                continue
            info = read_lock(self._backend, self._sealer, name)
            if info is None or is_stale(info, now, self._host):
                if info is not None:
                    log.info("removing stale repository %s", info.describe())
                _try_delete(self._backend, name)
                continue
            if self.exclusive or info.exclusive:
                found.append(info)
        return found

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_INTERVAL):
            try:
                self.refresh()
            except RepositoryError as exc:
                log.warning("could not refresh the repository lock: %s", exc)

    def refresh(self) -> None:
        with self._mutex:
            if self._name is None:
                return
            old = self._name
            self._name = write_lock(self._backend, self._sealer, self._info())
            delete_or_tombstone(self._backend, self._sealer, old)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        with self._mutex:
            if self._name is not None:
                try:
                    delete_or_tombstone(self._backend, self._sealer, self._name)
                finally:
                    self._name = None


def acquire_waiting(lock: RepositoryLock, wait: float, *, cancel: threading.Event | None = None,
                    clock: Clock = time.monotonic) -> None:
    """``lock.acquire()``, trying again with backoff for up to ``wait`` seconds while it is held
    (said once in the log); then RepositoryLocked naming the holder. ``cancel`` ends the wait
    (Cancelled)."""
    deadline = clock() + wait
    pause = LOCK_RETRY_FIRST
    said = False
    while True:
        try:
            lock.acquire()
            return
        except RepositoryLocked as exc:
            left = deadline - clock()
            if wait <= 0:
                raise
            if left <= 0:
                raise RepositoryLocked(f"{exc.message}; still locked after waiting {wait:g} s") from None
            if not said:
                log.warning("%s; waiting up to %g s for it", exc.message, wait)
                said = True
        step = min(pause, left)
        if cancel is not None:
            if cancel.wait(step):
                raise Cancelled("stopped while waiting for the repository lock")
        else:
            time.sleep(step)
        pause = min(pause * 2, LOCK_RETRY_MAX)
