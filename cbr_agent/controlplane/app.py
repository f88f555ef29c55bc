"""The agents API over HTTP: a FastAPI application on an :class:`AgentStore`.

Each request goes: size check (413, from Content-Length before reading anything; while streaming
otherwise) -> authentication (401/403) -> content type (415) -> JSON and field validation (400) ->
one store transaction (404 for an unknown agent) -> 200. Errors are always
``{"error_code", "error_msg"}``. Handlers are ``async``; each store call runs on the database threads
of :mod:`cbr_agent.controlplane.dbcall`, never on the event loop (issue 13).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cbr_agent.api.models import Agent
from cbr_agent.controlplane import faults, validation
from cbr_agent.controlplane.auth import authenticate, check_single_auth_headers
from cbr_agent.controlplane.credentials import Credentials
from cbr_agent.controlplane.dbcall import SQLITE_THREADS, DbCalls
from cbr_agent.controlplane.store import AgentStore
from cbr_agent.errors import ApiError, CbrAgentError

log = logging.getLogger("cbr_agent.controlplane.access")
errlog = logging.getLogger("cbr_agent.controlplane.server")

JSON = "application/json"


def _dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(data: Any) -> Response:
    return Response(_dumps(data), media_type=JSON)


def error_response(exc: ApiError) -> Response:
    response = Response(_dumps(exc.to_body()), status_code=exc.status, media_type=JSON)
    retry_after = getattr(exc, "retry_after", None)  # a database that is away (pgstore.unavailable)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def agent_wire(agent: Agent) -> dict[str, Any]:
    return {k: v for k, v in agent.to_wire().items() if v is not None}


class AccessLog:
    """Pure ASGI middleware: one log line per request (method, path, status, ms, request id) and an
    ``X-Request-Id`` header. Headers are never logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            raw = scope.get("raw_path") or b""
            if b"%2f" in raw.lower():
                # an encoded '/' inside a path parameter: no agent_id has one (the embedded side says so too)
                await error_response(faults.bad_request(
                    "a path parameter contains an encoded '/' (%2F); agent_id must be 1 to 64 letters, "
                    "digits, '.', '_' or '-'"))(scope, receive, send_wrapper)
                return
            try:
                check_single_auth_headers(scope["headers"])
            except ApiError as exc:
                await error_response(exc)(scope, receive, send_wrapper)
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            # the path as sent (still percent-encoded), so a client cannot forge log lines with %0A
            log.info("%s %s %d %.1fms id=%s", scope["method"], _raw_path(scope), status,
                     (time.perf_counter() - started) * 1000, request_id)


async def read_body(request: Request) -> bytes:
    """The body, at most MAX_BODY_BYTES: refused from Content-Length alone when it says more."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > faults.MAX_BODY_BYTES:
        raise faults.too_large(int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > faults.MAX_BODY_BYTES:
            raise faults.too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("utf-8", "replace") for k, v in scope["headers"]}


def _raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    return raw.decode("utf-8", "replace") if raw else scope["path"]


class Api:
    """The seven handlers, bound to a store and a set of credentials."""

    def __init__(self, store: AgentStore, credentials: Credentials,
                 now: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.db = DbCalls(getattr(store, "threads", SQLITE_THREADS))
        self.credentials = credentials
        self.now = now or (lambda: datetime.now(timezone.utc))

    async def admit(self, request: Request, project_id: str, *, with_json: bool) -> dict[str, Any]:
        """Size, authentication and content type; the JSON body when ``with_json``."""
        body = await read_body(request)
        scope = request.scope
        headers = _headers(scope)
        authenticate(
            self.credentials, method=scope["method"], path=_raw_path(scope),
            query=parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True),
            headers=headers, body=body, project_id=project_id, now=self.now(),
        )
        if not with_json:
            return {}
        content_type = headers.get("content-type")
        if content_type is None or content_type.split(";", 1)[0].strip().lower() != JSON:
            raise faults.unsupported_media_type(content_type)
        return validation.parse_json(body)

    async def register(self, request: Request) -> Response:
        project_id = request.path_params["project_id"]
        body = await self.admit(request, project_id, with_json=True)
        agent = await self.db(self.store.register, project_id, validation.parse_register(body))
        return json_response({"agent": agent_wire(agent)})

    async def list_agents(self, request: Request) -> Response:
        project_id = request.path_params["project_id"]
        await self.admit(request, project_id, with_json=False)
        query = validation.parse_list_query(request.query_params.multi_items())
        page = await self.db(self.store.list_agents, project_id, query)
        return json_response({"agents": [agent_wire(a) for a in page.agents], "count": page.count,
                              "limit": page.limit, "offset": page.offset})

    async def show(self, request: Request) -> Response:
        project_id, agent_id = request.path_params["project_id"], request.path_params["agent_id"]
        await self.admit(request, project_id, with_json=False)
        agent = await self.db(self.store.show, project_id, validation.check_agent_id(agent_id))
        return json_response({"agent": agent_wire(agent)})

    async def update(self, request: Request) -> Response:
        project_id, agent_id = request.path_params["project_id"], request.path_params["agent_id"]
        body = await self.admit(request, project_id, with_json=True)
        checked_id = validation.check_agent_id(agent_id)
        agent = await self.db(self.store.update_status, project_id, checked_id, validation.parse_update(body))
        return json_response({"agent": agent_wire(agent)})

    async def remove_agent(self, request: Request) -> Response:
        project_id, agent_id = request.path_params["project_id"], request.path_params["agent_id"]
        await self.admit(request, project_id, with_json=False)
        await self.db(self.store.remove_agent, project_id, validation.check_agent_id(agent_id))
        return Response(b"", status_code=200)

    async def add_path(self, request: Request) -> Response:
        project_id, agent_id = request.path_params["project_id"], request.path_params["agent_id"]
        body = await self.admit(request, project_id, with_json=True)
        checked_id = validation.check_agent_id(agent_id)
        result = await self.db(self.store.add_paths, project_id, checked_id, validation.parse_add_path(body))
        return json_response({"added": list(result.added), "existed": list(result.existed)})

    async def remove_path(self, request: Request) -> Response:
        project_id, agent_id = request.path_params["project_id"], request.path_params["agent_id"]
        body = await self.admit(request, project_id, with_json=True)
        checked_id = validation.check_agent_id(agent_id)
        request_ = validation.parse_remove_path(body)
        result = await self.db(self.store.remove_paths, project_id, checked_id, request_)
        return json_response({"removed": list(result.removed), "not_existed": list(result.not_existed)})


def _install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        method, path = request.scope["method"], request.scope["path"]
        if exc.status_code == 405:
            return error_response(faults.method_not_allowed(method, path))
        if exc.status_code == 404:
            return error_response(faults.no_such_api(method, path))
        return error_response(ApiError(exc.status_code, faults.INVALID_PARAMETER, str(exc.detail)))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        return error_response(faults.bad_request(str(exc)))

    async def on_disconnect(request: Request, exc: Exception) -> Response:
        # the client went away (or was closed for sending too slowly) before its body was read:
        # nobody to answer, nothing was changed, and it is not the server's fault
        errlog.info("%s %s: the client disconnected before sending its whole body",
                    request.scope["method"], _raw_path(request.scope))
        return error_response(faults.bad_request("the request body was not received"))

    async def on_internal_error(request: Request, exc: Exception) -> Response:
        # a database that cannot be used, or a bug: details go to the log, not to the caller
        errlog.error("%s %s failed: %s", request.scope["method"], request.scope["path"], exc,
                     exc_info=not isinstance(exc, CbrAgentError))
        return error_response(faults.internal())

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(CbrAgentError, on_internal_error)
    app.add_exception_handler(Exception, on_internal_error)


def create_app(store: AgentStore, credentials: Credentials,
               now: Callable[[], datetime] | None = None, *,
               extend: Callable[[FastAPI], ASGIApp] | None = None) -> ASGIApp:
    """The ASGI application (access log around FastAPI). ``extend`` wraps the API app in more (the
    console and the request metrics, :mod:`cbr_agent.controlplane.site`) inside the access log."""
    api = Api(store, credentials, now)
    app = FastAPI(title="cbr-agent control plane", openapi_url=None, docs_url=None, redoc_url=None,
                  redirect_slashes=False)
    # plain Starlette routes: the handlers read path parameters themselves, so FastAPI's dependency
    # resolution (a measurable share of a heartbeat's CPU) is skipped
    base = "/v3/{project_id}/agents"
    app.add_route(base, api.register, methods=["POST"])
    app.add_route(base, api.list_agents, methods=["GET"])
    app.add_route(base + "/{agent_id}", api.show, methods=["GET"])
    app.add_route(base + "/{agent_id}", api.update, methods=["PUT"])
    app.add_route(base + "/{agent_id}", api.remove_agent, methods=["DELETE"])
    app.add_route(base + "/{agent_id}/add-path", api.add_path, methods=["POST"])
    app.add_route(base + "/{agent_id}/remove-path", api.remove_path, methods=["POST"])
    from cbr_agent.controlplane import cbr_routes  # vaults, policies, backups, tasks (issue 12)

    cbr_routes.install(app, api)
    _install_error_handlers(app)
    return AccessLog(extend(app) if extend else app)
