"""The daemon in-process on the embedded control plane: heartbeats, path sync, the backup scheduler,
cancellation on stop, a deleted agent, a corrupt cache, a control plane that answers 503."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cbr_agent.agent.connect import open_control_plane
from cbr_agent.agent.daemon import Daemon
from cbr_agent.agent.state import PATHS_FILE, load_agent_state, load_paths
from cbr_agent.agent.status import collect_status
from cbr_agent.api.models import AgentRegistration
from cbr_agent.config import Settings, load_settings
from cbr_agent.errors import Cancelled, ControlPlaneUnavailable


def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    config = tmp_path / "agent.toml"
    config.touch()
    return load_settings(config_file=config, environ={},
                         overrides={"state_dir": str(tmp_path / "state"), "heartbeat_interval": "0.1",
                                    **overrides})


class Running:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.daemon.run()

    def stop(self) -> float:
        started = time.monotonic()
        self.daemon.request_stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        return time.monotonic() - started


class SlowJob:
    """Stands in for the backup engine: runs until cancelled, as a long backup would."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.calls: list[list[Any]] = []

    def __call__(self, settings: Settings, paths: list[Any], *, cancel: threading.Event) -> Any:
        self.calls.append(paths)
        self.started.set()
        if cancel.wait(30):
            raise Cancelled("cancelled")
        raise AssertionError("never cancelled")


class QuickJob:
    def __init__(self) -> None:
        self.calls: list[list[Any]] = []

    def __call__(self, settings: Settings, paths: list[Any], *, cancel: threading.Event) -> Any:
        self.calls.append(paths)
        return type("S", (), {"snapshot_id": f"snap-{len(self.calls)}", "warnings": ["w"],
                              "to_dict": lambda self: {}})()


def test_heartbeats_sync_paths_and_stop(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    running = Running(Daemon(settings, job=lambda: QuickJob()))
    state = settings.state_dir
    first = wait_for(lambda: load_agent_state(state).get("last_heartbeat"))
    agent_id = load_agent_state(state)["agent_id"]
    wait_for(lambda: load_agent_state(state).get("last_heartbeat") != first)
    cp = open_control_plane(settings)
    cp.add_paths(agent_id, ["/srv/data"], {"/srv/data": ["*.tmp"]})
    cache = wait_for(lambda: load_paths(state) if (state / PATHS_FILE).exists() and
                     load_paths(state).paths else None)
    assert [(p.dir_path, p.excludes) for p in cache.paths] == [("/srv/data", ("*.tmp",))]
    assert running.stop() < 5
    assert running.code == 0
    final = load_agent_state(state)
    assert final["daemon"] is None and final["registered"] is True


def test_scheduled_backup_runs_and_is_cancelled_on_stop(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, backup_schedule="1h")
    cp = open_control_plane(settings)
    job = SlowJob()
    running = Running(Daemon(settings, job=lambda: job))
    agent_id = wait_for(lambda: load_agent_state(settings.state_dir).get("agent_id"))
    wait_for(lambda: load_agent_state(settings.state_dir).get("registered"))
    cp.add_paths(agent_id, ["/srv"])
    assert job.started.wait(5)  # never ran before: due at once, as soon as there are paths
    assert [p.dir_path for p in job.calls[0]] == ["/srv"]
    assert load_agent_state(settings.state_dir)["backup_running"] is True
    assert running.stop() < 5
    last = load_agent_state(settings.state_dir)["last_backup"]
    assert last["status"] == "cancelled"


def test_backup_outcome_and_next_time_recorded(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, backup_schedule="1h")
    cp = open_control_plane(settings)
    agent_id = "7f7c7a3e-5a8e-4a57-9c3c-3d2c1f0e9b11"
    settings = settings_for(tmp_path, backup_schedule="1h", agent_id=agent_id)
    cp.register_agent(AgentRegistration(agent_id, "h", "10.0.0.1", "linux"))
    cp.add_paths(agent_id, ["/a"])
    job = QuickJob()
    running = Running(Daemon(settings, job=lambda: job))
    last = wait_for(lambda: load_agent_state(settings.state_dir).get("last_backup"))
    assert last["status"] == "warnings" and last["snapshot_id"] == "snap-1"
    finished = datetime.fromisoformat(last["finished_at"])

    def next_backup() -> datetime | None:
        value = load_agent_state(settings.state_dir).get("next_backup")
        return datetime.fromisoformat(value) if value else None

    due = wait_for(lambda: (next_backup() or finished) > finished and next_backup())
    assert abs((due - finished).total_seconds() - 3600) < 5
    # status run with settings that lack the schedule still shows the running daemon's
    report = collect_status(settings_for(tmp_path, agent_id=agent_id))
    assert report["daemon"]["running"] and report["backup_schedule"] == "1h"
    assert report["next_backup"] == due.isoformat(timespec="seconds")
    assert report["last_backup"]["snapshot_id"] == "snap-1"
    running.stop()
    assert len(job.calls) == 1  # one hour has not passed


def test_deleted_agent_is_registered_again_and_said(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(tmp_path)
    cp = open_control_plane(settings)
    with caplog.at_level(logging.INFO):
        running = Running(Daemon(settings))
        agent_id = wait_for(lambda: load_agent_state(settings.state_dir).get("agent_id"))
        wait_for(lambda: load_agent_state(settings.state_dir).get("registered"))
        cp.add_paths(agent_id, ["/x"])
        wait_for(lambda: (settings.state_dir / PATHS_FILE).exists()
                 and load_paths(settings.state_dir).paths)
        cp.remove_agent(agent_id)
        wait_for(lambda: "had been deleted on the control plane" in caplog.text)
        assert cp.show_agent(agent_id).status == "normal"
        wait_for(lambda: load_paths(settings.state_dir).paths == ())  # the control plane's truth
        running.stop()


def test_corrupt_cache_is_recovered_from_the_control_plane(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    agent_id = "0b9f0c4e-8f7c-4b8f-9a57-5a1f1d3c2b10"
    settings = settings_for(tmp_path, agent_id=agent_id)
    cp = open_control_plane(settings)
    cp.register_agent(AgentRegistration(agent_id, "h", "10.0.0.1", "linux"))
    cp.add_paths(agent_id, ["/kept"])
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / PATHS_FILE).write_text("{this is not json")
    running = Running(Daemon(settings))
    wait_for(lambda: (settings.state_dir / (PATHS_FILE + ".corrupt")).exists())
    cache = wait_for(lambda: (settings.state_dir / PATHS_FILE).exists()
                     and load_paths(settings.state_dir))
    assert [p.dir_path for p in cache.paths] == ["/kept"]
    running.stop()


class FlakyControlPlane:
    """A control plane that answers 503 while ``down`` is set (a fault outside the agent)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.down = threading.Event()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.real, name)
        if name == "close" or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.down.is_set():
                raise ControlPlaneUnavailable("control plane answered 503 Service Unavailable")
            return attribute(*args, **kwargs)

        return call


def test_control_plane_down_logs_once_backs_off_and_recovers(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(tmp_path, heartbeat_interval="0.05")
    flaky = FlakyControlPlane(open_control_plane(settings))
    flaky.down.set()
    with caplog.at_level(logging.INFO, logger="cbr_agent"):
        running = Running(Daemon(settings, open_cp=lambda _s: flaky))
        wait_for(lambda: load_agent_state(settings.state_dir).get("control_plane") == "unavailable")
        time.sleep(1.0)
        failures = [r for r in caplog.records if "heartbeat failed" in r.getMessage()]
        assert len(failures) == 1  # once per change of state, not once per failure
        assert flaky.calls < 1.0 / 0.05  # backing off, not hammering every interval
        error = load_agent_state(settings.state_dir)["last_error"]
        assert "503 Service Unavailable" in error["message"]
        flaky.down.clear()
        wait_for(lambda: load_agent_state(settings.state_dir).get("control_plane") == "ok", timeout=5)
        assert "reachable again" in caplog.text
        running.stop()
