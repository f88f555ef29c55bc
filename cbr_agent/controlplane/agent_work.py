"""The agent-facing extension of the agents API (README, "Agent-facing extensions"): how an agent
learns of work, claims it, reports progress and results, and reports the backups it made itself.

    GET  /v3/{project_id}/agents/{agent_id}/tasks?wait=S&config_version=V   long poll
    POST /v3/{project_id}/agents/{agent_id}/tasks/{task_id}/claim            {owner, lease_seconds}
    POST /v3/{project_id}/agents/{agent_id}/tasks/{task_id}/progress         {owner, progress, lease_seconds}
    POST /v3/{project_id}/agents/{agent_id}/tasks/{task_id}/result   {owner, status, error, result, backup}
    POST /v3/{project_id}/agents/{agent_id}/backups                          {backup: {...}}
    POST /v3/{project_id}/agents/{agent_id}/backups/forgotten                {snapshot_ids: [...]}

The poll answers at once when the agent has claimable tasks or when its configuration (vault and
policy) differs from ``config_version``; otherwise it waits up to ``wait`` seconds for either.
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from typing import Any

from cbr_agent.controlplane import cbr_common as c
from cbr_agent.controlplane import cbr_vaults, cbr_work, tasks
from cbr_agent.controlplane.faults import agent_not_found, bad_request
from cbr_agent.controlplane.store import AgentStore

MAX_WAIT = 60.0


def parse_wait(pairs: dict[str, str]) -> float:
    raw = pairs.get("wait", "0")
    try:
        wait = float(raw)
    except ValueError:
        raise bad_request(f"wait must be a number of seconds, got {raw!r}") from None
    if not 0 <= wait <= MAX_WAIT:
        raise bad_request(f"wait must be from 0 to {MAX_WAIT:g} seconds, got {raw!r}")
    return wait


def _agent_exists(conn: sqlite3.Connection, project_id: str, agent_id: str) -> None:
    if (
        conn.execute(
            "SELECT 1 FROM agents WHERE project_id = ? AND agent_id = ?", (project_id, agent_id)
        ).fetchone()
        is None
    ):
        raise agent_not_found(agent_id)


def config_version(config: dict[str, Any]) -> str:
    return hashlib.sha256(c.dumps(config).encode()).hexdigest()[:16]


def poll_once(
    store: AgentStore, project_id: str, agent_id: str, known_version: str | None
) -> dict[str, Any] | None:
    """The answer to a poll if there is something to tell, else ``None`` (keep waiting)."""
    now = store._now_ms()
    with store._transaction("BEGIN") as conn:
        _agent_exists(conn, project_id, agent_id)
        found = tasks.pending(conn, project_id, agent_id, now)
        config = cbr_vaults.agent_config(conn, project_id, agent_id)
    version = config_version(config)
    if not found and version == known_version:
        return None
    return {"tasks": [tasks.wire_for_agent(t) for t in found], "config": config, "config_version": version}


def last_event(store: AgentStore) -> int:
    if getattr(store, "dialect", "sqlite") == "postgresql":
        return 0  # wakeups come by LISTEN/NOTIFY there (pgstore.py), not from the events table
    with store._transaction("BEGIN") as conn:
        return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])


def events_after(store: AgentStore, seq: int, now_ms: int) -> tuple[int, set[tuple[str, str]]]:
    """``(last seq, {(project_id, agent_id)})`` of events after ``seq``, plus agents whose task leases
    lapsed (they are claimable again without any event)."""
    tail = getattr(store, "dialect", "sqlite") != "postgresql"
    with store._transaction("BEGIN") as conn:
        rows = conn.execute(
            "SELECT seq, project_id, agent_id FROM events WHERE seq > ? ORDER BY seq LIMIT 10000", (seq,)
        ).fetchall() if tail else []
        lapsed = conn.execute(
            "SELECT DISTINCT project_id, agent_id FROM tasks WHERE status = 'running' "
            "AND lease_expires < ? AND attempts < max_attempts",
            (now_ms,),
        ).fetchall()
    last = rows[-1][0] if rows else seq
    return last, {(p, a) for _, p, a in rows} | {(p, a) for p, a in lapsed}


def _owner(body: dict[str, Any]) -> str:
    return c.text(body, "owner", "body", required=True, max_len=128) or ""


def claim(
    store: AgentStore, project_id: str, agent_id: str, task_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    owner, lease = _owner(body), tasks.lease_ms(body.get("lease_seconds"))
    now = store._now_ms()
    with store._transaction() as conn:
        return {
            "task": tasks.wire_for_agent(tasks.claim(conn, project_id, agent_id, task_id, owner, lease, now))
        }


def progress(
    store: AgentStore, project_id: str, agent_id: str, task_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    owner, lease = _owner(body), tasks.lease_ms(body.get("lease_seconds"))
    value = c.integer(body, "progress", "body", low=0, high=100, default=0) or 0
    now = store._now_ms()
    with store._transaction() as conn:
        return {
            "task": tasks.wire_for_agent(
                tasks.renew(conn, project_id, agent_id, task_id, owner, value, lease, now)
            )
        }


def result(
    store: AgentStore, project_id: str, agent_id: str, task_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    owner = _owner(body)
    status = body.get("status")
    if status not in ("success", "failed"):
        raise bad_request(f'status must be "success" or "failed", got {status!r}')
    error = c.obj(body, "error", "error", required=False)
    err = {
        "code": c.text(error, "code", "error", allow_empty=True) or "",
        "message": c.text(error, "message", "error", max_len=4096, allow_empty=True) or "",
    }
    outcome = c.obj(body, "result", "result", required=False)
    backup = c.obj(body, "backup", "backup", required=False)
    now = store._now_ms()
    with store._transaction() as conn:
        task = tasks.load(conn, project_id, task_id, agent_id)
        made = None
        if status == "success" and task["operation_type"] == "backup":
            if not backup:
                raise bad_request("a successful backup task's result needs backup.snapshot_id")
            params = task["params"]
            made = _insert_backup(
                conn,
                project_id,
                agent_id,
                backup,
                now,
                checkpoint_id=task["checkpoint_id"],
                vault_id=task["vault_id"] or "",
                name=params.get("name"),
                description=params.get("description") or "",
                auto=bool(params.get("auto_trigger")),
                policy_id=task["policy_id"],
            )
            outcome = {**outcome, "backup_id": made["id"], "backup_name": made["name"]}
        task, changed = tasks.finish(conn, project_id, agent_id, task_id, owner, status, err, outcome, now)
        if changed:
            tasks.apply_end(conn, project_id, task, now)
        answer: dict[str, Any] = {"task": tasks.wire_for_agent(task)}
        if made is not None:
            answer["backup"] = cbr_work.backup_wire(project_id, made)
        return answer


def _size(data: dict[str, Any], key: str) -> int:
    return c.integer(data, key, "backup", low=0, high=2**62, default=0) or 0


def _insert_backup(
    conn: sqlite3.Connection,
    project_id: str,
    agent_id: str,
    data: dict[str, Any],
    now: int,
    *,
    checkpoint_id: str | None,
    vault_id: str,
    name: str | None,
    description: str,
    auto: bool,
    policy_id: str | None,
) -> dict[str, Any]:
    snapshot_id = c.text(data, "snapshot_id", "backup", required=True, max_len=128) or ""
    created = data.get("created_at")
    created_ms = c.query_time(created, "backup.created_at") if isinstance(created, str) else now
    existing = conn.execute(
        "SELECT id FROM backups WHERE project_id = ? AND resource_id = ? AND snapshot_id = ?",
        (project_id, agent_id, snapshot_id),
    ).fetchone()
    if existing is not None:  # reported twice (an answer was lost): the same backup
        return cbr_work._backup_row(conn, project_id, existing[0])
    host = conn.execute(
        "SELECT host_name FROM agents WHERE project_id = ? AND agent_id = ?", (project_id, agent_id)
    ).fetchone()
    backup_id = str(uuid.uuid4())
    if checkpoint_id is None:  # every backup belongs to a restore point: one of its own
        checkpoint_id = str(uuid.uuid4())
        vault_name = conn.execute("SELECT name FROM vaults WHERE id = ?", (vault_id,)).fetchone()
        conn.execute(
            "INSERT INTO checkpoints (project_id, id, vault_id, vault_name, name, description, "
            "auto_trigger, policy_id, resources, skipped, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                project_id,
                checkpoint_id,
                vault_id,
                vault_name[0] if vault_name else "",
                name,
                description,
                int(auto),
                policy_id,
                "[]",
                "[]",
                created_ms,
            ),
        )
        tasks.create(
            conn,
            project_id,
            agent_id,
            "backup",
            now,
            status="success",
            vault_id=vault_id,
            vault_name=vault_name[0] if vault_name else None,
            checkpoint_id=checkpoint_id,
            policy_id=policy_id,
            result={"backup_id": backup_id, "snapshot_id": snapshot_id, "reported": True},
        )
    name = name or f"{'autobk' if auto else 'manualbk'}_{backup_id[:4]}"
    extra = {k: data[k] for k in ("files", "duration", "warnings", "trigger") if k in data}
    conn.execute(
        "INSERT INTO backups (project_id, id, name, description, checkpoint_id, vault_id, resource_id, "
        "resource_name, status, snapshot_id, auto_trigger, policy_id, incremental, size_bytes, "
        "added_bytes, extra, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'available', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            project_id,
            backup_id,
            name,
            description,
            checkpoint_id,
            vault_id,
            agent_id,
            host[0] if host else agent_id,
            snapshot_id,
            int(auto),
            policy_id,
            int(c.boolean(data, "incremental", "backup", True)),
            _size(data, "size_bytes"),
            _size(data, "added_bytes"),
            c.dumps(extra),
            created_ms,
            now,
        ),
    )
    return cbr_work._backup_row(conn, project_id, backup_id)


def report_backup(store: AgentStore, project_id: str, agent_id: str, body: dict[str, Any]) -> dict[str, Any]:
    data = c.obj(body, "backup", "backup")
    auto = c.boolean(data, "auto_trigger", "backup", False)
    now = store._now_ms()
    with store._transaction() as conn:
        _agent_exists(conn, project_id, agent_id)
        vault_id = data.get("vault_id")
        if vault_id is None:
            row = conn.execute(
                "SELECT vault_id FROM vault_resources WHERE project_id = ? AND resource_id = ?",
                (project_id, agent_id),
            ).fetchone()
            vault_id = row[0] if row else ""
        made = _insert_backup(
            conn,
            project_id,
            agent_id,
            data,
            now,
            checkpoint_id=None,
            vault_id=str(vault_id),
            name=c.name(data, "name", "backup", required=False),
            description=c.description(data, "backup"),
            auto=auto,
            policy_id=c.text(data, "policy_id", "backup"),
        )
        return {"backup": cbr_work.backup_wire(project_id, made)}


def forgotten(store: AgentStore, project_id: str, agent_id: str, body: dict[str, Any]) -> dict[str, Any]:
    raw = body.get("snapshot_ids")
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw) or len(raw) > 10000:
        raise bad_request("snapshot_ids must be an array of at most 10000 snapshot ids")
    with store._transaction() as conn:
        _agent_exists(conn, project_id, agent_id)
        removed = []
        for sid in raw:
            row = conn.execute(
                "SELECT id FROM backups WHERE project_id = ? AND resource_id = ? AND snapshot_id = ?",
                (project_id, agent_id, sid),
            ).fetchone()
            if row is not None:
                conn.execute("DELETE FROM backups WHERE id = ?", (row[0],))
                removed.append(row[0])
    return {"removed_backup_ids": removed}
