"""A control-plane database written before issue 12 (schema version 1: agents and paths) is migrated
to version 2 in place on open, keeping its agents."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cbr_agent.controlplane.embedded import EmbeddedControlPlane
from cbr_agent.controlplane.store import MIGRATIONS, SCHEMA_VERSION


def test_version_1_database_gains_the_cbr_tables(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO agents VALUES ('p', 'old-agent', 'h', '10.0.0.1', 'linux', NULL, NULL, NULL, "
        "'normal', 1, 1, 1)"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with EmbeddedControlPlane(db, "p") as cp:
        assert cp.show_agent("old-agent").host_name == "h"
        vault = cp.cbr_call(
            "POST",
            ["vaults"],
            payload={
                "vault": {
                    "name": "v",
                    "billing": {"object_type": "file", "size": 10},
                    "resources": [{"id": "old-agent", "type": "OS::Native::Server"}],
                }
            },
        )["vault"]
        assert [r["id"] for r in vault["resources"]] == ["old-agent"]
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    check.close()
