"""The CBR routes behave the same in-process (embedded) and over HTTP (a real server)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from cbr_agent.api.models import AgentRegistration
from cbr_agent.errors import ApiError, NotFoundError


def file_vault(cp: Any, agents: list[str], **extra: Any) -> dict[str, Any]:
    body = {
        "vault": {
            "name": f"v-{uuid.uuid4().hex[:8]}",
            "billing": {"object_type": "file", "size": 40},
            "resources": [{"id": a, "type": "OS::Native::Server"} for a in agents],
            **extra,
        }
    }
    return cp.cbr_call("POST", ["vaults"], payload=body)["vault"]


def agent(cp: Any) -> str:
    agent_id = str(uuid.uuid4())
    cp.register_agent(AgentRegistration(agent_id, "contract-host", "10.0.0.2", "linux"))
    return agent_id


def test_checkpoint_task_and_backup_round_trip(control_plane: Any) -> None:
    cp = control_plane
    a = agent(cp)
    vault = file_vault(cp, [a])
    first = cp.cbr_call("GET", ["agents", a, "tasks"])
    assert first["tasks"] == [] and first["config"]["vault"]["id"] == vault["id"]
    checkpoint = cp.cbr_call("POST", ["checkpoints"], payload={"checkpoint": {"vault_id": vault["id"]}})
    assert checkpoint["checkpoint"]["status"] == "protecting"
    polled = cp.cbr_call(
        "GET", ["agents", a, "tasks"], query=[("wait", "5"), ("config_version", first["config_version"])]
    )
    task = polled["tasks"][0]
    base = ["agents", a, "tasks", task["id"]]
    cp.cbr_call("POST", [*base, "claim"], payload={"owner": "me", "lease_seconds": 10})
    cp.cbr_call(
        "POST",
        [*base, "result"],
        payload={
            "owner": "me",
            "status": "success",
            "backup": {"snapshot_id": "ab" * 32, "size_bytes": 10},
        },
    )
    shown = cp.cbr_call("GET", ["checkpoints", checkpoint["checkpoint"]["id"]])["checkpoint"]
    assert shown["status"] == "available"
    backups = cp.cbr_call("GET", ["backups"], query=[("resource_id", a)])["backups"]
    assert [b["extend_info"]["snapshot_id"] for b in backups] == ["ab" * 32]


def test_idle_poll_waits_and_a_new_task_ends_it_early(control_plane: Any) -> None:
    cp = control_plane
    a = agent(cp)
    file_vault(cp, [a])
    version = cp.cbr_call("GET", ["agents", a, "tasks"])["config_version"]
    started = time.monotonic()
    idle = cp.cbr_call("GET", ["agents", a, "tasks"], query=[("wait", "1"), ("config_version", version)])
    assert idle["tasks"] == [] and time.monotonic() - started >= 0.9


def test_reported_backups_and_forgotten_ones(control_plane: Any) -> None:
    cp = control_plane
    a = agent(cp)
    vault = file_vault(cp, [a])
    made = cp.cbr_call(
        "POST",
        ["agents", a, "backups"],
        payload={
            "backup": {"snapshot_id": "cd" * 32, "auto_trigger": True, "created_at": "2024-05-01T12:00:00Z"}
        },
    )["backup"]
    assert made["vault_id"] == vault["id"] and made["extend_info"]["auto_trigger"] is True
    assert made["name"].startswith("autobk_")
    again = cp.cbr_call("POST", ["agents", a, "backups"], payload={"backup": {"snapshot_id": "cd" * 32}})
    assert again["backup"]["id"] == made["id"]
    window = cp.cbr_call(
        "GET",
        ["backups"],
        query=[
            ("resource_id", a),
            ("start_time", "2024-05-01T00:00:00Z"),
            ("end_time", "2024-05-02T00:00:00Z"),
        ],
    )
    assert window["count"] == 1
    gone = cp.cbr_call("POST", ["agents", a, "backups", "forgotten"], payload={"snapshot_ids": ["cd" * 32]})
    assert gone["removed_backup_ids"] == [made["id"]]


def test_errors_are_the_same_on_both_sides(control_plane: Any) -> None:
    cp = control_plane
    with pytest.raises(NotFoundError) as exc_info:
        cp.cbr_call("GET", ["vaults", str(uuid.uuid4())])
    assert exc_info.value.error_code == "BackupService.6105"
    with pytest.raises(ApiError) as bad:
        cp.cbr_call(
            "POST",
            ["policies"],
            payload={
                "policy": {
                    "name": "p",
                    "operation_type": "backup",
                    "operation_definition": {"max_backups": -7},
                    "trigger": {"properties": {"pattern": ["FREQ=DAILY;BYHOUR=1;BYMINUTE=0"]}},
                }
            },
        )
    assert (bad.value.status, bad.value.error_code) == (400, "BackupService.9900")
    a = agent(cp)
    vault = file_vault(cp, [a])
    backup = cp.cbr_call("POST", ["agents", a, "backups"], payload={"backup": {"snapshot_id": "ef" * 32}})
    with pytest.raises(ApiError) as rel:
        cp.cbr_call(
            "POST",
            ["backups", backup["backup"]["id"], "restore"],
            payload={"restore": {"details": {"destination_path": "relative/dir"}}},
        )
    assert rel.value.status == 400
    with pytest.raises(ApiError) as dots:
        cp.cbr_call(
            "POST",
            ["backups", backup["backup"]["id"], "restore"],
            payload={"restore": {"details": {"destination_path": "/srv/../etc"}}},
        )
    assert dots.value.status == 400
    with pytest.raises(ApiError) as outside:
        cp.cbr_call(
            "POST",
            ["checkpoints"],
            payload={
                "checkpoint": {"vault_id": vault["id"], "parameters": {"resources": [str(uuid.uuid4())]}}
            },
        )
    assert (outside.value.status, outside.value.error_code) == (400, "BackupService.6135")


def test_a_policy_bound_to_its_vault_ends_a_waiting_poll(control_plane: Any) -> None:
    import threading

    cp = control_plane
    a = agent(cp)
    vault = file_vault(cp, [a])
    version = cp.cbr_call("GET", ["agents", a, "tasks"])["config_version"]
    policy = cp.cbr_call(
        "POST",
        ["policies"],
        payload={
            "policy": {
                "name": "p",
                "operation_type": "backup",
                "operation_definition": {"max_backups": 2},
                "trigger": {"properties": {"pattern": ["FREQ=DAILY;BYHOUR=1;BYMINUTE=0"]}},
            }
        },
    )["policy"]
    answers: list[dict[str, Any]] = []
    started = time.monotonic()
    poll = threading.Thread(
        target=lambda: answers.append(
            cp.cbr_call(
                "GET",
                ["agents", a, "tasks"],
                query=[("wait", "20"), ("config_version", version)],
                read_timeout=30,
            )
        )
    )
    poll.start()
    time.sleep(0.5)
    cp.cbr_call("POST", ["vaults", vault["id"], "associatepolicy"], payload={"policy_id": policy["id"]})
    poll.join(25)
    assert answers and answers[0]["config"]["policy"]["id"] == policy["id"]
    assert time.monotonic() - started < 5


def test_removing_an_agent_removes_its_cbr_records(control_plane: Any) -> None:
    cp = control_plane
    a = agent(cp)
    vault = file_vault(cp, [a])
    cp.cbr_call("POST", ["agents", a, "backups"], payload={"backup": {"snapshot_id": "12" * 32}})
    cp.cbr_call("POST", ["checkpoints"], payload={"checkpoint": {"vault_id": vault["id"]}})
    cp.remove_agent(a)
    assert cp.cbr_call("GET", ["vaults", vault["id"]])["vault"]["resources"] == []
    assert cp.cbr_call("GET", ["backups"], query=[("resource_id", a)])["count"] == 0
    assert (
        cp.cbr_call("GET", ["operation-logs"], query=[("resource_id", a), ("status", "waiting")])["count"]
        == 0
    )
