"""``cbr-agent run --once``: register, heartbeat and sync once, back the paths up once, exit."""

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

from cbr_agent.agent import hostfacts
from cbr_agent.agent.connect import open_control_plane
from cbr_agent.agent.heartbeat import ControlPlaneFactory, Syncer, registration_record
from cbr_agent.agent.identity import load_identity
from cbr_agent.agent.scheduler import JobFunction, default_job, run_job
from cbr_agent.agent.state import PidLock, load_agent_state, save_paths, update_agent_state
from cbr_agent.api.models import AgentPath
from cbr_agent.api.models import parse_time as parse_wire_time
from cbr_agent.config import Settings
from cbr_agent.errors import BackupError, Cancelled

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclasses.dataclass
class OnceResult:
    agent_id: str
    paths: tuple[AgentPath, ...]
    backup: dict[str, Any] | None


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
        try:
            result = syncer.sync()
        finally:
            syncer.close()
        save_paths(settings.state_dir, identity.agent_id, result.paths)
        update_agent_state(settings.state_dir, {**registration_record(settings, result),
                                                "last_error": None})
        if not result.paths:
            return OnceResult(identity.agent_id, result.paths, None)
        job_settings = dataclasses.replace(settings, agent_id=identity.agent_id)
        outcome = _backup_with_signals(job, job_settings, result.paths)
        update_agent_state(settings.state_dir, {"last_backup": outcome})
    if outcome["status"] == "cancelled":
        raise Cancelled("backup interrupted; no snapshot was written")
    if outcome["status"] == "failed":
        raise BackupError(f"backup failed: {outcome.get('error')}")
    return OnceResult(identity.agent_id, result.paths, outcome)


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
