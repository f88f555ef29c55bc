"""The console in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright, against
a real ``cbr-agent server`` with agents registered over the API and one real daemon heartbeating.

The second test puts a real daemon in a vault, clicks "back up now", follows the task to success on the
tasks page (refreshed in place by console.js), sees the backup on the agent's page, restores it through
the form to a fresh directory and checks the files on disk.

Screenshots of every page are kept under the test's tmp dir (``screenshots/``), as test artifacts; with
``UPDATE_CONSOLE_SCREENSHOTS=1`` the agents page also replaces ``docs/console-agents.png`` (the one the
README shows). Playwright never downloads a browser here: it launches ``/usr/bin/chromium``.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cbr_agent.api.models import AgentRegistration
from tests.integration.agent.conftest import AgentHost, server_env, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DOCS_SHOT = Path(__file__).resolve().parents[3] / "docs" / "console-agents.png"

pytestmark = pytest.mark.slow

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed "
                               "(pip install playwright; the 'test' extra has it)")
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)", allow_module_level=True)


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def daemon_host(cp_server_factory: Any, tmp_path: Path) -> Iterator[tuple[Any, AgentHost]]:
    server = cp_server_factory(stale_after=2.0)
    host = AgentHost(tmp_path / "daemon-host", server_env(server, heartbeat=0.3))
    data = tmp_path / "daemon-data"
    data.mkdir()
    added = host.cli("path", "add", str(data), "--exclude", "*.tmp", "--exclude", "cache")
    assert added.returncode == 0, added.stderr
    host.start()
    try:
        yield server, host
    finally:
        host.stop()
        host.kill()


def register_fleet(server: Any, count: int) -> list[str]:
    """``count`` agents registered once over the API: silent from then on, so abnormal after 2 s."""
    ids = [f"fleet-{n:02d}-{uuid.uuid4().hex[:6]}" for n in range(count)]
    with server.client() as client:
        for n, agent_id in enumerate(ids):
            client.register_agent(AgentRegistration(
                agent_id=agent_id, host_name=f"web-{n:02d}.example", host_ip=f"192.0.2.{n + 1}",
                host_os="windows" if n % 3 == 0 else "linux", agent_version="0.9.1", agent_type="native"))
            if n % 2:
                client.add_paths(agent_id, [f"/srv/app{n}"], {f"/srv/app{n}": ["*.log"]})
    return ids


def rows(page: Any) -> list[str]:
    return page.locator("#agents tbody tr").evaluate_all("rows => rows.map(r => r.dataset.agentId)")


def test_console_in_a_real_browser(daemon_host: tuple[Any, AgentHost], browser: Any, tmp_path: Path) -> None:
    server, host = daemon_host
    fleet = register_fleet(server, 30)
    daemon_id = wait_for(host.agent_id, what="daemon identity")
    wait_for(lambda: host.state_json().get("registered"), what="daemon registered")
    with server.client() as client:
        wait_for(lambda: client.list_agents(status="abnormal").count == 30, timeout=10,
                 what="the silent agents abnormal, the daemon normal")
        assert client.show_agent(daemon_id).status == "normal"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))

    # nothing without signing in: the sign-in page, with its 'token' field
    page.goto(server.url + "/console/overview")
    assert "/console/login" in page.url
    page.screenshot(path=shots / "01-sign-in.png", full_page=True)
    page.fill("input[name=token]", "not-the-token")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "That token is not valid for this server."
    page.fill("input[name=token]", server.token)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/console/overview$"))
    assert page.locator("#count-total").inner_text() == "31"
    assert page.locator("#count-abnormal").inner_text() == "30"
    assert page.locator("#count-normal").inner_text() == "1"
    page.screenshot(path=shots / "02-overview.png", full_page=True)
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["cbr_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and server.token not in session["value"]
    assert page.evaluate("document.cookie") == ""  # nothing readable by scripts

    # the agents list: the daemon's row with its paths, 25 per page, next page
    page.click("nav >> text=Agents")
    page.wait_for_url(re.compile(r"/console/$"))
    assert page.locator("#summary").inner_text() == "1–31 of 31 agents"
    daemon_row = page.locator(f"tr[data-agent-id='{daemon_id}']")
    assert "normal" in daemon_row.inner_text() and "*.tmp, cache" in daemon_row.inner_text()
    page.screenshot(path=shots / "03-agents.png", full_page=True)
    page.select_option("select[name=size]", "25")  # submits by itself (console.js)
    page.wait_for_url(re.compile(r"size=25"))
    assert page.locator("#summary").inner_text() == "1–25 of 31 agents"
    page.click("#next")
    page.wait_for_url(re.compile(r"page=2"))
    assert page.locator("#summary").inner_text() == "26–31 of 31 agents"
    assert rows(page) == fleet[24:]  # the daemon registered first: it leads page 1
    page.screenshot(path=shots / "04-agents-page-2.png", full_page=True)

    # filters: status (auto-submitted), search by a backup path, '/' focuses the search box
    page.goto(server.url + "/console/")
    page.select_option("select[name=status]", "normal")
    page.wait_for_url(re.compile(r"status=normal"))
    assert rows(page) == [daemon_id]
    page.goto(server.url + "/console/")
    page.keyboard.press("/")
    page.keyboard.type("/srv/app7")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q=%2Fsrv%2Fapp7"))
    assert rows(page) == [fleet[7]]
    page.screenshot(path=shots / "05-agents-search.png", full_page=True)

    # an agent's page, and "mark uninstalled" (confirmed in a dialog, CSRF token in the form)
    page.click(f"tr[data-agent-id='{fleet[7]}'] a")
    page.wait_for_url(re.compile(rf"/console/agents/{fleet[7]}$"))
    assert "/srv/app7" in page.locator("#paths").inner_text()
    assert "*.log" in page.locator("#paths").inner_text()
    page.screenshot(path=shots / "06-agent.png", full_page=True)
    page.click("#mark-uninstalled")
    page.wait_for_url(re.compile(r"done=uninstalled"))
    assert dialogs == ["Mark web-07.example uninstalled?"]
    assert "Marked uninstalled" in page.locator(".notice").inner_text()
    page.screenshot(path=shots / "07-agent-uninstalled.png", full_page=True)
    with server.client() as client:
        assert client.show_agent(fleet[7]).status == "uninstall"
    page.goto(server.url + f"/console/agents/{daemon_id}")
    assert str(tmp_path / "daemon-data") in page.locator("#paths").inner_text()  # the daemon's own path
    page.screenshot(path=shots / "08-daemon-agent.png", full_page=True)

    # sign out: the session is gone
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r"/console/login$"))
    page.goto(server.url + "/console/")
    assert "/console/login" in page.url
    context.close()
    taken = sorted(p.name for p in shots.iterdir())
    assert len(taken) == 8 and all((shots / name).stat().st_size > 5000 for name in taken)
    if os.environ.get("UPDATE_CONSOLE_SCREENSHOTS") == "1":
        DOCS_SHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shots / "03-agents.png", DOCS_SHOT)


CBR_ENV = {"CBR_AGENT_TASK_LEASE_SECONDS": "5", "CBR_AGENT_TASK_PROGRESS_SECONDS": "0.5",
           "CBR_AGENT_PASSWORD": "console-browser-password"}


@pytest.fixture
def vault_host(cp_server_factory: Any, tmp_path: Path) -> Iterator[tuple[Any, AgentHost, str, Path]]:
    """A real daemon (60 s heartbeat: work reaches it by the long poll) in a vault of a real server."""
    from tests.integration.controlplane.test_console_cbr_http import api

    server = cp_server_factory()
    host = AgentHost(tmp_path / "cbr-host", {**server_env(server, heartbeat=60), **CBR_ENV})
    data = tmp_path / "cbr-data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "sub" / "b.bin").write_bytes(bytes(range(256)) * 64)
    for args in (("init",), ("register",), ("path", "add", str(data))):
        done = host.cli(*args)
        assert done.returncode == 0, done.stderr
    agent_id = host.agent_id()
    api(server, "POST", "/vaults", {"vault": {"name": "console-vault", "billing": {
        "object_type": "file", "size": 10}, "resources": [{"id": agent_id, "type": "OS::Native::Server"}]}})
    host.start()
    try:
        wait_for(lambda: (host.state / "cbr-config.json").exists(), 10, "the agent saw its vault")
        yield server, host, agent_id, data
    finally:
        host.stop()
        host.kill()


def test_back_up_now_and_restore_in_a_real_browser(vault_host: tuple[Any, AgentHost, str, Path],
                                                    browser: Any, tmp_path: Path) -> None:
    server, _host, agent_id, data = vault_host
    shots = tmp_path / "screenshots"
    shots.mkdir()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(server.url + f"/console/agents/{agent_id}")
    page.fill("input[name=token]", server.token)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf"/console/agents/{agent_id}$"))
    assert "console-vault" in page.locator("#vault").inner_text()
    assert "No backup yet" in page.locator("#agent-backups").inner_text()

    # back up now -> the tasks page follows the task to success without a reload
    page.click("#back-up-now")
    page.wait_for_url(re.compile(r"done=backup"))
    page.click("#done a")  # "the tasks page" link of the notice
    page.wait_for_url(re.compile(r"/console/tasks\?agent="))
    page.evaluate("window.notReloaded = true")
    page.wait_for_selector("#tasks tr[data-status=success]", timeout=30_000)
    assert page.evaluate("window.notReloaded") is True  # the rows were refreshed in place
    row = page.locator("#tasks tr[data-status=success]")
    assert "backup" in row.inner_text() and "100%" in row.inner_text() and "snapshot" in row.inner_text()
    page.screenshot(path=shots / "11-tasks.png", full_page=True)

    # the backup on the agent's page; restore it to a fresh directory through the form
    page.goto(server.url + f"/console/agents/{agent_id}")
    backups = page.locator("#agent-backups tr[data-backup-id]")
    assert backups.count() == 1 and "available" in backups.inner_text()
    page.screenshot(path=shots / "12-agent-with-backup.png", full_page=True)
    target = tmp_path / "restored"
    backups.locator("input[name=destination]").fill(str(target))
    backups.locator("button.restore-button").click()
    page.wait_for_url(re.compile(r"done=restore"))
    assert "Restore requested" in page.locator("#done").inner_text()
    page.wait_for_selector("#agent-tasks tr[data-status=success] >> text=restore", timeout=30_000)
    restored = target / str(data).lstrip("/")
    assert (restored / "a.txt").read_text() == "alpha\n"
    assert (restored / "sub" / "b.bin").read_bytes() == (data / "sub" / "b.bin").read_bytes()
    page.screenshot(path=shots / "13-agent-restored.png", full_page=True)

    # the other new pages: backups, vaults and policies, the overview's chart, the agents' last backup
    page.click("nav >> text=Backups")
    page.wait_for_url(re.compile(r"/console/backups$"))
    assert page.locator("#backups tr[data-backup-id]").count() == 1
    page.screenshot(path=shots / "14-backups.png", full_page=True)
    page.click("nav >> text=Vaults & policies")
    page.wait_for_url(re.compile(r"/console/vaults$"))
    vault_row = page.locator("#vaults tr[data-vault-id]")
    assert "console-vault" in vault_row.inner_text()
    assert f"/console/agents/{agent_id}" in vault_row.inner_html()
    page.screenshot(path=shots / "15-vaults.png", full_page=True)
    page.click("nav >> text=Overview")
    page.wait_for_url(re.compile(r"/console/overview$"))
    assert page.locator("#without-backup").inner_text() == "0"
    assert page.locator("#chart svg rect.ok").count() == 14
    page.screenshot(path=shots / "16-overview.png", full_page=True)
    page.click("nav >> text=Agents")
    assert "ago" in page.locator(f"tr[data-agent-id='{agent_id}'] td.last-backup").inner_text()
    page.screenshot(path=shots / "17-agents-last-backup.png", full_page=True)
    context.close()
    assert all(p.stat().st_size > 5000 for p in shots.iterdir())
