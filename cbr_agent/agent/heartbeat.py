"""Registration, heartbeat and path sync with one control plane (DESIGN decision 1).

A heartbeat is an idempotent re-registration (``POST /agents`` with the same ``agent_id`` and fresh
host facts), followed by ``GET /agents/{id}`` for the current path and exclude list, since the register
response carries no paths. An agent deleted on the control plane is registered again by that very
heartbeat; the sync notices it (the agent's ``created_at`` changed, or the ``GET`` answered 404) and says
so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cbr_agent.agent import hostfacts
from cbr_agent.agent.connect import describe_endpoint, open_control_plane
from cbr_agent.agent.state import utc_now
from cbr_agent.api.models import Agent, AgentPath, ControlPlane
from cbr_agent.config import Settings
from cbr_agent.errors import NotFoundError

log = logging.getLogger(__name__)

ControlPlaneFactory = Callable[[Settings], ControlPlane]


@dataclass(frozen=True)
class SyncResult:
    agent: Agent
    #: the agent's usable paths (status ``available``), in the control plane's order
    paths: tuple[AgentPath, ...]
    #: the agent had been deleted on the control plane and was registered again
    recreated: bool


def available_paths(agent: Agent) -> tuple[AgentPath, ...]:
    return tuple(p for p in agent.paths or () if p.status == "available")


class Syncer:
    def __init__(self, settings: Settings, agent_id: str, *,
                 open_cp: ControlPlaneFactory = open_control_plane,
                 facts: Callable[[], hostfacts.HostFacts] = hostfacts.collect,
                 known_created_at: datetime | None = None) -> None:
        self.settings = settings
        self.agent_id = agent_id
        self._open_cp = open_cp
        self._facts = facts
        self._cp: ControlPlane | None = None
        #: when the control plane created our agent; a change means it was deleted and re-created
        self.created_at = known_created_at

    def control_plane(self) -> ControlPlane:
        if self._cp is None:
            self._cp = self._open_cp(self.settings)
        return self._cp

    def reconfigure(self, settings: Settings) -> None:
        """Use new settings; the control plane is reopened at the next call. Another control plane (or
        project) has its own creation time for our agent: not a sign that it was deleted."""
        self.close()
        if (settings.endpoint, settings.project_id) != (self.settings.endpoint, self.settings.project_id):
            self.created_at = None
        self.settings = settings

    def close(self) -> None:
        if self._cp is not None:
            cp, self._cp = self._cp, None
            try:
                cp.close()
            except Exception:  # closing must never stop a shutdown or a reload
                log.debug("closing the control plane failed", exc_info=True)

    def register(self) -> Agent:
        facts = self._facts()
        registration = facts.registration(self.agent_id, agent_type=self.settings.agent_type,
                                          host_nickname=self.settings.host_nickname or None)
        return self.control_plane().register_agent(registration)

    def sync(self) -> SyncResult:
        """One heartbeat and path sync. Raises the control plane's errors."""
        agent = self.register()
        recreated = self._changed_creation(agent.created_at)
        try:
            shown = self.control_plane().show_agent(self.agent_id)
        except NotFoundError:
            log.warning("agent %s vanished from the control plane right after its heartbeat; "
                        "registering it again", self.agent_id)
            self.register()
            shown = self.control_plane().show_agent(self.agent_id)
            recreated = True
        recreated = self._changed_creation(shown.created_at) or recreated
        if recreated:
            log.warning("agent %s had been deleted on the control plane (with its path list and "
                        "backups there); registered it again", self.agent_id)
        return SyncResult(agent=shown, paths=available_paths(shown), recreated=recreated)

    def _changed_creation(self, created_at: datetime | None) -> bool:
        if created_at is None:
            return False
        changed = self.created_at is not None and created_at != self.created_at
        self.created_at = created_at
        return changed


def registration_record(settings: Settings, result: SyncResult) -> dict[str, Any]:
    agent = result.agent
    return {
        "agent_id": agent.agent_id,
        "endpoint": describe_endpoint(settings),
        "project_id": settings.project_id,
        "registered": True,
        "created_at": agent.created_at.isoformat() if agent.created_at else None,
        "agent_status": agent.status,
        "last_heartbeat": utc_now(),
        "control_plane": "ok",
    }
