"""The seven calls against the scripted fake endpoint: paths, bodies, query, headers, signatures, parsing."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cbr_agent import __version__
from cbr_agent.api.client import HttpControlPlane
from cbr_agent.api.models import AddPathResult, Agent, AgentPath, AgentRegistration, RemovePathResult
from tests.unit.api.fake_cbr_endpoint import AK, PROJECT_ID, SK, TOKEN, Reply, ScriptedServer

AGENT_ID = "489654f2-363b-4ebf-966a-bdf079d97114"
BASE = f"/v3/{PROJECT_ID}/agents"
SIGNED = ("content-type", "host", "x-project-id", "x-sdk-date")

REGISTERED = {  # the reference's register example response (no "paths")
    "agent": {
        "created_at": "2022-01-30T09:28:09.334+00:00", "updated_at": "2022-01-30T09:28:09.334+00:00",
        "agent_id": AGENT_ID, "agent_version": "1.0.0", "agent_type": "native", "host_name": "ecs-0001",
        "host_nickname": "", "host_ip": "192.168.10.144", "host_os": "linux", "status": "normal",
        "last_active_time": "2022-01-30T09:28:08.960+00:00",
    }
}
PATH_1 = {"id": "5684b0fb-44c8-4c70-bb59-b03ec2738360", "agent_id": AGENT_ID,
          "dir_path": "/opt/huaweicloud/cbragent/lib", "status": "available",
          "exclude_paths": "*.txt,/opt/huaweicloud/cbragent/lib/test"}
SHOWN = {"agent": {**REGISTERED["agent"], "paths": [PATH_1]}}


@pytest.fixture
def client(server: ScriptedServer) -> HttpControlPlane:
    with HttpControlPlane(server.url, PROJECT_ID, ak=AK, sk=SK, sleep=lambda s: None) as cp:
        yield cp


def assert_signed(server: ScriptedServer, *, body: bool) -> None:
    got = server.last
    assert got.signature_ok is True
    assert got.signed_headers == SIGNED
    assert got.header("Content-Type") == ("application/json;charset=utf-8" if body else "application/json")
    assert got.header("X-Project-Id") == PROJECT_ID
    assert got.header("Host") == f"127.0.0.1:{server.port}"
    assert got.header("X-Auth-Token") is None


def test_register_posts_the_agent_and_parses_the_answer(server: ScriptedServer,
                                                        client: HttpControlPlane) -> None:
    server.script(Reply(200, REGISTERED))
    registration = AgentRegistration(AGENT_ID, "ecs-00002", "10.10.0.2", "linux", agent_version="1.0.0",
                                     agent_type="native")

    agent = client.register_agent(registration)

    got = server.last
    assert (got.method, got.raw_path, got.raw_query) == ("POST", BASE, "")
    assert got.json() == {"agent": {"agent_id": AGENT_ID, "host_name": "ecs-00002", "host_ip": "10.10.0.2",
                                    "host_os": "linux", "agent_version": "1.0.0", "agent_type": "native"}}
    assert b" " not in got.body  # compact JSON, serialized once: the signed bytes are the sent bytes
    assert_signed(server, body=True)
    assert agent == Agent(
        agent_id=AGENT_ID, host_name="ecs-0001", host_ip="192.168.10.144", host_os="linux",
        host_nickname="", agent_version="1.0.0", agent_type="native", status="normal",
        created_at=datetime(2022, 1, 30, 9, 28, 9, 334000, tzinfo=timezone.utc),
        updated_at=datetime(2022, 1, 30, 9, 28, 9, 334000, tzinfo=timezone.utc),
        last_active_time=datetime(2022, 1, 30, 9, 28, 8, 960000, tzinfo=timezone.utc),
        paths=None)


def test_show_gets_one_agent_with_its_paths(server: ScriptedServer, client: HttpControlPlane) -> None:
    server.script(Reply(200, SHOWN))

    agent = client.show_agent(AGENT_ID)

    got = server.last
    assert (got.method, got.raw_path, got.raw_query, got.body) == ("GET", f"{BASE}/{AGENT_ID}", "", b"")
    assert_signed(server, body=False)
    assert agent.paths == (AgentPath("/opt/huaweicloud/cbragent/lib",
                                     ("*.txt", "/opt/huaweicloud/cbragent/lib/test"),
                                     id=PATH_1["id"], agent_id=AGENT_ID, status="available"),)


def test_every_response_field_is_optional(server: ScriptedServer, client: HttpControlPlane) -> None:
    server.script(Reply(200, {"agent": {}}), Reply(200, {}), Reply(200, {}), Reply(200, {}), Reply(200, {}))

    assert client.show_agent("a1") == Agent(agent_id="a1")
    assert client.update_agent("a1") == Agent(agent_id="a1")
    assert client.add_paths("a1", ["/x"]) == AddPathResult()
    assert client.remove_paths("a1", ["/x"]) == RemovePathResult()
    page = client.list_agents(limit=5, offset=10)
    assert (page.agents, page.count, page.limit, page.offset) == ((), 0, 5, 10)


def test_list_sends_repeated_agent_ids_and_limit_as_a_string(server: ScriptedServer,
                                                              client: HttpControlPlane) -> None:
    second = {"agent_id": "fb711278-e872-4224-b442-8dafc36a543d", "status": "normal"}
    server.script(Reply(200, {"count": 2, "limit": 1000, "offset": 0,
                              "agents": [REGISTERED["agent"], second]}))

    page = client.list_agents(agent_ids=["b2", "a1"], status="normal", limit=10, offset=5)

    got = server.last
    assert (got.method, got.raw_path, got.body) == ("GET", BASE, b"")
    assert got.raw_query == "agent_id=a1&agent_id=b2&limit=10&offset=5&status=normal"  # canonical, sorted
    assert_signed(server, body=False)
    assert (page.count, page.limit, page.offset) == (2, 1000, 0)
    assert [a.agent_id for a in page.agents] == [AGENT_ID, second["agent_id"]]
    assert page.agents[1].paths is None and page.agents[1].host_name is None


def test_list_without_filters_sends_no_query(server: ScriptedServer, client: HttpControlPlane) -> None:
    server.script(Reply(200, {"agents": [REGISTERED["agent"]]}))
    page = client.list_agents()
    assert server.last.raw_query == ""
    assert server.last.signature_ok is True
    assert (page.count, page.limit, page.offset) == (1, 1, 0)


def test_update_puts_the_status(server: ScriptedServer, client: HttpControlPlane) -> None:
    server.script(Reply(200, {"agent": {**REGISTERED["agent"], "status": "uninstall"}}))

    agent = client.update_agent(AGENT_ID)

    got = server.last
    assert (got.method, got.raw_path) == ("PUT", f"{BASE}/{AGENT_ID}")
    assert got.json() == {"agent": {"status": "uninstall"}}
    assert_signed(server, body=True)
    assert agent.status == "uninstall"


def test_add_path_sends_paths_and_excludes(server: ScriptedServer, client: HttpControlPlane) -> None:
    server.script(Reply(200, {"added": ["/home/hcp"], "existed": ["/opt/workspace"]}))

    result = client.add_paths(AGENT_ID, ["/home/hcp", "/opt/workspace"],
                              {"/home/hcp": ["/home/hcp/1", "*.tmp"], "/opt/workspace": []})

    got = server.last
    assert (got.method, got.raw_path) == ("POST", f"{BASE}/{AGENT_ID}/add-path")
    assert got.json() == {
        "add_path": ["/home/hcp", "/opt/workspace"],
        "exclude_path": [{"path_name": "/home/hcp", "exclude_path_name": ["/home/hcp/1", "*.tmp"]},
                         {"path_name": "/opt/workspace", "exclude_path_name": []}],
    }
    assert_signed(server, body=True)
    assert result == AddPathResult(added=("/home/hcp",), existed=("/opt/workspace",))


def test_add_path_without_excludes_sends_no_exclude_path(server: ScriptedServer,
                                                         client: HttpControlPlane) -> None:
    client.add_paths(AGENT_ID, ["/srv"])
    assert server.last.json() == {"add_path": ["/srv"]}


def test_remove_path(server: ScriptedServer, client: HttpControlPlane) -> None:
    server.script(Reply(200, {"removed": ["/tmp"], "not_existed": ["/home"]}))

    result = client.remove_paths(AGENT_ID, ["/tmp", "/home"])

    got = server.last
    assert (got.method, got.raw_path) == ("POST", f"{BASE}/{AGENT_ID}/remove-path")
    assert got.json() == {"remove_path": ["/tmp", "/home"]}
    assert_signed(server, body=True)
    assert result == RemovePathResult(removed=("/tmp",), not_existed=("/home",))


def test_delete_answers_200_with_an_empty_body(server: ScriptedServer, client: HttpControlPlane) -> None:
    server.script(Reply(200, b"", headers={"Content-Type": "text/plain"}))

    assert client.remove_agent(AGENT_ID) is None

    got = server.last
    assert (got.method, got.raw_path, got.body) == ("DELETE", f"{BASE}/{AGENT_ID}", b"")
    assert_signed(server, body=False)


def test_path_parameters_are_percent_encoded_and_still_verify(server: ScriptedServer,
                                                              client: HttpControlPlane) -> None:
    client.show_agent("a/b c?d#é")
    assert server.last.raw_path == f"{BASE}/a%2Fb%20c%3Fd%23%C3%A9"
    assert server.last.signature_ok is True
    client.show_agent("..")  # would be resolved away by URL normalization if sent literally
    assert server.last.raw_path == f"{BASE}/%2E%2E"
    assert server.last.signature_ok is True


def test_query_values_are_encoded_like_the_canonical_query(server: ScriptedServer,
                                                           client: HttpControlPlane) -> None:
    client.list_agents(status="a b/c~d+e")
    assert server.last.raw_query == "status=a%20b%2Fc~d%2Be"
    assert server.last.pairs == [("status", "a b/c~d+e")]
    assert server.last.signature_ok is True


def test_token_auth_sends_x_auth_token_and_no_signature(server: ScriptedServer) -> None:
    with HttpControlPlane(server.url, PROJECT_ID, token=TOKEN) as client:
        client.show_agent(AGENT_ID)
    got = server.last
    assert got.header("X-Auth-Token") == TOKEN
    assert got.header("Authorization") is None and got.header("X-Sdk-Date") is None
    assert got.header("Content-Type") == "application/json"


def test_temporary_credentials_sign_the_security_token(server: ScriptedServer) -> None:
    with HttpControlPlane(server.url, PROJECT_ID, ak=AK, sk=SK, security_token="sts-token") as client:
        client.update_agent(AGENT_ID)
    got = server.last
    assert got.header("X-Security-Token") == "sts-token"
    assert got.signed_headers == (*SIGNED, "x-security-token")
    assert got.signature_ok is True


def test_a_wrong_secret_key_fails_the_servers_check(server: ScriptedServer) -> None:
    with HttpControlPlane(server.url, PROJECT_ID, ak=AK, sk="not-the-secret") as client:
        client.show_agent(AGENT_ID)
    assert server.last.signature_ok is False  # the fake really checks


def test_user_agent_default_and_custom(server: ScriptedServer) -> None:
    with HttpControlPlane(server.url, PROJECT_ID, token=TOKEN) as client:
        client.show_agent(AGENT_ID)
    assert server.last.header("User-Agent") == f"cbr-agent/{__version__}"
    with HttpControlPlane(server.url, PROJECT_ID, token=TOKEN, user_agent="fleet-tool/2") as client:
        client.show_agent(AGENT_ID)
    assert server.last.header("User-Agent") == "fleet-tool/2"


def test_endpoint_with_a_path_prefix(server: ScriptedServer) -> None:
    with HttpControlPlane(server.url + "/cbr/", PROJECT_ID, ak=AK, sk=SK) as client:
        client.show_agent(AGENT_ID)
    assert server.last.raw_path == f"/cbr{BASE}/{AGENT_ID}"
    assert server.last.signature_ok is True


def test_calls_reuse_one_pooled_connection(server: ScriptedServer, client: HttpControlPlane) -> None:
    for _ in range(3):
        client.show_agent(AGENT_ID)
    assert len({r.client_port for r in server.received}) == 1


def test_close_releases_the_connections(server: ScriptedServer) -> None:
    client = HttpControlPlane(server.url, PROJECT_ID, token=TOKEN)
    with client:
        client.show_agent(AGENT_ID)
        assert len(client._session.adapters["http://"].poolmanager.pools) == 1
    assert len(client._session.adapters["http://"].poolmanager.pools) == 0


def test_netrc_credentials_are_never_added(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with HttpControlPlane(server.url, PROJECT_ID, token=TOKEN) as client:
        client.show_agent(AGENT_ID)
    assert server.last.header("Authorization") is None
