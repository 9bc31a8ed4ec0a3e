"""Trading calendars: when a symbol's market is open (pure: values in, values out; no clock, no I/O).

The model is cTrader's (`ProtoOASymbol.schedule`, `holiday`, `scheduleTimeZone`):

- the weekly schedule is a list of intervals in seconds from Sunday 00:00 in the calendar's time zone, start
  inclusive, end exclusive (`ProtoOAInterval`). Seconds are wall-clock seconds: Sunday 17:00 New York is
  61 200 whether New York is on EST or EDT, so the instant moves with daylight saving time. An interval may end
  past the end of the week (end > 604 800): it goes on into the next week;
- a holiday closes its day (`ProtoOAHoliday`): `date` in days since 1970-01-01, in the holiday's own time zone,
  every year when `recurring`; optional `start_second` / `end_second` (wall-clock seconds from the holiday day's
  00:00) close only that part of the day, absent = from 00:00 / until the next 00:00.

An instant (Unix seconds, UTC) is open when its local wall time lies in a schedule interval and in no holiday.

`is_open`, `next_open`, `next_close` and `closed_between` work on the open spans of each 7-day chunk of Unix time,
computed once per chunk and kept (a memo in the value, not state): between two consecutive "change candidates"
(every instant where a schedule or holiday boundary meets the local wall clock, in either fold, and every
daylight-saving transition) the state is constant, so the spans follow from the definition evaluated at each
candidate.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY = 86_400
WEEK = 7 * DAY
SUN, MON, TUE, WED, THU, FRI, SAT = range(7)
EPOCH_DATE = dt.date(1970, 1, 1)
SEARCH_CHUNKS = 106  # next_open / next_close look this many 7-day chunks ahead (two years) before answering None


def at(day: int, hour: int = 0, minute: int = 0) -> int:
    """Seconds from Sunday 00:00 of `day` (SUN..SAT) at hour:minute, as a schedule interval bound."""
    if not (0 <= day <= 7 and 0 <= hour <= 24 and 0 <= minute < 60):
        raise ValueError(f"no such week time: day {day} {hour:02d}:{minute:02d}")
    return day * DAY + hour * 3600 + minute * 60


def clock(hour: int, minute: int = 0) -> int:
    """Seconds from a day's 00:00 at hour:minute, as a holiday's start_second / end_second."""
    if not (0 <= hour <= 24 and 0 <= minute < 60):
        raise ValueError(f"no such time of day: {hour:02d}:{minute:02d}")
    return hour * 3600 + minute * 60


def days_since_epoch(date: dt.date) -> int:
    """A date as `ProtoOAHoliday.holidayDate` counts it."""
    return (date - EPOCH_DATE).days


def date_of(days: int) -> dt.date:
    return EPOCH_DATE + dt.timedelta(days=days)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True)
class Holiday:
    """One `ProtoOAHoliday`: the day `date` (days since 1970-01-01) closed in `zone`, or its [start, end) part."""

    date: int
    recurring: bool = False
    start_second: int | None = None  # wall-clock seconds from the day's 00:00; None = 00:00
    end_second: int | None = None  # None = the next 00:00
    zone: str = "UTC"
    name: str = ""

    def __post_init__(self) -> None:
        _zone(self.zone)
        start, end = self.start, self.end
        if not 0 <= start < end <= DAY:
            raise ValueError(
                f"holiday {self.name or date_of(self.date)}: need 0 <= start_second < end_second <= {DAY}, "
                f"got {self.start_second}..{self.end_second}"
            )

    @property
    def start(self) -> int:
        return 0 if self.start_second is None else self.start_second

    @property
    def end(self) -> int:
        return DAY if self.end_second is None else self.end_second

    @property
    def day(self) -> dt.date:
        return date_of(self.date)

    def covers(self, t: float) -> bool:
        local = dt.datetime.fromtimestamp(t, _zone(self.zone))
        day = self.day
        same_day = (local.month, local.day) == (day.month, day.day) if self.recurring else local.date() == day
        return same_day and self.start <= _seconds_of_day(local) < self.end

    def days_between(self, first: dt.date, last: dt.date) -> list[dt.date]:
        """The dates this holiday falls on from `first` to `last` (inclusive)."""
        day = self.day
        if not self.recurring:
            return [day] if first <= day <= last else []
        out = []
        for year in range(first.year, last.year + 1):
            try:
                d = day.replace(year=year)
            except ValueError:  # 29 February outside a leap year
                continue
            if first <= d <= last:
                out.append(d)
        return out


@dataclass(frozen=True)
class TradingCalendar:
    """A symbol's trading hours: a weekly schedule in `zone` and holidays (see the module docstring)."""

    zone: str
    intervals: tuple[tuple[int, int], ...]
    holidays: tuple[Holiday, ...] = ()
    _weekly: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)
    _chunks: dict[int, tuple[tuple[int, int], ...]] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        _zone(self.zone)
        object.__setattr__(self, "intervals", tuple((int(s), int(e)) for s, e in self.intervals))
        object.__setattr__(self, "holidays", tuple(self.holidays))
        pieces: list[tuple[int, int]] = []
        for start, end in self.intervals:
            if not (0 <= start < WEEK and start < end <= start + WEEK):
                raise ValueError(
                    f"schedule interval {start}..{end}: need 0 <= start < {WEEK} and start < end <= start + {WEEK}"
                )
            if end > WEEK:  # crosses the end of the week: the rest is at the start of the next one
                pieces += [(start, WEEK), (0, end - WEEK)]
            else:
                pieces.append((start, end))
        merged: list[tuple[int, int]] = []
        for start, end in sorted(pieces):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        object.__setattr__(self, "_weekly", tuple(merged))

    # ---- construction
    @classmethod
    def of(
        cls, zone: str, intervals: Iterable[tuple[int, int]], holidays: Iterable[Holiday] = ()
    ) -> TradingCalendar:
        return cls(zone, tuple(intervals), tuple(holidays))

    @classmethod
    def always_open(cls) -> TradingCalendar:
        return cls("UTC", ((0, WEEK),))

    @property
    def is_always_open(self) -> bool:
        return self._weekly == ((0, WEEK),) and not self.holidays

    # ---- queries
    def is_open(self, t: float) -> bool:
        spans = self._chunk(int(t // WEEK))
        k = bisect.bisect_right(spans, (t, float("inf"))) - 1
        return k >= 0 and spans[k][0] <= t < spans[k][1]

    def next_open(self, t: float) -> float | None:
        """The first open instant at or after `t` (`t` itself when open); None: none within two years."""
        if not self._weekly:
            return None
        first = int(t // WEEK)
        for chunk in range(first, first + SEARCH_CHUNKS):
            for start, end in self._chunk(chunk):
                if end > t:
                    return max(start, t)
        return None

    def next_close(self, t: float) -> float | None:
        """The first closed instant at or after `t` (`t` itself when closed); None: none within two years."""
        if self.is_always_open:
            return None
        first = int(t // WEEK)
        cursor = t
        for chunk in range(first, first + SEARCH_CHUNKS):
            for start, end in self._chunk(chunk):
                if end <= cursor:
                    continue
                if start > cursor:
                    return cursor
                cursor = end
            if cursor < (chunk + 1) * WEEK:
                return cursor
        return None

    def closed_between(self, t0: float, t1: float) -> bool:
        """Whether any instant of [t0, t1) is closed."""
        if t1 <= t0:
            return False
        closes = self.next_close(t0)
        return closes is not None and closes < t1

    def open_spans(self, t0: int, t1: int) -> list[tuple[int, int]]:
        """The open stretches of [t0, t1), merged, oldest first."""
        out: list[tuple[int, int]] = []
        for chunk in range(t0 // WEEK, (t1 - 1) // WEEK + 1):
            for start, end in self._chunk(chunk):
                start, end = max(start, t0), min(end, t1)
                if start >= end:
                    continue
                if out and out[-1][1] == start:
                    out[-1] = (out[-1][0], end)
                else:
                    out.append((start, end))
        return out

    # ---- the definition, and the spans that follow from it
    def state_at(self, t: float) -> bool:
        """Open or closed at `t`, straight from the definition (what the spans are computed from)."""
        local = dt.datetime.fromtimestamp(t, _zone(self.zone))
        week_second = ((local.weekday() + 1) % 7) * DAY + _seconds_of_day(local)
        if not any(start <= week_second < end for start, end in self._weekly):
            return False
        return not any(h.covers(t) for h in self.holidays)

    def _chunk(self, chunk: int) -> tuple[tuple[int, int], ...]:
        spans = self._chunks.get(chunk)
        if spans is None:
            spans = self._compute_chunk(chunk * WEEK, (chunk + 1) * WEEK)
            self._chunks[chunk] = spans
        return spans

    def _compute_chunk(self, t0: int, t1: int) -> tuple[tuple[int, int], ...]:
        if not self._weekly:
            return ()
        if self.is_always_open:
            return ((t0, t1),)
        marks = sorted({t0, *(c for c in self._candidates(t0, t1) if t0 < c < t1)})
        spans: list[tuple[int, int]] = []
        for start, end in zip(marks, [*marks[1:], t1], strict=True):
            if not self.state_at(start):
                continue
            if spans and spans[-1][1] == start:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
        return tuple(spans)

    def _candidates(self, t0: int, t1: int) -> set[int]:
        """Every instant in or near [t0, t1) where the open/closed state may change."""
        zone = _zone(self.zone)
        out: set[int] = set()
        first = dt.datetime.fromtimestamp(t0, zone).date() - dt.timedelta(days=8)
        last = dt.datetime.fromtimestamp(t1, zone).date() + dt.timedelta(days=8)
        sunday = first - dt.timedelta(days=(first.weekday() + 1) % 7)
        bounds = {b for span in self._weekly for b in span}
        while sunday <= last:
            midnight = dt.datetime.combine(sunday, dt.time())
            for b in bounds:
                out |= _instants(midnight + dt.timedelta(seconds=b), zone)
            sunday += dt.timedelta(days=7)
        out |= _transitions(zone, t0, t1)
        for h in self.holidays:
            hzone = _zone(h.zone)
            for day in h.days_between(first, last):
                midnight = dt.datetime.combine(day, dt.time())
                out |= _instants(midnight + dt.timedelta(seconds=h.start), hzone)
                out |= _instants(midnight + dt.timedelta(seconds=h.end), hzone)
            out |= _transitions(hzone, t0, t1)
        return out


def _seconds_of_day(local: dt.datetime) -> float:
    return local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6


def _instants(naive: dt.datetime, zone: ZoneInfo) -> set[int]:
    """The UTC instants (both folds) of a local wall time."""
    return {int(naive.replace(tzinfo=zone, fold=fold).timestamp()) for fold in (0, 1)}


def _offset(zone: ZoneInfo, t: int) -> dt.timedelta | None:
    return dt.datetime.fromtimestamp(t, zone).utcoffset()


def _transitions(zone: ZoneInfo, t0: int, t1: int) -> set[int]:
    """The instants in [t0, t1) where the zone's UTC offset changes (daylight saving time)."""
    out: set[int] = set()
    lo = t0
    while lo < t1:
        hi = min(lo + DAY, t1)
        if _offset(zone, lo) != _offset(zone, hi):
            a, b = lo, hi  # offset(a) differs from offset(b): find the first second with the new offset
            while b - a > 1:
                mid = (a + b) // 2
                if _offset(zone, mid) == _offset(zone, lo):
                    a = mid
                else:
                    b = mid
            out.add(b)
        lo = hi
    return out
