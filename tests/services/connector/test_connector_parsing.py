"""Pure conversions from Open API messages to domain values."""

from __future__ import annotations

import pytest

from services.connector import orders, parsing, proto
from services.connector.models import OrderResult, Position
from services.connector.units import SymbolSpec

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


def test_position_prices_are_plain_doubles_and_volume_is_in_cents() -> None:
    p = om.ProtoOAPosition(positionId=9, positionStatus=1, swap=0, price=117.123, stopLoss=116.5, usedMargin=2500,
                           moneyDigits=2,
                           tradeData=om.ProtoOATradeData(symbolId=4, volume=2_500_000, tradeSide=2,
                                                         openTimestamp=1483308000123, label="ot-1"))
    pos = parsing.position(p, USDJPY)
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
    closed = parsing.position_closed(deal, 1, external=False, server_stop=True, full=True)
    assert closed.reason == "SL_TP" and closed.external and closed.net_profit == expected_gross


POS = Position(7, "EURUSD", 1, 0.1, 1_000_000, 1.1, 0.0, label="ot-abc")


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
