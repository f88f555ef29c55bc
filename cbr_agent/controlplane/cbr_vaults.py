"""Vaults (spec section 1) of file backup, on the control-plane database (policies are in
:mod:`cbr_agent.controlplane.cbr_policies`).

A vault of ``billing.object_type "file"`` holds agents as resources (``{"id": AGENT_ID, "type":
"OS::Native::Server"}``); an agent is in at most one vault, and the policy bound to that vault is
the one its agent runs. Removing resources or deleting the vault deletes their backups, as the
reference says: each agent concerned gets a task (``remove_resource`` / ``vault_delete``) to forget
those snapshots, and the backups read ``deleting`` until it reports success.

Every change an agent must learn of (its vault, that vault's policy) appends an ``events`` row for
it, which wakes its long poll on whichever server process holds it.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

from cbr_agent.controlplane import cbr_common as c
from cbr_agent.controlplane import tasks
from cbr_agent.controlplane.cbr_policies import policy_row, policy_wire
from cbr_agent.controlplane.faults import bad_request
from cbr_agent.controlplane.store import AgentStore

MAX_RESOURCES = 255
GB = 1024**3
BILLING_DEFAULTS = {
    "cloud_type": "public",
    "charging_mode": "post_paid",
    "consistent_level": "crash_consistent",
}


# -- checks ------------------------------------------------------------------------------------------


def _billing(vault: dict[str, Any]) -> dict[str, Any]:
    billing = c.obj(vault, "billing", "vault.billing")
    object_type = c.text(billing, "object_type", "vault.billing", required=True)
    if object_type != "file":
        known = ("server", "disk", "turbo", "workspace", "vmware", "rds")
        if object_type in known:
            raise c.invalid(
                c.UNSUPPORTED_TYPE,
                f"vault.billing.object_type {object_type!r} is not "
                'supported here; this control plane keeps file backups: use "file"',
            )
        raise bad_request(f'vault.billing.object_type must be "file", got {object_type!r}')
    protect = c.text(billing, "protect_type", "vault.billing") or "backup"
    if protect != "backup":
        raise c.invalid(c.UNSUPPORTED_TYPE, f'vault.billing.protect_type {protect!r}: only "backup"')
    level = c.text(billing, "consistent_level", "vault.billing") or "crash_consistent"
    if level not in ("crash_consistent", "app_consistent"):
        raise bad_request("vault.billing.consistent_level must be crash_consistent or app_consistent")
    size = c.integer(billing, "size", "vault.billing", low=10, high=10485760, code=c.BAD_CAPACITY)
    if size is None:
        raise c.invalid(c.BAD_CAPACITY, "vault.billing.size (capacity in GB, 10 to 10485760) is required")
    out = {
        **BILLING_DEFAULTS,
        "object_type": "file",
        "protect_type": "backup",
        "consistent_level": level,
        "size": size,
    }
    for key in ("cloud_type", "charging_mode"):
        out[key] = c.text(billing, key, "vault.billing") or out[key]
    return out


def _resources(conn: sqlite3.Connection, project_id: str, raw: Any, where: str) -> list[str]:
    if not isinstance(raw, list):
        raise bad_request(f"{where} must be an array of resources")
    if len(raw) > MAX_RESOURCES:
        raise bad_request(f"{where} has {len(raw)} entries; at most {MAX_RESOURCES}")
    ids: list[str] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise bad_request(f"{where}[{i}] must be an object {{id, type}}")
        rid = c.ident(item.get("id"), f"{where}[{i}].id")
        rtype = item.get("type")
        if rtype != c.AGENT_RESOURCE_TYPE:
            raise c.invalid(
                c.UNSUPPORTED_TYPE,
                f"{where}[{i}].type must be {c.AGENT_RESOURCE_TYPE!r} (an agent), got {rtype!r}",
            )
        if rid in ids:
            raise c.invalid(c.DUPLICATE_RESOURCES, f"{where} lists {rid} twice")
        ids.append(rid)
    _check_agents(conn, project_id, ids, where)
    return ids


def _check_agents(conn: sqlite3.Connection, project_id: str, ids: list[str], where: str) -> None:
    for rid in ids:
        if (
            conn.execute(
                "SELECT 1 FROM agents WHERE project_id = ? AND agent_id = ?", (project_id, rid)
            ).fetchone()
            is None
        ):
            raise c.invalid(
                c.RESOURCE_NOT_FOUND,
                f"{where}: {rid} is not a registered agent of this project; register the agent first",
            )
        row = conn.execute(
            "SELECT vault_id FROM vault_resources WHERE project_id = ? AND resource_id = ?",
            (project_id, rid),
        ).fetchone()
        if row is not None:
            raise c.invalid(c.ALREADY_IN_VAULT, f"{where}: agent {rid} is already in vault {row[0]}")


def _vault_row(conn: sqlite3.Connection, project_id: str, vault_id: str) -> sqlite3.Row | tuple:
    row = conn.execute(
        "SELECT id, name, description, billing, policy_id, created_at, updated_at "
        "FROM vaults WHERE project_id = ? AND id = ?",
        (project_id, vault_id),
    ).fetchone()
    if row is None:
        raise c.not_found(c.VAULT_NOT_FOUND, "vault", vault_id)
    return row


def vault_agents(conn: sqlite3.Connection, project_id: str, vault_id: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT resource_id FROM vault_resources WHERE project_id = ? AND vault_id = ? "
            "ORDER BY created_at, resource_id",
            (project_id, vault_id),
        )
    ]


def _vault_wire(conn: sqlite3.Connection, project_id: str, row: Any) -> dict[str, Any]:
    vault_id, name, description, billing, policy_id, created_at, _updated = row
    resources = []
    used = 0
    for rid, host, count, size in conn.execute(
        "SELECT r.resource_id, a.host_name, "
        "(SELECT COUNT(*) FROM backups b WHERE b.project_id = r.project_id AND b.vault_id = r.vault_id "
        " AND b.resource_id = r.resource_id), "
        "(SELECT CAST(COALESCE(SUM(b.added_bytes), 0) AS BIGINT) FROM backups b "
        " WHERE b.project_id = r.project_id"
        " AND b.vault_id = r.vault_id AND b.resource_id = r.resource_id) "
        "FROM vault_resources r LEFT JOIN agents a ON a.project_id = r.project_id "
        "AND a.agent_id = r.resource_id WHERE r.project_id = ? AND r.vault_id = ? "
        "ORDER BY r.created_at, r.resource_id",
        (project_id, vault_id),
    ):
        used += size
        resources.append(
            {
                "id": rid,
                "name": host or rid,
                "type": c.AGENT_RESOURCE_TYPE,
                "protect_status": "available",
                "size": 0,
                "backup_size": size,
                "backup_count": count,
                "extra_info": {},
            }
        )
    bill = json.loads(billing)
    bill.update(
        allocated=0, used=-(-used // GB), status="available", storage_unit="", spec_code="", frozen_scene=""
    )
    return {
        "id": vault_id,
        "name": name,
        "description": description,
        "project_id": project_id,
        "provider_id": "",
        "billing": bill,
        "resources": resources,
        "policy_id": policy_id,
        "created_at": c.wire_time(created_at),
        "tags": [],
        "auto_bind": False,
        "auto_expand": False,
        "smn_notify": True,
        "threshold": 80,
        "enterprise_project_id": "0",
        "locked": False,
    }


# -- vaults ------------------------------------------------------------------------------------------


def create_vault(store: AgentStore, project_id: str, body: dict[str, Any]) -> dict[str, Any]:
    vault = c.obj(body, "vault", "vault")
    name = c.name(vault, "name", "vault", required=True)
    desc = c.description(vault, "vault")
    billing = _billing(vault)
    if vault.get("resources") is None:
        raise bad_request("vault.resources is required (send [] to add none)")
    policy_id = vault.get("backup_policy_id")
    now = store._now_ms()
    vault_id = str(uuid.uuid4())
    with store._transaction() as conn:
        ids = _resources(conn, project_id, vault["resources"], "vault.resources")
        if policy_id is not None:
            policy_id = c.ident(policy_id, "vault.backup_policy_id")
            policy_row(conn, project_id, policy_id)
        conn.execute(
            "INSERT INTO vaults (project_id, id, name, description, billing, policy_id, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (project_id, vault_id, name, desc, c.dumps(billing), policy_id, now, now),
        )
        _add(conn, project_id, vault_id, ids, now)
        return {"vault": _vault_wire(conn, project_id, _vault_row(conn, project_id, vault_id))}


def _add(conn: sqlite3.Connection, project_id: str, vault_id: str, ids: list[str], now: int) -> None:
    for rid in ids:
        conn.execute(
            "INSERT INTO vault_resources (project_id, vault_id, resource_id, created_at) VALUES (?, ?, ?, ?)",
            (project_id, vault_id, rid, now),
        )
        tasks.notify(conn, project_id, rid, now)


def show_vault(store: AgentStore, project_id: str, vault_id: str) -> dict[str, Any]:
    with store._transaction("BEGIN") as conn:
        return {"vault": _vault_wire(conn, project_id, _vault_row(conn, project_id, vault_id))}


def list_vaults(store: AgentStore, project_id: str, pairs: dict[str, str]) -> dict[str, Any]:
    limit, offset = c.page_args(pairs)
    where, args = ["project_id = ?"], [project_id]
    if pairs.get("name"):
        where.append("name = ?")
        args.append(pairs["name"])
    if pairs.get("policy_id"):
        where.append("policy_id = ?")
        args.append(pairs["policy_id"])
    if pairs.get("object_type") and pairs["object_type"] != "file":
        where.append("0")
    cond = " AND ".join(where)
    with store._transaction("BEGIN") as conn:
        count = conn.execute(f"SELECT COUNT(*) FROM vaults WHERE {cond}", args).fetchone()[0]
        rows = conn.execute(
            f"SELECT id, name, description, billing, policy_id, created_at, updated_at "
            f"FROM vaults WHERE {cond} ORDER BY created_at, id LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ).fetchall()
        vaults = [_vault_wire(conn, project_id, r) for r in rows]
    return {"vaults": vaults, "count": count, "limit": limit, "offset": offset}


def add_resources(
    store: AgentStore, project_id: str, vault_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    if body.get("resources") is None:
        raise bad_request("resources is required")
    now = store._now_ms()
    with store._transaction() as conn:
        _vault_row(conn, project_id, vault_id)
        ids = _resources(conn, project_id, body["resources"], "resources")
        if not ids:
            raise bad_request("resources must not be empty")
        held = len(vault_agents(conn, project_id, vault_id))
        if held + len(ids) > MAX_RESOURCES:
            raise c.invalid(
                "BackupService.6100",
                f"the vault would hold {held + len(ids)} resources; at most {MAX_RESOURCES}",
            )
        _add(conn, project_id, vault_id, ids, now)
    return {"add_resource_ids": ids}


def _forget_backups(
    conn: sqlite3.Connection, project_id: str, vault: Any, agent_id: str, operation: str, now: int
) -> None:
    """Mark the agent's backups in the vault ``deleting`` and give the agent a task to forget them."""
    rows = conn.execute(
        "SELECT id, snapshot_id FROM backups WHERE project_id = ? AND vault_id = ? "
        "AND resource_id = ? AND status != 'deleting'",
        (project_id, vault[0], agent_id),
    ).fetchall()
    conn.execute(
        "UPDATE backups SET status = 'deleting', updated_at = ? WHERE project_id = ? "
        "AND vault_id = ? AND resource_id = ?",
        (now, project_id, vault[0], agent_id),
    )
    tasks.create(
        conn,
        project_id,
        agent_id,
        operation,
        now,
        vault_id=vault[0],
        vault_name=vault[1],
        params={"backup_ids": [r[0] for r in rows], "snapshot_ids": [r[1] for r in rows]},
    )


def remove_resources(
    store: AgentStore, project_id: str, vault_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    if body.get("resource_ids") is None:
        raise bad_request("resource_ids is required")
    ids = c.id_list(body["resource_ids"], "resource_ids", max_items=256)
    now = store._now_ms()
    with store._transaction() as conn:
        vault = _vault_row(conn, project_id, vault_id)
        held = set(vault_agents(conn, project_id, vault_id))
        missing = [r for r in ids if r not in held]
        if missing:
            raise c.invalid(c.NOT_IN_VAULT, f"resource_ids: {', '.join(missing)} not in vault {vault_id}")
        for rid in ids:
            conn.execute(
                "DELETE FROM vault_resources WHERE project_id = ? AND resource_id = ?", (project_id, rid)
            )
            _forget_backups(conn, project_id, vault, rid, "remove_resource", now)
    return {"remove_resource_ids": ids}


def delete_vault(store: AgentStore, project_id: str, vault_id: str) -> None:
    now = store._now_ms()
    with store._transaction() as conn:
        vault = _vault_row(conn, project_id, vault_id)
        agents = set(vault_agents(conn, project_id, vault_id)) | {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT resource_id FROM backups WHERE project_id = ? AND vault_id = ?",
                (project_id, vault_id),
            )
        }
        for agent_id in sorted(agents):
            _forget_backups(conn, project_id, vault, agent_id, "vault_delete", now)
        conn.execute("DELETE FROM vaults WHERE project_id = ? AND id = ?", (project_id, vault_id))


def associate_policy(
    store: AgentStore, project_id: str, vault_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    policy_id = body.get("policy_id")
    if (
        policy_id is None
        and isinstance(body.get("add_policy_ids"), list)
        and len(body["add_policy_ids"]) == 1
    ):
        policy_id = body["add_policy_ids"][0]
    if policy_id is None:
        raise bad_request("policy_id is required")
    policy_id = c.ident(policy_id, "policy_id")
    now = store._now_ms()
    with store._transaction() as conn:
        _vault_row(conn, project_id, vault_id)
        policy_row(conn, project_id, policy_id)
        conn.execute(
            "UPDATE vaults SET policy_id = ?, updated_at = ? WHERE id = ?", (policy_id, now, vault_id)
        )
        for rid in vault_agents(conn, project_id, vault_id):
            tasks.notify(conn, project_id, rid, now)
    return {"associate_policy": {"vault_id": vault_id, "policy_id": policy_id}}


def dissociate_policy(
    store: AgentStore, project_id: str, vault_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    if body.get("policy_id") is None:
        raise bad_request("policy_id is required")
    policy_id = c.ident(body["policy_id"], "policy_id")
    now = store._now_ms()
    with store._transaction() as conn:
        row = _vault_row(conn, project_id, vault_id)
        if row[4] != policy_id:
            raise c.not_found(c.POLICY_NOT_APPLIED, f"vault {vault_id} has no policy", policy_id)
        conn.execute("UPDATE vaults SET policy_id = NULL, updated_at = ? WHERE id = ?", (now, vault_id))
        for rid in vault_agents(conn, project_id, vault_id):
            tasks.notify(conn, project_id, rid, now)
    return {"dissociate_policy": {"vault_id": vault_id, "policy_id": policy_id}}


def agent_config(conn: sqlite3.Connection, project_id: str, agent_id: str) -> dict[str, Any]:
    """What the agent caches: its vault and the policy it runs (``None`` for each when unset)."""
    row = conn.execute(
        "SELECT v.id, v.name, v.policy_id FROM vault_resources r JOIN vaults v ON v.id = r.vault_id "
        "WHERE r.project_id = ? AND r.resource_id = ?",
        (project_id, agent_id),
    ).fetchone()
    if row is None:
        return {"vault": None, "policy": None}
    policy = None
    if row[2] is not None:
        policy = policy_wire(conn, project_id, policy_row(conn, project_id, row[2]))
        policy.pop("associated_vaults", None)
    return {"vault": {"id": row[0], "name": row[1]}, "policy": policy}
