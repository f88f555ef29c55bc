"""The agent's outbox (reports survive an absent control plane, go out in order, are dropped only
when refused) and the rules for where a CBR restore may write."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cbr_agent.agent import outbox
from cbr_agent.agent.taskrun import TaskFailed, check_destination
from cbr_agent.api.client import HttpControlPlane
from cbr_agent.api.models import AgentRegistration
from cbr_agent.controlplane.embedded import EmbeddedControlPlane


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_reports_wait_while_the_control_plane_is_away_then_go_out_in_order(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for sid in ("aa", "bb"):
        outbox.report_backup(state, "agent-1", {"backup": {"snapshot_id": sid}})
    outbox.report_forgotten(state, "agent-1", ["aa"])
    away = HttpControlPlane(f"http://127.0.0.1:{closed_port()}", "proj", token="t", max_attempts=1)
    assert outbox.flush(state, away) == 3
    with EmbeddedControlPlane(tmp_path / "cp.db", "proj") as cp:
        cp.register_agent(AgentRegistration("agent-1", "h", "10.0.0.1", "linux"))
        assert outbox.flush(state, cp) == 0
        backups = cp.cbr_call("GET", ["backups"])["backups"]
    assert [b["extend_info"]["snapshot_id"] for b in backups] == ["bb"]  # "aa" was reported, then forgotten


def test_a_refused_report_is_dropped_not_retried_forever(tmp_path: Path) -> None:
    state = tmp_path / "state"
    outbox.report_backup(state, "never-registered", {"backup": {"snapshot_id": "cc"}})
    with EmbeddedControlPlane(tmp_path / "cp.db", "proj") as cp:
        assert outbox.flush(state, cp) == 0


@pytest.mark.parametrize("destination", ["relative/dir", "/srv/../etc", ""])
def test_restore_refuses_relative_and_dotdot(destination: str) -> None:
    with pytest.raises(TaskFailed):
        check_destination(destination, ["/data"])


def test_restore_inside_backed_up_paths_only_when_empty(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "full").mkdir(parents=True)
    (data / "full" / "f").write_text("x")
    (data / "empty").mkdir()
    with pytest.raises(TaskFailed, match="not empty"):
        check_destination(str(data / "full"), [str(data)])
    with pytest.raises(TaskFailed, match="not empty"):
        check_destination(str(data), [str(data)])
    assert check_destination(str(data / "empty"), [str(data)]) == str(data / "empty")
    assert check_destination(str(data / "new"), [str(data)]) == str(data / "new")
    assert check_destination(str(tmp_path / "elsewhere"), [str(data)]) == str(tmp_path / "elsewhere")
