"""Closed-bar filtering, history merging and live bar-close detection from trendbars (pure: no clock, no I/O).

Bar close detection uses the broker's live trendbars (connector.md section 7, option B): the forming
bar arrives in each spot event; when a snapshot with a later open time arrives, or a spot timestamp
(server time) reaches the end of the pending bar, the last snapshot of the pending bar is the closed bar.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.connector.ctrader import parsing
from services.connector.port import Bar


def closed_only(bars: list[Bar], tf_seconds: int, server_time_s: float) -> list[Bar]:
    """Keep bars whose period has ended by the server's time (drops the forming bar)."""
    return [b for b in bars if b.time + tf_seconds <= server_time_s]


def merge_history(pages: list[list[Bar]]) -> list[Bar]:
    """Union of history pages, de-duplicated by open time, oldest first."""
    by_time: dict[int, Bar] = {}
    for page in pages:
        for bar in page:
            by_time[bar.time] = bar
    return [by_time[t] for t in sorted(by_time)]


def last_n(bars: list[Bar], n: int) -> list[Bar]:
    return bars[-n:] if n > 0 else []


def next_page_to(oldest_time_s: int) -> int:
    """The toTimestamp (ms) of the next backward page: just before the oldest bar received."""
    return parsing.seconds_to_ms(oldest_time_s) - 1


@dataclass
class LiveBarDetector:
    """Per-symbol detector fed with live trendbar snapshots and server timestamps.

    `on_snapshot` / `on_server_time` return the bars that closed (at most one per call, oldest first).
    A bar is never emitted twice, and never before its period has ended by server time.
    """

    symbol: str
    tf_seconds: int
    pending: Bar | None = None
    last_emitted: int | None = None  # open time of the last bar emitted
    _closed: list[Bar] = field(default_factory=list)

    def on_snapshot(self, bar: Bar, server_time_s: float | None = None) -> list[Bar]:
        out: list[Bar] = []
        if self.pending is not None and bar.time > self.pending.time:
            out += self._emit(self.pending)
        if self.pending is None or bar.time >= self.pending.time:
            self.pending = bar
        if server_time_s is not None:
            out += self.on_server_time(server_time_s)
        return out

    def on_server_time(self, server_time_s: float) -> list[Bar]:
        if self.pending is not None and server_time_s >= self.pending.time + self.tf_seconds:
            bar, self.pending = self.pending, None
            return self._emit(bar)
        return []

    def _emit(self, bar: Bar) -> list[Bar]:
        if self.last_emitted is not None and bar.time <= self.last_emitted:
            return []
        self.last_emitted = bar.time
        return [bar]
