"""The simulator's pure parts: the CSV, the catalog and the account (ticks and market: test_sim_*.py)."""

from __future__ import annotations

import pytest

from services.connector.sim.account import BUY, SELL, Account, SimError
from services.connector.sim.catalog import CATALOG, symbols, synthetic
from services.connector.sim.market import Market
from services.connector.sim.replay import CsvBar, parse_csv


def test_parse_csv() -> None:
    bars = parse_csv("time,open,high,low,close,volume\n10,1,2,0.5,1.5,7\n")
    assert bars == [CsvBar(10, 1.0, 2.0, 0.5, 1.5, 7.0)]
    with pytest.raises(ValueError, match="lacks volume"):
        parse_csv("time,open,high,low,close\n10,1,2,0.5,1.5\n")
    with pytest.raises(ValueError, match="CSV line 3"):
        parse_csv("time,open,high,low,close,volume\n10,1,2,0.5,1.5,7\n11,1,x,0.5,1.5,7\n")


def test_synthetic_symbols_are_eurusd_like_and_shifted() -> None:
    assert symbols() == CATALOG  # none unless asked
    syn = synthetic(3, offset_bars=2)
    assert list(syn) == ["SYN01", "SYN02", "SYN03"]
    assert [s.bar_offset for s in syn.values()] == [2, 4, 6]
    assert [s.spec.symbol_id for s in syn.values()] == [1001, 1002, 1003]
    assert all(s.calendar == CATALOG["EURUSD"].calendar for s in syn.values())
    assert len({s.spec.symbol_id for s in symbols(3, 2).values()}) == len(CATALOG) + 3
    with pytest.raises(ValueError, match="cannot be negative"):
        synthetic(-1)


def test_derived_symbols_keep_their_digits(csv_bars) -> None:
    m = Market(csv_bars, {s.spec.symbol_id: s for s in CATALOG.values()}, 1, 3600, now=csv_bars[130].time)
    m.step()
    for name in ("USDJPY", "EURJPY", "XAUUSD"):
        sym = CATALOG[name]
        bid, ask = m.bid_ask(sym.spec.symbol_id)
        assert round(bid, sym.spec.digits) == bid and ask > bid
        assert ask - bid == pytest.approx(sym.spread_points * sym.spec.point)


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
    history = acc.take_history()  # the deals and orders: appended to the history file, not in the state
    assert [next(iter(r)) for r in history] == ["deal", "order", "deal", "order"] and acc.take_history() == []
    assert "deals" not in acc.to_json()
    restored = Account.from_json(acc.to_json(), history)
    assert restored.balance == acc.balance and restored.deals == acc.deals and restored.orders == acc.orders


@pytest.mark.parametrize(("volume", "code"), [(50_000, "TRADING_BAD_VOLUME"), (10_000_000_000, "NOT_ENOUGH_MONEY")])
def test_account_rejects(volume: int, code: str) -> None:
    acc = Account(1, 100_000)
    with pytest.raises(SimError) as err:
        acc.open_market(CATALOG["EURUSD"].spec, SELL, volume, 1.1, 1.1001, 1.0, 0)
    assert err.value.code == code
