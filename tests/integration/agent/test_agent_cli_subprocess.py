"""The agent's commands as subprocesses: register/uninstall against the real server, bad input, exit codes."""

from __future__ import annotations

import json
import socket
import stat
import sys
import uuid

import pytest

from cbr_agent.agent.identity import read_machine_id

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_register_writes_config_and_credentials_and_is_idempotent(cp_server, agent_host_factory) -> None:
    host = agent_host_factory()
    secret_env = {"CBR_AGENT_SK": cp_server.sk}
    args = ("register", "--endpoint", cp_server.url, "--project-id", cp_server.project_id,
            "--ak", cp_server.ak, "--heartbeat-interval", "30")
    first = host.cli(*args, env=secret_env)
    assert first.returncode == 0, first.stderr
    assert "registered agent" in first.stdout and "wrote configuration" in first.stdout
    creds = host.config.parent / "credentials.toml"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert tomllib.loads(creds.read_text()) == {"sk": cp_server.sk}
    config = tomllib.loads(host.config.read_text())
    assert config["endpoint"] == cp_server.url and config["credentials_file"] == str(creds)
    assert cp_server.sk not in host.config.read_text()
    assert cp_server.sk not in first.stdout + first.stderr
    second = host.cli(*args, env=secret_env)
    assert second.returncode == 0 and "already up to date" in second.stdout
    agent_id = host.agent_id()
    page = cp_server.client().list_agents(agent_ids=[agent_id])
    assert page.count == 1 and page.agents[0].status == "normal"
    # the written configuration alone (no secret in the environment) is enough from now on
    status = host.cli("path", "list", env={"CBR_AGENT_SK": ""})
    assert status.returncode == 0, status.stderr


def test_uninstall_then_remove_against_the_server(cp_server, agent_host_factory) -> None:
    host = agent_host_factory({"CBR_AGENT_ENDPOINT": cp_server.url,
                               "CBR_AGENT_PROJECT_ID": cp_server.project_id,
                               "CBR_AGENT_TOKEN": cp_server.token})
    assert host.cli("register").returncode == 0
    agent_id = host.agent_id()
    marked = host.cli("uninstall", "--json")
    assert marked.returncode == 0 and json.loads(marked.stdout)["status"] == "uninstall"
    assert cp_server.client().show_agent(agent_id).status == "uninstall"
    removed = host.cli("uninstall", "--remove", "--yes")
    assert removed.returncode == 0
    assert "deletes all of its backups" in removed.stderr
    assert cp_server.client().list_agents(agent_ids=[agent_id]).agents == ()


def test_wrong_credentials_exit_5(cp_server, agent_host_factory) -> None:
    host = agent_host_factory({"CBR_AGENT_ENDPOINT": cp_server.url,
                               "CBR_AGENT_PROJECT_ID": cp_server.project_id,
                               "CBR_AGENT_AK": cp_server.ak, "CBR_AGENT_SK": "not-the-secret"})
    result = host.cli("register")
    assert result.returncode == 5
    line = one_line_error(result.stderr.replace(_info_lines(result.stderr), ""))
    assert "not-the-secret" not in result.stderr
    assert "credentials" in line.lower() or "401" in line


def _info_lines(stderr: str) -> str:
    return "".join(line + "\n" for line in stderr.splitlines() if " INFO " in line)


def test_unreachable_endpoint_exits_4(agent_host_factory) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    host = agent_host_factory({"CBR_AGENT_ENDPOINT": f"http://127.0.0.1:{port}",
                               "CBR_AGENT_AK": "AK", "CBR_AGENT_SK": "SK-secret",
                               "CBR_AGENT_REQUEST_TIMEOUT": "2"})
    for args in (("register",), ("path", "add", "/srv"), ("run", "--once")):
        result = host.cli(*args)
        assert result.returncode == 4, (args, result.stderr)
        line = one_line_error(result.stderr.replace(_info_lines(result.stderr), "")
                              .replace(_warning_lines(result.stderr), ""))
        assert "SK-secret" not in result.stderr and "endpoint" in line


def _warning_lines(stderr: str) -> str:
    return "".join(line + "\n" for line in stderr.splitlines() if " WARNING " in line)


def test_endpoint_without_credentials_is_a_config_error(agent_host_factory) -> None:
    host = agent_host_factory({"CBR_AGENT_ENDPOINT": "http://127.0.0.1:9"})
    result = host.cli("register")
    assert result.returncode == 2
    assert "no credentials" in result.stderr and "Traceback" not in result.stderr


def test_first_set_up_command_run_once_on_the_embedded_default(agent_host_factory) -> None:
    host = agent_host_factory()
    result = host.cli("run", "--once")
    assert result.returncode == 0, result.stderr
    assert "cbr-agent path add" in result.stdout
    status = host.cli("status")
    assert status.returncode == 0 and "registered:      yes" in status.stdout
    assert "daemon:          not running" in status.stdout


def test_pinned_agent_id_is_written_and_wins(agent_host_factory) -> None:
    host = agent_host_factory()
    pinned = str(uuid.uuid4())
    assert host.cli("register", "--agent-id", pinned).returncode == 0
    assert tomllib.loads(host.config.read_text())["agent_id"] == pinned
    _pretend_another_machine(host)
    assert host.cli("run", "--once").returncode == 0
    assert host.agent_id() == pinned
    assert json.loads(host.cli("status", "--json").stdout)["agent_id"] == pinned


def _pretend_another_machine(host) -> None:
    """Make the state dir look copied from another machine (as in a cloned image)."""
    identity = host.state / "identity.json"
    data = json.loads(identity.read_text())
    data["machine_id"] = "0" * 32
    identity.write_text(json.dumps(data))


@pytest.mark.skipif(read_machine_id() is None, reason="this machine has no machine id")
def test_a_cloned_state_dir_gets_a_new_agent_id_and_says_why(agent_host_factory) -> None:
    host = agent_host_factory()
    assert host.cli("register").returncode == 0
    first = host.agent_id()
    _pretend_another_machine(host)
    result = host.cli("run", "--once")
    assert result.returncode == 0
    assert host.agent_id() != first
    assert "machine id changed" in result.stderr and first in result.stderr
    assert host.cli("run", "--once").returncode == 0
    assert host.agent_id() != first  # and it stays


def test_help_is_fast_and_lists_the_commands(agent_host_factory) -> None:
    host = agent_host_factory()
    result = host.cli("--help")
    assert result.returncode == 0
    for command in ("register", "run", "status", "uninstall", "path"):
        assert command in result.stdout
    assert "add" in host.cli("path", "--help").stdout
