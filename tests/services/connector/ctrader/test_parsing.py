"""Pure conversions from Open API messages to domain values."""

from __future__ import annotations

import random

import pytest

from services.connector import orders
from services.connector.ctrader import parsing
from services.connector.ctrader import schemas as proto
from services.connector.ctrader.parsing import SymbolSpec
from services.connector.port import Bar, OrderResult, Position, position_closed

om = proto.model
oa = proto.oa
EURUSD = SymbolSpec(1, "EURUSD", 5, 4, 10_000_000, 100_000, 100_000, 10_000_000_000, "EUR", "USD")
USDJPY = SymbolSpec(4, "USDJPY", 3, 2, 10_000_000, 100_000, 100_000, 10_000_000_000, "USD", "JPY")


@pytest.mark.parametrize(("last", "fields", "expected"), [
    ((None, None), {"bid": 105236, "ask": 105244}, (1.05236, 1.05244)),
    ((1.05236, 1.05244), {"bid": 105240}, (1.0524, 1.05244)),      # only bid changed: keep the ask
    ((1.05236, 1.05244), {"ask": 105250}, (1.05236, 1.0525)),      # only ask changed: keep the bid
    ((1.05236, 1.05244), {}, (1.05236, 1.05244)),
])
def test_spot_events_with_one_side_are_merged(last, fields, expected) -> None:
    spot = oa.ProtoOASpotEvent(ctidTraderAccountId=1, symbolId=1, **fields)
    assert parsing.merge_quote(*last, spot, 5) == expected


def test_live_trendbar_without_delta_close_closes_at_the_bid() -> None:
    tb = om.ProtoOATrendbar(volume=10, period=9, low=11700000, deltaOpen=1000, deltaHigh=5000,
                            utcTimestampInMinutes=24721800)
    bar = parsing.trendbar_to_bar(tb, "USDJPY", 3, close_fallback=11702000)
    assert (bar.time, bar.open, bar.high, bar.low, bar.close, bar.volume) == (
        1483308000, 117.01, 117.05, 117.0, 117.02, 10.0)


@pytest.mark.parametrize("seed", range(20))
def test_a_trendbar_converts_as_its_wire_prices_do(seed: int) -> None:
    """`trendbar_to_bar` (its arithmetic inlined) gives the bar `trendbar_prices` makes of the same fields."""
    rng = random.Random(seed)
    for _ in range(200):
        digits = rng.choice((0, 2, 3, 5))
        low = rng.randrange(1, 10**9)
        d_open, d_high = rng.randrange(0, 10**6), rng.randrange(0, 10**6)
        tb = om.ProtoOATrendbar(volume=rng.randrange(0, 10**9), period=rng.choice((1, 5, 9, 12)), low=low,
                                deltaOpen=d_open, deltaHigh=d_high, utcTimestampInMinutes=rng.randrange(0, 2**31))
        fallback = rng.choice((None, low + rng.randrange(0, 10**6)))
        if rng.random() < 0.5:
            tb.deltaClose = rng.randrange(0, 10**6)
            d_close = tb.deltaClose
        else:
            d_close = fallback - low if fallback is not None else 0
        want = Bar("X", "H1", tb.utcTimestampInMinutes * 60, *parsing.trendbar_prices(low, d_open, d_high, d_close,
                                                                                       digits), float(tb.volume))
        assert parsing.trendbar_to_bar(tb, "X", digits, fallback, "H1") == want


def test_position_prices_are_plain_doubles_and_volume_is_in_cents() -> None:
    p = om.ProtoOAPosition(positionId=9, positionStatus=1, swap=0, price=117.123, stopLoss=116.5, usedMargin=2500,
                           moneyDigits=2,
                           tradeData=om.ProtoOATradeData(symbolId=4, volume=2_500_000, tradeSide=2,
                                                         openTimestamp=1483308000123, label="ot-1"))
    pos, volume = parsing.position(p, USDJPY)
    assert volume == 2_500_000  # what a full close sends
    assert (pos.ticket, pos.direction, pos.volume, pos.open_price, pos.sl, pos.tp) == (9, -1, 0.25, 117.123, 116.5,
                                                                                         None)
    assert (pos.open_time, pos.used_margin, pos.label) == (1483308000.123, 25.0, "ot-1")


@pytest.mark.parametrize(("money_digits", "gross", "balance", "expected_gross", "expected_balance"), [
    (2, -1234, 998766, -12.34, 9987.66),
    (6, -12340000, 9987660000, -12.34, 9987.66),
])
def test_closing_deal_money_uses_money_digits(money_digits, gross, balance, expected_gross, expected_balance) -> None:
    d = om.ProtoOADeal(dealId=5, orderId=4, positionId=3, volume=1_000_000, filledVolume=1_000_000, symbolId=1,
                       createTimestamp=1, executionTimestamp=1483308000000, executionPrice=1.05, tradeSide=2,
                       dealStatus=2, moneyDigits=money_digits,
                       closePositionDetail=om.ProtoOAClosePositionDetail(entryPrice=1.06234, grossProfit=gross,
                                                                         swap=0, commission=0, balance=balance,
                                                                         moneyDigits=money_digits))
    deal = parsing.deal(d, EURUSD)
    assert deal.closing and deal.volume == 0.1 and deal.direction == -1
    assert (deal.gross_profit, deal.balance, deal.entry_price) == (expected_gross, expected_balance, 1.06234)
    closed = position_closed(deal, 1, external=False, server_stop=True, full=True)
    assert closed.reason == "SL_TP" and closed.external and closed.net_profit == expected_gross


POS = Position(7, "EURUSD", 1, 0.1, 1.1, 0.0, label="ot-abc")


@pytest.mark.parametrize(("cid", "own", "positions", "ticket"), [
    ("ot-abc", {}, [POS], 7),                                          # found at the broker by label
    ("ot-xyz", {}, [POS], None),                                       # unknown: may be sent
    ("ot-xyz", {"ot-xyz": OrderResult(True, "ot-xyz", ticket=3)}, [POS], 3),  # our own record wins
])
def test_existing_order(cid, own, positions, ticket) -> None:
    found = orders.existing_order(cid, own, positions)
    assert (found.ticket if found else None) == ticket


@pytest.mark.parametrize("cid", ["", "x" * 51])
def test_client_order_id_limits(cid: str) -> None:
    with pytest.raises(ValueError):
        orders.validate_client_order_id(cid)


def test_generated_client_order_ids_fit_and_differ() -> None:
    a, b = orders.new_client_order_id(), orders.new_client_order_id()
    assert a != b and len(a) <= orders.MAX_CLIENT_ORDER_ID


def test_a_positions_costs_are_account_money_and_its_net_pnl_counts_the_closing_commission_too() -> None:
    p = om.ProtoOAPosition(positionId=9, positionStatus=1, swap=-125, commission=-350, price=1.1, moneyDigits=2,
                           tradeData=om.ProtoOATradeData(symbolId=1, volume=1_000_000, tradeSide=1,
                                                         openTimestamp=1483308000000))
    pos, volume = parsing.position(p, EURUSD)
    assert (pos.swap, pos.commission) == (-1.25, -7.0)  # the opening's 3.50 and the closing's to come
    marked = parsing.marked(pos, 1.1010, 1.0, volume, 2)  # 0.1 lot, +10 pips
    assert (marked.current_price, marked.gross_pnl, marked.pnl) == (1.101, 10.0, 1.75)
    unmarked = parsing.marked(pos, 1.1010, None, volume, 2)  # no conversion rate yet: no PnL claimed
    assert (unmarked.current_price, unmarked.gross_pnl, unmarked.pnl) == (1.101, 0.0, 0.0)


@pytest.mark.parametrize(("start", "steps", "rate"), [
    ("USD", [], 1.0),                                                 # quote == deposit
    ("JPY", [("USD", "JPY", 125.0)], 1 / 125.0),                      # USDJPY on a USD account
    ("GBP", [("GBP", "USD", 1.25)], 1.25),                            # EURGBP on a USD account, via GBPUSD
    ("USD", [("EUR", "USD", 1.1)], 1 / 1.1),                          # EURUSD on a EUR account
    ("JPY", [("EUR", "JPY", 130.0)], 1 / 130.0),                      # EURJPY on a EUR account
    ("CHF", [("USD", "CHF", 0.9), ("EUR", "USD", 1.1)], 1 / 0.9 / 1.1),  # two steps to EUR
    ("JPY", [("EUR", "USD", 1.1)], None),                             # a chain that does not start at JPY
    ("JPY", [("USD", "JPY", 0.0)], None),                             # no price
])
def test_conversion_rate_along_the_brokers_chain(start, steps, rate) -> None:
    target = "EUR" if steps and steps[-1][0] == "EUR" else "USD"
    got = parsing.conversion_rate(start, target, steps)
    assert got == (pytest.approx(rate) if rate is not None else None)


@pytest.mark.parametrize(("code", "kind"), [
    ("TRADING_BAD_VOLUME", "BAD_VOLUME"), ("TRADING_BAD_STOPS", "BAD_STOPS"),
    ("PROTECTION_IS_TOO_CLOSE_TO_MARKET", "STOPS_TOO_CLOSE"), ("POSITION_NOT_FOUND", "POSITION_NOT_FOUND"),
    ("NOT_ENOUGH_MONEY", "NOT_ENOUGH_MONEY"), ("MARKET_CLOSED", "MARKET_CLOSED"),
    ("SYMBOL_HAS_HOLIDAY", "MARKET_CLOSED"), ("TRADING_DISABLED", "TRADING_DISABLED"),
    ("SOMETHING_NEW", "REJECTED"),
])
def test_broker_order_errors_map_to_typed_reasons(code, kind) -> None:
    res = parsing.failed_order("cid-1", code, "words")
    assert (res.success, res.error_code, res.broker_code, res.error) == (False, kind, code, f"{code}: words")


def test_instrument_speaks_lots_and_price_distances() -> None:
    spec = SymbolSpec(1, "EURUSD", 5, 4, 10_000_000, 100_000, 100_000, 10_000_000_000, "EUR", "USD",
                      sl_distance=30, tp_distance=50)
    i = parsing.instrument(spec)
    assert (i.lot_units, i.min_lots, i.step_lots, i.max_lots) == (100_000.0, 0.01, 0.01, 1000.0)
    assert (i.min_sl_distance, i.min_tp_distance, i.pip_size, i.point) == (0.0003, 0.0005, 0.0001, 0.00001)
    pct = parsing.instrument(SymbolSpec(10, "US500", 2, 0, 100, 10, 10, 1_000_000, "US500", "USD", sl_distance=10,
                                        distance_in_percent=True), price=4000.0)
    assert pct.min_sl_distance == 4.0  # 0.1 % of the price
