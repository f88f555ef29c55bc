"""The console's pages and actions (server-rendered HTML, Jinja2, autoescaped).

Every page needs a session; without one a GET is sent to the sign-in page and anything else is 403.
Every POST needs the session's CSRF token in its form (and, when the browser sends one, an ``Origin``
of this very server). Data comes only from :class:`~cbr_agent.controlplane.console.client.ApiClient`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp

from cbr_agent import __version__
from cbr_agent.api.models import AGENT_STATUSES
from cbr_agent.controlplane.console import cbr_pages
from cbr_agent.controlplane.console.client import ApiClient, ConsoleApiError
from cbr_agent.controlplane.console.sessions import (
    COOKIE,
    COOKIE_PATH,
    IDLE_SECONDS,
    LOGIN_COOKIE,
    Session,
    SessionStore,
    same_secret,
)
from cbr_agent.controlplane.credentials import Credentials

HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
#: the navigation bar: (key, label, URL); a page of a later API family (vaults, backups, tasks) adds
#: its entry here, its route in ``create_console`` and its calls in ``ApiClient``
NAV = (("overview", "Overview", "/console/overview"), ("agents", "Agents", "/console/"),
       ("vaults", "Vaults & policies", "/console/vaults"), ("backups", "Backups", "/console/backups"),
       ("tasks", "Tasks", "/console/tasks"))
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
MAX_FORM_BYTES = 64 * 1024
SIGN_IN_FAILURE_DELAY = 0.5
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}

log = logging.getLogger("cbr_agent.controlplane.console")

Handler = Callable[[Request], Awaitable[Response]]


class Forbidden(Exception):
    pass


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "never"
    seconds = ((now or datetime.now(timezone.utc)) - moment).total_seconds()
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def when(moment: datetime | None) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["ago"] = ago
    env.filters["when"] = when
    env.filters["q"] = lambda text: quote(str(text), safe="")
    env.filters["wtime"] = cbr_pages.wire_time
    env.filters["bytes"] = cbr_pages.human_bytes
    env.globals["version"] = __version__
    env.globals["nav_items"] = NAV
    return env


def local_next(value: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if value and value.startswith("/console/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/"


class Console:
    def __init__(self, api: ASGIApp, credentials: Credentials, *, secure_cookies: bool,
                 sessions: SessionStore | None = None) -> None:
        self.api = api
        self.credentials = credentials
        self.secure = secure_cookies
        self.sessions = sessions or SessionStore()
        self.env = _environment()
        self.cbr = cbr_pages.CbrPages(self)

    # -- plumbing ------------------------------------------------------------------------------------

    def render(self, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(**context)
        response = HTMLResponse(html, status_code=code)
        response.headers.update(SECURITY_HEADERS)
        response.headers["cache-control"] = "no-store"
        return response

    def client(self, session: Session) -> ApiClient:
        return ApiClient(self.api, session.project_id, session.token)

    async def form(self, request: Request) -> dict[str, str]:
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise Forbidden("a form post is expected")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise Forbidden("the form is too large")
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

    def check_origin(self, request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is None:  # not every browser sends it on a same-origin form post
            return
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != expected:
            raise Forbidden(f"cross-site request refused (Origin {origin})")

    def guarded(self, handler: Callable[[Request, Session], Awaitable[Response]], *,
                post: bool = False) -> Handler:
        """A page or action that needs a session (and, for a POST, the CSRF token)."""

        async def run(request: Request) -> Response:
            session = self.sessions.get(request.cookies.get(COOKIE))
            try:
                if session is None:
                    if post:
                        raise Forbidden("not signed in (or the session expired); sign in again")
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse("/console/login?" + urlencode({"next": target}), 303)
                if post:
                    self.check_origin(request)
                    form = await self.form(request)
                    if not same_secret(form.get("csrf"), session.csrf):
                        raise Forbidden("the form's CSRF token is missing or wrong; reload the page")
                    request.state.form = form
                return await handler(request, session)
            except Forbidden as exc:
                return self.render("error.html", 403, title="Refused", message=str(exc), session=session)
            except ConsoleApiError as exc:
                if exc.status in (401, 403) and session is not None:
                    self.sessions.drop(session.id)
                    return RedirectResponse("/console/login", 303)
                return self.render("error.html", exc.status if exc.status >= 400 else 500,
                                   title=f"Error {exc.status}", message=exc.message, session=session)
            except Exception as exc:  # a bug: a page that says so, the details in the server log
                log.error("console %s %s failed: %s", request.method, request.url.path, exc, exc_info=True)
                return self.render("error.html", 500, title="Internal error",
                                   message="The console failed; the server log has the details.",
                                   session=session)

        return run

    # -- sign-in -------------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if self.sessions.get(request.cookies.get(COOKIE)) is not None:
            return RedirectResponse(local_next(request.query_params.get("next")), 303)
        return self._login_form(request.query_params.get("next"))

    def _login_form(self, next_page: str | None, error: str | None = None, status: int = 200) -> Response:
        import secrets

        nonce = secrets.token_urlsafe(32)
        response = self.render("login.html", status, csrf=nonce, next=local_next(next_page), error=error,
                               session=None)
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path=COOKIE_PATH, httponly=True,
                            samesite="strict", secure=self.secure)
        return response

    async def login(self, request: Request) -> Response:
        try:
            self.check_origin(request)
            form = await self.form(request)
        except Forbidden as exc:
            return self.render("error.html", 403, title="Refused", message=str(exc), session=None)
        next_page = form.get("next")
        if not same_secret(form.get("csrf"), request.cookies.get(LOGIN_COOKIE) or "\0"):
            return self._login_form(next_page, "The sign-in form expired; please try again.", 403)
        token = form.get("token", "").strip()
        project = self.credentials.token_project(token) if token else None
        if project is not None:
            try:  # the API must accept it too: the console has no access of its own
                await ApiClient(self.api, project, token).count()
            except ConsoleApiError:
                project = None
        if project is None:
            await asyncio.sleep(SIGN_IN_FAILURE_DELAY)  # slows guessing; tokens are long anyway
            return self._login_form(next_page, "That token is not valid for this server.", 401)
        session = self.sessions.create(token, project)
        response = RedirectResponse(local_next(next_page), 303)
        response.set_cookie(COOKIE, session.id, max_age=IDLE_SECONDS, path=COOKIE_PATH, httponly=True,
                            samesite="strict", secure=self.secure)
        response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                               secure=self.secure)
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        self.sessions.drop(session.id)
        response = RedirectResponse("/console/login", 303)
        response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=self.secure)
        return response

    # -- pages ---------------------------------------------------------------------------------------

    async def agents(self, request: Request, session: Session) -> Response:
        params = request.query_params
        status = params.get("status") or None
        if status not in (None, *AGENT_STATUSES):
            status = None
        search = (params.get("q") or "").strip()[:255] or None
        size = _int(params.get("size"), DEFAULT_PAGE_SIZE)
        size = size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE
        page_no = max(1, _int(params.get("page"), 1))
        page = await self.client(session).list_agents(status=status, search=search, limit=size,
                                                      offset=(page_no - 1) * size)
        pages = max(1, math.ceil(page.count / size))
        # the page's agents' newest backups in one API call (never one per row)
        last = await self.client(session).last_backups([a.agent_id for a in page.agents])
        filters = {"status": status or "", "q": search or "", "size": str(size)}

        def link(**changes: Any) -> str:
            """This list's URL with ``changes`` (defaults left out, so links stay short)."""
            merged = {**filters, **{k: str(v) for k, v in changes.items()}}
            defaults = {"size": str(DEFAULT_PAGE_SIZE), "page": "1"}
            query = {k: v for k, v in merged.items() if v and defaults.get(k) != v}
            return "/console/" + (f"?{urlencode(query)}" if query else "")

        return self.render("agents.html", session=session, page=page, page_no=page_no, pages=pages,
                           size=size, sizes=PAGE_SIZES, status=status, search=search or "", link=link,
                           last=last,
                           statuses=AGENT_STATUSES, now=datetime.now(timezone.utc), nav="agents")

    async def overview(self, request: Request, session: Session) -> Response:
        client = self.client(session)
        counts = await client.status_counts()
        now = datetime.now(timezone.utc)
        protection = await cbr_pages.protection(client, counts.total - counts.uninstall, now)
        return self.render("overview.html", session=session, counts=counts, protection=protection,
                           chart=Markup(cbr_pages.chart_svg(protection.days)), nav="overview")

    async def agent(self, request: Request, session: Session) -> Response:
        client = self.client(session)
        agent = await client.show_agent(request.path_params["agent_id"])
        cbr = await self.cbr.agent_cbr(client, agent.agent_id)
        return self.render("agent.html", session=session, agent=agent, now=datetime.now(timezone.utc),
                           done=request.query_params.get("done"), why=request.query_params.get("why", ""),
                           nav="agents", **cbr)

    async def mark_uninstalled(self, request: Request, session: Session) -> Response:
        agent_id = request.path_params["agent_id"]
        await self.client(session).mark_uninstalled(agent_id)
        return RedirectResponse(f"/console/agents/{quote(agent_id, safe='')}?done=uninstalled", 303)

    # -- static files (no data in them: served without a session, so the sign-in page has its style)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
            return Response("not found", status_code=404, media_type="text/plain")
        response = FileResponse(path, media_type=STATIC_TYPES[path.suffix])
        response.headers.update(SECURITY_HEADERS)
        response.headers["cache-control"] = "public, max-age=3600"
        return response


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
