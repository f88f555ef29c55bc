"""Typed objects of the CBR agents API and the one interface every control plane implements.

Three implementations share :class:`ControlPlane`: the HTTP client (:mod:`cbr_agent.api.client`), the
embedded in-process control plane (:mod:`cbr_agent.controlplane.embedded`) and, behind HTTP, the server
(:mod:`cbr_agent.controlplane.server`), which serializes these objects with the ``to_wire`` helpers.
Every response field is optional on the wire (the reference's own examples leave fields out), so
``from_wire`` tolerates absent keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

AGENT_STATUSES = ("normal", "abnormal", "uninstall")
PATH_STATUSES = ("available", "remove")
AGENT_TYPES = ("native", "cloud")


def format_time(value: datetime | None) -> str | None:
    """``2022-01-30T09:28:09.334+00:00``: ISO 8601, milliseconds, numeric UTC offset."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class AgentRegistration:
    """The body of register: host facts the agent reports (also its heartbeat)."""

    agent_id: str
    host_name: str
    host_ip: str
    host_os: str
    agent_version: str | None = None
    agent_type: str | None = None
    host_nickname: str | None = None

    def to_wire(self) -> dict[str, Any]:
        body = {
            "agent_id": self.agent_id,
            "host_name": self.host_name,
            "host_ip": self.host_ip,
            "host_os": self.host_os,
            "agent_version": self.agent_version,
            "agent_type": self.agent_type,
            "host_nickname": self.host_nickname,
        }
        return {"agent": {k: v for k, v in body.items() if v is not None}}


@dataclass(frozen=True)
class AgentPath:
    """A backup path of an agent with its excludes (a list here; comma-joined on the wire)."""

    dir_path: str
    excludes: tuple[str, ...] = ()
    id: str | None = None
    agent_id: str | None = None
    status: str = "available"

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dir_path": self.dir_path,
            "status": self.status,
            "agent_id": self.agent_id,
            "exclude_paths": ",".join(self.excludes),
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> AgentPath:
        raw = data.get("exclude_paths") or ""
        excludes = tuple(e for e in str(raw).split(",") if e)
        return cls(
            dir_path=str(data.get("dir_path", "")),
            excludes=excludes,
            id=data.get("id"),
            agent_id=data.get("agent_id"),
            status=str(data.get("status") or "available"),
        )


@dataclass(frozen=True)
class Agent:
    agent_id: str
    host_name: str | None = None
    host_ip: str | None = None
    host_os: str | None = None
    host_nickname: str | None = None
    agent_version: str | None = None
    agent_type: str | None = None
    status: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_active_time: datetime | None = None
    #: None when the response carried no ``paths`` key (register never does)
    paths: tuple[AgentPath, ...] | None = None

    def to_wire(self, *, with_paths: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "agent_id": self.agent_id,
            "agent_version": self.agent_version,
            "agent_type": self.agent_type,
            "host_name": self.host_name,
            "host_nickname": self.host_nickname,
            "host_ip": self.host_ip,
            "host_os": self.host_os,
            "status": self.status,
            "last_active_time": format_time(self.last_active_time),
        }
        if with_paths and self.paths is not None:
            body["paths"] = [p.to_wire() for p in self.paths]
        return body

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Agent:
        paths = data.get("paths")
        return cls(
            agent_id=str(data["agent_id"]),
            host_name=data.get("host_name"),
            host_ip=data.get("host_ip"),
            host_os=data.get("host_os"),
            host_nickname=data.get("host_nickname"),
            agent_version=data.get("agent_version"),
            agent_type=data.get("agent_type"),
            status=data.get("status"),
            created_at=parse_time(data.get("created_at")),
            updated_at=parse_time(data.get("updated_at")),
            last_active_time=parse_time(data.get("last_active_time")),
            paths=None if paths is None else tuple(AgentPath.from_wire(p) for p in paths),
        )


@dataclass(frozen=True)
class AgentPage:
    agents: tuple[Agent, ...]
    count: int
    limit: int
    offset: int


@dataclass(frozen=True)
class AddPathResult:
    added: tuple[str, ...] = ()
    existed: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemovePathResult:
    removed: tuple[str, ...] = ()
    not_existed: tuple[str, ...] = ()


@runtime_checkable
class ControlPlane(Protocol):
    """The seven agent APIs. Errors are :class:`cbr_agent.errors.ApiError` (or a subclass) with the
    same status and ``error_code`` whichever implementation raised them, and
    :class:`cbr_agent.errors.ControlPlaneUnavailable` when there is no answer."""

    def register_agent(self, registration: AgentRegistration) -> Agent: ...

    def show_agent(self, agent_id: str) -> Agent: ...

    def list_agents(
        self,
        *,
        agent_ids: Sequence[str] = (),
        status: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> AgentPage: ...

    def update_agent(self, agent_id: str, status: str = "uninstall") -> Agent: ...

    def add_paths(
        self,
        agent_id: str,
        paths: Sequence[str],
        excludes: Mapping[str, Sequence[str]] | None = None,
    ) -> AddPathResult: ...

    def remove_paths(self, agent_id: str, paths: Sequence[str]) -> RemovePathResult: ...

    def remove_agent(self, agent_id: str) -> None: ...

    def close(self) -> None: ...
