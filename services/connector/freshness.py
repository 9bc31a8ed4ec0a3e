"""How fresh each bar stream is and how fast orders follow bars (pure: monotonic times and broker facts in).

The heartbeat says, per "SYM TF" stream, how old its last bar is (counted from its subscription, or from its
market's last open), whether its market is open, and for how long; the status op says the bar close -> order sent
reaction time (`bar_to_order_ms`).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

from common import messages

LATENCY_SAMPLES = 10_000  # bar close -> order sent samples kept for the status op


def latency_summary(samples: Iterable[float]) -> messages.LatencySummary:
    """count, p50, p90, p99, max (ms, nearest rank) of the bar close -> order sent samples (None without one)."""
    xs = sorted(samples)
    if not xs:
        return messages.LatencySummary(count=0, p50=None, p90=None, p99=None, max=None)

    def pct(q: float) -> float:
        return round(xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))], 3)

    return messages.LatencySummary(count=len(xs), p50=pct(0.5), p90=pct(0.9), p99=pct(0.99), max=round(xs[-1], 3))


def market_open_now(closed_since: float | None, calendar: Any, server_time: float | None,
                    since_seen_s: float) -> bool:
    """Whether a symbol's bars are due: its market is not known closed by the broker (a refused order) and is open
    by its trading calendar at the broker's time: the last server time seen (any symbol's spot), moved on by the
    wall time since it was seen (outside a replay the broker's clock is the wall clock), so a daily break while
    other symbols trade, or a weekend after the last tick, is closed. No calendar or no time yet: open."""
    if closed_since is not None:
        return False
    if calendar is None or server_time is None:
        return True
    return calendar.is_open(server_time + max(0.0, since_seen_s))


class Freshness:
    def __init__(self) -> None:
        self.last_bar: dict[str, float] = {}  # "SYM TF" -> time of the last publication (or subscription, open)
        self.opened_at: dict[str, float] = {}  # symbol -> time its market last opened (after a closure)
        self._server_time_seen: tuple[float | None, float] = (None, 0.0)  # broker time, when first seen
        # bar close -> order sent: when each symbol's last closed bar went out; an order for the symbol within one
        # bar period of it adds a sample (ms)
        self._bar_published: dict[str, float] = {}
        self.bar_to_order_ms: collections.deque[float] = collections.deque(maxlen=LATENCY_SAMPLES)

    def watched(self, key: str, now: float) -> None:
        """A stream subscribed in this process: its age counts from now until its first bar."""
        self.last_bar.setdefault(key, now)

    def published(self, symbol: str, timeframe: str, now: float) -> None:
        self.last_bar[f"{symbol} {timeframe}"] = self._bar_published[symbol] = now

    def market_opened(self, symbol: str, now: float) -> None:
        """Its streams' ages restart at the open."""
        self.opened_at[symbol] = now
        for key in self.last_bar:
            if key.split(" ")[0] == symbol:
                self.last_bar[key] = now

    def order_sent(self, symbol: str, period_s: float, now: float) -> None:
        """An order for `symbol` was written to the broker: a sample when a bar of the symbol went out less than
        one bar period ago (orders at boot or by an operator are not a bar's reaction). Safe from another thread
        (a dict read, a deque append)."""
        t = self._bar_published.get(symbol)
        if t is not None and now - t < period_s:
            self.bar_to_order_ms.append((now - t) * 1000)

    def market_open(self, closed_since: float | None, calendar: Any, server_time: float | None, now: float) -> bool:
        """`market_open_now` at the broker's time, moved on by the time since that server time was first seen."""
        if server_time != self._server_time_seen[0]:
            self._server_time_seen = (server_time, now)
        return market_open_now(closed_since, calendar, server_time, now - self._server_time_seen[1])

    def stream(self, key: str, market_open: bool, now: float) -> dict:
        """One stream's line in the heartbeat."""
        opened = self.opened_at.get(key.split(" ")[0])
        return {"timeframe": key.split(" ")[1], "last_bar_age_s": round(now - self.last_bar.get(key, now), 1),
                "market_open": market_open, **({"open_for_s": round(now - opened, 1)} if opened is not None else {})}
