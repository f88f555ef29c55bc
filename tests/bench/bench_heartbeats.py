"""Benchmark: a fleet of agents heartbeating against ``cbr-agent server`` on loopback.

Not collected by pytest and not run by CI. It starts a real server (fresh database and credentials in
a temporary directory, request log to a file there), registers ``--agents`` agent ids, then for
``--duration`` seconds has ``--procs`` load processes send AK/SK-signed heartbeats (``POST
/v3/{project}/agents``, the register upsert) over keep-alive connections, while one more connection
lists agents (``limit=100``) every ``--list-interval`` seconds. It prints heartbeats/s and latency
percentiles.

Two modes:
- ``--rate N`` (open loop): heartbeats are scheduled at N per second in total, and each latency is
  measured from the request's *scheduled* time, so a server that falls behind shows it in p99
  (no coordinated omission);
- ``--rate 0`` (closed loop): every connection sends back to back; this measures the saturation
  throughput (latency then mostly measures the queue the benchmark itself builds).

Example (what the README figures come from)::

    python3 tests/bench/bench_heartbeats.py --agents 5000 --duration 20 --rate 1000
    python3 tests/bench/bench_heartbeats.py --agents 5000 --duration 20 --rate 0

The load generator shares the machine's cores with the server: it is deliberately lean (asyncio on
uvloop, raw HTTP/1.1 on keep-alive sockets, signing with ``cbr_agent.api.signer``). Besides the
latency seen by the clients it prints the load average, the server's CPU time per request (which
hardly depends on what else runs), and the time each heartbeat spent inside the server according to
its own request log: when the clients' p99 is far above the server's, the difference is time spent
waiting for a CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cbr_agent.api import signer


@dataclass
class Target:
    host: str
    port: int
    project_id: str
    ak: str
    sk: str


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    cpu: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def heartbeat_request(target: Target, agent_id: str, n: int) -> bytes:
    body = json.dumps({"agent": {
        "agent_id": agent_id, "host_name": f"host-{agent_id[:8]}", "host_ip": f"10.0.{n % 250}.{n % 200}",
        "host_os": "linux", "agent_version": "1.0.0", "agent_type": "native",
    }}, separators=(",", ":")).encode()
    path = f"/v3/{target.project_id}/agents"
    headers = {"Content-Type": "application/json;charset=utf-8", "Host": f"{target.host}:{target.port}"}
    signer.sign("POST", path, [], headers, body, target.ak, target.sk)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST {path} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def list_request(target: Target) -> bytes:
    path = f"/v3/{target.project_id}/agents"
    query = signer.canonical_query([("limit", "100"), ("offset", "0")])
    headers = {"Content-Type": "application/json", "Host": f"{target.host}:{target.port}"}
    signer.sign("GET", path, [("limit", "100"), ("offset", "0")], headers, b"", target.ak, target.sk)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"GET {path}?{query} HTTP/1.1\r\n{head}\r\n".encode()


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def connection_loop(target: Target, ids: list[str], rate: float, phase: float, start: float,
                          deadline: float, result: Result) -> None:
    reader, writer = await asyncio.open_connection(target.host, target.port)
    n = 0
    try:
        while True:
            scheduled = start + (n + phase) / rate if rate else time.perf_counter()
            if scheduled >= deadline:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            request = heartbeat_request(target, ids[n % len(ids)], n)
            status = await exchange(reader, writer, request)
            result.latencies.append(time.perf_counter() - scheduled)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status != 200:
                result.errors += 1
            n += 1
    finally:
        writer.close()


async def lister_loop(target: Target, interval: float, deadline: float, result: Result) -> None:
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        while time.perf_counter() + interval < deadline:
            await asyncio.sleep(interval)
            started = time.perf_counter()
            status = await exchange(reader, writer, list_request(target))
            result.latencies.append(time.perf_counter() - started)
            if status != 200:
                result.errors += 1
    finally:
        writer.close()


async def run_worker(target: Target, ids: list[str], conns: int, rate: float, duration: float,
                     list_interval: float) -> tuple[Result, Result]:
    start = time.perf_counter() + 0.2
    deadline = start + duration
    hb, listing = Result(), Result()
    per_conn = rate / conns if rate else 0.0
    tasks = [connection_loop(target, ids[i::conns], per_conn, i / conns, start, deadline, hb)
             for i in range(conns)]
    if list_interval > 0:
        tasks.append(lister_loop(target, list_interval, deadline, listing))
    await asyncio.gather(*tasks)
    return hb, listing


def worker(target: Target, ids: list[str], conns: int, rate: float, duration: float,
           list_interval: float) -> tuple[Result, Result]:
    try:  # uvloop (installed with uvicorn[standard]) keeps the generator's own CPU share small
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    started = time.process_time()
    hb, listing = asyncio.run(run_worker(target, ids, conns, rate, duration, list_interval))
    hb.cpu = time.process_time() - started
    return hb, listing


def start_server(directory: Path, port: int, target: Target, log_level: str, db: str | None = None,
                 workers: int = 1) -> subprocess.Popen[bytes]:
    creds = directory / "credentials.toml"
    creds.write_text(f'[[access_keys]]\nak = "{target.ak}"\nsk = "{target.sk}"\n'
                     f'project_id = "{target.project_id}"\n')
    creds.chmod(0o600)
    log = open(directory / "server.log", "wb")  # noqa: SIM115 - owned by the child
    cmd = [sys.executable, "-m", "cbr_agent", "server", "--host", "127.0.0.1", "--port", str(port),
           "--db", db or str(directory / "cp.db"), "--credentials", str(creds), "--log-level", log_level,
           "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start; see " + str(directory / "server.log"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its children (the ``--workers``) (Linux /proc)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def server_side_ms(log: Path, skip: int) -> list[float]:
    """Per-request milliseconds of the heartbeats as the server logged them (the first ``skip``
    POSTs are the registration phase)."""
    found = re.findall(r" POST /v3/\S+/agents 200 ([0-9.]+)ms", log.read_text(errors="replace"))
    return [float(ms) for ms in found[skip:]]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def register_all(target: Target, ids: list[str]) -> None:
    reader, writer = await asyncio.open_connection(target.host, target.port)
    for n, agent_id in enumerate(ids):
        if await exchange(reader, writer, heartbeat_request(target, agent_id, n)) != 200:
            raise SystemExit(f"registering {agent_id} failed")
    writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=5000, help="agent ids in the fleet")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of measured load")
    parser.add_argument("--rate", type=float, default=1000.0, help="heartbeats/s in total; 0 = flat out")
    parser.add_argument("--procs", type=int, default=2, help="load-generating processes")
    parser.add_argument("--conns", type=int, default=16, help="keep-alive connections per process")
    parser.add_argument("--list-interval", type=float, default=1.0, help="seconds between list calls")
    parser.add_argument("--server-log-level", default="info", help="server --log-level (info logs "
                        "one line per request, as in production)")
    parser.add_argument("--url", help="use a running server at http://host:port instead of starting one "
                        "(then give --project-id, --ak and --sk)")
    parser.add_argument("--db", help="the started server's --db (default: a fresh SQLite file); "
                        "'postgres' starts a temporary PostgreSQL cluster (tests/pgcluster.py)")
    parser.add_argument("--workers", type=int, default=1, help="the started server's --workers")
    parser.add_argument("--project-id")
    parser.add_argument("--ak")
    parser.add_argument("--sk")
    args = parser.parse_args()

    load_before = os.getloadavg()
    tmp = tempfile.TemporaryDirectory(prefix="cbr-bench-")
    proc = None
    if args.url:
        host, _, port = args.url.split("://", 1)[-1].rstrip("/").partition(":")
        target = Target(host, int(port or 80), args.project_id, args.ak, args.sk)
    else:
        target = Target("127.0.0.1", free_port(), uuid.uuid4().hex, "AKBENCH" + secrets.token_hex(6),
                        secrets.token_urlsafe(30))
        from tests.pgcluster import bench_database

        db, cluster = bench_database(args.db)
        if cluster is not None:
            atexit.register(cluster.destroy)
        proc = start_server(Path(tmp.name), target.port, target, args.server_log_level, db, args.workers)
    try:
        ids = [str(uuid.uuid4()) for _ in range(args.agents)]
        t0 = time.perf_counter()
        asyncio.run(register_all(target, ids))
        print(f"registered {len(ids)} agents in {time.perf_counter() - t0:.1f}s (one connection, serial)")
        shares = [ids[i::args.procs] for i in range(args.procs)]
        rate = args.rate / args.procs
        cpu_before = cpu_seconds(proc.pid) if proc else 0.0
        with ProcessPoolExecutor(args.procs) as pool:
            futures = [pool.submit(worker, target, shares[i], args.conns, rate, args.duration,
                                   args.list_interval if i == 0 else 0.0) for i in range(args.procs)]
            results = [f.result() for f in futures]
        server_cpu = cpu_seconds(proc.pid) - cpu_before if proc else 0.0
        hb = [lat for r, _ in results for lat in r.latencies]
        errors = sum(r.errors for r, _ in results)
        statuses: dict[int, int] = {}
        for r, _ in results:
            for k, v in r.statuses.items():
                statuses[k] = statuses.get(k, 0) + v
        lists = results[0][1]
        mode = f"open loop, target {args.rate:g}/s" if args.rate else "closed loop (flat out)"
        print(f"machine: {os.cpu_count()} cores, load average before {load_before[0]:.2f}, "
              f"after {os.getloadavg()[0]:.2f} (others' work shares the cores)")
        print(f"mode: {mode}; {args.procs} procs x {args.conns} connections; {args.agents} agents; "
              f"{args.duration:g}s")
        print(f"heartbeats: {len(hb)} ({len(hb) / args.duration:.0f}/s), errors {errors}, "
              f"statuses {statuses}")
        ms = [x * 1000 for x in hb]
        print(f"heartbeat latency ms: p50 {percentile(ms, .5):.1f}  p90 {percentile(ms, .9):.1f}"
              f"  p99 {percentile(ms, .99):.1f}  max {max(ms, default=0):.1f}"
              f"  mean {statistics.fmean(ms) if ms else 0:.1f}")
        if proc is not None and hb:
            print(f"server CPU: {server_cpu:.1f} s over the run = {server_cpu / len(hb) * 1000:.2f} ms per "
                  f"request (so one core could serve about {len(hb) / server_cpu:.0f} heartbeats/s)")
        if proc is not None:
            inside = server_side_ms(Path(tmp.name) / "server.log", skip=len(ids))
            if inside:
                print(f"time inside the server (its log, request in to response out) ms: "
                      f"p50 {percentile(inside, .5):.2f}  p99 {percentile(inside, .99):.2f}  "
                      f"max {max(inside):.1f}")
        gen_cpu = sum(r.cpu for r, _ in results)
        if hb:
            print(f"load generator CPU: {gen_cpu:.1f} s = {gen_cpu / len(hb) * 1000:.2f} ms per request")
        if lists.latencies:
            lms = [x * 1000 for x in lists.latencies]
            print(f"list (limit=100): {len(lms)} calls, p50 {percentile(lms, .5):.1f} ms, "
                  f"max {max(lms):.1f} ms, errors {lists.errors}")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        tmp.cleanup()
    return 0 if not errors else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
