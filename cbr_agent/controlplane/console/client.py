"""The console's way to the data: the agents API itself, called in-process.

Each call is an HTTP request (method, path, query, ``X-Auth-Token`` of the signed-in user, JSON body)
handed to the API's ASGI app, so it goes through the very authentication, validation, store
transaction and error mapping a remote SDK call does; only the socket is skipped. Answers are read
with the SDK-side models (:class:`cbr_agent.api.models.Agent`).

Pages for later API families (vaults, policies, backups, tasks) add methods here, one per API call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from starlette.types import ASGIApp, Message

from cbr_agent.api.models import Agent, AgentPage


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
        if status != 200:
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
