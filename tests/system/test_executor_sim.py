"""Executor acceptance against the real simulator and the real connector process.

Signals come from the test on the preditor's endpoints (the preditor process is not started); the simulator runs
on a manual clock and the test advances it one bar per signal. After every action the simulator's positions are
sampled, so every position that ever existed is known by its label (the client order id), and at the end the
simulator's own deal list proves that no client order id ever opened twice.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
from harness import Home, wait_for
from system.trading_rig import (
    START_BAR,
    Ledger,
    Listener,
    ManualClient,
    PreditorStandIn,
    Sim,
    bars,
    cleanup,
    command,
    copy_overlay,
    start_broker_side,
    start_executor,
    step,
    symbols_config,
)

from common import bus, messages
from common.order_label import OrderAction, client_order_id

LONG, SHORT, WAIT = 1, -1, 0
BARS = bars()


class Rig:
    def __init__(self, tmp_path, *executor_args: str, overlay: dict | None = None, also_enabled: tuple = (),
                 start_bar: int | None = None):
        self.home = Home(tmp_path)
        self.sim = Sim(self.home) if start_bar is None else Sim(self.home, start_bar=start_bar)
        copy_overlay(self.home, {"broker": {"sim": {"port": self.sim.port, "control_port": -1}},
                                 "runtime": {"request_timeout_ms": 5000}, "connector": {"account_interval_s": 1.0},
                                 **(overlay or {})})
        symbols_config(self.home)
        if also_enabled:  # more symbols traded like EURUSD (their signals come from the test all the same)
            path = self.home.root / "config" / "executor_symbols.json"
            raw = json.loads(path.read_text())
            path.write_text(json.dumps({**raw, **{s: {**raw["EURUSD"], "max_spread_pips": 50.0}
                                                  for s in also_enabled}}, indent=2))
        self.pred = PreditorStandIn(self.home)
        self.acks: Listener | None = None
        self.closed: Listener | None = None
        self.ledger = Ledger(self.sim)
        try:
            start_broker_side(self.home, self.sim)
            start_executor(self.home, *executor_args)
            self.acks = Listener(self.home)
            self.closed = Listener(self.home, "connector", ("closed.",))
            self.acks.wait_live()
            self.closed.wait_live()
        except BaseException:
            self.close()  # no process outlives a rig that did not start
            raise

    def signal(self, direction: int, intensity: int = 1, expect_ack: bool = True,
               previous_direction: int | None = None) -> list[messages.Ack]:
        """Close the next bar at the simulator, publish its signal, wait for the executor's ack(s)."""
        index = self.sim.advance_bar()["bar_index"]
        bar = BARS[index - 1]
        self.pred.signal(bar, direction, intensity, previous_direction=previous_direction)
        got = self.acks.wait_ack(bar.time) if expect_ack else []
        self.ledger.sample()
        return got

    def last_bar(self):
        return BARS[self.sim.status()["bar_index"] - 1]

    def positions(self) -> list[tuple[str, int]]:
        return [(p["side"], p["volume"]) for p in self.ledger.sample()]

    def close(self) -> None:
        cleanup(self.acks, self.closed, self.pred)
        self.home.close()
        self.sim.stop()


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


def final(acks: list[messages.Ack]) -> tuple[str, str]:
    return acks[-1].status, acks[-1].reason


def test_replay_flips_stop_loss_manual_close_pause_and_kill(rig):
    opened: list[str] = []  # client order ids the executor acked OK on OPEN

    def expect(direction, intensity, status, reason, positions):
        acks = rig.signal(direction, intensity)
        assert final(acks) == (status, reason), acks
        assert rig.positions() == positions
        for a in acks:
            if a.details.get("action") == "OPEN" and a.status == "OK":
                opened.append(a.details["client_order_id"])
        return acks

    # first signal after boot is not an edge; a repeat is a missed entry; WAIT ends the wait
    expect(LONG, 1, "WAIT_SYNC", "FIRST_SIGNAL", [])
    expect(LONG, 1, "WAIT_SYNC", "MISSED_ENTRY", [])
    expect(WAIT, 0, "OK", "FLAT", [])
    acks = expect(LONG, 2, "OK", "EDGE", [("BUY", 300_000)])  # 0.03 lot for intensity 2
    assert acks[-1].details["reference_price"] == rig.last_bar().close
    assert acks[-1].details["slippage_pips"] == pytest.approx(
        (acks[-1].details["fill_price"] - rig.last_bar().close) * 10_000, abs=0.01)
    expect(LONG, 3, "OK", "INTENSITY_IGNORED", [("BUY", 300_000)])  # never resized
    expect(SHORT, 1, "OK", "REVERSAL", [])  # flip: close, the new move waits for an edge
    expect(SHORT, 1, "WAIT_SYNC", "MISSED_ENTRY", [])
    expect(WAIT, 0, "OK", "FLAT", [])
    expect(SHORT, 1, "OK", "EDGE", [("SELL", 100_000)])

    # pause blocks openings only (through the operator's own command line)
    res = rig.home.oracle("ctl", "pause", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["reply"]["paused"] is True, res.stderr
    expect(WAIT, 0, "OK", "SIGNAL_WAIT", [])
    expect(LONG, 1, "SKIP", "PAUSED", [])
    res = rig.home.oracle("ctl", "resume", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["reply"]["paused"] is False, res.stderr
    expect(LONG, 1, "WAIT_SYNC", "MISSED_ENTRY", [])  # the blocked edge was consumed
    expect(WAIT, 0, "OK", "FLAT", [])
    expect(LONG, 1, "OK", "EDGE", [("BUY", 100_000)])

    # a person closes the position in another cTrader client: never reopened until a new edge
    ticket = rig.ledger.sample()[0]["position_id"]
    assert ManualClient(rig.sim).close(ticket).success
    ext = wait_for(lambda: [c for c in rig.closed.poll() if c.ticket == ticket], 10, "closed event")
    assert ext[0].external and ext[0].reason == "EXTERNAL"
    expect(LONG, 1, "WAIT_SYNC", "MISSED_ENTRY", [])
    expect(WAIT, 0, "OK", "FLAT", [])

    # stop loss at the broker: a tight SL (1 USD at 0.01 lot = 10 pips) set by command, hit by the replay
    res = rig.home.oracle("ctl", "set-symbol-config", "EURUSD", "sl_usd=1.0", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["reply"]["config"]["sl_usd"] == 1.0, res.stderr
    expect(LONG, 1, "OK", "EDGE", [("BUY", 100_000)])
    ticket = rig.ledger.sample()[0]["position_id"]
    for _ in range(60):
        if not rig.positions():
            break
        rig.sim.advance_bar()
    sl = wait_for(lambda: [c for c in rig.closed.poll() if c.ticket == ticket], 10, "stop loss close")
    assert sl[0].reason == "SL_TP" and sl[0].external and sl[0].net_profit < 0
    expect(LONG, 1, "WAIT_SYNC", "MISSED_ENTRY", [])  # the train left: no re-entry after the SL
    command(rig.home, "set_symbol_config", symbol="EURUSD", changes={"sl_usd": 10.0})
    expect(WAIT, 0, "OK", "FLAT", [])

    # kill -9 between a signal and its fill: the fill is held back 3 s at the simulator
    rig.sim.cmd("delay", seconds=4.0, count=2, types=["ProtoOAExecutionEvent"])  # accepted + filled
    index = rig.sim.advance_bar()["bar_index"]
    kill_bar = BARS[index - 1]
    rig.pred.signal(kill_bar, LONG, 1)
    time.sleep(1.5)  # the executor decided at once and waits for the connector, which waits for the fill
    rig.home.kill("executor")
    assert rig.acks.acks_for(kill_bar.time) == []  # killed before its fill was known
    wait_for(lambda: rig.ledger.sample(), 15, "the fill at the simulator")
    # load + sync, then the orders of the signal the killed process had decided (kept in its state file): the same
    # order again, answered by the connector with the first result for its id, and the ack the killed one owed
    start_executor(rig.home)
    cid = client_order_id("EURUSD", kill_bar.time, OrderAction.OPEN)
    acks = rig.acks.wait_ack(kill_bar.time)
    assert [(a.status, a.reason, a.details["client_order_id"]) for a in acks] == [("OK", "EDGE", cid)], acks
    status = rig.home.status_of("executor")
    assert status["last_decisions"] == {"EURUSD": "EDGE"}
    assert status["last_bar_time"] == {"EURUSD": kill_bar.time}
    rig.pred.signal(kill_bar, LONG, 1)  # the same signal again (a replay): ignored
    time.sleep(0.5)
    assert rig.home.status_of("executor")["progress"].get("signals_replayed", 0) >= 1
    expect(LONG, 1, "OK", "SYNCED", [("BUY", 100_000)])

    # the broker ends as the sync rule says, and no client order id ever opened twice
    assert [p["label"] for p in rig.ledger.sample()] == [cid]
    labels = rig.ledger.assert_no_duplicate()
    assert set(labels) == {*opened, cid}
    saved = rig.sim.saved()
    assert sum(not d["closing"] for d in saved["deals"]) == len(opened) + 1
    executor = rig.home.status_of("executor")
    assert executor["orphans"] == [] and executor["halted"] is False


def test_dry_run_sends_nothing(tmp_path):
    r = Rig(tmp_path, "--dry-run")
    try:
        assert final(r.signal(WAIT)) == ("OK", "FLAT")
        acks = r.signal(LONG)  # an edge: the open is decided, not sent
        assert final(acks) == ("DRY_RUN", "EDGE")
        assert acks[-1].details["client_order_id"] == client_order_id("EURUSD", r.last_bar().time, OrderAction.OPEN)
        assert acks[-1].details["volume"] == 0.01  # lots
        assert r.positions() == []
        # a position opened by a person, to see that closes are not sent either
        manual = ManualClient(r.sim).open(1, 0.01, "manual-1")
        assert manual.success
        acks = r.signal(SHORT)
        assert final(acks) == ("DRY_RUN", "REVERSAL")
        assert acks[-1].details["client_order_id"] == client_order_id(
            "EURUSD", r.last_bar().time, OrderAction.CLOSE, seq=manual.ticket)
        assert r.positions() == [("BUY", 100_000)]
        assert len(r.sim.saved()["deals"]) == 1  # the person's own opening, nothing else
        status = r.home.status_of("executor")
        assert status["dry_run"] is True
        assert status["progress"].get("orders_sent", 0) == status["progress"].get("closes_sent", 0) == 0
    finally:
        r.close()


def test_halted_refuses_openings_and_the_emergency_closes_everything(tmp_path):
    r = Rig(tmp_path)
    alerts = Listener(r.home, "executor", ("alert.",))
    cfg = r.home.config()
    orch = bus.Publisher(r.home.ctx, cfg.endpoint("orchestrator", "pub"), "orchestrator", bus.new_epoch())

    def system(state: str) -> None:
        def seen():
            orch.publish(messages.SYS_STATE_TOPIC, messages.SysState(state, time.time_ns()))
            return r.home.status_of("executor")["system_state"] == state
        wait_for(seen, 10, f"executor sees {state}")

    try:
        alerts.wait_live()
        assert final(r.signal(WAIT)) == ("OK", "FLAT")
        assert final(r.signal(LONG)) == ("OK", "EDGE")
        system(messages.HALTED)
        assert final(r.signal(WAIT)) == ("OK", "SIGNAL_WAIT") and r.positions() == []  # closes still go
        assert final(r.signal(LONG)) == ("SKIP", "HALTED") and r.positions() == []
        system(messages.RUNNING)
        assert final(r.signal(WAIT)) == ("OK", "FLAT")
        assert final(r.signal(LONG)) == ("OK", "EDGE") and r.positions() == [("BUY", 100_000)]

        # emergency drawdown: any loss is one now (the spread of the open position), seen on the next equity update
        command(r.home, "set_risk_config", changes={"dd_limit_pct": 0.0001, "dd_emergency_pct": 0.0001})
        halted = wait_for(lambda: [a for a in alerts.poll() if a.kind == "halted"], 20, "alert.halted")
        assert "EMERGENCY_DD" in halted[0].message and halted[0].severity == "critical"
        wait_for(lambda: r.positions() == [], 10, "every position closed")
        status = r.home.status_of("executor")
        assert status["halted"] is True and status["halt_reason"] == "EMERGENCY_DD"
        assert final(r.signal(WAIT)) == ("OK", "FLAT")
        assert final(r.signal(LONG)) == ("SKIP", "HALTED")
        r.home.kill("executor")  # the halt survives a crash: only a person lifts it
        start_executor(r.home)
        status = r.home.status_of("executor")
        assert status["halted"] is True and status["risk"]["session_start_balance"] == 10_000.0
        r.acks.wait_live()
        assert final(r.signal(LONG)) == ("WAIT_SYNC", "MISSED_ENTRY")  # the last LONG was seen again at sync
        assert final(r.signal(WAIT)) == ("OK", "FLAT")
        assert final(r.signal(LONG)) == ("SKIP", "HALTED")
        # a person decides: limits back, halt lifted
        command(r.home, "set_risk_config", changes={"dd_emergency_pct": 10.0, "dd_limit_pct": 5.0})
        assert command(r.home, "reset_halt").halted is False
        assert final(r.signal(WAIT)) == ("OK", "FLAT")
        assert final(r.signal(LONG)) == ("OK", "EDGE")
        r.ledger.assert_no_duplicate()
    finally:
        cleanup(alerts, orch)
        r.close()


def test_a_signal_missed_across_a_preditor_restart_is_fetched(rig):
    assert final(rig.signal(WAIT)) == ("OK", "FLAT")
    # the preditor restarts and decides the next bar before the executor hears it: only its memory has the signal
    index = rig.sim.advance_bar()["bar_index"]
    bar = BARS[index - 1]
    rig.pred.pub.close()
    with rig.pred.lock:
        rig.pred.last["EURUSD"] = messages.Signal("EURUSD", bar.time, bar.close, 1, LONG, 1, 1, 0.0)
    rig.pred.pub = bus.Publisher(rig.pred.ctx, rig.home.config().endpoint("preditor", "pub"), "preditor",
                                 bus.new_epoch())

    def beat() -> list[messages.Ack]:  # its heartbeats: a new epoch for the executor
        rig.pred.pub.publish(messages.hb_topic("preditor"), messages.Heartbeat("preditor", 1, 1, "RUNNING", 1.0, 0))
        return rig.acks.acks_for(bar.time)

    acks = wait_for(beat, 15, "the missed signal's ack", interval=0.3)
    assert final(acks) == ("OK", "EDGE")
    assert rig.positions() == [("BUY", 100_000)]
    progress = rig.home.status_of("executor")["progress"]
    assert progress["preditor_gaps"] >= 1 and progress["last_signals_asked"] >= 2  # sync + the repair


def test_a_first_signal_whose_twin_turned_at_that_bar_is_an_edge(rig):
    """Right after boot the executor has evaluated no signal; a live signal says the twin's direction at the bar
    before: the same direction is a move that started before we watched, another one is an edge we saw."""
    acks = rig.signal(LONG, 1, previous_direction=LONG)
    assert final(acks) == ("WAIT_SYNC", "FIRST_SIGNAL") and rig.positions() == []
    acks = rig.signal(WAIT, 0, previous_direction=LONG)
    assert final(acks) == ("OK", "FLAT")
    # an ordered stop forgets the previous signals, and a preditor still warming up has no last signal to give
    # at the sync: the next boot's first signal is judged on the twin's direction at the bar before
    step(rig.home, "executor", "executor.stop")
    rig.home.kill("executor", signal.SIGTERM)
    with rig.pred.lock:
        rig.pred.last.clear()
    start_executor(rig.home)
    rig.acks.wait_live()
    acks = rig.signal(SHORT, 1, previous_direction=WAIT)
    assert final(acks) == ("OK", "EDGE") and rig.positions() == [("SELL", 100_000)]


def test_an_edge_right_after_a_broker_reconnect_opens_on_the_fresh_quote(rig):
    """The broker session drops and the executor hears it; the next edge's positions request waits for the
    reconnect. Its answer proves the session is up again, even when the connector's conn.state saying so is still
    queued behind the batch: the opening goes on the fresh quote (not NO_QUOTE)."""
    assert final(rig.signal(WAIT)) == ("OK", "FLAT")
    assert rig.sim.cmd("drop", refuse_s=1.0)["dropped"] >= 1
    wait_for(lambda: rig.home.status_of("executor")["connected"] is False, 10, "the executor hears the drop")
    acks = rig.signal(LONG)
    assert final(acks) == ("OK", "EDGE"), acks
    assert rig.positions() == [("BUY", 100_000)]


def test_a_rejected_order_fails_and_its_edge_is_consumed(rig):
    assert final(rig.signal(WAIT)) == ("OK", "FLAT")
    rig.sim.cmd("reject_orders", count=1, code="NOT_ENOUGH_MONEY")
    acks = rig.signal(LONG)
    # the connector's typed error is the reason (BROKER_ERROR from a connector that does not type its errors yet)
    assert final(acks) == ("FAIL", acks[-1].details.get("error_code", "BROKER_ERROR"))
    assert "NOT_ENOUGH_MONEY" in acks[-1].details["detail"]
    assert rig.positions() == []
    assert final(rig.signal(LONG)) == ("WAIT_SYNC", "MISSED_ENTRY")  # not retried on a later bar
    assert rig.sim.saved()["deals"] == []


def test_a_signal_waits_for_a_dead_connector_and_is_then_carried_out(rig):
    assert final(rig.signal(WAIT)) == ("OK", "FLAT")
    rig.home.kill("connector")
    index = rig.sim.advance_bar()["bar_index"]
    bar = BARS[index - 1]
    rig.pred.signal(bar, LONG, 1)
    acks = rig.acks.wait_ack(bar.time, timeout=30)
    assert final(acks) == ("FAIL", "NO_CONNECTOR")  # said at once; the desired state is kept and retried
    start_broker_side(rig.home, rig.sim)
    acks = wait_for(lambda: (lambda a: a if len(a) == 2 else None)(rig.acks.acks_for(bar.time)), 60,
                    "the retried signal's ack")
    assert final(acks) == ("OK", "EDGE")  # decided only once the inputs were there: still the edge it was
    assert rig.positions() == [("BUY", 100_000)]
    rig.ledger.assert_no_duplicate()


def test_orphans_are_reported_and_stop_closes_everything(tmp_path):
    r = Rig(tmp_path, overlay={"close_on_exit": True})
    alerts = Listener(r.home, "executor", ("alert.",))
    try:
        alerts.wait_live()
        assert final(r.signal(WAIT)) == ("OK", "FLAT")
        assert final(r.signal(LONG)) == ("OK", "EDGE")
        orphan = ManualClient(r.sim).open(-1, 0.01, "by-hand", symbol="USDJPY")  # no model trades USDJPY
        assert orphan.success
        result = step(r.home, "executor", "executor.sync").result  # what the orchestrator does on a reconnect
        assert result["orphans"] == ["USDJPY"] and result["lot_problems"] == {}
        assert wait_for(lambda: [a for a in alerts.poll() if a.kind == "orphan"], 10, "alert.orphan")
        assert r.home.status_of("executor")["orphans"] == ["USDJPY"]
        assert final(r.signal(LONG)) == ("OK", "SYNCED") and len(r.positions()) == 2  # the orphan is left alone

        open_ids = sorted(p["position_id"] for p in r.ledger.sample())
        result = step(r.home, "executor", "executor.stop").result
        assert sorted(result["closed"]) == open_ids
        wait_for(lambda: r.sim.status()["positions"] == [], 10, "everything closed")
        assert final(r.signal(LONG)) == ("SKIP", "STOPPED")
        r.ledger.assert_no_duplicate()
    finally:
        cleanup(alerts)
        r.close()


def test_a_signal_asks_the_connector_once_and_an_opening_uses_the_quote_and_account_of_that_answer(rig):
    def requests() -> dict[str, int]:
        progress = rig.home.status_of("executor")["progress"]
        return {op: progress.get(f"{op}_requests", 0) for op in ("positions", "symbol_info", "account")}

    assert final(rig.signal(WAIT)) == ("OK", "FLAT")  # the first signal of a symbol learns its spec
    before = requests()
    assert final(rig.signal(WAIT)) == ("OK", "FLAT")
    assert requests() == {**before, "positions": before["positions"] + 1}
    mid = requests()
    assert final(rig.signal(LONG)) == ("OK", "EDGE")  # planned on the quote and account the positions came with
    assert requests() == {**mid, "positions": mid["positions"] + 1}
    assert rig.positions() == [("BUY", 100_000)]


def test_the_orders_of_signals_that_arrive_together_are_out_at_the_same_time(tmp_path):
    r = Rig(tmp_path, also_enabled=("USDJPY",))
    try:
        def together(direction: int) -> dict[str, tuple[str, str]]:
            bar = BARS[r.sim.advance_bar()["bar_index"] - 1]
            for symbol in ("EURUSD", "USDJPY"):
                r.pred.signal(bar, direction, 1, symbol=symbol)
            got = wait_for(lambda: {a.symbol: a for a in r.acks.acks_for(bar.time)}.keys() >= {"EURUSD", "USDJPY"}
                           and r.acks.acks_for(bar.time), 20, "both acks")
            r.ledger.sample()
            return {a.symbol: (a.status, a.reason) for a in got}

        assert together(WAIT) == {"EURUSD": ("OK", "FLAT"), "USDJPY": ("OK", "FLAT")}
        # each order's execution events held 1 s by the simulator: one after the other, they would take 2 s
        r.sim.cmd("delay", seconds=1.0, count=4, types=["ProtoOAExecutionEvent"])
        assert together(LONG) == {"EURUSD": ("OK", "EDGE"), "USDJPY": ("OK", "EDGE")}
        orders = r.home.status_of("connector")["orders"]
        assert orders["in_flight_peak"] == 2 and orders["in_flight"] == 0
        assert sorted(p["label"].split("-")[0] for p in r.ledger.sample()) == ["EURUSD", "USDJPY"]
        r.sim.cmd("delay", seconds=1.0, count=4, types=["ProtoOAExecutionEvent"])
        assert together(SHORT) == {"EURUSD": ("OK", "REVERSAL"), "USDJPY": ("OK", "REVERSAL")}  # closes, together
        assert r.home.status_of("connector")["orders"]["in_flight_peak"] == 2
        assert r.ledger.sample() == []
        r.ledger.assert_no_duplicate()
    finally:
        r.close()


def test_each_order_error_the_broker_sends_reaches_the_ack_typed(rig):
    """The broker's ProtoOAOrderErrorEvent (as the real server sends them) -> the connector's typed result -> the
    executor's ack: FAIL with the typed reason and the broker's code and words; an opening in a closed market is a
    SKIP, never sent again."""
    assert final(rig.signal(WAIT)) == ("OK", "FLAT")
    for code, status, reason in [
        ("TRADING_BAD_VOLUME", "FAIL", "BAD_VOLUME"),
        ("TRADING_BAD_STOPS", "FAIL", "BAD_STOPS"),
        ("PROTECTION_IS_TOO_CLOSE_TO_MARKET", "FAIL", "STOPS_TOO_CLOSE"),
        ("NOT_ENOUGH_MONEY", "FAIL", "NOT_ENOUGH_MONEY"),
        ("TRADING_DISABLED", "FAIL", "TRADING_DISABLED"),
        ("MARKET_CLOSED", "SKIP", "MARKET_CLOSED"),
    ]:
        rig.sim.cmd("order_error", count=1, code=code)
        acks = rig.signal(LONG)
        assert final(acks) == (status, reason), (code, acks)
        details = acks[-1].details
        assert details["broker_code"] == code and "injected" in details["detail"], details
        assert rig.positions() == []
        assert final(rig.signal(WAIT)) == ("OK", "FLAT")
    assert final(rig.signal(LONG)) == ("OK", "EDGE")  # a fault-free edge opens
    rig.sim.cmd("order_error", count=1, code="TRADING_DISABLED")
    acks = rig.signal(WAIT)  # its close refused: FAIL, the position stays ...
    assert final(acks) == ("FAIL", "TRADING_DISABLED") and acks[-1].details["action"] == "CLOSE"
    assert rig.positions() == [("BUY", 100_000)]
    assert final(rig.signal(WAIT)) == ("OK", "SIGNAL_WAIT")  # ... and the next signal closes it
    assert rig.positions() == []
    rig.ledger.assert_no_duplicate()


def last_bar_before_a_gap(after: int, weekday: int, hours: int) -> int:
    """The index of the last bar before a closed stretch of more than `hours`, on `weekday` (0 = Monday)."""
    return next(i for i in range(after, len(BARS) - 1)
                if BARS[i + 1].time - BARS[i].time > hours * 3600 and time.gmtime(BARS[i].time).tm_wday == weekday)


WEEKEND = last_bar_before_a_gap(START_BAR, 4, 24)  # a Friday's last bar
CHRISTMAS = last_bar_before_a_gap(START_BAR, 0, 6)  # Monday 2017-12-25 07:00 UTC: the holiday from 08:00 to 22:00


@pytest.mark.parametrize("last", [WEEKEND, CHRISTMAS], ids=["weekend", "holiday"])
def test_a_close_due_in_a_closed_market_is_sent_once_at_the_open_and_swap_is_charged(tmp_path, last):
    r = Rig(tmp_path, start_bar=last - 3)
    try:
        assert final(r.signal(WAIT)) == ("OK", "FLAT")
        assert final(r.signal(LONG)) == ("OK", "EDGE")
        (pos,) = r.ledger.sample()
        closed_at = (BARS[last].time + BARS[last + 1].time) // 2  # Saturday, or the holiday's afternoon
        r.sim.cmd("advance", until=closed_at)
        res = r.home.oracle("ctl", "close", "EURUSD", "--json")
        assert res.returncode == 0, res.stderr
        (ack,) = json.loads(res.stdout)["reply"]["acks"]
        assert (ack["status"], ack["reason"], ack["details"]["due_at_open"]) == ("FAIL", "MARKET_CLOSED", True)
        due = r.home.status_of("executor")["due_closes"]
        assert [d["ticket"] for d in due] == [pos["position_id"]]
        assert r.positions() == [("BUY", 100_000)]
        reopen = BARS[last + 1].time  # the next bar: its first point is the open
        r.sim.cmd("advance", until=reopen + 300)
        wait_for(lambda: r.positions() == [], 30, "the due close sent at the open")
        closes = [o for o in r.sim.cmd("orders")["orders"] if o["closing"]]
        assert len(closes) == 1 and closes[0]["position_id"] == pos["position_id"]  # sent once
        assert closes[0]["timestamp_ms"] >= reopen * 1000  # at the open, not before
        sent = wait_for(lambda: [a for a in r.acks.poll() if isinstance(a, messages.Ack) and a.status == "OK"
                                 and a.details.get("client_order_id") == due[0]["client_order_id"]], 10,
                        "the due close's ack")
        assert len(sent) == 1 and (sent[0].details["action"], sent[0].reason) == ("DUE_CLOSE", "MANUAL_CLOSE")
        assert r.home.status_of("executor")["due_closes"] == []
        closed = wait_for(lambda: [b for b in r.closed.poll() if isinstance(b, messages.PositionClosed)], 10,
                          "the close published")
        # a rollover (22:00 UTC) while it was held: -0.75 pip a day on 0.01 lot
        assert closed[-1].swap < 0 and closed[-1].commission < 0
        assert closed[-1].net_profit == pytest.approx(closed[-1].gross_profit + closed[-1].swap
                                                      + closed[-1].commission)
        r.ledger.assert_no_duplicate()
    finally:
        r.close()
