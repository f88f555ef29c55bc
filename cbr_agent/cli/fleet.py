"""``agents``: the fleet as a control plane sees it.

Every agent registered in the project, with its status, last activity and backup paths, as a table or
``--json``. The list API is paged; this command walks every page, so a fleet of any size is listed whole.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cbr_agent.api.models import Agent, AgentPath, ControlPlane

#: agents per list call (the reference gives no maximum; its example pages hold 1000)
PAGE_SIZE = 200
STATUSES = ("normal", "abnormal", "uninstall")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    agents = subparsers.add_parser(
        "agents", parents=[common], help="list the agents registered on the control plane (the fleet)",
        description="List every agent registered in the project on the control plane: status, host, "
        "last activity and backup paths. An agent is 'abnormal' when it has not heartbeaten for a while.")
    agents.add_argument("--status", choices=STATUSES, help="only agents with this status")
    agents.add_argument("--agent-id", dest="agent_ids", action="append", default=[], metavar="UUID",
                        help="only this agent (repeatable)")
    agents.add_argument("--endpoint", metavar="URL", help="control plane URL (default: from the config)")
    agents.add_argument("--project-id", metavar="ID", help="project id (default: from the config)")
    agents.add_argument("--json", action="store_true", help="print the fleet as JSON")
    agents.set_defaults(func=cmd_agents)


def cmd_agents(args: argparse.Namespace) -> int:
    from cbr_agent.agent.connect import describe_endpoint, open_control_plane
    from cbr_agent.cli.context import settings_from_args
    from cbr_agent.cli.output import print_json

    settings = settings_from_args(args, endpoint=args.endpoint, project_id=args.project_id)
    cp = open_control_plane(settings)
    try:
        agents = list_fleet(cp, status=args.status, agent_ids=args.agent_ids)
    finally:
        cp.close()
    endpoint = describe_endpoint(settings)
    found = {a.agent_id for a in agents}
    missing = [i for i in dict.fromkeys(args.agent_ids) if i not in found]
    if args.json:
        print_json({"endpoint": endpoint, "project_id": settings.project_id, "count": len(agents),
                    "agents": [agent_json(a) for a in agents], "not_found": missing})
    elif agents or not args.agent_ids:
        print_fleet(agents, endpoint, now=datetime.now(timezone.utc))
    if missing:
        from cbr_agent.cli.exitcodes import NOT_FOUND

        which = f" with status {args.status}" if args.status else ""
        print(f"cbr-agent: error: no agent{which} with id {', '.join(missing)} on {endpoint}",
              file=sys.stderr)
        return NOT_FOUND
    return 0


def list_fleet(cp: ControlPlane, *, status: str | None = None,
               agent_ids: Sequence[str] = ()) -> list[Agent]:
    """Every agent the list API returns, page after page, each with its paths."""
    agents: list[Agent] = []
    seen: set[str] = set()
    offset = 0
    while True:
        page = cp.list_agents(agent_ids=agent_ids, status=status, limit=PAGE_SIZE, offset=offset)
        new = [a for a in page.agents if a.agent_id not in seen]
        agents += new
        seen.update(a.agent_id for a in new)
        offset += len(page.agents)
        # a short page is the last; a page with nothing new means the server ignores offset.
        # ``count`` is not used: the reference leaves open whether it is the total or the page size
        if len(page.agents) < PAGE_SIZE or not new:
            break
    return [_with_paths(cp, a) for a in agents]


def _with_paths(cp: ControlPlane, agent: Agent) -> Agent:
    """The list API may leave ``paths`` out (the reference's own example does); ask for them then."""
    if agent.paths is not None:
        return agent
    from cbr_agent.errors import NotFoundError

    try:
        return cp.show_agent(agent.agent_id)
    except NotFoundError:  # deleted between the two calls
        return agent


def _available(agent: Agent) -> list[AgentPath]:
    return [p for p in agent.paths or () if p.status != "remove"]


def agent_json(agent: Agent) -> dict[str, Any]:
    from cbr_agent.api.models import format_time

    return {
        "agent_id": agent.agent_id,
        "status": agent.status,
        "host_name": agent.host_name,
        "host_ip": agent.host_ip,
        "host_os": agent.host_os,
        "host_nickname": agent.host_nickname,
        "agent_version": agent.agent_version,
        "agent_type": agent.agent_type,
        "created_at": format_time(agent.created_at),
        "last_active_time": format_time(agent.last_active_time),
        "paths": [{"dir_path": p.dir_path, "excludes": list(p.excludes)} for p in _available(agent)],
    }


def age(then: datetime | None, now: datetime) -> str:
    """'never', '42s ago', '5m ago', '3h ago', '2d ago'."""
    if then is None:
        return "never"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _excludes_note(count: int) -> str:
    return f" ({count} exclude{'s' if count != 1 else ''})" if count else ""


def print_fleet(agents: Sequence[Agent], endpoint: str, *, now: datetime) -> None:
    from cbr_agent.cli.output import print_table

    if not agents:
        print(f"no agents registered on {endpoint}")
        return
    rows = []
    for a in agents:
        paths = sorted(_available(a), key=lambda p: p.dir_path)
        shown = ", ".join(p.dir_path + _excludes_note(len(p.excludes)) for p in paths)
        rows.append([a.agent_id, a.host_name, a.host_ip, a.status, age(a.last_active_time, now),
                     a.agent_version, shown or "-"])
    print_table(["AGENT ID", "HOST", "IP", "STATUS", "LAST ACTIVE", "VERSION", "PATHS"], rows)
    counts = {s: sum(1 for a in agents if a.status == s) for s in STATUSES}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    print(f"{len(agents)} agent{'s' if len(agents) != 1 else ''} on {endpoint}: {summary}")
