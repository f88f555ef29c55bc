"""``backups`` and ``tasks``: the CBR backups and operation logs the control plane lists, for one host
(``--agent-id``) or the whole project (the fleet), as a table or ``--json``. Pages are walked, so a
fleet of any size is listed whole.

Exit codes: 0 listed (even when empty), 4 control plane unavailable, 5 credentials refused,
2 bad option.
"""

from __future__ import annotations

import argparse
from typing import Any

PAGE_SIZE = 1000
TASK_STATUSES = ("waiting", "running", "success", "failed", "timeout", "skipped")
BACKUP_STATUSES = ("available", "protecting", "deleting", "restoring", "error")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    backups = subparsers.add_parser(
        "backups",
        parents=[common],
        help="list the CBR backups on the control plane",
        description="List the CBR backups the control plane knows (every snapshot an agent made and "
        "reported), newest first: for one agent with --agent-id, else for the whole project.",
    )
    backups.add_argument("--agent-id", metavar="ID", help="only this agent's backups")
    backups.add_argument("--status", choices=BACKUP_STATUSES, help="only backups with this status")
    backups.add_argument("--json", action="store_true", help="print the backups as JSON")
    backups.set_defaults(func=cmd_backups)
    tasks = subparsers.add_parser(
        "tasks",
        parents=[common],
        help="list the CBR tasks (operation logs) on the control plane",
        description="List the tasks (operation logs) of the project, newest first: backups, restores "
        "and deletes with their status and progress.",
    )
    tasks.add_argument("--status", choices=TASK_STATUSES, help="only tasks with this status")
    tasks.add_argument("--agent-id", metavar="ID", help="only this agent's tasks")
    tasks.add_argument("--json", action="store_true", help="print the tasks as JSON")
    tasks.set_defaults(func=cmd_tasks)


def list_all(cp: Any, segments: list[str], key: str, query: list[tuple[str, str]]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = cp.cbr_call(
            "GET", segments, query=[*query, ("limit", str(PAGE_SIZE)), ("offset", str(offset))]
        )
        batch = page.get(key) or []
        items += batch
        offset += len(batch)
        if len(batch) < PAGE_SIZE:
            return items


def _fetch(args: argparse.Namespace, segments: list[str], key: str, query: list[tuple[str, str]]) -> Any:
    from cbr_agent.agent.connect import open_control_plane
    from cbr_agent.cli.context import settings_from_args

    cp = open_control_plane(settings_from_args(args))
    try:
        return list_all(cp, segments, key, query)
    finally:
        cp.close()


def _filters(args: argparse.Namespace) -> list[tuple[str, str]]:
    query = [("resource_id", args.agent_id)] if args.agent_id else []
    return query + ([("status", args.status)] if args.status else [])


def _size(n: int) -> str:
    from cbr_agent.cli.repo import human_bytes

    return human_bytes(n)


def cmd_backups(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json, print_table

    backups = _fetch(args, ["backups"], "backups", _filters(args))
    if args.json:
        print_json({"count": len(backups), "backups": backups})
        return 0
    rows = [
        (
            b["id"][:8],
            (b.get("created_at") or "")[:19].replace("T", " "),
            b.get("resource_name"),
            b.get("status"),
            "auto" if (b.get("extend_info") or {}).get("auto_trigger") else "manual",
            _size(int((b.get("extend_info") or {}).get("size_bytes") or 0)),
            ((b.get("extend_info") or {}).get("snapshot_id") or "")[:16],
            b.get("name"),
        )
        for b in backups
    ]
    print_table(("ID", "CREATED (UTC)", "HOST", "STATUS", "TRIGGER", "SIZE", "SNAPSHOT", "NAME"), rows)
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json, print_table

    logs = _fetch(args, ["operation-logs"], "operation_logs", _filters(args))
    if args.json:
        print_json({"count": len(logs), "tasks": logs})
        return 0
    rows = []
    for log in logs:
        extra = log.get("extra_info") or {}
        error = (log.get("error_info") or {}).get("message") or ""
        rows.append(
            (
                log["id"][:8],
                (log.get("created_at") or "")[:19].replace("T", " "),
                log.get("operation_type"),
                (extra.get("resource") or {}).get("name"),
                log.get("status"),
                f"{(extra.get('common') or {}).get('progress', 0)}%",
                error[:60],
            )
        )
    print_table(("ID", "CREATED (UTC)", "TYPE", "HOST", "STATUS", "PROGRESS", "ERROR"), rows)
    return 0
