"""Migrations apply to a fresh PostgreSQL database; the SQLite schema and the record models match it."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from common.records import schema as rec
from services.persistence import migrate
from services.persistence.store import SCHEMA_FILE

PG_TO_SQLITE = {
    "uuid": "TEXT", "text": "TEXT", "timestamp with time zone": "TEXT", "integer": "INTEGER",
    "smallint": "INTEGER", "bigint": "INTEGER", "boolean": "INTEGER", "double precision": "REAL",
    "ARRAY": "TEXT", "jsonb": "TEXT",
}


def sqlite_columns() -> dict[str, list[tuple[str, str]]]:
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA_FILE.read_text())
    out = {t: [(r[1], r[2]) for r in conn.execute(f"PRAGMA table_info({t})")] for t in rec.TABLES}
    conn.close()
    return out


def pg_columns(dsn: str) -> dict[str, list[tuple[str, str]]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ).fetchall()
    out: dict[str, list[tuple[str, str]]] = {}
    for table, col, typ in rows:
        out.setdefault(table, []).append((col, typ))
    return out


def test_models_match_sqlite_schema():
    cols = sqlite_columns()
    for table in rec.TABLES:
        assert [c for c, _ in cols[table]] == rec.columns(table) + ["created_at"], table


def test_migrations_apply_to_fresh_postgres_and_are_tracked(empty_pg_db):
    assert migrate.apply_migrations(empty_pg_db) == ["0001_init.sql"]
    assert migrate.apply_migrations(empty_pg_db) == []  # second run: nothing to do
    with psycopg.connect(empty_pg_db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations")]
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
        rls = dict(conn.execute("SELECT relname, relrowsecurity FROM pg_class WHERE relname = ANY(%s)",
                                (list(rec.TABLES),)).fetchall())
    assert names == ["0001_init.sql"]
    assert {"trades_session_idx", "trades_symbol_time_idx", "events_type_time_idx",
            "signals_symbol_bar_idx", "session_heartbeats_session_time_idx"} <= indexes
    assert all(rls[t] for t in rec.TABLES)


def test_postgres_schema_matches_sqlite_schema(pg_dsn):
    pg = pg_columns(pg_dsn)
    lite = sqlite_columns()
    for table in rec.TABLES:
        assert [c for c, _ in pg[table]] == [c for c, _ in lite[table]], table
        for (col, pg_type), (_, lite_type) in zip(pg[table], lite[table], strict=True):
            assert PG_TO_SQLITE[pg_type] == lite_type, f"{table}.{col}: {pg_type} vs {lite_type}"


def test_changed_applied_migration_is_refused(tmp_path, empty_pg_db):
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (id int);")
    assert migrate.apply_migrations(empty_pg_db, tmp_path) == ["0001_a.sql"]
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (id bigint);")
    with pytest.raises(migrate.MigrationError, match="0001_a.sql was changed"):
        migrate.apply_migrations(empty_pg_db, tmp_path)


def test_failing_migration_rolls_back_and_names_the_file(tmp_path, empty_pg_db):
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); CREATE TABLE broken (id nosuchtype);")
    with pytest.raises(migrate.MigrationError, match="0002_bad.sql"):
        migrate.apply_migrations(empty_pg_db, tmp_path)
    with psycopg.connect(empty_pg_db) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM schema_migrations")] == ["0001_ok.sql"]
        assert conn.execute("SELECT to_regclass('half')").fetchone()[0] is None


def test_pending_is_pure():
    ms = [migrate.Migration("0001_x.sql", "select 1"), migrate.Migration("0002_y.sql", "select 2")]
    assert migrate.pending(ms, {}) == ms
    assert migrate.pending(ms, {"0001_x.sql": ms[0].checksum}) == ms[1:]
    with pytest.raises(migrate.MigrationError):
        migrate.pending(ms, {"0001_x.sql": "other"})
