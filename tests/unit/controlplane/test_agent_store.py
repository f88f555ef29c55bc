"""The SQLite store: schema and migrations, liveness by an injected clock, atomic writes."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from cbr_agent.api.models import AgentRegistration
from cbr_agent.controlplane.embedded import EmbeddedControlPlane
from cbr_agent.controlplane.store import SCHEMA_VERSION, AgentStore
from cbr_agent.controlplane.validation import AddPaths, ListQuery
from cbr_agent.errors import StateError


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def reg(agent_id: str, **kw: str) -> AgentRegistration:
    return AgentRegistration(agent_id=agent_id, host_name=kw.get("host_name", "h"), host_ip="10.0.0.1",
                             host_os="linux")


def dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_schema_is_created_with_wal_and_version(tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "sub" / "cp.db")
    conn = store.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    store.close()


def test_reopening_keeps_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    db = tmp_path / "cp.db"
    with EmbeddedControlPlane(db, "p") as plane:
        plane.register_agent(reg("a1"))
        plane.add_paths("a1", ["/data"], {"/data": ["*.tmp"]})
    with EmbeddedControlPlane(db, "p") as plane:
        (path,) = plane.show_agent("a1").paths
        assert (path.dir_path, path.excludes) == ("/data", ("*.tmp",))


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "cp.db"
    AgentStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer than this cbr-agent"):
        AgentStore(db)


def test_not_a_database_is_a_state_error(tmp_path: Path) -> None:
    db = tmp_path / "cp.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="control-plane database"):
        AgentStore(db)


def test_projects_are_separate(tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "cp.db")
    store.register("p1", reg("a1"))
    assert store.list_agents("p2", ListQuery()).count == 0
    with pytest.raises(Exception, match="does not exist"):
        store.show("p2", "a1")
    store.register("p2", reg("a1", host_name="other"))
    assert store.show("p1", "a1").host_name == "h"
    assert store.show("p2", "a1").host_name == "other"


def test_stale_agent_is_reported_abnormal_in_show_and_list(tmp_path: Path) -> None:
    clock = FakeClock()
    plane = EmbeddedControlPlane(tmp_path / "cp.db", "p", stale_after=180.0, clock=clock)
    plane.register_agent(reg("quiet"))
    plane.register_agent(reg("gone"))
    plane.update_agent("gone", "uninstall")
    clock.now += 180.0  # exactly stale_after: not older than it yet
    assert plane.show_agent("quiet").status == "normal"
    clock.now += 0.5
    plane.register_agent(reg("chatty"))
    assert plane.show_agent("quiet").status == "abnormal"
    assert plane.show_agent("gone").status == "uninstall"  # uninstalled stays uninstalled
    statuses = {a.agent_id: a.status for a in plane.list_agents().agents}
    assert statuses == {"quiet": "abnormal", "gone": "uninstall", "chatty": "normal"}
    assert [a.agent_id for a in plane.list_agents(status="abnormal").agents] == ["quiet"]
    assert [a.agent_id for a in plane.list_agents(status="normal").agents] == ["chatty"]
    assert plane.list_agents(status="abnormal").count == 1
    # a heartbeat brings it back
    agent = plane.register_agent(reg("quiet"))
    assert agent.status == "normal"
    assert agent.last_active_time is not None and agent.last_active_time.timestamp() == clock.now
    assert plane.list_agents(status="abnormal").count == 0


def test_status_filter_and_pagination_agree(tmp_path: Path) -> None:
    clock = FakeClock()
    plane = EmbeddedControlPlane(tmp_path / "cp.db", "p", stale_after=55.0, clock=clock)
    for i in range(10):
        plane.register_agent(reg(f"agent-{i:02d}"))
        clock.now += 10  # agent i is silent for (10 - i) * 10 s at the end
    abnormal = plane.list_agents(status="abnormal", limit=2)
    assert abnormal.count == 5  # agents 0..4 are older than 55 s
    pages = [plane.list_agents(status="abnormal", limit=2, offset=o).agents for o in (0, 2, 4)]
    assert [a.agent_id for page in pages for a in page] == [f"agent-{i:02d}" for i in range(5)]
    assert all(a.status == "abnormal" for page in pages for a in page)


def test_failed_write_rolls_back_whole(tmp_path: Path) -> None:
    db = tmp_path / "cp.db"
    store = AgentStore(db)
    store.register("p", reg("a1"))
    # a fault outside the code under test: the database refuses one particular row
    conn = sqlite3.connect(db)
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON paths WHEN NEW.dir_path = '/boom' "
                  "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    conn.close()
    before = dump(db)
    with pytest.raises(StateError, match="disk says no"):
        store.add_paths("p", "a1", AddPaths(("/first", "/boom"), {}))
    assert dump(db) == before
    assert store.show("p", "a1").paths == ()
    store.add_paths("p", "a1", AddPaths(("/first",), {}))  # the connection is usable afterwards
    assert [p.dir_path for p in store.show("p", "a1").paths] == ["/first"]


def test_rejected_requests_leave_the_file_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "cp.db"
    plane = EmbeddedControlPlane(db, "p")
    plane.register_agent(reg("a1"))
    plane.add_paths("a1", ["/keep"], {"/keep": ["*.o"]})
    before = dump(db)
    bad_calls = [
        lambda: plane.add_paths("a1", ["/ok", "relative"]),
        lambda: plane.add_paths("a1", ["/ok"], {"/ok": ["x,y"]}),
        lambda: plane.add_paths("nobody", ["/ok"]),
        lambda: plane.remove_paths("a1", ["/keep", ""]),
        lambda: plane.update_agent("a1", "normal"),
        lambda: plane.register_agent(AgentRegistration("a1", "", "ip", "linux")),
        lambda: plane.remove_agent("nobody"),
    ]
    for call in bad_calls:
        with pytest.raises(Exception):  # noqa: B017 - each is an ApiError; the point is the file
            call()
    assert dump(db) == before


def test_threads_share_a_store_safely(tmp_path: Path) -> None:
    plane = EmbeddedControlPlane(tmp_path / "cp.db", "p")
    errors: list[BaseException] = []

    def beat(worker: int) -> None:
        try:
            for i in range(30):
                plane.register_agent(reg(f"w{worker}-{i % 5}"))
                plane.add_paths(f"w{worker}-{i % 5}", [f"/data/{i % 3}"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=beat, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    page = plane.list_agents()
    assert page.count == 40
    assert all(len(a.paths or ()) == 3 for a in page.agents)
    plane.close()


def test_two_stores_on_one_file_see_each_other(tmp_path: Path) -> None:
    db = tmp_path / "cp.db"
    one, two = EmbeddedControlPlane(db, "p"), EmbeddedControlPlane(db, "p")
    one.register_agent(reg("a1"))
    two.add_paths("a1", ["/x"])
    assert [p.dir_path for p in one.show_agent("a1").paths] == ["/x"]
    one.close()
    two.close()


def test_connections_of_finished_threads_are_closed(tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "cp.db")
    for n in range(20):
        thread = threading.Thread(target=lambda n=n: store.register("p", reg(f"t{n}")))
        thread.start()
        thread.join()
    store.show("p", "t0")
    assert len(store._connections) <= 2  # this thread's and at most the last finished one's
    assert store.list_agents("p", ListQuery()).count == 20
    store.close()
    with pytest.raises(StateError, match="closed"):
        store.show("p", "t0")
