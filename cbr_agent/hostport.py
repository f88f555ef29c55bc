"""``HOST:PORT`` as the metrics options take it (``127.0.0.1:9561``, ``[::1]:9561``, ``:9561``)."""

from __future__ import annotations

import logging
from typing import Any

from cbr_agent.errors import ConfigError

log = logging.getLogger(__name__)


def parse_host_port(text: str) -> tuple[str, int]:
    """``(host, port)``; ValueError naming what is wrong. An empty host means every address."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} has no port; expected HOST:PORT")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"{text!r}: an IPv6 address goes in brackets, like [::1]:9561")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: put an IPv6 address in brackets, like [::1]:9561")
    if not port_text.isdigit() or not port_text.isascii() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    if any(ch.isspace() for ch in host):
        raise ValueError(f"{text!r}: the host has spaces")
    return host, int(port_text)


def listen_metrics(lib: Any, registry: Any, address: str, what: str) -> Any:
    """prometheus_client's HTTP server for ``registry`` on ``address`` (its own daemon thread); a
    one-line ConfigError naming ``what`` when the address is bad or cannot be listened on."""
    try:
        host, port = parse_host_port(address)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    host = host or "0.0.0.0"
    try:
        server, _thread = lib.start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot listen on {address}: {exc.strerror or exc}") from None
    log.info("Prometheus metrics on http://%s/metrics", address)
    return server
