"""``cbr-agent agents`` as a subprocess against a real control plane server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from cbr_agent.api.client import HttpControlPlane
from cbr_agent.api.models import AgentRegistration


def agents_cli(server, state_dir: Path, *args: str,
               sk: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBR_AGENT_")}
    env.update({"CBR_AGENT_AK": server.ak, "CBR_AGENT_SK": sk or server.sk})
    return subprocess.run([sys.executable, "-m", "cbr_agent", "agents", "--endpoint", server.url,
                           "--project-id", server.project_id, "--state-dir", str(state_dir), *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_the_fleet_of_a_project_as_json_and_as_a_table(cp_server, tmp_path: Path) -> None:
    client = cp_server.client()
    ids = []
    for n in range(3):
        agent_id = str(uuid.uuid4())
        client.register_agent(AgentRegistration(agent_id=agent_id, host_name=f"node-{n}",
                                                host_ip=f"10.1.0.{n}", host_os="linux",
                                                agent_version="0.1.0"))
        client.add_paths(agent_id, [f"/srv/node-{n}", "/etc"])
        ids.append(agent_id)
    client.update_agent(ids[2], "uninstall")
    # another project's agent is not part of this fleet
    HttpControlPlane(cp_server.url, cp_server.other_project_id, ak=cp_server.other_ak,
                     sk=cp_server.other_sk).register_agent(
        AgentRegistration(agent_id=str(uuid.uuid4()), host_name="elsewhere", host_ip="10.9.9.9",
                          host_os="linux"))

    proc = agents_cli(cp_server, tmp_path, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["endpoint"] == cp_server.url and report["count"] == 3
    by_id = {a["agent_id"]: a for a in report["agents"]}
    assert set(by_id) == set(ids)
    assert sorted(p["dir_path"] for p in by_id[ids[0]]["paths"]) == ["/etc", "/srv/node-0"]
    assert by_id[ids[2]]["status"] == "uninstall"

    proc = agents_cli(cp_server, tmp_path, "--status", "normal")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("AGENT ID")
    assert {line.split()[0] for line in lines[1:-1]} == set(ids[:2])
    assert lines[-1] == f"2 agents on {cp_server.url}: 2 normal"
    assert cp_server.sk not in proc.stdout + proc.stderr


def test_refused_credentials_and_an_unreachable_endpoint_have_their_exit_codes(cp_server,
                                                                               tmp_path: Path) -> None:
    proc = agents_cli(cp_server, tmp_path, sk="not-the-secret")
    assert proc.returncode == 5, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "not-the-secret" not in proc.stderr
    cp_server.stop()
    proc = agents_cli(cp_server, tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
