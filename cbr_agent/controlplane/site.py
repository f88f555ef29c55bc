"""What ``cbr-agent server`` serves: the agents API, the web console under ``/console/`` and, around
both, the request metrics (when ``--metrics-address`` is given).

The console is a client of the API app itself (:mod:`cbr_agent.controlplane.console.client`): it never
reads the store.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from cbr_agent.controlplane.app import create_app
from cbr_agent.controlplane.credentials import Credentials
from cbr_agent.controlplane.metrics import ServerMetrics
from cbr_agent.controlplane.store import AgentStore

CONSOLE_PREFIX = "/console"


class PrefixDispatch:
    """Requests under ``prefix`` go to ``inner``, the others to ``rest``."""

    def __init__(self, prefix: str, inner: ASGIApp, rest: ASGIApp) -> None:
        self.prefix = prefix
        self.inner = inner
        self.rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == self.prefix or path.startswith(self.prefix + "/")):
            await self.inner(scope, receive, send)
        else:
            await self.rest(scope, receive, send)


def build_app(store: AgentStore, credentials: Credentials, *, metrics: ServerMetrics | None = None,
              console: bool = True, secure_cookies: bool = False,
              now: Callable[[], datetime] | None = None) -> ASGIApp:
    def extend(api: FastAPI) -> ASGIApp:
        app: ASGIApp = api
        routes: list[BaseRoute] = list(api.router.routes)
        if console:
            from cbr_agent.controlplane.console import create_console

            console_app = create_console(api, credentials, secure_cookies=secure_cookies)
            routes = [*console_app.routes, *routes]
            app = PrefixDispatch(CONSOLE_PREFIX, console_app, api)
        if metrics is not None:
            app = metrics.middleware(app, lambda: routes)
        return app

    return create_app(store, credentials, now, extend=extend)
