"""Recorder: the calls service.py makes, end to end over a real store and a real PostgreSQL sink."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from pers_helpers import event_record

from common.records.schema import RecordInvalid
from common.records.trades import PaperTrade, paper_trade, real_trade
from services.persistence.recorder import NoSession, Recorder
from services.persistence.sessions import EndReason, SessionStats
from services.persistence.sinks.postgres import PostgresSink

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
T0 = int(NOW.timestamp())
PAPER = PaperTrade(1, 1, 0.1, T0, 1.1, T0 + 7200, 1.101, 10.0, 10.0, 0.5, 9.5, symbol="EURUSD")
FILL = {"deal_id": "d-1", "position_id": "p-1", "symbol": "EURUSD", "action": "CLOSE", "direction": 1,
        "volume": 0.1, "time": NOW + timedelta(hours=2), "entry_price": 1.1, "exit_price": 1.1009,
        "gross_pnl": 9.0, "commission": 0.6}


def test_session_lifecycle_with_crash_and_stats(tmp_path):
    db = tmp_path / "oracle.db"
    recorder = Recorder.open(db)
    with pytest.raises(NoSession):
        recorder.heartbeat(NOW)
    first = recorder.start_session(NOW, initial_balance=10_000.0, symbols=["EURUSD"], close_on_day_change=True)
    assert first["resumed"] is False and first["session"]["status"] == "RUNNING"
    assert recorder.start_session(NOW, initial_balance=1.0, symbols=[], close_on_day_change=True) == first
    sid = first["session"]["session_id"]
    assert recorder.write("trades", paper_trade(PAPER, timeframe="H1", session_id=sid))["status"] == "stored"
    assert recorder.write("trades", real_trade(FILL, session_id=sid))["status"] == "stored"
    assert recorder.write("trades", real_trade(FILL, session_id=sid))["status"] == "duplicate"
    # the running session's totals, written as they change (a new rev), nothing when they did not
    running = recorder.update_totals(SessionStats(None, 1, 8.4))["session"]
    assert (running["status"], running["rev"], running["total_trades"], running["total_pnl"]) == ("RUNNING", 1, 1, 8.4)
    assert recorder.update_totals(SessionStats(None, 1, 8.4))["session"]["rev"] == 1
    assert recorder.query("sessions")[0]["total_pnl"] == 8.4
    assert recorder.heartbeat(NOW + timedelta(hours=2), balance=10_008.4)["ok"]
    recorder.close()  # crash: the session is not ended

    recorder = Recorder.open(db)
    again = recorder.start_session(NOW + timedelta(hours=3), initial_balance=9.0, symbols=["EURUSD"],
                               close_on_day_change=True)
    assert again["resumed"] is True and again["session"]["id"] == first["session"]["id"]
    recovered = recorder.query("events", event_type="SESSION_RECOVERED")
    assert recovered[0]["data"]["downtime_s"] == 3600.0
    end = recorder.end_session(NOW + timedelta(hours=4), reason="NORMAL", final_balance=10_008.4)
    s = end["session"]
    assert (s["status"], s["end_reason"], s["total_trades"], s["total_pnl"]) == ("STOPPED", "NORMAL", 1, 8.4)
    assert recorder.end_session(NOW + timedelta(hours=5)) == {"session": None, "resumed": False}
    with pytest.raises(RecordInvalid, match="events.event_type"):
        recorder.log_event(NOW, "not valid")
    recorder.close()


def test_day_roll(tmp_path):
    recorder = Recorder.open(tmp_path / "oracle.db")
    recorder.start_session(NOW, initial_balance=100.0, symbols=["EURUSD"], close_on_day_change=True)
    assert not recorder.needs_day_roll(NOW + timedelta(hours=15), close_on_day_change=True)
    midnight = datetime(2026, 3, 3, 0, 0, 1, tzinfo=UTC)
    assert recorder.needs_day_roll(midnight, close_on_day_change=True)
    assert not recorder.needs_day_roll(midnight, close_on_day_change=False)
    rolled = recorder.roll_session(midnight, final_balance=105.0)
    assert rolled["ended"]["end_reason"] == EndReason.DAY_CHANGE and rolled["session"]["initial_balance"] == 105.0
    assert len(recorder.query("sessions")) == 2
    recorder.close()


def test_writes_reach_postgres_through_the_worker(tmp_path, clean_pg):
    recorder = Recorder.open(tmp_path / "oracle.db", [PostgresSink(clean_pg)])
    try:
        recorder.start_session(NOW, initial_balance=1.0, symbols=["EURUSD"], close_on_day_change=False)
        ids = [recorder.write("events", event_record(i))["id"] for i in range(20)]
        ack = recorder.write("events", {**event_record(), "id": ids[0], "message": "other"})
        assert (ack["status"], ack["ok"], ack["fields"]) == ("conflict", False, ["message"])
        deadline = time.monotonic() + 10
        while recorder.health()["backlog"] and time.monotonic() < deadline:
            time.sleep(0.05)
        h = recorder.health()
        assert h["backlog"] == 0 and h["parked"] == 0 and h["acks"]["stored"] == 22 and h["acks"]["conflict"] == 1
    finally:
        recorder.end_session(NOW + timedelta(hours=1), final_balance=1.0)
        status = recorder.close(flush_s=5)
    assert status[0]["backlog"] == 0
    with psycopg.connect(clean_pg) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 20 + 2  # + started, ended
        assert conn.execute("SELECT status FROM sessions").fetchall() == [("STOPPED",)]
    assert uuid.UUID(ids[0])
