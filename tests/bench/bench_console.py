"""Benchmark: the web console's agents list with a big fleet (issue: 10,000 agents list, filter and page
in under 200 ms on the server).

Not collected by pytest and not run by CI. It fills a fresh database with ``--agents`` agents (each with
one or two backup paths and excludes; a tenth of them silent for an hour, so ``abnormal``; a few
uninstalled), starts a real ``cbr-agent server`` on loopback, signs in to the console with a token and
requests each scenario ``--repeat`` times: the first page, a status filter, a search that matches one
host, a search that matches a tenth of them, a page deep in the list, 200 per page, the overview and
an agent's page. ``--backups-per-agent`` backups of each agent (default 5) feed the "last backup"
column and the overview. It prints the time each request took inside the server (from the server's own
request log, which times the whole ASGI call: session, API calls, template) and as the client saw it.

    python3 tests/bench/bench_console.py --agents 10000 --repeat 20
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from cbr_agent.controlplane.store import AgentStore  # noqa: E402
from cbr_agent.controlplane.validation import parse_add_path, parse_register  # noqa: E402

PROJECT = "bench-project"
LOG_LINE = re.compile(r"GET (\S+) (\d{3}) ([\d.]+)ms")


def fill_backups(db: Path, count: int, per_agent: int) -> None:
    """``per_agent`` backups of every agent, a day apart (rows as an agent's reports make them)."""
    import sqlite3
    import uuid

    now_ms = int(time.time() * 1000)
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO backups (project_id, id, name, checkpoint_id, vault_id, resource_id, resource_name, "
            "status, snapshot_id, size_bytes, added_bytes, created_at, updated_at) "
            "VALUES (?, ?, ?, '', 'bench-vault', ?, ?, 'available', ?, ?, ?, ?, ?)",
            ((PROJECT, str(uuid.uuid4()), f"b{n}", f"agent-{i:05d}", f"host-{i:05d}", f"{i:05d}{n:059d}",
              10**9, 10**7, now_ms - n * 86_400_000, now_ms - n * 86_400_000)
             for i in range(count) for n in range(per_agent)))
    conn.close()


def fill(db: Path, count: int) -> None:
    now = time.time()
    clock = {"t": now}
    store = AgentStore(db, clock=lambda: clock["t"])
    for i in range(count):
        clock["t"] = now - 3600 if i % 10 == 3 else now
        agent_id = f"agent-{i:05d}"
        store.register(PROJECT, parse_register({"agent": {
            "agent_id": agent_id, "host_name": f"host-{i:05d}.dc{i % 7}.example",
            "host_ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            "host_os": "linux" if i % 5 else "windows",
            "agent_version": f"0.{i % 3}.0", "agent_type": "native"}}))
        paths = ["/srv/data", f"/home/user{i % 50}"][: 1 + i % 2]
        store.add_paths(PROJECT, agent_id, parse_add_path({
            "add_path": paths,
            "exclude_path": [{"path_name": paths[0], "exclude_path_name": ["*.tmp", "cache"]}]}))
        if i % 100 == 7:
            store.update_status(PROJECT, agent_id, "uninstall")
    store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--backups-per-agent", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    token = secrets.token_urlsafe(24)
    creds = work / "creds.toml"
    creds.write_text(f'[[tokens]]\ntoken = "{token}"\nproject_id = "{PROJECT}"\n')
    creds.chmod(0o600)
    started = time.perf_counter()
    fill(work / "cp.db", args.agents)
    fill_backups(work / "cp.db", args.agents, args.backups_per_agent)
    print(f"filled {args.agents} agents and {args.agents * args.backups_per_agent} backups in "
          f"{time.perf_counter() - started:.1f} s")
    port = free_port()
    log_path = work / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "cbr_agent", "server", "--port", str(port), "--db",
                                   str(work / "cp.db"), "--credentials", str(creds)],
                                  stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
    base = f"http://127.0.0.1:{port}"
    try:
        session = requests.Session()
        for _ in range(200):
            try:
                page = session.get(base + "/console/login", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        signed = session.post(base + "/console/login", data={"token": token, "csrf": csrf}, timeout=10)
        assert signed.url.endswith("/console/"), signed.url
        last_page = (args.agents + 49) // 50
        scenarios = {
            "first page (50)": "/console/",
            "status=abnormal": "/console/?status=abnormal",
            "search one host": "/console/?q=host-09876",
            "search a tenth (dc3)": "/console/?q=.dc3.",
            "search path + status": "/console/?q=user7&status=normal",
            f"last page ({last_page})": f"/console/?page={last_page}",
            "200 per page, page 20": "/console/?size=200&page=20",
            "overview (counts, chart)": "/console/overview",
            "one agent": "/console/agents/agent-04242",
        }
        client_ms: dict[str, list[float]] = {}
        for name, path in scenarios.items():
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                answer = session.get(base + path, timeout=30)
                client_ms.setdefault(name, []).append((time.perf_counter() - t0) * 1000)
                assert answer.status_code == 200, (path, answer.status_code)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    # the request log has the path without its query: the scenarios' lines are the last ones, in order
    lines = [float(m.group(3)) for m in LOG_LINE.finditer(log_path.read_text())
             if m.group(1).startswith("/console") and m.group(2) == "200"]
    lines = lines[len(lines) - len(scenarios) * args.repeat:]
    server_ms = {path: lines[n * args.repeat:(n + 1) * args.repeat]
                 for n, path in enumerate(scenarios.values())}
    print(f"{'scenario':<26} {'server median':>14} {'server max':>11} {'client median':>14}")
    worst = 0.0
    for name, path in scenarios.items():
        inside = server_ms[path]
        worst = max(worst, max(inside))
        print(f"{name:<26} {statistics.median(inside):>11.1f} ms {max(inside):>8.1f} ms "
              f"{statistics.median(client_ms[name]):>11.1f} ms")
    print(f"slowest request inside the server: {worst:.1f} ms "
          f"({args.agents} agents, {args.repeat} runs each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
