"""The control-plane store on PostgreSQL (issue 13): the same :class:`AgentStore` and the same SQL as
on SQLite, through a thin dialect layer, so several server processes on several machines share one
database and nothing in a server's memory is the truth.

Why a dialect layer and not SQLAlchemy Core: the store and the CBR modules are plain parameterized SQL
that both databases already understand except for a few spellings. :func:`translate` rewrites those
(``?`` -> ``%s``, two-argument ``MAX`` -> ``GREATEST``) once per statement (cached), and
:func:`translate_ddl` the schema (``INTEGER`` -> ``BIGINT`` for millisecond times, the SQLite rowid
keys -> ``BIGSERIAL``). Rewriting every query into Core expressions would have touched every module
for no behaviour gained.

- Connections come from a ``psycopg_pool.ConnectionPool`` (as many as the server's database threads);
  every store call is one transaction (READ COMMITTED). A task claim stays one conditional UPDATE:
  under READ COMMITTED a second claimer blocks on the row lock, then re-checks the WHERE clause on
  the committed row and updates nothing, so at most one claim wins (tested with concurrent claimers).
- Wakeups of long polls: :func:`cbr_agent.controlplane.tasks.notify` sends ``pg_notify`` in the
  writer's transaction (delivered on commit, never before) instead of appending to the ``events``
  table, whose sequence can commit out of order on PostgreSQL; each server process LISTENs on one
  connection of its own (:meth:`PgStore.listen`). A lost notification costs latency only: every
  poll re-reads the database on its own.
- The database unreachable or restarting: the call fails at once (a broken connection) or after
  :data:`CONNECT_TIMEOUT` seconds (no connection to be had) with 503 and ``Retry-After``; the pool
  reconnects in the background, so the server recovers by itself.
- The password is never in the URL given on the command line: libpq takes it from ``PGPASSWORD``,
  ``PGPASSFILE``/``~/.pgpass``, or the server's ``--db-password-file``.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from cbr_agent.controlplane import store as sqlite_store
from cbr_agent.errors import ApiError, StateError

log = logging.getLogger("cbr_agent.controlplane.server")

#: seconds a call waits for a database connection before answering 503
CONNECT_TIMEOUT = 3.0
#: the channel of "agent X has something new" notifications
CHANNEL = "cbr_agent_events"
#: serializes schema migrations of servers starting together
_MIGRATION_LOCK = 0x43_42_52_13
UNAVAILABLE = "APIGW.0308"


def is_url(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without any password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    sql = sql.replace("%", "%%").replace("?", "%s")
    return re.sub(r"\bMAX\((\w+), ", r"GREATEST(\1, ", sql)


def translate_ddl(sql: str) -> str:
    sql = re.sub(r"INTEGER PRIMARY KEY( AUTOINCREMENT)?", "BIGSERIAL PRIMARY KEY", sql)
    sql = sql.replace("WITHOUT ROWID", "")
    return re.sub(r"\bINTEGER\b", "BIGINT", sql)


def unavailable(why: object) -> ApiError:
    error = ApiError(503, UNAVAILABLE, "the control plane's database is unavailable; retry in a moment")
    error.retry_after = 2  # type: ignore[attr-defined]
    log.warning("database unavailable: %s", why)
    return error


class PgConnection:
    """The part of ``sqlite3.Connection`` the store uses, on a psycopg connection."""

    dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        args = [int(p) if isinstance(p, bool) else p for p in params]
        return self._conn.execute(translate(sql), args)


class PgStore(sqlite_store.AgentStore):
    """:class:`AgentStore` on a PostgreSQL database given by a ``postgresql://`` URL."""

    dialect = "postgresql"

    def __init__(self, url: str, *, stale_after: float = 180.0, clock: Callable[[], float] | None = None,
                 password: str | None = None, pool_size: int = 4, migrate: bool = True) -> None:
        if stale_after <= 0:
            raise ValueError("stale_after must be positive")
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise StateError(f"PostgreSQL needs the 'postgres' extra ({exc.name} is missing): "
                             "pip install 'cbr-agent[postgres]'") from None
        self._psycopg = psycopg
        self.url = url
        self.db_path = redact(url)  # type: ignore[assignment]  # for messages only
        self.stale_after = stale_after
        self.clock = clock or time.time
        self.threads = pool_size
        self._closed = False
        kwargs: dict[str, Any] = {"connect_timeout": max(1, int(CONNECT_TIMEOUT)),
                                  "application_name": "cbr-agent-server"}
        if password is not None:
            kwargs["password"] = password
        self._conninfo = psycopg.conninfo.make_conninfo(url, **kwargs)
        try:  # one connection first: a wrong URL or password is a one-line error at start
            psycopg.connect(self._conninfo).close()
        except psycopg.Error as exc:
            raise StateError(f"cannot connect to the control-plane database {self.db_path}: "
                             f"{str(exc).strip().splitlines()[0]}") from None
        self.pool = ConnectionPool(self._conninfo, min_size=1, max_size=pool_size, timeout=CONNECT_TIMEOUT,
                                   open=True, name="cbr-agent")
        if migrate:
            self.migrate()

    # -- connections and transactions -------------------------------------------------------------

    def connection(self) -> Any:  # pragma: no cover - the SQLite API; PostgreSQL goes by transactions
        raise StateError("PgStore has no per-thread connection; use a transaction")

    @contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[Any]:
        if self._closed:
            raise StateError(f"the agent store {self.db_path} is closed")
        psycopg = self._psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection() as conn, conn.transaction():
                yield PgConnection(conn)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise unavailable(exc) from None
        except psycopg.Error as exc:
            raise StateError(f"control-plane database {self.db_path}: {exc}") from exc

    def close(self) -> None:
        self._closed = True
        self.pool.close()

    # -- schema -----------------------------------------------------------------------------------

    def schema_version(self) -> int:
        with self._transaction() as tx:
            tx.execute("CREATE TABLE IF NOT EXISTS cbr_schema (version BIGINT NOT NULL)")
            row = tx.execute("SELECT version FROM cbr_schema").fetchone()
            return 0 if row is None else int(row[0])

    def migrate(self) -> tuple[int, int]:
        """Bring the schema to :data:`SCHEMA_VERSION`; ``(before, after)``. Servers starting together
        take turns (an advisory lock); a newer schema is refused rather than misread."""
        target = sqlite_store.SCHEMA_VERSION
        with self._transaction() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            tx.execute("CREATE TABLE IF NOT EXISTS cbr_schema (version BIGINT NOT NULL)")
            row = tx.execute("SELECT version FROM cbr_schema").fetchone()
            version = 0 if row is None else int(row[0])
            if version > target:
                raise StateError(
                    f"the control-plane database {self.db_path} has schema version {version}, newer "
                    f"than this cbr-agent knows ({target}); upgrade cbr-agent")
            for number in range(version, target):
                for statement in sqlite_store.MIGRATIONS[number]:
                    tx._conn.execute(translate_ddl(statement))
            if row is None:
                tx.execute("INSERT INTO cbr_schema (version) VALUES (?)", (target,))
            else:
                tx.execute("UPDATE cbr_schema SET version = ?", (target,))
        return version, target

    # -- wakeups ----------------------------------------------------------------------------------

    def listen(self, deliver: Callable[[set[tuple[str, str]] | None], None],
               stop: threading.Event) -> threading.Thread:
        """LISTEN on a connection of its own, in a thread: ``deliver(keys)`` for each batch of
        notifications, ``deliver(None)`` after a reconnect (notifications may have been missed: wake
        every poll so it re-reads)."""
        psycopg = self._psycopg

        def run() -> None:
            while not stop.is_set() and not self._closed:
                try:
                    with psycopg.connect(self._conninfo, autocommit=True) as conn:
                        conn.execute(f"LISTEN {CHANNEL}")
                        deliver(None)
                        while not stop.is_set() and not self._closed:
                            keys = set()
                            for note in conn.notifies(timeout=0.5, stop_after=500):
                                project_id, _, agent_id = note.payload.partition("\n")
                                keys.add((project_id, agent_id))
                            if keys:
                                deliver(keys)
                except psycopg.Error as exc:
                    log.warning("listening for task notifications failed (%s); retrying", exc)
                    stop.wait(1.0)

        thread = threading.Thread(target=run, name="cbr-pg-listen", daemon=True)
        thread.start()
        return thread


def open_store(db: str, *, stale_after: float = 180.0, password: str | None = None,
               pool_size: int = 4, migrate: bool = True,
               clock: Callable[[], float] | None = None) -> sqlite_store.AgentStore:
    """The store for ``--db``: a ``postgresql://`` URL or a SQLite file."""
    if is_url(db):
        return PgStore(db, stale_after=stale_after, password=password, pool_size=pool_size,
                       migrate=migrate, clock=clock)
    return sqlite_store.AgentStore(db, stale_after=stale_after, clock=clock)
