"""Faults of the local store: a crash (kill -9) while writing, a full disk, a locked database."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pers_helpers import trade_record

from services.persistence.store import Store, StoreBusy, StoreFull

REPO = Path(__file__).resolve().parents[3]
WRITER = Path(__file__).with_name("pers_crash_writer.py")


def _outbox_consistent(store: Store, sink: str) -> None:
    """Every stored trade is either delivered or pending exactly once in the sink's outbox."""
    rows = store._conn.execute(
        "SELECT count(*) FROM trades t LEFT JOIN outbox o ON o.sink = ? AND o.tbl = 'trades' AND o.rid = t.id "
        "WHERE o.rid IS NULL", (sink,)
    ).fetchone()[0]
    assert rows == 0


@pytest.mark.parametrize("kill_after", [200, 1500])
def test_kill_9_while_writing_loses_no_acknowledged_record(tmp_path, kill_after):
    db = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(WRITER), str(db)], stdout=subprocess.PIPE, env=env,
                            cwd=REPO, text=True)
    acked: list[str] = []
    deadline = time.monotonic() + 30
    try:
        assert proc.stdout is not None
        while len(acked) < kill_after and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked.append(line.split()[0])
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert len(acked) >= kill_after, "writer stopped early"
    assert proc.returncode == -signal.SIGKILL
    with Store.open(db, sinks=("supabase",)) as store:
        assert store.integrity_check() == "ok"
        ids = [r[0] for r in store._conn.execute("SELECT id FROM trades")]
        assert len(ids) == len(set(ids))  # none duplicated
        missing = set(acked) - set(ids)
        assert not missing, f"{len(missing)} acknowledged records lost"
        _outbox_consistent(store, "supabase")
        assert store.backlog("supabase").pending == len(ids)


def test_full_disk_raises_clear_error_and_keeps_store_consistent(tmp_path):
    db = tmp_path / "small.db"
    acked: list[str] = []
    with Store.open(db, sinks=("supabase",), max_bytes=256 * 1024) as store:
        with pytest.raises(StoreFull, match=r"writing 20 record\(s\) to trades: database or disk is full"):
            for i in range(10_000):
                batch = [("trades", trade_record(i, comment="x" * 200)) for _ in range(20)]
                acked += [a.id for a in store.write_batch(batch)]
        assert acked, "the limit should allow some writes first"
        # still usable: reads work, the failed batch left nothing behind
        assert store.count("trades") == len(acked)
        assert store.integrity_check() == "ok"
    with Store.open(db, sinks=("supabase",)) as store:  # space again (no limit)
        assert {r[0] for r in store._conn.execute("SELECT id FROM trades")} == set(acked)
        _outbox_consistent(store, "supabase")
        assert store.write("trades", trade_record()).status == "stored"


def test_locked_database_raises_clear_error_then_recovers(tmp_path):
    db = tmp_path / "locked.db"
    with Store.open(db, sinks=("supabase",), busy_timeout_ms=100) as store:
        first = store.write("trades", trade_record(1))
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        try:
            r = trade_record(2)
            with pytest.raises(StoreBusy, match=r"writing 1 record\(s\) to trades: database is locked"):
                store.write("trades", r)
            assert store.count("trades") == 1  # reads still work during the lock (WAL)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert store.write("trades", r).status == "stored"  # the sender retries with the same id
        assert store.write("trades", r).status == "duplicate"
        assert store.get("trades", first.id) is not None
        assert store.count("trades") == 2
        assert store.integrity_check() == "ok"
        _outbox_consistent(store, "supabase")
