"""Backtest / paper statistics from closed trades and a per-bar equity curve. Pure, stdlib only.

Sharpe and Sortino use per-bar returns of the equity curve, annualised with the timeframe's bars per year
(``common.timeframes``): mean(r) / std(r) * sqrt(bars_per_year). Not per-trade statistics times
sqrt(bars), the reference's mistake (lessons.md 46).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from common.twin.position import Trade


@dataclass(frozen=True)
class Metrics:
    total_trades: int
    win_rate: float  # 0..1
    profit_factor: float | None  # gross profit / gross loss; None when there is no losing trade
    total_pnl: float  # sum of closed trades' net PnL (USD)
    total_pips: float
    max_drawdown_pct: float
    sharpe_ratio: float
    sortino_ratio: float
    calmar_ratio: float
    long_trades: int
    short_trades: int
    long_win_rate: float
    short_win_rate: float
    final_equity: float
    bars: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _win_rate(trades: Sequence[Trade]) -> float:
    return sum(t.pnl > 0 for t in trades) / len(trades) if trades else 0.0


def max_drawdown_pct(equity: Sequence[float]) -> float:
    peak, worst = -math.inf, 0.0
    for e in equity:
        peak = max(peak, e)
        if peak > 0:
            worst = max(worst, (peak - e) / peak)
    return worst * 100.0


def bar_returns(equity: Sequence[float]) -> list[float]:
    return [b / a - 1.0 for a, b in zip(equity, equity[1:], strict=False) if a != 0]


def sharpe_ratio(returns: Sequence[float], bars_per_year: int) -> float:
    if len(returns) < 2:
        return 0.0
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    return mean / math.sqrt(var) * math.sqrt(bars_per_year) if var > 0 else 0.0


def sortino_ratio(returns: Sequence[float], bars_per_year: int) -> float:
    if not returns:
        return 0.0
    mean = sum(returns) / len(returns)
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    return mean / downside * math.sqrt(bars_per_year) if downside > 0 else 0.0


def compute_metrics(trades: Sequence[Trade], equity: Sequence[float], bars_per_year: int) -> Metrics:
    """``equity`` is the curve per bar, starting with the initial balance before the first bar."""
    wins = sum(t.pnl for t in trades if t.pnl > 0)
    losses = -sum(t.pnl for t in trades if t.pnl < 0)
    longs = [t for t in trades if t.direction > 0]
    shorts = [t for t in trades if t.direction < 0]
    returns = bar_returns(equity)
    drawdown = max_drawdown_pct(equity)
    calmar = 0.0
    if len(equity) > 1 and equity[0] > 0 and equity[-1] > 0 and drawdown > 0:
        annual = (equity[-1] / equity[0]) ** (bars_per_year / (len(equity) - 1)) - 1.0
        calmar = annual / (drawdown / 100.0)
    return Metrics(
        total_trades=len(trades),
        win_rate=_win_rate(trades),
        profit_factor=wins / losses if losses > 0 else None,
        total_pnl=sum(t.pnl for t in trades),
        total_pips=sum(t.pips for t in trades),
        max_drawdown_pct=drawdown,
        sharpe_ratio=sharpe_ratio(returns, bars_per_year),
        sortino_ratio=sortino_ratio(returns, bars_per_year),
        calmar_ratio=calmar,
        long_trades=len(longs),
        short_trades=len(shorts),
        long_win_rate=_win_rate(longs),
        short_win_rate=_win_rate(shorts),
        final_equity=equity[-1] if equity else 0.0,
        bars=max(len(equity) - 1, 0),
    )
