"""Table tests for every unit conversion (EURUSD, USDJPY, XAUUSD and US500 with realistic specs)."""

from __future__ import annotations

import pytest

from services.connector.ctrader import parsing as units
from services.connector.ctrader.parsing import SymbolSpec

EURUSD = SymbolSpec(1, "EURUSD", 5, 4, 10_000_000, 100_000, 100_000, 10_000_000_000, "EUR", "USD")
USDJPY = SymbolSpec(4, "USDJPY", 3, 2, 10_000_000, 100_000, 100_000, 10_000_000_000, "USD", "JPY")
XAUUSD = SymbolSpec(41, "XAUUSD", 2, 1, 10_000, 100, 100, 10_000_000, "XAU", "USD")
US500 = SymbolSpec(10, "US500", 2, 0, 100, 10, 10, 1_000_000, "US500", "USD")


@pytest.mark.parametrize(("wire", "digits", "price"), [
    (105236, 5, 1.05236),       # EURUSD spot
    (11712300, 3, 117.123),     # USDJPY: still 1/100000, not 10**-digits
    (115025000, 2, 1150.25),    # XAUUSD
    (225050000, 2, 2250.5),     # US500
    (1, 5, 0.00001),
])
def test_spot_price(wire: int, digits: int, price: float) -> None:
    assert units.price_from_wire(wire, digits) == price
    assert units.price_to_wire(price) == wire


@pytest.mark.parametrize(("low", "d_open", "d_high", "d_close", "digits", "ohlc"), [
    (105221, 15, 32, 6, 5, (1.05236, 1.05253, 1.05221, 1.05227)),
    (11700000, 12300, 50000, 0, 3, (117.123, 117.5, 117.0, 117.0)),
    (114900000, 100000, 200000, 150000, 2, (1150.0, 1151.0, 1149.0, 1150.5)),
])
def test_trendbar_low_plus_deltas(low, d_open, d_high, d_close, digits, ohlc) -> None:
    assert units.trendbar_prices(low, d_open, d_high, d_close, digits) == ohlc
    o, h, lo, c = ohlc
    assert units.trendbar_wire(o, h, lo, c) == (low, d_open, d_high, d_close)


@pytest.mark.parametrize(("spec", "lots", "volume"), [
    (EURUSD, 0.01, 100_000),          # 1 000 units
    (EURUSD, 1.0, 10_000_000),        # 100 000 units
    (USDJPY, 0.25, 2_500_000),
    (XAUUSD, 0.01, 100),              # 1 oz
    (XAUUSD, 1.0, 10_000),            # 100 oz
    (US500, 0.1, 10),
    (US500, 3.0, 300),
])
def test_lots_volume(spec: SymbolSpec, lots: float, volume: int) -> None:
    assert units.lots_to_volume(lots, spec.lot_size) == volume
    assert units.volume_to_lots(volume, spec.lot_size) == pytest.approx(lots)


@pytest.mark.parametrize(("spec", "min_lots", "step_lots", "max_lots"), [
    (EURUSD, 0.01, 0.01, 1000), (USDJPY, 0.01, 0.01, 1000), (XAUUSD, 0.01, 0.01, 1000), (US500, 0.1, 0.1, 10000),
])
def test_volume_limits_in_lots(spec, min_lots, step_lots, max_lots) -> None:
    assert (spec.min_lots, spec.step_lots, spec.max_lots) == pytest.approx((min_lots, step_lots, max_lots))


@pytest.mark.parametrize(("spec", "lots", "expected"), [
    (EURUSD, 0.01, 100_000), (EURUSD, 1.0, 10_000_000), (EURUSD, 0.03, 300_000), (US500, 0.2, 20),
    (XAUUSD, 0.01, 100),
])
def test_order_volume(spec, lots, expected) -> None:
    assert units.order_volume(lots, spec) == expected


@pytest.mark.parametrize(("spec", "lots", "why"), [
    (EURUSD, 0.015, "not a multiple of the step of EURUSD \\(0.01 lots\\)"),  # never silently 0.01
    (EURUSD, 0.001, "not a multiple"), (US500, 0.05, "not a multiple"),
    (XAUUSD, 1000.01, "above the maximum"), (EURUSD, 0.0, "positive"), (EURUSD, float("nan"), "positive"),
    (EURUSD, float("inf"), "positive"),
])
def test_order_volume_refuses_lots_off_the_step_or_the_limits(spec, lots, why) -> None:
    with pytest.raises(ValueError, match=why):
        units.order_volume(lots, spec)


@pytest.mark.parametrize(("units_", "volume"), [(1000, 100_000), (1, 100), (0.5, 50)])
def test_units_volume(units_: float, volume: int) -> None:
    assert units.units_to_volume(units_) == volume
    assert units.volume_to_units(volume) == units_


@pytest.mark.parametrize(("wire", "digits", "amount"), [
    (1_000_000, 2, 10_000.0), (123_456, 2, 1234.56), (10_000_000_000, 8, 100.0), (-2550, 2, -25.5), (7, 0, 7.0),
])
def test_money(wire: int, digits: int, amount: float) -> None:
    assert units.money_from_wire(wire, digits) == amount
    assert units.money_to_wire(amount, digits) == wire


@pytest.mark.parametrize(("ms", "s"), [(1483308000000, 1483308000.0), (1483308000123, 1483308000.123), (0, 0.0)])
def test_ms_timestamps(ms: int, s: float) -> None:
    assert units.ms_to_seconds(ms) == s
    assert units.seconds_to_ms(s) == ms


@pytest.mark.parametrize(("minutes", "seconds"), [(24721800, 1483308000), (0, 0)])
def test_trendbar_minutes(minutes: int, seconds: int) -> None:
    assert units.minutes_to_seconds(minutes) == seconds
    assert units.seconds_to_minutes(seconds) == minutes


@pytest.mark.parametrize(("cents", "leverage"), [(10_000, 100.0), (5_000, 50.0), (3_333, 33.33)])
def test_leverage(cents: int, leverage: float) -> None:
    assert units.leverage_from_wire(cents) == leverage


@pytest.mark.parametrize(("spec", "pip", "point"), [
    (EURUSD, 0.0001, 0.00001), (USDJPY, 0.01, 0.001), (XAUUSD, 0.1, 0.01), (US500, 1.0, 0.01),
])
def test_pip_from_pip_position(spec: SymbolSpec, pip: float, point: float) -> None:
    assert spec.pip == pytest.approx(pip)
    assert spec.point == pytest.approx(point)


@pytest.mark.parametrize(("distance", "digits", "relative"), [
    (0.0010, 5, 100),        # 10 pips EURUSD
    (0.00123, 5, 123),
    (0.50, 3, 50_000),       # 50 pips USDJPY
    (0.1234, 3, 12_300),     # rounded to 0.001 (one point = 100)
    (5.0, 2, 500_000),       # XAUUSD $5
    (12.345, 2, 1_234_000),  # US500 rounded to 0.01 (one point = 1000): 12.345 -> 12.34 (banker's) or 12.35
    (0.000001, 5, 1),        # never zero
])
def test_relative_sl_tp(distance: float, digits: int, relative: int) -> None:
    rel = units.relative_from_distance(distance, digits)
    step = 10 ** (5 - digits)
    assert rel % step == 0
    assert abs(rel - relative) <= step


def test_relative_rejects_non_positive() -> None:
    with pytest.raises(ValueError):
        units.relative_from_distance(0, 5)


@pytest.mark.parametrize(("entry", "side", "rel_sl", "rel_tp", "digits", "sl", "tp"), [
    (1.10000, 1, 100, 200, 5, 1.09900, 1.10200),
    (1.10000, -1, 100, 200, 5, 1.10100, 1.09800),
    (117.500, 1, 50_000, None, 3, 117.0, None),
    (1150.25, -1, 500_000, 1_000_000, 2, 1155.25, 1140.25),
])
def test_sl_tp_prices(entry, side, rel_sl, rel_tp, digits, sl, tp) -> None:
    assert units.sl_tp_prices(entry, side, rel_sl, rel_tp, digits) == (sl, tp)


@pytest.mark.parametrize(("base", "quote", "price", "rate"), [
    ("EUR", "USD", 1.1, 1.0), ("USD", "JPY", 125.0, 0.008), ("XAU", "USD", 1150.0, 1.0), ("US500", "USD", 2250, 1.0),
])
def test_quote_to_deposit(base: str, quote: str, price: float, rate: float) -> None:
    assert units.quote_to_deposit_rate(base, quote, "USD", price) == pytest.approx(rate)


def test_quote_to_deposit_cross_needs_a_rate() -> None:
    with pytest.raises(ValueError):
        units.quote_to_deposit_rate("EUR", "GBP", "USD", 0.85)


@pytest.mark.parametrize(("spec", "lots", "amount", "rate", "distance"), [
    (EURUSD, 0.1, 100.0, 1.0, 0.01),            # 10 000 units: $100 = 100 pips
    (EURUSD, 1.0, 10.0, 1.0, 0.0001),           # the classic $10 per pip per lot
    (USDJPY, 0.1, 50.0, 1 / 125.0, 0.625),      # 10 000 units, JPY quote
    (XAUUSD, 0.01, 5.0, 1.0, 5.0),              # 1 oz: $5 = $5 move
    (US500, 2.0, 50.0, 1.0, 25.0),              # 2 units: $50 = 25 points
])
def test_money_to_price_distance(spec, lots, amount, rate, distance) -> None:
    volume = units.lots_to_volume(lots, spec.lot_size)
    assert units.money_to_price_distance(amount, volume, rate) == pytest.approx(distance)
    rel = units.relative_from_distance(units.money_to_price_distance(amount, volume, rate), spec.digits)
    assert abs(rel / units.PRICE_SCALE - distance) <= spec.point / 2 + 1e-12


@pytest.mark.parametrize(("entry", "exit_", "side", "volume", "rate", "pnl"), [
    (1.10000, 1.10100, 1, 1_000_000, 1.0, 10.0),         # 0.1 lot EURUSD +10 pips
    (1.10000, 1.10100, -1, 1_000_000, 1.0, -10.0),
    (125.000, 124.000, -1, 1_000_000, 1 / 124.0, 80.6452),
    (1150.0, 1140.0, 1, 100, 1.0, -10.0),                 # 1 oz gold
])
def test_pnl(entry, exit_, side, volume, rate, pnl) -> None:
    assert units.pnl_deposit(entry, exit_, side, volume, rate) == pytest.approx(pnl, abs=1e-4)
