"""The simulator's tick stream (sim/ticks.py) and series (sim/series.py): points, bars of every period, served bars."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random

import pytest

from services.connector.sim.catalog import CATALOG, synthetic
from services.connector.sim.replay import CsvBar
from services.connector.sim.series import check_source, series_for, served_bars
from services.connector.sim.ticks import (
    _normals,
    aggregate,
    anchors,
    combine,
    hour_bar,
    minute_offset,
    path,
    spread_indices,
    tick_volume,
    update,
)

T0 = 1_483_999_200  # Monday 2017-01-09 22:00 UTC
UP = CsvBar(T0, 1.10000, 1.10500, 1.09900, 1.10400, 2_345_000_000.0)
DOWN = CsvBar(T0, 1.10400, 1.10450, 1.09500, 1.09600, 80_000_000.0)
FLAT = CsvBar(T0, 1.2, 1.2, 1.2, 1.2, 500_000_000.0)
OPEN_IS_HIGH = CsvBar(T0, 1.105, 1.105, 1.099, 1.1, 300_000_000.0)
MINUTES = list(range(T0, T0 + 3600, 60))


@pytest.mark.parametrize(("feed", "ticks"), [
    (143_539_993.3, 144), (163_119_000_000.0, 163_119), (0.0, 1), (400_000.0, 1), (1_600_000.0, 2),
    (2_500_000.0, 2),  # Python's round: half to even
])
def test_tick_volume(feed: float, ticks: int) -> None:
    assert tick_volume(feed) == ticks


def test_minute_offsets_are_inside_the_minute_and_deterministic() -> None:
    offsets = [minute_offset(m) for m in range(T0, T0 + 7 * 86_400, 60)]
    assert set(offsets) <= set(range(1, 60)) and len(set(offsets)) == 59
    assert minute_offset(T0) == minute_offset(T0)


@pytest.mark.parametrize("bar", [UP, DOWN, FLAT, OPEN_IS_HIGH])
@pytest.mark.parametrize("k", [60, 45, 7, 4])
def test_a_path_rebuilds_its_bar_exactly(bar: CsvBar, k: int) -> None:
    minutes = MINUTES[:k]
    points = path(bar, minutes, 5, seed=bar.time)
    n = min(k, tick_volume(bar.volume))
    assert len(points) == n
    prices = [p.price for p in points]
    assert (prices[0], max(prices), min(prices), prices[-1]) == (bar.open, bar.high, bar.low, bar.close)
    assert sum(p.ticks for p in points) == tick_volume(bar.volume) and min(p.ticks for p in points) >= 1
    assert all(round(p, 5) == p for p in prices)
    times = [p.time for p in points]
    assert times == sorted(set(times)) and all(t % 60 > 0 for t in times)  # never on a bar boundary
    assert all(t - t % 60 in minutes for t in times)
    assert aggregate(points, 3600) == [hour_bar(bar, k)]
    assert path(bar, minutes, 5, seed=bar.time) == points  # deterministic
    if n >= 10 and bar is not FLAT:
        assert [p.price for p in path(bar, minutes, 5, seed=bar.time + 1)] != prices


def test_fewer_ticks_than_minutes_spread_the_points() -> None:
    bar = dataclasses.replace(UP, volume=5_000_000.0)  # 5 ticks in 60 open minutes
    points = path(bar, MINUTES, 5, seed=1)
    assert [p.time - p.time % 60 for p in points] == [MINUTES[i] for i in (0, 15, 30, 44, 59)]
    assert [p.ticks for p in points] == [1] * 5
    assert spread_indices(3, 3) == [0, 1, 2] and spread_indices(10, 1) == [0]


@pytest.mark.parametrize(("n", "prices"), [
    (1, [UP.close]), (2, [UP.open, UP.close]), (3, [UP.open, UP.low, UP.close]), (3, None),
])
def test_short_paths(n: int, prices: list[float] | None) -> None:
    bar = UP if prices is not None else DOWN
    expected = prices if prices is not None else [DOWN.open, DOWN.low, DOWN.close]  # the farther extreme
    assert anchors(bar, n) == expected
    points = path(bar, MINUTES[:n], 5, seed=3)
    assert [p.price for p in points] == expected
    assert aggregate(points, 3600) == [hour_bar(bar, n)]


def test_aggregation_buckets_in_utc() -> None:
    points = path(UP, MINUTES, 5, seed=9)
    m15 = aggregate(points, 900)
    assert [b.time for b in m15] == [T0, T0 + 900, T0 + 1800, T0 + 2700]
    assert combine(m15, 3600) == aggregate(points, 3600)
    forming = None
    for p in points:
        forming = update(forming, p, 900)
    assert forming == m15[-1]


def test_the_served_h1_bars_are_the_csv_bars_with_tick_volumes(csv_bars: list[CsvBar], eurusd_h1) -> None:
    assert len(eurusd_h1) == len(csv_bars)
    for served, c in zip(eurusd_h1, csv_bars, strict=True):
        assert served == CsvBar(c.time, c.open, c.high, c.low, c.close, float(tick_volume(c.volume)))
    series = series_for(csv_bars, CATALOG["EURUSD"], "EURUSD")
    for i in range(0, len(csv_bars), 97):  # the points make the same bar (all 60 minutes open)
        assert aggregate(series.points(i), 3600) == [eurusd_h1[i]] and len(series.points(i)) == 60


@pytest.mark.parametrize("timeframe", ["M1", "M5", "M15", "M30", "H4", "D1"])
def test_every_timeframe_comes_from_the_same_points(csv_bars: list[CsvBar], eurusd_h1, timeframe: str) -> None:
    first, last = csv_bars[100].time, csv_bars[260].time  # a week and a half, one weekend
    bars = served_bars(csv_bars, CATALOG["EURUSD"], timeframe, first, last)
    h1 = [b for b in eurusd_h1 if first <= b.time < last]
    period = {"M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H4": 14_400, "D1": 86_400}[timeframe]
    assert all(b.time % period == 0 for b in bars)
    if period < 3600:
        assert combine(bars, 3600) == h1
    else:
        whole = [b for b in combine(h1, period) if b.time >= first and b.time + period <= last]
        assert [b for b in bars if b.time + period <= last] == whole
    if timeframe == "D1":  # D1 opens at 00:00 UTC; the Sunday evening is a short bar of its own
        sunday = [b for b in bars if dt.datetime.fromtimestamp(b.time, dt.UTC).weekday() == 6]
        assert sunday and all(b.volume < 20_000 for b in sunday)


def test_derived_symbols_are_scaled_shifted_and_not_in_lock_step(csv_bars: list[CsvBar], eurusd_h1) -> None:
    first_open = csv_bars[0].open
    gbp = CATALOG["GBPUSD"]
    got = served_bars(csv_bars, gbp, "H1", csv_bars[200].time, csv_bars[210].time)
    for i, b in enumerate(got, start=200):
        src, f = csv_bars[i + gbp.bar_offset], gbp.reference_price / first_open
        assert b == CsvBar(csv_bars[i].time, round(src.open * f, 5), round(src.high * f, 5), round(src.low * f, 5),
                           round(src.close * f, 5), float(tick_volume(src.volume)))
    closes = {name: [b.close for b in served_bars(csv_bars, CATALOG[name], "H1", csv_bars[0].time,
                                                   csv_bars[300].time)]
              for name in ("EURUSD", "GBPUSD", "EURGBP", "EURJPY", "USDJPY")}
    moves = {name: [b > a for a, b in zip(c, c[1:], strict=False)] for name, c in closes.items()}
    for name in ("GBPUSD", "EURGBP", "EURJPY", "USDJPY"):
        assert moves[name] != moves["EURUSD"], name
    assert len({CATALOG[n].bar_offset for n in CATALOG if n != "EURUSD"}) == len(CATALOG) - 1
    # the aligned synthetic symbols are the CSV itself (the aligned worst case)
    syn = synthetic(1, offset_bars=0)["SYN01"]
    assert served_bars(csv_bars, syn, "H1", csv_bars[0].time, csv_bars[50].time) == eurusd_h1[:50]


def test_no_point_and_no_bar_while_the_calendar_is_closed(csv_bars: list[CsvBar]) -> None:
    from zoneinfo import ZoneInfo

    def ny(t: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(t, ZoneInfo("America/New_York"))

    start, end = csv_bars[0].time, csv_bars[600].time
    gold = series_for(csv_bars, CATALOG["XAUUSD"], "EURUSD")
    h1 = gold.bars(3600, start, end)
    assert h1 and all(ny(b.time).hour != 17 for b in h1)  # the daily break 17:00-18:00 New York
    assert {ny(b.time).hour for b in h1} == set(range(24)) - {17}
    us500 = series_for(csv_bars, CATALOG["US500"], "EURUSD")
    for i in range(600):
        pts = us500.points(i)
        assert all(CATALOG["US500"].calendar.is_open(p.time) for p in pts)
        if ny(csv_bars[i].time).hour == 16 and ny(csv_bars[i].time).weekday() < 4:  # 16:15-16:30 halted
            assert len(pts) == 45 and aggregate(pts, 3600) == [us500.hour(i)]
            assert us500.hour(i) == dataclasses.replace(us500.target(i), volume=us500.hour(i).volume)
    m1 = us500.bars(60, start, end)
    assert all(CATALOG["US500"].calendar.is_open(b.time) for b in m1)


def test_bars_known_at_a_time_end_with_the_forming_one(csv_bars: list[CsvBar]) -> None:
    series = series_for(csv_bars, CATALOG["EURUSD"], "EURUSD")
    i = 300
    points = series.points(i)
    now = points[20].time
    h1 = series.bars(3600, csv_bars[i - 5].time, csv_bars[i].time + 1, now=now)
    assert [b.time for b in h1] == [b.time for b in csv_bars[i - 5:i + 1]]
    assert h1[-1] == aggregate(points[:21], 3600)[0]  # forming: the points so far
    assert series.bars(3600, csv_bars[0].time, csv_bars[i].time + 1, now=now, limit=3) == h1[-3:]
    m5 = series.bars(300, csv_bars[i].time, csv_bars[i].time + 3600, now=now)
    assert len(m5) == 5 and m5 == aggregate(points[:21], 300)
    d1 = series.bars(86_400, 0, 2**40, now=now, limit=2)
    assert d1[-1].close == points[20].price and d1[-1].time == now - now % 86_400


def test_bad_sources_are_refused(csv_bars: list[CsvBar]) -> None:
    for bars, match in [
        ([], "no bars"),
        ([CsvBar(T0 + 60, 1, 1, 1, 1, 1)], "whole hour"),
        ([csv_bars[1], csv_bars[0]], "not after"),
        ([CsvBar(T0, 1.2, 1.1, 1.0, 1.05, 1)], "outside"),
    ]:
        with pytest.raises(ValueError, match=match):
            check_source(bars)


@pytest.mark.parametrize("pending", [False, True])
def test_the_normals_are_the_librarys_gauss_draws(pending: bool) -> None:
    """`_normals` (random.Random.gauss inlined) gives the same values, signs of zero included, and leaves the rng
    in the same state."""
    for seed in range(300):
        for count in (0, 1, 2, 3, 58):
            lib, ours = random.Random(seed), random.Random(seed)
            if pending:  # a second normal waiting in the rng
                lib.gauss()
                ours.gauss()
            want = [lib.gauss(0.0, 1.0) for _ in range(count)]
            got = _normals(ours, count)
            assert [(v, math.copysign(1.0, v)) for v in got] == [(v, math.copysign(1.0, v)) for v in want]
            assert ours.getstate() == lib.getstate() and ours.gauss_next == lib.gauss_next


@pytest.mark.parametrize("name", ["EURUSD", "USDJPY", "XAUUSD", "US500"])
def test_a_plan_is_its_path_without_the_prices_between(csv_bars: list[CsvBar], name: str) -> None:
    """An hour's plan has its path's times and ticks, the prices it knows are the path's, and the high and the low
    it names are the path's highest and lowest (every third hour of the data: calendars and short hours too)."""
    series = series_for(csv_bars, CATALOG[name], "EURUSD")
    for i in range(0, len(csv_bars), 3):
        points = series.points(i)
        got = series.plan(i)
        assert list(got.times) == [p.time for p in points] and got.ticks == [p.ticks for p in points], i
        assert all(points[k].price == price for k, price in got.known.items()), i
        if got.high_at is None:
            assert len(got.known) == len(points) < 4
        else:
            prices = [p.price for p in points]
            assert (prices[got.high_at], prices[got.low_at]) == (max(prices), min(prices)), i
