"""Schema version 2 of the control-plane database: vaults, policies, checkpoints, backups and tasks.

Kept apart from the agents' schema (version 1, in :mod:`cbr_agent.controlplane.store`) so each part
reads on its own; :data:`MIGRATIONS` there runs these after its own. Times are integer milliseconds.

Design for several server processes (issue 13): nothing in a process's memory is the truth. A task
is claimed by one UPDATE on its row (``status='waiting'`` or a lapsed lease); ``events`` is an
append-only log of "agent X has something new" rows that every process tails to wake its long polls.
"""

from __future__ import annotations

CBR_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # version 2
        """CREATE TABLE policies (
            project_id     TEXT NOT NULL,
            id             TEXT NOT NULL PRIMARY KEY,
            name           TEXT NOT NULL,
            enabled        INTEGER NOT NULL,
            operation_type TEXT NOT NULL,
            definition     TEXT NOT NULL,
            patterns       TEXT NOT NULL,
            trigger_id     TEXT NOT NULL,
            created_at     INTEGER NOT NULL,
            updated_at     INTEGER NOT NULL
        )""",
        "CREATE INDEX policies_by_project ON policies (project_id, created_at)",
        """CREATE TABLE vaults (
            project_id  TEXT NOT NULL,
            id          TEXT NOT NULL PRIMARY KEY,
            name        TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            billing     TEXT NOT NULL,
            policy_id   TEXT REFERENCES policies (id) ON DELETE SET NULL,
            extra       TEXT NOT NULL DEFAULT '{}',
            created_at  INTEGER NOT NULL,
            updated_at  INTEGER NOT NULL
        )""",
        "CREATE INDEX vaults_by_project ON vaults (project_id, created_at)",
        # an agent belongs to at most one vault of its project, as a CBR resource does
        """CREATE TABLE vault_resources (
            project_id  TEXT NOT NULL,
            vault_id    TEXT NOT NULL REFERENCES vaults (id) ON DELETE CASCADE,
            resource_id TEXT NOT NULL,
            created_at  INTEGER NOT NULL,
            PRIMARY KEY (project_id, resource_id)
        )""",
        "CREATE INDEX vault_resources_by_vault ON vault_resources (vault_id)",
        """CREATE TABLE checkpoints (
            project_id   TEXT NOT NULL,
            id           TEXT NOT NULL PRIMARY KEY,
            vault_id     TEXT NOT NULL,
            vault_name   TEXT NOT NULL,
            name         TEXT,
            description  TEXT,
            auto_trigger INTEGER NOT NULL DEFAULT 0,
            policy_id    TEXT,
            resources    TEXT NOT NULL DEFAULT '[]',
            skipped      TEXT NOT NULL DEFAULT '[]',
            created_at   INTEGER NOT NULL
        )""",
        """CREATE TABLE backups (
            project_id    TEXT NOT NULL,
            id            TEXT NOT NULL PRIMARY KEY,
            name          TEXT NOT NULL,
            description   TEXT NOT NULL DEFAULT '',
            checkpoint_id TEXT NOT NULL,
            vault_id      TEXT NOT NULL,
            resource_id   TEXT NOT NULL,
            resource_name TEXT NOT NULL,
            status        TEXT NOT NULL,
            snapshot_id   TEXT NOT NULL,
            auto_trigger  INTEGER NOT NULL DEFAULT 0,
            policy_id     TEXT,
            incremental   INTEGER NOT NULL DEFAULT 1,
            size_bytes    INTEGER NOT NULL DEFAULT 0,
            added_bytes   INTEGER NOT NULL DEFAULT 0,
            extra         TEXT NOT NULL DEFAULT '{}',
            created_at    INTEGER NOT NULL,
            updated_at    INTEGER NOT NULL,
            UNIQUE (project_id, resource_id, snapshot_id)
        )""",
        "CREATE INDEX backups_by_project ON backups (project_id, created_at)",
        "CREATE INDEX backups_by_checkpoint ON backups (checkpoint_id)",
        """CREATE TABLE tasks (
            seq            INTEGER PRIMARY KEY,
            project_id     TEXT NOT NULL,
            id             TEXT NOT NULL UNIQUE,
            agent_id       TEXT NOT NULL,
            operation_type TEXT NOT NULL,
            status         TEXT NOT NULL CHECK (status IN
                               ('waiting', 'running', 'success', 'failed', 'timeout', 'skipped')),
            vault_id       TEXT,
            vault_name     TEXT,
            checkpoint_id  TEXT,
            policy_id      TEXT,
            backup_id      TEXT,
            params         TEXT NOT NULL DEFAULT '{}',
            progress       INTEGER NOT NULL DEFAULT 0,
            error_code     TEXT NOT NULL DEFAULT '',
            error_message  TEXT NOT NULL DEFAULT '',
            result         TEXT NOT NULL DEFAULT '{}',
            lease_owner    TEXT,
            lease_expires  INTEGER,
            attempts       INTEGER NOT NULL DEFAULT 0,
            max_attempts   INTEGER NOT NULL,
            created_at     INTEGER NOT NULL,
            updated_at     INTEGER NOT NULL,
            started_at     INTEGER,
            ended_at       INTEGER
        )""",
        "CREATE INDEX tasks_open ON tasks (project_id, agent_id, status)",
        "CREATE INDEX tasks_leases ON tasks (status, lease_expires)",
        "CREATE INDEX tasks_by_project ON tasks (project_id, created_at)",
        "CREATE INDEX tasks_by_checkpoint ON tasks (checkpoint_id)",
        """CREATE TABLE events (
            seq        INTEGER PRIMARY KEY AUTOINCREMENT,
            project_id TEXT NOT NULL,
            agent_id   TEXT NOT NULL,
            at         INTEGER NOT NULL
        )""",
    ),
)
