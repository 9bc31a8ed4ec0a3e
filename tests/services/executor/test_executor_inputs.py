from dataclasses import replace
from pathlib import Path

import msgpack
import pytest

from common import messages, wire
from services.executor import inputs
from services.executor.acks import Ack, AckStatus
from services.executor.lots import VolumeLimits
from services.executor.sync import Direction, Stance, render_markdown

NOW = 1_764_115_200.0

# the connector's symbol_info answer (services/connector/service.py), as the wire decodes it
SYMBOL_INFO = messages.SymbolInfo(
    symbol="EURUSD", digits=5, point=1e-05, pip_position=4, pip_size=0.0001, lot_size=100000.0, min_lots=0.01,
    step_lots=0.01, max_lots=100.0, min_sl_distance=0.0, min_tp_distance=0.0, base_asset="EUR", quote_asset="USD",
    deposit_currency="USD", quote_to_deposit=1.0, pip_value_per_lot=10.0, bid=1.1, ask=1.10008, spread=8e-05)


def test_connector_symbol_info_lots_form():
    d = inputs.symbol_data(SYMBOL_INFO, quote_time=NOW)
    assert d.symbol == "EURUSD"
    assert d.volume_limits == VolumeLimits(min_lots=0.01, step_lots=0.01, max_lots=100.0, contract_size=100_000)
    assert (d.price_data.digits, d.price_data.pip_position, d.price_data.quote_to_deposit) == (5, 4, 1.0)
    assert (d.quote.bid, d.quote.ask, d.quote.time) == (1.1, 1.10008, NOW)
    assert (d.min_sl_distance, d.min_tp_distance) == (None, None)  # 0 = none


def test_broker_minimum_distances():
    d = inputs.symbol_data(replace(SYMBOL_INFO, min_sl_distance=0.0005, min_tp_distance=0.001), NOW)
    assert (d.min_sl_distance, d.min_tp_distance) == (0.0005, 0.001)


@pytest.mark.parametrize("change, field, expected", [
    ({"min_lots": float("nan")}, "volume_limits", None),
    ({"step_lots": 0}, "volume_limits", None),
    ({"lot_size": 0}, "volume_limits", None),
    ({"max_lots": 0.001}, "volume_limits", None),  # below the minimum
    ({"bid": None}, "quote", None),
    ({"ask": float("inf")}, "quote", None),
    ({"quote_to_deposit": float("nan")}, "rate", None),
])
def test_symbol_info_fails_closed(change, field, expected):
    d = inputs.symbol_data(replace(SYMBOL_INFO, **change), quote_time=NOW)
    value = d.price_data.quote_to_deposit if field == "rate" else getattr(d, field)
    assert value == expected


@pytest.mark.parametrize("quote_time", [None, NOW - 1])
def test_quote_time_is_the_receivers(quote_time):
    """Dated by the receiver while the broker is connected; None (no way to date it) fails the risk guard closed."""
    assert inputs.symbol_data(SYMBOL_INFO, quote_time=quote_time).quote.time == quote_time


def position(**change) -> messages.Position:
    return replace(messages.Position(ticket=7, symbol="EURUSD", direction=-1, volume=0.03, open_price=1.1,
                                     open_time=1.0, label="c1", used_margin=33.0, current_price=1.1002, pnl=-0.6),
                   **change)


ACCOUNT = messages.AccountInfo(balance=10_000.0, equity=9_990.5, margin=33.0, free_margin=9_957.5, margin_level=0.0,
                               currency="USD", leverage=100.0)


def book(*rows: messages.Position, markets=None) -> messages.Positions:
    return messages.Positions(list(rows), ACCOUNT, markets=markets or {}, server_time=1.0)


def test_positions_answer_in_lots():
    got = inputs.positions(book(position(), position(ticket=3, symbol="XAUUSD", direction=1, volume=0.5, label="")))
    assert [(p.ticket, p.symbol, p.direction, p.lots, p.label) for p in got] == [
        (3, "XAUUSD", Direction.LONG, 0.5, ""), (7, "EURUSD", Direction.SHORT, 0.03, "c1")]


@pytest.mark.parametrize("change", [{"direction": 0}, {"volume": 0}, {"volume": float("nan")}, {"symbol": ""}])
def test_positions_never_guessed(change):
    with pytest.raises(ValueError, match=r"positions\[1\] \(ticket 7\)"):
        inputs.positions(book(position(ticket=3), position(**change)))


def test_a_malformed_positions_answer_is_a_wire_error_naming_op_and_field():
    raw = messages.to_wire(book(position(), position(ticket=3)))
    raw["positions"][1]["volume"] = "0.03"
    with pytest.raises(wire.WireError, match=r"positions result: positions\[1\]\.volume: expected float, got str"):
        wire.decode_reply([msgpack.packb({"v": wire.WIRE_VERSION, "id": "r", "ok": True, "result": raw})],
                          messages.OP_POSITIONS.name)


def test_account_answer():
    a = inputs.account(ACCOUNT)
    assert (a.balance, a.equity, a.free_margin, a.leverage, a.currency) == (10_000.0, 9_990.5, 9_957.5, 100.0, "USD")
    assert inputs.account(replace(ACCOUNT, equity=float("nan"))).equity is None


def sig(symbol="EURUSD", bar_time=3600, direction=1, intensity=2):
    return messages.Signal(symbol, bar_time, 1.1, 2, direction, intensity, 1, 0.5)


def test_stance_of_signal():
    assert inputs.stance(sig()) == Stance(Direction.LONG, 2)
    assert inputs.stance(sig(direction=0, intensity=0)) == Stance(Direction.FLAT, 0)
    with pytest.raises(ValueError):
        inputs.stance(sig(direction=1, intensity=5))


def test_last_signals_by_symbol_and_bar():
    got = inputs.last_signals(messages.LastSignals({"GBPUSD": sig("GBPUSD"), "EURUSD": sig()}))
    assert [s.symbol for s in got] == ["EURUSD", "GBPUSD"]


def test_latest_per_symbol():
    got = inputs.latest_per_symbol([sig(bar_time=7200), sig(bar_time=3600), sig("GBPUSD", 10)])
    assert {s: v.bar_time for s, v in got.items()} == {"EURUSD": 7200, "GBPUSD": 10}


def test_records_have_stable_ids_and_fit_the_store():
    from common.records.schema import validate

    s = sig()
    rec = inputs.signal_record(s, 3600)
    assert rec == inputs.signal_record(s, 3600)  # the same row whenever and wherever it is made
    assert rec["timestamp"].startswith("1970-01-01T02:00:00")  # the bar's close
    validate("signals", rec)
    ack = Ack("EURUSD", "OPEN", AckStatus.OK, "EDGE", bar_time=3600, client_order_id="EURUSD-2s0-O", ticket=4,
              volume=0.01, fill_price=1.1001, reference_price=1.1, slippage_pips=1.0, requested_lots=0.015,
              off_step="round_down")
    arec = inputs.ack_record(ack, NOW, s)
    assert arec["volume"] == 0.01 and arec["data"]["requested_lots"] == 0.015
    assert arec["data"]["off_step"] == "round_down"
    assert arec["signal_id"] == rec["id"] and arec["id"] == inputs.ack_record(ack, NOW + 5, s)["id"]
    assert arec["id"] != inputs.ack_record(ack, NOW, s, epoch=2)["id"]  # another process's evaluation
    validate("acks", arec)
    alert = inputs.alert_record("halted", "critical", "halt", NOW, {"reason": "EMERGENCY_DD"}, (1, 1))
    validate("events", alert)
    assert alert["id"] != inputs.alert_record("halted", "critical", "halt", NOW, {}, (1, 2))["id"]


def test_repository_readme_sync_table_is_the_code_table():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    start = readme.index("<!-- sync-table:start -->\n") + len("<!-- sync-table:start -->\n")
    end = readme.index("\n<!-- sync-table:end -->")
    assert readme[start:end] == render_markdown()


def test_a_positions_answer_quote_refreshes_a_known_spec_and_nothing_else():
    spec = inputs.symbol_data(replace(SYMBOL_INFO, bid=1.1, ask=1.1002), quote_time=100.0)
    fresh = inputs.with_quote(spec, messages.BookQuote(1.2, 1.2003, 0.9), quote_time=200.0)
    assert fresh is not None
    assert (fresh.quote.bid, fresh.quote.ask, fresh.quote.time) == (1.2, 1.2003, 200.0)
    assert fresh.price_data.quote_to_deposit == 0.9 and fresh.price_data.digits == 5
    assert fresh.volume_limits == spec.volume_limits and fresh.min_sl_distance == spec.min_sl_distance
    # an entry lacking the rate, or a spec without volume limits: ask symbol_info instead
    assert inputs.with_quote(spec, messages.BookQuote(1.2, 1.2003, None), 200.0) is None
    assert inputs.with_quote(spec, None, 200.0) is None
    assert inputs.with_quote(inputs.SymbolData("EURUSD", None, None, None), messages.BookQuote(1, 1, 1), 1.0) is None


@pytest.mark.parametrize("markets,closed", [
    ({}, set()),  # none closed
    ({"EURUSD": messages.MarketClosed(5.0), "USDJPY": messages.MarketClosed(7.0, open=True)}, {"EURUSD"}),
])
def test_closed_markets(markets, closed):
    assert inputs.closed_markets(book(markets=markets)) == closed
