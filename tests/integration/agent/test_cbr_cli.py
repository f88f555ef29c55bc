"""``cbr-agent backup`` reports its snapshot as a CBR backup; ``backups`` and ``tasks`` list what the
control plane lists (here the embedded one, one host with no server), and a report made while a
server is down waits in the outbox until ``backup`` runs again with the server back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.agent.conftest import server_env, wait_for
from tests.integration.agent.test_cbr_flow import make_tree


def run_json(host: Any, *args: str) -> Any:
    result = host.cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cli_backup_is_reported_and_listed_embedded(agent_host_factory: Any, tmp_path: Path) -> None:
    host = agent_host_factory(env={"CBR_AGENT_PASSWORD": "pw-cli-test"}, name="embedded")
    data = make_tree(tmp_path / "data")
    for args in (("init",), ("register",), ("path", "add", str(data))):
        assert host.cli(*args).returncode == 0
    made = run_json(host, "backup")
    listed = run_json(host, "backups")
    assert listed["count"] == 1
    backup = listed["backups"][0]
    assert backup["extend_info"]["snapshot_id"] == made["snapshot_id"]
    assert backup["resource_id"] == host.agent_id() and backup["extend_info"]["auto_trigger"] is False
    assert backup["extend_info"]["trigger"] == "cli"
    tasks = run_json(host, "tasks", "--status", "success")
    assert [t["operation_type"] for t in tasks["tasks"]] == ["backup"]
    table = host.cli("backups")
    assert table.returncode == 0 and made["snapshot_id"][:16] in table.stdout
    assert run_json(host, "backups", "--agent-id", "someone-else")["count"] == 0
    bad = host.cli("tasks", "--status", "bogus")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_cli_backup_made_while_the_server_is_down_is_reported_later(
    cp_server: Any, agent_host_factory: Any, tmp_path: Path
) -> None:
    host = agent_host_factory(
        env={**server_env(cp_server), "CBR_AGENT_PASSWORD": "pw-cli-test"}, name="remote"
    )
    data = make_tree(tmp_path / "data")
    for args in (("init",), ("register",), ("path", "add", str(data))):
        assert host.cli(*args).returncode == 0
    cp_server.stop()
    made = run_json(host, "backup", str(data))  # paths given: no control plane needed to back up
    assert list((host.state / "outbox").glob("*-backup.json"))
    cp_server.start()
    again = run_json(host, "backup", str(data))  # the next run sends what waited, then its own
    assert not list((host.state / "outbox").glob("*.json"))
    ids = {
        b["extend_info"]["snapshot_id"]
        for b in run_json(host, "backups", "--agent-id", host.agent_id())["backups"]
    }
    assert ids == {made["snapshot_id"], again["snapshot_id"]}


def test_local_schedule_backups_are_cbr_backups(
    cp_server: Any, agent_host_factory: Any, tmp_path: Path
) -> None:
    env = {
        **server_env(cp_server, heartbeat=60),
        "CBR_AGENT_PASSWORD": "pw-cli-test",
        "CBR_AGENT_BACKUP_SCHEDULE": "2s",
    }
    host = agent_host_factory(env=env, name="scheduled")
    data = make_tree(tmp_path / "data")
    for args in (("init",), ("register",), ("path", "add", str(data))):
        assert host.cli(*args).returncode == 0
    host.start()
    client = cp_server.client()

    def scheduled() -> list[Any]:
        backups = client.cbr_call("GET", ["backups"], query=[("resource_id", host.agent_id() or "")])[
            "backups"
        ]
        return [b for b in backups if b["extend_info"].get("trigger") == "schedule"]

    found = wait_for(scheduled, 30, "a scheduled backup reported")
    assert (
        found[0]["extend_info"]["auto_trigger"] is True
        and found[0]["resource_type"] == "OS::Native::Server"
    )
