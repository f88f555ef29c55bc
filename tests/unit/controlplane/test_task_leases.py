"""Task claims and leases on the real SQLite store, with an injected clock: one winner per claim,
renewal by the owner only, re-offer after the lease lapses, ``timeout`` after the last attempt."""

from __future__ import annotations

from typing import Any

import pytest

from cbr_agent.api.models import AgentRegistration
from cbr_agent.controlplane.embedded import EmbeddedControlPlane
from cbr_agent.errors import ApiError


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(store_db: str) -> tuple[EmbeddedControlPlane, Clock, str]:
    """On both stores (``store_db``: a SQLite file, a PostgreSQL database)."""
    clock = Clock()
    cp = EmbeddedControlPlane(store_db, "proj", clock=clock)
    cp.register_agent(AgentRegistration("agent-1", "h1", "10.0.0.1", "linux"))
    vault = cp.cbr_call(
        "POST",
        ["vaults"],
        payload={
            "vault": {
                "name": "v",
                "billing": {"object_type": "file", "size": 10},
                "resources": [{"id": "agent-1", "type": "OS::Native::Server"}],
            }
        },
    )["vault"]
    cp.cbr_call("POST", ["checkpoints"], payload={"checkpoint": {"vault_id": vault["id"]}})
    task = cp.cbr_call("GET", ["agents", "agent-1", "tasks"])["tasks"][0]
    return cp, clock, task["id"]


def call(cp: EmbeddedControlPlane, task_id: str, what: str, **body: Any) -> dict[str, Any]:
    return cp.cbr_call("POST", ["agents", "agent-1", "tasks", task_id, what], payload=body)


def test_one_claim_wins_and_only_the_owner_renews(setup: Any) -> None:
    cp, _clock, task_id = setup
    assert call(cp, task_id, "claim", owner="a", lease_seconds=10)["task"]["attempts"] == 1
    with pytest.raises(ApiError) as exc_info:
        call(cp, task_id, "claim", owner="b", lease_seconds=10)
    assert (exc_info.value.status, exc_info.value.error_code) == (409, "BackupService.6203")
    with pytest.raises(ApiError):
        call(cp, task_id, "progress", owner="b", progress=10)
    assert call(cp, task_id, "progress", owner="a", progress=30)["task"]["progress"] == 30
    # a running task under a live lease is not offered again
    assert cp.cbr_call("GET", ["agents", "agent-1", "tasks"])["tasks"] == []


def test_lapsed_lease_is_offered_again_and_the_old_owner_is_refused(setup: Any) -> None:
    cp, clock, task_id = setup
    call(cp, task_id, "claim", owner="a", lease_seconds=5)
    clock.now += 6
    offered = cp.cbr_call("GET", ["agents", "agent-1", "tasks"])["tasks"]
    assert [t["id"] for t in offered] == [task_id]
    assert call(cp, task_id, "claim", owner="b", lease_seconds=5)["task"]["attempts"] == 2
    with pytest.raises(ApiError) as exc_info:
        call(cp, task_id, "result", owner="a", status="success", backup={"snapshot_id": "s"})
    assert exc_info.value.status == 409
    done = call(cp, task_id, "result", owner="b", status="success", backup={"snapshot_id": "s"})
    assert done["task"]["status"] == "success"
    # the same result again (its answer was lost) is accepted and changes nothing
    again = call(cp, task_id, "result", owner="b", status="success", backup={"snapshot_id": "s"})
    assert again["task"]["status"] == "success"
    assert cp.cbr_call("GET", ["backups"])["count"] == 1


def test_after_the_last_attempt_the_task_times_out(setup: Any) -> None:
    cp, clock, task_id = setup
    for owner in ("a", "b", "c"):
        call(cp, task_id, "claim", owner=owner, lease_seconds=2)
        clock.now += 3
    assert cp.cbr_call("GET", ["agents", "agent-1", "tasks"])["tasks"] == []
    log = cp.cbr_call("GET", ["operation-logs", task_id])["operation_log"]
    assert log["status"] == "timeout" and "lease" in log["error_info"]["message"]
    with pytest.raises(ApiError):
        call(cp, task_id, "claim", owner="d", lease_seconds=2)
