"""The Supabase sink over real HTTP (supabase-py) against the PostgREST-compatible stub backed by the
real PostgreSQL server: upsert on id, 409, 5xx, timeouts, refused connections, missing credentials."""

from __future__ import annotations

import socket
import uuid

import httpx
import psycopg
import pytest
from pers_helpers import T0, event_record, trade_record
from postgrest_stub import PostgrestStub
from supabase import ClientOptions, create_client

from common.records import schema as rec
from services.persistence.sinks import Batch, SinkConfigError, SinkPermanent, SinkRetriable
from services.persistence.sinks.factory import build_sinks
from services.persistence.sinks.supabase import SupabaseSink, credentials_from_env

KEY = "test-service-role-key"


@pytest.fixture
def stub(clean_pg):
    s = PostgrestStub(clean_pg, KEY).start()
    yield s
    s.stop()


def batch(table: str, raw: list[dict]) -> Batch:
    return Batch(table, [rec.to_json(rec.validate(table, r)) for r in raw])


def pg_rows(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_stub_speaks_what_supabase_py_sends(stub):
    """The stub itself: insert (return=representation), upsert with ignore-duplicates, a real 409."""
    client = create_client(stub.url, KEY, options=ClientOptions(httpx_client=httpx.Client(timeout=5)))
    row = rec.to_json(rec.validate("events", event_record()))
    res = client.table("events").insert(row).execute()
    assert res.data[0]["id"] == row["id"] and res.data[0]["data"] == row["data"]
    req = stub.requests[-1]
    assert req["path"] == "/rest/v1/events" and "return=representation" in req["headers"]["prefer"]
    assert req["headers"]["apikey"] == KEY and req["headers"]["authorization"] == f"Bearer {KEY}"
    res = client.table("events").upsert([{**row, "message": "changed"}], on_conflict="id",
                                         ignore_duplicates=True).execute()
    assert "resolution=ignore-duplicates" in stub.requests[-1]["headers"]["prefer"]
    assert res.data == []  # ignored
    with pytest.raises(Exception) as err:
        client.table("events").insert(row).execute()
    assert getattr(err.value, "code", None) == "23505"


def test_upsert_batch_lands_once_with_types(stub, clean_pg):
    sink = SupabaseSink(stub.url, KEY, timeout=5)
    trades = [trade_record(i) for i in range(20)]
    b = batch("trades", trades)
    assert sink.push(b) == [t["id"] for t in trades]
    assert sink.push(b) == b.ids  # retry with the same ids: a no-op
    req = stub.requests[-1]
    assert req["query"]["on_conflict"] == "id"
    assert set(req["query"]["columns"].replace('"', "").split(",")) == set(rec.columns("trades"))
    assert "resolution=merge-duplicates" in req["headers"]["prefer"]
    assert "return=minimal" in req["headers"]["prefer"]
    rows = pg_rows(clean_pg, "SELECT count(*), count(DISTINCT id), sum(pnl) FROM trades")
    assert rows == [(20, 20, sum(t["pnl"] for t in trades))]
    [(ts, paper)] = pg_rows(clean_pg, f"SELECT \"timestamp\", is_paper FROM trades WHERE id = '{trades[1]['id']}'")
    assert ts == T0.replace(minute=1) and paper is True


def test_session_update_by_higher_rev(stub, clean_pg):
    sink = SupabaseSink(stub.url, KEY, timeout=5)
    sid = uuid.uuid4()
    start = {"id": sid, "session_id": sid.hex[:8], "start_time": T0, "symbols": ["EURUSD", "GBPUSD"]}
    sink.push(batch("sessions", [start]))
    sink.push(batch("sessions", [{**start, "rev": 1, "status": "STOPPED", "end_reason": "NORMAL",
                                  "end_time": T0, "total_trades": 3}]))
    assert pg_rows(clean_pg, "SELECT rev, status, end_reason, total_trades, symbols FROM sessions") == [
        (1, "STOPPED", "NORMAL", 3, ["EURUSD", "GBPUSD"])]


def test_409_unique_violation_is_permanent(stub):
    sink = SupabaseSink(stub.url, KEY, timeout=5)
    a, b = uuid.uuid4(), uuid.uuid4()
    sink.push(batch("sessions", [{"id": a, "session_id": "samesame", "start_time": T0}]))
    with pytest.raises(SinkPermanent, match="23505"):
        sink.push(batch("sessions", [{"id": b, "session_id": "samesame", "start_time": T0}]))


@pytest.mark.parametrize("fault", [("status", 503), ("status", 500), ("html", 502), ("status", 504)])
def test_5xx_is_retriable_and_nothing_is_written(stub, clean_pg, fault):
    sink = SupabaseSink(stub.url, KEY, timeout=5)
    stub.faults.append(fault)
    b = batch("events", [event_record()])
    with pytest.raises(SinkRetriable, match=str(fault[1])):
        sink.push(b)
    assert pg_rows(clean_pg, "SELECT count(*) FROM events") == [(0,)]
    assert sink.push(b) == b.ids  # next attempt goes through
    assert pg_rows(clean_pg, "SELECT count(*) FROM events") == [(1,)]


def test_timeout_is_retriable_and_retry_is_exactly_once(stub, clean_pg):
    sink = SupabaseSink(stub.url, KEY, timeout=0.3)
    stub.faults.append(("slow", 0.8))  # the server still writes after the client gave up
    b = batch("trades", [trade_record(i) for i in range(5)])
    with pytest.raises(SinkRetriable, match="timed out"):
        sink.push(b)
    assert sink.push(b) == b.ids
    assert pg_rows(clean_pg, "SELECT count(*), count(DISTINCT id) FROM trades") == [(5, 5)]


def test_refused_connection_is_retriable():
    sink = SupabaseSink(f"http://127.0.0.1:{closed_port()}", KEY, timeout=2)
    with pytest.raises(SinkRetriable, match="ConnectError"):
        sink.push(batch("events", [event_record()]))


def test_wrong_key_is_retriable_and_says_so(stub):
    sink = SupabaseSink(stub.url, "wrong", timeout=5)
    with pytest.raises(SinkRetriable, match="PGRST301"):
        sink.push(batch("events", [event_record()]))


def test_missing_credentials_name_the_variable():
    with pytest.raises(SinkConfigError, match="SUPABASE_KEY"):
        credentials_from_env({"SUPABASE_URL": "http://x"})
    with pytest.raises(SinkConfigError, match="SUPABASE_URL, SUPABASE_KEY"):
        SupabaseSink.from_env({})
    with pytest.raises(SinkConfigError, match="SUPABASE_URL"):
        build_sinks({"supabase": {"enabled": True}}, env={"SUPABASE_KEY": "k", "SUPABASE_URL": " "})
    assert build_sinks({}, env={}) == []
    [s] = build_sinks({"supabase": {"enabled": True, "timeout_s": 3}}, env={"SUPABASE_URL": "http://h",
                                                                              "SUPABASE_KEY": "k"})
    assert s.name == "supabase"
    with pytest.raises(SinkConfigError, match="persistence.sinks.postgres.dsn"):
        build_sinks({"postgres": {"enabled": True}}, env={})
    with pytest.raises(SinkConfigError, match="persistence.sinks.supabase.timeout"):
        build_sinks({"supabase": {"timeout": 3}}, env={})
