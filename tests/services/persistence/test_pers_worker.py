"""The drain thread: delivers what the service writes, rides out an outage, flushes at stop."""

from __future__ import annotations

import time

import psycopg
import pytest
from pers_helpers import trade_record
from postgrest_stub import PostgrestStub

from services.persistence.backoff import BackoffPolicy
from services.persistence.sinks.postgres import PostgresSink
from services.persistence.sinks.supabase import SupabaseSink
from services.persistence.store import Store
from services.persistence.worker import DrainWorker

KEY = "worker-key"


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def count(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT id) FROM trades").fetchone()


@pytest.fixture
def stub(clean_pg):
    s = PostgrestStub(clean_pg, KEY).start()
    yield s
    s.stop()


def test_worker_delivers_survives_outage_and_flushes(tmp_path, stub, clean_pg):
    db = tmp_path / "s.db"
    sinks = [SupabaseSink(stub.url, KEY), PostgresSink(clean_pg)]
    with Store.open(db, sinks=[s.name for s in sinks]) as store:
        worker = DrainWorker(db, sinks, policy=BackoffPolicy(base=0.05, cap=0.2), idle_s=0.5)
        assert worker.backlog() is None  # not measured yet: not taken for an empty backlog
        worker.start()
        try:
            for i in range(50):
                store.write("trades", trade_record(i))
            worker.wake()
            # the status is a snapshot taken after a pass: what each sink delivered says both are done (a backlog
            # of 0 may have been measured before the last records were written)
            assert wait_for(lambda: [s.get("delivered") for s in worker.status()] == [50, 50])
            assert count(clean_pg) == (50, 50) and worker.backlog() == 0
            stub.down = True
            for i in range(50):
                store.write("trades", trade_record(i))
            worker.wake()
            assert wait_for(lambda: [s["backlog"] for s in worker.status()] == [50, 0])
            assert wait_for(lambda: (worker.status()[0]["failures"] or 0) >= 2)
            assert "PGRST000" in worker.status()[0]["last_error"]
            stub.down = False
        finally:
            final = worker.stop(flush_s=5)
    assert worker.error is None
    assert [s["backlog"] for s in final] == [0, 0]
    assert count(clean_pg) == (100, 100)  # both sinks write the same table: still once per id
