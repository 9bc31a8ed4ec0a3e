"""The simulator's costs (commission, swap at rollover, conversion chains) and its token registry: pure tables."""

from __future__ import annotations

import datetime as dt

import pytest

from services.connector.sim import costs
from services.connector.sim.auth import EXPIRED, UNKNOWN, VALID, TokenRegistry
from services.connector.sim.costs import CommissionSpec, SwapSpec


def utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())


@pytest.mark.parametrize(("spec", "lots", "units", "price", "q2d", "usd2d", "q2usd", "amount"), [
    # forex: 30 USD per million USD, 1 lot EURUSD at 1.2 = 120 000 USD notional -> 3.60 USD per side
    (CommissionSpec(costs.USD_PER_MILLION_USD, 30.0), 1.0, 100_000, 1.2, 1.0, 1.0, 1.0, 3.6),
    # the same on a EUR account (1 USD = 1/1.2 EUR)
    (CommissionSpec(costs.USD_PER_MILLION_USD, 30.0), 1.0, 100_000, 1.2, 1 / 1.2, 1 / 1.2, 1.0, 3.0),
    # EURGBP on a USD account: notional in GBP converted to USD
    (CommissionSpec(costs.USD_PER_MILLION_USD, 30.0), 0.1, 10_000, 0.88, 1.25, 1.0, 1.25, 0.33),
    (CommissionSpec(costs.USD_PER_LOT, 5.0), 0.2, 20, 1150.0, 1.0, 1.0, 1.0, 1.0),          # gold, USD per lot
    (CommissionSpec(costs.QUOTE_CCY_PER_LOT, 2.0), 0.5, 50, 100.0, 1 / 125, 1.0, 1 / 125, 0.008),
    (CommissionSpec(costs.PERCENTAGE_OF_VALUE, 0.01), 1.0, 100, 4000.0, 1.0, 1.0, 1.0, 40.0),  # 0.01 %
    (CommissionSpec(costs.USD_PER_MILLION_USD, 30.0, minimum=1.0), 0.01, 1000, 1.2, 1.0, 1.0, 1.0, 1.0),  # minimum
])
def test_commission_per_deal(spec, lots, units, price, q2d, usd2d, q2usd, amount) -> None:
    assert costs.commission(spec, lots, units, price, q2d, usd2d, q2usd) == pytest.approx(amount)


def test_precise_rates_are_the_wire_scaling() -> None:
    assert CommissionSpec(costs.USD_PER_MILLION_USD, 30.0, 0.5).precise_rate == 3_000_000_000
    assert CommissionSpec(costs.USD_PER_MILLION_USD, 30.0, 0.5).precise_minimum == 50_000_000
    assert CommissionSpec(costs.PERCENTAGE_OF_VALUE, 0.01).precise_rate == 1_000


def test_rollovers_are_daily_at_the_swap_time_tripled_on_wednesday_and_skip_the_weekend() -> None:
    spec = SwapSpec(time_min=22 * 60, triple_day=3)
    # Monday 2017-12-04 12:00 -> Monday 2017-12-11 12:00 UTC: Mon..Fri 22:00 (Wed x3), Sat/Sun 22:00 skipped
    got = costs.rollovers(utc(2017, 12, 4, 12), utc(2017, 12, 11, 12), spec)
    assert [(dt.datetime.fromtimestamp(t, dt.UTC).strftime("%a %H:%M"), m) for t, m in got] == [
        ("Mon 22:00", 1), ("Tue 22:00", 1), ("Wed 22:00", 3), ("Thu 22:00", 1), ("Fri 22:00", 1),
        ("Sat 22:00", 0), ("Sun 22:00", 0)]
    assert costs.rollovers(utc(2017, 12, 4, 22), utc(2017, 12, 5, 21, 59), spec) == []  # the boundary is exclusive
    assert len(costs.rollovers(utc(2017, 12, 4, 21, 59), utc(2017, 12, 4, 22), spec)) == 1  # ... at the start only
    assert [m for _, m in costs.rollovers(utc(2017, 12, 8, 12), utc(2017, 12, 10, 23),
                                          SwapSpec(charge_weekends=True))] == [1, 1, 1]


@pytest.mark.parametrize(("spec", "side", "units", "pip", "price", "q2d", "mult", "amount"), [
    (SwapSpec(long=-7.5, short=2.0), 1, 100_000, 0.0001, 1.2, 1.0, 1, -75.0),   # 1 lot long: -7.5 pips
    (SwapSpec(long=-7.5, short=2.0), -1, 10_000, 0.0001, 1.2, 1.0, 3, 6.0),     # 0.1 lot short, Wednesday
    (SwapSpec(long=-7.5, short=2.0), 1, 100_000, 0.0001, 1.2, 1.0, 0, 0.0),     # weekend
    (SwapSpec(long=-3.6, kind=costs.SWAP_PERCENTAGE), 1, 100, 0.01, 4000.0, 1.0, 1, -40.0),  # 3.6 %/yr of 400 000
])
def test_swap_per_rollover(spec, side, units, pip, price, q2d, mult, amount) -> None:
    assert costs.swap(spec, side, units, pip, price, q2d, mult) == pytest.approx(amount)


PAIRS = [("EURUSD", "EUR", "USD"), ("GBPUSD", "GBP", "USD"), ("USDJPY", "USD", "JPY"), ("EURGBP", "EUR", "GBP"),
         ("EURJPY", "EUR", "JPY"), ("XAUUSD", "XAU", "USD")]


@pytest.mark.parametrize(("first", "last", "chain"), [
    ("USD", "USD", []), ("GBP", "USD", ["GBPUSD"]), ("JPY", "USD", ["USDJPY"]), ("USD", "EUR", ["EURUSD"]),
    ("GBP", "EUR", ["EURGBP"]), ("JPY", "EUR", ["EURJPY"]), ("XAU", "EUR", ["XAUUSD", "EURUSD"]),
    ("CHF", "USD", []),
])
def test_conversion_chains_are_the_shortest(first, last, chain) -> None:
    assert costs.conversion_chain(PAIRS, first, last) == chain


def test_tokens_expire_on_the_servers_clock_and_a_refresh_replaces_the_pair() -> None:
    reg = TokenRegistry.initial("sim-token", "sim-refresh", lifetime_s=100, now_ms=0)
    assert reg.status("sim-token", 99_999) == VALID and reg.status("sim-token", 100_000) == EXPIRED
    assert reg.status("other", 0) == UNKNOWN and reg.expires_in_s("sim-token", 40_000) == 60
    assert reg.due_expiry(100_000, set()) == ["sim-token"] and reg.due_expiry(100_000, {"sim-token"}) == []
    new, old, why = reg.refresh("sim-refresh", 150_000)
    assert new is not None and old == "sim-token" and why == ""
    assert reg.status("sim-token", 150_000) == UNKNOWN and reg.status(new.access_token, 249_999) == VALID
    assert reg.refresh("sim-refresh", 150_000)[0] is None  # a refresh token works once
    again = TokenRegistry.from_json(reg.to_json())
    assert again.status(new.access_token, 200_000) == VALID  # survives a simulator restart
    reg.refresh_refusals = 1
    assert reg.refresh(new.refresh_token, 160_000) == (None, "", "the refresh token was revoked")
    assert reg.refresh(new.refresh_token, 160_000)[0] is not None  # only the next one was refused
    assert reg.expire(170_000) and all(reg.status(a, 170_000) == EXPIRED for a in reg.tokens)
    assert reg.revoke() and reg.tokens == {}
