"""`path list` follows the exit codes when this host has no agent id yet, and `uninstall --remove`
asks on a terminal and needs --yes elsewhere (issue 9, items 8 and 9). Real subprocesses, real server."""

from __future__ import annotations

import json
import socket

from tests.integration.ptyrun import run_cli


def _closed_port() -> int:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines()
             if line.strip() and " WARNING " not in line and " INFO " not in line]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_path_list_without_agent_id_and_the_control_plane_down_exits_4(agent_host_factory) -> None:
    host = agent_host_factory({"CBR_AGENT_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
                               "CBR_AGENT_TOKEN": "tok-secret", "CBR_AGENT_REQUEST_TIMEOUT": "2"})
    for args in (("path", "list"), ("path", "list", "--json"), ("path", "remove", "/srv")):
        result = host.cli(*args)
        assert result.returncode == 4, (args, result.stdout, result.stderr)
        assert "no backup paths" not in result.stdout and "not there" not in result.stdout
        assert "endpoint" in _one_line(result.stderr)
    assert not (host.state / "identity.json").exists()


def test_path_list_without_agent_id_and_without_credentials_exits_2(agent_host_factory) -> None:
    host = agent_host_factory({"CBR_AGENT_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"})
    result = host.cli("path", "list")
    assert result.returncode == 2 and "no credentials" in _one_line(result.stderr)


def test_path_list_without_agent_id_and_refused_credentials_exits_5(cp_server, agent_host_factory) -> None:
    host = agent_host_factory({"CBR_AGENT_ENDPOINT": cp_server.url,
                               "CBR_AGENT_PROJECT_ID": cp_server.project_id,
                               "CBR_AGENT_TOKEN": "tok-not-known"})
    assert host.cli("path", "list").returncode == 5


def test_path_list_without_agent_id_and_a_reachable_control_plane_says_not_registered(
        cp_server, agent_host_factory) -> None:
    host = agent_host_factory({"CBR_AGENT_ENDPOINT": cp_server.url,
                               "CBR_AGENT_PROJECT_ID": cp_server.project_id,
                               "CBR_AGENT_TOKEN": cp_server.token})
    result = host.cli("path", "list")
    assert result.returncode == 0, result.stderr
    assert "not registered" in result.stdout


def _registered(cp_server, agent_host_factory):
    host = agent_host_factory({"CBR_AGENT_ENDPOINT": cp_server.url,
                               "CBR_AGENT_PROJECT_ID": cp_server.project_id,
                               "CBR_AGENT_TOKEN": cp_server.token})
    assert host.cli("register").returncode == 0
    return host, host.agent_id()


def _exists(cp_server, agent_id: str) -> bool:
    return bool(cp_server.client().list_agents(agent_ids=[agent_id]).agents)


def test_uninstall_remove_without_a_terminal_needs_yes(cp_server, agent_host_factory) -> None:
    host, agent_id = _registered(cp_server, agent_host_factory)
    result = host.cli("uninstall", "--remove")
    assert result.returncode == 2
    assert "--yes" in _one_line(result.stderr)
    assert _exists(cp_server, agent_id)
    assert host.cli("uninstall", "--remove", "--yes").returncode == 0
    assert not _exists(cp_server, agent_id)


def test_uninstall_remove_on_a_terminal_asks_and_no_keeps_everything(cp_server, agent_host_factory) -> None:
    host, agent_id = _registered(cp_server, agent_host_factory)
    declined = run_cli(["uninstall", "--remove"], env=host.env, stdin_tty=True, answer="n\n")
    assert "[y/N]" in declined.terminal and agent_id in declined.terminal
    assert declined.returncode == 1 and "left as they are" in declined.terminal
    assert _exists(cp_server, agent_id)
    enter = run_cli(["uninstall", "--remove"], env=host.env, stdin_tty=True, answer="\n")
    assert enter.returncode == 1 and _exists(cp_server, agent_id)  # the default is no
    confirmed = run_cli(["uninstall", "--remove"], env=host.env, stdin_tty=True, answer="y\n")
    assert confirmed.returncode == 0, confirmed.terminal
    assert "deleted" in confirmed.stdout
    assert not _exists(cp_server, agent_id)


def test_exclude_add_and_remove_over_http(cp_server, agent_host_factory) -> None:
    host, agent_id = _registered(cp_server, agent_host_factory)
    assert host.cli("path", "add", "/srv", "--exclude", "*.tmp").returncode == 0
    added = host.cli("path", "exclude", "add", "/srv", "node_modules", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["excludes"] == ["*.tmp", "node_modules"]
    removed = host.cli("path", "exclude", "remove", "/srv", "*.tmp")
    assert removed.returncode == 0 and "removed: *.tmp" in removed.stdout
    (path,) = [p for p in cp_server.client().show_agent(agent_id).paths if p.dir_path == "/srv"]
    assert list(path.excludes) == ["node_modules"]
    last = host.cli("path", "exclude", "remove", "/srv", "node_modules")
    assert last.returncode == 0
    (path,) = [p for p in cp_server.client().show_agent(agent_id).paths if p.dir_path == "/srv"]
    assert list(path.excludes) == []


def test_agents_with_an_unknown_id_says_so_and_exits_6(cp_server, agent_host_factory) -> None:
    host, agent_id = _registered(cp_server, agent_host_factory)
    nope = "00000000-0000-4000-8000-000000000000"
    result = host.cli("agents", "--agent-id", nope)
    assert result.returncode == 6
    assert "no agents registered" not in result.stdout + result.stderr
    assert f"no agent with id {nope}" in _one_line(result.stderr)
    both = host.cli("agents", "--agent-id", agent_id, "--agent-id", nope, "--json")
    assert both.returncode == 6
    data = json.loads(both.stdout)
    assert [a["agent_id"] for a in data["agents"]] == [agent_id] and data["not_found"] == [nope]
    assert host.cli("agents", "--agent-id", agent_id).returncode == 0
