import math

import pytest

from common.twin.metrics import compute_metrics, max_drawdown_pct, sharpe_ratio
from common.twin.position import Trade


def trade(direction, pnl, pips=1.0):
    return Trade(direction, 1, 0.01, 0, 1.0, 1, 1.0, pips, pnl, 0.0, pnl)


@pytest.mark.parametrize("equity, expected", [
    ([100, 110, 99, 120], 10.0),  # 110 -> 99
    ([100, 100, 100], 0.0),
    ([100, 90, 80, 120, 60], 50.0),  # peak 120 -> 60
])
def test_max_drawdown(equity, expected):
    assert max_drawdown_pct(equity) == pytest.approx(expected)


def test_sharpe_is_per_bar_returns_annualised():
    returns = [0.01, -0.005, 0.02, 0.0]
    mean = sum(returns) / 4
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / 3)
    assert sharpe_ratio(returns, 5040) == pytest.approx(mean / std * math.sqrt(5040))
    assert sharpe_ratio([0.01, 0.01], 5040) == 0.0  # no variance


def test_compute_metrics_by_hand():
    trades = [trade(1, 10.0, 10), trade(1, -5.0, -5), trade(-1, 20.0, 20), trade(-1, -5.0, -5)]
    equity = [10000.0, 10010.0, 10005.0, 10025.0, 10020.0]
    m = compute_metrics(trades, equity, 252)
    assert (m.total_trades, m.long_trades, m.short_trades, m.bars) == (4, 2, 2, 4)
    assert m.win_rate == 0.5 and m.long_win_rate == 0.5 and m.short_win_rate == 0.5
    assert m.profit_factor == pytest.approx(30 / 10)
    assert m.total_pnl == pytest.approx(20.0) and m.total_pips == pytest.approx(20.0)
    assert m.max_drawdown_pct == pytest.approx(5 / 10010 * 100)
    assert m.final_equity == 10020.0
    annual = (10020 / 10000) ** (252 / 4) - 1
    assert m.calmar_ratio == pytest.approx(annual / (5 / 10010))


def test_no_losing_trade_has_no_profit_factor_and_empty_is_zero():
    assert compute_metrics([trade(1, 3.0)], [100.0, 103.0], 252).profit_factor is None
    empty = compute_metrics([], [10000.0], 252)
    assert (empty.total_trades, empty.win_rate, empty.sharpe_ratio, empty.max_drawdown_pct) == (0, 0.0, 0.0, 0.0)
