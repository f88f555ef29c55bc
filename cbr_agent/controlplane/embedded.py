"""The control plane in-process: the agents API on a local SQLite file, no HTTP.

What the agent and the CLI use when no endpoint is configured (the single-host default). Each call
goes through the same validation as the server (requests are rebuilt as their wire bodies first), so
it raises the same :class:`~cbr_agent.errors.ApiError` subclasses with the same status and
``error_code`` the server would answer with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from cbr_agent.api.models import AddPathResult, Agent, AgentPage, AgentRegistration, RemovePathResult
from cbr_agent.controlplane import validation
from cbr_agent.controlplane.faults import bad_request
from cbr_agent.controlplane.store import AgentStore, Clock


def _agent_id(agent_id: object) -> str:
    return validation.check_agent_id(agent_id, "agent_id")


class EmbeddedControlPlane:
    """:class:`cbr_agent.api.models.ControlPlane` on an :class:`AgentStore`, for one project."""

    def __init__(
        self,
        db_path: str | Path,
        project_id: str,
        *,
        stale_after: float = 180.0,
        clock: Clock | None = None,
    ) -> None:
        self.project_id = project_id
        if isinstance(db_path, str) and db_path.startswith(("postgresql://", "postgres://")):
            from cbr_agent.controlplane.pgstore import PgStore  # the shared store (issue 13)

            self.store: AgentStore = PgStore(db_path, stale_after=stale_after, clock=clock)
        else:
            self.store = AgentStore(db_path, stale_after=stale_after, clock=clock)

    def register_agent(self, registration: AgentRegistration) -> Agent:
        if not isinstance(registration, AgentRegistration):
            raise bad_request("agent must be an AgentRegistration")
        return self.store.register(self.project_id, validation.parse_register(registration.to_wire()))

    def show_agent(self, agent_id: str) -> Agent:
        return self.store.show(self.project_id, _agent_id(agent_id))

    def list_agents(
        self,
        *,
        agent_ids: Sequence[str] = (),
        status: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> AgentPage:
        pairs = [("agent_id", str(a)) for a in agent_ids]
        if status is not None:
            pairs.append(("status", str(status)))
        if limit is not None:
            pairs.append(("limit", str(limit)))
        pairs.append(("offset", str(offset)))
        return self.store.list_agents(self.project_id, validation.parse_list_query(pairs))

    def update_agent(self, agent_id: str, status: str = "uninstall") -> Agent:
        checked_id = _agent_id(agent_id)
        checked = validation.parse_update({"agent": {"status": status}})
        return self.store.update_status(self.project_id, checked_id, checked)

    def add_paths(
        self,
        agent_id: str,
        paths: Sequence[str],
        excludes: Mapping[str, Sequence[str]] | None = None,
    ) -> AddPathResult:
        checked_id = _agent_id(agent_id)
        body: dict[str, object] = {"add_path": list(paths)}
        if excludes:
            body["exclude_path"] = [{"path_name": root, "exclude_path_name": list(names)}
                                    for root, names in excludes.items()]
        request = validation.parse_add_path(body)
        return self.store.add_paths(self.project_id, checked_id, request)

    def remove_paths(self, agent_id: str, paths: Sequence[str]) -> RemovePathResult:
        checked_id = _agent_id(agent_id)
        request = validation.parse_remove_path({"remove_path": list(paths)})
        return self.store.remove_paths(self.project_id, checked_id, request)

    def remove_agent(self, agent_id: str) -> None:
        self.store.remove_agent(self.project_id, _agent_id(agent_id))

    def cbr_call(
        self,
        method: str,
        segments: Sequence[str],
        *,
        query: Sequence[tuple[str, str]] = (),
        payload: object = None,
        idempotent: bool = True,
        read_timeout: float | None = None,
    ) -> dict[str, object]:
        """The CBR routes in-process, through the very handlers the server runs."""
        from cbr_agent.controlplane.cbr_routes import dispatch

        path = "/" + "/".join(str(s) for s in segments)
        _status, answer = dispatch(self.store, self.project_id, method, path, list(query), payload)
        return answer if isinstance(answer, dict) else {}

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> EmbeddedControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
