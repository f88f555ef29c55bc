"""``cbr-agent server migrate --db FILE|URL`` on both stores, and the PostgreSQL password rules:
never in the URL (ps shows argv), from PGPASSWORD / ~/.pgpass / --db-password-file instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cbr_agent", "server", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_migrate_creates_the_schema_then_finds_it_up_to_date(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if store == "postgresql":
        db = request.getfixturevalue("postgres").new_database()
    else:
        db = str(tmp_path / "a.db")
    first = cli("migrate", "--db", db, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"schema_version_before": 0, "schema_version": 2}
    again = cli("migrate", "--db", db)
    assert again.returncode == 0
    assert again.stdout.strip() == "the database's schema is up to date (version 2)"


def test_a_password_in_the_url_is_refused_before_anything_is_opened(tmp_path: Path) -> None:
    result = cli("--db", "postgresql://cbr:secret@127.0.0.1:1/cp", "--credentials", str(tmp_path / "c"))
    assert result.returncode == 2
    assert "secret" not in result.stderr
    assert "PGPASSWORD" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_password_comes_from_a_file_or_pgpassword(postgres: Any, tmp_path: Path) -> None:
    import psycopg

    url = postgres.new_database()
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("CREATE ROLE cbr LOGIN PASSWORD 'pw-1234'")
        conn.execute(f"GRANT ALL ON DATABASE {url.rsplit('/', 1)[1]} TO cbr")
        conn.execute(f"ALTER DATABASE {url.rsplit('/', 1)[1]} OWNER TO cbr")
    cbr_url = url.replace("postgres@", "cbr@")  # the test cluster asks this role for a password
    missing = cli("migrate", "--db", cbr_url)
    assert missing.returncode == 2 and "pw-1234" not in missing.stderr
    secret = tmp_path / "pw"
    secret.write_text("pw-1234\n")
    secret.chmod(0o644)
    loose = cli("migrate", "--db", cbr_url, "--db-password-file", str(secret))
    assert loose.returncode == 2 and "chmod 600" in loose.stderr
    secret.chmod(0o600)
    assert cli("migrate", "--db", cbr_url, "--db-password-file", str(secret)).returncode == 0
    assert cli("migrate", "--db", cbr_url, env={"PGPASSWORD": "pw-1234"}).returncode == 0
