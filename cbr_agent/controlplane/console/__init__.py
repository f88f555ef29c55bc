"""The web console under ``/console/``: a client of the agents API (see :mod:`.client`)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from cbr_agent.controlplane.console.sessions import SessionStore
from cbr_agent.controlplane.console.views import Console
from cbr_agent.controlplane.credentials import Credentials


async def _to_console(request: object) -> Response:
    return RedirectResponse("/console/", 308)


def create_console(api: ASGIApp, credentials: Credentials, *, secure_cookies: bool = False,
                   sessions: SessionStore | None = None) -> Starlette:
    """The console app; ``api`` is the agents API app it calls for every piece of data."""
    console = Console(api, credentials, secure_cookies=secure_cookies, sessions=sessions)
    guarded = console.guarded
    routes = [
        Route("/console", _to_console, methods=["GET"]),
        Route("/console/login", console.login_page, methods=["GET"]),
        Route("/console/login", console.login, methods=["POST"]),
        Route("/console/logout", guarded(console.logout, post=True), methods=["POST"]),
        Route("/console/static/{name}", console.static, methods=["GET"]),
        Route("/console/", guarded(console.agents), methods=["GET"]),
        Route("/console/overview", guarded(console.overview), methods=["GET"]),
        Route("/console/agents/{agent_id}", guarded(console.agent), methods=["GET"]),
        Route("/console/agents/{agent_id}/uninstall", guarded(console.mark_uninstalled, post=True),
              methods=["POST"]),
        Route("/console/agents/{agent_id}/backup", guarded(console.cbr.back_up_now, post=True),
              methods=["POST"]),
        Route("/console/backups/{backup_id}/restore", guarded(console.cbr.restore, post=True),
              methods=["POST"]),
        Route("/console/vaults", guarded(console.cbr.vaults), methods=["GET"]),
        Route("/console/backups", guarded(console.cbr.backups), methods=["GET"]),
        Route("/console/tasks", guarded(console.cbr.tasks), methods=["GET"]),
        Route("/console/tasks/rows", guarded(console.cbr.task_rows), methods=["GET"]),
    ]
    return Starlette(routes=routes)
