import itertools
import math

import pytest

from services.executor.sltp import (
    PriceData,
    SltpError,
    absolute_levels,
    plan,
    price_to_pips,
    quote_to_deposit,
    stop_distance,
)

# Symbol data as the broker gives it, on a USD account.
EURUSD = PriceData(digits=5, pip_position=4, quote_to_deposit=1.0)
USDJPY = PriceData(digits=3, pip_position=2, quote_to_deposit=1 / 160)  # USDJPY at 160.000
XAUUSD = PriceData(digits=2, pip_position=1, quote_to_deposit=1.0)  # 1 lot = 100 oz
US500 = PriceData(digits=2, pip_position=0, quote_to_deposit=1.0)  # 1 lot = 1 unit
EURGBP = PriceData(digits=5, pip_position=4, quote_to_deposit=1.25)  # GBPUSD at 1.25000
FX_LOT, GOLD_LOT, INDEX_LOT = 100_000, 100, 1  # contract sizes: units of the base asset in one lot

# Hand computation: distance = money / (lots * contract size * quote_to_deposit), floored to one point.
ROWS = [
    # name, money, lots, contract size, data, price distance, points, pips
    ("EURUSD 0.01 lot SL 10", 10.0, 0.01, FX_LOT, EURUSD, 0.01, 1_000, 100.0),  # 1000 units: 10/1000
    ("EURUSD 0.03 lot SL 10", 10.0, 0.03, FX_LOT, EURUSD, 0.00333, 333, 33.3),  # 0.0033333 floored
    ("EURUSD 0.05 lot TP 15", 15.0, 0.05, FX_LOT, EURUSD, 0.003, 300, 30.0),
    ("USDJPY 0.01 lot SL 10", 10.0, 0.01, FX_LOT, USDJPY, 1.6, 1_600, 160.0),  # 10/(1000/160)
    ("USDJPY 0.03 lot SL 10", 10.0, 0.03, FX_LOT, USDJPY, 0.533, 533, 53.3),  # 0.53333 floored
    ("XAUUSD 0.01 lot SL 10", 10.0, 0.01, GOLD_LOT, XAUUSD, 10.0, 1_000, 100.0),  # 1 oz: 10 USD = 10.00
    ("XAUUSD 0.05 lot SL 7", 7.0, 0.05, GOLD_LOT, XAUUSD, 1.4, 140, 14.0),  # 5 oz
    ("US500 0.10 lot SL 50", 50.0, 0.1, INDEX_LOT, US500, 500.0, 50_000, 500.0),  # 0.1 unit
    ("US500 0.30 lot SL 50", 50.0, 0.3, INDEX_LOT, US500, 166.66, 16_666, 166.66),  # 166.666.. floored
    ("EURGBP 0.01 lot SL 10", 10.0, 0.01, FX_LOT, EURGBP, 0.008, 800, 80.0),  # 10/(1000*1.25)
]


@pytest.mark.parametrize("name,money,lots,size,data,price,points,pips", ROWS, ids=[r[0] for r in ROWS])
def test_stop_distance(name, money, lots, size, data, price, points, pips):
    d = stop_distance(money, lots, size, data)
    assert d.price == price  # exactly the rounded distance sent
    assert d.points == points
    assert d.price == round(d.price, data.digits)
    assert d.pips == pytest.approx(pips)
    assert d.money_at_distance <= money + 1e-9


@pytest.mark.parametrize("lots,size,data,field", [
    (None, FX_LOT, EURUSD, "lots missing"),
    (0, FX_LOT, EURUSD, "lots must be positive"),
    (0.01, None, EURUSD, "contract_size missing"),
    (0.01, 0.0, EURUSD, "contract_size must be positive"),
    (0.01, FX_LOT, PriceData(5, 4, None), "quote_to_deposit missing"),
    (0.01, FX_LOT, PriceData(5, 4, 0.0), "quote_to_deposit must be positive"),
    (0.01, FX_LOT, PriceData(5, 4, math.nan), "quote_to_deposit must be positive"),
    (0.01, FX_LOT, PriceData(None, 4, 1.0), "digits missing"),
    (0.01, FX_LOT, PriceData(5, None, 1.0), "pip_position missing"),
    (0.01, FX_LOT, PriceData(11, 4, 1.0), "digits must be an integer 0-10"),
])
def test_missing_data_fails_closed(lots, size, data, field):
    with pytest.raises(SltpError) as info:
        stop_distance(10.0, lots, size, data)
    assert info.value.code == "NO_SYMBOL_DATA"
    assert field in str(info.value)


def test_stop_closer_than_one_point_fails():
    with pytest.raises(SltpError) as info:
        stop_distance(0.05, 100.0, FX_LOT, EURUSD)  # 100 lots: 0.05 USD is 0.000000005
    assert info.value.code == "SLTP_TOO_CLOSE"


def test_rounding_never_risks_more_than_asked():
    for money, lots in itertools.product([0.7, 3.0, 10.0, 12.34, 50.0], [0.01, 0.03, 0.07, 0.29]):
        for data in (EURUSD, USDJPY, EURGBP):
            d = stop_distance(money, lots, FX_LOT, data)
            assert d.money_at_distance <= money + 1e-9
            assert d.price * lots * FX_LOT * data.quote_to_deposit <= money + 1e-9


def test_plan_zero_disables():
    p = plan(10.0, 0.0, 0.01, FX_LOT, EURUSD)
    assert p.sl is not None and p.sl_distance == 0.01 and p.tp is None and p.tp_distance is None
    assert plan(0.0, 0.0, 0.01, FX_LOT, EURUSD).sl is None


def test_plan_rejects_negative_and_below_broker_minimum():
    with pytest.raises(SltpError) as info:
        plan(-1.0, 0.0, 0.01, FX_LOT, EURUSD)
    assert info.value.code == "BAD_CONFIG"
    with pytest.raises(SltpError) as info:
        plan(10.0, 0.0, 10.0, FX_LOT, EURUSD, min_sl_distance=0.002)  # 10 lots: 0.001 away
    assert info.value.code == "SLTP_TOO_CLOSE" and "SL distance" in str(info.value)


@pytest.mark.parametrize("sl,tp,min_sl,min_tp,ok", [
    (10.0, 15.0, 0.001, 0.001, True),  # 0.01 and 0.015 away from the fill
    (10.0, 15.0, 0.0, 0.0, True),  # 0: no minimum
    (10.0, 15.0, None, 0.02, False),  # the TP is nearer than its own minimum
    (10.0, 0.0, None, 0.02, True),  # no TP: its minimum does not matter
    (10.0, 15.0, 0.011, None, False),
])
def test_plan_minimum_per_kind(sl, tp, min_sl, min_tp, ok):
    if ok:
        assert plan(sl, tp, 0.01, FX_LOT, EURUSD, min_sl, min_tp).sl_distance == 0.01
    else:
        with pytest.raises(SltpError) as info:
            plan(sl, tp, 0.01, FX_LOT, EURUSD, min_sl, min_tp)
        assert info.value.code == "SLTP_TOO_CLOSE"


@pytest.mark.parametrize("direction,sl,tp", [(1, 1.09, 1.115), (-1, 1.11, 1.085)])
def test_absolute_levels(direction, sl, tp):
    p = plan(10.0, 15.0, 0.01, FX_LOT, EURUSD)
    assert absolute_levels(1.10000, direction, p, 5) == (sl, tp)


@pytest.mark.parametrize("quote,deposit,mids,rate", [
    ("USD", "USD", {}, 1.0),
    ("JPY", "USD", {("USD", "JPY"): 160.0}, 1 / 160),
    ("GBP", "USD", {("GBP", "USD"): 1.25}, 1.25),
    ("USD", "EUR", {("EUR", "USD"): 1.25}, 0.8),
])
def test_quote_to_deposit(quote, deposit, mids, rate):
    assert quote_to_deposit(quote, deposit, mids) == pytest.approx(rate)


@pytest.mark.parametrize("quote,deposit,mids", [
    ("JPY", "USD", {}),
    ("JPY", "USD", {("USD", "JPY"): 0.0}),
    ("", "USD", {}),
])
def test_quote_to_deposit_fails_closed(quote, deposit, mids):
    with pytest.raises(SltpError) as info:
        quote_to_deposit(quote, deposit, mids)
    assert info.value.code == "NO_RATE"


def test_price_to_pips():
    assert price_to_pips(0.0002, 4) == pytest.approx(2.0)
    assert price_to_pips(0.03, 2) == pytest.approx(3.0)
