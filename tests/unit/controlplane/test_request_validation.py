"""Request validation shared by the server and the embedded control plane."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.controlplane import validation
from cbr_agent.errors import ApiError


def rejects(call, *words: str) -> None:
    with pytest.raises(ApiError) as exc_info:
        call()
    assert (exc_info.value.status, exc_info.value.error_code) == (400, "BackupService.9900")
    for word in words:
        assert word in exc_info.value.error_msg


@pytest.mark.parametrize(("body", "words"), [
    (b"", ["empty"]),
    (b"{not json", ["not valid JSON", "line 1"]),
    (b"\xff\xfe", ["UTF-8"]),
    (b"[1, 2]", ["JSON object", "array"]),
    (b"[" * 100_000, ["nested too deeply"]),
])
def test_parse_json_rejects(body: bytes, words: list[str]) -> None:
    rejects(lambda: validation.parse_json(body), *words)


def good_agent(**changes: object) -> dict[str, object]:
    agent: dict[str, object] = {"agent_id": "489654f2-363b-4ebf-966a-bdf079d97114", "host_name": "ecs",
                                "host_ip": "10.0.0.2", "host_os": "linux"}
    agent.update(changes)
    return {"agent": agent}


@pytest.mark.parametrize(("body", "words"), [
    ({}, ["agent is required"]),
    ({"agent": "x"}, ["agent must be an object", "string"]),
    (good_agent(host_name=None), ["agent.host_name is required"]),
    (good_agent(host_ip=12), ["agent.host_ip must be a string", "integer"]),
    (good_agent(host_os=["linux"]), ["agent.host_os", "array"]),
    (good_agent(agent_id=None), ["agent.agent_id is required"]),
    (good_agent(agent_id="a b"), ["agent.agent_id", "malformed"]),
    (good_agent(agent_version=""), ["agent.agent_version", "empty"]),
    (good_agent(host_name="\ud800"), ["agent.host_name", "surrogate"]),
])
def test_parse_register_rejects(body: dict[str, object], words: list[str]) -> None:
    rejects(lambda: validation.parse_register(body), *words)


def test_parse_register_ignores_unknown_fields_and_allows_empty_nickname() -> None:
    body = good_agent(host_nickname="", extra_field=1)
    body["unknown_top"] = True
    reg = validation.parse_register(body)
    assert reg.host_nickname == ""
    assert reg.agent_id == "489654f2-363b-4ebf-966a-bdf079d97114"


def test_parse_add_path_merges_and_dedups() -> None:
    req = validation.parse_add_path({
        "add_path": ["/a/", "/a", "/b"],
        "exclude_path": [{"path_name": "/a", "exclude_path_name": ["*.tmp", "*.tmp"]},
                         {"path_name": "/a/", "exclude_path_name": ["/a/x"]},
                         {"path_name": "/b", "exclude_path_name": None}],
    })
    assert req.paths == ("/a", "/b")
    assert req.excludes == {"/a": ("*.tmp", "/a/x"), "/b": ()}


@pytest.mark.parametrize(("body", "words"), [
    ({}, ["add_path is required"]),
    ({"add_path": "/a"}, ["add_path must be an array"]),
    ({"add_path": ["/a", 3]}, ["add_path[1] must be a string"]),
    ({"add_path": ["/a"], "exclude_path": {}}, ["exclude_path must be an array"]),
    ({"add_path": ["/a"], "exclude_path": ["x"]}, ["exclude_path[0] must be an object"]),
    ({"add_path": ["/a"], "exclude_path": [{"exclude_path_name": ["x"]}]}, ["exclude_path[0].path_name"]),
    ({"add_path": ["/a"], "exclude_path": [{"path_name": "/a", "exclude_path_name": [1]}]},
     ["exclude_path[0].exclude_path_name[0] must be a string"]),
    ({"add_path": ["/a"] * 1001}, ["at most 1000"]),
])
def test_parse_add_path_rejects(body: dict[str, object], words: list[str]) -> None:
    rejects(lambda: validation.parse_add_path(body), *words)


def test_list_query() -> None:
    query = validation.parse_list_query([("agent_id", "b"), ("agent_id", "a,b"), ("limit", "10"),
                                         ("offset", "20"), ("status", "abnormal"), ("other", "x")])
    assert query == validation.ListQuery(("b", "a"), "abnormal", 10, 20)
    assert validation.parse_list_query([]) == validation.ListQuery((), None, 1000, 0)
    rejects(lambda: validation.parse_list_query([("limit", "ten")]), "limit")
    rejects(lambda: validation.parse_list_query([("offset", "99999999999999")]), "offset")
    rejects(lambda: validation.parse_list_query([("agent_id", f"a{i}") for i in range(1001)]), "at most 1000")


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=255).filter(lambda s: "\x00" not in s and
                                                 not any(0xD800 <= ord(c) <= 0xDFFF for c in s)))
def test_any_printable_host_name_survives_json_round_trip(name: str) -> None:
    body = json.dumps(good_agent(host_name=name)).encode()
    assert validation.parse_register(validation.parse_json(body)).host_name == name


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=string.ascii_letters + "/._-", min_size=1, max_size=20), max_size=6))
def test_normalized_paths_are_absolute_and_stable(segments: list[str]) -> None:
    raw = "/" + "/".join(segments)
    (path,) = validation.parse_add_path({"add_path": [raw]}).paths
    assert path.startswith("/")
    assert path == "/" or not path.endswith("/")
    assert "//" not in path and "/./" not in path + "/" and "/../" not in path + "/"
    assert validation.parse_add_path({"add_path": [path]}).paths == (path,)


# -- hostile bodies: whatever the bytes, a 400 and nothing else (issue 10.8) ----------------------

@pytest.mark.parametrize(("body", "words"), [
    (b'{"agent": ' + b"1" * 4301 + b"}", ["4301 digits"]),  # Python's own limit: a ValueError
    (b'{"a": ' + b"9" * 101 + b"}", ["101 digits"]),
    (b'{"a": -' + b"9" * 101 + b"}", ["digits"]),
    (b'{"a": 1' + b"0" * 200 + b'.5}', ["characters"]),
    (b'{"a": 1e999}', ["out of range"]),
    (b'{"a": NaN}', ["NaN is not a JSON value"]),
    (b'{"a": -Infinity}', ["-Infinity"]),
    (b'{"agent": {"agent_id": "a", "agent_id": "b"}}', ["'agent_id' appears twice"]),
])
def test_parse_json_refuses_hostile_numbers_and_duplicate_keys(body: bytes, words: list[str]) -> None:
    rejects(lambda: validation.parse_json(body), *words)


def test_parse_json_keeps_ordinary_numbers() -> None:
    assert validation.parse_json(b'{"a": [0, -1, 2.5, 1e3, 12345678901234567890]}') == {
        "a": [0, -1, 2.5, 1000.0, 12345678901234567890]}


def _hostile_literal() -> st.SearchStrategy[str]:
    digits = st.integers(min_value=1, max_value=6000).map(lambda n: "7" * n)
    return st.one_of(
        digits, digits.map(lambda d: "-" + d), digits.map(lambda d: "0." + d), digits.map(lambda d: "1e" + d),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "0.0e-999", '"\\ud800"', "true",
                         "null", '"\\u0000"', "[" * 3000, "{" * 3000, '"' + "a" * 70000 + '"']),
        st.builds(json.dumps, st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
            lambda inner: st.lists(inner, max_size=4)
            | st.dictionaries(st.text(max_size=8), inner, max_size=4),
            max_leaves=12)),
    )


BODY_TEMPLATES = ['{"agent": %s}', '{"agent": {"agent_id": %s, "host_name": "h", "host_ip": "i", '
                  '"host_os": "linux"}}', '{"add_path": [%s]}', '{"add_path": ["/a"], "exclude_path": '
                  '[{"path_name": "/a", "exclude_path_name": [%s]}]}', '{"remove_path": %s}',
                  '{"agent": {"status": %s}}', "%s", '{"x": %s, "x": 1}']


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.binary(max_size=300),
    st.builds(lambda template, literal: (template % literal).encode("utf-8", "surrogatepass"),
              st.sampled_from(BODY_TEMPLATES), _hostile_literal()),
))
def test_any_body_is_a_dict_or_a_400_in_every_parser(body: bytes) -> None:
    try:
        data = validation.parse_json(body)
    except ApiError as exc:
        assert (exc.status, exc.error_code) == (400, "BackupService.9900")
        return
    assert isinstance(data, dict)
    for parse in (validation.parse_register, validation.parse_update, validation.parse_add_path,
                  validation.parse_remove_path):
        try:
            parse(data)
        except ApiError as exc:
            assert (exc.status, exc.error_code) == (400, "BackupService.9900")
