"""One symbol's replayed series: its H1 source bars (shifted and scaled when derived), its points, its bars (pure).

A `Series` makes its points lazily, one source bar at a time, and keeps the last few hundred hours of them; the
H1 bars come without making any point (`ticks.hour_bar`), so a year of history for many symbols stays cheap.
`served_bars` is what the simulator serves for a symbol and a timeframe: tests and benches take their expected
bars from it.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from services.connector.ctrader import periods as timeframes
from services.connector.sim.catalog import SimSymbol
from services.connector.sim.replay import CsvBar
from services.connector.sim.ticks import (
    HOUR,
    MINUTE,
    Plan,
    Point,
    aggregate,
    combine,
    hour_bar,
    hour_point_times,
    minute_offset,
    path,
    plan,
    point_minutes,
    tick_volume,
)

V = TypeVar("V")

POINT_CACHE_HOURS = 128
POINT_TIMES_CACHE_HOURS = 1024  # the times alone (no price path made): what the clock's look-ahead reads


def check_source(bars: Sequence[CsvBar]) -> None:
    """The replay's source must be H1 bars in time order with consistent prices; the error names the bar."""
    if not bars:
        raise ValueError("no bars to replay")
    previous = None
    for i, b in enumerate(bars):
        if b.time % HOUR:
            raise ValueError(f"source bar {i} (time {b.time}) does not open on a whole hour: the CSV must be H1")
        if previous is not None and b.time <= previous:
            raise ValueError(f"source bar {i} (time {b.time}) is not after the bar before it ({previous})")
        if not (b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close)):
            raise ValueError(f"source bar {i} (time {b.time}): open/close outside [low, high]")
        previous = b.time



class HourCache(Generic[V]):
    """Values made per source hour, the `limit` last used kept (one dropped is made again when asked: the values
    are pure functions of the hour)."""

    __slots__ = ("_kept", "limit")

    def __init__(self, limit: int) -> None:
        self._kept: OrderedDict[int, V] = OrderedDict()
        self.limit = limit

    def get(self, i: int, make: Callable[[int], V]) -> V:
        kept = self._kept
        got = kept.get(i)
        if got is None:
            got = kept[i] = make(i)
            if len(kept) > self.limit:
                kept.popitem(last=False)
        else:
            kept.move_to_end(i)
        return got

    def clear(self) -> None:
        self._kept.clear()

class Series:
    """`symbol` replaying `source`: bar i is source bar i + offset (wrapping) at bar i's time, prices x factor."""

    def __init__(self, source: Sequence[CsvBar], symbol: SimSymbol, factor: float = 1.0, offset: int = 0,
                 times: Sequence[int] | None = None,
                 minutes: dict[tuple[int, int], Sequence[int]] | None = None) -> None:
        self.source = source
        self.symbol = symbol
        self.factor = factor
        self.offset = offset
        self.digits = symbol.spec.digits
        self.calendar = symbol.calendar
        self.times = times if times is not None else [b.time for b in source]
        self._targets: dict[int, CsvBar] = {}
        # hour -> its open minutes; shared by the series of one market over the same `times`, keyed by (calendar
        # id, hour): symbols of one calendar have the same open minutes (the calendars live as long as the series)
        self._minutes: dict[tuple[int, int], Sequence[int]] = {} if minutes is None else minutes
        self._hours: dict[int, CsvBar | None] = {}
        self._points: HourCache[list[Point]] = HourCache(POINT_CACHE_HOURS)
        self._plans: HourCache[Plan] = HourCache(POINT_CACHE_HOURS)
        self._point_times: HourCache[Sequence[int]] = HourCache(POINT_TIMES_CACHE_HOURS)

    # ---- one source hour
    def target(self, i: int) -> CsvBar:
        """Source bar i as this symbol replays it: shifted, scaled and rounded (feed volume)."""
        bar = self._targets.get(i)
        if bar is None:
            src = self.source[(i + self.offset) % len(self.source)]
            f, d = self.factor, self.digits
            bar = CsvBar(self.times[i], round(src.open * f, d), round(src.high * f, d), round(src.low * f, d),
                         round(src.close * f, d), src.volume)
            self._targets[i] = bar
        return bar

    def minutes(self, i: int) -> Sequence[int]:
        """The starts of the minutes of hour i whose point instant is open in the symbol's calendar."""
        key = (id(self.calendar), i)
        got = self._minutes.get(key)
        if got is None:
            start = self.times[i]
            spans = self.calendar.open_spans(start, start + HOUR)
            if spans == [(start, start + HOUR)]:
                got = range(start, start + HOUR, MINUTE)
            else:
                got = [m for m in range(start, start + HOUR, MINUTE)
                       if any(a <= m + minute_offset(m) < b for a, b in spans)]
            self._minutes[key] = got
        return got

    def points(self, i: int) -> list[Point]:
        return self._points.get(i, self._make_points)

    def _make_points(self, i: int) -> list[Point]:
        seed = self.source[(i + self.offset) % len(self.source)].time
        return path(self.target(i), self.minutes(i), self.digits, seed)

    def plan(self, i: int) -> Plan:
        """Hour i's points without the price path between the bar's own prices (`ticks.plan`)."""
        return self._plans.get(i, self._make_plan)

    def _make_plan(self, i: int) -> Plan:
        seed = self.source[(i + self.offset) % len(self.source)].time
        return plan(self.target(i), self.minutes(i), seed)

    def point_times(self, i: int) -> Sequence[int]:
        """The times of hour i's points (those of `points(i)`), made without their prices; an hour with a point in
        every minute gives the tuple every such symbol shares (`hour_point_times`)."""
        return self._point_times.get(i, self._make_point_times)

    def _make_point_times(self, i: int) -> Sequence[int]:
        minutes = self.minutes(i)
        ticks = tick_volume(self.source[(i + self.offset) % len(self.source)].volume)  # the target's
        if ticks >= len(minutes) == HOUR // MINUTE:
            return hour_point_times(self.times[i])
        return [m + minute_offset(m) for m in point_minutes(self.target(i), minutes)]

    def hour(self, i: int) -> CsvBar | None:
        """Hour i's H1 bar from all its points (None: no point), made without the points."""
        if i not in self._hours:
            self._hours[i] = hour_bar(self.target(i), len(self.minutes(i)))
        return self._hours[i]

    def index_of(self, t: int) -> int:
        """The index of the source hour holding instant t (-1: before the data; may be a closed gap's hour)."""
        return bisect.bisect_right(self.times, t) - 1

    # ---- bars
    def bars(self, period: int, t0: int, t1: int, now: int | None = None, limit: int = 0) -> list[CsvBar]:
        """Bars of `period` s opening in [t0, t1), oldest first, from the points at or before `now` (None: all);
        with `limit`, only the newest `limit`."""
        if period <= HOUR and HOUR % period or period > HOUR and period % HOUR:
            raise ValueError(f"period {period} s does not divide or nest the hour")
        if period <= HOUR:  # the hours holding the buckets
            lo = bisect.bisect_left(self.times, t0 - t0 % HOUR)
            hi = bisect.bisect_left(self.times, t1)
        else:  # the hours of the buckets opening in [t0, t1)
            lo = bisect.bisect_left(self.times, -(-t0 // period) * period)
            last_bucket = (t1 - 1) - (t1 - 1) % period
            hi = bisect.bisect_left(self.times, last_bucket + period)
        if now is not None:
            hi = min(hi, bisect.bisect_right(self.times, now))
        newest_first: list[CsvBar] = []
        pending: list[CsvBar] = []  # hour bars of one bucket longer than an hour, newest first
        for i in range(hi - 1, lo - 1, -1):
            for b in reversed(self._hour_bars(i, period, now)):
                bucket = b.time - b.time % period
                if not t0 <= bucket < t1:
                    continue
                if period <= HOUR:
                    newest_first.append(b)
                    continue
                if pending and pending[0].time - pending[0].time % period != bucket:
                    newest_first.append(combine(reversed(pending), period)[0])
                    pending = []
                pending.append(b)
            if limit and len(newest_first) >= limit:
                pending = []
                break
        if pending:
            newest_first.append(combine(reversed(pending), period)[0])
        if limit:
            newest_first = newest_first[:limit]
        return newest_first[::-1]

    def _hour_bars(self, i: int, period: int, now: int | None) -> list[CsvBar]:
        """Hour i as bars of `period` (H1 for periods of an hour or more), from its points at or before `now`."""
        whole = now is None or self.times[i] + HOUR <= now
        if period >= HOUR and whole:
            bar = self.hour(i)
            return [] if bar is None else [bar]
        points = self.points(i) if whole else [p for p in self.points(i) if p.time <= now]
        return aggregate(points, min(period, HOUR))


def factor_and_offset(source: Sequence[CsvBar], symbol: SimSymbol, csv_symbol: str) -> tuple[float, int]:
    """The CSV's own symbol replays it as it is; any other scales it to its reference price and shifts it."""
    if symbol.spec.name == csv_symbol:
        return 1.0, 0
    return symbol.reference_price / source[0].open, symbol.bar_offset


def series_for(source: Sequence[CsvBar], symbol: SimSymbol, csv_symbol: str,
               times: Sequence[int] | None = None,
               minutes: dict[tuple[int, int], Sequence[int]] | None = None) -> Series:
    factor, offset = factor_and_offset(source, symbol, csv_symbol)
    return Series(source, symbol, factor, offset, times, minutes)


def served_bars(source: Sequence[CsvBar], symbol: SimSymbol, timeframe: str, from_time: int, to_time: int,
                csv_symbol: str = "EURUSD") -> list[CsvBar]:
    """Exactly the bars the simulator serves for `symbol` (replaying `source`, the CSV of `csv_symbol`) on
    `timeframe`, opening in [from_time, to_time), once complete: volume in ticks, times in UTC buckets."""
    check_source(source)
    period = timeframes.seconds_of(timeframe)
    return series_for(source, symbol, csv_symbol).bars(period, from_time, to_time)
