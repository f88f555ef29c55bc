"""Authentication headers sent twice are refused, whichever copy is the valid one; a signed request
replayed within the date window changes nothing more than the first copy did (issue 10.10)."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import pytest

from cbr_agent.api import signer


def raw_request(port: int, method: str, path: str, headers: list[tuple[str, str]],
                body: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request with the headers exactly as given (repeats included)."""
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers),
             f"Content-Length: {len(body)}", "Connection: close", "", ""]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode("latin-1") + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload


def register_body(agent_id: str) -> bytes:
    return json.dumps({"agent": {"agent_id": agent_id, "host_name": "h", "host_ip": "10.0.0.1",
                                 "host_os": "linux"}}).encode()


def signed_headers(server: Any, path: str, body: bytes) -> list[tuple[str, str]]:
    headers = {"Content-Type": "application/json", "Host": f"127.0.0.1:{server.port}"}
    signer.sign("POST", path, [], headers, body, server.ak, server.sk)
    return list(headers.items())


def agent_exists(server: Any, agent_id: str) -> bool:
    with server.client(max_attempts=1) as client:
        return any(a.agent_id == agent_id for a in client.list_agents(agent_ids=[agent_id]).agents)


@pytest.mark.parametrize("case", ["token-bad-then-good", "token-good-twice", "token-case-differs",
                                  "authorization-twice", "sdk-date-twice", "host-twice",
                                  "security-token-twice"])
def test_repeated_auth_header_is_refused_and_changes_nothing(cp_server_module: Any, case: str) -> None:
    server = cp_server_module
    agent_id = str(uuid.uuid4())
    path = f"/v3/{server.project_id}/agents"
    body = register_body(agent_id)
    host = ("Host", f"127.0.0.1:{server.port}")
    plain = [host, ("Content-Type", "application/json")]
    headers = {
        # today the last copy wins: a bad token followed by a good one was accepted
        "token-bad-then-good": [*plain, ("X-Auth-Token", "forged"), ("X-Auth-Token", server.token)],
        "token-good-twice": [*plain, ("X-Auth-Token", server.token), ("X-Auth-Token", server.token)],
        "token-case-differs": [*plain, ("x-auth-token", server.token), ("X-AUTH-TOKEN", server.token)],
        "authorization-twice": None,
        "sdk-date-twice": None,
        "host-twice": [*plain, host, ("X-Auth-Token", server.token)],
        "security-token-twice": [*plain, ("X-Auth-Token", server.token), ("X-Security-Token", "a"),
                                 ("X-Security-Token", "b")],
    }[case]
    if headers is None:
        signed = signed_headers(server, path, body)
        repeated = "Authorization" if case == "authorization-twice" else "X-Sdk-Date"
        headers = [*signed, *((k, v) for k, v in signed if k == repeated)]
    status, payload = raw_request(server.port, "POST", path, headers, body)
    error = json.loads(payload)
    assert (status, error["error_code"]) == (401, "APIGW.0301"), (status, error)
    assert "more than once" in error["error_msg"]
    assert server.token not in error["error_msg"]
    assert not agent_exists(server, agent_id)


def test_single_headers_still_work(cp_server_module: Any) -> None:
    server = cp_server_module
    path = f"/v3/{server.project_id}/agents"
    agent_id = str(uuid.uuid4())
    body = register_body(agent_id)
    status, payload = raw_request(server.port, "POST", path, signed_headers(server, path, body), body)
    assert status == 200, payload
    agent_id = str(uuid.uuid4())
    body = register_body(agent_id)
    status, payload = raw_request(server.port, "POST", path, [
        ("Host", "x"), ("Content-Type", "application/json"), ("X-Auth-Token", server.token)], body)
    assert status == 200, payload
    assert agent_exists(server, agent_id)


def state_of(server: Any, agent_id: str) -> Any:
    """What a replay could change: status, facts and paths (not the heartbeat times)."""
    with server.client(max_attempts=1) as client:
        page = client.list_agents(agent_ids=[agent_id])
    return [(a.status, a.host_name, [(p.dir_path, p.excludes) for p in a.paths]) for a in page.agents]


def test_replayed_signed_requests_change_nothing_more(cp_server_module: Any) -> None:
    """The SDK's scheme has no nonce: the same signed bytes are accepted again for 15 minutes.
    Each state-changing agent call is idempotent, so the replay leaves the state of the first copy."""
    server = cp_server_module
    agent_id = str(uuid.uuid4())
    base = f"/v3/{server.project_id}/agents"
    calls = [
        ("POST", base, register_body(agent_id)),
        ("POST", f"{base}/{agent_id}/add-path", json.dumps(
            {"add_path": ["/srv", "/etc"], "exclude_path": [{"path_name": "/srv",
                                                              "exclude_path_name": ["*.tmp"]}]}).encode()),
        ("POST", f"{base}/{agent_id}/remove-path", json.dumps({"remove_path": ["/etc"]}).encode()),
        ("PUT", f"{base}/{agent_id}", json.dumps({"agent": {"status": "uninstall"}}).encode()),
    ]
    for method, path, body in calls:
        headers = {"Content-Type": "application/json", "Host": f"127.0.0.1:{server.port}"}
        signer.sign(method, path, [], headers, body, server.ak, server.sk)
        first, _ = raw_request(server.port, method, path, list(headers.items()), body)
        after_first = state_of(server, agent_id)
        again, payload = raw_request(server.port, method, path, list(headers.items()), body)
        assert (first, again) == (200, 200), payload
        assert state_of(server, agent_id) == after_first, (method, path)
    headers = {"Host": f"127.0.0.1:{server.port}"}
    signer.sign("DELETE", f"{base}/{agent_id}", [], headers, b"", server.ak, server.sk)
    assert raw_request(server.port, "DELETE", f"{base}/{agent_id}", list(headers.items()), b"")[0] == 200
    status, payload = raw_request(server.port, "DELETE", f"{base}/{agent_id}", list(headers.items()), b"")
    assert (status, json.loads(payload)["error_code"]) == (404, "BackupService.6302")
    assert state_of(server, agent_id) == []


def test_a_signature_with_non_ascii_bytes_is_401_not_500(cp_server_module: Any) -> None:
    server = cp_server_module
    path = f"/v3/{server.project_id}/agents"
    body = register_body(str(uuid.uuid4()))
    headers = [(k, v) for k, v in signed_headers(server, path, body) if k != "Authorization"]
    authorization = (f"SDK-HMAC-SHA256 Access={server.ak}, SignedHeaders=content-type;host;x-sdk-date, "
                     "Signature=\u00e9\u00e9")  # sent as latin-1 bytes 0xE9
    status, payload = raw_request(server.port, "POST", path, [*headers, ("Authorization", authorization)],
                                  body)
    assert (status, json.loads(payload)["error_code"]) == (401, "APIGW.0301"), payload
