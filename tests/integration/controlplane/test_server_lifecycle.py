"""The server process: liveness with a short stale_after, concurrency, restart, SIGTERM, bad starts."""

from __future__ import annotations

import http.client
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cbr_agent.api.models import AgentRegistration
from cbr_agent.errors import ApiError, ControlPlaneUnavailable


def reg(agent_id: str, n: int = 0) -> AgentRegistration:
    return AgentRegistration(agent_id=agent_id, host_name=f"host-{n}", host_ip=f"10.0.0.{n % 250}",
                             host_os="linux", agent_version="1.0.0", agent_type="native")


def test_silent_agent_turns_abnormal_and_heartbeat_restores_it(cp_server_factory: Any) -> None:
    server = cp_server_factory(stale_after=1.0)
    with server.client(max_attempts=1) as client:
        quiet, chatty = str(uuid.uuid4()), str(uuid.uuid4())
        client.register_agent(reg(quiet))
        client.register_agent(reg(chatty))
        assert client.show_agent(quiet).status == "normal"
        time.sleep(1.3)
        client.register_agent(reg(chatty))
        assert client.show_agent(quiet).status == "abnormal"
        abnormal = client.list_agents(status="abnormal")
        assert [a.agent_id for a in abnormal.agents] == [quiet] and abnormal.count == 1
        assert [a.agent_id for a in client.list_agents(status="normal").agents] == [chatty]
        assert client.register_agent(reg(quiet)).status == "normal"
        assert client.list_agents(status="abnormal").count == 0


def test_concurrent_heartbeats_from_many_threads(cp_server: Any) -> None:
    ids = [str(uuid.uuid4()) for _ in range(40)]
    errors: list[BaseException] = []
    counts = [0] * 16

    def beat(worker: int) -> None:
        try:
            with cp_server.client(max_attempts=1, timeout=20.0) as client:
                for i in range(25):
                    agent_id = ids[(worker * 7 + i) % len(ids)]
                    assert client.register_agent(reg(agent_id, worker)).status == "normal"
                    if i % 5 == 0:
                        client.add_paths(agent_id, [f"/data/{worker % 4}"])
                    counts[worker] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=beat, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(counts) == 16 * 25
    with cp_server.client() as client:
        page = client.list_agents()
        assert page.count == 40 and {a.agent_id for a in page.agents} == set(ids)
        assert all(a.status == "normal" for a in page.agents)
        paths = {p.dir_path for a in page.agents for p in a.paths or ()}
        assert paths == {"/data/0", "/data/1", "/data/2", "/data/3"}


def test_restart_keeps_all_data(cp_server: Any) -> None:
    agent_id = str(uuid.uuid4())
    with cp_server.client() as client:
        client.register_agent(reg(agent_id, 7))
        client.add_paths(agent_id, ["/srv", "/home"], {"/srv": ["*.tmp", "/srv/cache"]})
        client.update_agent(agent_id, "uninstall")
        before = client.show_agent(agent_id)
    assert cp_server.stop() == 0
    cp_server.start()
    with cp_server.client() as client:
        assert client.show_agent(agent_id) == before
        assert client.list_agents().count == 1


def test_sigterm_stops_cleanly(cp_server: Any) -> None:
    with cp_server.client() as client:
        client.register_agent(reg(str(uuid.uuid4())))
    started = time.monotonic()
    assert cp_server.stop() == 0
    assert time.monotonic() - started < 10
    assert "control plane stopped" in cp_server.log_text()
    assert "Traceback" not in cp_server.log_text()
    # the WAL was checkpointed on close: the database file alone holds the data
    assert not Path(str(cp_server.db_path) + "-wal").exists() or \
        Path(str(cp_server.db_path) + "-wal").stat().st_size == 0


def run_server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cbr_agent", "server", *args], capture_output=True,
                          text=True, timeout=60)


def test_bad_starts_are_one_line_errors(tmp_path: Path) -> None:
    creds = tmp_path / "creds.toml"
    creds.write_text('[[tokens]]\ntoken = "t"\nproject_id = "p"\n')
    os.chmod(creds, 0o644)
    db = str(tmp_path / "cp.db")
    result = run_server("--port", "0", "--db", db, "--credentials", str(creds))
    assert result.returncode == 2
    assert "chmod 600" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    os.chmod(creds, 0o600)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_server("--port", str(port), "--db", db, "--credentials", str(creds))
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
    result = run_server("--port", "0", "--db", db, "--credentials", str(creds), "--stale-after", "0")
    assert result.returncode == 2 and "--stale-after" in result.stderr
    result = run_server("--port", "0", "--db", db, "--credentials", str(tmp_path / "missing.toml"))
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_database_failure_is_500_without_details_and_changes_nothing(cp_server: Any) -> None:
    with cp_server.client(max_attempts=1) as client:
        client.register_agent(reg("kept"))
        # a fault outside the server: the database starts refusing new agents
        conn = sqlite3.connect(cp_server.db_path)
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON agents "
                     "BEGIN SELECT RAISE(ABORT, 'secret internal detail'); END")
        conn.commit()
        conn.close()
        with pytest.raises((ApiError, ControlPlaneUnavailable)) as exc_info:
            client.register_agent(reg("refused"))
        assert "secret internal detail" not in str(exc_info.value)
        assert [a.agent_id for a in client.list_agents().agents] == ["kept"]
    body = json.dumps({"agent": {"agent_id": "refused2", "host_name": "h", "host_ip": "i",
                                 "host_os": "linux"}})
    conn_http = http.client.HTTPConnection("127.0.0.1", cp_server.port, timeout=10)
    conn_http.request("POST", f"/v3/{cp_server.project_id}/agents", body,
                      {"Content-Type": "application/json", "X-Auth-Token": cp_server.token})
    response = conn_http.getresponse()
    data = json.loads(response.read())
    conn_http.close()
    assert (response.status, data["error_code"]) == (500, "BackupService.9910")
    assert "secret" not in data["error_msg"]
    assert "secret internal detail" in cp_server.log_text()  # the operator sees why
