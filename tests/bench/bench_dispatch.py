"""Benchmark: many simulated agents long-polling ``cbr-agent server`` for work while checkpoints are
requested; how long until each task reaches its agent.

Not collected by pytest and not run by CI. It starts a real server (fresh database, token
credentials, in a temporary directory), registers ``--agents`` agents, puts them in file vaults
(255 per vault, the reference's limit), and has ``--procs`` load processes hold one long poll per
agent (``GET /v3/{project}/agents/{id}/tasks?wait=W``, raw HTTP/1.1 on one keep-alive socket per
agent). After ``--idle`` seconds of idle waiting (which measures requests per idle agent per minute)
the main process requests ``--checkpoints`` checkpoints, each for one random agent, at ``--rate``
per second. An agent that receives a task records when, claims it and ends it with a result, as a
daemon would. Dispatch latency is from the checkpoint's answer to the task's arrival at its agent.

Example (what the README figures come from)::

    python3 tests/bench/bench_dispatch.py --agents 10000 --checkpoints 1000 --procs 2
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def request(method: str, path: str, token: str, body: Any = None) -> bytes:
    data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nX-Auth-Token: {token}\r\n"
    if data:
        head += "Content-Type: application/json\r\n"
    return f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, Any]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    return status, json.loads(body) if body else None


async def agent_loop(
    project: str,
    token: str,
    port: int,
    agent_id: str,
    wait: float,
    stop_at: float,
    idle_from: float,
    idle_until: float,
    out: dict[str, Any],
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    base = f"/v3/{project}/agents/{agent_id}/tasks"
    version = ""
    try:
        while time.time() < stop_at:
            query = f"?wait={wait:g}" + (f"&config_version={version}" if version else "")
            sent = time.time()
            status, answer = await exchange(reader, writer, request("GET", base + query, token))
            if status != 200:
                out["errors"] += 1
                await asyncio.sleep(1)
                continue
            if version and idle_from <= sent < idle_until:
                out["idle_polls"] += 1
            version = answer["config_version"]
            for task in answer["tasks"]:
                out["received"].append((task["checkpoint_id"], time.time()))
                path = f"{base}/{task['id']}"
                await exchange(reader, writer, request("POST", path + "/claim", token, {"owner": agent_id}))
                await exchange(
                    reader,
                    writer,
                    request(
                        "POST",
                        path + "/result",
                        token,
                        {
                            "owner": agent_id,
                            "status": "success",
                            "backup": {"snapshot_id": uuid.uuid4().hex},
                        },
                    ),
                )
    finally:
        writer.close()


def load_process(
    project: str,
    token: str,
    port: int,
    agents: list[str],
    wait: float,
    stop_at: float,
    idle_from: float,
    idle_until: float,
) -> dict[str, Any]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    out: dict[str, Any] = {"received": [], "errors": 0, "idle_polls": 0}

    async def run() -> None:
        await asyncio.gather(
            *(
                agent_loop(project, token, port, a, wait, stop_at, idle_from, idle_until, out)
                for a in agents
            )
        )

    asyncio.run(run())
    return out


async def setup(project: str, token: str, port: int, agents: list[str]) -> list[tuple[str, str]]:
    """Register the agents and put them in vaults; ``[(agent_id, vault_id)]``."""
    reader, writer = await asyncio.open_connection(HOST, port)
    for n, agent_id in enumerate(agents):
        status, _ = await exchange(
            reader,
            writer,
            request(
                "POST",
                f"/v3/{project}/agents",
                token,
                {
                    "agent": {
                        "agent_id": agent_id,
                        "host_name": f"h{n}",
                        "host_ip": "10.0.0.1",
                        "host_os": "linux",
                    }
                },
            ),
        )
        assert status == 200
    pairs = []
    for start in range(0, len(agents), 255):
        chunk = agents[start : start + 255]
        status, answer = await exchange(
            reader,
            writer,
            request(
                "POST",
                f"/v3/{project}/vaults",
                token,
                {
                    "vault": {
                        "name": f"bench{start}",
                        "billing": {"object_type": "file", "size": 100},
                        "resources": [{"id": a, "type": "OS::Native::Server"} for a in chunk],
                    }
                },
            ),
        )
        assert status == 200, answer
        pairs += [(a, answer["vault"]["id"]) for a in chunk]
    writer.close()
    return pairs


async def request_checkpoints(
    project: str, token: str, port: int, targets: list[tuple[str, str]], rate: float
) -> dict[str, float]:
    reader, writer = await asyncio.open_connection(HOST, port)
    asked: dict[str, float] = {}
    start = time.perf_counter()
    for n, (agent_id, vault_id) in enumerate(targets):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        status, answer = await exchange(
            reader,
            writer,
            request(
                "POST",
                f"/v3/{project}/checkpoints",
                token,
                {"checkpoint": {"vault_id": vault_id, "parameters": {"resources": [agent_id]}}},
            ),
        )
        assert status == 200, answer
        asked[answer["checkpoint"]["id"]] = time.time()
    writer.close()
    return asked


def proc_stat(pid: int) -> tuple[float, int]:
    """CPU seconds and RSS of the server process and its children (``--workers``)."""
    cpu, rss = 0.0, 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=10000)
    parser.add_argument("--checkpoints", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="checkpoints per second")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--wait", type=float, default=50.0, help="the agents' poll wait (seconds)")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle waiting measured first")
    parser.add_argument("--db", help="the server's --db (default: a fresh SQLite file); 'postgres' starts "
                        "a temporary PostgreSQL cluster (tests/pgcluster.py)")
    parser.add_argument("--workers", type=int, default=1, help="the server's --workers")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="cbr-dispatch-")
    directory = Path(tmp.name)
    project, token, port = uuid.uuid4().hex, "tok-" + secrets.token_urlsafe(20), free_port()
    creds = directory / "credentials.toml"
    creds.write_text(f'[[tokens]]\ntoken = "{token}"\nproject_id = "{project}"\n')
    creds.chmod(0o600)
    from tests.pgcluster import bench_database

    db, cluster = bench_database(args.db)
    if cluster is not None:
        atexit.register(cluster.destroy)
    log = open(directory / "server.log", "wb")  # noqa: SIM115 - owned by the child
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cbr_agent",
            "server",
            "--host",
            HOST,
            "--port",
            str(port),
            "--db",
            db or str(directory / "cp.db"),
            "--workers",
            str(args.workers),
            "--max-connections",  # every agent holds a connection (the default cap is 2048)
            str(args.agents + 1000),
            "--credentials",
            str(creds),
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        agents = [str(uuid.uuid4()) for _ in range(args.agents)]
        t0 = time.perf_counter()
        pairs = asyncio.run(setup(project, token, port, agents))
        print(
            f"registered {len(agents)} agents in {len(range(0, len(agents), 255))} vaults "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        connect_grace = 5.0 + args.agents / 2000
        idle_from = time.time() + connect_grace
        idle_until = idle_from + args.idle
        stop_at = idle_until + args.checkpoints / args.rate + 15
        cpu0, _ = proc_stat(server.pid)
        with ProcessPoolExecutor(args.procs) as pool:
            futures = [
                pool.submit(
                    load_process,
                    project,
                    token,
                    port,
                    agents[i :: args.procs],
                    args.wait,
                    stop_at,
                    idle_from,
                    idle_until,
                )
                for i in range(args.procs)
            ]
            time.sleep(max(0.0, idle_from - time.time()))
            cpu_idle0, _ = proc_stat(server.pid)
            time.sleep(max(0.0, idle_until - time.time()))
            cpu_idle1, rss_idle = proc_stat(server.pid)
            targets = random.sample(pairs, min(args.checkpoints, len(pairs)))
            asked = asyncio.run(request_checkpoints(project, token, port, targets, args.rate))
            cpu_busy, rss_busy = proc_stat(server.pid)
            outs = [f.result() for f in futures]
        received = {cp: at for out in outs for cp, at in out["received"]}
        latencies = [received[cp] - t for cp, t in asked.items() if cp in received]
        idle_polls = sum(out["idle_polls"] for out in outs)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end")
        print(
            f"idle: {idle_polls} polls in {args.idle:g} s from {args.agents} agents = "
            f"{idle_polls / args.agents / (args.idle / 60):.2f} requests per idle agent per minute "
            f"(poll wait {args.wait:g} s)"
        )
        print(
            f"server while idle: {(cpu_idle1 - cpu_idle0) / args.idle * 100:.1f}% of one core, "
            f"RSS {rss_idle / 2**20:.0f} MiB with {args.agents} polls held"
        )
        print(
            f"dispatch: {len(latencies)} of {len(asked)} tasks reached their agent; latency "
            f"p50 {pct(latencies, 0.5) * 1000:.0f} ms, p99 {pct(latencies, 0.99) * 1000:.0f} ms, "
            f"max {max(latencies, default=0) * 1000:.0f} ms"
        )
        print(
            f"server CPU over the whole run {cpu_busy - cpu0:.1f} s, "
            f"RSS at the end {rss_busy / 2**20:.0f} MiB; "
            f"errors {sum(out['errors'] for out in outs)}"
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
