"""A scheduled backup of the real daemon that finds the repository locked by another process (a prune,
a check): it tries again until the next scheduled run instead of failing at once, saying so once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.agent.conftest import server_env, wait_for

PASSWORD = "lock test password"
HOLDER = """
import sys
from cbr_agent.repository import Repository
repo = Repository.open(sys.argv[1], sys.argv[2])
with repo.lock(exclusive=True):
    print("locked", flush=True)
    sys.stdin.read()
"""
WAITING = "scheduled backup is waiting: repository is locked"


def test_a_scheduled_backup_meeting_a_lock_retries_until_the_next_run(cp_server, agent_host_factory,
                                                                      tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "file").write_bytes(b"worth keeping\n" * 100)
    host = agent_host_factory({**server_env(cp_server, heartbeat=0.5), "CBR_AGENT_BACKUP_SCHEDULE": "1s",
                               "CBR_AGENT_PASSWORD": PASSWORD, "CBR_AGENT_INSECURE_TEST_KDF": "1"})
    assert host.cli("init").returncode == 0
    assert host.cli("path", "add", str(data)).returncode == 0
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(host.state / "repository"), PASSWORD],
                              env=host.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        host.start()
        # the first run waits, bounded by the next scheduled run (1 s later): then it is a failure
        first = wait_for(lambda: (host.state_json().get("last_backup") or {}).get("status") == "failed"
                         and host.state_json()["last_backup"], timeout=20, what="first run given up")
        assert f"pid {holder.pid}" in first["error"] and "still locked at the next scheduled run" \
            in first["error"], first
        assert first["seconds"] >= 0.9, first
        assert "locked" not in first
        # the next runs wait too, and status says so; then the lock goes
        wait_for(lambda: host.log_text().count(WAITING) >= 2, timeout=20, what="second run waiting")
        waiting = wait_for(lambda: json.loads(host.cli("status", "--json").stdout)["backup_waiting"],
                           timeout=20, what="status shows the wait")
        assert f"repository is locked: exclusive lock of pid {holder.pid}" in waiting
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    done = wait_for(lambda: (host.state_json().get("last_backup") or {}).get("status") == "ok"
                    and host.state_json()["last_backup"], timeout=20, what="backup done after the lock went")
    assert done["snapshot_id"]
    assert host.daemon is not None and host.daemon.poll() is None
    assert host.state_json().get("backup_waiting") is None
    log = host.log_text()
    # said once per scheduled run, not once per attempt (each run tries 2-3 times)
    assert 2 <= log.count(WAITING) <= log.count("scheduled backup of 1 path(s) starting"), log
