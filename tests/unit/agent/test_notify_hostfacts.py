"""sd_notify over a real datagram socket; host facts from route tables; backoff bounds."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from cbr_agent.agent.backoff import MAX_BACKOFF, failure_delay, heartbeat_delay
from cbr_agent.agent.hostfacts import collect, default_route_interfaces, pick_host_ip
from cbr_agent.agent.notify import Notifier


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_notify_messages_reach_a_datagram_socket(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(2)
        notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "3000000"})
        assert notifier.enabled and notifier.watchdog_interval == 1.5
        assert notifier.ready("registered")
        assert receive(sock) == f"READY=1\nSTATUS=registered\nMAINPID={os.getpid()}"
        notifier.watchdog()
        assert receive(sock) == "WATCHDOG=1"
        notifier.stopping()
        assert receive(sock) == "STOPPING=1\nSTATUS=stopping"


def test_abstract_socket_address() -> None:
    name = f"cbr-agent-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert receive(sock) == "STATUS=hello"


def test_without_systemd_nothing_happens(tmp_path: Path) -> None:
    assert not Notifier({}).ready("x")
    assert Notifier({}).watchdog_interval is None
    # a socket that went away: no exception, just False
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).watchdog()
    assert Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_interval is None \
        or os.getpid() == 1


ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t00000000\t0102A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wg0\t00000000\t00000000\t0000\t0\t0\t0\t00000000\t0\t0\t0
"""
IPV6_ROUTES = (
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth2\n"
)


def test_default_route_interfaces_by_metric_ipv4_first() -> None:
    assert default_route_interfaces(ROUTES, IPV6_ROUTES) == ["eth0", "eth1", "eth2"]
    assert default_route_interfaces("", "") == []
    assert default_route_interfaces("garbage\n\n", "zz") == []


def test_host_ip_is_the_default_route_interface_address_not_loopback() -> None:
    addresses = {
        "lo": [(socket.AF_INET, "127.0.0.1")],
        "eth0": [(socket.AF_INET6, "fe80::1%eth0"), (socket.AF_INET6, "2001:db8::5"),
                 (socket.AF_INET, "10.0.0.5")],
        "docker0": [(socket.AF_INET, "172.17.0.1")],
    }
    up = {"lo": True, "eth0": True, "docker0": True}
    assert pick_host_ip(["eth0"], addresses, up) == "10.0.0.5"
    assert pick_host_ip([], addresses, up) == "172.17.0.1"  # no default route: any interface up
    v6_only = {"eth0": [(socket.AF_INET6, "fe80::1%eth0"), (socket.AF_INET6, "2001:db8::5")]}
    assert pick_host_ip(["eth0"], v6_only, {"eth0": True}) == "2001:db8::5"
    assert pick_host_ip([], {"lo": [(socket.AF_INET, "127.0.0.1")]}, {"lo": True}) == "127.0.0.1"


def test_collect_reports_real_facts() -> None:
    facts = collect()
    assert facts.host_name == socket.gethostname()
    assert facts.host_os == "linux"
    assert (facts.host_ip and not facts.host_ip.startswith("127.")) or facts.host_ip == "127.0.0.1"
    registration = facts.registration("id-1", agent_type="native", host_nickname=None)
    assert registration.to_wire()["agent"]["host_name"] == facts.host_name


@given(st.floats(0.01, 3600), st.integers(1, 60))
def test_failure_delay_grows_and_is_capped(interval: float, failures: int) -> None:
    rng = random.Random(failures)
    delay = failure_delay(interval, failures, rng)
    assert 0 < delay <= min(max(5 * interval, min(max(interval / 4, 0.05), 5.0)), MAX_BACKOFF)
    later = failure_delay(interval, failures + 20, random.Random(0))
    assert later >= delay * 0.5 - 1e-9


@given(st.floats(0.01, 3600))
def test_heartbeat_delay_is_jittered_around_the_interval(interval: float) -> None:
    delays = {heartbeat_delay(interval, random.Random(seed)) for seed in range(5)}
    assert all(0.9 * interval <= d <= 1.1 * interval for d in delays)
    assert len(delays) > 1
