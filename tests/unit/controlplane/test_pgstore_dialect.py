"""The SQLite -> PostgreSQL dialect layer of :mod:`cbr_agent.controlplane.pgstore` (pure functions;
the store itself is tested against a real PostgreSQL by the contract suite)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cbr_agent.controlplane.pgstore import is_url, redact, translate, translate_ddl
from cbr_agent.controlplane.store import MIGRATIONS


def test_placeholders_percent_signs_and_two_argument_max() -> None:
    assert translate("SELECT a FROM t WHERE b = ? AND c LIKE '5%'") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE '5%%'")
    assert translate("UPDATE tasks SET progress = MAX(progress, ?)") == (
        "UPDATE tasks SET progress = GREATEST(progress, %s)")
    assert translate("SELECT COALESCE(MAX(seq), 0) FROM events") == "SELECT COALESCE(MAX(seq), 0) FROM events"


@given(st.lists(st.sampled_from(["a = ?", "b IN (?, ?)", "'x%'", "c", " AND "]), max_size=12))
def test_every_placeholder_becomes_one_psycopg_placeholder(parts: list[str]) -> None:
    sql = " ".join(parts)
    out = translate(sql)
    assert out.count("%s") == sql.count("?")
    assert "?" not in out
    assert out.replace("%s", "").count("%") == 2 * sql.count("%")


def test_schema_keeps_its_meaning_on_postgresql() -> None:
    ddl = [translate_ddl(s) for version in MIGRATIONS for s in version]
    joined = "\n".join(ddl)
    assert "WITHOUT ROWID" not in joined and "AUTOINCREMENT" not in joined
    assert " INTEGER" not in joined  # millisecond times need 64 bits
    assert "seq        BIGSERIAL PRIMARY KEY" in joined


def test_urls_and_redaction() -> None:
    assert is_url("postgresql://cbr@db/cp") and is_url("postgres://cbr@db/cp")
    assert not is_url("/var/lib/cbr-agent/controlplane.db")
    assert redact("postgresql://cbr:s3cret@db:5432/cp") == "postgresql://cbr:***@db:5432/cp"
    assert redact("postgresql://cbr@db/cp") == "postgresql://cbr@db/cp"
