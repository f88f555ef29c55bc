"""The daemon as a real subprocess against the real control-plane server on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

from tests.integration.agent.conftest import server_env, wait_for


def agent_on(client, agent_id: str, status: str | None = None):
    page = client.list_agents(agent_ids=[agent_id], status=status)
    return page.agents[0] if page.agents else None


def test_registers_heartbeats_goes_abnormal_when_killed_and_normal_after_restart(
        cp_server_factory, agent_host_factory) -> None:
    server = cp_server_factory(stale_after=1.0)
    host = agent_host_factory(server_env(server, heartbeat=0.2))
    client = server.client()
    host.start()
    agent_id = wait_for(host.agent_id, what="identity written")
    first = wait_for(lambda: agent_on(client, agent_id, "normal"), what="registered and normal")
    assert first.host_os == "linux" and first.agent_version
    wait_for(lambda: agent_on(client, agent_id).last_active_time > first.last_active_time,
             what="heartbeats move last_active_time")
    assert "registered as agent" in host.log_text()
    host.kill()
    wait_for(lambda: agent_on(client, agent_id, "abnormal"), timeout=5, what="abnormal after kill")
    assert agent_on(client, agent_id, "normal") is None
    host.start()
    wait_for(lambda: agent_on(client, agent_id, "normal"), timeout=5, what="normal after restart")
    code, seconds = host.stop()
    assert code == 0 and seconds < 5


def test_path_changes_from_the_cli_reach_the_daemon(cp_server, agent_host_factory, tmp_path: Path) -> None:
    host = agent_host_factory(server_env(cp_server, heartbeat=5.0))  # slow beats: the nudge must work
    host.start()
    wait_for(lambda: host.state_json().get("registered"), what="registered")
    data = tmp_path / "data"
    data.mkdir()
    added = host.cli("path", "add", str(data), "--exclude", "*.tmp")
    assert added.returncode == 0, added.stderr
    assert f"added: {data}" in added.stdout
    wait_for(lambda: "path list changed" in host.log_text(), timeout=3, what="daemon saw the change")
    cached = json.loads((host.state / "paths.json").read_text())["paths"]
    assert [(p["dir_path"], p["excludes"]) for p in cached] == [(str(data), ["*.tmp"])]
    listed = host.cli("path", "list", "--json")
    assert json.loads(listed.stdout)["paths"][0]["dir_path"] == str(data)
    removed = host.cli("path", "remove", str(data))
    assert "removed: " in removed.stdout
    wait_for(lambda: json.loads((host.state / "paths.json").read_text())["paths"] == [], timeout=3,
             what="daemon saw the removal")
    status = json.loads(host.cli("status", "--json").stdout)
    assert status["daemon"]["running"] is True and status["registered"] is True


def test_control_plane_stopped_and_restarted_under_a_running_daemon(cp_server, agent_host_factory,
                                                                     tmp_path: Path) -> None:
    host = agent_host_factory(server_env(cp_server, heartbeat=0.2))
    assert host.cli("path", "add", str(tmp_path)).returncode == 0
    host.start()
    wait_for(lambda: host.state_json().get("control_plane") == "ok", what="registered")
    cp_server.stop()
    wait_for(lambda: host.state_json().get("control_plane") == "unavailable", timeout=10,
             what="daemon notices the control plane is away")
    time.sleep(1.0)
    log = host.log_text()
    assert log.count("heartbeat failed") == 1, log  # once per change of state
    assert host.daemon.poll() is None
    status = host.cli("status")
    assert "unavailable" in status.stdout and str(tmp_path) in status.stdout  # cached paths
    listed = host.cli("path", "list")
    assert listed.returncode == 3 and listed.stdout.strip() == str(tmp_path)
    assert "showing the list cached at" in listed.stderr
    before = host.state_json().get("last_heartbeat")
    cp_server.start()
    wait_for(lambda: host.state_json().get("control_plane") == "ok", timeout=15,
             what="daemon recovers by itself")
    assert host.state_json()["last_heartbeat"] > before
    assert "reachable again" in host.log_text()


def test_restart_with_the_control_plane_down_still_knows_its_paths(cp_server, agent_host_factory,
                                                                   tmp_path: Path) -> None:
    host = agent_host_factory(server_env(cp_server, heartbeat=0.2))
    assert host.cli("path", "add", str(tmp_path)).returncode == 0
    cp_server.stop()
    host.start()
    wait_for(lambda: "running on 1 cached path(s)" in host.log_text(), timeout=10,
             what="runs on the cached path list")
    code, seconds = host.stop()
    assert code == 0 and seconds < 5


def test_sigterm_stops_within_5_seconds_even_during_a_hanging_call(agent_host_factory) -> None:
    with socket.socket() as blackhole:  # accepts connections, never answers
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        url = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        host = agent_host_factory({"CBR_AGENT_ENDPOINT": url, "CBR_AGENT_AK": "AK", "CBR_AGENT_SK": "SK",
                                   "CBR_AGENT_PROJECT_ID": "p1", "CBR_AGENT_REQUEST_TIMEOUT": "60"})
        host.start()
        wait_for(lambda: host.state_json().get("daemon"), what="daemon started")
        time.sleep(0.5)  # the registration call is now hanging on the socket
        code, seconds = host.stop()
    print(f"SIGTERM to exit during a hanging heartbeat: {seconds:.2f} s")
    assert code == 0 and seconds < 5, host.log_text()
    assert "stopped" in host.log_text()


def test_sd_notify_ready_status_watchdog_stopping(cp_server, agent_host_factory, tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(5)
        host = agent_host_factory(server_env(cp_server, heartbeat=0.3))
        host.start(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"})
        messages: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in messages) < 3:
            messages.append(sock.recv(4096).decode())
        host.stop()
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except OSError:
                break
            if "STOPPING=1" in messages[-1]:
                break
    text = "\n".join(messages)
    ready = [m for m in messages if "READY=1" in m]
    assert ready and "STATUS=agent " in ready[0] and f"MAINPID={host.daemon.pid}" in ready[0]
    assert sum(m == "WATCHDOG=1" for m in messages) >= 3
    assert "STOPPING=1" in messages[-1], text
    assert cp_server.sk not in text


def test_sighup_reloads_the_config_file(cp_server, agent_host_factory) -> None:
    host = agent_host_factory(server_env(cp_server, heartbeat=0.2))
    host.start()
    agent_id = wait_for(host.agent_id)
    client = cp_server.client()
    wait_for(lambda: agent_on(client, agent_id))
    host.config.write_text('host_nickname = "renamed"\n')
    host.signal(signal.SIGHUP)
    wait_for(lambda: agent_on(client, agent_id).host_nickname == "renamed", timeout=5,
             what="reloaded nickname reported")
    host.config.write_text("heartbeat_interval = -5\n")
    host.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in host.log_text(), timeout=5)
    assert host.daemon.poll() is None  # a bad reload keeps the running configuration


def test_agent_deleted_on_the_control_plane_is_registered_again(cp_server, agent_host_factory) -> None:
    host = agent_host_factory(server_env(cp_server, heartbeat=0.2))
    host.start()
    agent_id = wait_for(host.agent_id)
    client = cp_server.client()
    wait_for(lambda: agent_on(client, agent_id))
    client.remove_agent(agent_id)
    wait_for(lambda: "had been deleted on the control plane" in host.log_text(), timeout=5)
    assert agent_on(client, agent_id, "normal") is not None


def test_wrong_credentials_are_logged_once_and_the_daemon_keeps_trying(cp_server, agent_host_factory) -> None:
    env = {**server_env(cp_server, heartbeat=0.1), "CBR_AGENT_SK": "wrong-secret"}
    host = agent_host_factory(env)
    host.start()
    wait_for(lambda: host.state_json().get("control_plane") == "refused", timeout=10)
    time.sleep(0.5)
    log = host.log_text()
    assert log.count("heartbeat failed") == 1
    assert "wrong-secret" not in log and "wrong-secret" not in json.dumps(host.state_json())


def test_json_log_format(cp_server, agent_host_factory) -> None:
    host = agent_host_factory(server_env(cp_server, heartbeat=0.2))
    host.start("--log-format", "json")
    wait_for(lambda: "registered as agent" in host.log_text())
    host.stop()
    lines = [json.loads(line) for line in host.log_text().splitlines() if line.strip()]
    assert any("registered as agent" in entry["message"] for entry in lines)
    assert all({"time", "level", "message"} <= set(entry) for entry in lines)


def test_second_daemon_on_the_same_state_dir_is_refused(cp_server, agent_host_factory) -> None:
    host = agent_host_factory(server_env(cp_server, heartbeat=0.2))
    host.start()
    wait_for(lambda: host.state_json().get("daemon"))
    second = host.cli("run")
    assert second.returncode == 1
    assert f"pid {host.daemon.pid}" in second.stderr and "Traceback" not in second.stderr


def test_sigterm_cancels_a_running_backup_of_the_real_engine(cp_server, agent_host_factory,
                                                             tmp_path: Path) -> None:
    data = tmp_path / "big"
    data.mkdir()
    for i in range(4):  # incompressible, so the engine needs a while for it
        (data / f"blob-{i}.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    host = agent_host_factory({**server_env(cp_server, heartbeat=0.5), "CBR_AGENT_BACKUP_SCHEDULE": "1h"})
    assert host.cli("path", "add", str(data)).returncode == 0
    host.start()
    wait_for(lambda: host.state_json().get("backup_running"), timeout=15, what="backup started")
    status = host.cli("status")
    assert "running now" in status.stdout and "running (pid" in status.stdout
    code, seconds = host.stop()
    print(f"SIGTERM to exit during a backup: {seconds:.2f} s")
    assert code == 0 and seconds < 5, host.log_text()
    last = host.state_json()["last_backup"]
    assert last["status"] == "cancelled", last
    assert host.state_json()["backup_running"] is False
