"""The agents and their backup paths, in one SQLite file (WAL), behind the agents API.

- The schema is created and migrated here (``PRAGMA user_version``); a database written by a newer
  version is refused rather than misread.
- Every write is one ``BEGIN IMMEDIATE`` transaction: it commits whole or not at all. Callers pass
  requests that :mod:`cbr_agent.controlplane.validation` has already checked and normalized.
- One connection per thread (the server's database threads, :mod:`.dbcall`); statements are cached
  by the sqlite3 module. The same class runs on PostgreSQL through :mod:`.pgstore` (issue 13).
  ``synchronous=NORMAL`` in WAL mode: a commit survives a crash of the process; a
  power loss can lose the last commits, never corrupt the file.
- Liveness (DESIGN.md decision 1): registering a known agent is its heartbeat. ``status`` is stored as
  ``normal`` or ``uninstall``; an agent whose ``last_active_time`` is older than ``stale_after`` is
  *reported* ``abnormal`` (unless uninstalled), computed in SQL so the list filter and pagination agree.
- Removed paths are deleted, not kept with status ``remove``: every listed path is ``available``.
- Times are integer milliseconds since the epoch from an injectable clock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cbr_agent.api.models import (
    AddPathResult,
    Agent,
    AgentPage,
    AgentPath,
    AgentRegistration,
    RemovePathResult,
)
from cbr_agent.controlplane.cbr_schema import CBR_MIGRATIONS
from cbr_agent.controlplane.faults import agent_not_found
from cbr_agent.controlplane.validation import AddPaths, ListQuery
from cbr_agent.errors import StateError

Clock = Callable[[], float]

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # version 1
        """CREATE TABLE agents (
            project_id       TEXT NOT NULL,
            agent_id         TEXT NOT NULL,
            host_name        TEXT NOT NULL,
            host_ip          TEXT NOT NULL,
            host_os          TEXT NOT NULL,
            host_nickname    TEXT,
            agent_version    TEXT,
            agent_type       TEXT,
            status           TEXT NOT NULL CHECK (status IN ('normal', 'uninstall')),
            created_at       INTEGER NOT NULL,
            updated_at       INTEGER NOT NULL,
            last_active_time INTEGER NOT NULL,
            PRIMARY KEY (project_id, agent_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX agents_by_creation ON agents (project_id, created_at, agent_id)",
        """CREATE TABLE paths (
            seq        INTEGER PRIMARY KEY,
            id         TEXT NOT NULL UNIQUE,
            project_id TEXT NOT NULL,
            agent_id   TEXT NOT NULL,
            dir_path   TEXT NOT NULL,
            excludes   TEXT NOT NULL DEFAULT '[]',
            created_at INTEGER NOT NULL,
            UNIQUE (project_id, agent_id, dir_path),
            FOREIGN KEY (project_id, agent_id) REFERENCES agents (project_id, agent_id)
                ON DELETE CASCADE
        )""",
    ),
    *CBR_MIGRATIONS,  # version 2: vaults, policies, checkpoints, backups, tasks (issue 12)
)
SCHEMA_VERSION = len(MIGRATIONS)

_STATUS_SQL = ("CASE WHEN status = 'uninstall' THEN 'uninstall' "
               "WHEN last_active_time < ? THEN 'abnormal' ELSE 'normal' END")
_AGENT_COLUMNS = (f"agent_id, host_name, host_ip, host_os, host_nickname, agent_version, agent_type, "
                  f"{_STATUS_SQL}, created_at, updated_at, last_active_time")
_STATUS_FILTERS = {
    "normal": "status = 'normal' AND last_active_time >= ?",
    "abnormal": "status = 'normal' AND last_active_time < ?",
    "uninstall": "status = 'uninstall'",
}
_SEARCH_COLUMNS = ("agent_id", "host_name", "host_nickname", "host_ip", "host_os", "agent_version")
_SEARCH_SQL = "(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in _SEARCH_COLUMNS) + (
    " OR EXISTS (SELECT 1 FROM paths p WHERE p.project_id = agents.project_id "
    "AND p.agent_id = agents.agent_id AND p.dir_path LIKE ? ESCAPE '\\'))")


def _like(text: str) -> str:
    """``%text%`` with LIKE's wildcards taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


_UPSERT = """
INSERT INTO agents (project_id, agent_id, host_name, host_ip, host_os, host_nickname, agent_version,
                    agent_type, status, created_at, updated_at, last_active_time)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'normal', ?, ?, ?)
ON CONFLICT (project_id, agent_id) DO UPDATE SET
    host_name = excluded.host_name,
    host_ip = excluded.host_ip,
    host_os = excluded.host_os,
    host_nickname = COALESCE(excluded.host_nickname, agents.host_nickname),
    agent_version = COALESCE(excluded.agent_version, agents.agent_version),
    agent_type = COALESCE(excluded.agent_type, agents.agent_type),
    status = 'normal',
    updated_at = excluded.updated_at,
    last_active_time = excluded.last_active_time
RETURNING agent_id, host_name, host_ip, host_os, host_nickname, agent_version, agent_type, status,
          created_at, updated_at, last_active_time
"""


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


class AgentStore:
    """Agents and paths of any number of projects in one SQLite database."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        stale_after: float = 180.0,
        clock: Clock | None = None,
        busy_timeout_ms: int = 10_000,
    ) -> None:
        if stale_after <= 0:
            raise ValueError("stale_after must be positive")
        self.db_path = Path(db_path)
        self.stale_after = stale_after
        self.clock: Clock = clock or time.time
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        #: every open connection with the thread it belongs to (closed when that thread is gone)
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._migrate(self.connection())

    # -- connections and transactions -------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        if self._closed:
            raise StateError(f"the agent store {self.db_path} is closed")
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False,
                                   cached_statements=128)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the control-plane database {self.db_path}: {exc}") from None
        with self._lock:
            alive = []
            for thread, other in self._connections:
                if thread.is_alive():
                    alive.append((thread, other))
                else:
                    other.close()  # its thread ended: do not leak one file descriptor per thread
            alive.append((threading.current_thread(), conn))
            self._connections = alive
        return conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for _, conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    @contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        conn = self.connection()
        try:
            conn.execute(begin)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StateError(f"control-plane database {self.db_path}: {exc}") from exc

    def _migrate(self, conn: sqlite3.Connection) -> None:
        try:
            with self._transaction() as tx:
                version = tx.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StateError(
                        f"the control-plane database {self.db_path} has schema version {version}, newer "
                        f"than this cbr-agent knows ({SCHEMA_VERSION}); upgrade cbr-agent")
                for number in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[number]:
                        tx.execute(statement)
                tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StateError(f"cannot use the control-plane database {self.db_path}: {exc}") from None

    @staticmethod
    def schema_version_of(db_path: Path) -> int:
        """The schema version of a SQLite file (0 when it does not exist yet)."""
        if not db_path.exists():
            return 0
        try:
            conn = sqlite3.connect(db_path)
            try:
                return int(conn.execute("PRAGMA user_version").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StateError(f"cannot use the control-plane database {db_path}: {exc}") from None

    # -- reading ----------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _cutoff(self, now_ms: int) -> int:
        return now_ms - int(self.stale_after * 1000)

    def _paths(self, conn: sqlite3.Connection, project_id: str, agent_ids: Sequence[str]
               ) -> dict[str, list[AgentPath]]:
        found: dict[str, list[AgentPath]] = {a: [] for a in agent_ids}
        if not agent_ids:
            return found
        marks = ",".join("?" * len(agent_ids))
        rows = conn.execute(
            f"SELECT agent_id, id, dir_path, excludes FROM paths WHERE project_id = ? "
            f"AND agent_id IN ({marks}) ORDER BY seq", (project_id, *agent_ids))
        for agent_id, path_id, dir_path, excludes in rows:
            found[agent_id].append(AgentPath(dir_path=dir_path, excludes=tuple(json.loads(excludes)),
                                             id=path_id, agent_id=agent_id, status="available"))
        return found

    @staticmethod
    def _agent(row: Sequence[Any], paths: list[AgentPath]) -> Agent:
        return Agent(
            agent_id=row[0], host_name=row[1], host_ip=row[2], host_os=row[3], host_nickname=row[4],
            agent_version=row[5], agent_type=row[6], status=row[7], created_at=_time(row[8]),
            updated_at=_time(row[9]), last_active_time=_time(row[10]), paths=tuple(paths),
        )

    def _load(self, conn: sqlite3.Connection, project_id: str, agent_id: str, now_ms: int) -> Agent:
        row = conn.execute(
            f"SELECT {_AGENT_COLUMNS} FROM agents WHERE project_id = ? AND agent_id = ?",
            (self._cutoff(now_ms), project_id, agent_id)).fetchone()
        if row is None:
            raise agent_not_found(agent_id)
        return self._agent(row, self._paths(conn, project_id, [agent_id])[agent_id])

    def show(self, project_id: str, agent_id: str) -> Agent:
        with self._transaction("BEGIN") as conn:
            return self._load(conn, project_id, agent_id, self._now_ms())

    def list_agents(self, project_id: str, query: ListQuery) -> AgentPage:
        now_ms = self._now_ms()
        where, args = ["project_id = ?"], [project_id]
        if query.agent_ids:
            where.append(f"agent_id IN ({','.join('?' * len(query.agent_ids))})")
            args += query.agent_ids
        if query.status is not None:
            where.append(_STATUS_FILTERS[query.status])
            if "?" in _STATUS_FILTERS[query.status]:
                args.append(self._cutoff(now_ms))
        if query.search:
            where.append(_SEARCH_SQL)
            args += [_like(query.search)] * (len(_SEARCH_COLUMNS) + 1)
        condition = " AND ".join(where)
        with self._transaction("BEGIN") as conn:
            count = conn.execute(f"SELECT COUNT(*) FROM agents WHERE {condition}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT {_AGENT_COLUMNS} FROM agents WHERE {condition} "
                "ORDER BY created_at, agent_id LIMIT ? OFFSET ?",
                (self._cutoff(now_ms), *args, query.limit, query.offset)).fetchall()
            paths = self._paths(conn, project_id, [r[0] for r in rows])
        agents = tuple(self._agent(r, paths[r[0]]) for r in rows)
        return AgentPage(agents=agents, count=count, limit=query.limit, offset=query.offset)

    # -- writing ----------------------------------------------------------------------------------

    def register(self, project_id: str, reg: AgentRegistration) -> Agent:
        """Register a new agent, or heartbeat a known one: upsert its host facts, refresh
        ``last_active_time`` and ``updated_at``, and set status ``normal`` again."""
        now_ms = self._now_ms()
        with self._transaction() as conn:
            row = conn.execute(_UPSERT, (
                project_id, reg.agent_id, reg.host_name, reg.host_ip, reg.host_os, reg.host_nickname,
                reg.agent_version, reg.agent_type, now_ms, now_ms, now_ms)).fetchone()
            return self._agent(row, self._paths(conn, project_id, [reg.agent_id])[reg.agent_id])

    def _touch(self, conn: sqlite3.Connection, project_id: str, agent_id: str, now_ms: int,
               status: str | None = None) -> None:
        """Bump ``updated_at`` (and set the status); 404 if the agent does not exist."""
        cursor = conn.execute(
            "UPDATE agents SET updated_at = ?, status = COALESCE(?, status) "
            "WHERE project_id = ? AND agent_id = ?", (now_ms, status, project_id, agent_id))
        if cursor.rowcount == 0:
            raise agent_not_found(agent_id)

    def update_status(self, project_id: str, agent_id: str, status: str) -> Agent:
        now_ms = self._now_ms()
        with self._transaction() as conn:
            self._touch(conn, project_id, agent_id, now_ms, status)
            return self._load(conn, project_id, agent_id, now_ms)

    def add_paths(self, project_id: str, agent_id: str, request: AddPaths) -> AddPathResult:
        """Add new paths; a path that exists is reported under ``existed`` and, when the request
        gives excludes for it, its excludes are replaced by them."""
        now_ms = self._now_ms()
        added: list[str] = []
        existed: list[str] = []
        with self._transaction() as conn:
            self._touch(conn, project_id, agent_id, now_ms)
            for path in request.paths:
                excludes = request.excludes.get(path)
                encoded = None if excludes is None else json.dumps(list(excludes), ensure_ascii=False)
                row = conn.execute("SELECT seq FROM paths WHERE project_id = ? AND agent_id = ? "
                                   "AND dir_path = ?", (project_id, agent_id, path)).fetchone()
                if row is not None:
                    existed.append(path)
                    if encoded is not None:
                        conn.execute("UPDATE paths SET excludes = ? WHERE seq = ?", (encoded, row[0]))
                    continue
                added.append(path)
                conn.execute(
                    "INSERT INTO paths (id, project_id, agent_id, dir_path, excludes, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (str(uuid.uuid4()), project_id, agent_id, path, encoded or "[]", now_ms))
        return AddPathResult(added=tuple(added), existed=tuple(existed))

    def remove_paths(self, project_id: str, agent_id: str, paths: Sequence[str]) -> RemovePathResult:
        now_ms = self._now_ms()
        removed: list[str] = []
        missing: list[str] = []
        with self._transaction() as conn:
            self._touch(conn, project_id, agent_id, now_ms)
            for path in paths:
                cursor = conn.execute("DELETE FROM paths WHERE project_id = ? AND agent_id = ? "
                                      "AND dir_path = ?", (project_id, agent_id, path))
                (removed if cursor.rowcount else missing).append(path)
        return RemovePathResult(removed=tuple(removed), not_existed=tuple(missing))

    def remove_agent(self, project_id: str, agent_id: str) -> None:
        """Delete the agent and its paths; 404 if it does not exist (a second DELETE too)."""
        with self._transaction() as conn:
            cursor = conn.execute("DELETE FROM agents WHERE project_id = ? AND agent_id = ?",
                                  (project_id, agent_id))
            if cursor.rowcount == 0:
                raise agent_not_found(agent_id)
            # its CBR records go with it (issue 12): vault membership, backups, unfinished tasks
            for table, column in (("vault_resources", "resource_id"), ("backups", "resource_id")):
                conn.execute(f"DELETE FROM {table} WHERE project_id = ? AND {column} = ?",
                             (project_id, agent_id))
            conn.execute("DELETE FROM tasks WHERE project_id = ? AND agent_id = ? AND status IN "
                         "('waiting', 'running')", (project_id, agent_id))

    # -- monitoring -------------------------------------------------------------------------------

    def count_by_status(self) -> dict[tuple[str, str], int]:
        """``(project_id, reported status) -> number of agents``, for the server's metrics."""
        with self._transaction("BEGIN") as conn:
            rows = conn.execute(
                f"SELECT project_id, {_STATUS_SQL} AS reported, COUNT(*) FROM agents "
                "GROUP BY project_id, reported", (self._cutoff(self._now_ms()),)).fetchall()
        return {(project, status): count for project, status, count in rows}
