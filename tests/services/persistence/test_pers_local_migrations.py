"""The local store's migrations: a store made by main's first schema (local_schema_v1.sql, a frozen copy) opens,
migrates and keeps its rows, its dedupe and its outbox; a migrated store has a new store's schema; the indexes
left serve every query the store makes on its own."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from pers_helpers import T0, event_record, trade_record

from common.records import schema as rec
from services.persistence import local_migrations
from services.persistence.store import SCHEMA_VERSION, Store, _sql

V1_SCHEMA = Path(__file__).with_name("local_schema_v1.sql")
DROPPED = {"signals_symbol_bar_idx", "acks_symbol_bar_idx", "acks_signal_idx"}


def signal_record(i: int) -> dict[str, object]:
    return {"id": str(uuid.uuid4()), "session_id": "abcd1234", "timestamp": T0, "bar_time": T0,
            "symbol": f"SYM{i:02d}", "action": "LONG", "direction": 1, "intensity": 2, "data": {"close": 1.1}}


def ack_record(i: int, signal_id: str) -> dict[str, object]:
    return {"id": str(uuid.uuid4()), "session_id": "abcd1234", "timestamp": T0, "symbol": f"SYM{i:02d}",
            "bar_time": T0, "signal_id": signal_id, "decision": "HOLD", "status": "OK", "data": {"d": i}}


def session_record() -> dict[str, object]:
    return {"id": str(uuid.uuid4()), "session_id": "abcd1234", "start_time": T0, "symbols": ["EURUSD"]}


def old_store(path: Path, records: list[tuple[str, dict]], sink: str) -> None:
    """A store as main made it: its schema, version 1, rows and their outbox lines written with plain SQL."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(V1_SCHEMA.read_text())
    conn.execute("PRAGMA user_version=1")
    with conn:
        for table, r in records:
            conn.execute(_sql(table).insert, _sql(table).row(rec.validate(table, r)))
            conn.execute("INSERT INTO outbox (sink, tbl, rid, rev) VALUES (?, ?, ?, 0)", (sink, table, r["id"]))
    conn.close()


def schema_of(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT type, name, coalesce(sql, '') FROM sqlite_master"))
    finally:
        conn.close()


@pytest.fixture
def records() -> list[tuple[str, dict]]:
    signals = [signal_record(i) for i in range(5)]
    return ([("sessions", session_record())] + [("signals", s) for s in signals]
            + [("acks", ack_record(i, str(s["id"]))) for i, s in enumerate(signals)]
            + [("trades", trade_record(i)) for i in range(4)] + [("events", event_record(i)) for i in range(3)])


def test_a_store_of_the_first_schema_migrates_and_keeps_its_rows(tmp_path, records):
    path = tmp_path / "old.db"
    old_store(path, records, "supabase")
    assert {name for _, name, _ in schema_of(path)} >= DROPPED
    with Store.open(path, sinks=("supabase",)) as s:
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        for table, r in records:
            assert s.get(table, str(r["id"])) == rec.validate(table, r), table
        assert s.count("signals") == 5 and s.count("acks") == 5 and s.count("trades") == 4
        assert s.integrity_check() == "ok"
        # dedupe by id as before: each record sent again is a duplicate, a changed one a conflict
        again = s.write_batch(records)
        assert {a.status for a in again} == {"duplicate"}
        table, first = records[1]
        assert s.write(table, {**first, "intensity": 3}).status == "conflict"
        # the outbox lines written before the migration are still pending, in their order
        pending = s.pending("supabase")
        assert [(i.table, i.id) for i in pending] == [(t, str(r["id"])) for t, r in records]
        fresh = signal_record(9)
        assert s.write("signals", fresh).status == "stored"
    assert not DROPPED & {name for _, name, _ in schema_of(path)}
    new = tmp_path / "new.db"
    Store.open(new).close()
    assert schema_of(path) == schema_of(new)  # a migrated store is a new store's twin


def test_a_migrated_store_opens_again_unchanged(tmp_path, records):
    path = tmp_path / "old.db"
    old_store(path, records, "x")
    Store.open(path).close()
    before = schema_of(path)
    with Store.open(path) as s:
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.count("signals") == 5
    assert schema_of(path) == before


def test_a_migration_that_fails_leaves_the_store_as_it_was(tmp_path, records, monkeypatch):
    path = tmp_path / "old.db"
    old_store(path, records, "x")
    broken = local_migrations.LocalMigration(2, "test", ("DROP INDEX signals_symbol_bar_idx", "DROP INDEX no_such"))
    monkeypatch.setattr(local_migrations, "MIGRATIONS", (broken,))
    with pytest.raises(Exception, match="no_such"):
        Store.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'signals_symbol_bar_idx'").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM signals").fetchone()[0] == 5
    conn.close()


def test_pending_is_pure():
    assert [m.version for m in local_migrations.pending(0)] == [2]  # tables at version 0: the first schema's
    assert [m.version for m in local_migrations.pending(1)] == [2]
    assert local_migrations.pending(SCHEMA_VERSION) == []


def test_the_store_reads_through_an_index(tmp_path, records):
    """Every read the service makes on its own (the write path's revs, sessions, totals, ledger, heartbeats, the
    outbox, the query op's session filter of the web page) finds its rows through an index: none scans a table."""
    with Store.open(tmp_path / "s.db", sinks=("x",)) as s:
        s.write_batch(records)
        seen: list[str] = []
        s._conn.set_trace_callback(seen.append)
        s.write_batch([("signals", signal_record(7)), ("acks", ack_record(7, str(records[1][1]["id"]))),
                       ("trades", trade_record(7))])
        s.running_session()
        s.last_heartbeat("abcd1234")
        s.trade_totals("abcd1234", is_paper=False)
        s.trade_ledger("abcd1234")
        s.trade_rows([str(records[-4][1]["id"])])
        s.session_ids("trades", [str(records[-4][1]["id"])])
        for table in ("signals", "acks", "trades", "events"):
            s.query(table, session_id="abcd1234", limit=10)
        s.query("trades", is_paper=False, limit=10)
        s.query("events", event_type="WATCHDOG_RESTART", limit=10)
        s.pending("x")
        s._conn.set_trace_callback(None)
        reads = [q for q in seen if q.lstrip().upper().startswith("SELECT")]
        assert len(reads) >= 14
        tables = (*rec.TABLES, "outbox")
        for q in reads:
            plan = [r[3] for r in s._conn.execute("EXPLAIN QUERY PLAN " + q)]
            scans = [d for d in plan if d.split(" ")[0] == "SCAN" and d.split(" ")[1] in tables and "USING" not in d]
            assert not scans, (q, plan)
