"""The market cursor (sim/market.py): instants in time order over every symbol, the clock, bars known at a time."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from services.connector.sim.catalog import CATALOG, symbols
from services.connector.sim.market import Market, spot_due, spot_due_indices
from services.connector.sim.replay import CsvBar
from services.connector.sim.series import served_bars

FRIDAY_LAST = 110 + 9  # the CSV's bar 119: Friday 2017-01-06 21:00 UTC, the week's last


def market(csv_bars: list[CsvBar], at: int, synthetic: int = 0) -> Market:
    served = symbols(synthetic, 24)
    return Market(csv_bars, {s.spec.symbol_id: s for s in served.values()}, 1, 3600, now=csv_bars[at].time)


def test_instants_merge_every_symbol_in_time_order(csv_bars: list[CsvBar]) -> None:
    m = market(csv_bars, 130, synthetic=3)
    seen: dict[int, list[int]] = {}
    previous = m.now
    for _ in range(300):
        inst = m.step()
        assert inst is not None and inst.time > previous and m.now == inst.time
        assert len({sid for sid, _ in inst.points}) == len(inst.points)
        for sid, p in inst.points:
            assert p.time == inst.time
            seen.setdefault(sid, []).append(p.time)
            assert m.last_point(sid) == p
        previous = inst.time
    forex = [CATALOG[n].spec.symbol_id for n in ("EURUSD", "GBPUSD", "EURJPY", "USDJPY", "EURGBP")]
    assert all(len(seen[sid]) == 300 for sid in forex)  # Monday: forex ticks every minute
    assert set(seen) == set(m.symbols)


def test_bars_close_at_the_first_point_after_their_period(csv_bars: list[CsvBar], eurusd_h1) -> None:
    m = market(csv_bars, FRIDAY_LAST)
    friday = csv_bars[FRIDAY_LAST]
    assert dt.datetime.fromtimestamp(friday.time, dt.UTC).strftime("%a %H") == "Fri 21"
    sunday = m.bar_target(1)  # the first instant of the next H1 bar with any point: Sunday's
    assert sunday is not None and sunday - sunday % 3600 == csv_bars[FRIDAY_LAST + 1].time
    while m.next_time() is not None and m.next_time() < sunday:
        m.step()
    # Friday's last point processed: its bar is known complete as far as points go, yet the forming one
    assert m.forming(1, 3600) == eurusd_h1[FRIDAY_LAST]
    hist = m.history(1, 3600, csv_bars[FRIDAY_LAST - 3].time, m.now)
    assert hist == eurusd_h1[FRIDAY_LAST - 3:FRIDAY_LAST + 1]
    closed_at = m.now - m.now % 60 + 60
    m.advance_clock(closed_at + 86_400)  # Saturday: nothing trades, the clock moves on
    assert not m.is_open(1) and m.next_time() == sunday and m.bar_index == FRIDAY_LAST
    m.step()
    assert m.now == sunday and m.is_open(1) and m.bar_index == FRIDAY_LAST + 1
    assert m.forming(1, 3600).time == csv_bars[FRIDAY_LAST + 1].time
    assert m.history(1, 3600, 0, m.now, limit=2)[0] == eurusd_h1[FRIDAY_LAST]


def test_forming_bars_of_every_period_follow_the_points(csv_bars: list[CsvBar]) -> None:
    m = market(csv_bars, 1000)
    periods = (60, 300, 900, 1800, 3600, 14_400, 86_400)
    for p in periods:
        m.forming(1, p)  # tracked from here on
    for k in range(200):
        m.step()
        if k % 17 == 0:
            for p in periods:
                bucket = m.now - m.now % p
                assert m.forming(1, p) == m.history(1, p, bucket, m.now)[-1], (k, p)
    d1 = m.forming(1, 86_400)
    day = m.now - m.now % 86_400
    whole = served_bars(csv_bars, CATALOG["EURUSD"], "M1", day, m.now + 1)
    assert d1.volume == sum(b.volume for b in whole)  # the day so far: one M1 bar per point


def test_the_clock_only_moves_forward_and_through_closed_stretches(csv_bars: list[CsvBar]) -> None:
    m = market(csv_bars, 130)
    nxt = m.next_time()
    with pytest.raises(ValueError, match="processed first"):
        m.advance_clock(nxt + 10)
    with pytest.raises(ValueError, match="runs forward"):
        m.advance_clock(m.now - 1)
    m.advance_clock(nxt - 1)
    assert m.now == nxt - 1 and m.next_time() == nxt
    with pytest.raises(ValueError, match="outside the data"):
        Market(csv_bars, m.symbols, 1, 3600, now=csv_bars[0].time - 1)


def test_bar_target_counts_bars_with_points(csv_bars: list[CsvBar]) -> None:
    m = market(csv_bars, FRIDAY_LAST - 2)
    target = m.bar_target(3)  # Friday 20:00, 21:00, then Sunday 22:00
    assert target - target % 3600 == csv_bars[FRIDAY_LAST + 1].time and 0 < target % 3600 < 60
    end = market(csv_bars, len(csv_bars) - 2)
    assert end.bar_target(5) is None


def test_last_price_comes_from_before_the_start(csv_bars: list[CsvBar]) -> None:
    m = market(csv_bars, FRIDAY_LAST + 1)  # the clock at Sunday's open, no point processed yet
    last = m.last_point(1)
    assert last is not None and last.price == csv_bars[FRIDAY_LAST].close and last.time < m.now
    bid, ask = m.bid_ask(1)
    assert (bid, round(ask - bid, 5)) == (last.price, 0.00008)
    assert Market(csv_bars, m.symbols, 1, 3600).last_point(1) is None  # the data's very start: no price


@pytest.mark.parametrize(("previous", "time", "following", "interval", "periods", "due"), [
    (None, 100, 160, 60, (), True),
    (61, 121, 181, 60, (), True),
    (3601, 3661, 3721, 3600, (), False),
    (3541, 3601, 3661, 3600, (), True),  # the first point of an interval
    (3601, 3661, 3721, 3600, (60,), True),  # a subscribed M1 bar started: its close is not held back
    (3601, 3901, 3961, 3600, (900,), False),
    (4441, 4501, 4561, 3600, (900,), True),  # first of an M15 bar
    (4381, 4441, 4501, 3600, (900,), True),  # last of an M15 bar: the snapshot the close is taken from
    (4381, 4441, None, 3600, (900,), True),  # the last point of the data
    (4381, 4441, None, 3600, (), False),
])
def test_spot_spacing(previous, time, following, interval, periods, due) -> None:
    assert spot_due(previous, time, following, interval, periods) is due


def test_the_look_ahead_finds_the_instants_without_making_prices(csv_bars: list[CsvBar]) -> None:
    """`next_time_after` (point times alone) agrees with the instants, across a weekend too; the point times
    are those of the points."""
    m = market(csv_bars, 80, synthetic=2)
    ahead = market(csv_bars, 80, synthetic=2)
    t = m.now
    for _ in range(400):
        t += 997  # about 4.6 days: a weekend on the way
        nxt = m.next_after(t)
        assert ahead.next_time_after(t) == (None if nxt is None else nxt.time)
    for sid, series in m.series.items():
        for i in range(80, 260):
            assert list(ahead.series[sid].point_times(i)) == [p.time for p in series.points(i)]


def test_a_market_pricing_only_the_watched_symbols_replays_the_same_instants_and_prices(csv_bars) -> None:
    """Symbols not priced still make the instants' times and give their latest price when asked; one priced
    later (a position, a subscription) carries its points from then on, as in a market pricing every symbol."""
    every = market(csv_bars, 100, synthetic=2)
    lazy = market(csv_bars, 100, synthetic=2)
    lazy.priced = set()
    watched = next(iter(lazy.series))
    lazy.price([watched])
    others = [sid for sid in lazy.series if sid != watched]
    for n in range(3000):  # about 50 hours, a weekend among them
        if n == 1500:
            lazy.price(others[:1])
        a, b = every.step(), lazy.step()
        assert a is not None and b is not None and a.time == b.time
        assert list(b.points) == [p for p in a.points if p[0] in lazy.priced]
        if n % 7 == 0:
            assert all(lazy.last_point(sid) == every.last_point(sid) for sid in lazy.series)
        if n % 11 == 0:
            assert lazy.forming(watched, 3600) == every.forming(watched, 3600)


def test_the_due_spots_found_from_bucket_boundaries_are_spot_dues(csv_bars: list[CsvBar]) -> None:
    """`spot_due_indices` (bucket boundaries crossed) marks exactly the points `spot_due` marks, for random point
    times (gaps, a first or a last point of the data) and every spacing and set of periods."""
    rng = random.Random(7)
    for _ in range(3000):
        start = rng.randrange(1_483_000_000, 1_484_000_000)
        times = sorted(rng.sample(range(start, start + rng.choice((600, 3600, 7200))), rng.randrange(1, 40)))
        before = None if rng.random() < 0.1 else times[0] - rng.randrange(1, 5000)
        after = None if rng.random() < 0.1 else times[-1] + rng.randrange(1, 5000)
        interval = rng.choice((60, 300, 900, 3600, 7200))
        periods = tuple(sorted(rng.sample((60, 300, 900, 1800, 3600, 14_400, 86_400), rng.randrange(0, 4))))
        previous, following = [before, *times[:-1]], [*times[1:], after]
        want = [k for k, t in enumerate(times) if spot_due(previous[k], t, following[k], interval, periods)]
        assert spot_due_indices(times, before, after, interval, periods) == want


def test_runs_of_instants_leave_the_market_as_steps_do(csv_bars: list[CsvBar]) -> None:
    """Instants folded in as runs (`upcoming`, `skip`) leave the clock, every latest point and the forming bars
    of every period where stepping them one by one does: three symbols priced, across a weekend."""
    periods = (60, 300, 900, 1800, 3600, 14_400, 86_400)

    def watched() -> Market:
        m = market(csv_bars, FRIDAY_LAST - 3, synthetic=2)
        m.priced = set()
        for sid in (1, 41, 1001):
            for p in periods:
                m.forming(sid, p)
        return m

    stepped, ran = watched(), watched()
    rng = random.Random(3)
    for _ in range(400):
        got = ran.upcoming(ran.now + rng.randrange(1, 1800))
        if got is None:
            nxt = ran.next_time()
            ran.step()
            while stepped.now < nxt:
                stepped.step()
        else:
            hour, k0, k1 = got
            ran.skip(hour, k0, k1)
            while stepped.now < hour.times[k1 - 1]:
                stepped.step()
        assert ran.now == stepped.now
        for sid in ran.series:
            assert ran.last_point(sid) == stepped.last_point(sid), sid
        for sid in (1, 41, 1001):
            for p in periods:
                assert ran.forming(sid, p) == stepped.forming(sid, p), (sid, p)
    assert stepped.bar_index > FRIDAY_LAST + 1  # the weekend crossed
