"""The list's ``search`` (the console's search box) matches exactly the agents a plain substring test
would, whatever the text: LIKE's ``%``, ``_`` and ``\\`` are plain characters, case is ignored for
ASCII, and it combines with the status filter and paging."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.controlplane.store import AgentStore
from cbr_agent.controlplane.validation import parse_add_path, parse_list_query, parse_register

ALPHABET = "ab_%\\.-Zz0"
counter = itertools.count()


def ascii_contains(haystack: str, needle: str) -> bool:
    return needle.lower() in haystack.lower()


@settings(max_examples=60, deadline=None)
@given(hosts=st.lists(st.text(ALPHABET, min_size=1, max_size=8), min_size=1, max_size=6),
       needle=st.text(ALPHABET, min_size=1, max_size=3))
def test_search_is_a_case_insensitive_substring_match(tmp_path_factory, hosts: list[str],
                                                      needle: str) -> None:
    store = AgentStore(tmp_path_factory.mktemp("search") / "cp.db")
    project = f"p{next(counter)}"
    try:
        for n, host in enumerate(hosts):
            store.register(project, parse_register({"agent": {
                "agent_id": f"id-{n}", "host_name": host, "host_ip": "192.0.2.1", "host_os": "linux"}}))
            store.add_paths(project, f"id-{n}", parse_add_path({"add_path": [f"/data/x{host}"]}))
        found = store.list_agents(project, parse_list_query([("search", needle)]))
        fields = {f"id-{n}": [f"id-{n}", host, "192.0.2.1", "linux", f"/data/x{host}"]
                  for n, host in enumerate(hosts)}
        expected = [a for a, values in fields.items() if any(ascii_contains(v, needle) for v in values)]
        assert [a.agent_id for a in found.agents] == expected and found.count == len(expected)
    finally:
        store.close()


def test_search_combines_with_status_and_paging(tmp_path: Path) -> None:
    clock = {"t": 1_000_000.0}
    store = AgentStore(tmp_path / "cp.db", stale_after=60, clock=lambda: clock["t"])
    for n in range(30):
        store.register("p", parse_register({"agent": {"agent_id": f"a{n:02d}", "host_name": f"web{n % 3}",
                                                      "host_ip": "192.0.2.1", "host_os": "linux"}}))
        if n == 19:
            clock["t"] += 120  # the first 20 fall silent: abnormal
    page = store.list_agents("p", parse_list_query([("search", "WEB1"), ("status", "abnormal"),
                                                    ("limit", "3"), ("offset", "3")]))
    assert page.count == 7 and [a.agent_id for a in page.agents] == ["a10", "a13", "a16"]
    store.close()
