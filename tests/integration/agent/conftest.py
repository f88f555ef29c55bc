"""The agent as real subprocesses (``python -m cbr_agent ...``) next to the real control-plane server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.03)
    raise AssertionError(f"{what} not met within {timeout} s")


class AgentHost:
    """One host: a config file, a state dir and the environment its commands run with."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.config = directory / "agent.toml"
        self.config.touch()
        self.state = directory / "state"
        self.log_path = directory / "daemon.log"
        self.env = {**os.environ, "CBR_AGENT_CONFIG": str(self.config),
                    "CBR_AGENT_STATE_DIR": str(self.state), **env}
        self.daemon: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cbr_agent", *args], env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        assert self.daemon is None or self.daemon.poll() is not None, "daemon already running"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.daemon = subprocess.Popen([sys.executable, "-m", "cbr_agent", "run", *args],
                                           env={**self.env, **(env or {})}, stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        return self.daemon

    def signal(self, signum: int) -> None:
        assert self.daemon is not None
        self.daemon.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> tuple[int | None, float]:
        """SIGTERM; the exit code and the seconds it took to exit."""
        if self.daemon is None or self.daemon.poll() is not None:
            return (self.daemon.returncode if self.daemon else None), 0.0
        started = time.monotonic()
        self.daemon.send_signal(signal.SIGTERM)
        try:
            code = self.daemon.wait(timeout)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait(10)
            return None, time.monotonic() - started
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait(10)

    def log_text(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        return ""

    def state_json(self, name: str = "agent-state.json") -> dict[str, Any]:
        try:
            return json.loads((self.state / name).read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def agent_id(self) -> str | None:
        return self.state_json("identity.json").get("agent_id")


@pytest.fixture
def agent_host_factory(tmp_path: Path) -> Iterator[Callable[..., AgentHost]]:
    hosts: list[AgentHost] = []

    def factory(env: dict[str, str] | None = None, name: str | None = None) -> AgentHost:
        host = AgentHost(tmp_path / (name or f"host-{len(hosts)}"), env or {})
        hosts.append(host)
        return host

    yield factory
    for host in hosts:
        host.stop()
        host.kill()


def server_env(server: Any, heartbeat: float = 0.2) -> dict[str, str]:
    """The environment that points an agent at ``server`` with AK/SK (secrets never in argv)."""
    return {"CBR_AGENT_ENDPOINT": server.url, "CBR_AGENT_PROJECT_ID": server.project_id,
            "CBR_AGENT_AK": server.ak, "CBR_AGENT_SK": server.sk,
            "CBR_AGENT_HEARTBEAT_INTERVAL": str(heartbeat), "CBR_AGENT_REQUEST_TIMEOUT": "5"}
