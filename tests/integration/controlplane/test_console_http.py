"""The web console over real HTTP against a real ``cbr-agent server``: sign-in, the session cookie,
CSRF and Origin checks, nothing reachable without a session, the agents list (filters, search,
paging), an agent's page and "mark uninstalled" through the API, escaping, sign-out."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
import requests

from cbr_agent.api.models import AgentRegistration

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, html
    return match.group(1)


def sign_in(server: Any, token: str | None = None, next_page: str = "/console/") -> requests.Session:
    browser = requests.Session()
    form = browser.get(server.url + "/console/login", timeout=10)
    answer = browser.post(server.url + "/console/login", timeout=10, allow_redirects=False,
                          data={"token": token or server.token, "csrf": csrf_of(form.text),
                                "next": next_page})
    assert answer.status_code == 303, answer.text
    return browser


def reg(agent_id: str, host: str, **facts: str) -> AgentRegistration:
    return AgentRegistration(agent_id=agent_id, host_name=host, host_ip=facts.get("ip", "10.0.0.1"),
                             host_os=facts.get("os", "linux"), agent_version="1.2.3", agent_type="native")


def summary(html: str) -> str:
    match = re.search(r'id="summary">\s*(.*?)\s*</p>', html, re.S)
    assert match, html
    return " ".join(match.group(1).split())


def agent_ids(html: str) -> list[str]:
    return re.findall(r'data-agent-id="([^"]+)"', html)


GUARDED_GETS = ["/console/", "/console/overview", "/console/agents/some-agent", "/console/?status=normal"]
GUARDED_POSTS = ["/console/logout", "/console/agents/some-agent/uninstall"]


def test_nothing_is_reachable_without_signing_in(cp_server: Any) -> None:
    for path in GUARDED_GETS:
        answer = requests.get(cp_server.url + path, timeout=10, allow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/console/login?next="), path
        assert "agent" not in answer.text
    for path in GUARDED_POSTS:
        answer = requests.post(cp_server.url + path, data={"csrf": "x"}, timeout=10, allow_redirects=False)
        assert answer.status_code == 403, path
    # a forged session cookie is no session
    answer = requests.get(cp_server.url + "/console/", cookies={"cbr_console": "forged"}, timeout=10,
                          allow_redirects=False)
    assert answer.status_code == 303
    assert requests.get(cp_server.url + "/console", timeout=10, allow_redirects=False).status_code == 308
    login = requests.get(cp_server.url + "/console/login", timeout=10)
    assert login.status_code == 200 and 'name="token"' in login.text
    assert "script-src 'self'" in login.headers["content-security-policy"]
    assert requests.get(cp_server.url + "/console/static/console.css", timeout=10).status_code == 200
    assert requests.get(cp_server.url + "/console/static/..%2Fviews.py", timeout=10).status_code in (400, 404)


def test_sign_in_sets_a_strict_httponly_session_cookie_without_the_token(cp_server: Any) -> None:
    browser = requests.Session()
    form = browser.get(cp_server.url + "/console/login", timeout=10)
    answer = browser.post(cp_server.url + "/console/login", timeout=10, allow_redirects=False,
                          data={"token": cp_server.token, "csrf": csrf_of(form.text), "next": "/console/"})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"
    cookie = next(c for c in answer.headers["set-cookie"].split(", ") if c.startswith("cbr_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert cp_server.token not in answer.headers["set-cookie"]
    assert browser.cookies["cbr_console"] != cp_server.token and len(browser.cookies["cbr_console"]) >= 40
    page = browser.get(cp_server.url + "/console/", timeout=10)
    assert page.status_code == 200 and cp_server.project_id in page.text
    assert cp_server.token not in page.text and page.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("token", ["wrong-token", ""])
def test_a_bad_token_does_not_sign_in(cp_server: Any, token: str) -> None:
    browser = requests.Session()
    form = browser.get(cp_server.url + "/console/login", timeout=10)
    answer = browser.post(cp_server.url + "/console/login", timeout=10, allow_redirects=False,
                          data={"token": token, "csrf": csrf_of(form.text)})
    assert answer.status_code == 401 and "not valid" in answer.text
    assert "cbr_console" not in browser.cookies


def test_sign_in_form_is_csrf_protected_and_next_stays_on_the_console(cp_server: Any) -> None:
    browser = requests.Session()
    browser.get(cp_server.url + "/console/login", timeout=10)
    forged = browser.post(cp_server.url + "/console/login", timeout=10, allow_redirects=False,
                          data={"token": cp_server.token, "csrf": "guessed"})
    assert forged.status_code == 403 and "cbr_console" not in browser.cookies
    for evil in ("//evil.example/", "https://evil.example/console/", "/console/\\evil"):
        browser = requests.Session()
        form = browser.get(cp_server.url + "/console/login", timeout=10)
        answer = browser.post(cp_server.url + "/console/login", timeout=10, allow_redirects=False,
                              data={"token": cp_server.token, "csrf": csrf_of(form.text), "next": evil})
        assert answer.headers["location"] == "/console/", evil
    back = sign_in(cp_server, next_page="/console/overview")
    assert back.get(cp_server.url + "/console/overview", timeout=10).status_code == 200


def test_agents_list_filters_searches_and_pages(cp_server: Any) -> None:
    run = uuid.uuid4().hex[:6]
    with cp_server.client() as client:
        ids = [f"{run}-{n:03d}" for n in range(60)]
        for n, agent_id in enumerate(ids):
            client.register_agent(reg(agent_id, f"host-{run}-{n:03d}", ip=f"10.9.0.{n}",
                                      os="windows" if n % 4 == 0 else "linux"))
        client.add_paths(ids[7], ["/srv/needle-" + run], {"/srv/needle-" + run: ["*.iso"]})
        for agent_id in ids[:5]:
            client.update_agent(agent_id)
    browser = sign_in(cp_server)
    page = browser.get(cp_server.url + "/console/", params={"q": run, "size": 25}, timeout=10).text
    assert summary(page) == "1–25 of 60 agents" and agent_ids(page) == ids[:25]
    assert "page 1 of 3" in page
    third = browser.get(cp_server.url + "/console/", params={"q": run, "size": 25, "page": 3},
                        timeout=10).text
    assert summary(third) == "51–60 of 60 agents" and agent_ids(third) == ids[50:]
    gone = browser.get(cp_server.url + "/console/", params={"q": run, "status": "uninstall"}, timeout=10).text
    assert agent_ids(gone) == ids[:5]
    normal = browser.get(cp_server.url + "/console/", params={"q": run, "status": "normal"}, timeout=10).text
    assert summary(normal) == "1–50 of 55 agents"
    by_path = browser.get(cp_server.url + "/console/", params={"q": "needle-" + run}, timeout=10).text
    assert agent_ids(by_path) == [ids[7]] and "*.iso" in by_path
    by_ip = browser.get(cp_server.url + "/console/", params={"q": "10.9.0.42"}, timeout=10).text
    assert agent_ids(by_ip) == [ids[42]]
    wild = browser.get(cp_server.url + "/console/", params={"q": f"host-{run}-0_1"}, timeout=10).text
    assert agent_ids(wild) == []  # '_' is a character, not LIKE's wildcard
    nothing = browser.get(cp_server.url + "/console/", params={"q": "no-such-" + run}, timeout=10).text
    assert summary(nothing) == "No agent matches."
    overview = browser.get(cp_server.url + "/console/overview", timeout=10).text
    counts = dict(re.findall(r'id="count-(\w+)">(\d+)<', overview))
    assert int(counts["uninstall"]) >= 5 and int(counts["total"]) >= 60


def test_agent_page_and_mark_uninstalled_need_the_csrf_token_and_same_origin(cp_server: Any) -> None:
    agent_id = str(uuid.uuid4())
    with cp_server.client() as client:
        client.register_agent(reg(agent_id, "<script>alert('x')</script>"))
        client.add_paths(agent_id, ["/data/a b"], {"/data/a b": ["*.tmp", "<b>bold</b>"]})
    browser = sign_in(cp_server)
    page = browser.get(f"{cp_server.url}/console/agents/{agent_id}", timeout=10)
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text
    assert "/data/a b" in page.text and "&lt;b&gt;bold&lt;/b&gt;" in page.text
    action = f"{cp_server.url}/console/agents/{agent_id}/uninstall"
    token = csrf_of(page.text)
    assert browser.post(action, data={}, timeout=10, allow_redirects=False).status_code == 403
    wrong = browser.post(action, data={"csrf": token + "x"}, timeout=10, allow_redirects=False)
    assert wrong.status_code == 403
    cross = browser.post(action, data={"csrf": token}, headers={"Origin": "https://evil.example"}, timeout=10,
                         allow_redirects=False)
    assert cross.status_code == 403
    with cp_server.client() as client:
        assert client.show_agent(agent_id).status == "normal"
    done = browser.post(action, data={"csrf": token}, headers={"Origin": cp_server.url}, timeout=10,
                        allow_redirects=False)
    assert done.status_code == 303
    with cp_server.client() as client:
        assert client.show_agent(agent_id).status == "uninstall"
    after = browser.get(cp_server.url + done.headers["location"], timeout=10).text
    assert "Marked uninstalled" in after and 'id="mark-uninstalled"' not in after
    unknown = str(uuid.uuid4())
    missing = browser.get(f"{cp_server.url}/console/agents/{unknown}", timeout=10)
    assert missing.status_code == 404 and f"agent_id &#39;{unknown}&#39; does not exist" in missing.text


def test_each_project_sees_only_its_own_agents(cp_server: Any) -> None:
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    from cbr_agent.api.client import HttpControlPlane

    with cp_server.client() as client:
        client.register_agent(reg(mine, "mine-" + mine[:8]))
    with HttpControlPlane(cp_server.url, cp_server.other_project_id, token=cp_server.other_token) as other:
        other.register_agent(reg(theirs, "theirs-" + theirs[:8]))
    browser = sign_in(cp_server, token=cp_server.other_token)
    listed = browser.get(cp_server.url + "/console/", timeout=10).text
    assert theirs in agent_ids(listed) and mine not in agent_ids(listed)
    assert browser.get(f"{cp_server.url}/console/agents/{mine}", timeout=10).status_code == 404


def test_sign_out_ends_the_session(cp_server: Any) -> None:
    browser = sign_in(cp_server)
    page = browser.get(cp_server.url + "/console/", timeout=10)
    cookie = browser.cookies["cbr_console"]
    out = browser.post(cp_server.url + "/console/logout", data={"csrf": csrf_of(page.text)}, timeout=10,
                       allow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    again = requests.get(cp_server.url + "/console/", cookies={"cbr_console": cookie}, timeout=10,
                         allow_redirects=False)
    assert again.status_code == 303


def test_no_console_flag(cp_server_factory: Any) -> None:
    server = cp_server_factory(extra_args=["--no-console"])
    assert requests.get(server.url + "/console/login", timeout=10).status_code == 404


def test_over_https_the_session_cookie_is_secure(cp_server_factory: Any, tmp_path: Any) -> None:
    from tests.integration.controlplane.test_server_sdk import self_signed

    cert, key = self_signed(tmp_path)
    server = cp_server_factory(extra_args=["--tls-cert", str(cert), "--tls-key", str(key)])
    browser = requests.Session()
    form = browser.get(server.url + "/console/login", timeout=10, verify=str(cert))
    assert "Secure" in form.headers["set-cookie"]
    answer = browser.post(server.url + "/console/login", timeout=10, allow_redirects=False, verify=str(cert),
                          data={"token": server.token, "csrf": csrf_of(form.text)})
    assert answer.status_code == 303
    session = next(c for c in answer.headers["set-cookie"].split(", ") if c.startswith("cbr_console="))
    assert "Secure" in session and "HttpOnly" in session and "SameSite=strict" in session
