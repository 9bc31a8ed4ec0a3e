"""Features of the twin: 3 HMM inputs, 6 market features, the HMM one-hot and 3 position features.

Parity rule: the value for bar t is a pure function of the ``window`` bars ending at t (bars t-window+1 .. t),
computed by the same code in training, backtest and live. A process that restarts and warms up from history
therefore computes bit-identical floats. Concretely:

- a feature that needs more bars than the window holds is 0 (the reference's "NaN -> 0"); the window's first bar
  has no return, and its true range is high - low;
- the trend EMA (adjust=False, alpha = 2/(ema_period+1)) is seeded with the first close OF THE WINDOW, in training
  as in live (lessons.md A6: the reference trained on a full-history EMA but served a window EMA). The ~3 % weight
  left on the seed after 350 bars is part of the feature's definition, not an error, because training sees it too;
- every rolling sum adds its terms oldest first, one elementwise operation per term, so computing many windows at
  once (training) and one window (live) performs the same float operations on the same numbers. Sessions use a
  24-entry sine table, so no transcendental function depends on the array shape there. The live step computes
  its last bar with ``last_bar`` (the same operations on Python floats, tested bit-equal to these functions).

All functions take ``bars`` (n, 6 float64, see ``common.twin.bars``) and ``ends`` (bar indices t) and return one
row per end. HMM and RL periods are separate parameter sets (lessons.md A2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.twin import cloops
from common.twin.bars import CLOSE, HIGH, LOW, TIME, VOLUME

N_MARKET_FEATURES = 6
N_POSITION_FEATURES = 3
HMM_FEATURE_NAMES = ("momentum", "consistency", "range_position")
MARKET_FEATURE_NAMES = ("roc", "atr", "trend", "range_position", "vol_rel", "session")
POSITION_FEATURE_NAMES = ("position_direction", "position_size", "position_pnl")

_SESSION_BY_HOUR = np.array([math.sin(2 * math.pi * h / 24) for h in range(24)], dtype=np.float64)


@dataclass(frozen=True)
class HmmFeatureParams:
    momentum_period: int = 12
    consistency_period: int = 12
    range_period: int = 20

    @property
    def first_full_row(self) -> int:
        """Index, from a window's first bar, of the first bar whose 3 HMM features use only real returns.

        From there on a bar's HMM features are the same whichever window it sits in, which is what lets the
        trainer compute them once for all bars."""
        return max(self.momentum_period, self.consistency_period, self.range_period - 1)


@dataclass(frozen=True)
class RlFeatureParams:
    roc_period: int = 10
    atr_period: int = 14
    ema_period: int = 200
    range_period: int = 20
    volume_ma_period: int = 20


def _take(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return x[np.maximum(idx, 0)]


def _rolling_sum(x: np.ndarray, ends: np.ndarray, period: int) -> np.ndarray:
    acc = _take(x, ends - period + 1).copy()
    for k in range(1, period):
        acc = acc + _take(x, ends - period + 1 + k)
    return acc


def _returns(close: np.ndarray) -> np.ndarray:
    r = np.full(close.shape, np.nan)
    r[1:] = close[1:] / close[:-1] - 1.0
    return r


def _range_position(bars: np.ndarray, ends: np.ndarray, starts: np.ndarray, period: int) -> np.ndarray:
    hh = _take(bars[:, HIGH], ends - period + 1)
    ll = _take(bars[:, LOW], ends - period + 1)
    for k in range(1, period):
        hh = np.maximum(hh, _take(bars[:, HIGH], ends - period + 1 + k))
        ll = np.minimum(ll, _take(bars[:, LOW], ends - period + 1 + k))
    span = hh - ll
    safe = np.where(span > 0, span, 1.0)
    value = (bars[ends, CLOSE] - ll) / safe * 2.0 - 1.0
    return np.where((span > 0) & (ends - period + 1 >= starts), value, 0.0)


def _no_nan(x: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), 0.0, x)


def hmm_features(bars: np.ndarray, ends: np.ndarray, starts: np.ndarray, p: HmmFeatureParams) -> np.ndarray:
    """(len(ends), 3): momentum, consistency, range_position, each bar using only bars from its ``starts``."""
    close = bars[:, CLOSE]
    r = _returns(close)
    momentum = np.clip(100.0 * _rolling_sum(r, ends, p.momentum_period), -5.0, 5.0)
    momentum = np.where(ends - p.momentum_period >= starts, momentum, 0.0)

    up = np.zeros(len(ends))
    down = np.zeros(len(ends))
    for k in range(p.consistency_period):
        idx = ends - p.consistency_period + 1 + k
        has_return = idx > starts  # the window's first bar has no return: it counts as neither
        ri = _take(r, idx)
        up = up + ((ri > 0) & has_return)
        down = down + ((ri < 0) & has_return)
    consistency = (np.maximum(up, down) / p.consistency_period * 2.0 - 1.0) * np.sign(up - down)
    consistency = np.where(ends - p.consistency_period + 1 >= starts, consistency, 0.0)

    position = _range_position(bars, ends, starts, p.range_period)
    return _no_nan(np.stack([momentum, consistency, position], axis=1))


def _true_range(bars: np.ndarray, idx: np.ndarray, starts: np.ndarray) -> np.ndarray:
    h, lo = _take(bars[:, HIGH], idx), _take(bars[:, LOW], idx)
    prev = _take(bars[:, CLOSE], idx - 1)
    tr = np.maximum(h - lo, np.maximum(np.abs(h - prev), np.abs(lo - prev)))
    return np.where(idx > starts, tr, h - lo)


def trend_ema(bars: np.ndarray, ends: np.ndarray, window: int, period: int) -> np.ndarray:
    """EMA(adjust=False) of the closes of each window, seeded with the window's first close.

    The loop is C (``cloops.ema``), the same loop for one window and many; ``trend_ema_reference`` is its
    specification (the tests hold the C loop to it bit for bit).
    """
    starts = np.asarray(ends, dtype=np.int64) - window + 1
    out = np.empty(len(starts))
    cloops.ema(np.ascontiguousarray(bars[:, CLOSE]), starts, window, 2.0 / (period + 1), out)
    return out


def trend_ema_reference(bars: np.ndarray, ends: np.ndarray, window: int, period: int) -> np.ndarray:
    """``trend_ema``'s specification. One window runs on Python floats, many on numpy columns; the operations are
    the same IEEE-754 double operations in the same order, so both give the same bits."""
    close = bars[:, CLOSE]
    alpha = 2.0 / (period + 1)
    starts = np.asarray(ends, dtype=np.int64) - window + 1
    if len(starts) == 1:
        steps: list = close[starts[0]:starts[0] + window].tolist()
    else:
        steps = [close[starts + j] for j in range(window)]
    ema = steps[0]
    for x in steps[1:]:
        ema = (1.0 - alpha) * ema + alpha * x
    return np.atleast_1d(np.asarray(ema, dtype=np.float64))


def market_features(bars: np.ndarray, ends: np.ndarray, window: int, p: RlFeatureParams) -> np.ndarray:
    """(len(ends), 6): roc, atr, trend, range_position, vol_rel, session for windows of ``window`` bars."""
    ends = np.asarray(ends, dtype=np.int64)
    starts = ends - window + 1
    if len(ends) and starts.min() < 0:
        raise ValueError("every window must lie inside the bars")
    close = bars[ends, CLOSE]

    prev = _take(bars[:, CLOSE], ends - p.roc_period)
    roc = np.where(ends - p.roc_period >= starts, np.tanh((close - prev) / prev * 20.0), 0.0)

    tr_sum = _true_range(bars, ends - p.atr_period + 1, starts)
    for k in range(1, p.atr_period):
        tr_sum = tr_sum + _true_range(bars, ends - p.atr_period + 1 + k, starts)
    atr = np.tanh(tr_sum / p.atr_period / close * 50.0)
    atr = np.where(ends - p.atr_period + 1 >= starts, atr, 0.0)

    ema = trend_ema(bars, ends, window, p.ema_period)
    trend = np.tanh((close - ema) / ema * 20.0)

    position = _range_position(bars, ends, starts, p.range_period)

    ma = _rolling_sum(bars[:, VOLUME], ends, p.volume_ma_period) / p.volume_ma_period
    ma = np.where(ma == 0, 1.0, ma)
    vol_rel = np.tanh((bars[ends, VOLUME] / ma - 1.0) * 2.0)
    vol_rel = np.where(ends - p.volume_ma_period + 1 >= starts, vol_rel, 0.0)

    hours = (bars[ends, TIME] // 3600 % 24).astype(np.int64)
    session = _SESSION_BY_HOUR[hours]
    return _no_nan(np.stack([roc, atr, trend, position, vol_rel, session], axis=1))


def position_features(direction: int, lot: float, floating_pnl: float) -> tuple[float, float, float]:
    """Direction -1/0/+1, lot x 10 (0, 0.1, 0.3, 0.5; lot, not intensity: lessons.md A1), tanh(pnl / 100)."""
    return float(direction), lot * 10.0, math.tanh(floating_pnl / 100.0)


def observation(market: np.ndarray, hmm_state: int, n_states: int,
                position: tuple[float, float, float]) -> np.ndarray:
    """The PPO observation, float32: 6 market features, HMM one-hot, 3 position features."""
    obs = np.zeros(N_MARKET_FEATURES + n_states + N_POSITION_FEATURES, dtype=np.float32)
    obs[:N_MARKET_FEATURES] = market
    obs[N_MARKET_FEATURES + hmm_state] = 1.0
    obs[N_MARKET_FEATURES + n_states:] = position
    return obs
