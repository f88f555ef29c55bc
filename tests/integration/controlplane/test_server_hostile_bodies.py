"""Hostile and malformed request bodies (and query strings) against the real server: never a 5xx
(issue 10.8).

The routes are read from the application itself, so a route added later is fuzzed too. Every
answer must be below 500 and, when it is an error, the project's ``{"error_code", "error_msg"}``.
"""

from __future__ import annotations

import http.client
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cbr_agent.controlplane.app import create_app
from cbr_agent.controlplane.credentials import Credentials
from cbr_agent.controlplane.store import AgentStore

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
PARAM = re.compile(r"\{([a-z_]+)\}")


def app_routes(tmp_path: Path, methods: set[str]) -> list[tuple[str, str]]:
    """(method, path template) of every route of the application answering one of ``methods``."""
    store = AgentStore(tmp_path / "routes.db")
    try:
        app: Any = create_app(store, Credentials())
        while not hasattr(app, "routes"):  # unwrap the pure-ASGI middlewares around FastAPI
            app = app.app
        found = {(method, route.path) for route in app.routes
                 for method in (getattr(route, "methods", None) or ()) if method in methods}
    finally:
        store.close()
    return sorted(found)


class Conn:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(method, path, body, headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.getheader("connection", "").lower() == "close":
                    self.close()
                return response.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@pytest.fixture(scope="module")
def target(cp_server_module: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    server = cp_server_module
    conn = Conn(server.port)
    agent_id = str(uuid.uuid4())
    body = json.dumps({"agent": {"agent_id": agent_id, "host_name": "h", "host_ip": "10.0.0.1",
                                 "host_os": "linux"}}).encode()
    status, data = conn.send("POST", f"/v3/{server.project_id}/agents", body,
                             {"Content-Type": "application/json", "X-Auth-Token": server.token})
    assert status == 200, data
    routes_dir = tmp_path_factory.mktemp("routes")
    routes = app_routes(routes_dir, WRITE_METHODS)
    assert ("POST", "/v3/{project_id}/agents/{agent_id}/add-path") in routes
    yield {"server": server, "conn": conn, "agent_id": agent_id, "routes": routes,
           "all_routes": app_routes(routes_dir, WRITE_METHODS | {"GET"})}
    conn.close()


def fill_path(template: str, target: dict[str, Any], known_agent: bool) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "project_id":
            return str(target["server"].project_id)
        if name == "agent_id" and known_agent:
            return str(target["agent_id"])
        return str(uuid.uuid4())

    return PARAM.sub(fill, template)


def json_ish() -> st.SearchStrategy[str]:
    """JSON texts and near-JSON texts: huge numbers, NaN, deep nesting, duplicate keys, bad escapes."""
    keys = st.sampled_from(["agent", "agent_id", "host_name", "host_ip", "host_os", "status", "add_path",
                            "exclude_path", "path_name", "exclude_path_name", "remove_path", "vault",
                            "policy", "backup", "checkpoint", "name", "resources", "id", "limit"])
    leaf = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30), st.sampled_from(["/", "/a/../b", "*.tmp", "\x00", "C:\\x"]),
    )
    value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(keys, inner, max_size=4), max_leaves=15)
    literal = st.one_of(
        st.integers(min_value=1, max_value=6000).map(lambda n: "3" * n),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e-999", '"\\ud800"', '"\\x"',
                         "[" * 5000, "]", '"unterminated', "{" * 2000 + "}" * 2000]),
        value.map(json.dumps),
    )
    return st.one_of(
        value.map(json.dumps),
        st.tuples(keys, literal).map(lambda kv: '{"' + kv[0] + '": ' + kv[1] + "}"),
        st.tuples(keys, literal).map(lambda kv: '{"' + kv[0] + '": {"' + kv[0] + '": ' + kv[1] + "}}"),
        st.tuples(keys, literal).map(lambda kv: '{"' + kv[0] + '": ' + kv[1] + ', "' + kv[0] + '": 1}'),
    )


bodies = st.one_of(st.binary(max_size=400), json_ish().map(lambda t: t.encode("utf-8", "surrogatepass")))
content_types = st.sampled_from(["application/json", "application/json;charset=utf-8", "text/plain",
                                 "application/json; charset=latin-1", ""])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(route=st.data(), body=bodies, content_type=content_types, known_agent=st.booleans())
@example(route=None, body=b'{"agent": ' + b"1" * 4301 + b"}", content_type="application/json",
         known_agent=True)
def test_no_body_gets_a_5xx_on_any_write_route(target: dict[str, Any], route: Any, body: bytes,
                                              content_type: str, known_agent: bool) -> None:
    server, routes = target["server"], target["routes"]
    method, template = routes[0] if route is None else route.draw(st.sampled_from(routes))
    if method == "DELETE":
        known_agent = False  # keep the agent the other examples use
    path = fill_path(template, target, known_agent)
    headers = {"X-Auth-Token": server.token}
    if content_type:
        headers["Content-Type"] = content_type
    status, data = target["conn"].send(method, path, body, headers)
    assert status < 500, (method, path, body[:200], data[:300])
    if status >= 400:
        error = json.loads(data)
        assert set(error) == {"error_code", "error_msg"}, error
        if status == 400:
            assert error["error_code"] == "BackupService.9900"


query_names = st.sampled_from(["limit", "offset", "status", "agent_id", "name", "vault_id", "marker",
                               "sort", "start_time", "end_time", "resource_id", "x"])
query_values = st.one_of(
    st.text(max_size=30), st.integers().map(str),
    st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
    st.sampled_from(["-1", "0", "1e9", "NaN", "²", "%00", "a,b,,c", " 5 ", "\x00", "../x"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(route=st.data(), pairs=st.lists(st.tuples(query_names, query_values), max_size=4),
       known_agent=st.booleans())
@example(route=None, pairs=[("limit", "9" * 5000)], known_agent=True)
def test_no_query_string_gets_a_5xx_on_any_route(target: dict[str, Any], route: Any,
                                                 pairs: list[tuple[str, str]], known_agent: bool) -> None:
    server, routes = target["server"], target["all_routes"]
    method, template = ("GET", "/v3/{project_id}/agents") if route is None else \
        route.draw(st.sampled_from(routes))
    if method == "DELETE":
        known_agent = False
    path = fill_path(template, target, known_agent) + "?" + urlencode(pairs)
    status, data = target["conn"].send(method, path, b"", {"X-Auth-Token": server.token})
    assert status < 500, (method, path[:300], data[:300])
    if status >= 400:
        assert set(json.loads(data)) == {"error_code", "error_msg"}
