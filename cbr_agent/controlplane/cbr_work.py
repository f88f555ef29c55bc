"""Checkpoints (spec section 3), backups (section 4) and operation logs (section 5): what CBR calls
ask of agents, and what agents report back.

A checkpoint over N agents is N ``backup`` tasks; its status is read from them (``protecting`` while
one waits or runs, ``available`` when all succeeded, ``error`` when one did not). ``DELETE /backups/{id}``
and ``POST /backups/{id}/restore`` are ``delete`` and ``restore`` tasks for the backup's agent. A
backup row appears when its agent reports it: in the result of a ``backup`` task, or through
``POST /agents/{agent_id}/backups`` for the backups it made on its own (policy, local schedule, CLI).
"""

from __future__ import annotations

import json
import posixpath
import sqlite3
import uuid
from typing import Any

from cbr_agent.controlplane import cbr_common as c
from cbr_agent.controlplane import cbr_vaults, tasks
from cbr_agent.controlplane.faults import bad_request
from cbr_agent.controlplane.store import AgentStore

GB = 1024**3


def _sweep(store: AgentStore) -> None:
    """End the tasks whose agents gave up (lapsed last lease) before reading them."""
    now = store._now_ms()
    with store._transaction("BEGIN") as conn:
        if not tasks.has_expired(conn, now):
            return
    with store._transaction() as conn:
        tasks.sweep(conn, now)


# -- checkpoints -------------------------------------------------------------------------------------


def create_checkpoint(store: AgentStore, project_id: str, body: dict[str, Any]) -> dict[str, Any]:
    cp = c.obj(body, "checkpoint", "checkpoint")
    vault_id = c.ident(cp.get("vault_id"), "checkpoint.vault_id") if cp.get("vault_id") is not None else None
    if vault_id is None:
        raise bad_request("checkpoint.vault_id is required")
    params = c.obj(cp, "parameters", "checkpoint.parameters", required=False)
    name = c.name(params, "name", "checkpoint.parameters", required=False)
    desc = c.description(params, "checkpoint.parameters")
    auto = c.boolean(params, "auto_trigger", "checkpoint.parameters", False)
    incremental = c.boolean(params, "incremental", "checkpoint.parameters", True)
    policy_id = c.text(params, "policy_id", "checkpoint.parameters", max_len=64)
    wanted = (
        None
        if params.get("resources") is None
        else c.id_list(params["resources"], "checkpoint.parameters.resources", max_items=256)
    )
    now = store._now_ms()
    cp_id = str(uuid.uuid4())
    with store._transaction() as conn:
        vault = conn.execute(
            "SELECT id, name FROM vaults WHERE project_id = ? AND id = ?", (project_id, vault_id)
        ).fetchone()
        if vault is None:
            raise c.not_found(c.VAULT_NOT_FOUND, "vault", vault_id)
        held = cbr_vaults.vault_agents(conn, project_id, vault_id)
        if wanted is not None:
            outside = [r for r in wanted if r not in held]
            if outside:
                raise c.invalid(
                    c.NOT_IN_VAULT,
                    f"checkpoint.parameters.resources: {', '.join(outside)} "
                    f"not in vault {vault_id}; add them with addresources first",
                )
        targets = held if wanted is None else wanted
        if not targets:
            raise c.invalid(c.NOTHING_TO_BACK_UP, f"vault {vault_id} has no resources to back up")
        resources, skipped = [], []
        for rid in targets:
            host = _host(conn, project_id, rid)
            busy = conn.execute(
                "SELECT 1 FROM tasks WHERE project_id = ? AND agent_id = ? AND operation_type "
                "= 'backup' AND status IN ('waiting', 'running') LIMIT 1",
                (project_id, rid),
            ).fetchone()
            if busy:
                skipped.append(
                    {
                        "id": rid,
                        "type": c.AGENT_RESOURCE_TYPE,
                        "name": host,
                        "code": "BackupService.0002",
                        "reason": "a backup of this agent is already waiting or running",
                    }
                )
                continue
            resources.append(
                {
                    "id": rid,
                    "name": host,
                    "type": c.AGENT_RESOURCE_TYPE,
                    "protect_status": "available",
                    "resource_size": "0",
                    "extra_info": "{}",
                }
            )
            tasks.create(
                conn,
                project_id,
                rid,
                "backup",
                now,
                vault_id=vault_id,
                vault_name=vault[1],
                checkpoint_id=cp_id,
                policy_id=policy_id,
                params={"name": name, "description": desc, "auto_trigger": auto, "incremental": incremental},
            )
        conn.execute(
            "INSERT INTO checkpoints (project_id, id, vault_id, vault_name, name, description, "
            "auto_trigger, policy_id, resources, skipped, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                project_id,
                cp_id,
                vault_id,
                vault[1],
                name,
                desc,
                int(auto),
                policy_id,
                c.dumps(resources),
                c.dumps(skipped),
                now,
            ),
        )
        return {"checkpoint": _checkpoint_wire(conn, project_id, cp_id)}


def _host(conn: sqlite3.Connection, project_id: str, agent_id: str) -> str:
    row = conn.execute(
        "SELECT host_name FROM agents WHERE project_id = ? AND agent_id = ?", (project_id, agent_id)
    ).fetchone()
    return row[0] if row else agent_id


def _checkpoint_wire(conn: sqlite3.Connection, project_id: str, cp_id: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT vault_id, vault_name, name, description, resources, skipped, created_at "
        "FROM checkpoints WHERE project_id = ? AND id = ?",
        (project_id, cp_id),
    ).fetchone()
    if row is None:
        raise c.not_found(c.CHECKPOINT_NOT_FOUND, "checkpoint", cp_id)
    statuses = [
        s
        for (s,) in conn.execute(
            "SELECT status FROM tasks WHERE checkpoint_id = ? AND operation_type = 'backup'", (cp_id,)
        )
    ]
    if any(s in ("waiting", "running") for s in statuses):
        status = "protecting"
    elif statuses and all(s == "success" for s in statuses):
        status = "available"
    else:
        status = "error"
    return {
        "id": cp_id,
        "status": status,
        "project_id": project_id,
        "created_at": c.wire_time(row[6]),
        "vault": {
            "id": row[0],
            "name": row[1],
            "resources": json.loads(row[4]),
            "skipped_resources": json.loads(row[5]),
        },
        "extra_info": {"name": row[2] or "", "description": row[3] or "", "retention_duration": -1},
    }


def show_checkpoint(store: AgentStore, project_id: str, cp_id: str) -> dict[str, Any]:
    _sweep(store)
    with store._transaction("BEGIN") as conn:
        return {"checkpoint": _checkpoint_wire(conn, project_id, cp_id)}


# -- backups -----------------------------------------------------------------------------------------

_BACKUP_COLUMNS = (
    "id, name, description, checkpoint_id, vault_id, resource_id, resource_name, status, "
    "snapshot_id, auto_trigger, policy_id, incremental, size_bytes, added_bytes, extra, "
    "created_at, updated_at"
)
_BNAMES = [n.strip() for n in _BACKUP_COLUMNS.split(",")]
_SORT_KEYS = ("created_at", "updated_at", "name", "status", "protected_at", "id")


def _backup_row(conn: sqlite3.Connection, project_id: str, backup_id: str) -> dict[str, Any]:
    row = conn.execute(
        f"SELECT {_BACKUP_COLUMNS} FROM backups WHERE project_id = ? AND id = ?", (project_id, backup_id)
    ).fetchone()
    if row is None:
        raise c.not_found(c.BACKUP_NOT_FOUND, "backup", backup_id)
    return dict(zip(_BNAMES, row, strict=True))


def backup_wire(project_id: str, b: dict[str, Any]) -> dict[str, Any]:
    extra = json.loads(b["extra"]) if isinstance(b["extra"], str) else b["extra"]
    return {
        "id": b["id"],
        "name": b["name"],
        "description": b["description"],
        "checkpoint_id": b["checkpoint_id"],
        "vault_id": b["vault_id"],
        "project_id": project_id,
        "resource_id": b["resource_id"],
        "resource_name": b["resource_name"],
        "resource_type": c.AGENT_RESOURCE_TYPE,
        "resource_size": -(-b["size_bytes"] // GB),
        "resource_az": "",
        "status": b["status"],
        "image_type": "backup",
        "parent_id": "",
        "created_at": c.wire_time(b["created_at"]),
        "updated_at": c.wire_time(b["updated_at"]),
        "protected_at": c.wire_time(b["created_at"]),
        "expired_at": None,
        "provider_id": "",
        "enterprise_project_id": "0",
        "incremental": bool(b["incremental"]),
        "children": [],
        "scheduled_operation_id": b["policy_id"] or "",
        "extend_info": {
            **extra,
            "auto_trigger": bool(b["auto_trigger"]),
            "snapshot_id": b["snapshot_id"],
            "supported_restore_mode": "backup",
            "size_bytes": b["size_bytes"],
            "added_bytes": b["added_bytes"],
        },
    }


def list_backups(store: AgentStore, project_id: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    single = dict(pairs)
    limit, offset = c.page_args(single)
    where, args = ["project_id = ?"], [project_id]
    for key in ("checkpoint_id", "resource_id", "vault_id", "name", "resource_name"):
        if single.get(key):
            where.append(f"{key} = ?")
            args.append(single[key])
    statuses = [v for k, v in pairs if k == "status" and v]
    if statuses:
        where.append(f"status IN ({','.join('?' * len(statuses))})")
        args += statuses
    if single.get("resource_type") and single["resource_type"] != c.AGENT_RESOURCE_TYPE:
        where.append("0")
    if single.get("start_time"):
        where.append("created_at >= ?")
        args.append(c.query_time(single["start_time"], "start_time"))
    if single.get("end_time"):
        where.append("created_at <= ?")
        args.append(c.query_time(single["end_time"], "end_time"))
    order = []
    for part in (single.get("sort") or "created_at:desc").split(","):
        key, _, direction = part.strip().partition(":")
        if key not in _SORT_KEYS or direction.lower() not in ("", "asc", "desc"):
            raise bad_request(f"sort: {part!r} is not KEY[:asc|desc] with KEY one of {', '.join(_SORT_KEYS)}")
        order.append(f"{'created_at' if key == 'protected_at' else key} {direction.upper() or 'DESC'}")
    cond = " AND ".join(where)
    with store._transaction("BEGIN") as conn:
        count = conn.execute(f"SELECT COUNT(*) FROM backups WHERE {cond}", args).fetchone()[0]
        rows = conn.execute(
            f"SELECT {_BACKUP_COLUMNS} FROM backups WHERE {cond} ORDER BY {', '.join(order)}, "
            "id LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ).fetchall()
    return {
        "backups": [backup_wire(project_id, dict(zip(_BNAMES, r, strict=True))) for r in rows],
        "count": count,
        "limit": limit,
        "offset": offset,
    }


def show_backup(store: AgentStore, project_id: str, backup_id: str) -> dict[str, Any]:
    with store._transaction("BEGIN") as conn:
        return {"backup": backup_wire(project_id, _backup_row(conn, project_id, backup_id))}


def delete_backup(store: AgentStore, project_id: str, backup_id: str) -> None:
    now = store._now_ms()
    with store._transaction() as conn:
        b = _backup_row(conn, project_id, backup_id)
        if b["status"] != "available":
            raise c.invalid(
                c.CANNOT_DELETE, f"backup {backup_id} is {b['status']}; it can be deleted when available"
            )
        conn.execute("UPDATE backups SET status = 'deleting', updated_at = ? WHERE id = ?", (now, backup_id))
        tasks.create(
            conn,
            project_id,
            b["resource_id"],
            "delete",
            now,
            vault_id=b["vault_id"],
            checkpoint_id=b["checkpoint_id"],
            backup_id=backup_id,
            params={"backup_ids": [backup_id], "snapshot_ids": [b["snapshot_id"]], "backup_name": b["name"]},
        )


def check_destination(value: Any, where: str) -> str:
    """Absolute, without ``..``; the reference's narrow character set is not enforced (README)."""
    path = c.text({"d": value}, "d", where, required=True, max_len=4096) or ""
    if not path.startswith("/"):
        raise bad_request(f"{where} {path!r} must be an absolute path")
    if ".." in path.split("/"):
        raise bad_request(f"{where} {path!r} must not contain '..'")
    return posixpath.normpath(path)


def restore_backup(store: AgentStore, project_id: str, backup_id: str, body: dict[str, Any]) -> None:
    restore = c.obj(body, "restore", "restore")
    details = c.obj(restore, "details", "restore.details")
    destination = check_destination(details.get("destination_path"), "restore.details.destination_path")
    paths: list[str] = []
    if details.get("paths") is not None:
        if not isinstance(details["paths"], list) or not all(isinstance(p, str) for p in details["paths"]):
            raise bad_request("restore.details.paths must be an array of absolute paths")
        paths = [check_destination(p, f"restore.details.paths[{i}]") for i, p in enumerate(details["paths"])]
    now = store._now_ms()
    with store._transaction() as conn:
        b = _backup_row(conn, project_id, backup_id)
        target = b["resource_id"]
        if restore.get("resource_id") is not None:
            target = c.ident(restore["resource_id"], "restore.resource_id")
            if (
                conn.execute(
                    "SELECT 1 FROM agents WHERE project_id = ? AND agent_id = ?", (project_id, target)
                ).fetchone()
                is None
            ):
                raise c.invalid(
                    c.RESOURCE_NOT_FOUND, f"restore.resource_id: {target} is not a registered agent"
                )
        if b["status"] != "available":
            raise c.invalid(
                c.RESTORE_NOT_ALLOWED, f"backup {backup_id} is {b['status']}; restore it when available"
            )
        conn.execute("UPDATE backups SET status = 'restoring', updated_at = ? WHERE id = ?", (now, backup_id))
        tasks.create(
            conn,
            project_id,
            target,
            "restore",
            now,
            vault_id=b["vault_id"],
            checkpoint_id=b["checkpoint_id"],
            backup_id=backup_id,
            params={
                "backup_ids": [backup_id],
                "snapshot_id": b["snapshot_id"],
                "destination_path": destination,
                "paths": paths,
                "backup_name": b["name"],
                "source_agent_id": b["resource_id"],
            },
        )


# -- operation logs ----------------------------------------------------------------------------------


def list_oplogs(store: AgentStore, project_id: str, pairs: dict[str, str]) -> dict[str, Any]:
    _sweep(store)
    limit, offset = c.page_args(pairs)
    where, args = ["project_id = ?"], [project_id]
    if pairs.get("operation_type"):
        if pairs["operation_type"] not in (*tasks.OPERATION_TYPES, "replication", "sync", "copy"):
            raise bad_request(f"operation_type {pairs['operation_type']!r} is not a task type")
        where.append("operation_type = ?")
        args.append(pairs["operation_type"])
    if pairs.get("status"):
        if pairs["status"] not in tasks.STATUSES:
            raise bad_request(f"status must be one of {', '.join(tasks.STATUSES)}")
        where.append("status = ?")
        args.append(pairs["status"])
    for key, column in (("resource_id", "agent_id"), ("vault_id", "vault_id"), ("vault_name", "vault_name")):
        if pairs.get(key):
            where.append(f"{column} = ?")
            args.append(pairs[key])
    if pairs.get("start_time"):
        where.append("created_at >= ?")
        args.append(c.query_time(pairs["start_time"], "start_time"))
    if pairs.get("end_time"):
        where.append("created_at <= ?")
        args.append(c.query_time(pairs["end_time"], "end_time"))
    cond = " AND ".join(where)
    with store._transaction("BEGIN") as conn:
        count = conn.execute(f"SELECT COUNT(*) FROM tasks WHERE {cond}", args).fetchone()[0]
        rows = conn.execute(
            f"SELECT {tasks.TASK_COLUMNS} FROM tasks WHERE {cond} ORDER BY created_at DESC, "
            "seq DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ).fetchall()
        logs = [tasks.oplog_wire(conn, project_id, tasks.as_dict(r)) for r in rows]
    return {"operation_logs": logs, "count": count, "limit": limit, "offset": offset}


def show_oplog(store: AgentStore, project_id: str, task_id: str) -> dict[str, Any]:
    _sweep(store)
    with store._transaction("BEGIN") as conn:
        return {"operation_log": tasks.oplog_wire(conn, project_id, tasks.load(conn, project_id, task_id))}
