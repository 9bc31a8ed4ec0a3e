"""An account's statistics kept up to date bar by bar: O(1) per bar, whatever the length of the run. Pure.

The same figures as the twin's `compute_metrics` (common/twin/metrics.py) over the account's trades and equity
curve, without walking the whole history at each bar. Sums are accumulated in the order `compute_metrics` adds
them (trades, then bars, first to last), so they are the same floats; only the variance of the bar returns (for
Sharpe) is a running one (Welford), equal to the two-pass figure up to rounding (relative 1e-12).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from common.twin.metrics import Metrics
from services.paper.account import PaperAccount, PaperTrade


class RunningStats:
    __slots__ = ("trades", "wins", "gross_profit", "gross_loss", "pnl", "pips", "longs", "long_wins", "shorts",
                 "short_wins", "first", "last", "points", "peak", "worst", "n_ret", "ret_sum", "ret_mean",
                 "ret_m2", "down_sq")

    def __init__(self) -> None:
        self.trades = self.wins = self.longs = self.long_wins = self.shorts = self.short_wins = 0
        self.gross_profit = self.gross_loss = self.pnl = self.pips = 0.0
        self.first: float | None = None
        self.last: float | None = None
        self.points = 0
        self.peak, self.worst = -math.inf, 0.0
        self.n_ret = 0
        self.ret_sum = self.ret_mean = self.ret_m2 = self.down_sq = 0.0

    @classmethod
    def of(cls, account: PaperAccount) -> RunningStats:
        stats = cls()
        stats.add_trades(account.trades)
        for e in account.equity_curve:
            stats.add_equity(e)
        return stats

    def add_trades(self, trades: Iterable[PaperTrade]) -> None:
        for t in trades:
            self.trades += 1
            win = t.pnl > 0
            self.wins += win
            if t.pnl > 0:
                self.gross_profit += t.pnl
            elif t.pnl < 0:
                self.gross_loss += t.pnl  # negative, as compute_metrics sums them before negating
            self.pnl += t.pnl
            self.pips += t.pips
            if t.direction > 0:
                self.longs += 1
                self.long_wins += win
            elif t.direction < 0:
                self.shorts += 1
                self.short_wins += win

    def add_equity(self, e: float) -> None:
        if self.last is not None and self.last != 0:
            r = e / self.last - 1.0
            self.n_ret += 1
            self.ret_sum += r
            delta = r - self.ret_mean
            self.ret_mean += delta / self.n_ret
            self.ret_m2 += delta * (r - self.ret_mean)
            self.down_sq += min(r, 0.0) ** 2
        if self.first is None:
            self.first = e
        self.last = e
        self.points += 1
        self.peak = max(self.peak, e)
        if self.peak > 0:
            self.worst = max(self.worst, (self.peak - e) / self.peak)

    def headline(self, bars_per_year: int) -> tuple[int, float, float, float | None, float, float]:
        """(total_trades, total_pnl, win_rate, profit_factor, max_drawdown_pct, sharpe_ratio) of ``metrics``, the
        same floats, without the rest: the figures paper publishes for each account at each bar."""
        n = self.n_ret
        sharpe = 0.0
        if n >= 2:
            var = self.ret_m2 / (n - 1)
            sharpe = self.ret_sum / n / math.sqrt(var) * math.sqrt(bars_per_year) if var > 0 else 0.0
        losses = -self.gross_loss
        return (self.trades, self.pnl, self.wins / self.trades if self.trades else 0.0,
                self.gross_profit / losses if losses > 0 else None, self.worst * 100.0, sharpe)

    def metrics(self, bars_per_year: int) -> Metrics:
        n = self.n_ret
        mean = self.ret_sum / n if n else 0.0
        sharpe = 0.0
        if n >= 2:
            var = self.ret_m2 / (n - 1)
            sharpe = mean / math.sqrt(var) * math.sqrt(bars_per_year) if var > 0 else 0.0
        downside = math.sqrt(self.down_sq / n) if n else 0.0
        sortino = mean / downside * math.sqrt(bars_per_year) if downside > 0 else 0.0
        drawdown = self.worst * 100.0
        calmar = 0.0
        first, last = self.first, self.last
        if self.points > 1 and first is not None and last is not None and first > 0 and last > 0 and drawdown > 0:
            annual = (last / first) ** (bars_per_year / (self.points - 1)) - 1.0
            calmar = annual / (drawdown / 100.0)
        losses = -self.gross_loss
        return Metrics(
            total_trades=self.trades,
            win_rate=self.wins / self.trades if self.trades else 0.0,
            profit_factor=self.gross_profit / losses if losses > 0 else None,
            total_pnl=self.pnl,
            total_pips=self.pips,
            max_drawdown_pct=drawdown,
            sharpe_ratio=sharpe,
            sortino_ratio=sortino,
            calmar_ratio=calmar,
            long_trades=self.longs,
            short_trades=self.shorts,
            long_win_rate=self.long_wins / self.longs if self.longs else 0.0,
            short_win_rate=self.short_wins / self.shorts if self.shorts else 0.0,
            final_equity=last if last is not None else 0.0,
            bars=max(self.points - 1, 0),
        )
