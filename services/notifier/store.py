"""The notifier's own durable record (SQLite under data_dir, ``notifier.db_file``): every notice heard and every
message formed, so nothing heard is lost and nothing acknowledged is sent twice.

- A notice is recorded (committed, ``synchronous=FULL``) when it is heard, before anything else is done with it;
  its id is its primary key, so hearing it again (a resent alert, a summary read twice) records nothing.
- A message is formed in one transaction with its notices' assignment to it: its id, text and payload are fixed
  before the first POST, so a resend after a crash is byte for byte the same (a receiver dedupes by its ``id``).
- A message is marked sent after the endpoint answered 2xx. At a restart, a message not marked is sent again:
  the only duplicate possible is one POST answered 2xx whose mark the crash prevented, and it carries the same id.
- Messages go in the order they were formed; a message is formed only when none is pending (service.py).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from services.notifier.notices import Message, Notice

SCHEMA = """
CREATE TABLE IF NOT EXISTS notices (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    text TEXT NOT NULL,
    time REAL NOT NULL,
    data TEXT NOT NULL,
    heard_at REAL NOT NULL,
    message_id TEXT
);
CREATE INDEX IF NOT EXISTS notices_unassigned ON notices (message_id, n);
CREATE TABLE IF NOT EXISTS messages (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    payload TEXT NOT NULL,
    formed_at REAL NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    sent_at REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


KNOWN = ""  # the message_id of a notice recorded as no news (never sent)


@dataclass(frozen=True, slots=True)
class Pending:
    """The oldest message not acknowledged yet."""

    id: str
    text: str
    payload: dict
    failures: int


class NotifierStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None)  # autocommit; transactions explicit
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    # ---- notices ------------------------------------------------------------------------------------------
    def record(self, notice: Notice, now: float, *, known: bool = False) -> bool:
        """Record a notice heard (durable when this returns); False when its id was recorded before. ``known``: a
        fact that is no news (found in the store at the notifier's first start): recorded, never sent."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO notices (id, kind, severity, text, time, data, heard_at, message_id) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (notice.id, notice.kind, notice.severity, notice.text, notice.time, json.dumps(notice.data, default=str),
             now, KNOWN if known else None))
        return cur.rowcount == 1

    def unassigned(self) -> list[Notice]:
        """The notices in no message yet, in the order heard."""
        rows = self.db.execute("SELECT id, kind, severity, text, time, data FROM notices WHERE message_id IS NULL "
                               "ORDER BY n").fetchall()
        return [Notice(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    # ---- messages -----------------------------------------------------------------------------------------
    def form(self, message: Message, now: float) -> None:
        """Record a message and assign its notices to it, in one transaction."""
        with self._transaction():
            self.db.execute("INSERT INTO messages (id, text, payload, formed_at) VALUES (?,?,?,?)",
                            (message.id, message.text, json.dumps(message.payload(), default=str), now))
            self.db.executemany("UPDATE notices SET message_id = ? WHERE id = ? AND message_id IS NULL",
                                [(message.id, n.id) for n in message.notices])
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_formed', ?)", (repr(now),))

    def pending(self) -> Pending | None:
        row = self.db.execute("SELECT id, text, payload, failures FROM messages WHERE sent_at IS NULL "
                              "ORDER BY n LIMIT 1").fetchone()
        return None if row is None else Pending(row[0], row[1], json.loads(row[2]), row[3])

    def mark_sent(self, message_id: str, now: float) -> None:
        self.db.execute("UPDATE messages SET sent_at = ? WHERE id = ? AND sent_at IS NULL", (now, message_id))

    def mark_failed(self, message_id: str, error: str) -> int:
        """Count a failed send; the message's failures so far."""
        self.db.execute("UPDATE messages SET failures = failures + 1, last_error = ? WHERE id = ?",
                        (error[:500], message_id))
        row = self.db.execute("SELECT failures FROM messages WHERE id = ?", (message_id,)).fetchone()
        return int(row[0]) if row else 0

    def last_formed(self) -> float | None:
        value = self.meta("last_formed")
        return float(value) if value is not None else None

    # ---- meta ---------------------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def counts(self) -> dict[str, int]:
        one = self.db.execute
        return {
            "notices": one("SELECT count(*) FROM notices").fetchone()[0],
            "waiting": one("SELECT count(*) FROM notices WHERE message_id IS NULL").fetchone()[0],
            "messages_sent": one("SELECT count(*) FROM messages WHERE sent_at IS NOT NULL").fetchone()[0],
            "messages_pending": one("SELECT count(*) FROM messages WHERE sent_at IS NULL").fetchone()[0],
        }

    def close(self) -> None:
        self.db.close()

    def _transaction(self) -> _Tx:
        return _Tx(self.db)


class _Tx:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
