"""The local SQLite store's migrations: what turns a store made by an older `local_schema.sql` into the current one.

`local_schema.sql` is the current schema (a new store is made from it and stamped `SCHEMA_VERSION` at once); a store
found at an older `PRAGMA user_version` gets each migration numbered above its version, in order, each in its own
transaction with its new version stamp (a kill -9 midway leaves the store at the last version committed, and the
next open goes on from there). Every statement is idempotent (IF EXISTS / IF NOT EXISTS), so two connections opening
the store at once both end at the current version. The PostgreSQL schema (`migrations/`) is another matter: its
indexes serve the remote's readers and are not changed by these.

Version 1 is main's first local schema (before the stamp existed, a store with tables but version 0 was made by it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LocalMigration:
    version: int  # the store's version once applied
    why: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[LocalMigration, ...] = (
    LocalMigration(
        2,
        "signals and acks (40 of a bar's 49 records at 20 symbols) keep only their session index: their "
        "(symbol, bar_time) and signal_id indexes served no query, and their inserts (20 symbols' places, random "
        "signal ids) wrote about 75 of a bar's 160 WAL pages",
        (
            "DROP INDEX IF EXISTS signals_symbol_bar_idx",
            "DROP INDEX IF EXISTS acks_symbol_bar_idx",
            "DROP INDEX IF EXISTS acks_signal_idx",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version  # the version of a store made by local_schema.sql


def pending(version: int) -> list[LocalMigration]:
    """Pure: the migrations a store at `version` still needs, in order (a store with tables at version 0 was made
    by version 1's schema)."""
    return [m for m in MIGRATIONS if m.version > max(version, 1)]
