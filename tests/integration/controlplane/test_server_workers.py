"""``cbr-agent server --workers N`` (issue 13): N processes serve one port and one database; a worker
killed with SIGKILL is replaced while the others keep answering; SIGTERM stops them all, exit 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cbr_agent.api.models import AgentRegistration


def _workers(server: Any) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = re.findall(r"(\d+) worker processes \(([\d, ]+)\)", server.log_text())
        if found:
            return [int(p) for p in found[-1][1].split(", ")]
        time.sleep(0.05)
    raise AssertionError(f"no worker list logged:\n{server.log_text()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_workers_share_the_port_and_survive_one_being_killed(
    store: str, cp_server_factory: Any, request: pytest.FixtureRequest
) -> None:
    db = request.getfixturevalue("postgres").new_database() if store == "postgresql" else None
    server = cp_server_factory(db=db, extra_args=["--workers", "2"])
    pids = _workers(server)
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    client = server.client(max_attempts=3)
    ids = [str(uuid.uuid4()) for _ in range(20)]
    for agent_id in ids:  # each call on a new connection: the kernel spreads them over the workers
        server.client(max_attempts=1).register_agent(AgentRegistration(agent_id, "h", "10.0.0.1", "linux"))
    os.kill(pids[0], signal.SIGKILL)
    assert client.list_agents(agent_ids=ids).count == 20  # the other worker answers meanwhile
    deadline = time.monotonic() + 10
    while "starting another" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "starting another" in server.log_text()
    for _ in range(10):
        assert server.client(max_attempts=1).show_agent(ids[0]).agent_id == ids[0]
    assert server.stop() == 0
    time.sleep(0.2)
    assert not any(_alive(p) for p in pids[1:])


def test_workers_out_of_range_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cbr_agent", "server", "--db", str(tmp_path / "x.db"),
         "--credentials", str(tmp_path / "c.toml"), "--workers", "0"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["cbr-agent: error: --workers must be from 1 to 64, got 0"]
