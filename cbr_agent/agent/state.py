"""What the agent keeps in its state dir besides its identity, and who is running.

- ``paths.json``: the path and exclude list last synced from the control plane (so that a daemon
  restarted while the control plane is down still knows what to back up). Written by the daemon after
  each sync and by the ``path`` commands after each change.
- ``agent-state.json``: what ``status`` shows: registration, last heartbeat, last error, last and next
  backup. Written by the daemon and by ``register``/``uninstall``, each merging its fields under a lock.
- ``daemon.pid``: the running daemon's pid, locked with ``flock`` for the daemon's lifetime. A lock
  cannot outlive its process, so a stale file or a reused pid never looks like a running daemon.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cbr_agent.agent.statefile import CorruptStateFile, ensure_dir, read_json, set_aside, write_json
from cbr_agent.api.models import AgentPath
from cbr_agent.errors import StateError

log = logging.getLogger(__name__)

PATHS_FILE = "paths.json"
AGENT_STATE_FILE = "agent-state.json"
STATE_LOCK_FILE = "agent-state.lock"
PID_FILE = "daemon.pid"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# -- the path cache -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PathCache:
    agent_id: str | None
    paths: tuple[AgentPath, ...]
    synced_at: str | None


def paths_to_json(paths: Sequence[AgentPath]) -> list[dict[str, Any]]:
    return [{"dir_path": p.dir_path, "excludes": list(p.excludes), "id": p.id, "status": p.status}
            for p in paths]


def save_paths(state_dir: Path, agent_id: str, paths: Sequence[AgentPath]) -> None:
    write_json(state_dir / PATHS_FILE, {"agent_id": agent_id, "synced_at": utc_now(),
                                        "paths": paths_to_json(paths)})


def load_paths(state_dir: Path) -> PathCache | None:
    """The cached list; None when there is none. Raises CorruptStateFile when it is damaged."""
    path = state_dir / PATHS_FILE
    data = read_json(path)
    if data is None:
        return None
    try:
        items = data["paths"]
        paths = tuple(
            AgentPath(dir_path=str(item["dir_path"]), excludes=tuple(str(e) for e in item["excludes"]),
                      id=item.get("id"), agent_id=data.get("agent_id"),
                      status=str(item.get("status") or "available"))
            for item in items)
    except (KeyError, TypeError, AttributeError) as exc:
        raise CorruptStateFile(path, f"unexpected content: {exc!r}") from None
    return PathCache(agent_id=data.get("agent_id"), paths=paths, synced_at=data.get("synced_at"))


def load_paths_or_recover(state_dir: Path) -> PathCache | None:
    """The cache, or None after setting a damaged file aside (the next sync rebuilds it)."""
    try:
        return load_paths(state_dir)
    except CorruptStateFile as exc:
        kept = set_aside(exc.path)
        log.warning("%s; kept it as %s and will rebuild it from the control plane", exc, kept)
        return None


# -- the agent's state (what ``status`` shows) ---------------------------------------------------


def load_agent_state(state_dir: Path) -> dict[str, Any]:
    try:
        return read_json(state_dir / AGENT_STATE_FILE) or {}
    except CorruptStateFile as exc:
        log.warning("%s; starting it afresh", exc)
        return {}


def update_agent_state(state_dir: Path, changes: dict[str, Any]) -> dict[str, Any]:
    """Merge ``changes`` into the state file; the daemon and the CLI both write it, so under a lock."""
    ensure_dir(state_dir)
    try:
        fd = os.open(state_dir / STATE_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StateError(f"cannot write in state directory {state_dir}: {exc.strerror}",
                         hint="the state directory must be writable and not full") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        state = load_agent_state(state_dir)
        state.update(changes)
        write_json(state_dir / AGENT_STATE_FILE, state)
        return state
    finally:
        os.close(fd)


# -- who is running -----------------------------------------------------------------------------


class PidLock:
    """An exclusive ``flock`` on ``daemon.pid`` held while the daemon runs."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / PID_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        ensure_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StateError(f"cannot open {self.path}: {exc.strerror}",
                             hint="the state directory must be writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            other = running_pid(self.path.parent)
            raise StateError(
                f"another cbr-agent daemon (pid {other or 'unknown'}) is running with state dir "
                f"{self.path.parent}", hint="stop it first, or use another --state-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> PidLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def running_pid(state_dir: Path) -> int | None:
    """The pid of the daemon running with ``state_dir``, or None when none is."""
    path = state_dir / PID_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # locked: a daemon holds it
            text = os.read(fd, 64).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
