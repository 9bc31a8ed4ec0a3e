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
XAUUSD = PriceData(digits=2, pip_position=1, quote_to_deposit=1.0)  # 1 lot = 100 oz (lotSize 10 000)
US500 = PriceData(digits=2, pip_position=0, quote_to_deposit=1.0)  # 1 lot = 1 unit (lotSize 100)
EURGBP = PriceData(digits=5, pip_position=4, quote_to_deposit=1.25)  # GBPUSD at 1.25000

# Hand computation: distance = money / (volume/100 units * quote_to_deposit), floored to one point.
ROWS = [
    # name, money, volume, data, price distance, relative (1/100000), pips
    ("EURUSD 0.01 lot SL 10", 10.0, 100_000, EURUSD, 0.01, 1_000, 100.0),  # 1000 units: 10/1000
    ("EURUSD 0.03 lot SL 10", 10.0, 300_000, EURUSD, 0.00333, 333, 33.3),  # 0.0033333 floored
    ("EURUSD 0.05 lot TP 15", 15.0, 500_000, EURUSD, 0.003, 300, 30.0),
    ("USDJPY 0.01 lot SL 10", 10.0, 100_000, USDJPY, 1.6, 160_000, 160.0),  # 10/(1000/160)
    ("USDJPY 0.03 lot SL 10", 10.0, 300_000, USDJPY, 0.533, 53_300, 53.3),  # 0.53333 floored
    ("XAUUSD 0.01 lot SL 10", 10.0, 100, XAUUSD, 10.0, 1_000_000, 100.0),  # 1 oz: 10 USD = 10.00
    ("XAUUSD 0.05 lot SL 7", 7.0, 500, XAUUSD, 1.4, 140_000, 14.0),  # 5 oz
    ("US500 0.10 lot SL 50", 50.0, 10, US500, 500.0, 50_000_000, 500.0),  # 0.1 unit
    ("US500 0.30 lot SL 50", 50.0, 30, US500, 166.66, 16_666_000, 166.66),  # 166.666.. floored
    ("EURGBP 0.01 lot SL 10", 10.0, 100_000, EURGBP, 0.008, 800, 80.0),  # 10/(1000*1.25)
]


@pytest.mark.parametrize("name,money,volume,data,price,relative,pips", ROWS, ids=[r[0] for r in ROWS])
def test_stop_distance(name, money, volume, data, price, relative, pips):
    d = stop_distance(money, volume, data)
    assert d.relative == relative
    assert d.price == pytest.approx(price, abs=1e-12)
    assert d.pips == pytest.approx(pips)
    assert d.money_at_distance <= money + 1e-9


@pytest.mark.parametrize("volume,data,field", [
    (None, EURUSD, "volume missing"),
    (0, EURUSD, "volume must be positive"),
    (100_000, PriceData(5, 4, None), "quote_to_deposit missing"),
    (100_000, PriceData(5, 4, 0.0), "quote_to_deposit must be positive"),
    (100_000, PriceData(5, 4, math.nan), "quote_to_deposit must be positive"),
    (100_000, PriceData(None, 4, 1.0), "digits missing"),
    (100_000, PriceData(5, None, 1.0), "pip_position missing"),
    (100_000, PriceData(7, 4, 1.0), "digits must be an integer 0-5"),
])
def test_missing_data_fails_closed(volume, data, field):
    with pytest.raises(SltpError) as info:
        stop_distance(10.0, volume, data)
    assert info.value.code == "NO_SYMBOL_DATA"
    assert field in str(info.value)


def test_stop_closer_than_one_point_fails():
    with pytest.raises(SltpError) as info:
        stop_distance(0.05, 1_000_000_000, EURUSD)  # 100 lots: 0.05 USD is 0.000000005
    assert info.value.code == "SLTP_TOO_CLOSE"


def test_rounding_never_risks_more_than_asked():
    for money, volume in itertools.product([0.7, 3.0, 10.0, 12.34, 50.0], [100_000, 300_000, 700_000]):
        for data in (EURUSD, USDJPY, EURGBP):
            assert stop_distance(money, volume, data).money_at_distance <= money + 1e-9


def test_plan_zero_disables():
    p = plan(10.0, 0.0, 100_000, EURUSD)
    assert p.sl is not None and p.sl.relative == 1_000 and p.tp is None
    assert plan(0.0, 0.0, 100_000, EURUSD).sl is None


def test_plan_rejects_negative_and_below_broker_minimum():
    with pytest.raises(SltpError) as info:
        plan(-1.0, 0.0, 100_000, EURUSD)
    assert info.value.code == "BAD_CONFIG"
    with pytest.raises(SltpError) as info:
        plan(10.0, 0.0, 1_000_000, EURUSD, min_distance_price=0.002)  # 10 lots: 0.001 away
    assert info.value.code == "SLTP_TOO_CLOSE"


@pytest.mark.parametrize("direction,sl,tp", [(1, 1.09, 1.115), (-1, 1.11, 1.085)])
def test_absolute_levels(direction, sl, tp):
    p = plan(10.0, 15.0, 100_000, EURUSD)
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
