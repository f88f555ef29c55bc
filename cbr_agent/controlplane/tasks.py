"""Tasks (operation logs) with owners: created by CBR calls, claimed and run by agents.

Every function here works on an open transaction and keeps nothing in memory, so several server
processes sharing one database agree (issue 13):

- a task is **claimed** by one ``UPDATE ... WHERE status = 'waiting' OR (status = 'running' AND
  lease_expires < now)``: the database serializes writers, so at most one claim wins; the winner
  holds a lease (owner + expiry) and the attempt counter goes up;
- the agent **renews** the lease with each progress report, which only succeeds for the current
  owner; a lapsed lease lets the task be claimed again (re-offered), and a task whose lease lapsed
  on its last allowed attempt ends ``timeout``;
- a **result** ends the task only for the current owner, and applies its effect (a backup row, a
  deleted backup) in the same transaction;
- :func:`notify` appends an ``events`` row for an agent, which every process tails to wake that
  agent's long poll (the poll also re-reads the database on its own, so a lost wakeup costs
  latency, never a task).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

from cbr_agent.controlplane import cbr_common as c

#: attempts before a task whose agent keeps dying ends ``timeout``
MAX_ATTEMPTS = 3
DEFAULT_LEASE_SECONDS = 60.0
MIN_LEASE_SECONDS = 1.0
MAX_LEASE_SECONDS = 3600.0
#: at most this many tasks are handed to an agent per poll
BATCH = 10
OPERATION_TYPES = ("backup", "restore", "delete", "vault_delete", "remove_resource")
STATUSES = ("waiting", "running", "success", "failed", "timeout", "skipped")
ENDED = ("success", "failed", "timeout", "skipped")

TASK_COLUMNS = (
    "seq, id, agent_id, operation_type, status, vault_id, vault_name, checkpoint_id, policy_id, "
    "backup_id, params, progress, error_code, error_message, result, lease_owner, lease_expires, "
    "attempts, max_attempts, created_at, updated_at, started_at, ended_at"
)
_NAMES = [n.strip() for n in TASK_COLUMNS.split(",")]


def as_dict(row: Any) -> dict[str, Any]:
    task = dict(zip(_NAMES, row, strict=True))
    task["params"] = json.loads(task["params"])
    task["result"] = json.loads(task["result"])
    return task


#: events older than this are deleted (a waiting poll has long re-read the database by then)
EVENTS_KEPT_MS = 10 * 60 * 1000


def notify(conn: sqlite3.Connection, project_id: str, agent_id: str, now: int) -> None:
    if getattr(conn, "dialect", "sqlite") == "postgresql":
        # delivered at commit, in commit order (pgstore.py): no events row, whose sequence could
        # commit out of order and be skipped by a process tailing it
        conn.execute("SELECT pg_notify('cbr_agent_events', ?)", (f"{project_id}\n{agent_id}",))
        return
    cursor = conn.execute(
        "INSERT INTO events (project_id, agent_id, at) VALUES (?, ?, ?)", (project_id, agent_id, now)
    )
    if (cursor.lastrowid or 0) % 500 == 0:  # now and then, in the writer's transaction: no extra writer
        conn.execute("DELETE FROM events WHERE at < ?", (now - EVENTS_KEPT_MS,))


def create(
    conn: sqlite3.Connection,
    project_id: str,
    agent_id: str,
    operation: str,
    now: int,
    *,
    status: str = "waiting",
    vault_id: str | None = None,
    vault_name: str | None = None,
    checkpoint_id: str | None = None,
    policy_id: str | None = None,
    backup_id: str | None = None,
    params: dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
) -> str:
    task_id = str(uuid.uuid4())
    ended = now if status in ENDED else None
    conn.execute(
        "INSERT INTO tasks (project_id, id, agent_id, operation_type, status, vault_id, vault_name, "
        "checkpoint_id, policy_id, backup_id, params, result, progress, max_attempts, created_at, "
        "updated_at, started_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            project_id,
            task_id,
            agent_id,
            operation,
            status,
            vault_id,
            vault_name,
            checkpoint_id,
            policy_id,
            backup_id,
            c.dumps(params or {}),
            c.dumps(result or {}),
            100 if ended else 0,
            MAX_ATTEMPTS,
            now,
            now,
            ended,
            ended,
        ),
    )
    if status == "waiting":
        notify(conn, project_id, agent_id, now)
    return task_id


def load(
    conn: sqlite3.Connection, project_id: str, task_id: str, agent_id: str | None = None
) -> dict[str, Any]:
    row = conn.execute(
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE project_id = ? AND id = ?", (project_id, task_id)
    ).fetchone()
    if row is None or (agent_id is not None and row[2] != agent_id):
        raise c.not_found(c.TASK_NOT_FOUND if agent_id else c.OPLOG_NOT_FOUND, "task", task_id)
    return as_dict(row)


def pending(conn: sqlite3.Connection, project_id: str, agent_id: str, now: int) -> list[dict[str, Any]]:
    """The agent's tasks that a claim would win now: waiting, or running on a lapsed lease."""
    rows = conn.execute(
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE project_id = ? AND agent_id = ? AND attempts < max_attempts "
        "AND (status = 'waiting' OR (status = 'running' AND lease_expires < ?)) ORDER BY seq LIMIT ?",
        (project_id, agent_id, now, BATCH),
    ).fetchall()
    return [as_dict(r) for r in rows]


def has_expired(conn: sqlite3.Connection, now: int) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM tasks WHERE status = 'running' AND lease_expires < ? "
            "AND attempts >= max_attempts LIMIT 1",
            (now,),
        ).fetchone()
        is not None
    )


def sweep(conn: sqlite3.Connection, now: int) -> int:
    """End ``timeout`` the tasks whose last allowed attempt's lease lapsed; undo their marks."""
    rows = conn.execute(
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'running' AND lease_expires < ? "
        "AND attempts >= max_attempts",
        (now,),
    ).fetchall()
    for row in rows:
        task = as_dict(row)
        conn.execute(
            "UPDATE tasks SET status = 'timeout', error_code = ?, error_message = ?, ended_at = ?, "
            "updated_at = ? WHERE seq = ? AND status = 'running'",
            (
                "BackupService.0002",
                f"the agent stopped renewing its lease {task['attempts']} times; giving up",
                now,
                now,
                task["seq"],
            ),
        )
        _undo_marks(conn, task, now)
    return len(rows)


def lease_ms(seconds: Any) -> int:
    if seconds is None:
        seconds = DEFAULT_LEASE_SECONDS
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not MIN_LEASE_SECONDS <= seconds <= MAX_LEASE_SECONDS
    ):
        raise c.invalid(
            "BackupService.9900",
            f"lease_seconds must be a number from {MIN_LEASE_SECONDS:g} "
            f"to {MAX_LEASE_SECONDS:g}, got {seconds!r}",
        )
    return int(seconds * 1000)


def claim(
    conn: sqlite3.Connection, project_id: str, agent_id: str, task_id: str, owner: str, lease: int, now: int
) -> dict[str, Any]:
    cursor = conn.execute(
        "UPDATE tasks SET status = 'running', lease_owner = ?, lease_expires = ?, attempts = attempts + 1, "
        "started_at = COALESCE(started_at, ?), updated_at = ?, progress = 0 "
        "WHERE project_id = ? AND agent_id = ? AND id = ? AND attempts < max_attempts "
        "AND (status = 'waiting' OR (status = 'running' AND lease_expires < ?))",
        (owner, now + lease, now, now, project_id, agent_id, task_id, now),
    )
    task = load(conn, project_id, task_id, agent_id)
    if cursor.rowcount == 0:
        raise lease_lost(task)
    return task


def lease_lost(task: dict[str, Any]) -> Exception:
    from cbr_agent.errors import ApiError

    why = "it has ended" if task["status"] in ENDED else "another claim holds its lease"
    return ApiError(
        409, c.LEASE_LOST, f"task {task['id']} is not yours to run: {why} (status {task['status']})"
    )


def renew(
    conn: sqlite3.Connection,
    project_id: str,
    agent_id: str,
    task_id: str,
    owner: str,
    progress: int,
    lease: int,
    now: int,
) -> dict[str, Any]:
    cursor = conn.execute(
        "UPDATE tasks SET lease_expires = ?, progress = MAX(progress, ?), updated_at = ? "
        "WHERE project_id = ? AND agent_id = ? AND id = ? AND status = 'running' AND lease_owner = ?",
        (now + lease, progress, now, project_id, agent_id, task_id, owner),
    )
    task = load(conn, project_id, task_id, agent_id)
    if cursor.rowcount == 0:
        raise lease_lost(task)
    return task


def finish(
    conn: sqlite3.Connection,
    project_id: str,
    agent_id: str,
    task_id: str,
    owner: str,
    status: str,
    error: dict[str, str],
    result: dict[str, Any],
    now: int,
) -> tuple[dict[str, Any], bool]:
    """End the task; ``(task, changed)``: a repeat of the same result (a lost answer) changes nothing."""
    task = load(conn, project_id, task_id, agent_id)
    if task["status"] == status and task["lease_owner"] == owner:
        return task, False
    cursor = conn.execute(
        "UPDATE tasks SET status = ?, error_code = ?, error_message = ?, result = ?, progress = ?, "
        "ended_at = ?, updated_at = ? WHERE project_id = ? AND agent_id = ? AND id = ? "
        "AND status = 'running' AND lease_owner = ?",
        (
            status,
            error.get("code", ""),
            error.get("message", ""),
            c.dumps(result),
            100 if status == "success" else task["progress"],
            now,
            now,
            project_id,
            agent_id,
            task_id,
            owner,
        ),
    )
    if cursor.rowcount == 0:
        raise lease_lost(task)
    return load(conn, project_id, task_id, agent_id), True


def _undo_marks(conn: sqlite3.Connection, task: dict[str, Any], now: int) -> None:
    """A delete or restore that did not succeed leaves its backups ``available`` again."""
    ids = task["params"].get("backup_ids") or ([task["backup_id"]] if task["backup_id"] else [])
    if task["operation_type"] == "backup" or not ids:
        return
    marks = ",".join("?" * len(ids))
    conn.execute(
        f"UPDATE backups SET status = 'available', updated_at = ? WHERE id IN ({marks}) "
        "AND status IN ('deleting', 'restoring')",
        (now, *ids),
    )


def apply_end(conn: sqlite3.Connection, project_id: str, task: dict[str, Any], now: int) -> None:
    """The effect of an ended task on the backups it concerns."""
    if task["status"] != "success":
        _undo_marks(conn, task, now)
        return
    op = task["operation_type"]
    if op in ("delete", "vault_delete", "remove_resource"):
        ids = task["params"].get("backup_ids") or []
        if ids:
            marks = ",".join("?" * len(ids))
            conn.execute(f"DELETE FROM backups WHERE project_id = ? AND id IN ({marks})", (project_id, *ids))
    elif op == "restore":
        _undo_marks(conn, task, now)


def wire_for_agent(task: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": task["id"],
        "operation_type": task["operation_type"],
        "status": task["status"],
        "vault_id": task["vault_id"],
        "vault_name": task["vault_name"],
        "checkpoint_id": task["checkpoint_id"],
        "policy_id": task["policy_id"],
        "backup_id": task["backup_id"],
        "parameters": task["params"],
        "attempts": task["attempts"],
        "max_attempts": task["max_attempts"],
        "progress": task["progress"],
        "lease_expires_at": c.wire_time(task["lease_expires"]),
        "created_at": c.wire_time(task["created_at"]),
    }


def oplog_wire(conn: sqlite3.Connection, project_id: str, task: dict[str, Any]) -> dict[str, Any]:
    host = conn.execute(
        "SELECT host_name FROM agents WHERE project_id = ? AND agent_id = ?", (project_id, task["agent_id"])
    ).fetchone()
    extra: dict[str, Any] = {
        "common": {"progress": task["progress"], "request_id": "", "task_id": task["id"]},
        "resource": {
            "id": task["agent_id"],
            "type": c.AGENT_RESOURCE_TYPE,
            "name": host[0] if host else task["agent_id"],
        },
    }
    params, result, op = task["params"], task["result"], task["operation_type"]
    if op == "backup":
        extra["backup"] = {
            "backup_id": result.get("backup_id", ""),
            "backup_name": result.get("backup_name") or params.get("name") or "",
            "incremental": "true",
        }
    elif op in ("restore", "delete"):
        extra[op] = {"backup_id": task["backup_id"] or "", "backup_name": params.get("backup_name", "")}
        if op == "restore":
            extra[op].update(
                target_resource_id=task["agent_id"], target_resource_name=extra["resource"]["name"]
            )
    elif op == "vault_delete":
        total = len(params.get("backup_ids") or [])
        extra[op] = {
            "total_count": total,
            "fail_count": 0 if task["status"] == "success" else (total if task["status"] in ENDED else 0),
        }
    elif op == "remove_resource":
        extra["remove_resources"] = {
            "total_count": 1,
            "fail_count": int(task["status"] in ("failed", "timeout")),
            "resources": [extra["resource"]],
        }
    extra["lease"] = {  # extension: who holds the task and how many claims it had
        "attempts": task["attempts"],
        "max_attempts": task["max_attempts"],
        "owner": task["lease_owner"],
        "expires_at": c.wire_time(task["lease_expires"]),
    }
    if result:
        extra["result"] = result  # extension: what the agent reported (snapshot id, files, bytes ...)
    return {
        "id": task["id"],
        "status": task["status"],
        "operation_type": op,
        "project_id": project_id,
        "provider_id": "",
        "checkpoint_id": task["checkpoint_id"],
        "policy_id": task["policy_id"],
        "vault_id": task["vault_id"],
        "vault_name": task["vault_name"],
        "created_at": c.wire_time(task["created_at"]),
        "updated_at": c.wire_time(task["updated_at"]),
        "started_at": c.wire_time(task["started_at"] or task["created_at"]),
        "ended_at": c.wire_time(task["ended_at"]),
        "error_info": {"code": task["error_code"], "message": task["error_message"]},
        "extra_info": extra,
    }
