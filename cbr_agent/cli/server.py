"""``cbr-agent server``: run the control plane (the CBR agents API) over HTTP."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "server", parents=[common], help="run the control plane (CBR agents API) over HTTP",
        description="Serve the CBR agents API from a SQLite database or PostgreSQL, authenticating callers "
        "with the access keys and tokens of a credentials file (TOML: [[access_keys]] ak, sk, project_id and "
        "[[tokens]] token, project_id; readable by its owner only). Stops cleanly on SIGTERM.",
    )
    parser.add_argument("action", nargs="?", choices=["migrate"],
                        help="migrate: bring the database's schema up to date and exit (serving does it too)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--db", required=True, metavar="FILE|URL",
                        help="SQLite database file (created if absent), or postgresql://USER@HOST[:PORT]/DB "
                        "(password from PGPASSWORD, ~/.pgpass or --db-password-file, never the URL)")
    parser.add_argument("--db-password-file", metavar="FILE",
                        help="PostgreSQL password in this file (first line; readable by its owner only)")
    parser.add_argument("--credentials", metavar="FILE", help="credentials TOML file (required to serve)")
    parser.add_argument("--stale-after", type=float, default=180.0, metavar="SECONDS",
                        help="report an agent 'abnormal' after this long without a heartbeat (default 180)")
    parser.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert (PEM)")
    parser.add_argument("--read-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="close a connection that has not sent a whole request header this long after "
                        "connecting, or pauses this long inside a body (default 10)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="server processes sharing the port and the database (default 1)")
    parser.add_argument("--json", action="store_true", help="migrate: print the result as JSON")
    parser.add_argument("--max-connections", type=int, default=2048, metavar="N",
                        help="answer 503 to requests while more connections are open (default 2048)")
    parser.add_argument("--metrics-address", metavar="HOST:PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics (needs prometheus_client, "
                        "the 'metrics' extra; default: no metrics)")
    parser.add_argument("--no-console", dest="console", action="store_false",
                        help="do not serve the web console under /console/")
    parser.set_defaults(func=run_server)


def run_server(args: argparse.Namespace) -> int:
    from cbr_agent.cli.context import settings_from_args
    from cbr_agent.controlplane.server import ServerOptions, migrate, serve
    from cbr_agent.errors import ConfigError

    settings_from_args(args)
    is_url = args.db.startswith(("postgresql://", "postgres://"))
    if args.action == "migrate":
        return migrate(args.db, args.db_password_file, json_output=bool(getattr(args, "json", False)))
    if args.credentials is None:
        raise ConfigError("the server needs --credentials FILE (the access keys and tokens it accepts)")
    return serve(ServerOptions(
        host=args.host,
        port=args.port,
        db_path=Path("postgresql" if is_url else args.db),
        db_url=args.db if is_url else None,
        db_password_file=Path(args.db_password_file) if args.db_password_file else None,
        credentials_path=Path(args.credentials),
        stale_after=args.stale_after,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        read_timeout=args.read_timeout,
        max_connections=args.max_connections,
        metrics_address=args.metrics_address,
        console=args.console,
        workers=args.workers,
    ))
