"""SIGHUP after a failed write of the config file: the real daemon refuses a reload that would move it to
another control plane, project or agent, keeps running on what it had, and says so loudly; a change made
on purpose (``allow_reload_identity_change = true``) goes through without a false "deleted" warning."""

from __future__ import annotations

import re
import signal

from tests.integration.agent.conftest import wait_for

REFUSED = "CONFIGURATION RELOAD REFUSED"
DELETED = "had been deleted on the control plane"


def agent_on(client, agent_id: str):
    page = client.list_agents(agent_ids=[agent_id])
    return page.agents[0] if page.agents else None


def test_a_truncated_config_is_refused_and_the_daemon_keeps_its_control_plane(cp_server,
                                                                             agent_host_factory) -> None:
    host = agent_host_factory({"CBR_AGENT_AK": cp_server.ak, "CBR_AGENT_SK": cp_server.sk,
                               "CBR_AGENT_REQUEST_TIMEOUT": "5"})
    config = (f'endpoint = "{cp_server.url}"\nproject_id = "{cp_server.project_id}"\n'
              'heartbeat_interval = 0.2\nbackup_schedule = "6h"\n')
    host.config.write_text(config)
    host.start()
    agent_id = wait_for(host.agent_id, what="identity written")
    client = cp_server.client()
    wait_for(lambda: agent_on(client, agent_id), what="registered")

    host.config.write_text("")  # what a config-management tool that failed half-way leaves
    host.signal(signal.SIGHUP)
    wait_for(lambda: REFUSED in host.log_text(), timeout=10, what="reload refused")
    line = next(li for li in host.log_text().splitlines() if REFUSED in li)
    assert "ERROR" in line and "has no settings at all" in line and cp_server.url in line, line
    refused_at = agent_on(client, agent_id).last_active_time
    wait_for(lambda: agent_on(client, agent_id).last_active_time > refused_at, timeout=10,
             what="heartbeats to the same control plane after the refusal")
    state = host.state_json()
    assert state["endpoint"] == cp_server.url and state["project_id"] == cp_server.project_id, state
    assert state["backup_schedule"] == "6h" and state["next_backup"], state
    assert state["last_reload"]["status"] == "refused", state
    status = host.cli("status")
    assert re.search(r"config reload: +REFUSED at .*has no settings at all", status.stdout), status.stdout
    assert not (host.state / "controlplane.db").exists()  # the embedded control plane was never opened
    assert host.daemon is not None and host.daemon.poll() is None

    # a valid file that names another project: refused as well
    host.config.write_text(config.replace(cp_server.project_id, cp_server.other_project_id))
    host.signal(signal.SIGHUP)
    wait_for(lambda: host.log_text().count(REFUSED) == 2, timeout=10, what="second reload refused")
    assert f"project_id {cp_server.project_id} -> {cp_server.other_project_id}" in host.log_text()

    # the same move on purpose: to the embedded control plane, explicitly
    host.config.write_text('heartbeat_interval = 0.2\nbackup_schedule = "6h"\n'
                           "allow_reload_identity_change = true\n")
    host.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in host.log_text(), timeout=10, what="explicit reload")
    wait_for(lambda: host.state_json().get("endpoint", "").startswith("embedded")
             and host.state_json().get("registered") and (host.state / "controlplane.db").exists(),
             timeout=10, what="registered on the embedded control plane")
    heartbeat = host.state_json()["last_heartbeat"]
    wait_for(lambda: host.state_json()["last_heartbeat"] != heartbeat, timeout=10, what="a later heartbeat")
    log = host.log_text()
    assert f"endpoint {cp_server.url} -> embedded" in log
    assert DELETED not in log, log  # nobody deleted the agent: it only moved
    assert host.daemon.poll() is None


def test_a_restart_on_another_control_plane_is_no_deleted_agent(cp_server, agent_host_factory) -> None:
    host = agent_host_factory({"CBR_AGENT_AK": cp_server.ak, "CBR_AGENT_SK": cp_server.sk,
                               "CBR_AGENT_REQUEST_TIMEOUT": "5"})
    host.config.write_text(f'endpoint = "{cp_server.url}"\nproject_id = "{cp_server.project_id}"\n'
                           "heartbeat_interval = 0.2\n")
    host.start()
    wait_for(lambda: host.state_json().get("created_at"), what="registered with the server")
    assert host.stop()[0] == 0
    host.config.write_text("heartbeat_interval = 0.2\n")  # restarted on the embedded control plane
    host.start()
    wait_for(lambda: host.state_json().get("endpoint", "").startswith("embedded")
             and host.state_json().get("registered") and host.state_json().get("daemon"), timeout=10,
             what="registered on the embedded control plane")
    heartbeat = host.state_json()["last_heartbeat"]
    wait_for(lambda: host.state_json()["last_heartbeat"] != heartbeat, timeout=10, what="a later heartbeat")
    assert DELETED not in host.log_text()
