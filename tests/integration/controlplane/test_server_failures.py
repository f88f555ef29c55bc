"""Failures of the scaled-out control plane (issue 13), with real processes and a real database:

- a server process killed with SIGKILL while claims are in flight through it loses no task and runs
  none twice (both stores: two server processes on one database, the survivor carries on);
- PostgreSQL restarting under load: requests fail fast with 503, the project's error body and
  ``Retry-After`` while it is down (they do not hang), and the server recovers by itself.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cbr_agent.api.models import AgentRegistration
from cbr_agent.controlplane.pgstore import CONNECT_TIMEOUT
from cbr_agent.errors import ApiError, CbrAgentError
from tests.integration.conftest import ServerProcess

TASKS = 30
LEASE = 1.0


def _pair(tmp_path: Path, db: str | None) -> tuple[ServerProcess, ServerProcess]:
    first = ServerProcess(tmp_path / "a", db=db)
    second = ServerProcess(tmp_path / "b", db=db)
    for attr in ("db", "db_path", "credentials_path", "project_id", "ak", "sk", "token"):
        setattr(second, attr, getattr(first, attr))
    return first.start(), second.start()


def _make_tasks(client: Any) -> dict[str, str]:
    """One backup task for each of TASKS agents: ``{task_id: agent_id}``."""
    agents = [str(uuid.uuid4()) for _ in range(TASKS)]
    for agent_id in agents:
        client.register_agent(AgentRegistration(agent_id, "h", "10.0.0.1", "linux"))
    vault = client.cbr_call("POST", ["vaults"], payload={"vault": {
        "name": "v", "billing": {"object_type": "file", "size": 10},
        "resources": [{"id": a, "type": "OS::Native::Server"} for a in agents]}})["vault"]
    client.cbr_call("POST", ["checkpoints"], payload={"checkpoint": {"vault_id": vault["id"]}})
    logs = client.cbr_call("GET", ["operation-logs"], query=[("limit", "100")])["operation_logs"]
    found = {log["id"]: log["extra_info"]["resource"]["id"] for log in logs if log["status"] == "waiting"}
    assert len(found) == TASKS
    return found


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_server_killed_in_the_middle_of_claims_loses_no_task_and_runs_none_twice(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = request.getfixturevalue("postgres").new_database() if store == "postgresql" else None
    doomed, survivor = _pair(tmp_path, db)
    try:
        ids = _make_tasks(survivor.client(max_attempts=1))
        ran: Counter[str] = Counter()  # task -> results accepted (a task "runs" when its result lands)
        lock = threading.Lock()

        def run(task_id: str, owner: str, via: Any) -> None:
            """Claim through ``via``; on an answer, do the work and report through the survivor."""
            agent_id = ids[task_id]
            try:
                via.cbr_call("POST", ["agents", agent_id, "tasks", task_id, "claim"],
                             payload={"owner": owner, "lease_seconds": LEASE}, idempotent=False)
            except (ApiError, CbrAgentError):
                return  # lost the claim, or no answer (the process died): not ours to run
            try:
                survivor.client(max_attempts=1).cbr_call(
                    "POST", ["agents", agent_id, "tasks", task_id, "result"],
                    payload={"owner": owner, "status": "success", "backup": {"snapshot_id": f"s-{task_id}"}},
                    idempotent=False)
            except ApiError:
                return  # the lease lapsed and another owner took over: this run does not count
            with lock:
                ran[task_id] += 1

        threads = [threading.Thread(target=run, args=(t, f"first-{i}", doomed.client(max_attempts=1)))
                   for i, t in enumerate(ids)]
        for i, thread in enumerate(threads):
            thread.start()
            if i == TASKS // 2:
                doomed.process.kill()  # SIGKILL, claims in flight
        for thread in threads:
            thread.join(30)
        assert doomed.process.wait(10) == -9

        # the survivor offers whatever was not run: unanswered claims once their lease lapses
        client = survivor.client(max_attempts=1)
        deadline = time.monotonic() + 20
        while len(ran) < TASKS and time.monotonic() < deadline:
            for task_id, agent_id in ids.items():
                if task_id in ran:
                    continue
                offered = client.cbr_call("GET", ["agents", agent_id, "tasks"])["tasks"]
                for task in offered:
                    run(task["id"], f"second-{uuid.uuid4().hex[:6]}", client)
            time.sleep(0.2)
        assert set(ran) == set(ids), "a task was lost"
        assert max(ran.values()) == 1, "a task ran twice"
        logs = client.cbr_call("GET", ["operation-logs"], query=[("limit", "100")])["operation_logs"]
        assert Counter(log["status"] for log in logs if log["id"] in ids) == {"success": TASKS}
    finally:
        survivor.stop()
        doomed.stop()


def _heartbeat(server: ServerProcess, agent_id: str) -> tuple[int, float, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = json.dumps({"agent": {"agent_id": agent_id, "host_name": "h", "host_ip": "10.0.0.1",
                                 "host_os": "linux"}})
    started = time.monotonic()
    try:
        conn.request("POST", f"/v3/{server.project_id}/agents", body=body,
                     headers={"Content-Type": "application/json", "X-Auth-Token": server.token})
        response = conn.getresponse()
        return (response.status, time.monotonic() - started, dict(response.getheaders()),
                response.read())
    finally:
        conn.close()


def test_postgresql_restarting_under_load_answers_503_fast_and_the_server_recovers(
    postgres: Any, cp_server_factory: Any
) -> None:
    server = cp_server_factory(db=postgres.new_database())
    agent_id = str(uuid.uuid4())
    assert _heartbeat(server, agent_id)[0] == 200
    # (started, finished, status, seconds, headers, body) of every heartbeat
    results: list[tuple[float, float, int, float, dict[str, str], bytes]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            started = time.monotonic()
            status, took, headers, body = _heartbeat(server, agent_id)
            results.append((started, time.monotonic(), status, took, headers, body))
            time.sleep(0.02)

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    outage = CONNECT_TIMEOUT + 2.0  # long enough for requests to start and give up inside it
    try:
        time.sleep(0.5)
        postgres.stop("fast")
        down_at = time.monotonic()
        time.sleep(outage)
        postgres.start()
        up_at = time.monotonic()
        time.sleep(6.0)  # the pool reconnects by itself
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    # every request that ended while the database was down failed, with 503 and fast
    ended_during = [r for r in results if down_at + 0.2 < r[1] < up_at]
    assert ended_during, "no request ended while the database was down"
    for _, _, status, _took, headers, body in ended_during:
        assert status == 503
        assert {k.lower(): v for k, v in headers.items()}.get("retry-after", "").isdigit()
        assert json.loads(body)["error_code"] == "APIGW.0308"
    # (a request batched behind one that waited out the pool's timeout used to wait it out again)
    hung = [(round(r[0] - down_at, 2), round(r[3], 2), r[2])
            for r in results if r[3] >= CONNECT_TIMEOUT + 2.0]
    assert not hung, f"requests hung (started after the stop, seconds, status): {hung}"
    after = [r for r in results if r[0] > up_at + 4.0]
    assert after and all(r[2] == 200 for r in after), "the server did not recover by itself"
    assert "Traceback" not in server.log_text()
