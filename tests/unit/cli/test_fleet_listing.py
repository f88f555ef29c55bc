"""``cbr-agent agents``: the fleet view, on the embedded control plane (a real SQLite file)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from cbr_agent.api.models import AgentPage, AgentRegistration
from cbr_agent.cli import fleet
from cbr_agent.cli.main import run
from cbr_agent.controlplane.embedded import EmbeddedControlPlane

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now


def register(cp: EmbeddedControlPlane, host: str, ip: str = "10.0.0.1") -> str:
    agent_id = str(uuid.uuid4())
    cp.register_agent(AgentRegistration(agent_id=agent_id, host_name=host, host_ip=ip, host_os="linux",
                                        agent_version="0.1.0", agent_type="native"))
    return agent_id


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def embedded(state_dir: Path) -> EmbeddedControlPlane:
    """The database `cbr-agent agents --state-dir` opens when no endpoint is set."""
    cp = EmbeddedControlPlane(state_dir / "controlplane.db", "local")
    yield cp
    cp.close()


@pytest.mark.parametrize("seconds, text", [(0, "0s ago"), (59, "59s ago"), (60, "1m ago"),
                                           (3599, "59m ago"), (3600, "1h ago"), (86399, "23h ago"),
                                           (86400, "1d ago"), (10 * 86400 + 5, "10d ago"), (-5, "0s ago")])
def test_age_is_short_and_human(seconds: int, text: str) -> None:
    assert fleet.age(NOW - timedelta(seconds=seconds), NOW) == text


def test_age_of_an_agent_never_seen() -> None:
    assert fleet.age(None, NOW) == "never"


def test_table_shows_status_activity_and_paths(tmp_path: Path, capsys) -> None:
    clock = FakeClock(NOW)
    cp = EmbeddedControlPlane(tmp_path / "cp.db", "p1", stale_after=180, clock=clock)
    web = register(cp, "web-1", "10.0.0.11")
    clock.now += 100
    db = register(cp, "db-1", "10.0.0.12")
    cp.add_paths(web, ["/srv/www", "/etc"], {"/srv/www": ["*.tmp", "/srv/www/cache"]})
    cp.update_agent(db, "uninstall")
    clock.now += 200  # web-1 is silent for 300 s now: abnormal
    agents = fleet.list_fleet(cp)
    fleet.print_fleet(agents, "https://cp.example", now=datetime.fromtimestamp(clock.now, timezone.utc))
    lines = capsys.readouterr().out.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["AGENT ID", "HOST", "IP", "STATUS", "LAST ACTIVE", "VERSION",
                                             "PATHS"]
    rows = {line.split()[0]: re.split(r"\s{2,}", line) for line in lines[1:3]}
    assert rows[web] == [web, "web-1", "10.0.0.11", "abnormal", "5m ago", "0.1.0",
                         "/etc, /srv/www (2 excludes)"]
    assert rows[db] == [db, "db-1", "10.0.0.12", "uninstall", "3m ago", "0.1.0", "-"]
    assert lines[3] == "2 agents on https://cp.example: 1 abnormal, 1 uninstall"
    cp.close()


def test_an_empty_fleet_says_so(capsys) -> None:
    fleet.print_fleet([], "https://cp.example", now=NOW)
    assert capsys.readouterr().out == "no agents registered on https://cp.example\n"


def test_every_page_is_walked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fleet, "PAGE_SIZE", 3)
    cp = EmbeddedControlPlane(tmp_path / "cp.db", "p1")
    ids = [register(cp, f"host-{i}") for i in range(7)]
    listed = fleet.list_fleet(cp)
    assert sorted(a.agent_id for a in listed) == sorted(ids)
    assert len(listed) == 7
    cp.close()


class IgnoresOffset:
    """A control plane that answers every page with the first one (a server we do not control)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def list_agents(self, **kwargs: Any) -> AgentPage:
        self.calls += 1
        return self.inner.list_agents(**{**kwargs, "offset": 0})

    def show_agent(self, agent_id: str) -> Any:
        return self.inner.show_agent(agent_id)


def test_a_server_that_ignores_offset_does_not_loop_forever(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fleet, "PAGE_SIZE", 2)
    inner = EmbeddedControlPlane(tmp_path / "cp.db", "p1")
    for i in range(5):
        register(inner, f"host-{i}")
    cp = IgnoresOffset(inner)
    listed = fleet.list_fleet(cp)
    assert len(listed) == 2 and cp.calls == 2
    inner.close()


class LeavesPathsOut(IgnoresOffset):
    """A list API that omits ``paths``, as the reference's own example does for some agents."""

    def list_agents(self, **kwargs: Any) -> AgentPage:
        page = self.inner.list_agents(**kwargs)
        from dataclasses import replace

        return replace(page, agents=tuple(replace(a, paths=None) for a in page.agents))


def test_paths_missing_from_the_list_are_fetched_per_agent(tmp_path: Path) -> None:
    inner = EmbeddedControlPlane(tmp_path / "cp.db", "p1")
    agent_id = register(inner, "host")
    inner.add_paths(agent_id, ["/data"])
    listed = fleet.list_fleet(LeavesPathsOut(inner))
    assert [p.dir_path for p in listed[0].paths] == ["/data"]
    inner.close()


def test_cli_json_lists_the_fleet_with_filters(embedded: EmbeddedControlPlane, state_dir: Path,
                                               capsys) -> None:
    kept = register(embedded, "a")
    gone = register(embedded, "b")
    embedded.add_paths(kept, ["/home"], {"/home": ["*.cache"]})
    embedded.update_agent(gone, "uninstall")

    assert run(["agents", "--state-dir", str(state_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["count"] == 2 and report["project_id"] == "local"
    by_id = {a["agent_id"]: a for a in report["agents"]}
    assert by_id[kept]["paths"] == [{"dir_path": "/home", "excludes": ["*.cache"]}]
    assert by_id[kept]["status"] == "normal" and by_id[gone]["status"] == "uninstall"
    assert by_id[kept]["last_active_time"].endswith("+00:00")
    assert set(by_id[kept]) >= {"host_name", "host_ip", "host_os", "agent_version", "created_at"}

    assert run(["agents", "--state-dir", str(state_dir), "--json", "--status", "uninstall"]) == 0
    assert [a["agent_id"] for a in json.loads(capsys.readouterr().out)["agents"]] == [gone]
    assert run(["agents", "--state-dir", str(state_dir), "--json", "--agent-id", kept]) == 0
    assert [a["agent_id"] for a in json.loads(capsys.readouterr().out)["agents"]] == [kept]


def test_cli_refuses_an_unknown_status(state_dir: Path, capsys) -> None:
    assert run(["agents", "--state-dir", str(state_dir), "--status", "sleeping"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'sleeping'" in err and len(err.strip().splitlines()) == 1


def test_cli_with_an_endpoint_but_no_credentials_is_a_config_error(state_dir: Path, capsys) -> None:
    assert run(["agents", "--state-dir", str(state_dir), "--endpoint", "http://127.0.0.1:9",
                "--project-id", "p"]) == 2
    assert "no credentials" in capsys.readouterr().err
