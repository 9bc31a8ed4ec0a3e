"""Trading calendars (services/connector/calendar.py): table tests, and the bundled CSV against the forex calendar."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest

from services.connector.calendar import (
    FRI,
    MON,
    SAT,
    SUN,
    TUE,
    WEEK,
    Holiday,
    TradingCalendar,
    at,
    clock,
    days_since_epoch,
)
from services.connector.sim.catalog import CATALOG, FOREX, METALS, US_INDEX
from services.connector.sim.replay import CsvBar

NY = "America/New_York"
FX = TradingCalendar.of(NY, [(at(SUN, 17), at(FRI, 17))])


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    return int(dt.datetime(y, mo, d, h, mi, s, tzinfo=dt.UTC).timestamp())


def ny(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    return int(dt.datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(NY)).timestamp())


@pytest.mark.parametrize(("t", "is_open"), [
    # winter (EST, UTC-5): Sunday 17:00 New York = 22:00 UTC, Friday 17:00 = 22:00 UTC
    (utc(2017, 1, 8, 21, 59, 59), False), (utc(2017, 1, 8, 22), True),  # boundary: the start is open
    (utc(2017, 1, 13, 21, 59, 59), True), (utc(2017, 1, 13, 22), False),  # the end is closed
    (utc(2017, 1, 14, 12), False),  # Saturday
    # the spring switch (Sunday 12 March 2017, 02:00): that Sunday opens at 21:00 UTC (EDT, UTC-4)
    (utc(2017, 3, 10, 21, 59), True), (utc(2017, 3, 10, 22), False),  # the Friday before: still EST
    (utc(2017, 3, 12, 20, 59, 59), False), (utc(2017, 3, 12, 21), True),
    (utc(2017, 7, 9, 21), True), (utc(2017, 7, 14, 21), False), (utc(2017, 7, 14, 20, 59, 59), True),  # summer
    # the autumn switch (Sunday 5 November 2017, 02:00): the Friday before closes 21:00 UTC, Sunday opens 22:00
    (utc(2017, 11, 3, 21), False), (utc(2017, 11, 5, 21, 59), False), (utc(2017, 11, 5, 22), True),
])
def test_new_york_week_follows_daylight_saving_time(t: int, is_open: bool) -> None:
    assert FX.is_open(t) is is_open
    assert FX.state_at(t) is is_open


@pytest.mark.parametrize(("t", "next_open", "next_close"), [
    (utc(2017, 3, 10, 12), utc(2017, 3, 10, 12), utc(2017, 3, 10, 22)),
    (utc(2017, 3, 11, 12), utc(2017, 3, 12, 21), utc(2017, 3, 11, 12)),
    (utc(2017, 11, 3, 20), utc(2017, 11, 3, 20), utc(2017, 11, 3, 21)),
    (utc(2017, 11, 4), utc(2017, 11, 5, 22), utc(2017, 11, 4)),
])
def test_next_open_and_next_close(t: int, next_open: int, next_close: int) -> None:
    assert FX.next_open(t) == next_open
    assert FX.next_close(t) == next_close


def test_closed_between_is_half_open() -> None:
    friday_close = utc(2017, 1, 13, 22)
    assert not FX.closed_between(friday_close - 3600, friday_close)  # the last hour, up to the close
    assert FX.closed_between(friday_close - 3600, friday_close + 1)
    assert FX.closed_between(utc(2017, 1, 14), utc(2017, 1, 14, 1))
    assert not FX.closed_between(utc(2017, 1, 10), utc(2017, 1, 10))  # empty


def test_daily_break() -> None:
    # XAUUSD: 17:00-18:00 New York closed every day; Sunday opens at 18:00
    assert METALS.is_open(ny(2017, 1, 10, 16, 59)) and not METALS.is_open(ny(2017, 1, 10, 17))
    assert not METALS.is_open(ny(2017, 1, 10, 17, 59)) and METALS.is_open(ny(2017, 1, 10, 18))
    assert METALS.next_open(ny(2017, 1, 10, 17, 30)) == ny(2017, 1, 10, 18)
    assert not METALS.is_open(ny(2017, 1, 8, 17, 30)) and METALS.is_open(ny(2017, 1, 8, 18))
    assert not METALS.is_open(ny(2017, 1, 13, 17))  # Friday: the week's close
    assert METALS.closed_between(ny(2017, 1, 10, 16), ny(2017, 1, 10, 18))
    # US500: a quarter-hour halt 16:15-16:30 and the daily break 17:00-18:00
    assert US_INDEX.is_open(ny(2017, 1, 10, 16, 14)) and not US_INDEX.is_open(ny(2017, 1, 10, 16, 15))
    assert US_INDEX.is_open(ny(2017, 1, 10, 16, 30)) and not US_INDEX.is_open(ny(2017, 1, 10, 17))
    assert not US_INDEX.is_open(ny(2017, 1, 13, 16, 30))  # Friday ends at 16:15


def test_partial_and_whole_day_holidays() -> None:
    christmas_eve, christmas = dt.date(2017, 12, 24), dt.date(2017, 12, 25)
    # forex: Sunday 24 December 2017 opens an hour late, Monday 25 closed 03:00-17:00 New York
    assert not FOREX.is_open(ny(2017, 12, 24, 17, 30)) and FOREX.is_open(ny(2017, 12, 24, 18))
    assert FOREX.is_open(ny(2017, 12, 25, 2, 59)) and not FOREX.is_open(ny(2017, 12, 25, 3))
    assert not FOREX.is_open(ny(2017, 12, 25, 16, 59)) and FOREX.is_open(ny(2017, 12, 25, 17))
    assert FOREX.next_open(ny(2017, 12, 25, 3)) == ny(2017, 12, 25, 17)
    assert [h.day for h in FOREX.holidays] == [christmas, christmas_eve]
    # a whole-day recurring holiday, in a calendar open around the clock (UTC)
    xmas = Holiday(days_since_epoch(christmas), recurring=True, name="Christmas")
    cal = TradingCalendar.of("UTC", [(0, WEEK)], [xmas])
    for year in (2017, 2018, 2020, 2031):
        assert cal.is_open(utc(year, 12, 24, 23, 59, 59)) and not cal.is_open(utc(year, 12, 25))
        assert not cal.is_open(utc(year, 12, 25, 23, 59, 59)) and cal.is_open(utc(year, 12, 26))
        assert cal.next_close(utc(year, 12, 1)) == utc(year, 12, 25)
        assert cal.next_open(utc(year, 12, 25, 12)) == utc(year, 12, 26)
    once = Holiday(days_since_epoch(christmas), name="2017 only", start_second=clock(10), end_second=clock(12))
    cal = TradingCalendar.of("UTC", [(0, WEEK)], [once])
    assert not cal.is_open(utc(2017, 12, 25, 10)) and cal.is_open(utc(2017, 12, 25, 12))
    assert cal.is_open(utc(2018, 12, 25, 10))  # not recurring
    assert cal.next_close(utc(2018, 1, 1)) is None  # nothing closes any more
    # Good Friday 2017 closes US500 for the whole New York day; 4 July 2017 from 13:00 to 18:00
    assert US_INDEX.is_open(ny(2017, 4, 13, 23, 59)) and not US_INDEX.is_open(ny(2017, 4, 14))
    assert not US_INDEX.is_open(ny(2017, 4, 14, 12)) and US_INDEX.next_open(ny(2017, 4, 14)) == ny(2017, 4, 16, 18)
    assert US_INDEX.is_open(ny(2017, 7, 4, 12, 59)) and not US_INDEX.is_open(ny(2017, 7, 4, 13))
    assert US_INDEX.next_open(ny(2017, 7, 4, 13)) == ny(2017, 7, 4, 18)


def test_intervals_crossing_midnight_and_the_end_of_the_week() -> None:
    cal = TradingCalendar.of("UTC", [(at(MON, 22), at(TUE, 2)), (at(SAT, 22), at(SAT, 22) + 8 * 3600)])
    assert cal.intervals[1][1] > WEEK  # Saturday 22:00 to Sunday 06:00: past the end of the week
    assert cal.is_open(utc(2017, 1, 9, 23, 30)) and cal.is_open(utc(2017, 1, 10, 1, 59, 59))
    assert not cal.is_open(utc(2017, 1, 10, 2)) and not cal.is_open(utc(2017, 1, 9, 21, 59, 59))
    assert cal.is_open(utc(2017, 1, 14, 23)) and cal.is_open(utc(2017, 1, 15, 5, 59, 59))  # Sat -> Sun
    assert not cal.is_open(utc(2017, 1, 15, 6))
    assert cal.next_close(utc(2017, 1, 14, 23)) == utc(2017, 1, 15, 6)
    assert cal.next_open(utc(2017, 1, 15, 6)) == utc(2017, 1, 16, 22)


def test_always_open_and_never_open() -> None:
    always = TradingCalendar.always_open()
    assert always.is_always_open and always.is_open(0) and always.is_open(utc(2030, 6, 1, 12))
    assert always.next_close(utc(2017, 1, 1)) is None and not always.closed_between(0, utc(2040, 1, 1))
    never = TradingCalendar.of("UTC", [])
    assert not never.is_open(utc(2017, 1, 1)) and never.next_open(utc(2017, 1, 1)) is None


@pytest.mark.parametrize(("build", "match"), [
    (lambda: TradingCalendar.of("Mars/Olympus", [(0, 10)]), "unknown time zone"),
    (lambda: TradingCalendar.of("UTC", [(10, 10)]), "schedule interval"),
    (lambda: TradingCalendar.of("UTC", [(WEEK, WEEK + 10)]), "schedule interval"),
    (lambda: TradingCalendar.of("UTC", [(0, WEEK + 1)]), "schedule interval"),
    (lambda: Holiday(17525, start_second=clock(10), end_second=clock(9)), "start_second < end_second"),
    (lambda: Holiday(17525, zone="Nowhere/Else"), "unknown time zone"),
])
def test_bad_values_are_refused_with_what_is_wrong(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_spans_agree_with_the_definition_around_dst_and_holidays() -> None:
    # a boundary inside the spring-forward gap (02:30 does not exist on 12 March 2017) and in the repeated hour
    cal = TradingCalendar.of(NY, [(at(SUN, 2, 30), at(SUN, 13)), (at(SUN, 1, 30), at(SUN, 2))],
                             [Holiday(days_since_epoch(dt.date(2017, 11, 6)), start_second=clock(1, 30),
                                      end_second=clock(2), zone=NY)])
    rng = random.Random(7)
    for cal_ in (cal, FOREX, METALS, US_INDEX):
        for start in (utc(2017, 3, 11), utc(2017, 11, 4), utc(2017, 12, 23)):
            for t in range(start, start + 3 * 86_400, 60):
                t += rng.randrange(60)
                assert cal_.is_open(t) == cal_.state_at(t), (cal_.zone, t)
    for t in range(utc(2017, 11, 5), utc(2017, 11, 6), 600):  # next_close: closed there, open all the way before
        closes = cal.next_close(t)
        assert closes is not None and not cal.state_at(closes)
        assert all(cal.state_at(x) for x in range(int(t), int(closes), 60))


def test_every_csv_bar_is_in_an_open_hour_and_every_missing_hour_is_closed(csv_bars: list[CsvBar]) -> None:
    cal = CATALOG["EURUSD"].calendar
    assert cal is FOREX
    times = {b.time for b in csv_bars}
    assert not [b.time for b in csv_bars if cal.closed_between(b.time, b.time + 3600)]
    missing = [h for h in range(csv_bars[0].time, csv_bars[-1].time, 3600) if h not in times]
    assert missing  # weekends and Christmas
    unexplained = [h for h in missing if (cal.next_open(h) or h) < h + 3600]
    assert unexplained == []
    weekday_gaps = [h for h in missing if dt.datetime.fromtimestamp(h, dt.UTC).weekday() < 4]
    # on Monday to Thursday only Christmas: 25 December 08:00-21:59 UTC (and Sunday 24th's late hour is Sunday)
    assert weekday_gaps == list(range(utc(2017, 12, 25, 8), utc(2017, 12, 25, 22), 3600))
    assert utc(2017, 12, 24, 22) in missing and utc(2017, 12, 24, 23) in times
