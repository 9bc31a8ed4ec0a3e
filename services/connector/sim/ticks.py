"""The tick stream: from each H1 source bar, a deterministic path of minute points; bars built from points (pure).

The rules (documented in services/connector/README.md, "The simulator's market model"):

- Points: one per open minute of the bar's hour (open per the symbol's calendar at the point's instant), at second
  `minute_offset(minute)` of the minute (1..59, the same for every symbol, so all symbols tick at the same
  instants and no point ever sits on a bar boundary).
- Tick volume: an H1 source bar counts ``max(1, round(feed_volume / 1e6))`` ticks (`tick_volume`), shared among its
  points, each at least one. With fewer ticks than open minutes, only that many minutes have a point (spread
  evenly, the first and the last open minute included).
- Prices (bid, rounded to the symbol's digits): the first point is the bar's open, the last its close, and the
  highest and lowest are exactly its high and low; in between a seeded Brownian bridge clipped to [low, high].
  A bar with fewer than 4 points cannot show all four prices: 3 points are open, the extreme farther from the
  open/close body, close; 2 are open, close; 1 is the close.
- Bars of every period are aggregated from the same points: open = first point, high/low = max/min, close = last,
  volume = sum of the ticks, open time = the period's bucket in UTC (``t - t % period``: D1 bars open at 00:00 UTC,
  H4 at 00, 04, ... 20 UTC). So an H1 bar with 4 points or more equals its source bar, with the volume in ticks.
"""

from __future__ import annotations

import functools
import math
import operator
import random
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import NamedTuple

from services.connector.sim.replay import CsvBar

MINUTE = 60
HOUR = 3600
FEED_VOLUME_PER_TICK = 1e6


class Point(NamedTuple):  # a tuple: made 60 times an hour per symbol
    time: int  # Unix s
    price: float  # bid
    ticks: int  # ticks this point stands for (>= 1)


def tick_volume(feed_volume: float) -> int:
    """The tick count of an H1 source bar: its feed volume / 1e6, rounded, at least 1."""
    return max(1, round(feed_volume / FEED_VOLUME_PER_TICK))


def minute_offset(minute_start: int) -> int:
    """The second (1..59) at which every symbol's point of this minute happens."""
    return 1 + (minute_start // MINUTE * 2_654_435_761) % 4_294_967_296 % 59


def anchors(bar: CsvBar, n: int) -> list[float]:
    """The prices a path of `n` points must visit, in order, for the short paths (n < 4)."""
    if n <= 0:
        return []
    if n == 1:
        return [bar.close]
    if n == 2:
        return [bar.open, bar.close]
    if n == 3:
        up, down = bar.high - max(bar.open, bar.close), min(bar.open, bar.close) - bar.low
        return [bar.open, bar.high if up >= down else bar.low, bar.close]
    return [bar.open, bar.high, bar.low, bar.close]


def hour_bar(bar: CsvBar, open_minutes: int) -> CsvBar | None:
    """The H1 bar the points of `bar` aggregate to, without making them (None: no point in the hour)."""
    ticks = tick_volume(bar.volume)
    n = min(open_minutes, ticks)
    if n <= 0:
        return None
    if n >= 4:
        return CsvBar(bar.time, bar.open, bar.high, bar.low, bar.close, float(ticks))
    prices = anchors(bar, n)
    return CsvBar(bar.time, prices[0], max(prices), min(prices), prices[-1], float(ticks))


def spread_indices(k: int, n: int) -> list[int]:
    """`n` of the indices 0..k-1, evenly spread, the first and the last included (n <= k)."""
    if n >= k:
        return list(range(k))
    if n == 1:
        return [0]
    return [round(j * (k - 1) / (n - 1)) for j in range(n)]


def point_minutes(bar: CsvBar, minutes: Sequence[int]) -> list[int]:
    """The minutes (starts) of `bar`'s open `minutes` that have a point: all, or as many as it has ticks."""
    if tick_volume(bar.volume) >= len(minutes):
        return list(minutes)
    return [minutes[i] for i in spread_indices(len(minutes), tick_volume(bar.volume))]


@functools.lru_cache(maxsize=4096)
def hour_point_times(start: int) -> tuple[int, ...]:
    """The point times of an hour (opening at `start`) with a point in every minute: the same for every symbol
    (`minute_offset`), so made once per hour however many symbols tick in it."""
    return tuple([m + 1 + (m // MINUTE * 2_654_435_761) % 4_294_967_296 % 59  # m + minute_offset(m), inlined
                  for m in range(start, start + HOUR, MINUTE)])


def path(bar: CsvBar, minutes: Sequence[int], digits: int, seed: int) -> list[Point]:
    """The points of `bar` (prices already at the symbol's digits) in its open `minutes` (minute starts, sorted)."""
    ticks = tick_volume(bar.volume)
    chosen = point_minutes(bar, minutes)
    n = len(chosen)
    if n == 0:
        return []
    rng = random.Random(seed)
    prices = anchors(bar, n) if n < 4 else _bridge(bar, n, digits, rng)
    counts = _shares(ticks, n, rng)
    times = hour_point_times(chosen[0]) if n == HOUR // MINUTE else [m + minute_offset(m) for m in chosen]
    return list(map(Point, times, prices, counts))


class Plan(NamedTuple):
    """An hour's points as far as they go without the bridge's inner prices (`plan`): what a replay needs of
    most hours (the open, the high, the low and the close are known; the path in between only when looked at)."""

    times: Sequence[int]
    ticks: list[int]
    known: dict[int, float]  # index -> price: the open, the high, the low, the close (a short path: every one)
    high_at: int | None  # the index of the high and of the low (None: a short path, every price known)
    low_at: int | None


def plan(bar: CsvBar, minutes: Sequence[int], seed: int) -> Plan:
    """`path` without the bridge's inner prices: the same times and ticks (the same draws of the same rng), the
    prices the bridge fixes. `path(...)[k].price == plan(...).known[k]` wherever known."""
    ticks = tick_volume(bar.volume)
    chosen = point_minutes(bar, minutes)
    n = len(chosen)
    if n == 0:
        return Plan((), [], {}, None, None)
    rng = random.Random(seed)
    high_at = low_at = None
    if n < 4:
        known = dict(enumerate(anchors(bar, n)))
    else:
        known, spans, high_at, low_at = _marks(bar, n, rng)
        for _ in range((sum(m for _, m in spans) + 1) // 2 * 2):  # the uniforms of the bridge's normals (a pair
            rng.random()  # makes two)
    counts = _shares(ticks, n, rng)
    times = hour_point_times(chosen[0]) if n == HOUR // MINUTE else [m + minute_offset(m) for m in chosen]
    return Plan(times, counts, known, high_at, low_at)


def _marks(bar: CsvBar, n: int, rng: random.Random) -> tuple[dict[int, float], list[tuple[int, int]], int, int]:
    """The prices a bridge of n >= 4 points fixes (index -> price), the spans between them it fills (start,
    length >= 2), the indices of the high and of the low; drawing what `_bridge` draws first."""
    i1, i2 = sorted(rng.sample(range(1, n - 1), 2))
    i_high, i_low = (i1, i2) if rng.random() < 0.5 else (i2, i1)
    fixed = {0: bar.open, i_high: bar.high, i_low: bar.low, n - 1: bar.close}
    marks = sorted(fixed)
    return fixed, [(a, b - a) for a, b in zip(marks, marks[1:], strict=False) if b - a >= 2], i_high, i_low


def _bridge(bar: CsvBar, n: int, digits: int, rng: random.Random) -> list[float]:
    """n >= 4 prices: open first, close last, high and low at two distinct inner points, a clipped bridge between."""
    fixed, spans, _, _ = _marks(bar, n, rng)
    normals = _normals(rng, sum(m for _, m in spans))  # the rng.gauss(0.0, 1.0) draws of the spans, in order
    high, low = bar.high, bar.low
    prices = [0.0] * n
    used = 0
    for a, m in spans:
        pa = fixed[a]
        slope, sigma = (fixed[a + m] - pa) / m, (high - low) / (3 * math.sqrt(m))
        walk = list(accumulate(normals[used:used + m]))  # W(1)..W(m)
        used += m
        drift = walk[-1] / m
        for j in range(1, m):
            x = pa + slope * j + sigma * (walk[j - 1] - j * drift)
            prices[a + j] = round(high if x > high else low if x < low else x, digits)
    for i, p in fixed.items():
        prices[i] = p
    return prices


def _normals(rng: random.Random, count: int) -> list[float]:
    """`count` calls of `rng.gauss(0.0, 1.0)`, the same values and the same state after: random.Random.gauss
    (CPython 3.11) inlined, two normals from each pair of uniforms (a test holds it to the library's)."""
    out: list[float] = []
    uniform = rng.random
    z = rng.gauss_next  # type: ignore[attr-defined]
    rng.gauss_next = None  # type: ignore[attr-defined]
    if z is not None and count:
        out.append(0.0 + z * 1.0)
        z = None
    while len(out) < count:
        x2pi = uniform() * _TWO_PI
        g2rad = math.sqrt(-2.0 * math.log(1.0 - uniform()))
        out.append(0.0 + math.cos(x2pi) * g2rad * 1.0)
        z = math.sin(x2pi) * g2rad
        if len(out) < count:
            out.append(0.0 + z * 1.0)
            z = None
    rng.gauss_next = z  # type: ignore[attr-defined]
    return out


_TWO_PI = 2.0 * math.pi


def _shares(total: int, n: int, rng: random.Random) -> list[int]:
    """`total` ticks over `n` points (total >= n), each at least one, the rest by seeded weights (exact sum)."""
    extra = total - n
    uniform = rng.random
    weights = [0.25 + uniform() for _ in range(n)]
    scale = extra / sum(weights)
    quotas = list(map(scale.__mul__, weights))  # w * scale
    counts = list(map(int, quotas))
    short = extra - sum(counts)
    if short:  # the largest remainders get one more (the earlier first among equals: a stable sort)
        remainders = list(map(operator.sub, counts, quotas))
        for i in sorted(range(n), key=remainders.__getitem__)[:short]:
            counts[i] += 1
    return list(map((1).__add__, counts))


def aggregate(points: Iterable[Point], period: int) -> list[CsvBar]:
    """Bars of `period` seconds from points in time order (buckets in UTC, volume = ticks)."""
    out: list[CsvBar] = []
    cur: list[float] = []  # time, open, high, low, close, volume
    for p in points:
        bucket = p.time - p.time % period
        if cur and cur[0] == bucket:
            cur[2] = max(cur[2], p.price)
            cur[3] = min(cur[3], p.price)
            cur[4] = p.price
            cur[5] += p.ticks
        else:
            if cur:
                out.append(CsvBar(int(cur[0]), cur[1], cur[2], cur[3], cur[4], float(cur[5])))
            cur = [bucket, p.price, p.price, p.price, p.price, p.ticks]
    if cur:
        out.append(CsvBar(int(cur[0]), cur[1], cur[2], cur[3], cur[4], float(cur[5])))
    return out


def combine(bars: Iterable[CsvBar], period: int) -> list[CsvBar]:
    """Bars of a longer `period` from shorter bars in time order (e.g. H4 and D1 from H1)."""
    out: list[CsvBar] = []
    for b in bars:
        bucket = b.time - b.time % period
        if out and out[-1].time == bucket:
            last = out[-1]
            out[-1] = CsvBar(bucket, last.open, max(last.high, b.high), min(last.low, b.low), b.close,
                             last.volume + b.volume)
        else:
            out.append(CsvBar(bucket, b.open, b.high, b.low, b.close, b.volume))
    return out


def update(bar: CsvBar | None, point: Point, period: int) -> CsvBar:
    """The forming bar after `point`: `bar` extended, or a new bar when the point starts another bucket."""
    bucket = point.time - point.time % period
    if bar is None or bar.time != bucket:
        return CsvBar(bucket, point.price, point.price, point.price, point.price, float(point.ticks))
    return CsvBar(bucket, bar.open, max(bar.high, point.price), min(bar.low, point.price), point.price,
                  bar.volume + point.ticks)
