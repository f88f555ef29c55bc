"""``cbr-agent server --metrics-address``: /metrics on its own address, agents by status, heartbeats and
requests by route template (never the raw path), latency histograms; bad or busy addresses."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cbr_agent.api.models import AgentRegistration
from cbr_agent.errors import ApiError
from tests.integration.conftest import free_port


def reg(agent_id: str) -> AgentRegistration:
    return AgentRegistration(agent_id=agent_id, host_name="metrics-host", host_ip="10.1.1.1",
                             host_os="linux", agent_version="1.0.0", agent_type="native")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_on_their_own_address(cp_server_factory: Any) -> None:
    port = free_port()
    server = cp_server_factory(stale_after=1.0, extra_args=["--metrics-address", f"127.0.0.1:{port}"])
    project = server.project_id
    with server.client(max_attempts=1) as client:
        quiet, chatty, gone = (str(uuid.uuid4()) for _ in range(3))
        for agent_id in (quiet, chatty, gone):
            client.register_agent(reg(agent_id))
        client.update_agent(gone)
        time.sleep(1.2)
        client.register_agent(reg(chatty))
        client.show_agent(chatty)
        with pytest.raises(ApiError):
            client.show_agent("no-such-agent")
    from cbr_agent.api.client import HttpControlPlane

    # the other project's token on this project: 403
    with HttpControlPlane(server.url, project, token=server.other_token, max_attempts=1) as other, \
            pytest.raises(ApiError):
        other.list_agents()
    try:
        urllib.request.urlopen(f"{server.url}/v3/{project}/nothing-here/{uuid.uuid4()}", timeout=5)
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
    console = urllib.request.Request(f"{server.url}/console/agents/{uuid.uuid4()}")
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirected:
        opener.open(console, timeout=5)
    assert redirected.value.code == 303
    found = scrape(port)
    assert found[("cbr_controlplane_http_requests_total",
                  (("code", "303"), ("method", "GET"), ("route", "/console/agents/{agent_id}")))] == 1
    assert found[("cbr_controlplane_agents", (("project_id", project), ("status", "normal")))] == 1
    assert found[("cbr_controlplane_agents", (("project_id", project), ("status", "abnormal")))] == 1
    assert found[("cbr_controlplane_agents", (("project_id", project), ("status", "uninstall")))] == 1
    assert found[("cbr_controlplane_heartbeats_total", (("result", "ok"),))] == 4
    agent_route = "/v3/{project_id}/agents/{agent_id}"
    assert found[("cbr_controlplane_http_requests_total",
                  (("code", "200"), ("method", "GET"), ("route", agent_route)))] == 1
    assert found[("cbr_controlplane_http_requests_total",
                  (("code", "404"), ("method", "GET"), ("route", agent_route)))] == 1
    assert found[("cbr_controlplane_http_requests_total",
                  (("code", "404"), ("method", "GET"), ("route", "unmatched")))] == 2  # + readiness GET /
    assert found[("cbr_controlplane_http_requests_total",
                  (("code", "403"), ("method", "GET"), ("route", "/v3/{project_id}/agents")))] == 1
    assert found[("cbr_controlplane_http_request_duration_seconds_count",
                  (("method", "POST"), ("route", "/v3/{project_id}/agents")))] == 4
    assert found[("cbr_controlplane_http_request_duration_seconds_bucket",
                  (("le", "+Inf"), ("method", "PUT"), ("route", agent_route)))] == 1
    # bounded labels: no project id, agent id or raw path in any route label
    routes = {dict(labels).get("route") for _, labels in found} - {None}
    assert all(project not in r and "nothing-here" not in r for r in routes), routes
    # /metrics is not on the API address
    try:
        urllib.request.urlopen(f"{server.url}/metrics", timeout=5)
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
    assert server.stop() == 0


def run_server(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    from tests.integration.conftest import write_credentials

    creds = tmp_path / "creds.toml"
    write_credentials(creds, {"access_keys": [], "tokens": [("t", "p")]})
    return subprocess.run([sys.executable, "-m", "cbr_agent", "server", "--port", "0", "--db",
                           str(tmp_path / "cp.db"), "--credentials", str(creds), *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_bad_or_busy_metrics_address_is_one_line(tmp_path: Path) -> None:
    bad = run_server(tmp_path, "--metrics-address", "nowhere")
    assert bad.returncode != 0 and "--metrics-address: 'nowhere' has no port" in bad.stderr
    assert "Traceback" not in bad.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        out = run_server(tmp_path, "--metrics-address", f"127.0.0.1:{taken}")
    assert out.returncode != 0 and f"cannot listen on 127.0.0.1:{taken}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_cbr_metrics_tasks_dispatch_and_vaults(cp_server_factory: Any) -> None:
    """Tasks by type and status, dispatch latency (created -> claimed) and backups and bytes per vault,
    after a checkpoint whose task an agent claims 0.3 s later and ends with a backup."""
    import requests

    port = free_port()
    server = cp_server_factory(extra_args=["--metrics-address", f"127.0.0.1:{port}"])
    project = server.project_id
    agent_id = str(uuid.uuid4())
    with server.client(max_attempts=1) as client:
        client.register_agent(reg(agent_id))

    def api(method: str, path: str, body: Any = None) -> Any:
        answer = requests.request(method, f"{server.url}/v3/{project}{path}", json=body, timeout=10,
                                  headers={"X-Auth-Token": server.token})
        assert answer.status_code < 300, answer.text
        return answer.json() if answer.content else None

    vault = api("POST", "/vaults", {"vault": {"name": "metrics-vault", "billing": {
        "object_type": "file", "size": 10}, "resources": [{"id": agent_id, "type": "OS::Native::Server"}]}})
    vault_id = vault["vault"]["id"]
    before = scrape(port)
    assert before[("cbr_controlplane_vault_backups", (("project_id", project), ("vault_id", vault_id),
                                                      ("vault_name", "metrics-vault")))] == 0
    api("POST", "/checkpoints", {"checkpoint": {"vault_id": vault_id}})
    task = api("GET", "/operation-logs?status=waiting")["operation_logs"][0]
    waiting = scrape(port)
    labels = (("operation_type", "backup"), ("project_id", project), ("status", "waiting"))
    assert waiting[("cbr_controlplane_tasks", labels)] == 1
    time.sleep(0.3)
    path = f"/agents/{agent_id}/tasks/{task['id']}"
    api("POST", path + "/claim", {"owner": "t", "lease_seconds": 30})
    backup = {"snapshot_id": "cd" * 32, "size_bytes": 4096, "added_bytes": 1024}
    api("POST", path + "/result", {"owner": "t", "status": "success", "result": {}, "backup": backup})
    after = scrape(port)
    assert after[("cbr_controlplane_tasks", labels)] == 0
    assert after[("cbr_controlplane_tasks", (("operation_type", "backup"), ("project_id", project),
                                             ("status", "success")))] == 1
    op = ("operation_type", "backup")
    count = ("cbr_controlplane_task_dispatch_seconds_count", (op,))
    assert after[count] == before[count] + 1
    bucket = ("cbr_controlplane_task_dispatch_seconds_bucket", (("le", "0.25"), op))
    assert after[bucket] == before[bucket]  # it waited 0.3 s: above the 0.25 s bucket
    assert after[("cbr_controlplane_task_dispatch_seconds_sum", (("operation_type", "backup"),))] >= 0.3
    vault_labels = (("project_id", project), ("vault_id", vault_id), ("vault_name", "metrics-vault"))
    assert after[("cbr_controlplane_vault_backups", vault_labels)] == 1
    assert after[("cbr_controlplane_vault_backup_bytes", (("kind", "size"), *vault_labels))] == 4096
    assert after[("cbr_controlplane_vault_backup_bytes", (("kind", "added"), *vault_labels))] == 1024
