"""Facts about this host that registration (and every heartbeat) reports."""

from __future__ import annotations

import ipaddress
import logging
import platform
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cbr_agent import __version__
from cbr_agent.api.models import AgentRegistration

log = logging.getLogger(__name__)

PROC_ROUTE = "/proc/net/route"
PROC_IPV6_ROUTE = "/proc/net/ipv6_route"
_RTF_UP = 0x1


@dataclass(frozen=True)
class HostFacts:
    host_name: str
    host_ip: str
    host_os: str
    agent_version: str

    def registration(self, agent_id: str, *, agent_type: str | None,
                     host_nickname: str | None) -> AgentRegistration:
        return AgentRegistration(
            agent_id=agent_id,
            host_name=self.host_name,
            host_ip=self.host_ip,
            host_os=self.host_os,
            agent_version=self.agent_version,
            agent_type=agent_type,
            host_nickname=host_nickname,
        )


def default_route_interfaces(route_table: str | None = None,
                             ipv6_route_table: str | None = None) -> list[str]:
    """Interfaces that carry a default route, IPv4 routes first, lowest metric first."""
    found: list[tuple[int, int, str]] = []
    for family, text in ((0, route_table if route_table is not None else _read(PROC_ROUTE)),
                         (1, ipv6_route_table if ipv6_route_table is not None
                          else _read(PROC_IPV6_ROUTE))):
        for line in text.splitlines():
            fields = line.split()
            route = _default_route(family, fields)
            if route is not None:
                found.append((family, route[1], route[0]))
    names: list[str] = []
    for _family, _metric, name in sorted(found):
        if name not in names and name != "lo":
            names.append(name)
    return names


def _default_route(family: int, fields: list[str]) -> tuple[str, int] | None:
    try:
        if family == 0:  # Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            if len(fields) >= 8 and fields[1] == "00000000" and fields[7] == "00000000" \
                    and int(fields[3], 16) & _RTF_UP:
                return fields[0], int(fields[6])
        elif len(fields) >= 10 and fields[0] == "0" * 32 and fields[1] == "00" \
                and int(fields[8], 16) & _RTF_UP:  # dest plen src splen nexthop metric ... iface
            return fields[9], int(fields[5], 16)
    except ValueError:
        return None
    return None


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def _usable(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def pick_host_ip(interfaces: Sequence[str], addresses: Mapping[str, Sequence[tuple[int, str]]],
                 up: Mapping[str, bool]) -> str:
    """The first usable address of the default-route interfaces, else of any interface that is up.

    ``addresses`` maps an interface to ``(family, address)`` pairs; IPv4 is preferred over IPv6.
    """
    def best(name: str) -> str | None:
        pairs = sorted(addresses.get(name, ()), key=lambda p: 0 if p[0] == socket.AF_INET else 1)
        for family, address in pairs:
            if family in (socket.AF_INET, socket.AF_INET6) and _usable(address):
                return address.split("%", 1)[0]
        return None

    for name in interfaces:
        found = best(name)
        if found:
            return found
    for name in sorted(addresses):
        if name != "lo" and up.get(name, False):
            found = best(name)
            if found:
                return found
    return "127.0.0.1"


def host_ip() -> str:
    import psutil

    addresses = {name: [(a.family, a.address) for a in addrs]
                 for name, addrs in psutil.net_if_addrs().items()}
    up = {name: stats.isup for name, stats in psutil.net_if_stats().items()}
    address = pick_host_ip(default_route_interfaces(), addresses, up)
    if address == "127.0.0.1":
        log.warning("no network interface with a usable address; reporting host_ip 127.0.0.1")
    return address


def host_os() -> str:
    return platform.system().lower() or "unknown"


def collect() -> HostFacts:
    return HostFacts(host_name=socket.gethostname() or platform.node() or "localhost",
                     host_ip=host_ip(), host_os=host_os(), agent_version=__version__)
