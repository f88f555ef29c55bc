"""Slow and stalled clients against the real server (issue 10.9): a request header must arrive whole
within ``--read-timeout`` seconds of connecting, a body may not pause longer than that, and the server
keeps answering everybody else meanwhile; a header may not pass 64 KiB; beyond ``--max-connections``
requests get a 503."""

from __future__ import annotations

import contextlib
import json
import resource
import selectors
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cbr_agent.api.models import AgentRegistration
from cbr_agent.errors import ApiUnavailable

TIMEOUT = 2.0
SLOW_CONNECTIONS = 1000


def reg() -> AgentRegistration:
    return AgentRegistration(agent_id=str(uuid.uuid4()), host_name="h", host_ip="10.0.0.1",
                             host_os="linux")


@pytest.fixture
def server(cp_server_factory: Any) -> Any:
    return cp_server_factory(extra_args=["--read-timeout", str(TIMEOUT)])


@pytest.fixture
def enough_file_descriptors() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SLOW_CONNECTIONS + 200
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"the open-file limit ({hard}) is too low for {SLOW_CONNECTIONS} connections")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def partial_header(server: Any) -> bytes:
    return (f"POST /v3/{server.project_id}/agents HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-Auth-Token: {server.token}\r\nX-Slow: ").encode()


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """What the server sends until it closes, and when it closed (monotonic)."""
    sock.settimeout(limit)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic()


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length, leaving the connection open."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return data


def assert_408(data: bytes) -> None:
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), data[:200]
    error = json.loads(body)
    assert error["error_code"] == "APIGW.0201" and "not received within 2 s" in error["error_msg"], error


@pytest.mark.slow
def test_answers_promptly_while_1000_slow_connections_are_held_then_closes_them(
        server: Any, enough_file_descriptors: None) -> None:
    header = partial_header(server)
    slow: list[socket.socket] = []
    selector = selectors.DefaultSelector()
    try:
        opened = time.monotonic()
        for _ in range(SLOW_CONNECTIONS):
            sock = connect(server.port)
            sock.sendall(header)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            slow.append(sock)
        all_open = time.monotonic()

        # everybody else is served at once, over fresh connections
        latencies = []
        with server.token_client(max_attempts=1, timeout=10) as client:
            for _ in range(20):
                started = time.monotonic()
                client.register_agent(reg())
                latencies.append(time.monotonic() - started)
        served = time.monotonic()
        assert max(latencies) < 1.0, latencies
        # ... while every slow connection was still held open (no answer, no close yet)
        assert served - opened < TIMEOUT, "too slow a machine to prove anything: opened too late"
        assert selector.select(timeout=0) == []

        # then each is answered 408 and closed, at its deadline: trickling bytes does not extend it
        closed: dict[int, float] = {}
        received: dict[int, bytes] = {}
        deadline = all_open + TIMEOUT + 5.0
        next_trickle = time.monotonic()
        while len(closed) < SLOW_CONNECTIONS and time.monotonic() < deadline:
            if time.monotonic() >= next_trickle:
                for sock in slow[:50]:
                    if sock.fileno() not in closed:
                        with contextlib.suppress(OSError):
                            sock.send(b"x")
                next_trickle = time.monotonic() + 0.25
            for key, _ in selector.select(timeout=0.1):
                sock = key.fileobj  # type: ignore[assignment]
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    chunk = b""
                received[sock.fileno()] = received.get(sock.fileno(), b"") + chunk
                if not chunk:
                    closed[sock.fileno()] = time.monotonic()
                    selector.unregister(sock)
        assert len(closed) == SLOW_CONNECTIONS, f"{SLOW_CONNECTIONS - len(closed)} slow connections left open"
        assert min(closed.values()) - opened >= TIMEOUT * 0.9
        assert max(closed.values()) - all_open <= TIMEOUT + 5.0
        answered = [data for data in received.values() if data]
        assert len(answered) >= SLOW_CONNECTIONS * 0.99  # a reset may lose the 408 of a trickler
        for data in answered:
            assert_408(data)
    finally:
        selector.close()
        for sock in slow:
            sock.close()
    with server.token_client(max_attempts=1, timeout=10) as client:
        client.register_agent(reg())
    assert "Traceback" not in server.log_text()


def test_a_body_that_stalls_is_closed_after_the_timeout_and_stores_nothing(server: Any) -> None:
    agent_id = str(uuid.uuid4())
    body = json.dumps({"agent": {"agent_id": agent_id, "host_name": "h", "host_ip": "i",
                                 "host_os": "linux"}}).encode()
    head = (f"POST /v3/{server.project_id}/agents HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {server.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with connect(server.port) as sock:
        sent = time.monotonic()
        sock.sendall(head + body[:10])
        data, closed = read_until_closed(sock, TIMEOUT + 5)
    assert TIMEOUT * 0.9 <= closed - sent <= TIMEOUT + 3
    assert_408(data)
    with server.token_client(max_attempts=1) as client:
        assert client.list_agents(agent_ids=[agent_id]).agents == ()
    log = server.log_text()
    assert "disconnected before sending its whole body" in log
    assert "Traceback" not in log and " ERROR " not in log


@pytest.mark.parametrize("case", ["silent", "second-request-partial"])
def test_idle_or_partial_connections_are_closed(server: Any, case: str) -> None:
    with connect(server.port) as sock:
        if case == "second-request-partial":
            # a whole first request on a kept-alive connection, then half of a second one
            sock.sendall(f"GET /v3/{server.project_id}/agents HTTP/1.1\r\nHost: x\r\n"
                         f"X-Auth-Token: {server.token}\r\n\r\n".encode())
            first = read_response(sock)
            assert first.startswith(b"HTTP/1.1 200 "), first[:200]
            sock.sendall(b"GET / HTTP/1.1\r\nHo")
        sent = time.monotonic()
        data, closed = read_until_closed(sock, TIMEOUT + 5)
    assert TIMEOUT * 0.9 <= closed - sent <= TIMEOUT + 3
    assert_408(data)


def test_requests_beyond_max_connections_get_503_until_connections_close(cp_server_factory: Any) -> None:
    server = cp_server_factory(extra_args=["--max-connections", "5", "--read-timeout", "30"])
    idle = [connect(server.port) for _ in range(8)]
    try:
        time.sleep(0.2)  # let the server accept them
        with server.token_client(max_attempts=1) as client, pytest.raises(ApiUnavailable) as exc_info:
            client.register_agent(reg())
        assert (exc_info.value.status, exc_info.value.error_code) == (503, "APIGW.0308")
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    with server.token_client(max_attempts=1) as client:
        assert client.register_agent(reg()).status == "normal"


def server_rss_kb(server: Any) -> int:
    with open(f"/proc/{server.process.pid}/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


@pytest.mark.parametrize("flood", ["many-lines", "one-line"])
def test_a_header_flood_is_refused_at_64_kib(server: Any, flood: str) -> None:
    before = server_rss_kb(server)
    chunk = b"X-A: b\r\n" * 4096 if flood == "many-lines" else b"a" * 32768
    with connect(server.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + (b"X-Big: " if flood == "one-line" else b""))
        started = time.monotonic()
        with contextlib.suppress(OSError):  # the server closes while we still send
            for _ in range(300):  # up to ~10 MB
                sock.sendall(chunk)
        data, closed = read_until_closed(sock, TIMEOUT + 5)
    assert closed - started < TIMEOUT, "refused for its size, not timed out"
    assert data.startswith(b"HTTP/1.1 431 "), data[:200]
    assert json.loads(data.partition(b"\r\n\r\n")[2])["error_code"] == "APIGW.0201"
    assert server_rss_kb(server) - before < 50_000  # KiB: the flood was not kept


def test_large_but_acceptable_headers_still_work(server: Any) -> None:
    with connect(server.port) as sock:
        sock.sendall(f"GET /v3/{server.project_id}/agents HTTP/1.1\r\nHost: x\r\n"
                     f"X-Auth-Token: {server.token}\r\nX-Pad: {'p' * 40000}\r\n"
                     "Connection: close\r\n\r\n".encode())
        data, _ = read_until_closed(sock, 10)
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]


def test_a_body_withheld_after_its_answer_just_ends_the_connection(server: Any) -> None:
    """A 413 is answered from Content-Length alone; a client that then never sends the body is
    closed at the timeout, with no 408 after the 413 it already has."""
    with connect(server.port) as sock:
        sock.sendall(f"POST /v3/{server.project_id}/agents HTTP/1.1\r\nHost: x\r\n"
                     f"X-Auth-Token: {server.token}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {20 * 1024 * 1024}\r\n\r\n".encode())
        sent = time.monotonic()
        data, closed = read_until_closed(sock, TIMEOUT + 5)
    assert data.startswith(b"HTTP/1.1 413 "), data[:200]
    assert b" 408 " not in data
    assert closed - sent <= TIMEOUT + 3
