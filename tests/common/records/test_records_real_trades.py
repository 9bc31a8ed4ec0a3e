"""Real trades as records: the connector's fills, closes and recovered openings."""

from __future__ import annotations

import pytest

from common import messages, order_label
from common.order_label import OrderAction, client_order_id
from common.records import real_trades, trades
from common.records import schema as rec

T = 1_780_000_000.0


def test_fill_and_close_become_real_trades():
    cid = client_order_id("EURUSD", int(T) - 3600, OrderAction.OPEN)
    f = messages.to_wire(messages.Fill("EURUSD", 7, cid, -1, 0.2, 1.2, T, 99))
    t = trades.real_trade(real_trades.fill_input(f), session_id="s")
    assert (t.action, t.direction, t.position_id, t.entry_price, t.pnl) == ("OPEN", -1, "7", 1.2, 0.0)
    assert t.bar_time == real_trades.utc(T - 3600) and t.timestamp == real_trades.utc(T)
    c = messages.to_wire(messages.PositionClosed(7, "EURUSD", -1, 0.2, 1.2, 1.19, 20.0, -0.5, -1.4, 18.1, T + 60,
                                                 "SL_TP", True, 10_018.1, cid, False))
    ct = trades.real_trade(real_trades.closed_input(c), session_id="s")
    assert ct.action == "PARTIAL_CLOSE" and ct.pnl == pytest.approx(18.1) and ct.commission == 1.4
    assert ct.comment == "SL_TP external" and ct.bar_time is None
    assert ct.id == trades.real_trade(real_trades.closed_input(c), session_id="s").id  # the same deal, the same id
    assert real_trades.bar_time_of("someone-else's") is None and real_trades.bar_time_of("") is None


def test_a_real_trade_carries_the_signal_facts_of_its_orders_comment():
    cid = client_order_id("EURUSD", int(T) - 3600, OrderAction.OPEN)
    ours = order_label.encode(order_label.OrderLabel(cid, hmm_state=3, action_index=2, intensity=2, balance=10_000))
    f = messages.to_wire(messages.Fill("EURUSD", 7, cid, 1, 0.2, 1.2, T, 99, ours))
    t = trades.real_trade(real_trades.fill_input(f), session_id="s")
    assert (t.intensity, t.hmm_state, t.comment) == (2, 3, ours)
    c = messages.to_wire(messages.PositionClosed(7, "EURUSD", 1, 0.2, 1.2, 1.19, -20.0, -0.5, -1.4, -21.9, T + 60,
                                                 "CLOSE", False, 9_978.1, cid, True, ours, 0.0001))
    ct = trades.real_trade(real_trades.closed_input(c), session_id="s")
    assert (ct.intensity, ct.hmm_state, ct.comment) == (2, 3, "CLOSE")  # a close's comment says why it closed
    assert ct.pnl_pips == pytest.approx(-100.0)  # long from 1.2 out at 1.19, in the symbol's pips
    # an opening whose fill never reached us, recorded from the broker's open position: the same facts
    position = {"ticket": 7, "symbol": "EURUSD", "direction": 1, "volume": 0.2, "open_time": T, "open_price": 1.2,
                "label": cid, "comment": ours}
    rt = trades.real_trade(real_trades.recovered_open_input(position), session_id="s")
    assert (rt.intensity, rt.hmm_state, rt.comment) == (2, 3, real_trades.RECOVERED_OPEN_COMMENT)
    # someone else's comment, or one of ours that does not parse: the facts are unknown, the record is still made
    for other in ("placed by hand", "OT1|broken", ""):
        t = trades.real_trade(real_trades.fill_input({**f, "comment": other}), session_id="s")
        assert (t.intensity, t.hmm_state, t.comment) == (0, None, other or None)


def test_the_connectors_record_of_a_deal_has_no_session_and_a_stable_id():
    cid = client_order_id("EURUSD", int(T) - 3600, OrderAction.OPEN)
    fill = messages.to_wire(messages.Fill("EURUSD", 7, cid, 1, 0.2, 1.2, T, 99))
    closed = messages.to_wire(messages.PositionClosed(7, "EURUSD", 1, 0.2, 1.2, 1.19, -20.0, -0.5, -1.4, -21.9,
                                                      T + 60, "CLOSE", False, 9_978.1, cid, True))
    for body, closing, made in ((fill, False, real_trades.fill_input), (closed, True, real_trades.closed_input)):
        sent = real_trades.real_trade_record(body, closing)
        assert sent["session_id"] == ""  # the store fills in the running session
        assert sent == rec.to_json(trades.real_trade(made(body), session_id=""))
        assert real_trades.real_trade_record(body, closing)["id"] == sent["id"]  # handed over again: a duplicate


def test_a_recovered_opening_is_keyed_by_its_position():
    position = {"ticket": 7, "symbol": "EURUSD", "direction": -1, "volume": 0.2, "open_time": T, "open_price": 1.2,
                "label": "", "comment": ""}
    got = real_trades.recovered_open_record(position)
    assert (got["action"], got["position_id"], got["entry_price"], got["pnl"]) == ("OPEN", "7", 1.2, 0.0)
    assert got["comment"] == real_trades.RECOVERED_OPEN_COMMENT and got["bar_time"] is None
    assert real_trades.recovered_open_record({**position, "open_price": 1.3})["id"] == got["id"]
