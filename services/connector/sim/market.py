"""The replay cursor: every symbol's points merged in time order, the server clock, prices and forming bars.

Pure: it moves only through `step()` (the next instant: every symbol's point at that second) and `advance_clock()`
(the clock into a stretch without points: a closed market); the server decides when. Server time is `now`: the
time of the last instant processed or a time set in a closed stretch, never the wall clock. Every point at or
before `now` has been processed; a bar is known only from those points, so a bar closes at the first point after
its period (Friday's last H1 bar when Sunday's first point comes).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from services.connector.sim.catalog import SimSymbol
from services.connector.sim.replay import CsvBar
from services.connector.sim.series import HourCache, Series, check_source, series_for
from services.connector.sim.ticks import HOUR, Point

INSTANT_CACHE_HOURS = 4
LAST_POINT_LOOKBACK_HOURS = 24 * 14  # how far back a symbol's last price is looked for


class Instant(NamedTuple):  # a tuple: made 60 times an hour
    time: int
    points: tuple[tuple[int, Point], ...]  # (symbol id, point) of every symbol ticking at `time`
    previous: tuple[int | None, ...]  # each of those symbols' point before (None: none in the data)
    following: tuple[int | None, ...]  # and after


class Track:
    """One priced symbol's points in an hour of instants, as columns (what a run of instants folds in at once):
    their times and ticks, the prices the hour's plan knows (open, high, low, close), the rest of its path only
    when a price in between is looked at (`price`, `extremes`)."""

    __slots__ = ("series", "hour", "times", "ticks", "known", "high_at", "low_at", "at", "before", "after", "due",
                 "_prices")

    def __init__(self, series: Series, hour: int, at: list[int] | None, before: int | None,
                 after: int | None) -> None:
        plan = series.plan(hour)
        self.series, self.hour = series, hour
        self.times, self.ticks, self.known = plan.times, plan.ticks, plan.known
        self.high_at, self.low_at = plan.high_at, plan.low_at
        self.at = range(len(plan.times)) if at is None else at  # the index of each point's instant in the hour
        self.before = before  # the time of the symbol's point before the hour's first (None: none in the data)
        self.after = after  # and after its last
        self.due: dict[tuple[int, tuple[int, ...]], frozenset[int]] = {}  # by spacing: `due_at`
        self._prices: list[float] | None = None

    def prices(self) -> list[float]:
        """Every price of the hour's path (made now if not yet)."""
        if self._prices is None:
            self._prices = [p.price for p in self.series.points(self.hour)]
        return self._prices

    def price(self, k: int) -> float:
        known = self.known.get(k)
        return self.prices()[k] if known is None else known

    def point(self, k: int) -> Point:
        return Point(self.times[k], self.price(k), self.ticks[k])

    def extremes(self, a: int, b: int) -> tuple[float, float]:
        """The highest and the lowest price of points [a, b): the hour's high and low when both lie in it."""
        high_at, low_at = self.high_at, self.low_at
        if high_at is None:  # a short path: every price known
            prices = [self.known[k] for k in range(a, b)]
        elif a <= high_at < b and a <= low_at < b:  # type: ignore[operator]
            return self.known[high_at], self.known[low_at]  # type: ignore[index]
        else:
            prices = self.prices()[a:b]
        return max(prices), min(prices)

    def due_at(self, interval: int, periods: tuple[int, ...]) -> frozenset[int]:
        """The indices of the hour's instants where this symbol's spot is due (`spot_due`)."""
        key = (interval, periods)
        got = self.due.get(key)
        if got is None:
            at = self.at
            got = frozenset(at if interval <= 60 else
                            (at[k] for k in spot_due_indices(self.times, self.before, self.after, interval, periods)))
            self.due[key] = got
        return got


class LazyInstants(Sequence[Instant]):
    """An hour's instants, each made when first asked for from the tracks (`rows[k]`: the (symbol id, track,
    index) of every symbol ticking at instant k, in the series' order): a run of instants folded in at once
    (`Market.skip`) never makes most of them, nor the price path between their anchors."""

    __slots__ = ("_times", "_rows", "_made")

    def __init__(self, times: list[int], rows: Sequence[Sequence[tuple[int, Track, int]]]) -> None:
        self._times, self._rows = times, rows
        self._made: list[Instant | None] = [None] * len(times)

    def __len__(self) -> int:
        return len(self._times)

    def symbols_at(self, k: int) -> list[int]:
        return [sid for sid, _, _ in self._rows[k]]

    def __getitem__(self, k):  # type: ignore[no-untyped-def]  # an index (a slice: a list of them)
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        got = self._made[k]
        if got is None:
            points, before, after = [], [], []
            for sid, track, j in self._rows[k]:
                times = track.times
                points.append((sid, track.point(j)))
                before.append(times[j - 1] if j else track.before)
                after.append(times[j + 1] if j + 1 < len(times) else track.after)
            got = self._made[k] = Instant(self._times[k], tuple(points), tuple(before), tuple(after))
        return got


class _OneTrackRows(Sequence[tuple[tuple[int, Track, int]]]):
    """`LazyInstants` rows of an hour where one symbol alone ticks: instant k is its point k."""

    __slots__ = ("_sid", "_track")

    def __init__(self, sid: int, track: Track) -> None:
        self._sid, self._track = sid, track

    def __len__(self) -> int:
        return len(self._track.times)

    def __getitem__(self, k):  # type: ignore[no-untyped-def]
        return ((self._sid, self._track, k),)


class Hour(NamedTuple):
    """A source hour's instants: their times, the instants, and each priced symbol's points as a `Track`."""

    times: list[int]
    instants: LazyInstants
    tracks: dict[int, Track]

    def symbols_at(self, k: int) -> list[int]:
        """The ids of the symbols ticking at instant k, in its order (without making its points)."""
        return self.instants.symbols_at(k)


class Market:
    def __init__(self, source: Sequence[CsvBar], symbols: dict[int, SimSymbol], source_symbol_id: int,
                 tf_seconds: int, now: int | None = None) -> None:
        check_source(source)
        if source_symbol_id not in symbols:
            raise ValueError(f"the CSV's symbol id {source_symbol_id} is not among the served symbols")
        self.source = source
        self.times = [b.time for b in source]
        self.symbols = symbols
        self.tf_seconds = tf_seconds
        csv_symbol = symbols[source_symbol_id].spec.name
        minutes: dict[tuple[int, int], Sequence[int]] = {}  # open minutes by calendar and hour, shared
        self.series: dict[int, Series] = {
            sid: series_for(source, sym, csv_symbol, self.times, minutes) for sid, sym in symbols.items()
        }
        self.now = self.times[0] if now is None else int(now)
        if not self.times[0] <= self.now <= self.end_time:
            raise ValueError(f"server time {self.now} is outside the data ({self.times[0]}..{self.end_time})")
        self._instants: HourCache[Hour] = HourCache(INSTANT_CACHE_HOURS)
        self._last: dict[int, Point | None] = {}
        self._last_at: dict[int, tuple[Track, int]] = {}  # a latest point as its place in a track (before `_last`)
        # the forming bar of each (symbol, period) watched: time, open, high, low, close, volume (updated in place)
        self._forming: dict[tuple[int, int], list | None] = {}
        self._periods: dict[int, set[int]] = {}
        self._next_asked: tuple[int, tuple[Hour, int] | None] | None = None  # the last `_locate`: time, answer
        self._hint: tuple[int, Hour] | None = None  # the hour `_next_after` last answered from
        self.generation = 0  # counts the times the instants were made anew (`price`): an `Hour` held is stale
        # the symbols whose points the instants carry (None: every one); the others count for the instants' times
        # only, their prices made when asked (`last_point`): a symbol no one watches makes no price path
        self.priced: set[int] | None = None
        self._unpriced_asked: set[int] = set()  # symbols not priced whose latest point `_last` holds

    def price(self, symbol_ids: Iterable[int]) -> None:
        """The instants carry these symbols' points from now on (once priced, a symbol stays priced)."""
        if self.priced is None:
            return
        new = set(symbol_ids) - self.priced
        if new:
            self.priced |= new
            self._instants.clear()
            self._next_asked = None
            self._hint = None
            self.generation += 1

    @property
    def end_time(self) -> int:
        return self.times[-1] + HOUR

    # ---- the cursor
    def hour_instants(self, i: int) -> Hour:
        """Source hour i's instants (their times, the instants, the priced symbols' tracks), every symbol's points
        merged."""
        return self._instants.get(i, self._make_hour_instants)

    def _make_hour_instants(self, i: int) -> Hour:
        priced = self.priced
        unpriced: list[Sequence[int]] = []  # an instant of its own when no priced symbol ticks then
        ticking: list[tuple[int, Series]] = []
        for sid, series in self.series.items():
            times_ = series.point_times(i)
            if priced is not None and sid not in priced:
                if not any(times_ is u for u in unpriced):  # full hours share one tuple of times
                    unpriced.append(times_)
            elif times_:
                ticking.append((sid, series))
        one = ticking[0][1].point_times(i) if len(ticking) == 1 else None
        if one is not None and all(u is one or list(u) == list(one) for u in unpriced):
            # one symbol priced (the usual replay) and no other ticking at other times: its points, in order
            sid = ticking[0][0]
            track = Track(self.series[sid], i, None, self._point_before(sid, i), self._point_after(sid, i))
            times, tracks = list(track.times), {sid: track}
            rows: Sequence[Sequence[tuple[int, Track, int]]] = _OneTrackRows(sid, track)
        else:
            times = sorted({t for sid, series in ticking for t in series.point_times(i)}.union(*unpriced))
            index = {t: k for k, t in enumerate(times)}
            tracks = {}
            merged: list[list[tuple[int, Track, int]]] = [[] for _ in times]
            for sid, series in ticking:
                at = [index[t] for t in series.point_times(i)]
                track = tracks[sid] = Track(series, i, at, self._point_before(sid, i), self._point_after(sid, i))
                for j, k in enumerate(at):
                    merged[k].append((sid, track, j))
            rows = merged
        return Hour(times, LazyInstants(times, rows), tracks)

    def _point_before(self, symbol_id: int, i: int) -> int | None:
        """The time of the symbol's last point in the hours before hour i."""
        series = self.series[symbol_id]
        for j in range(i - 1, max(-1, i - 1 - LAST_POINT_LOOKBACK_HOURS), -1):
            times = series.point_times(j)
            if times:
                return times[-1]
        return None

    def _point_after(self, symbol_id: int, i: int) -> int | None:
        """The time of the symbol's first point in the hours after hour i (None: the data ends first)."""
        series = self.series[symbol_id]
        for j in range(i + 1, len(self.times)):
            times = series.point_times(j)
            if times:
                return times[0]
        return None

    def next_after(self, t: int) -> Instant | None:
        """The first instant after time t (None: the data ends first)."""
        found = self._locate(t)
        return None if found is None else found[0].instants[found[1]]

    def _locate(self, t: int) -> tuple[Hour, int] | None:
        """The hour and the index in it of the first instant after time t (None: the data ends first)."""
        asked = self._next_asked
        if asked is not None and asked[0] == t:  # the clock asks twice per instant: `next_time`, then `step`
            return asked[1]
        found = self._next_after(t)
        self._next_asked = (t, found)
        return found

    def _next_after(self, t: int) -> tuple[Hour, int] | None:
        hint = self._hint  # the hour of the last answer: the clock steps through an hour's instants in order
        if hint is not None:
            i, hour = hint
            if self.times[i] <= t and (i + 1 == len(self.times) or t < self.times[i + 1]):
                k = bisect.bisect_right(hour.times, t)
                if k < len(hour.times):
                    return hour, k
        for i in range(max(0, bisect.bisect_right(self.times, t) - 1), len(self.times)):
            hour = self.hour_instants(i)
            k = bisect.bisect_right(hour.times, t)
            if k < len(hour.times):
                self._hint = (i, hour)
                return hour, k
        return None

    def upcoming(self, limit: int) -> tuple[Hour, int, int] | None:
        """The next instants up to time `limit` within the hour of the next one: that hour and the index range
        [k0, k1) of its instants (None: no instant up to `limit`)."""
        found = self._locate(self.now)
        if found is None or found[0].times[found[1]] > limit:
            return None
        hour, k0 = found
        return hour, k0, bisect.bisect_right(hour.times, limit, k0)

    def skip(self, hour: Hour, k0: int, k1: int) -> None:
        """Process the hour's instants [k0, k1) at once (the next ones, as `upcoming` gave them): the clock, the
        latest points and the forming bars end as `step` would leave them after each. A latest point is kept as
        its place in the track (`_last_at`): its price is made when asked."""
        t0, t1 = hour.times[k0], hour.times[k1 - 1]
        self.now = t1
        if self._unpriced_asked:
            self._forget_unpriced()
        periods = self._periods
        for sid, track in hour.tracks.items():
            times = track.times
            a = bisect.bisect_left(times, t0)
            b = bisect.bisect_right(times, t1, a)
            if a == b:
                continue
            self._last_at[sid] = (track, b - 1)
            for period in periods.get(sid, ()):
                self._fold(sid, period, track, a, b)

    def _fold(self, sid: int, period: int, track: Track, a: int, b: int) -> None:
        """The forming bar of (sid, period) after the track's points [a, b), as `step` updates it point by point
        (the volume a sum of whole ticks: exact in any order)."""
        times, ticks = track.times, track.ticks
        key = (sid, period)
        bar = self._forming.get(key)
        while a < b:
            t = times[a]
            bucket = t - t % period
            c = b if period >= HOUR else bisect.bisect_left(times, bucket + period, a, b)
            if bar is None or bar[0] != bucket:
                price = track.price(a)
                bar = [bucket, price, price, price, price, float(ticks[a])]
                self._forming[key] = bar
                a += 1
                if a == c:
                    continue
            high, low = track.extremes(a, c)
            if high > bar[2]:
                bar[2] = high
            if low < bar[3]:
                bar[3] = low
            bar[4] = track.price(c - 1)
            bar[5] += sum(ticks[a:c])
            a = c

    def next_time(self) -> int | None:
        found = self._locate(self.now)
        return None if found is None else found[0].times[found[1]]

    def next_time_after(self, t: int) -> int | None:
        """The time of the first instant after time t (None: the data ends first), from the point times alone:
        looking ahead makes no price path."""
        for i in range(max(0, bisect.bisect_right(self.times, t) - 1), len(self.times)):
            first = None
            for series in self.series.values():
                times = series.point_times(i)
                k = bisect.bisect_right(times, t)
                if k < len(times) and (first is None or times[k] < first):
                    first = times[k]
            if first is not None:
                return first
        return None

    def step(self) -> Instant | None:
        """Process the next instant (None at the end of the data)."""
        inst = self.next_after(self.now)
        if inst is None:
            return None
        self.now = inst.time
        if self._unpriced_asked:
            self._forget_unpriced()
        forming, last_at = self._forming, self._last_at
        for sid, p in inst.points:
            self._last[sid] = p
            if last_at:
                last_at.pop(sid, None)
            for period in self._periods.get(sid, ()):
                # ticks.update, in place (a point of every watched symbol and period, 60 an hour)
                bar = forming.get((sid, period))
                bucket = p.time - p.time % period
                price = p.price
                if bar is None or bar[0] != bucket:
                    forming[(sid, period)] = [bucket, price, price, price, price, float(p.ticks)]
                else:
                    if price > bar[2]:
                        bar[2] = price
                    if price < bar[3]:
                        bar[3] = price
                    bar[4] = price
                    bar[5] += p.ticks
        return inst

    def _forget_unpriced(self) -> None:
        """The latest points of symbols not priced were as of the time asked: found again when asked again."""
        for sid in self._unpriced_asked:
            if self.priced is not None and sid not in self.priced:
                self._last.pop(sid, None)
        self._unpriced_asked.clear()

    def advance_clock(self, t: int) -> None:
        """Move the clock to `t` in a stretch without points (a closed market); the points before come first."""
        if t < self.now:
            raise ValueError(f"the clock runs forward: {t} is before the server time {self.now}")
        nxt = self.next_time()
        if nxt is not None and nxt <= t:
            raise ValueError(f"the points up to {t} must be processed first (the next one is at {nxt})")
        self.now = min(t, max(self.now, self.end_time))

    def bar_target(self, n: int) -> int | None:
        """The first instant of the bar of the configured timeframe `n` bars ahead of the one holding `now`
        (bars without any point do not count; None: the data ends first). Found from the hours' instants (their
        times are every symbol's point times, as `next_time_after` reads them): the clock steps through them next."""
        tf = self.tf_seconds
        bucket = self.now - self.now % tf
        t = None
        for _ in range(n):
            found = self._next_after(bucket + tf - 1)
            if found is None:
                return None
            t = found[0].times[found[1]]
            bucket = t - t % tf
        return t

    @property
    def bar_index(self) -> int:
        """The index of the source bar holding `now` (the last one before it in a closed stretch)."""
        return max(0, bisect.bisect_right(self.times, self.now) - 1)

    @property
    def bar_time(self) -> int:
        """The open time of the configured timeframe's bucket holding `now`."""
        return self.now - self.now % self.tf_seconds

    # ---- prices
    def last_point(self, symbol_id: int) -> Point | None:
        """The symbol's latest point at or before `now` (None: it has not ticked yet)."""
        if self._last_at:
            at = self._last_at.pop(symbol_id, None)
            if at is not None:
                self._last[symbol_id] = at[0].point(at[1])
        if symbol_id not in self._last:
            found = None
            series = self.series[symbol_id]
            i = series.index_of(self.now)
            for j in range(i, max(-1, i - LAST_POINT_LOOKBACK_HOURS), -1):
                seen = [p for p in series.points(j) if p.time <= self.now]
                if seen:
                    found = seen[-1]
                    break
            self._last[symbol_id] = found
            if self.priced is not None and symbol_id not in self.priced:
                self._unpriced_asked.add(symbol_id)
        return self._last[symbol_id]

    def bid_ask(self, symbol_id: int) -> tuple[float, float] | None:
        last = self.last_point(symbol_id)
        return None if last is None else (last.price, self.ask_of(symbol_id, last.price))

    def ask_of(self, symbol_id: int, bid: float) -> float:
        """The ask for a bid: the symbol's fixed spread above it."""
        sym = self.symbols[symbol_id]
        return round(bid + sym.spread_points * sym.spec.point, sym.spec.digits)

    def is_open(self, symbol_id: int) -> bool:
        return self.symbols[symbol_id].calendar.is_open(self.now)

    def next_point_time(self, symbol_id: int, after: int | None = None) -> int | None:
        """The time of the symbol's first point after `after` (default: now); None: the data ends first."""
        t = self.now if after is None else after
        for j in range(max(0, self.series[symbol_id].index_of(t)), len(self.times)):
            times = self.series[symbol_id].point_times(j)
            k = bisect.bisect_right(times, t)
            if k < len(times):
                return times[k]
        return None

    # ---- bars
    def forming(self, symbol_id: int, period: int) -> CsvBar | None:
        """The bar of `period` holding the symbol's latest point, as far as it goes (kept up to date from now on)."""
        got = self.forming_row(symbol_id, period)
        return None if got is None else CsvBar(int(got[0]), got[1], got[2], got[3], got[4], got[5])

    def forming_row(self, symbol_id: int, period: int) -> list | None:
        """`forming` as the row kept up to date: [time, open, high, low, close, volume] (not to be changed)."""
        key = (symbol_id, period)
        if key not in self._forming:
            self.price((symbol_id,))  # kept up to date by `step` from now on
            last = self.last_point(symbol_id)
            bar = None
            if last is not None:
                bucket = last.time - last.time % period
                bars = self.series[symbol_id].bars(period, bucket, bucket + period, now=self.now)
                bar = bars[-1] if bars else None
            self._forming[key] = None if bar is None else [bar.time, bar.open, bar.high, bar.low, bar.close,
                                                           bar.volume]
            self._periods.setdefault(symbol_id, set()).add(period)
        return self._forming[key]

    def history(self, symbol_id: int, period: int, from_s: int, to_s: int, limit: int = 0) -> list[CsvBar]:
        """Bars opening in [from_s, to_s] known at `now` (the last one may be forming), the newest `limit`."""
        if to_s < from_s:
            return []
        return self.series[symbol_id].bars(period, from_s, to_s + 1, now=self.now, limit=limit)


def spot_due(previous: int | None, time: int, following: int | None, interval: int,
             periods: Iterable[int] = ()) -> bool:
    """Whether a symbol's point at `time` goes out as a spot event, its previous point being at `previous` and its
    next at `following`: the first point of each `interval`-second UTC bucket; and for the live trendbar
    periods subscribed, the first and the last point of every bar, so that whatever the spacing a bar closes at
    the first point after it and its last snapshot holds all its points."""
    if previous is None or time // interval != previous // interval:
        return True
    return any(time // p != previous // p or following is None or following // p != time // p for p in periods)


def spot_due_indices(times: Sequence[int], before: int | None, after: int | None, interval: int,
                     periods: Iterable[int] = ()) -> list[int]:
    """The indices k of a symbol's consecutive point `times` (its point before them at `before`, after them at
    `after`) where `spot_due(previous, times[k], following, interval, periods)` holds, found from the bucket
    boundaries crossed rather than point by point."""
    n = len(times)
    if not n:
        return []
    due = set()
    first, last = times[0], times[-1]
    if before is None:
        due.add(0)
    for step in (interval, *periods):  # the first point of each bucket: a boundary in (previous, time]
        b = ((first if before is None else before) // step + 1) * step
        while b <= last:
            k = bisect.bisect_left(times, b)
            due.add(k)
            b = (times[k] // step + 1) * step
    for period in periods:  # the last point of each bucket: a boundary in (time, following]
        if after is None:
            due.add(n - 1)
        b = (first // period + 1) * period
        while True:
            k = bisect.bisect_left(times, b) - 1
            if k == n - 1:
                if after is not None and b <= after:
                    due.add(k)
                break
            due.add(k)
            b = (times[k + 1] // period + 1) * period
    return sorted(due)
