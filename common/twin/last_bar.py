"""The features of a window's last bar on Python floats: the live step's fast path.

``features.hmm_features`` and ``features.market_features`` compute many bars at once on numpy columns (the
trainer's path); for the one bar the live twin needs, that is some 200 numpy calls on 1-element arrays. Here the
same IEEE-754 double operations run in the same order on Python floats, reading only the last bars the features
need (``span``), so the results are the same bits (tests/common/twin/test_twin_fast_path.py compares them on
real and random bars, short windows included). What is kept from numpy:

- tanh stays numpy's (``np.tanh`` on a small array): libm's may round differently;
- a division by zero gives inf or nan instead of raising; maximum and minimum propagate NaN; an index before the
  window's first bar reads its first bar (``features._take``); a NaN feature is 0 (``features._no_nan``).

Both functions take the window (n, 6) and return the features of its last bar, the window's first bar being the
start (bar t in a window of n bars ending at t).
"""

from __future__ import annotations

import math

import numpy as np

from common.twin.bars import CLOSE, HIGH, LOW, TIME, VOLUME
from common.twin.features import _SESSION_BY_HOUR, HmmFeatureParams, RlFeatureParams, trend_ema


def _div(a: float, b: float) -> float:
    """IEEE-754 a / b, as numpy divides (inf or nan on a zero divisor; Python raises)."""
    try:
        return a / b
    except ZeroDivisionError:
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.float64(a) / np.float64(b))


def _maximum(a: float, b: float) -> float:
    """np.maximum of two floats: NaN wins."""
    return a if (a >= b or a != a) else b


def _minimum(a: float, b: float) -> float:
    """np.minimum of two floats: NaN wins."""
    return a if (a <= b or a != a) else b


def _no_nan(x: float) -> float:
    return 0.0 if x != x else x


class _Tail:
    """The last ``span`` bars of a window as Python floats. Position j holds window index ``base + j``; a window
    shorter than ``span`` is padded in front with copies of its first bar (``_take``: an index before the first
    bar reads the first bar)."""

    __slots__ = ("end", "base", "time", "high", "low", "close", "volume")

    def __init__(self, window: np.ndarray, span: int) -> None:
        n = len(window)
        self.end = n - 1
        self.base = n - span
        tail = window[n - span:] if n >= span else np.concatenate([np.repeat(window[:1], span - n, axis=0), window])
        cols = tail.T.tolist()
        self.time, self.high, self.low, self.close, self.volume = (cols[TIME], cols[HIGH], cols[LOW], cols[CLOSE],
                                                                   cols[VOLUME])

    def ret(self, idx: int) -> float:
        """``features._returns`` at window index ``idx``: close / previous close - 1; NaN for the first bar."""
        if idx <= 0:
            return math.nan
        j = idx - self.base
        return _div(self.close[j], self.close[j - 1]) - 1.0

    def range_position(self, period: int) -> float:
        """``features._range_position`` of the last bar."""
        first = self.end - period + 1 - self.base
        hh, ll = self.high[first], self.low[first]
        for h, lo in zip(self.high[first + 1:], self.low[first + 1:], strict=True):
            hh = hh if (hh >= h or hh != hh) else h  # np.maximum: NaN wins
            ll = ll if (ll <= lo or ll != ll) else lo  # np.minimum
        span = hh - ll
        safe = span if span > 0 else 1.0
        value = (self.close[-1] - ll) / safe * 2.0 - 1.0
        return value if (span > 0 and first + self.base >= 0) else 0.0

    def true_range_sum(self, period: int) -> float:
        """The sum, oldest first, of ``features._true_range`` over the last ``period`` bars (high - low for the
        window's first bar)."""
        total = 0.0
        for k in range(period):
            idx = self.end - period + 1 + k
            j = idx - self.base
            h, lo = self.high[j], self.low[j]
            if idx > 0:
                prev = self.close[j - 1]
                a, b = abs(h - prev), abs(lo - prev)
                m = a if (a >= b or a != a) else b
                d = h - lo
                tr = d if (d >= m or d != d) else m
            else:
                tr = h - lo
            total = tr if k == 0 else total + tr
        return total


def hmm_span(p: HmmFeatureParams) -> int:
    """How many of the last bars the HMM features of the last bar read."""
    return max(p.momentum_period, p.consistency_period, p.range_period - 1) + 1


def market_span(p: RlFeatureParams) -> int:
    """How many of the last bars the market features of the last bar read (the EMA reads the whole window)."""
    return max(p.roc_period, p.atr_period, p.range_period - 1, p.volume_ma_period - 1) + 1


def last_hmm_row(window: np.ndarray, p: HmmFeatureParams) -> tuple[float, float, float]:
    """``features.hmm_features`` of the window's last bar: momentum, consistency, range_position."""
    t = _Tail(window, hmm_span(p))
    e = t.end
    first = e - p.momentum_period + 1
    acc = t.ret(first)
    for k in range(1, p.momentum_period):
        acc = acc + t.ret(first + k)
    momentum = _minimum(_maximum(100.0 * acc, -5.0), 5.0) if e - p.momentum_period >= 0 else 0.0

    up = down = 0.0
    for k in range(p.consistency_period):
        idx = e - p.consistency_period + 1 + k
        if idx > 0:  # the window's first bar has no return: it counts as neither
            ri = t.ret(idx)
            up = up + 1.0 if ri > 0 else up
            down = down + 1.0 if ri < 0 else down
    diff = up - down
    sign = 1.0 if diff > 0 else (-1.0 if diff < 0 else 0.0)
    consistency = (max(up, down) / p.consistency_period * 2.0 - 1.0) * sign
    if e - p.consistency_period + 1 < 0:
        consistency = 0.0
    return _no_nan(momentum), _no_nan(consistency), _no_nan(t.range_position(p.range_period))


def last_market_row(window: np.ndarray, p: RlFeatureParams) -> np.ndarray:
    """``features.market_features`` of the window's last bar: roc, atr, trend, range_position, vol_rel, session."""
    t = _Tail(window, market_span(p))
    e = t.end
    close = t.close[-1]
    prev = t.close[-1 - p.roc_period]
    roc = _div(close - prev, prev) * 20.0
    atr = _div(t.true_range_sum(p.atr_period) / p.atr_period, close) * 50.0
    ema = float(trend_ema(window, np.array([e]), len(window), p.ema_period)[0])
    trend = _div(close - ema, ema) * 20.0
    volumes = t.volume[-p.volume_ma_period:]
    ma = volumes[0]
    for v in volumes[1:]:
        ma = ma + v
    ma = ma / p.volume_ma_period
    ma = 1.0 if ma == 0 else ma
    vol_rel = (volumes[-1] / ma - 1.0) * 2.0

    roc, atr, trend, vol_rel = np.tanh(np.array([roc, atr, trend, vol_rel])).tolist()
    roc = roc if e - p.roc_period >= 0 else 0.0
    atr = atr if e - p.atr_period + 1 >= 0 else 0.0
    vol_rel = vol_rel if e - p.volume_ma_period + 1 >= 0 else 0.0
    session = float(_SESSION_BY_HOUR[int(t.time[-1] // 3600 % 24)])
    row = (roc, atr, trend, t.range_position(p.range_period), vol_rel, session)
    return np.array([_no_nan(x) for x in row])
