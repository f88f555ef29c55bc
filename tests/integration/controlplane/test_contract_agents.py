"""Contract of the seven agent APIs, run against the embedded control plane and the HTTP client
talking to a real server: same results, same errors (status and error_code)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from cbr_agent.api.models import AgentRegistration
from cbr_agent.errors import ApiError, NotFoundError

INVALID = "BackupService.9900"
NOT_FOUND = "BackupService.6302"


def new_id() -> str:
    return str(uuid.uuid4())


def registration(agent_id: str | None = None, **fields: Any) -> AgentRegistration:
    base: dict[str, Any] = {"host_name": "ecs-0001", "host_ip": "10.10.0.2", "host_os": "linux",
                            "agent_version": "1.0.0", "agent_type": "native", "host_nickname": ""}
    base.update(fields)
    return AgentRegistration(agent_id=agent_id or new_id(), **base)


def expect_error(exc_info: pytest.ExceptionInfo[ApiError], status: int, code: str, *words: str) -> None:
    error = exc_info.value
    assert (error.status, error.error_code) == (status, code), str(error)
    for word in words:
        assert word in error.error_msg, error.error_msg


def test_register_returns_the_agent_with_facts_as_sent(control_plane: Any) -> None:
    reg = registration(host_name="伺服器-ü 'quoted' \"x\"; DROP TABLE agents;--", host_nickname="ники",
                       host_os="linux", host_ip="fe80::1")
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    agent = control_plane.register_agent(reg)
    assert agent.agent_id == reg.agent_id
    assert agent.host_name == reg.host_name
    assert agent.host_nickname == "ники"
    assert (agent.host_ip, agent.host_os, agent.agent_version, agent.agent_type) == (
        "fe80::1", "linux", "1.0.0", "native")
    assert agent.status == "normal"
    assert agent.created_at is not None and agent.created_at >= before
    assert agent.last_active_time is not None and agent.last_active_time >= before
    assert agent.paths == ()
    shown = control_plane.show_agent(reg.agent_id)
    assert shown.host_name == reg.host_name


def test_register_again_is_a_heartbeat(control_plane: Any) -> None:
    reg = registration(host_nickname="nick")
    first = control_plane.register_agent(reg)
    control_plane.add_paths(reg.agent_id, ["/srv"])
    control_plane.update_agent(reg.agent_id, "uninstall")
    second = control_plane.register_agent(AgentRegistration(
        agent_id=reg.agent_id, host_name="renamed", host_ip="10.0.0.9", host_os="linux"))
    assert second.status == "normal"  # heartbeating again means installed again
    assert second.created_at == first.created_at
    assert second.last_active_time >= first.last_active_time
    assert second.updated_at >= first.updated_at
    assert (second.host_name, second.host_ip) == ("renamed", "10.0.0.9")
    # optional facts not sent in the heartbeat are kept
    assert (second.host_nickname, second.agent_version, second.agent_type) == ("nick", "1.0.0", "native")
    assert [p.dir_path for p in second.paths] == ["/srv"]


@pytest.mark.parametrize(("fields", "words"), [
    ({"host_name": ""}, ["agent.host_name", "empty"]),
    ({"host_name": "x" * 256}, ["agent.host_name", "longer"]),
    ({"host_ip": "a\x00b"}, ["agent.host_ip", "NUL"]),
    ({"agent_type": "robot"}, ["agent.agent_type"]),
])
def test_register_rejects_bad_facts(control_plane: Any, fields: dict[str, Any], words: list[str]) -> None:
    reg = registration(**fields)
    with pytest.raises(ApiError) as exc_info:
        control_plane.register_agent(reg)
    expect_error(exc_info, 400, INVALID, *words)
    with pytest.raises(NotFoundError):
        control_plane.show_agent(reg.agent_id)


@pytest.mark.parametrize("agent_id", ["has space", "x" * 65, "a/b", "-leading-dash", "é"])
def test_malformed_agent_id_is_refused(control_plane: Any, agent_id: str) -> None:
    with pytest.raises(ApiError) as exc_info:
        control_plane.register_agent(registration(agent_id))
    expect_error(exc_info, 400, INVALID)
    with pytest.raises(ApiError) as exc_info:
        control_plane.show_agent(agent_id)
    expect_error(exc_info, 400, INVALID)


@pytest.mark.parametrize("call", ["show", "update", "add", "remove_path", "delete"])
def test_unknown_agent_is_404(control_plane: Any, call: str) -> None:
    agent_id = new_id()
    calls = {
        "show": lambda: control_plane.show_agent(agent_id),
        "update": lambda: control_plane.update_agent(agent_id, "uninstall"),
        "add": lambda: control_plane.add_paths(agent_id, ["/data"]),
        "remove_path": lambda: control_plane.remove_paths(agent_id, ["/data"]),
        "delete": lambda: control_plane.remove_agent(agent_id),
    }
    with pytest.raises(NotFoundError) as exc_info:
        calls[call]()
    expect_error(exc_info, 404, NOT_FOUND, agent_id)


def test_update_sets_uninstall_only(control_plane: Any) -> None:
    reg = registration()
    control_plane.register_agent(reg)
    agent = control_plane.update_agent(reg.agent_id, "uninstall")
    assert agent.status == "uninstall"
    assert control_plane.show_agent(reg.agent_id).status == "uninstall"
    for status in ("normal", "abnormal", ""):
        with pytest.raises(ApiError) as exc_info:
            control_plane.update_agent(reg.agent_id, status)
        expect_error(exc_info, 400, INVALID, "agent.status")
    assert control_plane.show_agent(reg.agent_id).status == "uninstall"


def test_add_paths_normalizes_and_reports_existed(control_plane: Any) -> None:
    reg = registration()
    control_plane.register_agent(reg)
    result = control_plane.add_paths(reg.agent_id, ["/opt/workspace/", "/home//hcp", "/"],
                                     {"/opt/workspace/": ["*.tmp", "/opt/workspace/cache"]})
    assert result.added == ("/opt/workspace", "/home/hcp", "/")
    assert result.existed == ()
    again = control_plane.add_paths(reg.agent_id, ["/opt/workspace", "/var/log"])
    assert again.added == ("/var/log",)
    assert again.existed == ("/opt/workspace",)
    paths = {p.dir_path: p for p in control_plane.show_agent(reg.agent_id).paths}
    assert list(paths) == ["/opt/workspace", "/home/hcp", "/", "/var/log"]
    # an existed path without new excludes keeps its excludes
    assert paths["/opt/workspace"].excludes == ("*.tmp", "/opt/workspace/cache")
    assert all(p.status == "available" and p.agent_id == reg.agent_id and p.id for p in paths.values())
    assert len({p.id for p in paths.values()}) == 4


def test_add_existing_path_replaces_its_excludes(control_plane: Any) -> None:
    reg = registration()
    control_plane.register_agent(reg)
    control_plane.add_paths(reg.agent_id, ["/data"], {"/data": ["*.tmp", "node_modules"]})
    result = control_plane.add_paths(reg.agent_id, ["/data"], {"/data": ["*.log", "/data/cache/"]})
    assert result.existed == ("/data",)
    (path,) = control_plane.show_agent(reg.agent_id).paths
    assert path.excludes == ("*.log", "/data/cache")
    control_plane.add_paths(reg.agent_id, ["/data"], {"/data": []})  # an empty list clears them
    (path,) = control_plane.show_agent(reg.agent_id).paths
    assert path.excludes == ()


@pytest.mark.parametrize(("paths", "excludes", "words"), [
    (["relative/dir"], None, ["add_path[0]", "not absolute"]),
    (["/ok", "/with,comma"], None, ["add_path[1]", "comma"]),
    (["/nul\x00byte"], None, ["add_path[0]", "NUL"]),
    ([""], None, ["add_path[0]", "empty"]),
    ([], None, ["add_path", "empty"]),
    (["/data"], {"/data": ["a,b"]}, ["exclude_path[0].exclude_path_name[0]", "comma"]),
    (["/data"], {"/data": ["/elsewhere"]}, ["exclude_path[0].exclude_path_name[0]", "not inside"]),
    (["/data"], {"/other": ["*.tmp"]}, ["exclude_path[0].path_name", "not one of the paths"]),
])
def test_add_paths_rejects_bad_input_and_changes_nothing(
        control_plane: Any, paths: list[str], excludes: Any, words: list[str]) -> None:
    reg = registration()
    control_plane.register_agent(reg)
    control_plane.add_paths(reg.agent_id, ["/keep"], {"/keep": ["*.o"]})
    before = control_plane.show_agent(reg.agent_id)
    with pytest.raises(ApiError) as exc_info:
        control_plane.add_paths(reg.agent_id, paths, excludes)
    expect_error(exc_info, 400, INVALID, *words)
    assert control_plane.show_agent(reg.agent_id) == before


def test_remove_paths_reports_removed_and_not_existed(control_plane: Any) -> None:
    reg = registration()
    control_plane.register_agent(reg)
    control_plane.add_paths(reg.agent_id, ["/tmp", "/srv"])
    result = control_plane.remove_paths(reg.agent_id, ["/tmp/", "/home"])
    assert result.removed == ("/tmp",)
    assert result.not_existed == ("/home",)
    # removed paths vanish (they are not kept with status "remove")
    assert [p.dir_path for p in control_plane.show_agent(reg.agent_id).paths] == ["/srv"]
    with pytest.raises(ApiError) as exc_info:
        control_plane.remove_paths(reg.agent_id, ["srv"])
    expect_error(exc_info, 400, INVALID, "remove_path[0]", "not absolute")
    assert [p.dir_path for p in control_plane.show_agent(reg.agent_id).paths] == ["/srv"]


def test_remove_agent_removes_it_and_its_paths(control_plane: Any) -> None:
    reg = registration()
    control_plane.register_agent(reg)
    control_plane.add_paths(reg.agent_id, ["/a", "/b"])
    assert control_plane.remove_agent(reg.agent_id) is None
    with pytest.raises(NotFoundError):
        control_plane.show_agent(reg.agent_id)
    with pytest.raises(NotFoundError):
        control_plane.remove_agent(reg.agent_id)
    assert control_plane.list_agents(agent_ids=[reg.agent_id]).count == 0
    # registering the same id again starts from scratch
    assert control_plane.register_agent(reg).paths == ()


def test_list_filters_pages_and_counts(control_plane: Any) -> None:
    ids = [new_id() for _ in range(5)]
    for agent_id in ids:
        control_plane.register_agent(registration(agent_id))
    control_plane.add_paths(ids[0], ["/x"], {"/x": ["*.tmp"]})
    control_plane.update_agent(ids[1], "uninstall")
    page = control_plane.list_agents(agent_ids=ids)
    assert page.count == 5 and page.offset == 0
    assert {a.agent_id for a in page.agents} == set(ids)
    by_id = {a.agent_id: a for a in page.agents}
    assert [(p.dir_path, p.excludes) for p in by_id[ids[0]].paths] == [("/x", ("*.tmp",))]
    # pages are stable and disjoint; count is the total that matches, not the page size
    seen: list[str] = []
    for offset in (0, 2, 4):
        part = control_plane.list_agents(agent_ids=ids, limit=2, offset=offset)
        assert (part.count, part.limit, part.offset) == (5, 2, offset)
        seen += [a.agent_id for a in part.agents]
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    uninstalled = control_plane.list_agents(agent_ids=ids, status="uninstall")
    assert [a.agent_id for a in uninstalled.agents] == [ids[1]]
    normal = control_plane.list_agents(agent_ids=ids, status="normal")
    assert normal.count == 4 and ids[1] not in {a.agent_id for a in normal.agents}
    assert control_plane.list_agents(agent_ids=ids, status="abnormal").count == 0
    assert control_plane.list_agents(agent_ids=[new_id()]).agents == ()


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"status": "sleeping"}, "status"),
    ({"limit": 0}, "limit"),
    ({"limit": 1001}, "limit"),
    ({"offset": -1}, "offset"),
])
def test_list_rejects_bad_query(control_plane: Any, kwargs: dict[str, Any], word: str) -> None:
    with pytest.raises(ApiError) as exc_info:
        control_plane.list_agents(**kwargs)
    expect_error(exc_info, 400, INVALID, word)
