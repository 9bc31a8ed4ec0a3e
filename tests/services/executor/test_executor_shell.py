"""The executor's shell (service.py) wired to a stand-in connector, in this process: no sockets, no broker.

The stand-in answers the connector's ops the way the real one does (positions in lots with the account and the
quotes, symbol_info, typed order results) and can refuse orders as MARKET_CLOSED; the executor's requests, its
published acks and its state file are what the tests look at. A restart is a second Executor on the same state
file (as a new process would be).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import bus, config, messages, wire
from common.bus import Received
from common.order_label import OrderAction, client_order_id
from common.sequence import Delivery, Seen
from services.executor import inputs
from services.executor.service import Executor

REPO = Path(__file__).resolve().parents[3]
H1 = 3600
T0 = 1_764_950_400  # bar times of the tests' signals start here
SPEC = {"symbol": "EURUSD", "digits": 5, "point": 1e-05, "pip_position": 4, "pip_size": 0.0001,
        "lot_size": 100000.0, "min_lots": 0.01, "step_lots": 0.01, "max_lots": 100.0, "base_asset": "EUR",
        "quote_asset": "USD", "deposit_currency": "USD", "quote_to_deposit": 1.0, "pip_value_per_lot": 10.0,
        "bid": 1.1, "ask": 1.10008, "spread": 8e-05, "min_sl_distance": 0.0, "min_tp_distance": 0.0}


class Connector:
    """Answers the executor's connector requests from a small book of positions."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.closed: set[str] = set()  # symbols whose market is closed: orders refused MARKET_CLOSED
        self.say_markets = True  # the positions reply lists the markets (False: today's connector, silent)
        self.refuse_open: tuple[str, str, str] | None = None  # (error_code, broker_code, words) for the next opens
        self.requests: list[tuple[str, Any]] = []
        self.down = False  # True: requests are not answered (a connector that died)
        self.last_signals: dict[str, messages.Signal] = {}  # what the preditor's `last_signals` answers
        self.account = {"balance": 10_000.0, "equity": 10_000.0, "margin": 0.0, "free_margin": 10_000.0,
                        "margin_level": 0.0, "currency": "USD", "leverage": 100.0}
        self._ticket = 100

    def position(self, direction: int, lots: float, symbol: str = "EURUSD", label: str = "") -> int:
        self._ticket += 1
        self.rows.append({"ticket": self._ticket, "symbol": symbol, "direction": direction, "volume": lots,
                          "open_price": 1.1, "open_time": 1.0, "sl": None, "tp": None, "label": label,
                          "comment": "", "used_margin": 11.0, "current_price": 1.1, "pnl": 0.0})
        return self._ticket

    def tickets(self) -> list[int]:
        return [r["ticket"] for r in self.rows]

    def orders(self, op: str) -> list[Any]:
        return [args for o, args in self.requests if o == op]

    def call(self, service: str, op: str, args: Any, timeout_s: float | None = None) -> Any:
        if service == "preditor":
            return messages.LastSignals(dict(self.last_signals))
        self.requests.append((op, args))
        if self.down:
            raise bus.RequestTimeout(f"{op}: no reply in time")
        if op == "positions":
            reply = {"positions": [dict(r) for r in self.rows], "account": dict(self.account),
                     "quotes": {"EURUSD": {"bid": 1.1, "ask": 1.10008, "quote_to_deposit": 1.0}},
                     "server_time": time.time()}
            if self.say_markets:
                reply["markets"] = {s: {"open": False, "since": 1.0} for s in sorted(self.closed)}
            return messages.from_wire(messages.Positions, reply)  # as the wire decodes it: checked
        if op == "symbol_info":
            return messages.from_wire(messages.SymbolInfo, dict(SPEC, symbol=args.symbol))
        if op == "account":
            return messages.from_wire(messages.AccountInfo, self.account)
        raise AssertionError(f"unexpected request {op}")

    def order(self, op: str, args: Any) -> messages.OrderResult:
        self.requests.append((op, args))
        if op == messages.OP_ORDER_OPEN.name:
            if args.symbol in self.closed:
                return refused(args.client_order_id, "MARKET_CLOSED")
            if self.refuse_open is not None:
                code, broker_code, words = self.refuse_open
                return messages.OrderResult(False, args.client_order_id, error=words, error_code=code,
                                            broker_code=broker_code)
            ticket = self.position(args.direction, args.lots, args.symbol, args.client_order_id)
            return messages.OrderResult(True, args.client_order_id, ticket=ticket, price=1.10008, volume=args.lots)
        row = next((r for r in self.rows if r["ticket"] == args.ticket), None)
        if row is None:
            return messages.OrderResult(False, args.client_order_id, error="POSITION_NOT_FOUND",
                                        error_code="POSITION_NOT_FOUND", broker_code="POSITION_NOT_FOUND")
        if row["symbol"] in self.closed:
            return refused(args.client_order_id, "MARKET_CLOSED")
        self.rows.remove(row)
        return messages.OrderResult(True, args.client_order_id, ticket=args.ticket, price=1.1, volume=row["volume"])


def refused(cid: str, code: str) -> messages.OrderResult:
    return messages.OrderResult(False, cid, error="Market is closed", error_code=code, broker_code="MARKET_CLOSED")


class Answered:
    """Stands for an OrderGroup: the stand-in connector answers every order at once."""

    def __init__(self, connector: Connector, requests: list[tuple[str, Any, str]]):
        self.lines: list = []
        self.results = [connector.order(op, args) for op, args, _cid in requests]

    def pump(self, now: float) -> bool:
        return True

    def sockets(self) -> list:
        return []

    def final(self) -> list:
        return list(self.results)


class Published:
    """Stands for the PUB socket: what the executor publishes, in order (one by one or together)."""

    def __init__(self, into: list[tuple[str, Any]]):
        self.into = into

    def publish(self, topic: str, body: Any) -> int:
        self.into.append((topic, body))
        return 0

    def publish_many(self, items: Any) -> None:
        self.into.extend(items)


class Rig:
    def __init__(self, root: Path, connector: Connector | None = None, overlay: dict | None = None):
        self.root = root
        if not (root / "config").exists():
            (root / "config").mkdir()
            (root / "config" / "default.yaml").symlink_to(REPO / "config" / "default.yaml")
            shutil.copy(REPO / "config" / "executor_symbols.json", root / "config" / "executor_symbols.json")
            (root / "models").symlink_to(REPO / "models")
            (root / "config" / "local.yaml").write_text(yaml.safe_dump(overlay or {}))
        self.connector = connector or Connector()
        self.published: list[tuple[str, Any]] = []
        self.ex = self.start()

    def start(self) -> Executor:
        ex = Executor(config.load(env={"ORACLE_HOME": str(self.root)}))
        ex.pub = Published(self.published)  # type: ignore[assignment]
        ex.persist = lambda table, record: None  # type: ignore[method-assign]
        ex._call = self.connector.call  # type: ignore[method-assign]
        ex._group = lambda requests: Answered(self.connector, requests)  # type: ignore[method-assign]
        return ex

    def restart(self) -> Executor:
        """A new process on the same state file (the old one is gone: kill -9)."""
        self.ex.ctx.destroy(linger=0)  # its sockets with it (the order lines opened at executor.load)
        self.ex = self.start()
        return self.ex

    def boot(self) -> dict:
        assert self.ex.on_step("executor.load", {})
        return self.ex.on_step("executor.sync", {})

    def hear(self, body: Any, src: str = "connector") -> None:
        env = wire.Envelope("t", "x", src, 1, 1, time.time_ns(), body)
        self.ex.on_message(Received(env, Seen(Delivery.IN_ORDER)))

    def turn(self) -> None:
        self.ex.on_tick(time.monotonic())
        self.ex._wait_flights()

    def signal(self, n: int, direction: int, intensity: int = 1) -> list[messages.Ack]:
        """The signal of bar `n`, carried out; its acks."""
        bar_time = T0 + n * H1
        sig = messages.Signal("EURUSD", bar_time, 1.1, 1, direction, intensity, 2, 0.0)
        before = len(self.published)
        self.hear(sig, "preditor")
        self.turn()
        return [b for t, b in self.published[before:] if t.startswith("ack.") and b.bar_time == bar_time]

    def acks(self) -> list[messages.Ack]:
        return [b for t, b in self.published if t.startswith("ack.")]

    def state(self) -> dict:
        return json.loads((self.root / "var" / "data" / "executor-state.json").read_text())

    def close(self) -> None:
        self.ex.ctx.destroy(linger=0)


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


def final(acks: list[messages.Ack]) -> tuple[str, str]:
    return acks[-1].status, acks[-1].reason


def test_an_opening_passes_lots_and_price_distances_straight_through(rig):
    rig.boot()
    assert final(rig.signal(1, 0)) == ("OK", "FLAT")
    acks = rig.signal(2, 1, 2)
    assert final(acks) == ("OK", "EDGE")
    [args] = rig.connector.orders("order_open")
    assert (args.lots, args.sl_distance, args.tp_distance) == (0.03, 0.00333, None)  # 10 USD at 0.03 lot; no TP
    assert args.client_order_id == client_order_id("EURUSD", T0 + 2 * H1, OrderAction.OPEN)
    assert acks[-1].details["volume"] == 0.03 and "requested_lots" not in acks[-1].details
    status = rig.ex.status_report()
    assert status["positions"][0].lots == 0.03 and status["due_closes"] == []
    assert rig.state()["version"] == 2


def test_lots_off_step_are_refused_or_rounded_down_as_the_symbol_says(rig):
    path = rig.root / "config" / "executor_symbols.json"
    raw = json.loads(path.read_text())
    raw["EURUSD"]["lot_weak"] = 0.015
    path.write_text(json.dumps(raw))
    result = rig.boot()
    assert result["lot_problems"]["EURUSD"][1].startswith("OFF_STEP")
    rig.signal(1, 0)
    acks = rig.signal(2, 1)
    assert final(acks) == ("SKIP", "OFF_STEP") and rig.connector.orders("order_open") == []
    assert (acks[-1].details["requested_lots"], acks[-1].details["off_step"]) == (0.015, "refuse")
    rig.ex._op_command(messages.CommandArgs("set_symbol_config", {"symbol": "EURUSD",
                                                                   "changes": {"off_step": "round_down"}}))
    rig.signal(3, 0)
    acks = rig.signal(4, 1)
    assert final(acks) == ("OK", "EDGE")
    [args] = rig.connector.orders("order_open")
    assert (args.lots, args.sl_distance) == (0.01, 0.01)
    details = acks[-1].details
    assert (details["volume"], details["requested_lots"], details["off_step"]) == (0.01, 0.015, "round_down")


# error code the connector answers, ack status, ack reason
TYPED = [
    ("BAD_VOLUME", "TRADING_BAD_VOLUME", "FAIL", "BAD_VOLUME"),
    ("BAD_STOPS", "TRADING_BAD_STOPS", "FAIL", "BAD_STOPS"),
    ("STOPS_TOO_CLOSE", "TRADING_BAD_STOPS", "FAIL", "STOPS_TOO_CLOSE"),
    ("NOT_ENOUGH_MONEY", "NOT_ENOUGH_MONEY", "FAIL", "NOT_ENOUGH_MONEY"),
    ("TRADING_DISABLED", "TRADING_DISABLED", "FAIL", "TRADING_DISABLED"),
    ("REJECTED", "REQUEST_FREQUENCY_EXCEEDED", "FAIL", "REJECTED"),
    ("NOT_CONNECTED", "", "FAIL", "NOT_CONNECTED"),
    ("NO_CONFIRMATION", "", "FAIL", "NO_CONFIRMATION"),
    ("MARKET_CLOSED", "MARKET_CLOSED", "SKIP", "MARKET_CLOSED"),
    ("", "", "FAIL", "BROKER_ERROR"),  # a connector that does not type its errors yet
]


@pytest.mark.parametrize("code,broker_code,status,reason", TYPED, ids=[t[0] or "untyped" for t in TYPED])
def test_a_refused_opening_is_acked_with_its_typed_error(rig, code, broker_code, status, reason):
    rig.boot()
    rig.signal(1, 0)
    rig.connector.refuse_open = (code, broker_code, "the broker's words")
    acks = rig.signal(2, 1)
    assert final(acks) == (status, reason)
    details = acks[-1].details
    assert "the broker's words" in details["detail"] and details.get("broker_code") == (broker_code or None)
    assert details.get("error_code") == (code or None)
    rig.connector.refuse_open = None
    assert final(rig.signal(3, 1)) == ("WAIT_SYNC", "MISSED_ENTRY")  # never sent again: the edge was consumed
    assert len(rig.connector.orders("order_open")) == 1


def test_an_opening_in_a_closed_market_is_a_missed_entry(rig):
    rig.boot()
    rig.signal(1, 0)
    rig.connector.closed.add("EURUSD")
    acks = rig.signal(2, 1)
    assert final(acks) == ("SKIP", "MARKET_CLOSED") and "not sent again" in acks[-1].details["detail"]
    rig.connector.closed.clear()
    rig.hear(messages.MarketState("EURUSD", True, 2.0))
    rig.turn()
    assert final(rig.signal(3, 1)) == ("WAIT_SYNC", "MISSED_ENTRY")
    assert len(rig.connector.orders("order_open")) == 1 and rig.ex.due.closes == ()


def test_a_close_refused_in_a_closed_market_is_due_survives_a_restart_and_goes_once_at_the_open(rig):
    ticket = rig.connector.position(1, 0.01, label="EURUSD-x-O")
    rig.boot()
    rig.signal(1, 1)  # in sync with the position
    rig.connector.closed.add("EURUSD")  # Friday evening: the market closes
    acks = rig.signal(2, 0)
    assert final(acks) == ("FAIL", "MARKET_CLOSED")
    assert acks[-1].details["due_at_open"] is True and "due at the open" in acks[-1].details["detail"]
    cid = client_order_id("EURUSD", T0 + 2 * H1, OrderAction.CLOSE, seq=ticket)
    assert [d["client_order_id"] for d in rig.state()["due_closes"]] == [cid]
    # the next signal's close of the same position is not sent: one close is due already
    acks = rig.signal(3, 0)
    assert final(acks) == ("SKIP", "MARKET_CLOSED") and cid in acks[-1].details["detail"]
    assert len(rig.connector.orders("order_close")) == 1

    rig.restart()  # the weekend: a kill -9, a new process; the sync sees the market listed closed
    result = rig.boot()
    assert result["due_closes"] == {"before": 1, "after": 1, "closed_markets": ["EURUSD"]}
    assert len(rig.connector.orders("order_close")) == 1 and rig.connector.tickets() == [ticket]

    rig.connector.closed.clear()  # Sunday evening: the first tick
    before = len(rig.published)
    rig.hear(messages.MarketState("EURUSD", True, 3.0, "first tick"))
    rig.turn()
    closes = rig.connector.orders("order_close")
    assert [c.client_order_id for c in closes] == [cid, cid]  # the same order, sent once at the open
    assert rig.connector.tickets() == []
    [ack] = [b for t, b in rig.published[before:] if t.startswith("ack.")]
    assert (ack.status, ack.reason, ack.details["action"], ack.bar_time) == ("OK", "SIGNAL_WAIT", "DUE_CLOSE",
                                                                               T0 + 2 * H1)
    assert rig.state()["due_closes"] == [] and rig.ex.status_report()["due_closes"] == []
    rig.hear(messages.MarketState("EURUSD", True, 4.0))  # another open: nothing is due any more
    rig.turn()
    assert len(rig.connector.orders("order_close")) == 2


def test_at_sync_a_due_close_goes_unless_its_market_is_listed_closed_and_a_gone_position_is_dropped(rig, caplog):
    kept = rig.connector.position(1, 0.01)
    gone = rig.connector.position(1, 0.01, symbol="USDJPY")  # an orphan, closed by a person below
    rig.boot()
    rig.connector.closed.update({"EURUSD", "USDJPY"})
    reply = rig.ex._op_command(messages.CommandArgs("close_all"))
    assert isinstance(reply, messages.Closing) and reply.closing == [kept, gone]
    assert [(a.status, a.reason) for a in reply.acks] == [("FAIL", "MARKET_CLOSED")] * 2
    assert [d["ticket"] for d in rig.state()["due_closes"]] == [kept, gone]

    rig.connector.rows = [r for r in rig.connector.rows if r["ticket"] != gone]  # closed by hand meanwhile
    rig.connector.closed.clear()
    rig.connector.say_markets = False  # a connector that says nothing of markets: none is known closed
    rig.restart()
    with caplog.at_level("INFO", logger="oracle.executor"):
        result = rig.boot()
    assert result["due_closes"]["after"] == 0
    assert "due close dropped: its position is gone" in caplog.text
    assert [c.ticket for c in rig.connector.orders("order_close")] == [kept, gone, kept]
    assert rig.connector.tickets() == [] and rig.state()["due_closes"] == []


def test_a_due_close_refused_again_at_the_open_waits_for_the_next_one(rig):
    ticket = rig.connector.position(-1, 0.01)
    rig.boot()
    rig.connector.closed.add("EURUSD")
    rig.ex._op_command(messages.CommandArgs("close", {"symbol": "EURUSD"}))
    rig.hear(messages.MarketState("EURUSD", True, 2.0))  # said open, but the broker still refuses
    rig.turn()
    due = rig.state()["due_closes"]
    assert [(d["ticket"], d["state"], d["sent"]) for d in due] == [(ticket, "WAITING", 1)]
    assert final(rig.acks()) == ("FAIL", "MARKET_CLOSED")
    rig.connector.closed.clear()
    rig.hear(messages.MarketState("EURUSD", True, 3.0))
    rig.turn()
    assert rig.connector.tickets() == [] and rig.state()["due_closes"] == []
    assert len({c.client_order_id for c in rig.connector.orders("order_close")}) == 1  # one order id throughout


def test_a_position_with_a_close_due_is_not_closed_again_by_a_command(rig):
    ticket = rig.connector.position(1, 0.01)
    rig.boot()
    rig.connector.closed.add("EURUSD")
    first = rig.ex._op_command(messages.CommandArgs("close", {"symbol": "EURUSD"})).acks
    assert [(a.status, a.reason, a.details["due_at_open"]) for a in first] == [("FAIL", "MARKET_CLOSED", True)]
    again = rig.ex._op_command(messages.CommandArgs("close_all")).acks
    assert [(a.status, a.reason) for a in again] == [("SKIP", "MARKET_CLOSED")]
    assert first[0].details["client_order_id"] in again[0].details["detail"]
    assert [c.ticket for c in rig.connector.orders("order_close")] == [ticket]  # one close sent, one due


def test_executor_status_is_one_typed_record_with_the_process_facts(rig):
    ticket = rig.connector.position(1, 0.01)
    rig.boot()
    rig.connector.closed.add("EURUSD")
    closing = rig.ex._op_command(messages.CommandArgs("close", {"symbol": "EURUSD"}))
    assert (closing.command, closing.symbol, closing.closing) == ("close", "EURUSD", [ticket])
    rig.hear(messages.MarketState("EURUSD", False, 2.0, "MARKET_CLOSED"))
    status = rig.ex._op_command(messages.CommandArgs("executor_status"))
    assert isinstance(status, messages.TradingState)
    assert [(p.ticket, p.symbol, p.direction, p.lots) for p in status.positions] == [(ticket, "EURUSD", 1, 0.01)]
    assert [(d.ticket, d.state, d.client_order_id) for d in status.due_closes] == [
        (ticket, "WAITING", rig.ex.due.closes[0].client_order_id)]
    assert status.markets == {"EURUSD": messages.MarketState("EURUSD", False, 2.0, "MARKET_CLOSED")}
    assert status.closed_markets == ["EURUSD"] and status.modelled == ["EURUSD"]
    assert (status.synced, status.connected, status.stopped, status.halted) == (True, True, False, False)
    assert wire.decode_reply([wire.encode_reply("r", status)], "command").result == status  # as the wire carries it


def test_a_due_close_whose_position_closes_meanwhile_is_dropped(rig):
    ticket = rig.connector.position(1, 0.01)
    rig.boot()
    rig.connector.closed.add("EURUSD")
    rig.ex._op_command(messages.CommandArgs("close", {"symbol": "EURUSD"}))
    assert len(rig.ex.due) == 1
    rig.connector.rows.clear()  # its stop loss at the open
    rig.hear(messages.PositionClosed(ticket, "EURUSD", 1, 0.01, 1.1, 1.09, -10.0, 0.0, -0.07, -10.07, 5.0, "SL_TP",
                                     True))
    assert rig.state()["due_closes"] == []
    rig.connector.closed.clear()
    rig.hear(messages.MarketState("EURUSD", True, 6.0))
    rig.turn()
    assert len(rig.connector.orders("order_close")) == 1  # nothing sent at the open


def test_the_emergency_close_in_a_closed_market_is_due(rig):
    rig.connector.position(1, 0.01)
    rig.boot()
    rig.connector.closed.add("EURUSD")
    rig.hear(messages.AccountUpdate(10_000.0, 8_900.0, 11.0, 8_889.0, "USD"))  # 11 % down: emergency
    assert rig.ex.risk.halted
    assert [(d["action"], d["reason"]) for d in rig.state()["due_closes"]] == [("EMERGENCY_CLOSE", "EMERGENCY_DD")]


def test_the_close_on_exit_in_a_closed_market_is_due_at_the_next_boot(tmp_path):
    rig = Rig(tmp_path, overlay={"close_on_exit": True})
    try:
        ticket = rig.connector.position(1, 0.01)
        rig.boot()
        rig.connector.closed.add("EURUSD")
        result = rig.ex.on_step("executor.stop", {})
        assert result["closed"] == [] and len(result["failed"]) == 1
        assert [(d["ticket"], d["action"]) for d in rig.state()["due_closes"]] == [(ticket, "CLOSE_ON_EXIT")]
        rig.connector.closed.clear()
        rig.restart()
        rig.boot()  # Monday: the market is open at the sync
        assert rig.connector.tickets() == [] and rig.state()["due_closes"] == []
    finally:
        rig.close()


def test_risk_counts_net_money(rig):
    rig.boot()
    # gross profit, net loss once commission and swap are paid: a loss for the streak
    for n in range(3):
        rig.hear(messages.PositionClosed(200 + n, "EURUSD", 1, 0.01, 1.1, 1.1001, 1.0, -0.5, -0.7, -0.2, 5.0,
                                         "SL_TP", True))
    assert rig.ex.risk.cooldown_until is not None  # 3 net losses in a row
    # equity is the broker's net figure, as sent
    rig.hear(messages.AccountUpdate(10_000.0, 9_990.0, 11.0, 9_979.0, "USD", gross_pnl=12.0, swap=-2.0,
                                    commission=-20.0))
    assert rig.ex.risk.equity == 9_990.0


def test_a_version_1_state_file_is_converted_and_its_orders_carried_out(tmp_path):
    """A version-1 executor died with an opening out (its volume in cents of a unit, its stop relative): the new one
    sends the same order, in lots and a price distance, with the same client order id."""
    bar_time = T0 + 5 * H1
    cid = client_order_id("EURUSD", bar_time, OrderAction.OPEN)
    sig = messages.to_wire(messages.Signal("EURUSD", bar_time, 1.1, 1, 1, 1, 2, 0.0))
    v1 = {"version": 1, "paused": False,
          "risk": {"session_start_balance": 10_000.0, "peak_equity": 10_000.0, "equity": 10_000.0,
                   "consecutive_losses": 1, "cooldown_until": None, "halted": False, "halt_reason": "",
                   "recent_close_ids": ["77"]},
          "last": {"EURUSD": {"bar_time": bar_time, "direction": 1, "intensity": 1}}, "acks": [],
          "intents": [{"signal": sig, "action": "OPEN", "reason": "EDGE", "allow_open": True, "closes": [],
                       "open": {"symbol": "EURUSD", "direction": 1, "volume": 300_000, "relative_stop_loss": 333,
                                "relative_take_profit": 0, "label": f"OT1|{cid}|2|1|1|10000|0.0|0.00|0.8|",
                                "client_order_id": cid},
                       "ack": None}]}
    (tmp_path / "var" / "data").mkdir(parents=True)
    (tmp_path / "var" / "data" / "executor-state.json").write_text(json.dumps(v1))
    rig = Rig(tmp_path)
    try:
        assert rig.ex.risk.consecutive_losses == 1  # the risk state carried over
        rig.boot()
        rig.turn()
        [args] = rig.connector.orders("order_open")
        assert (args.client_order_id, args.lots, args.sl_distance, args.tp_distance) == (cid, 0.03, 0.00333, None)
        [ack] = [a for a in rig.acks() if a.bar_time == bar_time]
        assert (ack.status, ack.reason, ack.details["volume"]) == ("OK", "EDGE", 0.03)
        state = rig.state()
        assert state["version"] == 2 and state["intents"] == [] and state["v1_intents"] == []
    finally:
        rig.close()


def test_a_version_1_order_of_an_unknown_symbol_is_not_sent_and_an_alert_names_it(tmp_path):
    sig = messages.to_wire(messages.Signal("EURUSD", T0, 1.1, 1, 1, 1, 2, 0.0))
    v1 = {"version": 1, "paused": False, "risk": {"session_start_balance": None, "peak_equity": None,
                                                  "equity": None},
          "intents": [{"signal": sig, "action": "OPEN", "reason": "EDGE", "allow_open": True, "closes": [],
                       "open": {"symbol": "EURUSD", "direction": 1, "volume": 100_000, "relative_stop_loss": 1000,
                                "relative_take_profit": None, "label": "l", "client_order_id": "EURUSD-x-O"},
                       "ack": None}]}
    (tmp_path / "var" / "data").mkdir(parents=True)
    (tmp_path / "var" / "data" / "executor-state.json").write_text(json.dumps(v1))
    rig = Rig(tmp_path)
    try:
        rig.boot()
        rig.connector.call = _no_symbol(rig.connector.call)  # type: ignore[method-assign]
        rig.ex._call = rig.connector.call  # type: ignore[method-assign]
        rig.turn()
        assert rig.connector.orders("order_open") == []
        [alert] = [b for t, b in rig.published if t == "alert.legacy_intent"]
        assert "EURUSD-x-O" in alert.message and alert.severity == "critical"
        assert rig.state()["v1_intents"] == []
    finally:
        rig.close()


def _no_symbol(call):
    from common import bus

    def answer(service: str, op: str, args: Any, timeout_s: float | None = None) -> Any:
        if op == "symbol_info":
            raise bus.RequestFailed(op, "unknown_symbol", f"{args.symbol} unknown")
        return call(service, op, args, timeout_s)

    return answer


def test_an_order_written_ahead_that_cannot_be_read_is_not_sent_and_an_alert_names_it(tmp_path):
    sig = messages.to_wire(messages.Signal("EURUSD", T0, 1.1, 1, 1, 1, 2, 0.0))
    state = {"version": 2, "paused": False, "risk": {"session_start_balance": None, "peak_equity": None,
                                                     "equity": None},
             "intents": [{"signal": sig, "action": "OPEN", "reason": "EDGE", "allow_open": True, "closes": [],
                          "open": {"symbol": "EURUSD", "direction": 1, "lots": 0.03, "label": "l",
                                   "client_order_id": "EURUSD-y-O"}, "ack": None}]}  # no sl/tp distances
    (tmp_path / "var" / "data").mkdir(parents=True)
    (tmp_path / "var" / "data" / "executor-state.json").write_text(json.dumps(state))
    rig = Rig(tmp_path)
    try:
        rig.boot()
        rig.turn()
        assert rig.connector.orders("order_open") == []
        [alert] = [b for t, b in rig.published if t == "alert.unreadable_intent"]
        assert "EURUSD-y-O" in alert.message and alert.severity == "critical"
        assert rig.state()["intents"] == []
        assert final(rig.signal(1, 0)) == ("OK", "FLAT")  # and the executor goes on
    finally:
        rig.close()


def test_a_catch_up_signal_is_recorded_and_never_acted_on(rig):
    persisted: list[tuple[str, dict]] = []
    rig.ex.persist = lambda table, record: persisted.append((table, record))  # type: ignore[method-assign]
    rig.boot()
    assert final(rig.signal(1, 0)) == ("OK", "FLAT")
    before = len(rig.published)
    late = messages.Signal("EURUSD", T0 + 2 * H1, 1.1, 1, 1, 1, 2, 0.0, 0, catch_up=True)  # decided after a restart
    rig.hear(late, "preditor")
    rig.turn()
    assert rig.connector.orders("order_open") == [] and rig.published[before:] == []
    assert rig.ex.status_report()["last_bar_time"]["EURUSD"] == T0 + H1
    assert ("signals", inputs.signal_record(late, H1)) in persisted  # recorded
    assert final(rig.signal(3, 1)) == ("OK", "EDGE")  # the latest position is acted on
    assert len(rig.connector.orders("order_open")) == 1


def two_symbols_of_one_bar(rig: Rig) -> None:
    """EURUSD and GBPUSD decided for bar 1: a bar after it is gathered until both signals are in."""
    rig.boot()
    rig.ex.timeframes["GBPUSD"] = rig.ex.timeframes["EURUSD"]
    for symbol in ("EURUSD", "GBPUSD"):
        rig.hear(messages.Signal(symbol, T0 + H1, 1.1, 1, 0, 0, 2, 0.0), "preditor")
    rig.turn()
    assert rig.ex.status_report()["last_bar_time"] == {"EURUSD": T0 + H1, "GBPUSD": T0 + H1}


def bar_acks(rig: Rig, bar_time: int) -> dict[str, tuple[str, str]]:
    return {a.symbol: (a.status, a.reason) for a in rig.acks() if a.bar_time == bar_time}


def test_a_batch_asks_its_positions_as_its_first_signal_arrives_and_decides_on_them(rig):
    two_symbols_of_one_bar(rig)
    asked = len(rig.connector.orders("positions"))
    rig.hear(messages.Signal("EURUSD", T0 + 2 * H1, 1.1, 1, 0, 0, 2, 0.0), "preditor")
    rig.turn()  # GBPUSD's signal is still on its way: the batch waits for it, its positions are asked now
    assert len(rig.connector.orders("positions")) == asked + 1 and rig.ex.pending_work() == 1
    rig.hear(messages.Signal("GBPUSD", T0 + 2 * H1, 1.1, 1, 0, 0, 2, 0.0), "preditor")
    rig.turn()
    assert len(rig.connector.orders("positions")) == asked + 1  # one request for the batch
    assert bar_acks(rig, T0 + 2 * H1) == {"EURUSD": ("OK", "FLAT"), "GBPUSD": ("OK", "FLAT")}
    rig.hear(messages.Signal("EURUSD", T0 + 3 * H1, 1.1, 1, 0, 0, 2, 0.0), "preditor")
    rig.turn()
    assert len(rig.connector.orders("positions")) == asked + 2  # and again for the next batch


def test_a_batch_whose_positions_find_the_connector_down_waits_for_it(rig):
    two_symbols_of_one_bar(rig)
    rig.connector.down = True
    rig.hear(messages.Signal("EURUSD", T0 + 2 * H1, 1.1, 1, 0, 0, 2, 0.0), "preditor")
    rig.turn()
    assert rig.ex.pending_work() == 1 and bar_acks(rig, T0 + 2 * H1) == {}
    rig.hear(messages.Signal("GBPUSD", T0 + 2 * H1, 1.1, 1, 0, 0, 2, 0.0), "preditor")
    rig.turn()  # the batch's first decision fails on the connector as its own request would: acked once, kept
    assert bar_acks(rig, T0 + 2 * H1) == {"EURUSD": ("FAIL", "NO_CONNECTOR")} and rig.ex.pending_work() == 2
    rig.connector.down = False
    rig.ex.on_tick(time.monotonic() + 2.0)  # past the retry's time
    rig.ex._wait_flights()
    assert bar_acks(rig, T0 + 2 * H1) == {"EURUSD": ("OK", "FLAT"), "GBPUSD": ("OK", "FLAT")}


def test_an_idle_executor_sleeps_until_its_next_timer_and_a_retry_wakes_it_on_time(rig):
    """No short poll (idle_poll_ms None): the loop sleeps until on_tick's first timer. Idle and synced, that is the
    summary line; a batch the connector failed is tried again at its retry time; the preditor's last signals
    asked again a second after the last ask; never a busy loop before the sync."""
    ex = rig.ex
    assert ex.idle_poll_ms is None
    ex._want_last_signals = True  # before the sync: not asked (the sync asks), so no timer and no spin
    assert ex.poll_timeout_ms() > 1000
    two_symbols_of_one_bar(rig)
    ex._want_last_signals = False
    assert ex.poll_timeout_ms() > 1000  # the summary line, up to a minute away
    rig.connector.down = True
    rig.hear(messages.Signal("EURUSD", T0 + 2 * H1, 1.1, 1, 0, 0, 2, 0.0), "preditor")
    rig.hear(messages.Signal("GBPUSD", T0 + 2 * H1, 1.1, 1, 0, 0, 2, 0.0), "preditor")
    rig.turn()
    assert ex.pending_work() == 2 and ex._retry_at > time.monotonic()
    assert ex.poll_timeout_ms() <= 1000  # the retry, a second after the failure
    ex._want_last_signals, ex._last_signals_at = True, time.monotonic()
    assert ex.poll_timeout_ms() <= 1000


def test_the_live_copy_of_a_bar_read_back_meanwhile_is_the_one_decided(rig):
    """The first bar after a boot: the preditor's burst starts (its first message heard asks `last_signals`) and
    the answer already holds the bar, read back (no previous direction), before its live copy is read. The live
    copy, which says the twin's previous direction, is decided: the edge opens, as with no read-back at all."""
    rig.boot()
    bar_time = T0 + H1
    rig.connector.last_signals = {"EURUSD": messages.Signal("EURUSD", bar_time, 1.1, 1, 1, 1, 2, 0.0)}
    rig.ex._want_last_signals = True  # as the preditor's first message heard (Delivery.FIRST) asks
    rig.turn()
    assert rig.acks() == [] and rig.ex.pending_work() == 1  # read back: waits a turn for its live copy
    rig.hear(messages.Signal("EURUSD", bar_time, 1.1, 1, 1, 1, 2, 0.0, previous_direction=0), "preditor")
    rig.turn()
    assert final(rig.acks()) == ("OK", "EDGE") and len(rig.connector.orders("order_open")) == 1
    assert rig.ex.progress["read_backs_replaced_live"] == 1


def test_a_bar_read_back_whose_live_copy_never_comes_is_decided_as_read_back(rig):
    rig.boot()
    rig.connector.last_signals = {"EURUSD": messages.Signal("EURUSD", T0 + H1, 1.1, 1, 1, 1, 2, 0.0)}
    rig.ex._want_last_signals = True
    rig.turn()
    rig.ex.on_tick(time.monotonic() + 1.0)  # the next turn, past the batch's gathering
    rig.ex._wait_flights()
    assert [(a.bar_time, a.status) for a in rig.acks()] == [(T0 + H1, "WAIT_SYNC")]  # a read-back never opens
    assert rig.connector.orders("order_open") == []


def test_signals_arriving_during_the_positions_round_trip_are_decided_in_the_same_turn(rig):
    """The batch's first signal asks the positions (while the bar's others are on their way); those that arrived
    meanwhile are read at once and the batch decided in that turn of the loop, not in a turn of its own after it."""
    import zmq

    rig.boot()
    ex = rig.ex
    ex.persist_many = lambda table, records: None  # type: ignore[method-assign]  # as persist: no spool here
    ex.timeframes = {"EURUSD": "H1", "GBPUSD": "H1"}
    for symbol in ex.timeframes:  # the bar before: both decided, so both are expected with the next bar
        rig.hear(messages.Signal(symbol, T0 + H1, 1.1, 0, 0, 0, 2, 0.0), "preditor")
    rig.turn()
    assert not ex.pending and ex.handled == {"EURUSD": T0 + H1, "GBPUSD": T0 + H1}
    pub = bus.Publisher(ex.ctx, "inproc://signals", "preditor", 1)
    ex.sub = bus.Subscriber(ex.ctx, ["inproc://signals"], ["signal."], ex.errors)
    ex._poller = zmq.Poller()
    ex._poller.register(ex.sub.sock, zmq.POLLIN)
    try:
        while not ex._poller.poll(100):  # the subscription reaches the publisher
            pub.publish("signal.PROBE", messages.Signal("PROBE", T0, 1.1, 0, 0, 0, 2, 0.0))
        ex.sub.drain()
        ask = ex._call

        def positions_while_the_other_signal_arrives(service: str, op: str, args: Any, timeout_s=None) -> Any:
            if op == "positions":  # inproc: in the SUB socket's pipe once published
                pub.publish("signal.GBPUSD", messages.Signal("GBPUSD", T0 + 2 * H1, 1.1, 0, 0, 0, 2, 0.0))
            return ask(service, op, args, timeout_s)

        ex._call = positions_while_the_other_signal_arrives  # type: ignore[method-assign]
        rig.hear(messages.Signal("EURUSD", T0 + 2 * H1, 1.1, 0, 0, 0, 2, 0.0), "preditor")
        ex.on_tick(time.monotonic())  # one turn: the positions asked, GBPUSD read, the batch decided
        assert not ex.pending, f"{sorted(ex.pending)} waits for a turn of its own"
        assert ex.handled == {"EURUSD": T0 + 2 * H1, "GBPUSD": T0 + 2 * H1}
        assert {(a.symbol, a.reason) for a in rig.acks() if a.bar_time == T0 + 2 * H1} == {
            ("EURUSD", "FLAT"), ("GBPUSD", "FLAT")}
    finally:
        pub.sock.close(0)
        ex.sub.sock.close(0)
        ex.sub = None


def test_a_bars_records_leave_for_persistence_once_its_work_is_done(rig):
    """With no signal waiting and no order out, the bar's records are all handed over: they leave in that turn,
    not at the end of the outbox's quiet time (a wake of the loop for them alone)."""
    rig.boot()
    ex = rig.ex
    del ex.persist  # the real one: spooled, and sent to persistence's stand-in below
    writes: list[tuple[str, list[str]]] = []

    def write(args: messages.WriteArgs) -> messages.WriteResult:
        writes.extend((table, [r["symbol"] for r in records]) for table, records in args.tables.items())
        return messages.WriteResult([r["id"] for records in args.tables.values() for r in records])

    ex.cfg.path(ex.cfg.run_dir).mkdir(parents=True, exist_ok=True)
    store = bus.Responder(ex.ctx, ex.cfg.endpoint("persistence", "rep"), {"write": write}, bus.WireErrors("t"))
    try:
        rig.hear(messages.Signal("EURUSD", T0 + H1, 1.1, 0, 0, 0, 2, 0.0), "preditor")
        ex.on_tick(time.monotonic())  # decided (no order: FLAT), acked, and the records sent
        assert store.sock.poll(5000), "the records wait for the outbox's quiet time"
        assert store.serve_ready() == 1  # one request: the signal's record and the ack's together
        assert writes == [("signals", ["EURUSD"]), ("acks", ["EURUSD"])]
        assert ex._store is not None and ex._store.sock.poll(5000)
        ex._drive_outbox(time.monotonic())  # the reply: everything acknowledged, nothing more sent
        assert len(ex.outbox) == 0 and ex._store.pending is None
    finally:
        if ex._store is not None:
            ex._store.close()
        store.sock.close(0)
        if ex._spool is not None:
            import os
            os.close(ex._spool)
