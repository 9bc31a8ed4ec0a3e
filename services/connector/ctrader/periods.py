"""Timeframe names <-> ProtoOATrendbarPeriod values (pure); the bar lengths come from common/timeframes.py."""

from __future__ import annotations

from common import timeframes

# name -> ProtoOATrendbarPeriod value; W1/MN1 have no fixed length and are not supported here.
PERIODS: dict[str, int] = {
    "M1": 1, "M2": 2, "M3": 3, "M4": 4, "M5": 5, "M10": 6, "M15": 7, "M30": 8, "H1": 9, "H4": 10, "H12": 11, "D1": 12,
}
_BY_PERIOD = {period: name for name, period in PERIODS.items()}


def period_of(timeframe: str) -> int:
    try:
        return PERIODS[timeframe.upper()]
    except KeyError:
        raise ValueError(f"unsupported timeframe {timeframe!r}") from None


def seconds_of(timeframe: str) -> int:
    return timeframes.seconds_of(timeframe)


def name_of(period: int) -> str:
    try:
        return _BY_PERIOD[period]
    except KeyError:
        raise ValueError(f"unsupported trendbar period {period}") from None


def period_seconds(period: int) -> int:
    return seconds_of(name_of(period))
