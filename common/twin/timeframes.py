"""Timeframes the twin knows: bar length and bars per year (252 trading days x 20 h) for annualising."""

from __future__ import annotations

TIMEFRAME_SECONDS: dict[str, int] = {
    "M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H1": 3600, "H4": 14400, "D1": 86400,
}
BARS_PER_YEAR: dict[str, int] = {
    "M1": 302_400, "M5": 60_480, "M15": 20_160, "M30": 10_080, "H1": 5_040, "H4": 1_260, "D1": 252,
}


def bars_per_year(timeframe: str) -> int:
    try:
        return BARS_PER_YEAR[timeframe.upper()]
    except KeyError:
        raise ValueError(f"unsupported timeframe {timeframe!r}") from None
