"""CBR backup policies (spec section 2) on the control-plane database: create, show, list, update,
delete. The trigger and retention rules are checked by :mod:`cbr_agent.cbrpolicy`, which the agent
also uses to run them; a change wakes the agents of every vault the policy is bound to.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

from cbr_agent import cbrpolicy
from cbr_agent.controlplane import cbr_common as c
from cbr_agent.controlplane import tasks
from cbr_agent.controlplane.faults import bad_request
from cbr_agent.controlplane.store import AgentStore

_POLICY_COLUMNS = "id, name, enabled, operation_type, definition, patterns, trigger_id, created_at"


def policy_row(conn: sqlite3.Connection, project_id: str, policy_id: str) -> Any:
    row = conn.execute(
        f"SELECT {_POLICY_COLUMNS} FROM policies WHERE project_id = ? AND id = ?", (project_id, policy_id)
    ).fetchone()
    if row is None:
        raise c.not_found(c.POLICY_NOT_FOUND, "policy", policy_id)
    return row


def policy_wire(conn: sqlite3.Connection, project_id: str, row: Any) -> dict[str, Any]:
    pid, name, enabled, op_type, definition, patterns, trigger_id, created_at = row
    vaults = [
        {"vault_id": r[0]}
        for r in conn.execute(
            "SELECT id FROM vaults WHERE project_id = ? AND policy_id = ? ORDER BY created_at",
            (project_id, pid),
        )
    ]
    return {
        "id": pid,
        "name": name,
        "enabled": bool(enabled),
        "operation_type": op_type,
        "operation_definition": json.loads(definition),
        "policy_type": "custom_policy",
        "trigger": {
            "id": trigger_id,
            "name": "default",
            "type": "time",
            "properties": {"pattern": json.loads(patterns), "start_time": c.wire_time(created_at)},
        },
        "associated_vaults": vaults,
    }


def _definition(policy: dict[str, Any]) -> dict[str, Any]:
    raw = c.obj(policy, "operation_definition", "policy.operation_definition")
    try:
        return cbrpolicy.check_retention(raw)
    except cbrpolicy.PolicyError as exc:
        raise bad_request(str(exc)) from None


def _patterns(policy: dict[str, Any]) -> list[str]:
    trigger = c.obj(policy, "trigger", "policy.trigger")
    props = c.obj(trigger, "properties", "policy.trigger.properties")
    patterns = props.get("pattern")
    try:
        cbrpolicy.parse_patterns(patterns)
    except cbrpolicy.PolicyError as exc:
        raise bad_request(f"policy.trigger.properties.pattern: {exc}") from None
    return [str(p) for p in patterns]


def create_policy(store: AgentStore, project_id: str, body: dict[str, Any]) -> dict[str, Any]:
    policy = c.obj(body, "policy", "policy")
    name = c.name(policy, "name", "policy", required=True)
    op_type = c.text(policy, "operation_type", "policy", required=True)
    if op_type != "backup":
        raise c.invalid(
            c.UNKNOWN_POLICY_TYPE,
            f'policy.operation_type must be "backup" (replication is '
            f"not supported for file backup), got {op_type!r}",
        )
    definition = _definition(policy)
    patterns = _patterns(policy)
    enabled = c.boolean(policy, "enabled", "policy", True)
    now = store._now_ms()
    pid = str(uuid.uuid4())
    with store._transaction() as conn:
        conn.execute(
            "INSERT INTO policies (project_id, id, name, enabled, operation_type, definition, "
            "patterns, trigger_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                project_id,
                pid,
                name,
                int(enabled),
                op_type,
                c.dumps(definition),
                c.dumps(patterns),
                str(uuid.uuid4()),
                now,
                now,
            ),
        )
        return {"policy": policy_wire(conn, project_id, policy_row(conn, project_id, pid))}


def show_policy(store: AgentStore, project_id: str, policy_id: str) -> dict[str, Any]:
    with store._transaction("BEGIN") as conn:
        return {"policy": policy_wire(conn, project_id, policy_row(conn, project_id, policy_id))}


def list_policies(store: AgentStore, project_id: str, pairs: dict[str, str]) -> dict[str, Any]:
    where, args = ["project_id = ?"], [project_id]
    if pairs.get("operation_type"):
        where.append("operation_type = ?")
        args.append(pairs["operation_type"])
    if pairs.get("vault_id"):
        where.append("id IN (SELECT policy_id FROM vaults WHERE id = ?)")
        args.append(pairs["vault_id"])
    with store._transaction("BEGIN") as conn:
        rows = conn.execute(
            f"SELECT {_POLICY_COLUMNS} FROM policies WHERE {' AND '.join(where)} ORDER BY created_at, id",
            args,
        ).fetchall()
        policies = [policy_wire(conn, project_id, r) for r in rows]
    return {"policies": policies, "count": len(policies)}


def update_policy(
    store: AgentStore, project_id: str, policy_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    policy = c.obj(body, "policy", "policy")
    changes: dict[str, Any] = {}
    if policy.get("name") is not None:
        changes["name"] = c.name(policy, "name", "policy", required=True)
    if policy.get("enabled") is not None:
        changes["enabled"] = int(c.boolean(policy, "enabled", "policy", True))
    if policy.get("operation_definition") is not None:
        changes["definition"] = c.dumps(_definition(policy))
    if policy.get("trigger") is not None:
        changes["patterns"] = c.dumps(_patterns(policy))
    now = store._now_ms()
    with store._transaction() as conn:
        policy_row(conn, project_id, policy_id)
        if changes:
            sets = ", ".join(f"{k} = ?" for k in changes)
            conn.execute(
                f"UPDATE policies SET {sets}, updated_at = ? WHERE id = ?",
                (*changes.values(), now, policy_id),
            )
            notify_policy(conn, project_id, policy_id, now)
        return {"policy": policy_wire(conn, project_id, policy_row(conn, project_id, policy_id))}


def notify_policy(conn: sqlite3.Connection, project_id: str, policy_id: str, now: int) -> None:
    for (rid,) in conn.execute(
        "SELECT r.resource_id FROM vault_resources r JOIN vaults v ON v.id = r.vault_id "
        "WHERE v.project_id = ? AND v.policy_id = ?",
        (project_id, policy_id),
    ).fetchall():
        tasks.notify(conn, project_id, rid, now)


def delete_policy(store: AgentStore, project_id: str, policy_id: str) -> None:
    now = store._now_ms()
    with store._transaction() as conn:
        policy_row(conn, project_id, policy_id)
        notify_policy(conn, project_id, policy_id, now)
        conn.execute("DELETE FROM policies WHERE project_id = ? AND id = ?", (project_id, policy_id))
