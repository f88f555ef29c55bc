"""``cbr-agent server``: the agents API on uvicorn, until SIGTERM or SIGINT.

The listening socket is bound here, before uvicorn starts, so that a port in use is a one-line error;
every other start option (port range, TLS files, database, credentials) is checked before too, each
failure a :class:`ConfigError` (one line, exit 2). uvicorn stops accepting on SIGTERM, finishes the
requests in flight, and returns; then the database is closed (WAL checkpointed) and the process exits 0.
Connections run :mod:`cbr_agent.controlplane.protocol` (read timeouts and a connection cap).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import signal
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    #: seconds a client has to send a request header, and may pause while sending a body
    read_timeout: float = 10.0
    #: open connections beyond which requests are answered 503
    max_connections: int = 2048
    #: HOST:PORT of /metrics (Prometheus); None = no metrics
    metrics_address: str | None = None
    #: the web console under /console/
    console: bool = True
    #: a postgresql:// URL instead of the SQLite file ``db_path`` (issue 13)
    db_url: str | None = None
    db_password_file: Path | None = None
    #: server processes sharing the listening socket and the database (issue 13)
    workers: int = 1


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except (OSError, OverflowError, UnicodeError, ValueError) as exc:
        # OSError: in use, not an address of this host, unknown name; the others: a malformed name
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def _positive(value: float, option: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option} must be a positive number of seconds, got {value}")


def check_options(options: ServerOptions) -> None:
    """Every start option, before anything is opened or bound: one ConfigError each."""
    if not options.host:
        raise ConfigError("--host is empty; give an address such as 127.0.0.1 or 0.0.0.0")
    if not 0 <= options.port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535, got {options.port}")
    _positive(options.stale_after, "--stale-after")
    _positive(options.read_timeout, "--read-timeout")
    if not 1 <= options.workers <= 64:
        raise ConfigError(f"--workers must be from 1 to 64, got {options.workers}")
    if options.max_connections < 1:
        raise ConfigError(f"--max-connections must be at least 1, got {options.max_connections}")
    files = [("--credentials", options.credentials_path)]
    if options.db_url is None:
        files.append(("--db", options.db_path))
    if options.db_url is not None and "@" in options.db_url.split("//", 1)[-1].split("/", 1)[0] \
            and ":" in options.db_url.split("//", 1)[-1].split("@", 1)[0]:
        raise ConfigError("--db: a password in the URL would show in ps and logs; give it in PGPASSWORD, "
                          "~/.pgpass or --db-password-file")
    for option, path in files:
        if str(path) in ("", "."):
            raise ConfigError(f"{option} is empty; give a file name")
        if path.is_dir():
            raise ConfigError(f"{option} {path} is a directory; give a file name")
    if (options.tls_cert is None) != (options.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together; give both or neither")
    if options.tls_cert is not None and options.tls_key is not None:
        _check_tls(options.tls_cert, options.tls_key)
    if options.metrics_address is not None:
        from cbr_agent.hostport import parse_host_port

        try:
            parse_host_port(options.metrics_address)
        except ValueError as exc:
            raise ConfigError(f"--metrics-address: {exc}") from None
        if options.workers > 1:  # each worker counts its own requests: one address cannot serve them all
            raise ConfigError("--metrics-address works with one server process only; run one process "
                              "per metrics address (several servers behind a load balancer) instead of "
                              "--workers")


def _check_tls(cert: Path, key: Path) -> None:
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            raise ConfigError(f"{option} {path} does not exist or is not a file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ConfigError(f"--tls-cert {cert} and --tls-key {key} cannot be used ({exc.reason or exc}); "
                          "give a PEM certificate and its unencrypted PEM private key") from None
    except OSError as exc:
        raise ConfigError(f"cannot read --tls-cert {cert} or --tls-key {key}: "
                          f"{exc.strerror or exc}") from None


def _fit_open_files(max_connections: int) -> int:
    """Raise the soft limit of open files so that ``max_connections`` fit (plus some for the
    database and logs); when the hard limit is lower, lower the cap instead and say so."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux
        return max_connections
    spare = 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + spare
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fitted = max(1, soft - spare)
        log.warning("the open-file limit is %d: serving at most %d connections instead of "
                    "--max-connections %d (raise LimitNOFILE)", soft, fitted, max_connections)
        return fitted
    return max_connections


def read_password_file(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read --db-password-file {path}: {exc.strerror or exc}") from None
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"--db-password-file {path} is readable by others; chmod 600 it")
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise ConfigError(f"--db-password-file {path} is empty; put the password on its first line")
    return lines[0]


#: database threads (and PostgreSQL connections) per server process
PG_POOL_SIZE = 4


def _open_store(options: ServerOptions, migrate: bool = True) -> Any:
    from cbr_agent.controlplane.pgstore import open_store
    from cbr_agent.errors import StateError

    try:
        return open_store(options.db_url or str(options.db_path), stale_after=options.stale_after,
                          password=read_password_file(options.db_password_file), pool_size=PG_POOL_SIZE,
                          migrate=migrate)
    except StateError as exc:
        raise ConfigError(f"--db: {exc}") from None


def migrate(db: str, password_file: str | None, *, json_output: bool = False) -> int:
    """``cbr-agent server migrate``: bring the schema up to date, print from which version to which."""
    import json

    from cbr_agent.controlplane.pgstore import PgStore, is_url, open_store
    from cbr_agent.controlplane.store import SCHEMA_VERSION
    from cbr_agent.errors import StateError

    password = read_password_file(Path(password_file) if password_file else None)
    try:
        if is_url(db):
            pg = PgStore(db, password=password, migrate=False, pool_size=1)
            try:
                before, after = pg.migrate()
            finally:
                pg.close()
        else:
            from cbr_agent.controlplane.store import AgentStore

            before = AgentStore.schema_version_of(Path(db))
            open_store(db).close()
            after = SCHEMA_VERSION
    except StateError as exc:
        raise ConfigError(f"--db: {exc}") from None
    if json_output:
        print(json.dumps({"schema_version_before": before, "schema_version": after}))
    elif before == after:
        print(f"the database's schema is up to date (version {after})")
    else:
        print(f"migrated the database's schema from version {before} to {after}")
    return 0


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its graceful shutdown, which would kill the process before
        the database is closed; here the signal only asks for the shutdown."""

        def handle_exit(self, sig: int, frame: object) -> None:
            from cbr_agent.controlplane.cbr_routes import STOPPING

            STOPPING.set()  # long polls answer now, so the graceful shutdown does not wait for them
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

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
        import uvicorn  # noqa: F401

        from cbr_agent.controlplane.protocol import guarded_protocol  # noqa: F401
        from cbr_agent.controlplane.site import build_app  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"the server needs the 'server' extra ({exc.name} is missing): "
                          "pip install 'cbr-agent[server]'") from None
    from cbr_agent.controlplane.credentials import load_credentials

    check_options(options)
    metrics_class = _metrics_class(options)
    credentials = load_credentials(options.credentials_path)
    max_connections = _fit_open_files(options.max_connections)
    sock = bind(options.host, options.port)
    try:
        store = _open_store(options)  # migrates the schema, once, before any worker starts
    except ConfigError:
        sock.close()
        raise
    if options.workers <= 1:
        return _serve_one(options, sock, store, credentials, max_connections, metrics_class)
    store.close()  # each worker opens its own (threads and connections do not survive a fork)
    from cbr_agent.controlplane.workers import supervise

    try:
        return supervise(options.workers, lambda: _serve_one(
            options, sock, _open_store(options, migrate=False), credentials, max_connections, None))
    finally:
        sock.close()


def _serve_one(options: ServerOptions, sock: socket.socket, store: Any, credentials: Any,
               max_connections: int, metrics_class: type | None) -> int:
    """One server process on the bound socket ``sock`` until SIGTERM/SIGINT."""
    import uvicorn

    from cbr_agent.controlplane.protocol import guarded_protocol
    from cbr_agent.controlplane.site import build_app

    metrics = metrics_class(store) if metrics_class is not None else None
    metrics_server = None
    try:
        app = build_app(store, credentials, metrics=metrics, console=options.console,
                        secure_cookies=options.tls_cert is not None)
        if metrics is not None:
            assert options.metrics_address is not None
            metrics_server = metrics.serve(options.metrics_address)
        config = uvicorn.Config(
            app, access_log=False, log_config=None,
            lifespan="off", server_header=False, proxy_headers=False, timeout_graceful_shutdown=10,
            http=guarded_protocol(options.read_timeout, max_connections), ws="none",
            ssl_certfile=str(options.tls_cert) if options.tls_cert else None,
            ssl_keyfile=str(options.tls_key) if options.tls_key else None,
        )
        scheme = "https" if options.tls_cert else "http"
        host, port = sock.getsockname()[:2]
        log.info("control plane listening on %s://%s:%s (database %s, %d access keys, %d tokens, "
                 "stale after %gs, read timeout %gs, at most %d connections)", scheme, host, port,
                 getattr(store, "db_path", options.db_path), len(credentials.access_keys),
                 len(credentials.tokens),
                 options.stale_after, options.read_timeout, max_connections)
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
