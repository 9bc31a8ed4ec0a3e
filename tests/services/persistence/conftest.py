"""Fixtures for the persistence tests.

PostgreSQL: `pg_dsn` gives a fresh database (oracle_test_<random>) on the server at ORACLE_TEST_PG
(default postgresql://127.0.0.1:5432/test, trying users postgres and root), with the migrations applied,
dropped at the end of the run. When the server is unreachable the tests that need it are skipped with a
message, except with CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from services.persistence.migrate import apply_migrations

# The helper modules next to the tests (pers_helpers, postgrest_stub) are imported by name; with
# --import-mode=importlib pytest does not put test directories on sys.path, so do it here.
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

DEFAULT_ADMIN_DSNS = (
    "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=3",
    "host=127.0.0.1 port=5432 dbname=test user=root connect_timeout=3",
)


def _admin_dsn() -> tuple[str | None, str]:
    candidates = [os.environ["ORACLE_TEST_PG"]] if os.environ.get("ORACLE_TEST_PG") else DEFAULT_ADMIN_DSNS
    errors = []
    for dsn in candidates:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return dsn, ""
        except psycopg.Error as exc:
            errors.append(f"{dsn}: {str(exc).strip()}")
    return None, "; ".join(errors)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """An admin DSN of a reachable PostgreSQL server (skip, or fail under CI=true, when there is none)."""
    dsn, why = _admin_dsn()
    if dsn is None:
        message = f"PostgreSQL is not reachable ({why})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(f"{message}; PostgreSQL tests skipped")
    return dsn


def _create_db(admin: str) -> tuple[str, str]:
    name = f"oracle_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(admin)
    params["dbname"] = name
    return name, make_conninfo(**params)


def _drop_db(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A fresh database for this test run with the migrations applied; dropped at the end."""
    name, dsn = _create_db(pg_server)
    try:
        apply_migrations(dsn)
        yield dsn
    finally:
        _drop_db(pg_server, name)


@pytest.fixture
def empty_pg_db(pg_server: str) -> Iterator[str]:
    """A fresh, empty database (no migrations) for one test."""
    name, dsn = _create_db(pg_server)
    try:
        yield dsn
    finally:
        _drop_db(pg_server, name)


@pytest.fixture
def clean_pg(pg_dsn: str) -> str:
    """The run's database with every record table emptied."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE sessions, trades, events, session_heartbeats, signals, acks")
    return pg_dsn
