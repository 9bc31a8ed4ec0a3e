"""Faults at the service level, with a real sender process writing through Service.persist (its outbox keeps
every record until acknowledged and retries with the same ids):

(a) the PostgreSQL sink down for a stretch of the stream: the backlog grows (seen in the heartbeats), then
    drains; every record exactly once in PostgreSQL;
(b) persistence killed with SIGKILL in the middle of the stream: after the restart nothing lost, nothing
    duplicated, the session resumed;
(c) a full disk (a size quota on the store) and a locked database: a clear error reply, the sender keeps its
    records, the process keeps serving; after the fault every record is stored.
"""

from __future__ import annotations

import signal
import sqlite3

import psycopg
import pytest
from harness import Home, wait_for
from pers_sender import record
from pers_service_helpers import HeartbeatTap, boot_persistence, db_rows, sender_allow, sender_status, start_sender
from psycopg.conninfo import conninfo_to_dict

from common import bus, messages


def expected_ids(n: int) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"events": set(), "trades": set()}
    for i in range(n):
        table, rec = record(i)
        out[table].add(rec["id"])
    return out


def one(i: int) -> messages.WriteArgs:
    table, rec = record(i)
    return messages.WriteArgs({table: [rec]})


def sender_done(home: Home, n: int, timeout: float) -> dict:
    return wait_for(lambda: (lambda s: s if s["made"] == n and s["pending"] == 0 else None)(sender_status(home)),
                    timeout, f"the sender's {n} records acknowledged")


def local_ids(home: Home, table: str, source_filter: str) -> list[str]:
    db = home.config().path(home.config().persistence.sqlite_path)
    return [r[0] for r in db_rows(db, f"SELECT id FROM {table} WHERE {source_filter}")]


def test_sink_down_for_a_stretch_backlog_grows_then_drains_exactly_once(tmp_path, clean_pg, pg_server):
    home = Home(tmp_path, {"persistence": {"sinks": {"postgres": {"enabled": True, "dsn": clean_pg,
                                                                  "connect_timeout_s": 2}}}})
    dbname = conninfo_to_dict(clean_pg)["dbname"]
    n = 1200
    tap = None
    try:
        boot_persistence(home)
        tap = HeartbeatTap(home.config().endpoint("persistence", "pub"))
        start_sender(home, n, 150, upto=300)  # 8 s of records, none past the 300th before the sink is down
        wait_for(lambda: sender_status(home)["acked"] >= 150, 15, "the first records acknowledged")
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,))
            try:
                wait_for(lambda: sender_allow(home, n), 10, "the sender allowed more records")
                wait_for(lambda: max((i.get("backlog", 0) for i in tap.infos[-3:]), default=0) >= 300, 20,
                         "the backlog growing in the heartbeats while the sink is down")
                status = home.status_of("persistence")["persistence"]
                assert status["sinks"][0]["sink"] == "postgres" and status["sinks"][0]["failures"] >= 1
                assert status["sinks"][0]["last_error"]
                # the sender is not held up by the sink: 300 of its records at least acknowledged while it is down
                wait_for(lambda: sender_status(home)["acked"] >= 600, 20, "records acknowledged while the sink is down")
            finally:
                admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        sender_done(home, n, 30)
        # a heartbeat read before the last records were acknowledged can say 0 (the sink had caught up with what
        # was written then): only one sent after them counts; the one in flight when they were acked is skipped
        after = len(tap.infos) + 1
        wait_for(lambda: len(tap.infos) > after and tap.infos[-1].get("backlog") == 0, 40, "the backlog drained")
        peak = max(i.get("backlog", 0) for i in tap.infos)
        want = expected_ids(n)
        with psycopg.connect(clean_pg) as conn:
            for table in ("events", "trades"):
                src = "source = 'sender'" if table == "events" else "symbol = 'EURUSD' AND is_paper"
                rows = [r[0] for r in conn.execute(f"SELECT id::text FROM {table} WHERE {src}")]
                assert len(rows) == len(set(rows)) == len(want[table]), table  # exactly once
                assert set(rows) == want[table]
            # and the service's own records (session, its events) went the same way
            assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1
        assert peak >= 300
    finally:
        if tap:
            tap.close()
        home.close()


@pytest.mark.parametrize("kill_at", [200, 900])
def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(tmp_path, kill_at):
    home = Home(tmp_path)
    n = 2000
    held = kill_at + 200  # the sender makes no record past these until told: the kill lands before the stream's end
    unacked = 100  # however far a loaded machine holds the acknowledgements behind
    try:
        sid = boot_persistence(home)["session_id"]
        start_sender(home, n, 400, upto=held)
        wait_for(lambda: sender_status(home)["acked"] >= kill_at, 20, f"{kill_at} records acknowledged")
        # frozen (SIGSTOP: it stops where it is, mid-commit or mid-reply, as a kill -9 there would leave it), it
        # acknowledges nothing more; the records the sender makes meanwhile are unacknowledged when the kill lands
        home.kill("persistence", sig=signal.SIGSTOP)
        wait_for(lambda: sender_allow(home, held + unacked), 10, "the sender allowed more records")
        wait_for(lambda: sender_status(home)["made"] == held + unacked, 20, "records made after the freeze")
        home.kill("persistence")  # SIGKILL, mid-stream
        before = wait_for(lambda: sender_status(home), 10, "the sender's counts")
        assert before["made"] == held + unacked < n and before["pending"] >= unacked
        # the rest: made while persistence is down, then after its restart
        wait_for(lambda: sender_allow(home, n), 10, "the sender allowed more records")
        wait_for(lambda: sender_status(home)["made"] >= before["made"] + unacked, 20, "records made while down")
        again = boot_persistence(home)
        assert again["session_id"] == sid and again["resumed"] is True
        done = sender_done(home, n, 40)
        assert done["rejected"] == {} and done["acked"] == n
        want = expected_ids(n)
        events = local_ids(home, "events", "source = 'sender'")
        trades = local_ids(home, "trades", "is_paper = 1")
        assert len(events) == len(set(events)) and set(events) == want["events"]
        assert len(trades) == len(set(trades)) and set(trades) == want["trades"]
        db = home.config().path(home.config().persistence.sqlite_path)
        assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]
        assert db_rows(db, "SELECT count(DISTINCT session_id) FROM trades WHERE is_paper = 1") == [(1,)]
        assert db_rows(db, "SELECT count(*) FROM events WHERE event_type = 'SESSION_RECOVERED'") == [(1,)]
    finally:
        home.close()


def test_full_disk_then_locked_database_clear_errors_and_nothing_lost(tmp_path):
    # a 0.5 MB quota on the store: SQLite answers SQLITE_FULL exactly as on a full disk
    home = Home(tmp_path, {"persistence": {"max_db_mb": 0.5}, "runtime": {"request_timeout_ms": 2000}})
    n = 3000
    try:
        boot_persistence(home)
        start_sender(home, n, 0)
        wait_for(lambda: home.status_of("persistence")["progress"].get("store_full", 0) >= 1, 30,
                 "the store full")
        st = sender_status(home)
        assert st["pending"] > 0 and st["rejected"] == {}  # the sender keeps its records
        req = bus.Requester(bus.zmq.Context.instance(), home.config().endpoint("persistence", "rep"), "test", 3000)
        try:
            probe = [record(n + 2 * k)[1] for k in range(300)]  # events: as many as the sender's batch
            req.send("write", messages.WriteArgs({"events": probe}))
            reply = wait_for(req.take_reply, 5, "the reply")
        finally:
            req.close()
        assert reply.ok is False and reply.error_code == "store_full" and "full" in reply.error_message
        status = home.status_of("persistence")  # still serving, heartbeats going
        assert status["state"] == "WAITING" and "store_full" in status["store"]["last_error"]
        assert home.procs["persistence"].poll() is None
        acked_when_full = sender_status(home)["acked"]

        # the operator makes room (here: lifts the quota) and restarts persistence: the backlog goes in
        home.kill("persistence", sig=15)
        home.write_overlay({"runtime": {"heartbeat_interval_s": 0.5, "hello_interval_s": 0.1,
                                        "request_timeout_ms": 2000}})
        boot_persistence(home)
        done = sender_done(home, n, 60)
        assert done["rejected"] == {} and done["acked"] == n > acked_when_full

        # a locked database: another process holds the write lock; writes are answered store_busy quickly
        db = home.config().path(home.config().persistence.sqlite_path)
        orch = bus.Publisher(bus.zmq.Context.instance(), home.config().endpoint("orchestrator", "pub"),
                             "orchestrator", bus.new_epoch())
        locker = sqlite3.connect(db, timeout=0, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            # answered store_busy (busy_timeout_ms), not left to the request's timeout (a RequestTimeout)
            with pytest.raises(bus.RequestFailed) as err:
                home.request("persistence", "write", one(n + 3), timeout_ms=3000)
            assert err.value.code == "store_busy" and "locked" in err.value.message
            assert home.request("persistence", "ping")
            # what it hears meanwhile (an alert) is kept in memory until the store takes it again
            wait_for(lambda: (orch.publish("alert.test", messages.Alert("test", "warning", "during the lock")),
                              home.status_of("persistence")["unwritten"])[1], 15, "an alert kept")
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        wait_for(lambda: home.status_of("persistence")["unwritten"] == 0, 10, "the kept alerts written")
        assert db_rows(db, "SELECT count(*) FROM events WHERE event_type = 'ALERT' AND message = ?",
                       ("during the lock",))[0][0]
        orch.close()
        res = home.request("persistence", "write", one(n + 3))
        assert res.acked == [record(n + 3)[1]["id"]]
        want = expected_ids(n)
        assert set(local_ids(home, "events", "source = 'sender'")) >= want["events"]
        assert set(local_ids(home, "trades", "is_paper = 1")) == want["trades"] | {record(n + 3)[1]["id"]}
        assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]
    finally:
        home.close()
