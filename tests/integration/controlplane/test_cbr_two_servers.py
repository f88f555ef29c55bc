"""Two ``cbr-agent server`` processes on one database (the shape issue 13 scales out): a task created
through one wakes a poll held by the other, and concurrent claims through both have one winner."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cbr_agent.api.models import AgentRegistration
from cbr_agent.errors import ApiError
from tests.integration.conftest import ServerProcess


@pytest.fixture(params=["sqlite", "postgresql"])
def two_servers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two processes on one SQLite file, or on one PostgreSQL database (LISTEN/NOTIFY wakeups)."""
    db = request.getfixturevalue("postgres").new_database() if request.param == "postgresql" else None
    first = ServerProcess(tmp_path / "a", db=db)
    second = ServerProcess(tmp_path / "b", db=db)
    for attr in ("db", "db_path", "credentials_path", "project_id", "ak", "sk", "token"):
        setattr(second, attr, getattr(first, attr))
    first.start()
    second.start()
    yield first, second
    second.stop()
    first.stop()


def test_work_created_on_one_server_reaches_a_poll_held_on_the_other(two_servers: Any) -> None:
    first, second = two_servers
    a, b = first.client(max_attempts=1), second.client(max_attempts=1)
    agent_id = str(uuid.uuid4())
    a.register_agent(AgentRegistration(agent_id, "h", "10.0.0.1", "linux"))
    vault = a.cbr_call(
        "POST",
        ["vaults"],
        payload={
            "vault": {
                "name": "v",
                "billing": {"object_type": "file", "size": 10},
                "resources": [{"id": agent_id, "type": "OS::Native::Server"}],
            }
        },
    )["vault"]
    version = b.cbr_call("GET", ["agents", agent_id, "tasks"])["config_version"]
    answers: list[dict[str, Any]] = []
    poll = threading.Thread(
        target=lambda: answers.append(
            b.cbr_call(
                "GET",
                ["agents", agent_id, "tasks"],
                query=[("wait", "20"), ("config_version", version)],
                read_timeout=30,
            )
        )
    )
    poll.start()
    time.sleep(0.5)
    asked = time.monotonic()
    a.cbr_call("POST", ["checkpoints"], payload={"checkpoint": {"vault_id": vault["id"]}})
    poll.join(25)
    assert answers and len(answers[0]["tasks"]) == 1
    assert time.monotonic() - asked < 2.0  # the wakeup, not the 15 s re-read

    task_id = answers[0]["tasks"][0]["id"]
    wins: list[str] = []
    losses: list[int] = []

    def claim(client: Any, owner: str) -> None:
        try:
            client.cbr_call(
                "POST",
                ["agents", agent_id, "tasks", task_id, "claim"],
                payload={"owner": owner, "lease_seconds": 30},
                idempotent=False,
            )
            wins.append(owner)
        except ApiError as exc:
            losses.append(exc.status)

    clients = [first.client(max_attempts=1) if i % 2 else second.client(max_attempts=1) for i in range(8)]
    threads = [threading.Thread(target=claim, args=(c, f"owner-{i}")) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(wins) == 1 and losses == [409] * 7
    log = a.cbr_call("GET", ["operation-logs", task_id])["operation_log"]
    assert log["extra_info"]["lease"]["owner"] == wins[0] and log["extra_info"]["lease"]["attempts"] == 1
