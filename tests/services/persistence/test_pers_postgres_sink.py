"""The PostgreSQL sink against the real server: upsert on id guarded by rev, permanent vs retriable."""

from __future__ import annotations

import socket
import uuid

import psycopg
import pytest
from pers_helpers import T0, event_record, trade_record

from common.records import schema as rec
from services.persistence.sinks import Batch, SinkPermanent, SinkRetriable
from services.persistence.sinks.factory import build_sinks
from services.persistence.sinks.postgres import PostgresSink


def batch(table: str, raw: list[dict]) -> Batch:
    return Batch(table, [rec.to_json(rec.validate(table, r)) for r in raw])


def rows(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def sink(clean_pg):
    s = PostgresSink(clean_pg)
    yield s
    s.close()


def test_push_writes_every_table_with_types(sink, clean_pg):
    sid = uuid.uuid4()
    sink.push(batch("sessions", [{"id": sid, "session_id": sid.hex[:8], "start_time": T0,
                                  "symbols": ["EURUSD"], "initial_balance": 10_000.0}]))
    trades = [trade_record(i) for i in range(10)]
    assert sink.push(batch("trades", trades)) == [t["id"] for t in trades]
    sink.push(batch("events", [event_record()]))
    sink.push(batch("session_heartbeats", [{"id": uuid.uuid4(), "session_id": "abcd1234", "timestamp": T0,
                                            "balance": 1.5, "data": {"rss": 40}}]))
    sink.push(batch("signals", [{"id": uuid.uuid4(), "timestamp": T0, "bar_time": T0, "symbol": "EURUSD",
                                 "action": "LONG", "direction": 1, "intensity": 2, "seq": 7}]))
    sink.push(batch("acks", [{"id": uuid.uuid4(), "timestamp": T0, "symbol": "EURUSD", "decision": "OPEN",
                              "signal_id": uuid.uuid4(), "latency_ms": 3.5}]))
    assert rows(clean_pg, "SELECT symbols, initial_balance FROM sessions") == [(["EURUSD"], 10_000.0)]
    assert rows(clean_pg, "SELECT count(*), sum(pnl) FROM trades") == [(10, sum(t["pnl"] for t in trades))]
    assert rows(clean_pg, "SELECT data->>'service', \"timestamp\" FROM events") == [("preditor", T0)]
    for table in ("session_heartbeats", "signals", "acks"):
        assert rows(clean_pg, f"SELECT count(*) FROM {table}") == [(1,)]


def test_repush_is_noop_and_rev_guards_order(sink, clean_pg):
    r = trade_record()
    sink.push(batch("trades", [r]))
    sink.push(batch("trades", [r]))
    sink.push(batch("trades", [{**r, "rev": 2, "pnl": 2.0}]))
    sink.push(batch("trades", [{**r, "rev": 1, "pnl": 1.0}]))  # older version arrives late: ignored
    assert rows(clean_pg, "SELECT rev, pnl FROM trades") == [(2, 2.0)]


def test_constraint_violation_is_permanent(sink):
    sink.push(batch("sessions", [{"id": uuid.uuid4(), "session_id": "dupe0001", "start_time": T0}]))
    with pytest.raises(SinkPermanent, match="UniqueViolation 23505"):
        sink.push(batch("sessions", [{"id": uuid.uuid4(), "session_id": "dupe0001", "start_time": T0}]))
    sink.push(batch("events", [event_record()]))  # the connection is still usable


def test_refused_connection_is_retriable():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sink = PostgresSink(f"host=127.0.0.1 port={port} dbname=x user=postgres", connect_timeout=2)
    with pytest.raises(SinkRetriable, match="OperationalError"):
        sink.push(batch("events", [event_record()]))


def test_server_side_disconnect_is_retriable_then_reconnects(sink, clean_pg):
    sink.push(batch("events", [event_record()]))
    with psycopg.connect(clean_pg, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    r = event_record(1)
    with pytest.raises(SinkRetriable):
        sink.push(batch("events", [r]))
    assert sink.push(batch("events", [r])) == [r["id"]]
    assert rows(clean_pg, "SELECT count(*) FROM events") == [(2,)]


def test_factory_builds_postgres_sink(clean_pg):
    [s] = build_sinks({"postgres": {"enabled": True, "dsn": clean_pg}}, env={})
    assert s.name == "postgres"
    assert s.push(batch("events", [event_record()]))
    s.close()
