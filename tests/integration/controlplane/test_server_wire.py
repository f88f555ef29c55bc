"""The server on the wire: status codes, error bodies and what a rejected request leaves behind."""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest

from cbr_agent.api import signer

INVALID = "BackupService.9900"


class Wire:
    """Raw HTTP/1.1 to the server, signed with AK/SK (or a token, or nothing)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.host = f"127.0.0.1:{server.port}"

    def request(self, method: str, path: str, body: bytes | dict | None = None, *,
                query: list[tuple[str, str]] | None = None, auth: str = "aksk",
                headers: dict[str, str] | None = None, ak: str | None = None, sk: str | None = None,
                when: datetime | None = None) -> tuple[int, dict[str, str], bytes]:
        raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        hdrs = {"Content-Type": "application/json;charset=utf-8" if raw else "application/json",
                "Host": self.host}
        hdrs.update(headers or {})
        pairs = sorted(query or [])
        if auth == "aksk":
            signer.sign(method, path, pairs, hdrs, raw, ak or self.server.ak, sk or self.server.sk, now=when)
        elif auth == "token":
            hdrs["X-Auth-Token"] = self.server.token
        url = path + (f"?{signer.canonical_query(pairs)}" if pairs else "")
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            conn.request(method, url, raw, hdrs)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def agents(self, project: str | None = None) -> str:
        return f"/v3/{project or self.server.project_id}/agents"

    def register(self, agent_id: str, **fields: Any) -> dict[str, Any]:
        agent = {"agent_id": agent_id, "host_name": "h", "host_ip": "10.0.0.1", "host_os": "linux", **fields}
        status, _, body = self.request("POST", self.agents(), {"agent": agent})
        assert status == 200, body
        return json.loads(body)["agent"]


@pytest.fixture(scope="module")
def wire(cp_server_module: Any) -> Wire:
    return Wire(cp_server_module)


def error_of(status: int, body: bytes) -> tuple[int, str, str]:
    data = json.loads(body)
    assert set(data) == {"error_code", "error_msg"}, data
    return status, data["error_code"], data["error_msg"]


def db_dump(server: Any) -> list[str]:
    conn = sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_every_call_answers_200_and_delete_has_an_empty_body(wire: Wire) -> None:
    agent_id = str(uuid.uuid4())
    base = wire.agents()
    assert wire.register(agent_id)["status"] == "normal"
    calls = [
        ("GET", f"{base}/{agent_id}", None),
        ("GET", base, None),
        ("PUT", f"{base}/{agent_id}", {"agent": {"status": "uninstall"}}),
        ("POST", f"{base}/{agent_id}/add-path", {"add_path": ["/a"]}),
        ("POST", f"{base}/{agent_id}/remove-path", {"remove_path": ["/a"]}),
    ]
    for method, path, body in calls:
        status, headers, data = wire.request(method, path, body)
        assert status == 200, (method, path, data)
        assert headers["content-type"] == "application/json"
        assert headers["x-request-id"]
        json.loads(data)
    status, _, data = wire.request("DELETE", f"{base}/{agent_id}")
    assert (status, data) == (200, b"")


def test_strings_are_stored_and_returned_exactly(wire: Wire) -> None:
    agent_id = str(uuid.uuid4())
    name = "主机-Ωmega \"quoted\" 'single' Robert'); DROP TABLE agents;-- \\ 🚀"
    agent = wire.register(agent_id, host_name=name, host_nickname="%s %d {}")
    assert agent["host_name"] == name
    status, _, body = wire.request("GET", f"{wire.agents()}/{agent_id}")
    assert status == 200
    shown = json.loads(body)["agent"]
    assert (shown["host_name"], shown["host_nickname"]) == (name, "%s %d {}")
    path = "/srv/данные/it's \"here\"; DELETE FROM paths"
    status, _, body = wire.request("POST", f"{wire.agents()}/{agent_id}/add-path",
                                   {"add_path": [path], "exclude_path": [
                                       {"path_name": path, "exclude_path_name": ["*.tmp", "ü*"]}]})
    assert (status, json.loads(body)) == (200, {"added": [path], "existed": []})
    _, _, body = wire.request("GET", f"{wire.agents()}/{agent_id}")
    (entry,) = json.loads(body)["agent"]["paths"]
    assert (entry["dir_path"], entry["exclude_paths"], entry["status"]) == (path, "*.tmp,ü*", "available")


def bad_body_cases(agent_id: str, base: str) -> list[tuple[str, str, bytes | dict, int, list[str]]]:
    reg = f"{base}"
    add = f"{base}/{agent_id}/add-path"

    def agent(**changes: Any) -> dict[str, Any]:
        return {"agent": {"agent_id": agent_id, "host_name": "h", "host_ip": "i", "host_os": "o", **changes}}

    return [
        ("POST", reg, b'{"agent": {"agent_id": ', 400, ["not valid JSON"]),
        ("POST", reg, b'"just a string"', 400, ["JSON object"]),
        ("POST", reg, agent(host_name=7), 400, ["agent.host_name", "integer"]),
        ("POST", reg, {"agent": {"agent_id": agent_id, "host_name": "h", "host_os": "o"}},
         400, ["agent.host_ip is required"]),
        ("POST", reg, agent(host_name=""), 400, ["agent.host_name", "empty"]),
        ("POST", reg, agent(host_name="h" * 300), 400, ["agent.host_name", "longer than 255"]),
        ("POST", reg, agent(host_name="a\u0000b"), 400, ["agent.host_name", "NUL"]),
        ("POST", add, {"add_path": ["/a,b"]}, 400, ["add_path[0]", "comma"]),
        ("POST", add, {"add_path": ["rel/path"]}, 400, ["add_path[0]", "not absolute"]),
        ("POST", add, {"add_path": ["/x\u0000y"]}, 400, ["add_path[0]", "NUL"]),
        ("POST", add, {"add_path": ["/x"],
                       "exclude_path": [{"path_name": "/x", "exclude_path_name": ["a,b"]}]},
         400, ["exclude_path[0].exclude_path_name[0]", "comma"]),
        ("POST", add, {"add_path": "/x"}, 400, ["add_path must be an array"]),
        ("POST", f"{base}/{agent_id}/remove-path", {"remove_path": [None]}, 400, ["remove_path[0]"]),
        ("PUT", f"{base}/{agent_id}", {"agent": {"status": "normal"}}, 400, ["agent.status", "uninstall"]),
        ("PUT", f"{base}/{agent_id}", {"status": "uninstall"}, 400, ["agent is required"]),
        ("GET", f"{base}/bad%20id", b"", 400, ["agent_id", "malformed"]),
        ("GET", f"{base}/a%2Fb", b"", 400, ["encoded '/'"]),
    ]


def test_bad_requests_get_400_naming_the_field_and_change_nothing(wire: Wire, cp_server_module: Any) -> None:
    agent_id = str(uuid.uuid4())
    wire.register(agent_id, host_nickname="before")
    wire.request("POST", f"{wire.agents()}/{agent_id}/add-path", {"add_path": ["/keep"]})
    before = db_dump(cp_server_module)
    for method, path, body, want, words in bad_body_cases(agent_id, wire.agents()):
        status, code, msg = error_of(*wire.request(method, path, body)[::2])
        assert (status, code) == (want, INVALID), (path, body, msg)
        for word in words:
            assert word in msg, (body, msg)
    assert db_dump(cp_server_module) == before


def test_unknown_fields_are_ignored(wire: Wire) -> None:
    agent_id = str(uuid.uuid4())
    status, _, body = wire.request("POST", wire.agents(), {"agent": {
        "agent_id": agent_id, "host_name": "h", "host_ip": "i", "host_os": "linux", "colour": "blue"},
        "extra": [1, 2]})
    assert status == 200 and "colour" not in json.loads(body)["agent"]


def test_unknown_agent_is_404(wire: Wire) -> None:
    agent_id = str(uuid.uuid4())
    for method, suffix, body in [("GET", "", None), ("DELETE", "", None),
                                 ("PUT", "", {"agent": {"status": "uninstall"}}),
                                 ("POST", "/add-path", {"add_path": ["/a"]}),
                                 ("POST", "/remove-path", {"remove_path": ["/a"]})]:
        status, _, data = wire.request(method, f"{wire.agents()}/{agent_id}{suffix}", body)
        assert error_of(status, data)[:2] == (404, "BackupService.6302")
        assert agent_id in error_of(status, data)[2]


def test_list_query_on_the_wire(wire: Wire) -> None:
    ids = sorted(str(uuid.uuid4()) for _ in range(3))
    for agent_id in ids:
        wire.register(agent_id)
    query = [("agent_id", a) for a in ids] + [("limit", "2"), ("offset", "1")]
    status, _, body = wire.request("GET", wire.agents(), query=query)
    data = json.loads(body)
    assert (status, data["count"], data["limit"], data["offset"], len(data["agents"])) == (200, 3, 2, 1, 2)
    status, _, body = wire.request("GET", wire.agents(), query=[("agent_id", ",".join(ids))])
    assert json.loads(body)["count"] == 3  # a comma-joined filter works too
    for bad in [("limit", "abc"), ("limit", "0"), ("offset", "-1"), ("status", "dead")]:
        status, _, body = wire.request("GET", wire.agents(), query=[bad])
        assert error_of(status, body)[:2] == (400, INVALID)
        assert bad[0] in error_of(status, body)[2]


@pytest.mark.parametrize("case", ["none", "token-bad", "aksk-bad-sk", "aksk-unknown-ak", "aksk-old-date",
                                  "aksk-garbled", "host-not-signed"])
def test_bad_credentials_are_401(wire: Wire, case: str) -> None:
    path = wire.agents()
    if case == "none":
        result = wire.request("GET", path, auth="none")
    elif case == "token-bad":
        result = wire.request("GET", path, auth="none", headers={"X-Auth-Token": "nope"})
    elif case == "aksk-bad-sk":
        result = wire.request("GET", path, sk="wrong")
    elif case == "aksk-unknown-ak":
        result = wire.request("GET", path, ak="AKUNKNOWN")
    elif case == "aksk-old-date":
        result = wire.request("GET", path, when=datetime.now(timezone.utc) - timedelta(minutes=16))
    elif case == "aksk-garbled":
        result = wire.request("GET", path, auth="none", headers={"Authorization": "SDK-HMAC-SHA256 x"})
    else:
        headers = {"X-Sdk-Date": signer.sdk_date()}
        to_sign = signer.string_to_sign("GET", path, [], headers, ["x-sdk-date"], b"")
        auth = (f"SDK-HMAC-SHA256 Access={wire.server.ak}, SignedHeaders=x-sdk-date, "
                f"Signature={signer.signature(wire.server.sk, to_sign)}")
        result = wire.request("GET", path, auth="none", headers={**headers, "Authorization": auth})
    status, code, msg = error_of(result[0], result[2])
    assert (status, code) == (401, "APIGW.0301"), msg
    assert wire.server.sk not in msg


def test_date_14_minutes_off_is_accepted(wire: Wire) -> None:
    status, _, _ = wire.request("GET", wire.agents(), when=datetime.now(timezone.utc) + timedelta(minutes=14))
    assert status == 200


def test_token_auth_works(wire: Wire) -> None:
    status, _, body = wire.request("GET", wire.agents(), auth="token", query=[("limit", "1")])
    assert status == 200 and json.loads(body)["limit"] == 1


def test_project_mismatch_is_403(wire: Wire) -> None:
    server = wire.server
    other = wire.agents(server.other_project_id)
    assert wire.request("GET", other, auth="token")[0] == 403
    result = wire.request("GET", other)
    assert error_of(result[0], result[2])[:2] == (403, "APIGW.0302")
    # the other project's own credentials work on its own URL and see none of this project's agents
    status, _, body = wire.request("GET", other, ak=server.other_ak, sk=server.other_sk)
    assert status == 200 and json.loads(body)["count"] == 0


def test_signed_query_and_encoded_path_verify(wire: Wire) -> None:
    agent_id = "Agent_1.x-" + uuid.uuid4().hex[:8]
    wire.register(agent_id)
    status, _, body = wire.request("GET", f"{wire.agents()}/{quote(agent_id, safe='')}")
    assert status == 200 and json.loads(body)["agent"]["agent_id"] == agent_id
    status, _, body = wire.request("GET", wire.agents(), query=[("agent_id", agent_id), ("status", "normal")])
    assert status == 200 and json.loads(body)["count"] == 1


def test_non_json_content_type_is_415(wire: Wire) -> None:
    body = json.dumps({"add_path": ["/a"]}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx"):
        result = wire.request("POST", wire.agents(), body, headers={"Content-Type": content_type})
        status, code, msg = error_of(result[0], result[2])
        assert (status, code) == (415, INVALID) and "Content-Type" in msg


def test_body_over_12mb_is_413_without_reading_it(wire: Wire) -> None:
    # only the headers are sent: the server must answer from Content-Length alone
    with socket.create_connection(("127.0.0.1", wire.server.port), timeout=10) as sock:
        sock.sendall((f"POST {wire.agents()} HTTP/1.1\r\nHost: {wire.host}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 13000000\r\n\r\n").encode())
        started = time.monotonic()
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
        assert time.monotonic() - started < 5
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["error_code"] == "APIGW.0201"


def test_chunked_body_over_12mb_is_413(wire: Wire) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", wire.server.port, timeout=30)
    chunk = b" " * (1024 * 1024)
    try:
        conn.request("POST", wire.agents(), body=iter([chunk] * 13), encode_chunked=True,
                     headers={"Content-Type": "application/json", "Host": wire.host})
        response = conn.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error_code"] == "APIGW.0201"
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("the server should answer 413, not drop the connection")
    finally:
        conn.close()


def test_unknown_route_and_method(wire: Wire) -> None:
    result = wire.request("GET", f"/v3/{wire.server.project_id}/replications")
    assert error_of(result[0], result[2])[:2] == (404, "APIGW.0101")
    result = wire.request("PATCH", wire.agents())
    assert error_of(result[0], result[2])[:2] == (405, "APIGW.0101")


def test_log_has_one_line_per_request_and_no_secrets(wire: Wire) -> None:
    marker = "logcheck-" + uuid.uuid4().hex[:8]
    wire.request("GET", f"{wire.agents()}/{marker}", auth="token")
    time.sleep(0.2)
    log = wire.server.log_text()
    lines = [line for line in log.splitlines() if marker in line]
    assert len(lines) == 1
    assert f"GET {wire.agents()}/{marker} 404" in lines[0] and "ms" in lines[0]
    for secret in (wire.server.sk, wire.server.token, wire.server.other_sk, "Signature="):
        assert secret not in log


def test_log_lines_cannot_be_forged_through_the_path(wire: Wire) -> None:
    marker = uuid.uuid4().hex[:8]
    wire.request("GET", f"{wire.agents()}/x%0AFAKE-{marker}%20200", auth="token")
    time.sleep(0.2)
    lines = [line for line in wire.server.log_text().splitlines() if marker in line]
    assert len(lines) == 1 and "%0AFAKE" in lines[0]
