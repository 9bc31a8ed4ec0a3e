"""Outbox draining under faults: a sink down for a stretch of writes grows the backlog, which then
drains with every record exactly once in PostgreSQL; permanent rejections are parked, not dropped."""

from __future__ import annotations

import random
import socket
import uuid

import psycopg
import pytest
from pers_helpers import T0, event_record, trade_record
from postgrest_stub import PostgrestStub
from psycopg.conninfo import conninfo_to_dict

from services.persistence.backoff import BackoffPolicy
from services.persistence.drain import Drainer, drain_once
from services.persistence.sinks.postgres import PostgresSink
from services.persistence.sinks.supabase import SupabaseSink
from services.persistence.store import Store

KEY = "drain-test-key"
FAST = BackoffPolicy(base=1.0, factor=2.0, cap=8.0)


def pg_ids(dsn: str, table: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [str(r[0]) for r in conn.execute(f"SELECT id FROM {table}")]


def run_until_drained(drainer: Drainer, now: float, rng: random.Random, max_steps: int = 100) -> float:
    """Advance the (fake) clock to each due attempt until the backlog is empty."""
    for _ in range(max_steps):
        now = max(now, drainer.state.next_attempt_at)
        drainer.step(now, rng.random())
        if drainer.store.backlog(drainer.sink.name).pending == 0:
            return now
    raise AssertionError(f"not drained: {drainer.status(now)}")


@pytest.fixture
def stub(clean_pg):
    s = PostgrestStub(clean_pg, KEY).start()
    yield s
    s.stop()


def test_supabase_outage_backlog_grows_then_drains_exactly_once(tmp_path, stub, clean_pg):
    rng = random.Random(7)
    written: list[str] = []
    with Store.open(tmp_path / "s.db", sinks=("supabase",)) as store:
        drainer = Drainer(store, SupabaseSink(stub.url, KEY, timeout=2), batch_size=50, policy=FAST)
        now = 0.0
        # healthy: first 60 records go straight through
        for i in range(60):
            written.append(store.write("trades", trade_record(i)).id)
        drainer.step(now, rng.random())
        assert store.backlog("supabase").pending == 0
        # outage during 240 more writes (and events)
        stub.down = True
        backlogs = []
        for i in range(240):
            table, make = ("events", event_record) if i % 4 == 0 else ("trades", trade_record)
            written.append(store.write(table, make(i)).id)
            if i % 20 == 0:
                now += 1.0
                drainer.step(now, rng.random())
                backlogs.append(store.backlog("supabase").pending)
        assert backlogs == sorted(backlogs) and backlogs[-1] > backlogs[0]  # grows, never shrinks
        status = drainer.status(now)
        assert status["backlog"] == 240 and status["failures"] >= 2
        assert "PGRST000" in status["last_error"] and status["next_attempt_in_s"] > 0
        assert drainer.step(drainer.state.next_attempt_at - 0.01, 0.5) is None  # not due yet: no request
        # recovery
        stub.down = False
        now = run_until_drained(drainer, now, rng)
        assert drainer.status(now)["failures"] == 0
    ids = pg_ids(clean_pg, "trades") + pg_ids(clean_pg, "events")
    assert len(ids) == len(set(ids)) == len(written) == 300
    assert set(ids) == set(written)


def test_timeouts_and_5xx_mid_drain_still_exactly_once(tmp_path, stub, clean_pg):
    rng = random.Random(3)
    with Store.open(tmp_path / "s.db", sinks=("supabase",)) as store:
        written = [a.id for a in store.write_batch([("trades", trade_record(i)) for i in range(120)])]
        drainer = Drainer(store, SupabaseSink(stub.url, KEY, timeout=0.3), batch_size=40, policy=FAST)
        # 2nd batch: server writes it but answers too late; 3rd: 500; 4th: proxy 502
        stub.faults.extend([("none", None), ("slow", 0.6), ("status", 500), ("html", 502)])
        results = []
        now = 0.0
        for _ in range(20):
            now = max(now, drainer.state.next_attempt_at)
            results.append(drainer.step(now, rng.random()))
            if store.backlog("supabase").pending == 0:
                break
        errors = [r.error for r in results if r and r.error]
        assert any("timed out" in e for e in errors) and any("500" in e for e in errors)
        assert any("502" in e for e in errors)
    ids = pg_ids(clean_pg, "trades")
    assert sorted(ids) == sorted(written)  # exactly once, none lost


def test_refused_connection_grows_backlog(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with Store.open(tmp_path / "s.db", sinks=("supabase",)) as store:
        drainer = Drainer(store, SupabaseSink(f"http://127.0.0.1:{port}", KEY, timeout=1), policy=FAST)
        for i in range(5):
            store.write("events", event_record(i))
            drainer.step(float(i * 100), 0.5)
        st = drainer.status(500.0)
        assert st["backlog"] == 5 and st["failures"] == 5 and "ConnectError" in st["last_error"]


def test_postgres_outage_backlog_grows_then_drains_exactly_once(tmp_path, clean_pg, pg_server):
    dbname = conninfo_to_dict(clean_pg)["dbname"]
    rng = random.Random(11)
    written: list[str] = []
    with Store.open(tmp_path / "s.db", sinks=("postgres",)) as store:
        drainer = Drainer(store, PostgresSink(clean_pg, connect_timeout=2), batch_size=64, policy=FAST)
        for i in range(30):
            written.append(store.write("trades", trade_record(i)).id)
        drainer.step(0.0, 0.1)
        assert store.backlog("postgres").pending == 0
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,))
            try:
                now = 0.0
                for i in range(200):
                    written.append(store.write("trades", trade_record(i)).id)
                    if i % 25 == 0:
                        now += 10.0
                        drainer.step(now, rng.random())
                st = drainer.status(now)
                assert st["backlog"] == 200 and st["failures"] >= 3, st
                assert "OperationalError" in st["last_error"]
            finally:
                admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        run_until_drained(drainer, now, rng)
        drainer.sink.close()
    ids = pg_ids(clean_pg, "trades")
    assert len(ids) == len(set(ids)) == 230 and set(ids) == set(written)


def test_permanent_rejection_parks_only_the_bad_record(tmp_path, clean_pg):
    sink = PostgresSink(clean_pg)
    sink_id = uuid.uuid4()
    # a session row with the same short session_id already exists remotely under another id
    with psycopg.connect(clean_pg, autocommit=True) as conn:
        conn.execute("INSERT INTO sessions (id, session_id, start_time) VALUES (%s, 'clash001', now())",
                     (sink_id,))
    with Store.open(tmp_path / "s.db", sinks=("postgres",)) as store:
        good = [store.write("events", event_record(i)).id for i in range(7)]
        bad = store.write("sessions", {"id": uuid.uuid4(), "session_id": "clash001", "start_time": T0}).id
        good += [store.write("events", event_record(i)).id for i in range(8)]
        result = drain_once(store, sink, batch_size=100)
        assert (result.delivered, result.parked, result.error) == (15, 1, None)
        b = store.backlog("postgres")
        assert (b.pending, b.parked) == (0, 1) and "23505" in b.last_error
        assert store.get("sessions", bad) is not None  # kept locally
        # an operator fixes the remote side, unparks, and it goes through
        with psycopg.connect(clean_pg, autocommit=True) as conn:
            conn.execute("DELETE FROM sessions WHERE id = %s", (sink_id,))
        assert store.unpark("postgres") == 1
        assert drain_once(store, sink).delivered == 1
    sink.close()
    assert set(pg_ids(clean_pg, "events")) == set(good)
    assert pg_ids(clean_pg, "sessions") == [bad]
