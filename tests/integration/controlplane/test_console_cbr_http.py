"""The console's CBR pages over real HTTP against a real ``cbr-agent server``: vaults and policies,
backups (filters, paging), tasks (filters, the live rows fragment), an agent's backups and tasks,
"back up now" and "restore this backup to ..." (CSRF-guarded, through the API), the overview's
protection figures and chart, and the agents list's "last backup".

Backups are reported and tasks claimed through the agent-facing API, as a daemon would (the browser
test drives a real daemon)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from tests.integration.controlplane.test_console_http import csrf_of, reg, sign_in, summary


def api(server: Any, method: str, path: str, body: Any = None) -> Any:
    answer = requests.request(method, f"{server.url}/v3/{server.project_id}{path}", json=body, timeout=10,
                              headers={"X-Auth-Token": server.token})
    assert answer.status_code < 300, answer.text
    return answer.json() if answer.content else None


def report_backup(server: Any, agent_id: str, vault_id: str, snapshot: str, size: int, when: datetime) -> str:
    body = {"backup": {"snapshot_id": snapshot, "created_at": when.isoformat(), "auto_trigger": True,
                       "vault_id": vault_id, "name": f"b-{snapshot[:6]}", "size_bytes": size,
                       "added_bytes": size // 2, "files": 3, "duration": 1.0, "warnings": 0,
                       "trigger": "policy"}}
    return api(server, "POST", f"/agents/{agent_id}/backups", body)["backup"]["id"]


def ids(html: str, kind: str) -> list[str]:
    return re.findall(rf'data-{kind}-id="([^"]+)"', html)


def setup_fleet(server: Any) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    in_vault, outside = f"{run}-in", f"{run}-out"
    with server.client() as client:
        client.register_agent(reg(in_vault, f"host-{run}-in"))
        client.register_agent(reg(outside, f"host-{run}-out"))
    policy = api(server, "POST", "/policies", {"policy": {
        "name": f"nightly-{run}", "operation_type": "backup", "enabled": True,
        "operation_definition": {"max_backups": 7, "timezone": "UTC+00:00"},
        "trigger": {"properties": {"pattern": ["FREQ=DAILY;INTERVAL=1;BYHOUR=2;BYMINUTE=0"]}}}})["policy"]
    vault = api(server, "POST", "/vaults", {"vault": {
        "name": f"vault-{run}", "billing": {"object_type": "file", "size": 100},
        "resources": [{"id": in_vault, "type": "OS::Native::Server"}],
        "backup_policy_id": policy["id"]}})["vault"]
    now = datetime.now(timezone.utc)
    backups = [report_backup(server, in_vault, vault["id"], uuid.uuid4().hex * 2, 1000 * (n + 1),
                             now - timedelta(hours=30) + timedelta(minutes=30 * n)) for n in range(55)]
    return {"run": run, "in": in_vault, "out": outside, "vault": vault, "policy": policy, "backups": backups}


def test_cbr_pages_list_what_the_api_lists(cp_server: Any) -> None:
    fleet = setup_fleet(cp_server)
    browser = sign_in(cp_server)
    vaults = browser.get(cp_server.url + "/console/vaults", timeout=10).text
    assert fleet["vault"]["id"] in ids(vaults, "vault") and fleet["policy"]["id"] in ids(vaults, "policy")
    assert f"host-{fleet['run']}-in" in vaults and "FREQ=DAILY;INTERVAL=1;BYHOUR=2;BYMINUTE=0" in vaults
    assert "max backups: 7" in vaults
    # backups: newest first, paged by 50, filtered by agent, vault and status
    page = browser.get(cp_server.url + "/console/backups", params={"agent": fleet["in"]}, timeout=10).text
    assert summary(page) == "1–50 of 55 backups"
    assert ids(page, "backup") == fleet["backups"][::-1][:50]
    second = browser.get(cp_server.url + "/console/backups", params={"agent": fleet["in"], "page": 2},
                         timeout=10).text
    assert ids(second, "backup") == fleet["backups"][::-1][50:]
    by_vault = browser.get(cp_server.url + "/console/backups", timeout=10,
                           params={"vault": fleet["vault"]["id"], "status": "available"}).text
    assert summary(by_vault) == "1–50 of 55 backups"
    none = browser.get(cp_server.url + "/console/backups", params={"agent": fleet["out"]}, timeout=10).text
    assert summary(none) == "No backup matches."
    # the agents list: each agent's newest backup, and "never"
    agents = browser.get(cp_server.url + "/console/", params={"q": fleet["run"]}, timeout=10).text
    rows = dict(re.findall(r'data-agent-id="([^"]+)">.*?<td class="last-backup">(.*?)</td>', agents, re.S))
    assert "ago" in rows[fleet["in"]] and "never" in rows[fleet["out"]]
    assert "3 h ago" in rows[fleet["in"]]  # the newest, made 30 h - 54 x 30 min ago
    # the overview: the newest backup's size is protected; a chart of days
    overview = browser.get(cp_server.url + "/console/overview", timeout=10).text
    assert re.search(r'id="bytes-protected">[^<]*(KiB|MiB|B)<', overview)
    assert overview.count("<rect") == 28 and 'aria-label="backups and failures per day"' in overview
    assert int(re.search(r'id="without-backup">(\d+)<', overview).group(1)) >= 1  # the agent outside


def test_back_up_now_and_restore_make_tasks_through_the_api(cp_server: Any) -> None:
    fleet = setup_fleet(cp_server)
    browser = sign_in(cp_server)
    agent_url = f"{cp_server.url}/console/agents/{fleet['in']}"
    page = browser.get(agent_url, timeout=10).text
    assert f"vault-{fleet['run']}" in page and 'id="back-up-now"' in page
    assert ids(page, "backup") == fleet["backups"][::-1][:10]
    token = csrf_of(page)
    action = agent_url + "/backup"
    assert browser.post(action, data={"csrf": "wrong"}, timeout=10, allow_redirects=False).status_code == 403
    done = browser.post(action, data={"csrf": token}, timeout=10, allow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].endswith("?done=backup")
    waiting = api(cp_server, "GET", f"/operation-logs?resource_id={fleet['in']}&status=waiting")[
        "operation_logs"]
    assert [(t["operation_type"], t["status"]) for t in waiting] == [("backup", "waiting")]
    after = browser.get(cp_server.url + done.headers["location"], timeout=10).text
    assert "Backup requested" in after and 'data-live="yes"' in after and waiting[0]["id"] in after
    # a second one while the first waits: the API skips it, and the page says why
    again = browser.post(action, data={"csrf": token}, timeout=10)
    assert "Refused: a backup of this agent is already waiting or running" in again.text
    # the tasks page and its live fragment follow the task as the agent claims and reports it
    tasks = browser.get(cp_server.url + "/console/tasks", params={"agent": fleet["in"]}, timeout=10).text
    assert 'data-live="yes"' in tasks and ids(tasks, "task")[0] == waiting[0]["id"]
    rows_url = re.search(r'data-rows="([^"]+)"', tasks).group(1).replace("&amp;", "&")
    task_path = f"/agents/{fleet['in']}/tasks/{waiting[0]['id']}"
    api(cp_server, "POST", task_path + "/claim", {"owner": "test", "lease_seconds": 30})
    api(cp_server, "POST", task_path + "/progress", {"owner": "test", "progress": 42, "lease_seconds": 30})
    rows = browser.get(cp_server.url + rows_url, timeout=10).text
    assert 'data-status="running"' in rows and 'value="42"' in rows and "<html" not in rows
    api(cp_server, "POST", task_path + "/result", {
        "owner": "test", "status": "success", "result": {"snapshot_id": "ab" * 32, "files": 3},
        "backup": {"snapshot_id": "ab" * 32, "size_bytes": 10, "added_bytes": 5}})
    rows = browser.get(cp_server.url + rows_url, timeout=10).text
    assert 'data-status="success"' in rows and "3 files" in rows
    # restore: the destination goes to POST /backups/{id}/restore; a relative one is refused clearly
    newest = fleet["backups"][-1]
    restore = f"{cp_server.url}/console/backups/{newest}/restore"
    back = f"/console/agents/{fleet['in']}"
    bad = browser.post(restore, data={"csrf": token, "destination": "relative/dir", "back": back}, timeout=10)
    assert "Refused:" in bad.text and "must be an absolute path" in bad.text
    forged = browser.post(restore, data={"destination": "/srv/x", "back": back}, timeout=10,
                          allow_redirects=False)
    assert forged.status_code == 403
    ok = browser.post(restore, data={"csrf": token, "destination": "/srv/restored here", "back": back},
                      timeout=10, allow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == back + "?done=restore"
    restores = api(cp_server, "GET", f"/operation-logs?resource_id={fleet['in']}&operation_type=restore")
    assert [t["extra_info"]["restore"]["backup_id"] for t in restores["operation_logs"]] == [newest]
    assert api(cp_server, "GET", f"/backups/{newest}")["backup"]["status"] == "restoring"
    # an agent in no vault: no button, and the action says so
    outside = browser.get(f"{cp_server.url}/console/agents/{fleet['out']}", timeout=10).text
    assert 'id="back-up-now"' not in outside and 'id="no-vault"' in outside
    refused = browser.post(f"{cp_server.url}/console/agents/{fleet['out']}/backup", data={"csrf": token},
                           timeout=10)
    assert "is in no vault" in refused.text
    assert api(cp_server, "GET", f"/operation-logs?resource_id={fleet['out']}")["count"] == 0


def test_cbr_pages_need_a_session(cp_server: Any) -> None:
    for path in ("/console/vaults", "/console/backups", "/console/tasks", "/console/tasks/rows"):
        answer = requests.get(cp_server.url + path, timeout=10, allow_redirects=False)
        assert answer.status_code == 303 and "/console/login" in answer.headers["location"], path
    for path in ("/console/agents/x/backup", "/console/backups/x/restore"):
        answer = requests.post(cp_server.url + path, data={"csrf": "x"}, timeout=10, allow_redirects=False)
        assert answer.status_code == 403, path


def test_api_extensions_for_the_console_latest_per_resource_and_several_resources(cp_server: Any) -> None:
    fleet = setup_fleet(cp_server)
    other = f"{fleet['run']}-other"
    with cp_server.client() as client:
        client.register_agent(reg(other, f"host-{fleet['run']}-other"))
    api(cp_server, "POST", f"/vaults/{fleet['vault']['id']}/addresources",
        {"resources": [{"id": other, "type": "OS::Native::Server"}]})
    now = datetime.now(timezone.utc)
    older = report_backup(cp_server, other, fleet["vault"]["id"], "e" * 64, 7, now - timedelta(hours=2))
    newer = report_backup(cp_server, other, fleet["vault"]["id"], "f" * 64, 9, now - timedelta(hours=1))
    both = f"/backups?resource_id={fleet['in']}&resource_id={other}"
    assert api(cp_server, "GET", both)["count"] == 57
    assert {b["id"] for b in api(cp_server, "GET", both + "&sort=created_at:asc&limit=2")["backups"]} == {
        fleet["backups"][0], fleet["backups"][1]}
    latest = api(cp_server, "GET", both + "&latest_per_resource=true")
    assert {b["resource_id"]: b["id"] for b in latest["backups"]} == {fleet["in"]: fleet["backups"][-1],
                                                                      other: newer}
    assert latest["count"] == 2 and latest["size_bytes_total"] == 55_000 + 9
    since = (now - timedelta(minutes=150)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = api(cp_server, "GET",
                 f"/backups?latest_per_resource=true&start_time={since}&resource_id={other}")
    assert [b["id"] for b in recent["backups"]] == [newer] and older != newer
    plain = api(cp_server, "GET", both)
    assert "size_bytes_total" not in plain  # the SDK's answer is unchanged without the extension
