"""``cbr-agent run --once``: register, heartbeat and sync once, back the paths up once, exit.

When the control plane cannot be reached (network down, 5xx), the paths cached by the last sync are
backed up all the same, as the daemon would: a host keeps its backups while the control plane is away.
The result says so (``offline``), and the CLI exits 4 after the backup, so that automation still sees
that the heartbeat and the path sync did not happen.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

from cbr_agent.agent import hostfacts
from cbr_agent.agent.connect import open_control_plane
from cbr_agent.agent.heartbeat import ControlPlaneFactory, Syncer, registration_record
from cbr_agent.agent.identity import load_identity
from cbr_agent.agent.scheduler import JobFunction, default_job, run_job
from cbr_agent.agent.state import (
    PidLock,
    load_agent_state,
    load_paths_or_recover,
    save_paths,
    update_agent_state,
)
from cbr_agent.api.models import AgentPath
from cbr_agent.api.models import parse_time as parse_wire_time
from cbr_agent.config import Settings
from cbr_agent.errors import BackupError, Cancelled, ControlPlaneUnavailable, RepositoryLocked

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclasses.dataclass
class OnceResult:
    agent_id: str
    paths: tuple[AgentPath, ...]
    backup: dict[str, Any] | None
    offline: ControlPlaneUnavailable | None = None  # set: the cached paths were backed up without a sync
    synced_at: str | None = None                    # when the paths backed up were last synced (offline)


def run_once(settings: Settings, *, job: Callable[[], JobFunction] = default_job,
             open_cp: ControlPlaneFactory = open_control_plane,
             facts: Callable[[], hostfacts.HostFacts] = hostfacts.collect) -> OnceResult:
    """Register, heartbeat and sync once, back up the paths once if there are any."""
    with PidLock(settings.state_dir):
        identity = load_identity(settings.state_dir, pinned=settings.agent_id)
        previous = load_agent_state(settings.state_dir)
        known = parse_wire_time(previous.get("created_at")) \
            if previous.get("agent_id") == identity.agent_id else None
        syncer = Syncer(settings, identity.agent_id, open_cp=open_cp, facts=facts,
                        known_created_at=known)
        offline: ControlPlaneUnavailable | None = None
        synced_at = None
        try:
            result = syncer.sync()
        except ControlPlaneUnavailable as exc:
            cache = load_paths_or_recover(settings.state_dir)
            if cache is None or cache.agent_id != identity.agent_id or not cache.paths:
                raise
            offline, paths, synced_at = exc, cache.paths, cache.synced_at
            log.warning("the control plane is unavailable (%s); backing up the %d path(s) cached at %s",
                        exc, len(paths), synced_at)
            update_agent_state(settings.state_dir, {"last_error": str(exc)})
        else:
            paths = result.paths
            save_paths(settings.state_dir, identity.agent_id, paths)
            update_agent_state(settings.state_dir, {**registration_record(settings, result),
                                                    "last_error": None})
        finally:
            syncer.close()
        if not paths:
            return OnceResult(identity.agent_id, paths, None)
        job_settings = dataclasses.replace(settings, agent_id=identity.agent_id)
        outcome = _backup_with_signals(job, job_settings, paths)
        locked = outcome.pop("locked", False)
        update_agent_state(settings.state_dir, {"last_backup": outcome})
    if outcome["status"] == "cancelled":
        raise Cancelled("backup interrupted; no snapshot was written")
    if outcome["status"] == "failed" and locked:
        raise RepositoryLocked(f"backup failed: {outcome.get('error')}")
    if outcome["status"] == "failed":
        raise BackupError(f"backup failed: {outcome.get('error')}")
    return OnceResult(identity.agent_id, paths, outcome, offline, synced_at)


def _backup_with_signals(job: Callable[[], JobFunction], settings: Settings,
                         paths: Sequence[AgentPath]) -> dict[str, Any]:
    cancel = threading.Event()
    backup = job()
    if threading.current_thread() is not threading.main_thread():
        return run_job(backup, settings, paths, cancel)
    old = {sig: signal.signal(sig, lambda *_: cancel.set()) for sig in STOP_SIGNALS}
    try:
        return run_job(backup, settings, paths, cancel)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
