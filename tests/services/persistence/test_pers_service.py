"""The persistence service as a process: the write and query ops over its real REP socket, sessions driven by
the lifecycle steps, the stream (alerts, sys.state, gaps; fills and closes not copied) from real publishers."""

from __future__ import annotations

import time
import uuid

import pytest
from harness import Home, wait_for
from pers_service_helpers import FakeConnector, boot_persistence, db_rows, step

from common import bus, messages
from common.order_label import OrderAction, client_order_id
from common.outbox import record_id
from common.records.events import derived_id
from common.records.real_trades import real_trade_record, utc
from services.persistence import stream_events


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path, {"persistence": {"heartbeat_interval_s": 1.0}})
    h.config().path(h.config().run_dir).mkdir(parents=True, exist_ok=True)  # stand-ins bind before anyone
    yield h
    h.close()


def write(home: Home, table: str, records: list[dict], timeout_ms: int = 3000) -> messages.WriteResult:
    return home.request("persistence", "write", messages.WriteArgs({table: records}), timeout_ms=timeout_ms)


def query(home: Home, table: str, where: dict | None = None, limit: int = 100) -> list[dict]:
    return home.request("persistence", "query", messages.QueryArgs(table, where or {}, limit)).records


def orchestrator_event(n: int) -> dict:
    """What the orchestrator's Service.persist sends (services/orchestrator/service.py)."""
    return {"id": record_id("events", "orchestrator", n, "restart", "preditor"),
            "timestamp": "2026-03-02T09:30:00.000000Z", "event_type": "RESTART", "severity": "WARNING",
            "source": "orchestrator", "message": f"restart service=preditor n={n}", "data": {"service": "preditor"}}


def test_write_query_and_session_steps(home):
    home.start("persistence")
    wait_for(lambda: home.request("persistence", "ping"), 15, "persistence answering")
    with pytest.raises(bus.RequestFailed) as err:  # before persistence.open: a clear error, the sender retries
        write(home, "events", [orchestrator_event(0)])
    assert err.value.code == "not_open"

    step(home, "persistence.open")
    # events from any sender, before a session exists: accepted, no session yet
    res = write(home, "events", [orchestrator_event(1), orchestrator_event(2)])
    assert sorted(res.acked) == sorted([orchestrator_event(1)["id"], orchestrator_event(2)["id"]]) and not res.rejected

    started = step(home, "persistence.session")  # no connector: the balance comes from the config, said so
    assert started["resumed"] is False and started["balance_from"] == "config"
    assert started["initial_balance"] == home.config().paper.initial_balance
    sid = started["session_id"]
    events = {e["event_type"] for e in query(home, "events", {"session_id": sid})}
    assert {"SESSION_STARTED", stream_events.INITIAL_BALANCE_FROM_CONFIG} <= events

    # a retry is acknowledged again (idempotent); a bad record and a conflicting one are rejected with reasons
    good = {"id": str(uuid.uuid4()), "timestamp": "2026-03-02T09:31:00Z", "symbol": "EURUSD", "direction": 1,
            "action": "CLOSE", "volume": 0.1, "pnl": 5.0, "is_paper": True}
    bad = {**good, "id": str(uuid.uuid4()), "direction": 7}
    no_id = {k: v for k, v in good.items() if k != "id"}
    assert write(home, "trades", [good]).acked == [good["id"]]
    res = write(home, "trades", [good, bad, no_id, {**good, "pnl": 6.0}])
    assert res.acked == [good["id"]]  # the retry; the conflicting copy is not acked
    assert "trades.direction" in res.rejected[bad["id"]]
    assert "id" in res.rejected["<record 2 without an id>"]
    assert res.rejected[good["id"]].startswith("conflict") and "pnl" in res.rejected[good["id"]]
    stored = query(home, "trades", {"is_paper": True})
    assert [t["id"] for t in stored] == [good["id"]] and stored[0]["session_id"] == sid and stored[0]["pnl"] == 5.0
    res = write(home, "nonsense", [good])
    assert "unknown table" in res.rejected[good["id"]]

    with pytest.raises(bus.RequestFailed) as err:
        home.request("persistence", "query", messages.QueryArgs("trades", {"colour": "red"}))
    assert err.value.code == "bad_args" and "where.colour" in err.value.message
    assert query(home, "trades", {"since": "2026-03-02T09:31:00Z", "until": "2026-03-02T09:32:00Z"})[0]["id"] == \
        good["id"]
    assert query(home, "trades", {"until": "2026-03-02T09:31:00Z"}) == []

    # session heartbeats every heartbeat_interval_s; health_info carries the backlog for the orchestrator
    wait_for(lambda: len(query(home, "session_heartbeats", {"session_id": sid})) >= 2, 10, "session heartbeats")
    status = home.status_of("persistence")
    assert status["persistence"]["backlog"] == 0 and status["store"]["open"] is True
    assert status["session"]["session_id"] == sid

    # a restart without close_session resumes the session (an event says so)
    home.kill("persistence")
    resumed = boot_persistence(home)
    assert resumed["session_id"] == sid and resumed["resumed"] is True
    assert query(home, "events", {"event_type": "SESSION_RECOVERED", "session_id": sid})

    ended = home.request("persistence", "step", messages.StepArgs("persistence.close_session", {"reason": "MANUAL"}),
                         timeout_ms=15000).result
    assert ended["ended"] and ended["reason"] == "MANUAL" and ended["paper_trades"] == 1 and ended["paper_pnl"] == 5.0
    session = query(home, "sessions", {"session_id": sid})[0]
    assert session["status"] == "STOPPED" and session["end_reason"] == "MANUAL" and session["total_trades"] == 0
    summary = query(home, "events", {"event_type": stream_events.SESSION_SUMMARY})[0]
    assert summary["data"]["paper"] == {"trades": 1, "pnl": 5.0}
    assert step(home, "persistence.close_session") == {"ended": False, "why": "no session is running"}


def fill(ticket: int, deal: int, t: float, cid: str = "") -> messages.Fill:
    return messages.Fill("EURUSD", ticket, cid, 1, 0.1, 1.1000, t, deal)


def closed(ticket: int, t: float, net: float) -> messages.PositionClosed:
    return messages.PositionClosed(ticket=ticket, symbol="EURUSD", direction=1, volume=0.1, entry_price=1.1,
                                   close_price=1.101, gross_profit=net + 0.7, swap=0.0, commission=-0.7,
                                   net_profit=net, time=t, reason="CLIENT", external=False, balance=None, label="")


def test_trades_only_through_the_write_op_totals_kept_alerts_state_and_gaps_from_the_stream(home):
    cfg = home.config()
    conn = FakeConnector(cfg.endpoint("connector", "pub"), cfg.endpoint("connector", "rep"), balance=10_250.0)
    ctx = bus.zmq.Context.instance()
    orch = bus.Publisher(ctx, cfg.endpoint("orchestrator", "pub"), "orchestrator", bus.new_epoch())
    executor = bus.Publisher(ctx, cfg.endpoint("executor", "pub"), "executor", bus.new_epoch())
    try:
        started = boot_persistence(home)
        sid = started["session_id"]
        assert started["balance_from"] == "connector" and started["initial_balance"] == 10_250.0
        t0 = 1_780_000_000.0
        cid = client_order_id("EURUSD", int(t0) - 3600, OrderAction.OPEN)  # carries the signal's bar time
        opened, shut = fill(11, 101, t0, cid), closed(11, t0 + 600, 12.5)

        # the stream's fills and closes are not copied (the connector's outbox is their one writer); alerts from
        # any publisher but the executor (it stores its own) and sys.state changes become events
        def published() -> None:
            conn.publish(messages.fill_topic("EURUSD"), opened)
            conn.publish(messages.closed_topic("EURUSD"), shut)
            conn.publish(messages.ACCOUNT_TOPIC, messages.AccountUpdate(10_262.5, 10_262.5, 0.0, 10_262.5, "EUR"))
            conn.publish(messages.alert_topic("broker"), messages.Alert("broker", "warning", "slow broker",
                                                                        "connector", {"symbol": "EURUSD"}))
            executor.publish(messages.alert_topic("halted"), messages.Alert("halted", "critical", "halt",
                                                                            "executor", {}))

        wait_for(lambda: (published(), query(home, "events", {"event_type": "ALERT"})
                          and "alerts_stored_by_their_sender" in home.status_of("persistence")["progress"])[1],
                 15, "the stream heard")
        alerts = query(home, "events", {"event_type": "ALERT"})
        assert {a["source"] for a in alerts} == {"connector"}
        assert alerts[0]["symbol"] == "EURUSD" and alerts[0]["message"] == "slow broker"
        assert query(home, "trades") == []
        now_ns = time.time_ns()
        orch.publish(messages.SYS_STATE_TOPIC, messages.SysState("RUNNING", now_ns, "run"))
        orch.publish(messages.SYS_STATE_TOPIC, messages.SysState("RUNNING", now_ns, "tick"))  # no change
        orch.publish(messages.SYS_STATE_TOPIC, messages.SysState("HALTED", now_ns, "halt", halted_reason="x"))
        wait_for(lambda: len(query(home, "events", {"event_type": "SYSTEM_STATE"})) >= 2, 10, "state events")
        states = [e["data"]["to"] for e in query(home, "events", {"event_type": "SYSTEM_STATE"}, 10)]
        assert sorted(states) == ["HALTED", "RUNNING"]

        # what the connector's outbox hands over is the trade; the running session's totals follow it
        records = [real_trade_record(messages.to_wire(opened), closing=False),
                   real_trade_record(messages.to_wire(shut), closing=True)]
        assert write(home, "trades", records).acked == [r["id"] for r in records]
        real = sorted(query(home, "trades", {"is_paper": False}), key=lambda t: t["action"])
        assert [t["action"] for t in real] == ["CLOSE", "OPEN"] and {t["session_id"] for t in real} == {sid}
        assert real[0]["pnl"] == pytest.approx(12.5) and real[0]["commission"] == pytest.approx(0.7)
        assert real[1]["position_id"] == "11" and real[1]["entry_price"] == 1.1 and real[1]["client_order_id"] == cid
        assert real[1]["bar_time"] == utc(t0 - 3600).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        wait_for(lambda: query(home, "sessions", {"session_id": sid})[0]["total_trades"] == 1, 10,
                 "the running session's totals")
        running = query(home, "sessions", {"session_id": sid})[0]
        assert (running["status"], running["total_pnl"]) == ("RUNNING", pytest.approx(12.5))

        # a gap in a publisher's stream: an event says what may be missing
        conn.skip(messages.ACCOUNT_TOPIC, 3)
        conn.publish(messages.ACCOUNT_TOPIC, messages.AccountUpdate(10_262.5, 10_262.5, 0.0, 10_262.5, "EUR"))
        wait_for(lambda: query(home, "events", {"event_type": stream_events.STREAM_GAP}), 15, "the gap event")
        gap = query(home, "events", {"event_type": stream_events.STREAM_GAP})[0]
        assert gap["data"]["publisher"] == "connector" and gap["data"]["missed"] == 3

        # the end: balance from the connector, real trades (positions closed) and PnL from the stored real trades,
        # EMERGENCY because the system was HALTED when the stop began
        orch.publish(messages.SYS_STATE_TOPIC, messages.SysState("STOPPING", now_ns, "stopping MANUAL"))
        wait_for(lambda: len(query(home, "events", {"event_type": "SYSTEM_STATE"})) >= 3, 10, "STOPPING seen")
        conn.balance = 10_262.5
        ended = step(home, "persistence.close_session")
        assert ended["reason"] == "EMERGENCY" and ended["final_balance"] == 10_262.5
        assert ended["real_trades"] == 1 and ended["real_pnl"] == pytest.approx(12.5)
        session = query(home, "sessions", {"session_id": sid})[0]
        assert (session["total_trades"], session["total_pnl"], session["final_balance"]) == (1, 12.5, 10_262.5)
        assert session["end_reason"] == "EMERGENCY"
    finally:
        conn.close()
        orch.close()
        executor.close()


def test_trades_before_the_session_are_adopted_by_it(home):
    home.start("persistence")
    wait_for(lambda: home.request("persistence", "ping"), 15, "persistence answering")
    step(home, "persistence.open")
    record = real_trade_record(messages.to_wire(fill(21, 201, 1_780_000_000.0)), closing=False)
    assert write(home, "trades", [record]).acked == [record["id"]]
    assert query(home, "trades")[0]["session_id"] == ""
    sid = step(home, "persistence.session")["session_id"]
    adopted = query(home, "trades")[0]
    assert adopted["session_id"] == sid and adopted["rev"] == 1
    assert adopted["id"] == str(derived_id("real", "201"))
    assert query(home, "events", {"event_type": stream_events.TRADES_ADOPTED})


def test_a_retry_after_the_session_started_of_records_stored_before_it_is_acknowledged(home):
    """A restarted persistence stores what a sender sends between persistence.open and persistence.session; the
    sender sends it again after (its request timed out: the session step holds the loop while it asks the connector
    for the balance). The retry is the same record: acknowledged, not refused as a conflict over the session_id
    persistence itself filled in (an event stored without one; a trade adopted since)."""
    home.start("persistence")
    wait_for(lambda: home.request("persistence", "ping"), 15, "persistence answering")
    step(home, "persistence.open")
    event = orchestrator_event(7)
    trade = real_trade_record(messages.to_wire(fill(22, 202, 1_780_000_000.0)), closing=False)
    assert write(home, "events", [event]).acked == [event["id"]]
    assert write(home, "trades", [trade]).acked == [trade["id"]]
    step(home, "persistence.session")
    for table, record in (("events", event), ("trades", trade)):
        res = write(home, table, [record])
        assert res.acked == [record["id"]] and res.rejected == {}, table
    assert query(home, "events", {"event_type": "RESTART"})[0]["session_id"] is None


def test_rows_are_on_disk_when_acknowledged(home):
    boot_persistence(home)
    recs = [{**orchestrator_event(100 + i)} for i in range(50)]
    res = write(home, "events", recs)
    assert len(res.acked) == 50
    home.kill("persistence")  # kill -9 right after the reply: the commit was durable before it
    db = home.config().path(home.config().persistence.sqlite_path)
    ids = {r[0] for r in db_rows(db, "SELECT id FROM events WHERE source = 'orchestrator'")}
    assert {r["id"] for r in recs} <= ids
