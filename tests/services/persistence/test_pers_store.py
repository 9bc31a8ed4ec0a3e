"""The local SQLite store: durability settings, idempotent versioned writes, batches, outbox, queries."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import timedelta

import pytest
from pers_helpers import T0, event_record, trade_record

from common.records import schema as rec
from services.persistence.sessions import EndReason
from services.persistence.store import Store, StoreError


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "store.sqlite3", sinks=("supabase", "postgres"))
    yield s
    s.close()


def test_wal_with_normal_sync_by_default_and_full_on_request(tmp_path):
    with Store.open(tmp_path / "s.db") as s:
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: kill -9 safe
    with Store.open(tmp_path / "s.db", synchronous="FULL") as s:
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: power-cut safe
    with pytest.raises(StoreError, match="synchronous"):
        Store.open(tmp_path / "s.db", synchronous="OFF")  # type: ignore[arg-type]


def test_a_checkpoint_copies_the_wal_into_the_database(tmp_path):
    path = tmp_path / "s.db"
    with Store.open(path) as s:
        records = [trade_record(i) for i in range(20)]
        s.write_batch([("trades", r) for r in records])
        assert s.checkpoint() > 0  # the WAL's frames, all copied (no reader holds them)
        db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)  # the database file alone, no WAL read
        try:
            assert {r[0] for r in db.execute("SELECT id FROM trades")} == {r["id"] for r in records}
        finally:
            db.close()


def test_write_then_read_back(store):
    r = trade_record(1)
    ack = store.write("trades", r)
    assert (ack.status, ack.ok, ack.id) == ("stored", True, r["id"])
    got = store.get("trades", r["id"])
    assert got == rec.validate("trades", r)
    assert store.count("trades") == 1


def test_same_id_twice_is_a_duplicate_noop(store):
    r = trade_record()
    assert store.write("trades", r).status == "stored"
    assert store.write("trades", dict(r)).status == "duplicate"
    assert store.count("trades") == 1
    assert store.backlog("supabase").pending == 1


def test_different_payload_same_id_and_rev_is_a_reported_conflict(store):
    r = trade_record()
    store.write("trades", r)
    ack = store.write("trades", {**r, "pnl": -5.0, "comment": "x"})
    assert ack.status == "conflict" and not ack.ok
    assert set(ack.fields) == {"pnl", "comment"}
    assert store.get("trades", r["id"]).pnl == r["pnl"]  # not overwritten


def test_higher_rev_updates_lower_rev_is_stale(store):
    r = trade_record()
    store.write("trades", r)
    assert store.write("trades", {**r, "rev": 2, "pnl": 1.0}).status == "updated"
    assert store.write("trades", {**r, "rev": 1, "pnl": 99.0}).status == "stale"
    assert store.get("trades", r["id"]).pnl == 1.0
    items = store.pending("supabase")
    assert [(i.id, i.rev) for i in items] == [(r["id"], 2)]


def test_invalid_record_names_table_and_field_and_writes_nothing(store):
    good = trade_record()
    bad = trade_record(direction=5)
    with pytest.raises(rec.RecordInvalid, match=r"batch item 1: invalid trades record: trades.direction"):
        store.write_batch([("trades", good), ("trades", bad)])
    assert store.count("trades") == 0
    with pytest.raises(rec.RecordInvalid, match=r"events.timestamp: .*timezone-aware"):
        store.write("events", event_record(timestamp=T0.replace(tzinfo=None)))
    with pytest.raises(rec.RecordInvalid, match=r"events.bogus: Extra inputs"):
        store.write("events", event_record(bogus=1))
    with pytest.raises(rec.RecordInvalid, match=r"unknown table"):
        store.write("nope", {"id": str(uuid.uuid4())})
    with pytest.raises(rec.RecordInvalid, match=r"trades.id"):
        store.write("trades", trade_record(id="not-a-uuid"))


def test_batch_is_one_transaction_with_per_item_acks(store):
    existing = trade_record()
    store.write("trades", existing)
    batch = [("trades", trade_record(i)) for i in range(50)] + [("trades", existing),
                                                               ("events", event_record())]
    acks = store.write_batch(batch)
    assert [a.status for a in acks] == ["stored"] * 50 + ["duplicate", "stored"]
    assert store.count("trades") == 51 and store.count("events") == 1


def test_copies_of_one_id_in_a_batch_are_judged_against_the_earlier_copy(store):
    first = trade_record(1)
    newer = {**first, "rev": 1, "pnl": 2.5}
    differing = {**first, "comment": "another writer"}
    acks = store.write_batch([("trades", first), ("trades", first), ("trades", differing), ("trades", newer),
                              ("trades", first), ("trades", newer)])
    assert [a.status for a in acks] == ["stored", "duplicate", "conflict", "updated", "stale", "duplicate"]
    assert acks[2].fields == ("comment",)
    assert store.count("trades") == 1 and store.get("trades", first["id"]).pnl == 2.5
    assert [(i.id, i.rev) for i in store.pending("supabase")] == [(first["id"], 1)]
    # and against the stored row in the next batch
    again = store.write_batch([("trades", newer), ("trades", {**newer, "comment": "x"}), ("trades", first)])
    assert [a.status for a in again] == ["duplicate", "conflict", "stale"]


def test_a_filled_in_session_gives_way_to_the_stored_copys(store):
    """The server fills in a missing session_id; a copy of the record stored already (before the batch) with a
    session keeps that one, so a sender's retry is a duplicate; so does a copy stored without one (an event written
    before the session started, its sender's retry after: answered conflict, the sender dropped it as refused)."""
    old = trade_record(1, session_id="oldsess1")
    event = event_record(2, session_id=None)
    store.write_batch([("trades", old), ("events", event)])
    retry, new = {**old, "session_id": "cur00001"}, trade_record(3, session_id="cur00001")
    event_again = {**event, "session_id": "cur00001"}
    acks = store.write_batch([("trades", retry), ("trades", new), ("events", event_again)],
                             keep_stored_session={0, 1, 2})
    assert [a.status for a in acks] == ["duplicate", "stored", "duplicate"]
    assert store.get("trades", old["id"]).session_id == "oldsess1"
    assert store.get("events", event["id"]).session_id is None
    assert store.get("trades", new["id"]).session_id == "cur00001"
    # not filled in (the sender gave it): judged as it is
    assert store.write_batch([("trades", retry)])[0].status == "conflict"
    newer = store.write_batch([("trades", {**retry, "rev": 1, "pnl": 1.0})], keep_stored_session={0})
    assert newer[0].status == "updated" and store.get("trades", old["id"]).session_id == "oldsess1"


def test_session_ids_of_stored_records(store):
    a, b = trade_record(1), trade_record(2)
    store.write_batch([("trades", a), ("trades", {**b, "session_id": "s2"})])
    assert store.session_ids("trades", [a["id"], b["id"], str(uuid.uuid4())]) == {a["id"]: a["session_id"],
                                                                                b["id"]: "s2"}
    assert store.session_ids("trades", []) == {}


def test_outbox_per_sink_in_write_order_and_delivery(store):
    ids = [store.write("trades", trade_record(i)).id for i in range(5)]
    ev = store.write("events", event_record()).id
    items = store.pending("supabase", limit=10)
    assert [i.id for i in items] == ids + [ev]
    assert items[0].record["timestamp"].endswith("Z") and items[-1].record["data"]["service"] == "preditor"
    assert store.mark_delivered("supabase", items[:3]) == 3
    assert store.backlog("supabase").pending == 3
    assert store.backlog("postgres").pending == 6  # other sink untouched


def test_update_while_in_flight_keeps_newer_version_pending(store):
    r = trade_record()
    store.write("trades", r)
    [item] = store.pending("supabase")
    store.write("trades", {**r, "rev": 1, "pnl": 0.5})  # changed after the drain read it
    store.mark_delivered("supabase", [item])  # delivers rev 0 only
    [again] = store.pending("supabase")
    assert (again.rev, again.record["pnl"]) == (1, 0.5)


def test_park_and_unpark(store):
    store.write("trades", trade_record())
    [item] = store.pending("supabase")
    store.park("supabase", item, "23505 duplicate key")
    assert store.pending("supabase") == []
    b = store.backlog("supabase")
    assert (b.pending, b.parked, b.last_error) == (0, 1, "23505 duplicate key")
    assert store.unpark("supabase") == 1
    assert len(store.pending("supabase")) == 1


def test_backfill_new_sink(tmp_path):
    path = tmp_path / "s.db"
    with Store.open(path) as s:
        for i in range(3):
            s.write("trades", trade_record(i))
    with Store.open(path, sinks=("postgres",)) as s:
        assert s.backlog("postgres").pending == 0
        assert s.backfill("postgres") == 3
        assert s.backfill("postgres") == 0
        assert s.backlog("postgres").pending == 3


def test_query_filters_and_order(store):
    for i in range(6):
        store.write("trades", trade_record(i, symbol="EURUSD" if i < 4 else "GBPUSD",
                                           timestamp=T0 + timedelta(minutes=i)))
    eur = store.query("trades", symbol="EURUSD")
    assert [t.timestamp for t in eur] == [T0 + timedelta(minutes=i) for i in (3, 2, 1, 0)]
    assert len(store.query("trades", is_paper=True)) == 3
    assert len(store.query("trades", since=T0 + timedelta(minutes=4))) == 2
    assert len(store.query("trades", limit=2, newest_first=False)) == 2
    n, pnl = store.trade_totals("abcd1234", is_paper=False)
    assert (n, pnl) == (3, 12.0 * 3 + 0 + 2 + 4)
    with pytest.raises(rec.RecordInvalid, match="sessions.symbol"):
        store.query("sessions", symbol="EURUSD")


def test_second_store_on_same_file_reads_while_first_writes(tmp_path):
    path = tmp_path / "s.db"
    with Store.open(path, sinks=("x",)) as a, Store.open(path, sinks=("x",)) as b:
        a.write("trades", trade_record())
        assert b.backlog("x").pending == 1
        b.mark_delivered("x", b.pending("x"))
        assert a.backlog("x").pending == 0


def test_records_survive_reopen(tmp_path):
    path = tmp_path / "s.db"
    r = event_record()
    with Store.open(path) as s:
        s.write("events", r)
    with Store.open(path) as s:
        assert s.get("events", r["id"]).data == r["data"]
        assert s.integrity_check() == "ok"
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT data FROM events").fetchone()[0] == '{"n":0,"service":"preditor"}'
    raw.close()


def test_newer_store_schema_is_refused(tmp_path):
    path = tmp_path / "s.db"
    Store.open(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version=99")
    raw.close()
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        Store.open(path)


def test_persistence_modules_stay_light():
    """The persistence process must not pull in torch, numpy or the like (supabase only when enabled)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; import services.persistence.store, services.persistence.worker, "
            "services.persistence.sessions, common.records.trades, services.persistence.sinks.factory, "
            "services.persistence.sinks.postgres, services.persistence.report; "
            "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'hmmlearn', 'supabase') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_stored_rows_are_the_records_sqlite_form_in_every_table(store):
    """The store builds its rows itself (once per table: which columns are JSON text and booleans); they must be
    exactly common.records' SQLite form."""
    records = {
        "sessions": {"id": str(uuid.uuid4()), "session_id": "s0000001", "start_time": T0,
                     "symbols": ["EURUSD", "GBPUSD"]},
        "trades": trade_record(1),
        "events": event_record(1, data={"b": [1, 2.5, None], "a": {"z": True}}),
        "session_heartbeats": {"id": str(uuid.uuid4()), "session_id": "s0000001", "timestamp": T0, "data": {"pid": 7}},
        "signals": {"id": str(uuid.uuid4()), "timestamp": T0, "bar_time": T0 - timedelta(hours=1), "symbol": "EURUSD",
                    "action": "SHORT", "direction": -1, "data": {"p": 0.25}},
        "acks": {"id": str(uuid.uuid4()), "timestamp": T0, "symbol": "EURUSD", "decision": "ORDER", "price": 1.1},
    }
    full = {  # every column given, and JSON that is more than JSON's types (through pydantic's JSON dump)
        "sessions": {**records["sessions"], "id": str(uuid.uuid4()), "session_id": "s0000002", "end_time": T0,
                     "initial_balance": 1000, "final_balance": 1010.5, "total_trades": 3, "total_pnl": -1.25,
                     "status": "STOPPED", "end_reason": EndReason.DAY_CHANGE, "recovered_count": 1, "rev": 2},
        "trades": trade_record(2, is_paper=True, bar_time=T0, trade_id="t1", comment="c", position_id="9",
                               client_order_id="o", swap=-0.5, pnl=3),
        "events": event_record(2, session_id=None, data={"t": (1, 2), "when": T0, "u": uuid.UUID(int=5),
                                                         "nested": {"inf": float("inf"), "k": [b"x"]}}),
        "session_heartbeats": {"id": str(uuid.uuid4()), "session_id": "s0000002", "timestamp": T0,
                               "system_state": "RUNNING", "balance": 1.5, "equity": 2, "open_positions": 3,
                               "backlog": 0, "data": '{"pid": 8, "z": [1]}'},
        "signals": {**records["signals"], "id": str(uuid.uuid4()), "session_id": "s", "timeframe": "M1",
                    "hmm_state": 2, "seq": 7, "src_epoch": "e", "intensity": 3, "data": {"big": 2**70}},
        "acks": {**records["acks"], "id": str(uuid.uuid4()), "bar_time": T0, "signal_id": str(uuid.uuid4()),
                 "signal_seq": 4, "status": "FILLED", "client_order_id": "o", "position_id": "p", "volume": 1,
                 "latency_ms": 0.5, "reason": "r", "data": {"a": None}},
    }
    assert set(records) == set(full) == set(rec.TABLES)
    raw = sqlite3.connect(store.path)
    raw.row_factory = sqlite3.Row
    for table, record in [*records.items(), *full.items()]:
        assert store.write(table, record).status == "stored"
        want = rec.to_sqlite_row(rec.validate(table, record))
        got = raw.execute(f"SELECT * FROM {table} WHERE id = ?", (record["id"],)).fetchone()
        assert {c: got[c] for c in want} == want, table
        assert {c: type(got[c]) for c in want} == {c: type(v) for c, v in want.items()}, table
        assert store.write(table, record).status == "duplicate"
    raw.close()
