"""The one timeframe table: each bar length the broker makes (fixed-length periods; W1/MN1 are not), and for the
ones the services trade, the bars per year the twin annualises with (252 trading days x 20 h; D1: one a day).

`config.TIMEFRAMES` (what a config may name), the twin's `bars_per_year` and the cTrader adapter's period enum
(`services/connector/ctrader/periods.py`, keyed by these names) all derive from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeframe:
    seconds: int
    bars_per_year: int = 0  # 0: a broker period the services do not trade


TABLE: dict[str, Timeframe] = {
    "M1": Timeframe(60, 302_400),
    "M2": Timeframe(120),
    "M3": Timeframe(180),
    "M4": Timeframe(240),
    "M5": Timeframe(300, 60_480),
    "M10": Timeframe(600),
    "M15": Timeframe(900, 20_160),
    "M30": Timeframe(1800, 10_080),
    "H1": Timeframe(3600, 5_040),
    "H4": Timeframe(14_400, 1_260),
    "H12": Timeframe(43_200),
    "D1": Timeframe(86_400, 252),
}
TRADED: dict[str, int] = {name: tf.seconds for name, tf in TABLE.items() if tf.bars_per_year}  # name -> seconds


def seconds_of(timeframe: str) -> int:
    """The bar length of any period in the table (the broker's included)."""
    try:
        return TABLE[timeframe.upper()].seconds
    except KeyError:
        raise ValueError(f"unsupported timeframe {timeframe!r}") from None


def bars_per_year(timeframe: str) -> int:
    """Bars in a trading year of a traded timeframe."""
    tf = TABLE.get(timeframe.upper())
    if tf is None or not tf.bars_per_year:
        raise ValueError(f"unsupported timeframe {timeframe!r}")
    return tf.bars_per_year
