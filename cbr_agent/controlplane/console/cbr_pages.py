"""The console's CBR pages: vaults and policies, backups, tasks (with live progress), and the
"back up now" / "restore this backup to ..." actions of an agent's page.

Like every console page they read and act only through :class:`~.client.ApiClient`, the SDK's API.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cbr_agent.api.models import parse_time
from cbr_agent.controlplane.console.client import ApiClient, ConsoleApiError

BACKUP_STATUSES = ("available", "restoring", "deleting")
TASK_STATUSES = ("waiting", "running", "success", "failed", "timeout", "skipped")
TASK_TYPES = ("backup", "restore", "delete", "vault_delete", "remove_resource")
LIST_SIZE = 50
#: rows of backups and tasks on an agent's page
AGENT_ROWS = 10
CHART_DAYS = 14


def wire_time(value: Any) -> datetime | None:
    try:
        return parse_time(value)
    except ValueError:
        return None


def human_bytes(value: Any) -> str:
    try:
        n = float(value)
    except (TypeError, ValueError):
        return ""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # not reached


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _page_no(request: Request) -> int:
    try:
        return max(1, int(request.query_params.get("page") or 1))
    except ValueError:
        return 1


def _choice(value: str | None, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else ""


def _ident(value: str | None) -> str:
    """An id filter as typed (trimmed, at most 64 characters: ids are no longer); the API matches it."""
    return (value or "").strip()[:64]


def linker(base: str, filters: dict[str, str]) -> Callable[..., str]:
    def link(**changes: Any) -> str:
        merged = {**filters, **{k: str(v) for k, v in changes.items()}}
        query = {k: v for k, v in merged.items() if v and not (k == "page" and v == "1")}
        return base + (f"?{urlencode(query)}" if query else "")

    return link


# -- the overview's CBR part -------------------------------------------------------------------------


@dataclass(frozen=True)
class Day:
    label: str
    backups: int
    failures: int


@dataclass(frozen=True)
class Protection:
    hosts_without_backup: int  # registered, not uninstalled, no backup in 24 h
    bytes_protected: int  # size of each host's newest backup, summed
    days: list[Day]


async def protection(client: ApiClient, installed: int, now: datetime) -> Protection:
    since = _iso(now - timedelta(hours=24))
    recent = await client.list_backups(start_time=since, latest_per_resource="true", limit=1)
    newest = await client.list_backups(latest_per_resource="true", limit=1)
    days = []
    today = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    for back in range(CHART_DAYS - 1, -1, -1):
        start = today - timedelta(days=back)
        end = start + timedelta(days=1) - timedelta(seconds=1)
        window = {"start_time": _iso(start), "end_time": _iso(end)}
        made = await client.list_backups(limit=1, **window)
        failed = 0
        for status in ("failed", "timeout"):
            failed += (await client.list_tasks(operation_type="backup", status=status, limit=1,
                                               **window)).count
        days.append(Day(start.strftime("%m-%d"), made.count, failed))
    protected = newest.size_bytes_total
    return Protection(hosts_without_backup=max(0, installed - recent.count), bytes_protected=protected,
                      days=days)


def chart_svg(days: list[Day]) -> str:
    """Backups (bars) and failures (red bars) per day, as an SVG drawn here (no script, no CDN)."""
    width, height, pad = 560, 160, 24
    top = max([1, *(d.backups for d in days), *(d.failures for d in days)])
    step = (width - pad) / max(1, len(days))
    bar = max(2.0, step / 2 - 2)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height + 20}" '
             f'class="chart" role="img" aria-label="backups and failures per day">']
    parts.append(f'<line x1="{pad}" y1="{height}" x2="{width}" y2="{height}" class="axis"/>')
    parts.append(f'<text x="0" y="12" class="tick">{top}</text>')
    for i, day in enumerate(days):
        x = pad + i * step + 2
        for offset, value, kind in ((0, day.backups, "ok"), (bar + 1, day.failures, "bad")):
            h = (height - 16) * value / top
            parts.append(f'<rect x="{x + offset:.1f}" y="{height - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" class="{kind}"><title>{day.label}: {value} '
                         f'{"backups" if kind == "ok" else "failed"}</title></rect>')
        parts.append(f'<text x="{x:.1f}" y="{height + 14}" class="tick">{day.label}</text>')
    parts.append("</svg>")
    return "".join(parts)


# -- pages -------------------------------------------------------------------------------------------


class CbrPages:
    """Bound to the :class:`~.views.Console` for rendering and the per-session API client."""

    def __init__(self, console: Any) -> None:
        self.console = console

    def _render(self, name: str, session: Any, **context: Any) -> Response:
        return self.console.render(name, session=session, now=datetime.now(timezone.utc), **context)

    async def vaults(self, request: Request, session: Any) -> Response:
        client = self.console.client(session)
        vaults = await client.list_vaults()
        policies = await client.list_policies()
        names = {p["id"]: p["name"] for p in policies}
        return self._render("vaults.html", session, vaults=vaults, policies=policies, policy_names=names,
                            nav="vaults")

    async def backups(self, request: Request, session: Any) -> Response:
        params = request.query_params
        filters = {"agent": _ident(params.get("agent")), "vault": _ident(params.get("vault")),
                   "status": _choice(params.get("status"), BACKUP_STATUSES)}
        page_no = _page_no(request)
        client = self.console.client(session)
        page = await client.list_backups(resource_id=filters["agent"], vault_id=filters["vault"],
                                         status=filters["status"], limit=LIST_SIZE,
                                         offset=(page_no - 1) * LIST_SIZE)
        vaults = await client.list_vaults()
        return self._render("backups.html", session, page=page, page_no=page_no,
                            pages=max(1, math.ceil(page.count / LIST_SIZE)), filters=filters,
                            link=linker("/console/backups", filters), statuses=BACKUP_STATUSES,
                            vaults=vaults, vault_names={v["id"]: v["name"] for v in vaults}, nav="backups")

    def _task_filters(self, request: Request) -> dict[str, str]:
        params = request.query_params
        return {"agent": _ident(params.get("agent")), "status": _choice(params.get("status"), TASK_STATUSES),
                "type": _choice(params.get("type"), TASK_TYPES)}

    async def _task_page(self, request: Request, session: Any) -> dict[str, Any]:
        filters = self._task_filters(request)
        page_no = _page_no(request)
        size = AGENT_ROWS if request.query_params.get("size") == str(AGENT_ROWS) else LIST_SIZE
        page = await self.console.client(session).list_tasks(
            resource_id=filters["agent"], status=filters["status"], operation_type=filters["type"],
            limit=size, offset=(page_no - 1) * size)
        live = any(t["status"] in ("waiting", "running") for t in page.items)
        query = urlencode({**{k: v for k, v in filters.items() if v}, "page": page_no, "size": size})
        return {"page": page, "page_no": page_no, "pages": max(1, math.ceil(page.count / size)),
                "filters": filters, "link": linker("/console/tasks", filters), "live": live,
                "rows_url": f"/console/tasks/rows?{query}"}

    async def tasks(self, request: Request, session: Any) -> Response:
        return self._render("tasks.html", session, statuses=TASK_STATUSES, types=TASK_TYPES, nav="tasks",
                            **await self._task_page(request, session))

    async def task_rows(self, request: Request, session: Any) -> Response:
        """The tasks table's body alone: what the page's script fetches every few seconds."""
        return self._render("task_rows.html", session, **await self._task_page(request, session))

    async def agent_cbr(self, client: ApiClient, agent_id: str) -> dict[str, Any]:
        """What an agent's page shows of CBR: its vault, newest backups and tasks."""
        vault = await client.vault_of(agent_id)
        backups = await client.list_backups(resource_id=agent_id, limit=AGENT_ROWS)
        tasks = await client.list_tasks(resource_id=agent_id, limit=AGENT_ROWS)
        live = any(t["status"] in ("waiting", "running") for t in tasks.items)
        return {"vault": vault, "backups": backups, "tasks": tasks, "live": live,
                "rows_url": f"/console/tasks/rows?{urlencode({'agent': agent_id, 'size': AGENT_ROWS})}"}

    # -- actions --------------------------------------------------------------------------------------

    async def back_up_now(self, request: Request, session: Any) -> Response:
        agent_id = request.path_params["agent_id"]
        client = self.console.client(session)
        back = f"/console/agents/{quote(agent_id, safe='')}"
        vault = await client.vault_of(agent_id)
        if vault is None:
            return RedirectResponse(f"{back}?done=novault", 303)
        try:
            checkpoint = await client.create_checkpoint(vault["id"], [agent_id])
        except ConsoleApiError as exc:
            if exc.status != 400:
                raise
            return RedirectResponse(f"{back}?{urlencode({'done': 'refused', 'why': exc.message[:300]})}", 303)
        skipped = (checkpoint.get("vault") or {}).get("skipped_resources") or []
        if skipped:  # the API skips an agent whose backup already waits or runs
            why = str(skipped[0].get("reason") or "skipped")
            return RedirectResponse(f"{back}?{urlencode({'done': 'refused', 'why': why[:300]})}", 303)
        return RedirectResponse(f"{back}?done=backup", 303)

    async def restore(self, request: Request, session: Any) -> Response:
        backup_id = request.path_params["backup_id"]
        form = request.state.form
        back = form.get("back", "")
        back = back if back.startswith("/console/agents/") and "\\" not in back else "/console/backups"
        destination = (form.get("destination") or "").strip()
        try:
            await self.console.client(session).restore_backup(backup_id, destination)
        except ConsoleApiError as exc:
            if exc.status != 400:
                raise
            return RedirectResponse(f"{back}?{urlencode({'done': 'refused', 'why': exc.message[:300]})}", 303)
        return RedirectResponse(f"{back}?done=restore", 303)
