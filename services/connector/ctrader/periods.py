"""Timeframe names <-> ProtoOATrendbarPeriod values and bar lengths (pure)."""

from __future__ import annotations

# name: (ProtoOATrendbarPeriod value, seconds); W1/MN1 have no fixed length and are not supported here.
TIMEFRAMES: dict[str, tuple[int, int]] = {
    "M1": (1, 60),
    "M2": (2, 120),
    "M3": (3, 180),
    "M4": (4, 240),
    "M5": (5, 300),
    "M10": (6, 600),
    "M15": (7, 900),
    "M30": (8, 1800),
    "H1": (9, 3600),
    "H4": (10, 14400),
    "H12": (11, 43200),
    "D1": (12, 86400),
}
_BY_PERIOD = {period: name for name, (period, _) in TIMEFRAMES.items()}


def period_of(timeframe: str) -> int:
    try:
        return TIMEFRAMES[timeframe.upper()][0]
    except KeyError:
        raise ValueError(f"unsupported timeframe {timeframe!r}") from None


def seconds_of(timeframe: str) -> int:
    try:
        return TIMEFRAMES[timeframe.upper()][1]
    except KeyError:
        raise ValueError(f"unsupported timeframe {timeframe!r}") from None


def name_of(period: int) -> str:
    try:
        return _BY_PERIOD[period]
    except KeyError:
        raise ValueError(f"unsupported trendbar period {period}") from None


def period_seconds(period: int) -> int:
    return seconds_of(name_of(period))
