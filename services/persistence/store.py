"""The durable local store: SQLite in WAL mode (synchronous=NORMAL by default), plus a per-sink outbox.

A write is acknowledged only after its transaction has committed. Durability of a commit:
- synchronous=NORMAL (the default, `SYNCHRONOUS`): the commit is in the WAL file, in the OS, when the write
  returns: a kill -9 of the process at any moment loses nothing acknowledged; a power cut (or kernel crash) may
  lose the last transactions since the last checkpoint's fsync. That is the guarantee the senders' side has
  too: their outbox spool (common/outbox_sender.py) is written to the OS without fsync, so a power cut already
  loses their unacknowledged records; an fsync per commit here would not make the records of a power cut
  safe, and it costs about half the write op's wall time and a fifth of its CPU (a WAL fsync per commit);
- synchronous=FULL (`Store.open(..., synchronous="FULL")`): the WAL is fsynced at each commit, so what is
  acknowledged also survives a power cut.
What must survive a power cut before an order leaves (the executor's intent, the connector's SENT line) is
fsynced by its owner (common/durable.py), not here.

Writes are idempotent on `id` and versioned by `rev`:

| stored row        | incoming record                  | result (WriteAck.status)                  |
|-------------------|----------------------------------|--------------------------------------|
| none              | any                              | `stored`                             |
| rev r             | rev > r                          | `updated` (row replaced)             |
| rev r             | rev r, same payload              | `duplicate` (no-op: a sender retry)  |
| rev r             | rev r, different payload         | `conflict` (nothing written; WriteAck names the fields) |
| rev r             | rev < r                          | `stale` (no-op: an older version)    |

A conflict is reported, never silently overwritten: two writers made different records with the same
id and rev, which is a bug upstream. It is not an exception so that the rest of a batch still commits.

Every stored or updated record gets an outbox row per configured sink, in the same transaction, so a
sink outage only grows the backlog and nothing is ever dropped. A record that a sink rejects for good
is `parked` (kept, counted, visible) rather than deleted.

One Store object per thread (sqlite3 connections are not shared across threads); open a second Store on
the same file for a drain thread: WAL lets it read while the other writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from common.records import schema as rec
from services.persistence import local_migrations

SCHEMA_FILE = Path(__file__).with_name("local_schema.sql")
SCHEMA_VERSION = local_migrations.SCHEMA_VERSION  # PRAGMA user_version of a store made by local_schema.sql

SYNCHRONOUS = "NORMAL"  # see the module docstring: kill -9 safe; "FULL" for power-cut safety at a WAL fsync per commit

AckStatus = Literal["stored", "updated", "duplicate", "stale", "conflict"]


class StoreError(RuntimeError):
    """A write or read failed; the store is unchanged by the failed transaction."""


class StoreFull(StoreError):
    """The disk (or the configured size limit) is full."""


class StoreBusy(StoreError):
    """Another connection held the write lock for longer than busy_timeout."""


@dataclass(frozen=True)
class WriteAck:
    table: str
    id: str
    rev: int
    status: AckStatus
    fields: tuple[str, ...] = ()  # for a conflict: the columns whose values differ

    @property
    def ok(self) -> bool:
        """True when the record (or an equal or newer version of it) is durably stored."""
        return self.status != "conflict"


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    table: str
    id: str
    rev: int
    record: dict[str, Any]  # JSON form, ready to send


@dataclass(frozen=True)
class Backlog:
    pending: int
    parked: int
    last_error: str | None = None


@dataclass
class StoreStats:
    acks: dict[str, int] = field(default_factory=dict)  # per WriteAck.status
    errors: int = 0


def _classify(exc: sqlite3.Error, what: str) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    base = code & 0xFF if isinstance(code, int) else None
    if base == sqlite3.SQLITE_FULL:
        return StoreFull(f"{what}: database or disk is full ({exc}); nothing from this write was stored")
    if base in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreBusy(f"{what}: database is locked by another connection ({exc}); nothing was stored")
    return StoreError(f"{what}: {type(exc).__name__}: {exc}")


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path, sinks: tuple[str, ...]):
        self._conn = conn
        self.path = path
        self.sinks = sinks
        self.stats = StoreStats()

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        sinks: Sequence[str] = (),
        busy_timeout_ms: int = 5000,
        max_bytes: int | None = None,
        synchronous: Literal["NORMAL", "FULL"] = SYNCHRONOUS,
    ) -> Store:
        """Open (and create) the store. `sinks` are the names whose outboxes new records go to.

        `max_bytes` caps the database file size (a quota; tests use it to simulate a full disk).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{path}: could not switch to WAL mode (got {mode})")
            if synchronous not in ("NORMAL", "FULL"):
                raise StoreError(f"{path}: synchronous must be NORMAL or FULL, not {synchronous!r}")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{path}: store schema version {version} is newer than this code's "
                                 f"({SCHEMA_VERSION}); refusing to open it")
            if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None:  # a new store
                conn.executescript(SCHEMA_FILE.read_text())
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            else:
                _migrate(conn, version)
                conn.executescript(SCHEMA_FILE.read_text())  # what the migrations leave to it (IF NOT EXISTS)
            if max_bytes is not None:
                page = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count={max(1, max_bytes // page)}")
        except sqlite3.Error as exc:
            conn.close()
            raise _classify(exc, f"opening store {path}") from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, tuple(sinks))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writes -------------------------------------------------------------------------------

    def write(self, table: str, record: Mapping[str, Any] | rec.Record) -> WriteAck:
        """Validate and durably store one record; returns after commit."""
        return self.write_batch([(table, record)])[0]

    def write_batch(self, items: Iterable[tuple[str, Mapping[str, Any] | rec.Record]], *,
                    keep_stored_session: Collection[int] = ()) -> list[WriteAck]:
        """Validate every record first (RecordInvalid names the item, table and field, and nothing is
        written), then store them all in one transaction (group commit: one commit, one WAL sync, for the
        whole batch). Returns one WriteAck per item, in order.

        `keep_stored_session`: positions of items whose session_id the server filled in: when a copy of the
        record is stored already (before this batch), the item takes its session_id, none included (a sender's
        retry keeps the session its first copy got, so it is a duplicate, not a conflict: an event first stored
        before the session started, and sent again after, is the same record)."""
        validated: list[tuple[str, rec.Record]] = []
        for i, (table, record) in enumerate(items):
            try:
                validated.append((table, rec.validate(table, record)))
            except rec.RecordInvalid as exc:
                if i:
                    exc.args = (f"batch item {i}: {exc.args[0]}",)
                raise
        if not validated:
            return []
        acks: list[WriteAck] = []
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                acks = self._write_all(validated, keep_stored_session)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self.stats.errors += 1
            tables = ", ".join(sorted({t for t, _ in validated}))
            raise _classify(exc, f"writing {len(validated)} record(s) to {tables}") from exc
        for ack in acks:
            self.stats.acks[ack.status] = self.stats.acks.get(ack.status, 0) + 1
        return acks

    def checkpoint(self) -> int:
        """Copy the WAL into the database now (PASSIVE: never waits for a reader), fsyncing both: the work SQLite's
        automatic checkpoint would otherwise do inside a later commit. Returns the WAL's frames (-1: none, not WAL)."""
        try:
            row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            self.stats.errors += 1
            raise _classify(exc, "checkpointing the WAL") from exc
        return int(row[1])

    def _write_all(self, validated: list[tuple[str, rec.Record]], keep_stored_session: Collection[int] = ()
                   ) -> list[WriteAck]:
        """The writes of one transaction: the stored revs (and sessions) of the batch's ids read with one query per
        table, then the new rows and the replaced rows written with one prepared statement per table
        (executemany), in the batch's order (a record inserted earlier in the batch is the stored one for a later
        copy of it)."""
        conn = self._conn
        revs: dict[tuple[str, str], int] = {}
        stored_sessions: dict[tuple[str, str], str | None] = {}  # before this batch
        by_table: dict[str, list[str]] = {}
        rows: list[dict[str, Any]] = []
        for table, record in validated:
            row = _sql(table).row(record)
            rows.append(row)
            by_table.setdefault(table, []).append(row[0])
        for table, ids in by_table.items():
            for rid, rev, session_id in conn.execute(_sql(table).revs, (json.dumps(ids),)):
                revs[(table, rid)] = rev
                stored_sessions[(table, rid)] = session_id
        if keep_stored_session and stored_sessions:
            for i in keep_stored_session:
                table, record = validated[i]
                key = (table, rows[i][0])
                if key not in stored_sessions:
                    continue
                stored = stored_sessions[key]
                if stored != record.session_id:  # type: ignore[attr-defined]
                    record = record.model_copy(update={"session_id": stored})
                    validated[i] = (table, record)
                    rows[i] = _sql(table).row(record)
        written: dict[tuple[str, str], rec.Record] = {}  # stored or updated by this batch
        inserts: dict[str, list[tuple[Any, ...]]] = {}
        updates: dict[str, list[tuple[Any, ...]]] = {}
        outbox: list[tuple[str, str, str, int]] = []
        acks: list[WriteAck] = []
        for (table, record), row in zip(validated, rows, strict=True):
            rid = row[0]
            key = (table, rid)
            old_rev = revs.get(key)
            if old_rev is None:
                inserts.setdefault(table, []).append(row)
                status: AckStatus = "stored"
            elif record.rev > old_rev:
                updates.setdefault(table, []).append(row[1:] + (rid,))
                status = "updated"
            elif record.rev < old_rev:
                acks.append(WriteAck(table, rid, record.rev, "stale"))
                continue
            else:
                acks.append(self._same_rev(table, record, written.get(key)))
                continue
            revs[key] = record.rev
            written[key] = record
            outbox.extend((sink, table, rid, record.rev) for sink in self.sinks)
            acks.append(WriteAck(table, rid, record.rev, status))
        for table, args in inserts.items():
            conn.executemany(_sql(table).insert, args)
        for table, args in updates.items():
            conn.executemany(_sql(table).update, args)
        if outbox:
            conn.executemany(
                "INSERT INTO outbox (sink, tbl, rid, rev) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (sink, tbl, rid) DO UPDATE SET rev = excluded.rev, parked = 0, last_error = NULL",
                outbox,
            )
        return acks

    def _same_rev(self, table: str, record: rec.Record, in_batch: rec.Record | None) -> WriteAck:
        """A record whose id and rev are stored already: a duplicate (a sender's retry) or a conflict."""
        if in_batch is not None:
            existing = rec.to_json(in_batch)
        else:
            old = self._conn.execute(_sql(table).select, (str(record.id),)).fetchone()
            existing = rec.to_json(rec.from_sqlite_row(table, dict(old)))
        diff = tuple(c for c, v in rec.to_json(record).items() if existing.get(c) != v)
        return WriteAck(table, str(record.id), record.rev, "conflict" if diff else "duplicate", diff)

    def session_ids(self, table: str, ids: Sequence[str]) -> dict[str, str | None]:
        """The session_id of each stored record among `ids` (one query; ids not stored are left out)."""
        if not ids:
            return {}
        rows = self._read(f"SELECT id, session_id FROM {_sql(table).name} WHERE id IN (SELECT value FROM json_each(?))",
                          (json.dumps(list(ids)),), f"reading {table}")
        return {r["id"]: r["session_id"] for r in rows}

    # ---- reads --------------------------------------------------------------------------------

    def get(self, table: str, record_id: str) -> rec.Record | None:
        rec.model_for(table)
        row = self._read(f"SELECT * FROM {table} WHERE id = ?", (str(record_id),), f"reading {table}")
        return rec.from_sqlite_row(table, row[0]) if row else None

    def query(
        self,
        table: str,
        *,
        session_id: str | None = None,
        symbol: str | None = None,
        is_paper: bool | None = None,
        event_type: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
        newest_first: bool = True,
    ) -> list[rec.Record]:
        """Records of a table filtered by the usual keys, ordered by their time column."""
        cols = rec.columns(table)
        time_col = "start_time" if table == "sessions" else "timestamp"
        where: list[str] = []
        args: list[Any] = []
        for name, value in (("session_id", session_id), ("symbol", symbol), ("event_type", event_type),
                            ("status", status)):
            if value is not None:
                if name not in cols:
                    raise rec.RecordInvalid(table, [(name, "not a column of this table")])
                where.append(f"{name} = ?")
                args.append(value)
        if is_paper is not None:
            if "is_paper" not in cols:
                raise rec.RecordInvalid(table, [("is_paper", "not a column of this table")])
            where.append("is_paper = ?")
            args.append(int(is_paper))
        if since is not None:
            where.append(f"{_q(time_col)} >= ?")
            args.append(rec.format_ts(since))
        if until is not None:
            where.append(f"{_q(time_col)} < ?")
            args.append(rec.format_ts(until))
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {_q(time_col)} {'DESC' if newest_first else 'ASC'}, rowid"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [rec.from_sqlite_row(table, r) for r in self._read(sql, args, f"querying {table}")]

    def count(self, table: str) -> int:
        rec.model_for(table)
        return self._read(f"SELECT count(*) AS n FROM {table}", (), f"counting {table}")[0]["n"]

    def running_session(self) -> rec.Session | None:
        """The most recent session left RUNNING (after a crash, the one to recover)."""
        rows = self.query("sessions", status="RUNNING", limit=1)
        return rows[0] if rows else None  # type: ignore[return-value]

    def last_heartbeat(self, session_id: str) -> datetime | None:
        rows = self.query("session_heartbeats", session_id=session_id, limit=1)
        return rows[0].timestamp if rows else None  # type: ignore[attr-defined]

    def trade_totals(self, session_id: str, *, is_paper: bool) -> tuple[int, float]:
        """(number of trades, sum of pnl) of a session, real or paper."""
        row = self._read(
            "SELECT count(*) AS n, coalesce(sum(pnl), 0) AS pnl FROM trades "
            "WHERE session_id = ? AND is_paper = ?",
            (session_id, int(is_paper)), "reading trade totals",
        )[0]
        return int(row["n"]), float(row["pnl"])

    def trade_facts(self, session_id: str, *, is_paper: bool) -> list[tuple[str, str, float, str | None]]:
        """(id, action, pnl, position_id) of a session's trades, real or paper, newest first (as `query` lists
        them): what its totals need, without building the records."""
        return [tuple(r) for r in self._read(
            'SELECT id, action, pnl, position_id FROM trades WHERE session_id = ? AND is_paper = ? '
            'ORDER BY "timestamp" DESC, rowid', (session_id, int(is_paper)), "reading trades")]

    def trade_ledger(self, session_id: str) -> list[tuple[int, str, str, str, float, str | None]]:
        """(rowid, timestamp, id, action, pnl, position_id) of a session's real trades: a TradeLedger's rows."""
        return [tuple(r) for r in self._read(
            'SELECT rowid, "timestamp", id, action, pnl, position_id FROM trades WHERE session_id = ? AND is_paper = 0',
            (session_id,), "reading trades")]

    def trade_rows(self, ids: Sequence[str]) -> list[tuple[tuple[int, str, str, str, float, str | None], str, bool]]:
        """The stored trades among `ids` as TradeLedger.apply takes them: (ledger row, session_id, is_paper)."""
        if not ids:
            return []
        return [(tuple(r)[:6], r[6], bool(r[7])) for r in self._read(
            'SELECT rowid, "timestamp", id, action, pnl, position_id, session_id, is_paper FROM trades '
            "WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(list(ids)),), "reading trades")]

    def integrity_check(self) -> str:
        return self._read("PRAGMA integrity_check", (), "integrity check")[0][0]

    def _read(self, sql: str, args: Sequence[Any], what: str) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _classify(exc, what) from exc

    # ---- outbox -------------------------------------------------------------------------------

    def pending(self, sink: str, limit: int = 500) -> list[OutboxItem]:
        """The oldest undelivered, unparked records for `sink`, in write order, as JSON records."""
        rows = self._read(
            "SELECT seq, tbl, rid FROM outbox WHERE sink = ? AND parked = 0 ORDER BY seq LIMIT ?",
            (sink, int(limit)), f"reading the {sink} outbox",
        )
        by_table: dict[str, list[str]] = {}
        for r in rows:
            by_table.setdefault(r["tbl"], []).append(r["rid"])
        found: dict[tuple[str, str], rec.Record] = {}
        for table, ids in by_table.items():
            marks = ", ".join("?" * len(ids))
            for r in self._read(f"SELECT * FROM {table} WHERE id IN ({marks})", ids, f"reading {table}"):
                found[(table, r["id"])] = rec.from_sqlite_row(table, r)
        items = []
        for r in rows:
            record = found.get((r["tbl"], r["rid"]))
            if record is None:  # cannot happen: records are never deleted
                raise StoreError(f"outbox {sink}: {r['tbl']} record {r['rid']} is missing from the store")
            items.append(OutboxItem(r["seq"], r["tbl"], r["rid"], record.rev, rec.to_json(record)))
        return items

    def mark_delivered(self, sink: str, items: Iterable[OutboxItem]) -> int:
        """Remove delivered records from the outbox. A record updated since it was read (higher rev)
        stays pending, so the newer version is delivered too."""
        args = [(sink, i.table, i.id, i.rev) for i in items]
        return self._outbox_update(
            "DELETE FROM outbox WHERE sink = ? AND tbl = ? AND rid = ? AND rev <= ?", args,
            f"marking {len(args)} record(s) delivered to {sink}",
        )

    def park(self, sink: str, item: OutboxItem, error: str) -> None:
        """Set a record aside that `sink` rejected for good; it stays in the outbox, counted as parked."""
        self._outbox_update(
            "UPDATE outbox SET parked = 1, attempts = attempts + 1, last_error = ? "
            "WHERE sink = ? AND tbl = ? AND rid = ? AND rev <= ?",
            [(error[:2000], sink, item.table, item.id, item.rev)],
            f"parking a {item.table} record for {sink}",
        )

    def unpark(self, sink: str) -> int:
        """Put every parked record of `sink` back in line (after the cause was fixed)."""
        return self._outbox_update(
            "UPDATE outbox SET parked = 0, last_error = NULL WHERE sink = ? AND parked = 1", [(sink,)],
            f"unparking {sink}",
        )

    def backfill(self, sink: str) -> int:
        """Queue every stored record for a sink that was added after the records were written."""
        sqls = [
            (f"INSERT INTO outbox (sink, tbl, rid, rev) SELECT ?, ?, id, rev FROM {t} WHERE true "
             "ON CONFLICT (sink, tbl, rid) DO NOTHING", [(sink, t)])
            for t in rec.TABLES
        ]
        total = 0
        for sql, args in sqls:
            total += self._outbox_update(sql, args, f"backfilling {sink}")
        return total

    def backlog(self, sink: str) -> Backlog:
        row = self._read(
            "SELECT sum(parked = 0) AS pending, sum(parked = 1) AS parked, "
            "(SELECT last_error FROM outbox WHERE sink = ?1 AND parked = 1 ORDER BY seq DESC LIMIT 1) AS err "
            "FROM outbox WHERE sink = ?1",
            (sink,), f"reading the {sink} backlog",
        )[0]
        return Backlog(int(row["pending"] or 0), int(row["parked"] or 0), row["err"])

    def _outbox_update(self, sql: str, args: list[tuple[Any, ...]], what: str) -> int:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                changed = 0
                for a in args:
                    changed += self._conn.execute(sql, a).rowcount
                self._conn.execute("COMMIT")
                return changed
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _classify(exc, what) from exc


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a store made by an older schema to this one: each pending migration in its own transaction, with its
    version stamp; skipped when another connection applied it meanwhile (read again under the write lock)."""
    for m in local_migrations.pending(version):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] < m.version:
                for statement in m.statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={m.version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _q(col: str) -> str:
    return f'"{col}"'


# JSON columns' text: json.dumps(value, sort_keys=True, separators=(",", ":")) without a new encoder per call
_JSON_TEXT = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


@dataclass(frozen=True)
class _TableSql:
    """The statements of one record table, built once (sqlite3 keeps them prepared by their text)."""

    name: str
    cols: tuple[str, ...]  # record columns in schema order, `id` first
    insert: str
    update: str  # every column but id, then the id
    select: str  # the record's columns by id
    revs: str  # (id, rev, session_id or NULL) of the ids given as one JSON array
    json_cols: tuple[int, ...]  # positions of the columns stored as JSON text
    bool_cols: tuple[int, ...]  # positions of the booleans, stored as 0/1

    def row(self, record: rec.Record) -> tuple[Any, ...]:
        """The record's SQLite values in `cols` order: rec.to_sqlite_row's, without its per-value type tests (its
        pydantic JSON dump, by the model's serializer: a Python loop over the fields costs twice as much)."""
        values = list(record.__pydantic_serializer__.to_python(record, mode="json").values())
        for i in self.json_cols:
            values[i] = _JSON_TEXT(values[i])
        for i in self.bool_cols:
            values[i] = int(values[i])
        return tuple(values)


_TABLE_SQL: dict[str, _TableSql] = {}


def _sql(table: str) -> _TableSql:
    found = _TABLE_SQL.get(table)
    if found is None:
        fields = rec.model_for(table).model_fields  # RecordInvalid for an unknown table
        cols = tuple(fields)  # model_dump's order
        assert cols[0] == "id", cols
        names = ", ".join(_q(c) for c in cols)
        found = _TableSql(
            name=table,
            cols=cols,
            insert=f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(cols))})",
            update=f"UPDATE {table} SET {', '.join(f'{_q(c)} = ?' for c in cols[1:])} WHERE id = ?",
            select=f"SELECT {names} FROM {table} WHERE id = ?",
            revs=f"SELECT id, rev, {'session_id' if 'session_id' in cols else 'NULL'} FROM {table} "
                 "WHERE id IN (SELECT value FROM json_each(?))",
            json_cols=tuple(i for i, c in enumerate(cols) if c in rec.JSON_COLUMNS),
            bool_cols=tuple(i for i, c in enumerate(cols) if fields[c].annotation is bool),
        )
        _TABLE_SQL[table] = found
    return found
