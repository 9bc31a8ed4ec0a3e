"""The connector issue's acceptance: the real simulator process, the real connector process, real ZeroMQ.

The whole system is booted once for the module (orchestrator + every worker, started directly; the simulator is
started before the connector by tests/harness.py) with the simulator in manual mode (speed 0): the test
moves the market with the simulator's control port, so every bar is known in advance from the CSV.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import Home, status_map, wait_for
from system.conntap import Tap

from common import bus, config, durable, failure, messages
from common.records.real_trades import RECOVERED_OPEN_COMMENT
from services.connector.sim.catalog import CATALOG
from services.connector.sim.control import control
from services.connector.sim.replay import CsvBar, parse_csv
from services.connector.sim.series import served_bars

CSV = Path(__file__).resolve().parents[2] / "data" / "EURUSD_H1_2017.csv"


@pytest.fixture(scope="module")
def csv_bars() -> list[CsvBar]:
    """The EURUSD H1 bars the simulator serves (the CSV's, volume in ticks), one per CSV bar."""
    source = parse_csv(CSV.read_text())
    served = served_bars(source, CATALOG["EURUSD"], "H1", source[0].time, source[-1].time + 3600)
    assert [b.time for b in served] == [b.time for b in source]
    return served


class System:
    def __init__(self, home: Home):
        self.home = home
        self.cfg = home.config()
        self.ctl_port = self.cfg.broker.sim.control_port

    def sim(self, cmd: str, **args) -> dict:
        return control(self.ctl_port, cmd, **args)

    def req(self, op: str, args=None, timeout_ms: int = 15000):
        return self.home.request("connector", op, args, timeout_ms=timeout_ms)

    def connector_status(self) -> dict:
        return status_map(self.req("status"))

    def connected(self) -> bool:
        return bool(self.connector_status()["broker"]["connected"])


def boot(home: Home) -> None:
    home.start("orchestrator")
    for s in config.WORKERS:
        home.start(s)
    home.wait_state("RUNNING", timeout=40)


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    # executor in dry-run: its sync would (rightly) close the test's positions on modelled symbols
    home = Home(tmp_path_factory.mktemp("conn"), {"broker": {"sim": {"speed": 0}}, "executor": {"dry_run": True}})
    try:
        boot(home)
        yield System(home)
    finally:
        home.close()


def csv_row(b: CsvBar) -> list:
    return [b.time, b.open, b.high, b.low, b.close, b.volume]


def closed_csv_before(csv_bars: list[CsvBar], t: int) -> list[CsvBar]:
    return [b for b in csv_bars if b.time < t]


# ---- boot -----------------------------------------------------------------------------------------


def test_whole_system_runs_with_the_connector_connected_to_the_simulator(system):
    status = system.home.status()
    assert status["system"] == "RUNNING"
    con = system.connector_status()
    assert con["broker"]["connected"] is True and con["broker"]["type"] == "sim"
    assert con["broker"]["port"] == system.cfg.broker.sim.port
    assert "connector.connect" in con["steps"] and con["subscriptions"] == {"EURUSD": ["H1"]}
    # the facts the orchestrator's health checks read, from the heartbeat
    view = status["services"]["connector"]
    assert view["state"] == "RUNNING"
    assert system.sim("status")["sessions"] >= 1
    assert not [i for i in status.get("issues", []) if i.startswith("connector")]


# ---- history --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 150, 1000])
def test_history_is_exactly_the_last_n_closed_bars_across_weekends(system, csv_bars, n):
    now_bar = system.sim("status")["bar_time"]
    res = system.req("history", messages.HistoryArgs("EURUSD", "H1", count=n))
    expected = [csv_row(b) for b in closed_csv_before(csv_bars, now_bar)[-n:]]
    assert res.symbol == "EURUSD" and res.timeframe == "H1"
    assert res.bars == expected
    if n >= 150:  # more than a week of H1 bars: the span holds a weekend gap
        gaps = [b[0] - a[0] for a, b in zip(res.bars, res.bars[1:], strict=False)]
        assert max(gaps) >= 48 * 3600


def test_history_since_and_until(system, csv_bars):
    now_bar = system.sim("status")["bar_time"]
    closed = closed_csv_before(csv_bars, now_bar)
    since = closed[-200].time
    res = system.req("history", messages.HistoryArgs("EURUSD", "H1", since=since))
    assert res.bars == [csv_row(b) for b in closed[-199:]]
    until = closed[-300].time
    res = system.req("history", messages.HistoryArgs("EURUSD", "H1", count=50, until=until))
    assert res.bars == [csv_row(b) for b in closed[-350:-300]]


def test_bad_requests_answer_clear_errors(system):
    for args, code in [
        (messages.HistoryArgs("NOPE", "H1", count=5), "unknown_symbol"),
        (messages.HistoryArgs("EURUSD", "H7", count=5), "bad_args"),
        (messages.HistoryArgs("EURUSD", "H1"), "bad_args"),
    ]:
        with pytest.raises(bus.RequestFailed) as err:
            system.req("history", args)
        assert err.value.code == code and err.value.message
    with pytest.raises(bus.RequestFailed) as err:
        system.req("order_open", messages.OrderOpenArgs("EURUSD", 2, 0.1, "x-bad-direction"))
    # refused when the request is decoded, by the args record's bounds, before the handler: the wire's bad_body
    assert err.value.code == "bad_body" and "direction: must be one of 1, -1, got 2" in err.value.message
    with pytest.raises(bus.RequestFailed) as err:
        system.req("subscribe", messages.SubscribeArgs("EURUSD", "W1"))
    assert err.value.code == "bad_args"
    assert system.connector_status()["broker"]["connected"] is True


# ---- live bars ------------------------------------------------------------------------------------


def bar_row(b: messages.Bar) -> list:
    return [b.time, b.open, b.high, b.low, b.close, b.volume]


def test_live_closed_bars_equal_the_csv_bars_exactly(system, csv_bars):
    tap = Tap(system.home, ["bar."])
    try:
        tap.poll(0.3)  # the SUB connects (slow joiner)
        start = system.sim("status")["bar_index"]
        system.sim("advance", bars=6)
        tap.wait(lambda g: len(g) >= 6, 10, "6 closed bars")
        tap.poll(0.5)
        bars = tap.bodies("bar.")
        assert [r.envelope.topic for r in tap.got] == ["bar.EURUSD.H1"] * 6
        assert all(b.symbol == "EURUSD" and b.timeframe == "H1" for b in bars)
        assert [bar_row(b) for b in bars] == [csv_row(b) for b in csv_bars[start : start + 6]]
    finally:
        tap.close()
    health = system.home.status()["services"]["connector"]
    assert health["state"] == "RUNNING"


# ---- symbols and orders ---------------------------------------------------------------------------


def order_open(system: System, symbol: str, direction: int, lots: float, cid: str, **kw) -> messages.OrderResult:
    return system.req("order_open", messages.OrderOpenArgs(symbol, direction, lots, cid, **kw))


def sim_positions(system: System, label: str) -> list[dict]:
    return [p for p in system.sim("status")["positions"] if p["label"] == label]


@pytest.mark.parametrize(
    "symbol, digits, pip, lot_units",
    [("EURUSD", 5, 0.0001, 100_000), ("USDJPY", 3, 0.01, 100_000), ("XAUUSD", 2, 0.1, 100), ("US500", 2, 1.0, 1)],
)
def test_symbol_info_converts_and_a_usd_stop_loss_becomes_the_right_relative_sl(system, symbol, digits, pip, lot_units):
    info = system.req("symbol_info", messages.SymbolArgs(symbol))
    assert info.digits == digits and info.pip_size == pytest.approx(pip) and info.lot_size == lot_units
    assert info.deposit_currency == "USD"
    assert 0 < info.min_lots <= info.step_lots * 10 and info.max_lots > info.min_lots
    if symbol == "USDJPY":  # JPY profit -> USD: divide by USDJPY
        assert info.quote_to_deposit == pytest.approx(1 / info.bid, rel=1e-3)
        assert info.pip_value_per_lot == pytest.approx(0.01 * 100_000 / info.bid, rel=1e-3)
    else:
        assert info.quote_to_deposit == 1.0
    assert info.ask > info.bid > 0
    # risk 50 USD: the price distance the test computes from symbol_info alone
    usd, lots = 50.0, round(info.min_lots * 10, 8)
    distance = usd / (lots * info.lot_size * info.quote_to_deposit)
    cid = f"sl-usd-{symbol}"
    res = order_open(system, symbol, 1, lots, cid, sl_distance=distance)
    assert res.success, res.error
    (pos,) = sim_positions(system, cid)
    assert pos["side"] == "BUY" and pos["entry_price"] == res.price
    expected_sl = round(pos["entry_price"] - round(distance, digits), digits)
    assert pos["stop_loss"] == pytest.approx(expected_sl, abs=10**-digits / 2)
    loss_at_stop = (pos["entry_price"] - pos["stop_loss"]) * lots * lot_units * info.quote_to_deposit
    assert loss_at_stop == pytest.approx(usd, abs=lots * lot_units * 10**-digits * info.quote_to_deposit)
    closed = system.req("order_close", messages.OrderCloseArgs(res.ticket))
    assert closed.success and not sim_positions(system, cid)


def test_stop_hit_is_published_as_an_external_close_with_the_brokers_pnl(system):
    tap = Tap(system.home, ["closed.", "fill.", "account"])
    try:
        tap.poll(0.3)
        balance_before = system.sim("status")["balance"]
        res = order_open(system, "EURUSD", 1, 0.1, "stop-hit-1", sl_distance=0.0004, comment="OT1|stop-hit-1")
        assert res.success
        tap.wait(lambda g: any(r.envelope.topic == "fill.EURUSD" for r in g), 5, "the fill")
        for _ in range(400):  # a quarter of an hour (15 instants) at a time: up to 100 hours
            system.sim("advance", ticks=15)
            if tap.poll(0.02) and tap.bodies("closed."):
                break
        tap.wait(lambda g: any(r.envelope.topic == "closed.EURUSD" for r in g), 5, "closed.EURUSD")
        tap.poll(0.3)
        # (a close from the previous test may still arrive here: the events of that test go out on the next tick)
        closes = [c for c in tap.bodies("closed.") if c.ticket == res.ticket]
        assert len(closes) == 1, closes
        (closed,) = closes
        assert closed.external is True and closed.reason == "SL_TP" and closed.symbol == "EURUSD"
        assert closed.label == "stop-hit-1" and closed.full is True and closed.direction == 1
        assert closed.comment == "OT1|stop-hit-1"  # the order's comment, from the position at the broker
        assert closed.pip_size == 0.0001
        balance_after = system.sim("status")["balance"]
        assert closed.net_profit == pytest.approx(balance_after - balance_before, abs=0.005)
        assert closed.balance == pytest.approx(balance_after)
        assert closed.net_profit < 0  # a stop loss: the broker's (negative) PnL
        (fill,) = [f for f in tap.bodies("fill.") if f.ticket == res.ticket and f.client_order_id == "stop-hit-1"]
        assert fill.direction == 1 and fill.volume == pytest.approx(0.1) and fill.comment == "OT1|stop-hit-1"
        tap.wait(
            lambda g: any(r.envelope.topic == "account" and r.envelope.body.balance == balance_after for r in g),
            10,
            "an account update after the close",
        )
    finally:
        tap.close()


def test_a_timed_out_request_retried_with_the_same_id_creates_exactly_one_order(system):
    deals_before = system.sim("status")["deals"]
    system.sim("delay", seconds=2.0, count=2, types=["ProtoOAExecutionEvent"])
    args = messages.OrderOpenArgs("EURUSD", -1, 0.2, "retry-once-1")
    with pytest.raises(bus.RequestTimeout):
        system.req("order_open", args, timeout_ms=400)
    res = system.req("order_open", args)  # the retry, same client_order_id
    assert res.success and res.ticket
    assert system.req("order_open", args).ticket == res.ticket
    assert len(sim_positions(system, "retry-once-1")) == 1
    assert system.sim("status")["deals"] == deals_before + 1
    assert system.req("order_close", messages.OrderCloseArgs(res.ticket, client_order_id="close-retry-1")).success
    again = system.req("order_close", messages.OrderCloseArgs(res.ticket, client_order_id="close-retry-1"))
    assert again.success and system.sim("status")["deals"] == deals_before + 2


def wait_reply(req: bus.Requester, timeout_s: float = 15.0) -> messages.OrderResult:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reply = req.take_reply()
        if reply is not None:
            assert reply.ok, reply.error_message
            return reply.result
        req.sock.poll(20)
    raise AssertionError("no reply")


def test_orders_overlap_a_held_fill_delays_no_other_order_and_one_id_stays_one_order(system):
    deals_before = system.sim("status")["deals"]
    system.sim("delay", seconds=1.5, count=2, types=["ProtoOAExecutionEvent"])  # the first order's accept and fill
    endpoint = system.cfg.endpoint("connector", "rep")
    held, again, other = (bus.Requester(system.home.ctx, endpoint, "test", 15000) for _ in range(3))
    try:
        held.send("order_open", messages.OrderOpenArgs("EURUSD", 1, 0.1, "overlap-held"))
        time.sleep(0.3)  # out at the broker, its execution events held by the simulator
        again.send("order_open", messages.OrderOpenArgs("EURUSD", 1, 0.1, "overlap-held"))  # asked again meanwhile
        other.send("order_open", messages.OrderOpenArgs("EURUSD", -1, 0.1, "overlap-other"))
        first = wait_reply(other)
        assert first.success and first.client_order_id == "overlap-other"
        assert held.take_reply() is None and again.take_reply() is None  # the held order answers later
        a, b = wait_reply(held), wait_reply(again)
        assert a.success and a.ticket and (b.ticket, b.price) == (a.ticket, a.price)
        assert len(sim_positions(system, "overlap-held")) == 1
        assert system.sim("status")["deals"] == deals_before + 2  # two orders, not three
        assert system.connector_status()["progress"].get("orders_joined", 0) >= 1
    finally:
        for r in (held, again, other):
            r.close()
    for ticket, cid in ((a.ticket, "close-overlap-held"), (first.ticket, "close-overlap-other")):
        assert system.req("order_close", messages.OrderCloseArgs(ticket, client_order_id=cid)).success


def test_orders_never_wait_behind_history(system):
    """A 20-model warmup asks 20 history(1000) at once; the broker serves at most 5 history requests a second, so
    they take seconds. An order asked meanwhile is answered long before they are (the connector serves history off
    its loop): ordering, not timing, is what this asserts."""
    endpoint = system.cfg.endpoint("connector", "rep")
    warmup = [bus.Requester(system.home.ctx, endpoint, "test", 120_000) for _ in range(20)]
    order = bus.Requester(system.home.ctx, endpoint, "test", 30_000)
    answered: list[str] = []
    try:
        for i, req in enumerate(warmup):
            req.send("history", messages.HistoryArgs("EURUSD", "H1", count=1000 - i))
        order.send("order_open", messages.OrderOpenArgs("EURUSD", 1, 0.01, "behind-history"))
        pending = {id(r): (f"history {i}", r) for i, r in enumerate(warmup)} | {id(order): ("order", order)}
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            for key, (name, req) in list(pending.items()):
                reply = req.take_reply()
                if reply is not None:
                    assert reply.ok, f"{name}: {reply.error_message}"
                    answered.append(name)
                    del pending[key]
            time.sleep(0.005)
        assert not pending, f"not answered: {[n for n, _ in pending.values()]}"
    finally:
        for r in (*warmup, order):
            r.close()
    # 20 history requests of ~1000 H1 bars need 40+ trendbar requests at the broker: 8 s or more at 5 a second
    assert answered.index("order") < 5, answered
    (pos,) = sim_positions(system, "behind-history")
    assert system.req("order_close", messages.OrderCloseArgs(pos["position_id"], client_order_id="c-behind")).success


# ---- faults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [
    {"cmd": "drop", "refuse_s": 1.0},  # the connection dies
    {"cmd": "expire_token"},  # the access token expires: refreshed, the session opened again
    {"cmd": "account_disconnect"},  # the server drops the account's session
    {"cmd": "client_disconnect", "reason": "maintenance"},  # the server cancels the connection
], ids=lambda f: f["cmd"])
def test_after_the_session_ends_no_bar_is_missed_or_repeated(system, csv_bars, fault):
    tap = Tap(system.home, ["bar.", "conn.state"])
    token = system.connector_status()["broker"]["token"]
    try:
        tap.poll(0.3)
        start = system.sim("status")["bar_index"]
        system.sim("advance", bars=2)
        tap.wait(lambda g: len(g) >= 2, 10, "2 bars")
        system.sim(**fault)
        system.sim("advance", bars=3)  # these close while the session is down or being opened again
        tap.wait(
            lambda g: (
                [b.connected for b in (r.envelope.body for r in g) if isinstance(b, messages.ConnectionState)]
                == [False, True]
            ),
            20,
            "conn.state lost then restored",
        )
        system.sim("advance", bars=2)
        tap.wait(lambda g: len([r for r in g if r.envelope.topic.startswith("bar.")]) >= 7, 15, "7 bars")
        tap.poll(0.5)
        bars = tap.bodies("bar.")
        assert [bar_row(b) for b in bars] == [csv_row(b) for b in csv_bars[start : start + 7]]
    finally:
        tap.close()
    assert system.connected()
    refreshed = system.connector_status()["broker"]["token"] != token
    assert refreshed == (fault["cmd"] == "expire_token")  # a new pair only when the old one died


def test_connector_kill_9_mid_replay_misses_no_bar_and_never_repeats_an_order(system, csv_bars):
    home = system.home
    tap = Tap(home, ["bar."])
    try:
        tap.poll(0.3)
        opened = order_open(system, "EURUSD", 1, 0.1, "before-kill-1")
        assert opened.success
        start = system.sim("status")["bar_index"]
        system.sim("advance", bars=3)
        tap.wait(lambda g: len(g) >= 3, 10, "3 bars")
        epoch = system.connector_status()["epoch"]
        home.kill("connector")  # SIGKILL
        system.sim("advance", bars=3)  # closed while the connector is dead
        home.start("connector")
        wait_for(
            lambda: (lambda s: s["epoch"] != epoch and s["broker"]["connected"] and s["state"] == "RUNNING")(
                system.connector_status()
            ),
            30,
            "the restarted connector connected",
        )
        system.sim("advance", bars=2)
        want = [b.time for b in csv_bars[start : start + 8]]
        try:
            tap.wait(lambda g: g and g[-1].envelope.body.time == want[-1], 20, "the last bar")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; connector: {system.connector_status()}") from None
        tap.poll(0.3)
        seen = [b.time for b in tap.bodies("bar.")]
        assert len(seen) == len(set(seen)), f"a bar was published twice: {seen}"
        assert seen == sorted(seen)
        # a consumer repairs a gap through history (bars are facts with times)
        repaired: list[int] = []
        for a, b in zip(seen, seen[1:], strict=False):
            missing = [t for t in want if a < t < b]
            if missing:
                res = system.req("history", messages.HistoryArgs("EURUSD", "H1", since=a, until=b))
                repaired += [row[0] for row in res.bars]
        # the new process itself published the 3 bars closed while it was dead, then the 2 live ones (a SUB that
        # reconnects after the first of them repairs them through history, as above)
        assert system.connector_status()["progress"]["bars_published"] == 5
        assert sorted(set(seen) | set(repaired)) == want
        restarted = home.status()["services"]["connector"]
        assert restarted["restarts"] >= 1 and restarted["state"] == "RUNNING"
    finally:
        tap.close()
    # the same client_order_id after the restart: answered from the journal, no second position
    again = order_open(system, "EURUSD", 1, 0.1, "before-kill-1")
    assert again.success and again.ticket == opened.ticket
    assert len(sim_positions(system, "before-kill-1")) == 1
    assert system.req("order_close", messages.OrderCloseArgs(opened.ticket)).success


# ---- start-up failures are clear --------------------------------------------------------------------


def step_connect(home: Home) -> messages.StepResult:
    return wait_for(
        lambda: home.request("connector", "step", messages.StepArgs("connector.connect"), timeout_ms=20000),
        30,
        "the connector's answer to connector.connect",
    )


def test_missing_ctrader_credentials_stop_the_connector_at_its_start_naming_them(tmp_path, monkeypatch):
    """A permanent failure (common/preflight.py): the connector says which variables are missing and exits 78 (not
    restarted by supervisord, shown FAILED: tests/system/test_permanent_failure.py) before it asks the broker
    anything, without a traceback."""
    for var in ("CTRADER_CLIENT_ID", "CTRADER_CLIENT_SECRET", "CTRADER_ACCESS_TOKEN", "CTRADER_ACCOUNT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CTRADER_CLIENT_ID", "someone")
    home = Home(tmp_path, {"broker": {"type": "ctrader", "environment": "live"}})
    try:
        proc = home.start("connector")
        assert proc.wait(timeout=60) == failure.EXIT_PERMANENT
        log = (home.root / "var" / "log" / "connector.log").read_text()
        assert ("ctrader needs the credentials: environment variables CTRADER_CLIENT_SECRET, CTRADER_ACCESS_TOKEN, "
                "CTRADER_ACCOUNT_ID not set") in log, log
        assert "CTRADER_CLIENT_ID," not in log  # the one that is set is not named
        assert "Traceback" not in log
    finally:
        home.close()


def test_an_unreachable_broker_fails_the_connect_step_with_the_address(tmp_path):
    home = Home(tmp_path, {"broker": {"connect_attempts": 2}})
    try:
        home.start("connector")
        home.kill("connector.sim")  # nothing listens on the configured port any more
        res = step_connect(home)
        assert res.ok is False
        port = home.config().broker.sim.port
        assert res.error.startswith(f"cannot connect to the sim broker at 127.0.0.1:{port}: "), res.error
        assert home.procs["connector"].poll() is None
        # the broker comes back: the step works now; disconnect and connect again also work
        home.start("connector.sim", "--from-config")
        wait_for(lambda: step_connect(home).ok, 30, "connector.connect ok once the simulator listens")
        assert home.status_of("connector")["broker"]["connected"] is True
        step = home.request("connector", "step", messages.StepArgs("connector.disconnect"), timeout_ms=20000)
        assert step.ok and step.result["connected"] is False
        assert step_connect(home).result["connected"] is True
        bars = home.request("connector", "history", messages.HistoryArgs("EURUSD", "H1", count=2), 10000).bars
        assert len(bars) == 2
    finally:
        home.close()


def test_connector_killed_while_an_order_is_in_flight_never_sends_it_twice(system):
    """The journal says `sent` with no outcome: after the restart the broker is asked before anything is resent."""
    home = system.home
    deals_before = system.sim("status")["deals"]
    epoch = system.connector_status()["epoch"]
    system.sim("delay", seconds=3.0, count=2, types=["ProtoOAExecutionEvent"])  # filled, the news held back
    args = messages.OrderOpenArgs("EURUSD", 1, 0.3, "in-flight-1")
    with pytest.raises(bus.RequestTimeout):
        system.req("order_open", args, timeout_ms=500)
    wait_for(lambda: sim_positions(system, "in-flight-1"), 5, "the order filled at the broker")
    home.kill("connector")  # SIGKILL while its order handler still waits for the outcome
    system.sim("clear")
    home.start("connector")
    wait_for(
        lambda: (lambda s: s["epoch"] != epoch and s["broker"]["connected"])(system.connector_status()),
        30,
        "the restarted connector connected",
    )
    res = system.req("order_open", args)
    assert res.success and res.recovered is True
    assert system.connector_status()["progress"]["orders_recovered"] == 1  # found through the journal's `sent`
    (pos,) = sim_positions(system, "in-flight-1")
    assert res.ticket == pos["position_id"]
    assert system.sim("status")["deals"] == deals_before + 1
    assert system.req("order_open", args).ticket == res.ticket
    # the restarted connector found the position open without having seen its fill: it recorded the opening from
    # the broker's deal list, the record its fill event would have made (keyed by the deal: no second one later)
    opening = lambda: [t for t in home.request("persistence", "query", messages.QueryArgs("trades", {}, 0)).records  # noqa: E731
                       if t["position_id"] == str(res.ticket) and t["action"] == "OPEN"]
    (recorded,) = wait_for(opening, 20, "the opening recorded")
    assert recorded["comment"] != RECOVERED_OPEN_COMMENT and recorded["client_order_id"] == "in-flight-1"
    assert (recorded["entry_price"], recorded["volume"]) == (res.price, 0.3)
    assert system.connector_status()["progress"]["openings_recovered"] == 1
    assert system.req("order_close", messages.OrderCloseArgs(res.ticket)).success


def test_an_opening_handed_over_before_a_kill_the_state_did_not_see_is_stored_once(system):
    """Killed after the fill's record went to the outbox and before the state said so: at the restart the position
    looks unrecorded, and its opening is taken from the deal list again, keyed by the same deal: one record."""
    home = system.home
    res = order_open(system, "EURUSD", -1, 0.2, "spooled-twice-1")
    assert res.success
    opening = lambda: [t for t in home.request("persistence", "query", messages.QueryArgs("trades", {}, 0)).records  # noqa: E731
                       if t["position_id"] == str(res.ticket) and t["action"] == "OPEN"]
    (first,) = wait_for(opening, 20, "the fill recorded")
    rejected = status_map(home.request("persistence", "status"))["progress"].get("records_rejected", 0)
    epoch = system.connector_status()["epoch"]
    home.kill("connector")
    # the state on disk as that kill leaves it: the position known from the order's answer, its record not said
    state = durable.JournaledState(home.root / "var" / "data" / system.cfg.connector.state_file)
    doc, _notes = state.load()
    assert doc is not None and doc["positions"][str(res.ticket)]["recorded"] is True
    doc["positions"][str(res.ticket)]["recorded"] = False
    state.commit(doc, changed=["positions"])
    state.close()
    home.start("connector")
    recorded_again = lambda s: (s["epoch"] != epoch and s["broker"]["connected"] and not s["outbox"]["pending"]  # noqa: E731
                                and s["progress"].get("openings_recovered") == 1)
    wait_for(lambda: recorded_again(system.connector_status()) or len(opening()) > 1, 30,
             "the restarted connector recorded the opening again and its outbox drained")
    assert opening() == [first]  # the same record (the fill's deal id): the store kept one
    assert status_map(home.request("persistence", "status"))["progress"].get("records_rejected", 0) == rejected
    assert system.req("order_close", messages.OrderCloseArgs(res.ticket)).success


def test_a_close_handed_over_before_a_kill_the_state_did_not_see_is_stored_once(system):
    """Killed after a close's record went to the outbox and before the state said the position is gone (found by a
    chaos run): at the restart the position looks closed while away. This connector asked that close (its order
    journal says so), so the close taken from the deal list is the live event's record again (CLIENT, same deal):
    one record at the store, nothing refused."""
    home = system.home
    res = order_open(system, "EURUSD", 1, 0.1, "closed-twice-1")
    assert res.success
    (held,) = [p for p in system.req("positions").positions if p.ticket == res.ticket]
    assert system.req("order_close", messages.OrderCloseArgs(res.ticket, client_order_id="closed-twice-1-C")).success
    closing = lambda: [t for t in home.request("persistence", "query", messages.QueryArgs("trades", {}, 0)).records  # noqa: E731
                       if t["position_id"] == str(res.ticket) and t["action"] == "CLOSE"]
    (first,) = wait_for(closing, 20, "the close recorded")
    assert first["comment"] == "CLIENT"
    rejected = status_map(home.request("persistence", "status"))["progress"].get("records_rejected", 0)
    epoch = system.connector_status()["epoch"]
    home.kill("connector")
    # the state on disk as such a kill leaves it: the position still known open
    state = durable.JournaledState(home.root / "var" / "data" / system.cfg.connector.state_file)
    doc, _notes = state.load()
    assert doc is not None and str(res.ticket) not in doc["positions"]
    doc["positions"][str(res.ticket)] = {"symbol": "EURUSD", "direction": 1, "open_time": held.open_time,
                                         "label": held.label, "comment": held.comment, "recorded": True}
    state.commit(doc, changed=["positions"])
    state.close()
    home.start("connector")
    told_again = lambda s: (s["epoch"] != epoch and s["broker"]["connected"] and not s["outbox"]["pending"]  # noqa: E731
                            and s["progress"].get("closes") == 1)
    wait_for(lambda: told_again(system.connector_status()), 30,
             "the restarted connector told the close again and its outbox drained")
    assert closing() == [first]  # the same record: the store kept one
    assert status_map(home.request("persistence", "status"))["progress"].get("records_rejected", 0) == rejected
    assert system.connector_status()["progress"].get("closes_external", 0) == 0


def test_a_stop_hit_while_the_connector_is_dead_is_published_after_its_restart(system):
    home = system.home
    res = order_open(system, "EURUSD", -1, 0.1, "away-stop-1", sl_distance=0.0004)
    assert res.success
    balance_before = system.sim("status")["balance"]
    epoch = system.connector_status()["epoch"]
    home.kill("connector")
    for _ in range(400):  # the market moves until the stop is hit, with nobody listening
        system.sim("advance", ticks=15)
        if not sim_positions(system, "away-stop-1"):
            break
    assert not sim_positions(system, "away-stop-1")
    balance_after = system.sim("status")["balance"]
    tap = Tap(home, ["closed."])
    try:
        home.start("connector")
        mine = lambda: [c for c in tap.bodies("closed.") if c.ticket == res.ticket]  # noqa: E731
        tap.wait(lambda g: mine(), 30, "closed.EURUSD after the restart")
        (closed,) = mine()
        assert closed.external is True and closed.label == "away-stop-1"
        assert closed.direction == -1 and closed.net_profit == pytest.approx(balance_after - balance_before, abs=0.005)
        assert system.connector_status()["epoch"] != epoch
        tap.poll(0.5)
        assert len(mine()) == 1
    finally:
        tap.close()


def test_the_simulator_is_verified_tls_by_default_against_the_certificate_it_keeps(tmp_path):
    home = Home(tmp_path, {})  # the default configuration: broker.sim.tls true
    try:
        home.start("connector")  # the simulator first, with --from-config: it writes its certificate
        res = step_connect(home)
        assert res.ok is True, res.error
        assert res.result["tls"] is True and res.result["verify"] is True and res.result["connected"] is True
        cert = tmp_path / "var" / "data" / "sim-broker-cert.pem"
        key = cert.with_suffix(".key")
        assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE") and (key.stat().st_mode & 0o777) == 0o600
        bars = home.request("connector", "history", messages.HistoryArgs("EURUSD", "H1", count=3), 10000).bars
        assert len(bars) == 3
    finally:
        home.close()


def test_a_connector_that_does_not_trust_the_certificate_cannot_connect(tmp_path):
    home = Home(tmp_path, {"broker": {"connect_attempts": 1}})
    try:
        home.start_sim()
        (tmp_path / "var" / "data" / "sim-broker-cert.pem").write_bytes(_other_certificate())
        home.start("connector")
        res = step_connect(home)
        assert res.ok is False and "CERTIFICATE_VERIFY_FAILED" in res.error
    finally:
        home.close()


def _other_certificate() -> bytes:
    from services.connector.sim.certs import self_signed_pem

    return self_signed_pem()[0]
