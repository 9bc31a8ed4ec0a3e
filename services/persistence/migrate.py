"""A tiny migration runner for PostgreSQL (and Supabase): applies migrations/NNNN_*.sql in name order,
each in its own transaction, and records them in `schema_migrations` (name, checksum, applied_at).

An applied file whose content changed is an error (write a new migration instead). Concurrent runners
serialise on an advisory lock.

    python -m services.persistence.migrate postgresql://user@host/db
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LOCK_KEY = 0x0BAC1E  # advisory lock id for this runner


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    files = sorted(directory.glob("*.sql"))
    return [Migration(f.name, f.read_text()) for f in files]


def pending(migrations: list[Migration], applied: dict[str, str]) -> list[Migration]:
    """Pure: the migrations still to apply, checking the applied ones are unchanged."""
    for m in migrations:
        if m.name in applied and applied[m.name] != m.checksum:
            raise MigrationError(
                f"migration {m.name} was changed after it was applied; add a new file instead"
            )
    return [m for m in migrations if m.name not in applied]


def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations to the database at `dsn`; returns the names applied."""
    migrations = load_migrations(directory)
    done: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, checksum text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            applied = dict(conn.execute("SELECT name, checksum FROM schema_migrations").fetchall())
            for m in pending(migrations, applied):
                try:
                    with conn.transaction():
                        conn.execute(m.sql.encode())  # bytes: sent as a simple query (several statements)
                        conn.execute(
                            "INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)",
                            (m.name, m.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {m.name} failed: {exc}") from exc
                done.append(m.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return done


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m services.persistence.migrate DSN", file=sys.stderr)
        return 2
    try:
        names = apply_migrations(args[0])
    except (MigrationError, psycopg.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("applied: " + (", ".join(names) if names else "nothing (up to date)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
