"""The simulator's pure parts: replay ticks, the market cursor and the account."""

from __future__ import annotations

import pytest

from services.connector.sim.account import BUY, SELL, Account, SimError
from services.connector.sim.catalog import CATALOG, symbols, synthetic
from services.connector.sim.market import Market
from services.connector.sim.replay import CsvBar, forming, parse_csv, shifted, tick_offsets, tick_prices

UP = CsvBar(0, 1.1000, 1.1050, 1.0990, 1.1040, 1000.0)
DOWN = CsvBar(3600, 1.1040, 1.1045, 1.0950, 1.0960, 500.0)


@pytest.mark.parametrize("b", [UP, DOWN])
@pytest.mark.parametrize("n", [4, 6])
def test_ticks_rebuild_the_bar_exactly(b: CsvBar, n: int) -> None:
    prices = tick_prices(b, n)
    assert len(prices) == n
    assert forming(b, prices, n - 1) == CsvBar(b.time, b.open, b.high, b.low, b.close, round(b.volume))
    assert forming(b, prices, 0).close == b.open


def test_tick_offsets_inside_the_bar() -> None:
    offs = tick_offsets(3600, 4)
    assert offs == [0, 900, 1800, 2700]
    assert all(0 <= o < 3600 for o in offs)


def test_parse_csv() -> None:
    bars = parse_csv("time,open,high,low,close,volume\n10,1,2,0.5,1.5,7\n")
    assert bars == [CsvBar(10, 1.0, 2.0, 0.5, 1.5, 7.0)]


def make_market(bars: list[CsvBar], start: int = 0) -> Market:
    syms = {s.spec.symbol_id: s for s in CATALOG.values()}
    return Market(bars, 3600, syms, 1, 4, bar_index=start)


def test_market_clock_is_bar_time_plus_offsets() -> None:
    weekend = CsvBar(3600 + 3 * 86400, 1.0, 1.0, 1.0, 1.0, 1.0)
    m = make_market([UP, DOWN, weekend], start=1)
    assert m.server_ms == 3600_000
    times = [m.server_ms]
    while m.step() or not m.at_end:
        times.append(m.server_ms)
    times.append(m.server_ms)
    assert times[:5] == [3600_000, 4500_000, 5400_000, 6300_000, weekend.time * 1000]


def test_market_history_includes_the_forming_bar_only_at_the_cursor() -> None:
    m = make_market([UP, DOWN], start=1)
    hist = m.history(1, 0, 10**10)
    assert [b.time for b in hist] == [0, 3600]
    assert hist[-1].close == DOWN.open  # forming: one tick seen
    assert m.history(1, 0, 10**10, count=1) == [hist[-1]]


def test_synthetic_symbols_replay_the_csv_shifted_on_the_same_clock() -> None:
    # first open = EURUSD's reference price: the synthetic series are the CSV's own prices
    bars = [CsvBar(3600 * i, round(1.05236 + i / 1000, 5), round(1.2 + i / 1000, 5), 1.0, 1.15, float(i))
            for i in range(10)]
    assert symbols() == CATALOG  # none unless asked
    syn = synthetic(3, offset_bars=2)
    assert list(syn) == ["SYN01", "SYN02", "SYN03"]
    assert [s.bar_offset for s in syn.values()] == [2, 4, 6]
    assert len({s.spec.symbol_id for s in symbols(3, 2).values()}) == len(CATALOG) + 3
    m = Market(bars, 3600, {s.spec.symbol_id: s for s in symbols(3, 2).values()}, 1, 4, bar_index=9)
    sid = syn["SYN02"].spec.symbol_id
    assert m.bar(sid, 1) == CsvBar(3600, bars[5].open, bars[5].high, bars[5].low, bars[5].close, bars[5].volume)
    assert m.bar(sid, 8) == CsvBar(8 * 3600, *[getattr(bars[2], f) for f in ("open", "high", "low", "close", "volume")])
    assert [b.time for b in m.history(sid, 0, 10**10)] == [b.time for b in bars]  # wraps, same clock
    assert shifted(bars, 3, 0) is bars[3]
    aligned = synthetic(2, offset_bars=0)
    m = Market(bars, 3600, {s.spec.symbol_id: s for s in {**CATALOG, **aligned}.values()}, 1, 4)
    assert m.bar(aligned["SYN02"].spec.symbol_id, 4) == m.bar(1, 4)  # the aligned worst case: EURUSD's bars


def test_derived_symbols_keep_their_digits() -> None:
    m = make_market([UP, DOWN])
    bid, ask = m.bid_ask(4)  # USDJPY derived from the EURUSD series
    assert round(bid, 3) == bid and ask > bid
    assert ask - bid == pytest.approx(CATALOG["USDJPY"].spread_points * 0.001)


def test_account_open_close_and_stops() -> None:
    spec = CATALOG["EURUSD"].spec
    acc = Account(1, 1_000_000)
    fill = acc.open_market(spec, BUY, 1_000_000, 1.1000, 1.1001, 1.0, 0, relative_sl=100, relative_tp=200,
                           label="x")
    pos = fill.position
    assert (pos.entry_price, pos.stop_loss, pos.take_profit) == (1.1001, 1.0991, 1.1021)
    assert acc.triggered(1, 1.0995, 1.0996) == []
    assert acc.triggered(1, 1.0991, 1.0992) == [pos.position_id]
    close = acc.close(pos.position_id, pos.volume, 1.0991, 1.0992, 1.0, 1000, server_event=True)
    assert close.closed and close.deal.gross_profit == -1000  # -10 USD in cents
    assert acc.balance == 999_000 and acc.positions == {}
    restored = Account.from_json(acc.to_json())
    assert restored.balance == acc.balance and len(restored.deals) == 2


@pytest.mark.parametrize(("volume", "code"), [(50_000, "TRADING_BAD_VOLUME"), (10_000_000_000, "NOT_ENOUGH_MONEY")])
def test_account_rejects(volume: int, code: str) -> None:
    acc = Account(1, 100_000)
    with pytest.raises(SimError) as err:
        acc.open_market(CATALOG["EURUSD"].spec, SELL, volume, 1.1, 1.1001, 1.0, 0)
    assert err.value.code == code
