"""``cbr-agent server``: the agents API on uvicorn, until SIGTERM or SIGINT.

The listening socket is bound here, before uvicorn starts, so that a port in use is a one-line error.
uvicorn stops accepting on SIGTERM, finishes the requests in flight, and returns; then the database is
closed (WAL checkpointed) and the process exits 0.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cbr_agent.errors import ConfigError

log = logging.getLogger("cbr_agent.controlplane.server")


@dataclass(frozen=True)
class ServerOptions:
    host: str
    port: int
    db_path: Path
    credentials_path: Path
    stale_after: float = 180.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: HOST:PORT of /metrics (Prometheus); None = no metrics
    metrics_address: str | None = None
    #: the web console under /console/
    console: bool = True


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def check_options(options: ServerOptions) -> None:
    if options.stale_after <= 0:
        raise ConfigError(f"--stale-after must be a positive number of seconds, got {options.stale_after}")
    if (options.tls_cert is None) != (options.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together; give both or neither")
    for path in (options.tls_cert, options.tls_key):
        if path is not None and not path.is_file():
            raise ConfigError(f"TLS file {path} does not exist")
    if options.metrics_address is not None:
        from cbr_agent.hostport import parse_host_port

        try:
            parse_host_port(options.metrics_address)
        except ValueError as exc:
            raise ConfigError(f"--metrics-address: {exc}") from None


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its graceful shutdown, which would kill the process before
        the database is closed; here the signal only asks for the shutdown."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def _metrics_class(options: ServerOptions) -> type | None:
    if options.metrics_address is None:
        return None
    from cbr_agent.controlplane.metrics import ServerMetrics, missing_library_error

    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigError(missing_library_error()) from None
    return ServerMetrics


def serve(options: ServerOptions) -> int:
    try:
        import uvicorn

        from cbr_agent.controlplane.site import build_app
    except ImportError as exc:
        raise ConfigError(f"the server needs the 'server' extra ({exc.name} is missing): "
                          "pip install 'cbr-agent[server]'") from None
    from cbr_agent.controlplane.credentials import load_credentials
    from cbr_agent.controlplane.store import AgentStore

    check_options(options)
    metrics_class = _metrics_class(options)
    credentials = load_credentials(options.credentials_path)
    store = AgentStore(options.db_path, stale_after=options.stale_after)
    metrics = metrics_class(store) if metrics_class is not None else None
    metrics_server = None
    sock = bind(options.host, options.port)
    try:
        app = build_app(store, credentials, metrics=metrics, console=options.console,
                        secure_cookies=options.tls_cert is not None)
        if metrics is not None:
            assert options.metrics_address is not None
            metrics_server = metrics.serve(options.metrics_address)
        config = uvicorn.Config(
            app, access_log=False, log_config=None,
            lifespan="off", server_header=False, proxy_headers=False, timeout_graceful_shutdown=10,
            ssl_certfile=str(options.tls_cert) if options.tls_cert else None,
            ssl_keyfile=str(options.tls_key) if options.tls_key else None,
        )
        scheme = "https" if options.tls_cert else "http"
        host, port = sock.getsockname()[:2]
        log.info("control plane listening on %s://%s:%s (database %s, %d access keys, %d tokens, "
                 "stale after %gs)", scheme, host, port, options.db_path,
                 len(credentials.access_keys), len(credentials.tokens), options.stale_after)
        # everything loaded so far lives as long as the process: keep it out of the garbage
        # collector's full passes (one over the imported modules takes tens of ms, a visible p99 stall)
        gc.collect()
        gc.freeze()
        _server_class()(config).run(sockets=[sock])
    finally:
        sock.close()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        store.close()
    log.info("control plane stopped")
    return 0
