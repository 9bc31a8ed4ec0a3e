"""The persistence service as a process: the write and query ops over its real REP socket, sessions driven by
the lifecycle steps, the stream (fills, closes, alerts, sys.state, paper trades, gaps) from real publishers."""

from __future__ import annotations

import time
import uuid

import pytest
from harness import Home, wait_for
from pers_service_helpers import FakeConnector, boot_persistence, db_rows, step

from common import bus, messages
from common.outbox import record_id
from services.executor.comment import OrderAction, client_order_id
from services.persistence import intake
from services.persistence.events import derived_id


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path, {"persistence": {"heartbeat_interval_s": 1.0}})
    h.config().path(h.config().run_dir).mkdir(parents=True, exist_ok=True)  # stand-ins bind before anyone
    yield h
    h.close()


def write(home: Home, table: str, records: list[dict], timeout_ms: int = 3000) -> messages.WriteResult:
    return home.request("persistence", "write", messages.WriteArgs(table, records), timeout_ms=timeout_ms)


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
    assert {"SESSION_STARTED", intake.INITIAL_BALANCE_FROM_CONFIG} <= events

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
    status = home.request("persistence", "status")
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
    summary = query(home, "events", {"event_type": intake.SESSION_SUMMARY})[0]
    assert summary["data"]["paper"] == {"trades": 1, "pnl": 5.0}
    assert step(home, "persistence.close_session") == {"ended": False, "why": "no session is running"}


def fill(ticket: int, deal: int, t: float, cid: str = "") -> messages.Fill:
    return messages.Fill("EURUSD", ticket, cid, 1, 0.1, 1.1000, t, deal)


def closed(ticket: int, t: float, net: float) -> messages.PositionClosed:
    return messages.PositionClosed(ticket=ticket, symbol="EURUSD", direction=1, volume=0.1, entry_price=1.1,
                                   close_price=1.101, gross_profit=net + 0.7, swap=0.0, commission=-0.7,
                                   net_profit=net, time=t, reason="CLIENT", external=False, balance=None, label="")


def test_stream_fills_closes_alerts_state_paper_and_gap_recovery(home):
    cfg = home.config()
    conn = FakeConnector(cfg.endpoint("connector", "pub"), cfg.endpoint("connector", "rep"), balance=10_250.0)
    orch = bus.Publisher(bus.zmq.Context.instance(), cfg.endpoint("orchestrator", "pub"), "orchestrator",
                         bus.new_epoch())
    paper = bus.Publisher(bus.zmq.Context.instance(), cfg.endpoint("paper", "pub"), "paper", bus.new_epoch())
    try:
        started = boot_persistence(home)
        sid = started["session_id"]
        assert started["balance_from"] == "connector" and started["initial_balance"] == 10_250.0
        t0 = 1_780_000_000.0
        cid = client_order_id("EURUSD", int(t0) - 3600, OrderAction.OPEN)  # carries the signal's bar time

        def published() -> None:
            conn.publish(messages.fill_topic("EURUSD"), fill(11, 101, t0, cid))
            conn.publish(messages.closed_topic("EURUSD"), closed(11, t0 + 600, 12.5))
            conn.publish(messages.ACCOUNT_TOPIC, messages.AccountUpdate(10_262.5, 10_262.5, 0.0, 10_262.5, "EUR"))

        # a slow joiner misses the first messages: publish until the trade log has them
        wait_for(lambda: (published(), len(query(home, "trades", {"is_paper": False})) >= 2)[1], 15,
                 "real trades from fill and closed")
        real = sorted(query(home, "trades", {"is_paper": False}), key=lambda t: t["action"])
        assert [t["action"] for t in real] == ["CLOSE", "OPEN"] and {t["session_id"] for t in real} == {sid}
        assert real[0]["pnl"] == pytest.approx(12.5) and real[0]["commission"] == pytest.approx(0.7)
        assert real[1]["position_id"] == "11" and real[1]["entry_price"] == 1.1 and real[1]["client_order_id"] == cid
        assert real[1]["bar_time"] == intake.utc(t0 - 3600).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

        # alerts from any publisher and sys.state changes become events
        conn.publish(messages.alert_topic("broker"), messages.Alert("broker", "warning", "slow broker", "connector",
                                                                    {"symbol": "EURUSD"}))
        now_ns = time.time_ns()
        orch.publish(messages.SYS_STATE_TOPIC, messages.SysState("RUNNING", now_ns, "run"))
        orch.publish(messages.SYS_STATE_TOPIC, messages.SysState("RUNNING", now_ns, "tick"))  # no change
        orch.publish(messages.SYS_STATE_TOPIC, messages.SysState("HALTED", now_ns, "halt", halted_reason="x"))
        wait_for(lambda: len(query(home, "events", {"event_type": "SYSTEM_STATE"})) >= 2
                 and query(home, "events", {"event_type": "ALERT"}), 10, "alert and state events")
        alert = query(home, "events", {"event_type": "ALERT"})[0]
        assert alert["source"] == "connector" and alert["symbol"] == "EURUSD" and alert["message"] == "slow broker"
        states = [e["data"]["to"] for e in query(home, "events", {"event_type": "SYSTEM_STATE"}, 10)]
        assert sorted(states) == ["HALTED", "RUNNING"]

        # a gap in the connector's stream: an event says fills may be missing; open positions without a
        # recorded fill are recovered as OPEN trades (the one whose fill we have is not)
        conn.positions = [
            {"ticket": 11, "symbol": "EURUSD", "direction": 1, "volume": 0.1, "open_price": 1.1, "open_time": t0,
             "label": ""},
            {"ticket": 12, "symbol": "EURUSD", "direction": -1, "volume": 0.2, "open_price": 1.2,
             "open_time": t0 + 900, "label": ""},
        ]
        conn.skip(messages.ACCOUNT_TOPIC, 3)
        conn.publish(messages.ACCOUNT_TOPIC, messages.AccountUpdate(10_262.5, 10_262.5, 0.0, 10_262.5, "EUR"))
        wait_for(lambda: query(home, "events", {"event_type": intake.FILLS_RECOVERED}), 15, "fills recovered")
        missing = query(home, "events", {"event_type": intake.FILLS_MAY_BE_MISSING})
        assert len(missing) == 1 and missing[0]["data"]["missed_messages"] == 3
        recovered = [t for t in query(home, "trades", {"is_paper": False}) if t["position_id"] == "12"]
        assert len(recovered) == 1 and recovered[0]["action"] == "OPEN" and recovered[0]["direction"] == -1
        assert recovered[0]["comment"] == intake.RECOVERED_OPEN_COMMENT

        # paper.trade: the paper trader's own record is the trade; if it never arrives, the message makes one,
        # and the paper trader's record replaces that when it comes after all
        pid = str(uuid.uuid4())
        body = messages.PaperTrade(pid, "EURUSD", 1, 2, int(t0), int(t0) + 3600, 1.1, 1.102, 19.3, 20.0, 0.7, 3)
        paper.publish(messages.paper_trade_topic("EURUSD"), body)
        wait_for(lambda: query(home, "trades", {"is_paper": True}), 15, "paper fallback record")
        fallback = query(home, "trades", {"is_paper": True})[0]
        assert fallback["id"] == pid and fallback["comment"] == intake.PAPER_FALLBACK_COMMENT
        own = {"id": pid, "session_id": "", "timestamp": "2026-05-28T21:46:40Z", "symbol": "EURUSD", "direction": 1,
               "intensity": 2, "action": "CLOSE", "volume": 0.1, "entry_price": 1.1, "exit_price": 1.102, "pnl": 19.3,
               "is_paper": True}
        res = write(home, "trades", [own])
        assert res.acked == [pid] and not res.rejected
        replaced = query(home, "trades", {"is_paper": True})[0]
        assert replaced["rev"] == 1 and replaced["comment"] is None and replaced["volume"] == 0.1
        assert replaced["session_id"] == sid

        # the end: balance from the connector, real trades (positions closed) and PnL from the real fills,
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
        paper.close()


def test_fills_before_the_session_are_adopted_by_it(home):
    cfg = home.config()
    conn = FakeConnector(cfg.endpoint("connector", "pub"), cfg.endpoint("connector", "rep"))
    try:
        home.start("persistence")
        wait_for(lambda: home.request("persistence", "ping"), 15, "persistence answering")
        step(home, "persistence.open")
        wait_for(lambda: (conn.publish(messages.fill_topic("EURUSD"), fill(21, 201, 1_780_000_000.0)),
                          query(home, "trades"))[1], 15, "a fill before the session")
        assert query(home, "trades")[0]["session_id"] == ""
        sid = step(home, "persistence.session")["session_id"]
        adopted = query(home, "trades")[0]
        assert adopted["session_id"] == sid and adopted["rev"] == 1
        assert adopted["id"] == str(derived_id("real", "201"))
        assert query(home, "events", {"event_type": intake.TRADES_ADOPTED})
    finally:
        conn.close()


def test_rows_are_on_disk_when_acknowledged(home):
    boot_persistence(home)
    recs = [{**orchestrator_event(100 + i)} for i in range(50)]
    res = write(home, "events", recs)
    assert len(res.acked) == 50
    home.kill("persistence")  # kill -9 right after the reply: the commit was durable before it
    db = home.config().path(home.config().persistence.sqlite_path)
    ids = {r[0] for r in db_rows(db, "SELECT id FROM events WHERE source = 'orchestrator'")}
    assert {r["id"] for r in recs} <= ids


def test_a_fill_recovery_waits_for_the_fills_the_connector_still_holds_for_us(home):
    """After a gap, an open position with no recorded fill is recovered as an OPEN trade, but not while the
    connector's heartbeat says its outbox still holds records for us: the fill may be one of them (it came through
    the outbox: one trade, not a recovered copy beside it)."""
    from services.persistence.service import RECOVERY_SETTLE_S

    cfg = home.config()
    conn = FakeConnector(cfg.endpoint("connector", "pub"), cfg.endpoint("connector", "rep"))

    def heartbeat(outbox: int) -> None:
        conn.publish(messages.hb_topic("connector"), messages.Heartbeat(
            "connector", 1, conn.publisher.epoch, "RUNNING", 10.0, 0, info={"outbox": outbox} if outbox else {}))

    def trades_of(ticket: str) -> list[dict]:
        return [t for t in query(home, "trades", {"is_paper": False}) if t["position_id"] == ticket]

    try:
        boot_persistence(home)
        t0 = time.time() - 60
        conn.positions = [{"ticket": 21, "symbol": "EURUSD", "direction": 1, "volume": 0.1, "open_price": 1.1,
                           "open_time": t0, "label": ""}]
        account = messages.AccountUpdate(10_250.0, 10_250.0, 0.0, 10_250.0, "EUR")

        def gap() -> bool:
            heartbeat(1)
            conn.publish(messages.ACCOUNT_TOPIC, account)
            time.sleep(0.2)
            conn.skip(messages.ACCOUNT_TOPIC, 2)  # lost: the next one shows a gap
            conn.publish(messages.ACCOUNT_TOPIC, account)
            return bool(query(home, "events", {"event_type": intake.FILLS_MAY_BE_MISSING}))

        wait_for(gap, 10, "the gap seen", interval=0.3)
        time.sleep(RECOVERY_SETTLE_S + 1.0)
        assert trades_of("21") == []  # past the settle time, but the connector still holds records for us
        record = intake.real_trade_record(messages.to_wire(fill(21, 201, t0)), closing=False)
        assert write(home, "trades", [record]).acked == [record["id"]]  # its outbox hands the fill over
        heartbeat(0)
        wait_for(lambda: "fills_recovered" in home.request("persistence", "status")["progress"], 10,
                 "the recovery done")
        got = trades_of("21")
        assert len(got) == 1 and got[0]["id"] == record["id"] and got[0]["comment"] != intake.RECOVERED_OPEN_COMMENT
        assert not query(home, "events", {"event_type": intake.FILLS_RECOVERED})
    finally:
        conn.close()
