"""Session lifecycle decisions (pure) and their effect when written to the real store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.persistence import sessions as ss
from services.persistence.store import Store

DAY1 = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
ID1 = uuid.UUID("11111111-1111-4111-8111-111111111111")
ID2 = uuid.UUID("22222222-2222-4222-8222-222222222222")


def start(now=DAY1, new_id=ID1):
    return ss.start_session(new_id, now, initial_balance=10_000.0, symbols=["EURUSD", "GBPUSD"])


def test_start_new_session():
    plan = ss.plan_startup(None, DAY1, new_id=ID1, initial_balance=10_000.0, symbols=["EURUSD"],
                           close_on_day_change=True)
    s = plan.session
    assert (s.id, s.session_id, s.status, s.rev, s.start_time) == (ID1, "11111111", "RUNNING", 0, DAY1)
    assert [t for t, _ in plan.writes] == ["sessions", "events"]
    assert plan.writes[1][1].event_type == "SESSION_STARTED" and not plan.resumed


@pytest.mark.parametrize(("start_at", "now", "close_on_day_change", "resumed"), [
    (DAY1, DAY1 + timedelta(minutes=5), True, True),  # same UTC day: resume
    (DAY1, DAY1 + timedelta(hours=3), False, True),  # next day, but no day rolling: resume
    (DAY1, DAY1 + timedelta(hours=3), True, False),  # next day with rolling: close as RECOVERED, new one
])
def test_recover_after_crash(start_at, now, close_on_day_change, resumed):
    running = start(start_at).session
    last_seen = start_at + timedelta(minutes=1)
    plan = ss.plan_startup(running, now, new_id=ID2, initial_balance=9_000.0, symbols=["EURUSD"],
                           close_on_day_change=close_on_day_change, last_seen=last_seen,
                           stale_stats=ss.SessionStats(9_100.0, 4, -12.5))
    assert plan.resumed is resumed
    if resumed:
        s = plan.session
        assert (s.id, s.rev, s.recovered_count, s.status) == (ID1, 1, 1, "RUNNING")
        [(_, sess), (_, event)] = plan.writes
        assert event.event_type == "SESSION_RECOVERED" and event.severity == "WARNING"
        assert event.data["downtime_s"] == (now - last_seen).total_seconds()
    else:
        ended = plan.ended
        assert (ended.id, ended.status, ended.end_reason, ended.end_time, ended.rev) == (
            ID1, "STOPPED", "RECOVERED", last_seen, 1)
        assert (ended.final_balance, ended.total_trades, ended.total_pnl) == (9_100.0, 4, -12.5)
        assert plan.session.id == ID2 and plan.session.initial_balance == 9_000.0
        assert [r.event_type for t, r in plan.writes if t == "events"] == ["SESSION_ENDED", "SESSION_STARTED"]


def test_end_is_idempotent_and_carries_stats():
    s = start().session
    plan = ss.end_session(s, DAY1 + timedelta(hours=1), ss.SessionStats(10_050.0, 3, 50.0), ss.EndReason.NORMAL)
    e = plan.session
    assert (e.status, e.end_reason, e.rev, e.total_trades, e.final_balance) == ("STOPPED", "NORMAL", 1, 3, 10_050.0)
    again = ss.end_session(e, DAY1 + timedelta(hours=2), ss.SessionStats(), ss.EndReason.MANUAL)
    assert again.writes == [] and again.session == e


@pytest.mark.parametrize(("now", "flag", "expected"), [
    (datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC), True, False),
    (datetime(2026, 3, 3, 0, 0, 0, tzinfo=UTC), True, True),
    (datetime(2026, 3, 3, 0, 0, 0, tzinfo=UTC), False, False),
    (datetime(2026, 3, 5, 12, 0, 0, tzinfo=UTC), True, True),  # several days later
])
def test_day_boundary_is_utc(now, flag, expected):
    assert ss.needs_day_roll(start().session, now, close_on_day_change=flag) is expected


def test_day_boundary_with_offset_time():
    """01:30 at UTC+2 is still 23:30 UTC of the session's day: the boundary is UTC midnight."""
    plus2 = timezone(timedelta(hours=2))
    s = start(datetime(2026, 3, 2, 10, 0, tzinfo=UTC)).session
    assert not ss.needs_day_roll(s, datetime(2026, 3, 3, 1, 30, tzinfo=plus2), close_on_day_change=True)
    assert ss.needs_day_roll(s, datetime(2026, 3, 3, 2, 0, tzinfo=plus2), close_on_day_change=True)


def test_roll_session():
    s = start().session
    now = datetime(2026, 3, 3, 0, 0, 5, tzinfo=UTC)
    plan = ss.roll_session(s, now, ss.SessionStats(10_010.0, 2, 10.0), new_id=ID2, new_initial_balance=10_010.0)
    assert plan.ended.end_reason == "DAY_CHANGE" and plan.session.id == ID2
    assert plan.session.symbols == ["EURUSD", "GBPUSD"] and plan.session.initial_balance == 10_010.0


def test_lifecycle_through_the_store_with_a_crash(tmp_path):
    db = tmp_path / "s.db"
    with Store.open(db, sinks=("supabase",)) as store:
        plan = ss.plan_startup(store.running_session(), DAY1, new_id=ID1, initial_balance=1.0, symbols=[],
                               close_on_day_change=True)
        store.write_batch(plan.writes)
        store.write_batch([ss.heartbeat(plan.session, DAY1 + timedelta(minutes=1), uuid.uuid4(), balance=1.0)])
        # crash: nothing ends the session
    with Store.open(db, sinks=("supabase",)) as store:
        running = store.running_session()
        assert running is not None and running.id == ID1
        last = store.last_heartbeat(running.session_id)
        assert last == DAY1 + timedelta(minutes=1)
        plan = ss.plan_startup(running, DAY1 + timedelta(minutes=9), new_id=ID2, initial_balance=1.0,
                               symbols=[], close_on_day_change=True, last_seen=last)
        acks = store.write_batch(plan.writes)
        assert [a.status for a in acks] == ["updated", "stored"]
        assert [a.status for a in store.write_batch(plan.writes)] == ["duplicate", "duplicate"]  # replayed
        end = ss.end_session(plan.session, DAY1 + timedelta(hours=1), ss.SessionStats(2.0, 0, 0.0),
                             ss.EndReason.NORMAL)
        store.write_batch(end.writes)
        assert store.running_session() is None
        [s] = store.query("sessions")
        assert (s.status, s.end_reason, s.recovered_count, s.rev) == ("STOPPED", "NORMAL", 1, 2)
        types = [e.event_type for e in store.query("events", newest_first=False)]
        assert types == ["SESSION_STARTED", "SESSION_RECOVERED", "SESSION_ENDED"]
        # the sink will get the final version of the session only once
        assert [(i.table, i.rev) for i in store.pending("supabase") if i.table == "sessions"] == [("sessions", 2)]


def test_the_trade_ledger_gives_the_totals_of_the_stored_trades(tmp_path):
    """The running totals from the in-memory ledger (built once, then fed the trades written) equal those of all
    the session's real trades read from the store, to the last bit of the PnL (summed newest first, then by
    rowid): trades at equal times, updates that move a trade in time, to paper, to another session, back."""
    import random

    rnd = random.Random(15)
    store = Store.open(tmp_path / "s.db")
    ids = [str(uuid.uuid4()) for _ in range(60)]
    revs: dict[str, int] = {}
    ledger = ss.TradeLedger.of("cur", [])

    def want() -> ss.Totals:
        return ss.totals_of(ss.TradeFacts(*t) for t in store.trade_facts("cur", is_paper=False))

    for _ in range(40):
        written = []
        for rid in rnd.sample(ids, rnd.randint(1, 8)):
            revs[rid] = revs.get(rid, -1) + 1
            written.append(("trades", {
                "id": rid, "rev": revs[rid], "session_id": rnd.choice(["cur", "cur", "cur", "other"]),
                "timestamp": DAY1 + timedelta(seconds=rnd.randint(0, 5)), "symbol": "EURUSD", "direction": 1,
                "action": rnd.choice(["OPEN", "CLOSE", "PARTIAL_CLOSE"]), "pnl": rnd.choice([0.1, 0.2, 1e-9, -7.7]),
                "position_id": rnd.choice([None, "1", "2", "3"]), "is_paper": rnd.random() < 0.2}))
        store.write_batch(written)
        ledger.apply((ss.LedgerRow._make(r), sid, paper) for r, sid, paper in
                     store.trade_rows([r["id"] for _, r in written]))
        assert ledger.totals() == want()
        rebuilt = ss.TradeLedger.of("cur", map(ss.LedgerRow._make, store.trade_ledger("cur")))
        assert rebuilt.totals() == want()
    assert want().pnl != 0 and want().trades > 1
    store.close()
