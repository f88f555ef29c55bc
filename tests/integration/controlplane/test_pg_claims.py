"""Task claims under real concurrency on PostgreSQL (issue 13): claimers on connections of their own
race for the same tasks at the same moment; every task is won exactly once (READ COMMITTED, one
conditional UPDATE per claim)."""

from __future__ import annotations

import threading
from typing import Any

from cbr_agent.api.models import AgentRegistration
from cbr_agent.controlplane import agent_work, tasks
from cbr_agent.controlplane.pgstore import PgStore
from cbr_agent.errors import ApiError

CLAIMERS = 6
TASKS = 40


def test_concurrent_claimers_win_each_task_exactly_once(postgres: Any) -> None:
    url = postgres.new_database()
    setup = PgStore(url)
    setup.register("p", AgentRegistration("agent-1", "h", "10.0.0.1", "linux"))
    now = setup._now_ms()
    with setup._transaction() as conn:
        ids = [tasks.create(conn, "p", "agent-1", "backup", now) for _ in range(TASKS)]
    stores = [PgStore(url, pool_size=1, migrate=False) for _ in range(CLAIMERS)]
    start = threading.Barrier(CLAIMERS)
    wins: list[list[str]] = [[] for _ in range(CLAIMERS)]
    lost = [0] * CLAIMERS

    def claimer(n: int) -> None:
        start.wait()
        for task_id in ids:
            try:
                agent_work.claim(stores[n], "p", "agent-1", task_id, {"owner": f"claimer-{n}",
                                                                      "lease_seconds": 60})
                wins[n].append(task_id)
            except ApiError as exc:
                assert exc.status == 409
                lost[n] += 1

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(CLAIMERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    won = [t for w in wins for t in w]
    assert sorted(won) == sorted(ids)  # each task once: none lost, none twice
    assert sum(lost) == TASKS * (CLAIMERS - 1)
    with setup._transaction() as conn:
        rows = conn.execute("SELECT status, attempts, lease_owner FROM tasks WHERE agent_id = ?",
                            ("agent-1",)).fetchall()
    assert all(status == "running" and attempts == 1 for status, attempts, _ in rows)
    owners = {task_id: n for n, w in enumerate(wins) for task_id in w}
    assert {owner for _, _, owner in rows} <= {f"claimer-{n}" for n in set(owners.values())}
    for store in [setup, *stores]:
        store.close()
