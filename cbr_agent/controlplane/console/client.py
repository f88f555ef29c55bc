"""The console's way to the data: the agents API itself, called in-process.

Each call is an HTTP request (method, path, query, ``X-Auth-Token`` of the signed-in user, JSON body)
handed to the API's ASGI app, so it goes through the very authentication, validation, store
transaction and error mapping a remote SDK call does; only the socket is skipped. Answers are read
with the SDK-side models (:class:`cbr_agent.api.models.Agent`).

One method per API call; the CBR families (vaults, policies, backups, operation logs) are read as
the wire's dicts, which the templates show as they are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from starlette.types import ASGIApp, Message

from cbr_agent.api.models import Agent, AgentPage

#: the API's largest page (``limit``)
API_PAGE = 1000


class ConsoleApiError(Exception):
    """An API call answered with an error: its HTTP status, error_code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class StatusCounts:
    total: int
    normal: int
    abnormal: int
    uninstall: int


@dataclass(frozen=True)
class Page:
    """One page of a CBR list: its items (wire dicts) and the total count."""

    items: list[dict[str, Any]]
    count: int
    limit: int
    offset: int
    #: ``size_bytes_total`` of a ``latest_per_resource`` backups list (an extension), else 0
    size_bytes_total: int = 0


def _query(**filters: Any) -> list[tuple[str, str]]:
    """Query pairs from keyword filters; None/"" left out, a list or tuple repeats its key."""
    pairs: list[tuple[str, str]] = []
    for key, value in filters.items():
        values = value if isinstance(value, (list, tuple)) else (value,)
        pairs += [(key, str(v)) for v in values if v is not None and v != ""]
    return pairs


class ApiClient:
    """One signed-in user's calls to the agents API (``/v3/{project_id}/...``)."""

    def __init__(self, app: ASGIApp, project_id: str, token: str) -> None:
        self.app = app
        self.project_id = project_id
        self.token = token

    async def call(self, method: str, parts: Sequence[str], *, query: Sequence[tuple[str, str]] = (),
                   payload: Any = None) -> Any:
        """The decoded JSON answer (None for an empty one); ConsoleApiError unless 200."""
        path = "/v3/" + "/".join(quote(p, safe="") for p in (self.project_id, *parts))
        body = b"" if payload is None else json.dumps(payload).encode("utf-8")
        headers = [(b"host", b"console.local"), (b"x-auth-token", self.token.encode("utf-8"))]
        if payload is not None:
            headers += [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode("ascii"),
                 "query_string": urlencode(list(query)).encode("ascii"), "root_path": "",
                 "headers": headers, "client": ("console", 0), "server": ("console.local", 80)}
        sent = False
        status = 500
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        raw = b"".join(chunks)
        data = json.loads(raw) if raw.strip() else None
        if not 200 <= status < 300:  # restore answers 202, deletes 204
            data = data if isinstance(data, dict) else {}
            raise ConsoleApiError(status, str(data.get("error_code", "")),
                                  str(data.get("error_msg", f"HTTP {status}")))
        return data

    # -- agents -------------------------------------------------------------------------------------

    async def list_agents(self, *, status: str | None = None, search: str | None = None,
                          limit: int = 50, offset: int = 0) -> AgentPage:
        query = [("limit", str(limit)), ("offset", str(offset))]
        if status:
            query.append(("status", status))
        if search:
            query.append(("search", search))
        body = await self.call("GET", ["agents"], query=query)
        return AgentPage(agents=tuple(Agent.from_wire(a) for a in body.get("agents") or ()),
                         count=int(body.get("count", 0)), limit=int(body.get("limit", limit)),
                         offset=int(body.get("offset", offset)))

    async def count(self, status: str | None = None) -> int:
        return (await self.list_agents(status=status, limit=1)).count

    async def status_counts(self) -> StatusCounts:
        return StatusCounts(total=await self.count(), normal=await self.count("normal"),
                            abnormal=await self.count("abnormal"), uninstall=await self.count("uninstall"))

    async def show_agent(self, agent_id: str) -> Agent:
        return Agent.from_wire((await self.call("GET", ["agents", agent_id]))["agent"])

    async def mark_uninstalled(self, agent_id: str) -> Agent:
        body = await self.call("PUT", ["agents", agent_id], payload={"agent": {"status": "uninstall"}})
        return Agent.from_wire(body["agent"])

    # -- CBR: vaults, policies, checkpoints, backups, operation logs ---------------------------------

    async def _page(self, path: str, key: str, **filters: Any) -> Page:
        body = await self.call("GET", [path], query=_query(**filters))
        return Page(items=list(body.get(key) or ()), count=int(body.get("count", 0)),
                    limit=int(body.get("limit", 0)), offset=int(body.get("offset", 0)),
                    size_bytes_total=int(body.get("size_bytes_total") or 0))

    async def _all(self, path: str, key: str, **filters: Any) -> list[dict[str, Any]]:
        """Every item of a list, page by page."""
        items: list[dict[str, Any]] = []
        while True:
            page = await self._page(path, key, limit=API_PAGE, offset=len(items), **filters)
            items += page.items
            if not page.items or len(items) >= page.count:
                return items

    async def list_vaults(self) -> list[dict[str, Any]]:
        return await self._all("vaults", "vaults")

    async def list_policies(self) -> list[dict[str, Any]]:
        return await self._all("policies", "policies")

    async def vault_of(self, agent_id: str) -> dict[str, Any] | None:
        """The vault holding this agent as a resource (an agent is in one vault at most), or None."""
        for vault in await self.list_vaults():
            if any(r.get("id") == agent_id for r in vault.get("resources") or ()):
                return vault
        return None

    async def list_backups(self, **filters: Any) -> Page:
        """``GET /backups``: filters as the API names them (``resource_id`` may be a list)."""
        return await self._page("backups", "backups", **filters)

    async def last_backups(self, agent_ids: Sequence[str], *, status: str | None = None
                           ) -> dict[str, dict[str, Any]]:
        """The newest backup of each of these agents, in one call (``latest_per_resource``)."""
        if not agent_ids:
            return {}
        page = await self.list_backups(resource_id=list(agent_ids), status=status,
                                       latest_per_resource="true", limit=min(API_PAGE, len(agent_ids)))
        return {b["resource_id"]: b for b in page.items}

    async def create_checkpoint(self, vault_id: str, resources: Sequence[str] | None = None,
                                name: str | None = None) -> dict[str, Any]:
        parameters: dict[str, Any] = {}
        if resources is not None:
            parameters["resources"] = list(resources)
        if name:
            parameters["name"] = name
        body = await self.call("POST", ["checkpoints"],
                               payload={"checkpoint": {"vault_id": vault_id, "parameters": parameters}})
        return dict(body["checkpoint"])

    async def restore_backup(self, backup_id: str, destination_path: str) -> None:
        await self.call("POST", ["backups", backup_id, "restore"],
                        payload={"restore": {"details": {"destination_path": destination_path}}})

    async def list_tasks(self, **filters: Any) -> Page:
        """``GET /operation-logs``."""
        return await self._page("operation-logs", "operation_logs", **filters)
