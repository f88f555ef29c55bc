"""Retries: what is retried, how long the client waits (via the injected sleep), when it gives up,
and what "no answer" looks like (refused port, stalled server, dropped connection)."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from cbr_agent.api.client import HttpControlPlane
from cbr_agent.errors import ApiError, ApiUnavailable, ControlPlaneUnavailable, NotFoundError
from tests.unit.api.fake_cbr_endpoint import AK, PROJECT_ID, SK, TOKEN, Reply, ScriptedServer, SleepRecorder

AGENT = {"agent": {"agent_id": "a1", "status": "normal"}}
BUSY = {"error_code": "BackupService.9910", "error_msg": "busy"}


def make_client(server: ScriptedServer, sleeps: SleepRecorder, **kwargs) -> HttpControlPlane:
    return HttpControlPlane(server.url, PROJECT_ID, ak=AK, sk=SK, sleep=sleeps, **kwargs)


def test_503_with_retry_after_is_retried_and_the_wait_honoured(server: ScriptedServer,
                                                                sleeps: SleepRecorder) -> None:
    server.script(Reply(503, BUSY, headers={"Retry-After": "2"}),
                  Reply(503, BUSY, headers={"Retry-After": "5"}), Reply(200, AGENT))
    with make_client(server, sleeps) as client:
        assert client.show_agent("a1").status == "normal"
    assert sleeps.calls == [2.0, 5.0]
    assert len(server.received) == 3
    assert all(r.signature_ok for r in server.received)


def test_429_with_an_http_date_retry_after(server: ScriptedServer, sleeps: SleepRecorder) -> None:
    when = format_datetime(datetime.fromtimestamp(time.time() + 4, timezone.utc), usegmt=True)
    server.script(Reply(429, {"error_code": "APIGW.0308", "error_msg": "throttled"},
                        headers={"Retry-After": when}), Reply(200, AGENT))
    with make_client(server, sleeps) as client:
        client.show_agent("a1")
    assert len(sleeps.calls) == 1 and 2.0 <= sleeps.calls[0] <= 4.0


def test_a_huge_retry_after_is_capped(server: ScriptedServer, sleeps: SleepRecorder) -> None:
    server.script(Reply(503, BUSY, headers={"Retry-After": "86400"}), Reply(200, AGENT))
    with make_client(server, sleeps) as client:
        client.show_agent("a1")
    assert sleeps.calls == [30.0]


def test_without_retry_after_the_backoff_is_jittered_and_growing(server: ScriptedServer,
                                                                 sleeps: SleepRecorder) -> None:
    bad_gateway = Reply(502, b"bad gateway", headers={"Content-Type": "text/plain"})
    server.script(bad_gateway, bad_gateway, bad_gateway, Reply(200, AGENT))
    with make_client(server, sleeps) as client:
        client.show_agent("a1")
    assert len(sleeps.calls) == 3
    for n, slept in enumerate(sleeps.calls, start=1):
        assert 0.0 <= slept <= 0.5 * 2 ** (n - 1)


def test_gives_up_after_max_attempts_with_the_last_status(server: ScriptedServer,
                                                          sleeps: SleepRecorder) -> None:
    server.script(*[Reply(503, BUSY, headers={"Retry-After": "1"})] * 5)
    with make_client(server, sleeps, max_attempts=4) as client, pytest.raises(ApiUnavailable) as info:
        client.show_agent("a1")
    assert info.value.status == 503 and info.value.error_code == "BackupService.9910"
    assert "4 attempts failed" in str(info.value)
    assert len(server.received) == 4 and sleeps.calls == [1.0, 1.0, 1.0]


def test_max_attempts_one_means_no_retry(server: ScriptedServer, sleeps: SleepRecorder) -> None:
    server.script(Reply(503, BUSY))
    with make_client(server, sleeps, max_attempts=1) as client, pytest.raises(ApiUnavailable):
        client.show_agent("a1")
    assert len(server.received) == 1 and sleeps.calls == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 501])
def test_client_errors_and_501_are_not_retried(server: ScriptedServer, sleeps: SleepRecorder,
                                               status: int) -> None:
    server.script(Reply(status, {"error_code": "X", "error_msg": "no"}, headers={"Retry-After": "1"}))
    with make_client(server, sleeps) as client, pytest.raises(ApiError):
        client.add_paths("a1", ["/srv"])
    assert len(server.received) == 1 and sleeps.calls == []


def test_every_retry_is_signed_anew_with_a_fresh_date(server: ScriptedServer) -> None:
    def sleep_into_the_next_second(_: float) -> None:
        start = int(time.time())
        while int(time.time()) == start:
            time.sleep(0.02)

    server.script(Reply(503, BUSY), Reply(200, {"added": ["/srv"]}))
    with make_client(server, sleep_into_the_next_second) as client:
        assert client.add_paths("a1", ["/srv"]).added == ("/srv",)
    first, second = server.received
    assert first.header("X-Sdk-Date") != second.header("X-Sdk-Date")
    assert first.header("Authorization") != second.header("Authorization")
    assert first.signature_ok and second.signature_ok
    assert first.body == second.body


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_unavailable_after_the_retries(sleeps: SleepRecorder) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    with HttpControlPlane(endpoint, PROJECT_ID, token=TOKEN, sleep=sleeps) as client, \
            pytest.raises(ControlPlaneUnavailable) as info:
        client.show_agent("a1")
    message = str(info.value)
    assert endpoint in message and "connection refused" in message and "after 4 attempts" in message
    assert TOKEN not in message
    assert not isinstance(info.value, ApiError)
    assert len(sleeps.calls) == 3


def test_an_unresolvable_host_is_unavailable(sleeps: SleepRecorder) -> None:
    with HttpControlPlane("http://no-such-host.invalid", PROJECT_ID, ak=AK, sk=SK, sleep=sleeps,
                          max_attempts=2) as client, pytest.raises(ControlPlaneUnavailable) as info:
        client.list_agents()
    assert "no-such-host.invalid" in str(info.value)
    assert "cannot resolve its host name" in str(info.value)
    assert SK not in str(info.value)


def test_a_stalled_server_times_out_and_is_retried(server: ScriptedServer, sleeps: SleepRecorder) -> None:
    server.script(Reply(200, AGENT, stall=5.0), Reply(200, AGENT, stall=5.0))
    started = time.monotonic()
    with make_client(server, sleeps, timeout=0.3, max_attempts=2) as client, \
            pytest.raises(ControlPlaneUnavailable) as info:
        client.show_agent("a1")
    assert time.monotonic() - started < 3.0  # two 0.3 s timeouts, not the 5 s stall
    assert "timed out waiting for the answer" in str(info.value)
    assert len(server.received) == 2 and len(sleeps.calls) == 1


def test_a_timeout_then_an_answer_succeeds(server: ScriptedServer, sleeps: SleepRecorder) -> None:
    server.script(Reply(200, AGENT, stall=5.0), Reply(200, AGENT))
    with make_client(server, sleeps, timeout=0.3) as client:
        assert client.show_agent("a1").agent_id == "a1"
    assert len(server.received) == 2


def test_a_dropped_connection_is_retried(server: ScriptedServer, sleeps: SleepRecorder) -> None:
    server.script(Reply(drop=True), Reply(200, AGENT))
    with make_client(server, sleeps) as client:
        assert client.update_agent("a1").agent_id == "a1"
    assert len(server.received) == 2 and len(sleeps.calls) == 1


def test_maybe_processed_failures_are_not_repeated_for_a_non_idempotent_call(
        server: ScriptedServer, sleeps: SleepRecorder) -> None:
    # none of the seven calls is non-idempotent; this drives the mechanism that protects one
    server.script(Reply(200, {}, stall=5.0), Reply(503, BUSY), Reply(429, BUSY, headers={"Retry-After": "1"}))
    with make_client(server, sleeps, timeout=0.3) as client:
        with pytest.raises(ControlPlaneUnavailable, match="timed out waiting"):
            client._call("POST", ["agents"], payload={}, idempotent=False)
        assert len(server.received) == 1
        with pytest.raises(ApiUnavailable):  # a 5xx may have been processed: not repeated either
            client._call("POST", ["agents"], payload={}, idempotent=False)
        assert len(server.received) == 2
        client._call("POST", ["agents"], payload={}, idempotent=False)  # 429: rejected unprocessed
    assert len(server.received) == 4 and sleeps.calls == [1.0]


def test_delete_whose_answer_was_lost_is_done_when_the_retry_finds_it_gone(
        server: ScriptedServer, sleeps: SleepRecorder) -> None:
    gone = {"error_code": "BackupService.6302", "error_msg": "agent does not exist"}
    server.script(Reply(200, b"", stall=5.0), Reply(404, gone))
    with make_client(server, sleeps, timeout=0.3) as client:
        assert client.remove_agent("a1") is None
    assert [r.method for r in server.received] == ["DELETE", "DELETE"]


def test_delete_of_an_unknown_agent_is_not_found(server: ScriptedServer, sleeps: SleepRecorder) -> None:
    server.script(Reply(404, {"error_code": "BackupService.6302", "error_msg": "agent does not exist"}))
    with make_client(server, sleeps) as client, pytest.raises(NotFoundError):
        client.remove_agent("a1")
    assert len(server.received) == 1
