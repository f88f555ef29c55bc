"""Round trips over the real wire for arbitrary ids and filters: what the server decodes is what the
caller gave, and the signature made over the bytes the client meant to send verifies on the bytes the
server received."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.api.client import HttpControlPlane
from tests.unit.api.fake_cbr_endpoint import AK, PROJECT_ID, SK, ScriptedServer

ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=16)
values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=16)


@pytest.fixture(scope="module")
def wire_client(shared_server: ScriptedServer) -> Iterator[HttpControlPlane]:
    with HttpControlPlane(shared_server.url, PROJECT_ID, ak=AK, sk=SK, sleep=lambda s: None) as client:
        yield client


@settings(max_examples=60, deadline=None)
@given(agent_id=ids)
def test_any_agent_id_reaches_the_server_intact(shared_server: ScriptedServer,
                                                wire_client: HttpControlPlane, agent_id: str) -> None:
    from urllib.parse import unquote

    wire_client.show_agent(agent_id)
    got = shared_server.last
    prefix = f"/v3/{PROJECT_ID}/agents/"
    assert got.raw_path.startswith(prefix)
    assert "/" not in got.raw_path[len(prefix):]  # one segment, whatever the id holds
    assert unquote(got.raw_path[len(prefix):]) == agent_id
    assert got.signature_ok is True


@settings(max_examples=60, deadline=None)
@given(agent_ids=st.lists(values, max_size=4), status=st.none() | values,
       limit=st.none() | st.integers(min_value=1, max_value=10**6),
       offset=st.integers(min_value=0, max_value=10**6))
def test_any_list_filter_reaches_the_server_intact(shared_server: ScriptedServer,
                                                   wire_client: HttpControlPlane, agent_ids: list[str],
                                                   status: str | None, limit: int | None,
                                                   offset: int) -> None:
    wire_client.list_agents(agent_ids=agent_ids, status=status, limit=limit, offset=offset)
    got = shared_server.last
    expected = [("agent_id", a) for a in agent_ids]
    expected += [("status", status)] if status is not None else []
    expected += [("limit", str(limit))] if limit is not None else []
    expected += [("offset", str(offset))] if offset else []
    assert sorted(got.pairs) == sorted(expected)
    assert got.signature_ok is True


@settings(max_examples=40, deadline=None)
@given(paths=st.lists(values, min_size=1, max_size=4),
       excludes=st.dictionaries(values, st.lists(values, max_size=3), max_size=3))
def test_any_add_path_body_arrives_as_signed(shared_server: ScriptedServer, wire_client: HttpControlPlane,
                                             paths: list[str], excludes: dict[str, list[str]]) -> None:
    wire_client.add_paths("agent-1", paths, excludes)
    got = shared_server.last
    body = got.json()
    assert body["add_path"] == paths
    assert body.get("exclude_path", []) == [{"path_name": p, "exclude_path_name": e}
                                            for p, e in excludes.items()]
    assert got.signature_ok is True
