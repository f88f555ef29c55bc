"""Test isolation: every test gets its own HOME, XDG dirs and no CBR_AGENT_* from the caller."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path_factory.mktemp("home")
    for name in list(os.environ):
        if name.startswith("CBR_AGENT_") or name == "NOTIFY_SOCKET" or name == "WATCHDOG_USEC":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    return home


@pytest.fixture(scope="session")
def postgres():
    """A temporary PostgreSQL cluster shared by the session (tests/pgcluster.py); skips the test with
    the reason when PostgreSQL or psycopg is not installed."""
    from tests.pgcluster import start_cluster

    cluster, why = start_cluster()
    if cluster is None:
        pytest.skip(why)
    yield cluster
    cluster.destroy()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_db(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh control-plane database of each store: a SQLite file, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "cp.db")
    return request.getfixturevalue("postgres").new_database()
