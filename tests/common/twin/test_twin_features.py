import math

import numpy as np
import pytest

from common.twin.features import (
    HmmFeatureParams,
    RlFeatureParams,
    hmm_features,
    market_features,
    observation,
    position_features,
)

HP, RP = HmmFeatureParams(), RlFeatureParams()
HOUR = 3600
MONDAY_2017_01_02 = 1483315200  # 00:00 UTC


def make_bars(close, high=None, low=None, volume=None, time=None):
    close = np.asarray(close, dtype=np.float64)
    n = len(close)
    return np.column_stack([
        np.asarray(time if time is not None else MONDAY_2017_01_02 + HOUR * np.arange(n), dtype=np.float64),
        close,
        np.asarray(high if high is not None else close, dtype=np.float64),
        np.asarray(low if low is not None else close, dtype=np.float64),
        close,
        np.asarray(volume if volume is not None else np.full(n, 100.0), dtype=np.float64),
    ])


def hmm_last(bars, p=HP):
    n = len(bars)
    return hmm_features(bars, np.array([n - 1]), np.array([0]), p)[0]


def market_last(bars, p=RP):
    return market_features(bars, np.array([len(bars) - 1]), len(bars), p)[0]


def geometric(n, step):
    return 1.0 * (1.0 + step) ** np.arange(n)


@pytest.mark.parametrize("close, expected", [
    (geometric(13, 0.001), 100 * 12 * 0.001),  # 12 returns of +0.1 %
    (geometric(30, 0.001), 1.2),  # only the last 12 returns count
    (geometric(13, 0.01), 5.0),  # clipped at +5
    (geometric(13, -0.01), -5.0),  # clipped at -5
    (geometric(12, 0.001), 0.0),  # first bars of a window: only 11 returns -> undefined -> 0
    (np.ones(13), 0.0),
])
def test_momentum(close, expected):
    assert hmm_last(make_bars(close))[0] == pytest.approx(expected, abs=1e-9)


def closes_from_moves(moves):
    return np.concatenate([[1.0], 1.0 + np.cumsum(moves) * 0.001])


@pytest.mark.parametrize("moves, expected", [
    ([1] * 12, 1.0),
    ([-1] * 12, -1.0),
    ([1] * 9 + [-1] * 3, 0.5),
    ([-1] * 9 + [1] * 3, -0.5),
    ([1, -1] * 6, 0.0),  # up == down
    ([1] * 6 + [0] * 6, 0.0),  # zero returns count as neither: (6/12*2-1) * +1
    ([1] * 3 + [-1] + [0] * 8, -0.5),  # (3/12*2-1) * sign(+2): the reference formula, negative on purpose
    ([-1] * 5 + [1] * 12, 1.0),  # only the last 12 returns count
])
def test_consistency(moves, expected):
    assert hmm_last(make_bars(closes_from_moves(moves)))[1] == pytest.approx(expected, abs=1e-12)


def test_consistency_first_bars_of_window():
    # 12 bars = 11 returns: the window's first bar has no return (counts as neither), the feature is defined.
    assert hmm_last(make_bars(closes_from_moves([1] * 11)))[1] == pytest.approx(11 / 12 * 2 - 1)
    # 11 bars: fewer than the period -> 0.
    assert hmm_last(make_bars(closes_from_moves([1] * 10)))[1] == 0.0


def range_bars(n, hh=1.2, ll=1.0, last_close=1.15):
    close = np.full(n, 1.1)
    close[-1] = last_close
    high, low = close.copy(), close.copy()
    high[-5], low[-7] = hh, ll
    return make_bars(close, high, low)


@pytest.mark.parametrize("bars, expected", [
    (range_bars(20), (1.15 - 1.0) / 0.2 * 2 - 1),
    (range_bars(40), (1.15 - 1.0) / 0.2 * 2 - 1),
    (range_bars(20, last_close=1.0), -1.0),
    (range_bars(19), 0.0),  # fewer bars than range_period
    (make_bars(np.full(25, 1.1)), 0.0),  # zero range: HH == LL
])
def test_range_position_hmm_and_rl(bars, expected):
    assert hmm_last(bars)[2] == pytest.approx(expected, abs=1e-12)
    assert market_last(bars)[3] == pytest.approx(expected, abs=1e-12)


def test_range_periods_are_separate():
    bars = range_bars(20)
    assert hmm_last(bars, HmmFeatureParams(range_period=25))[2] == 0.0
    assert market_last(bars, RlFeatureParams(range_period=20))[3] != 0.0


@pytest.mark.parametrize("n, expected", [
    (11, math.tanh((1.1 - 1.0) / 1.0 * 20)),
    (10, 0.0),  # close t-10 is outside the window
])
def test_roc(n, expected):
    close = np.full(n, 1.05)
    close[-11 if n >= 11 else 0] = 1.0
    close[-1] = 1.1
    assert market_last(make_bars(close))[0] == pytest.approx(expected, abs=1e-12)


def staircase(n):
    close = 1.0 + 0.01 * np.arange(n)
    return make_bars(close, close + 0.001, close - 0.001)


def test_atr_uses_the_previous_close_and_the_first_bar_of_the_window_has_only_high_minus_low():
    # 14 bars: TR = 0.002 for the window's first bar, then |high - previous close| = 0.011
    expected = math.tanh((0.002 + 13 * 0.011) / 14 / 1.13 * 50)
    assert market_last(staircase(14))[1] == pytest.approx(expected, abs=1e-12)
    # 15 bars: every one of the last 14 has a previous close inside the window
    assert market_last(staircase(15))[1] == pytest.approx(math.tanh(0.011 / 1.14 * 50), abs=1e-12)
    assert market_last(staircase(13))[1] == 0.0
    # a bar before the window exists in the array but is not the window's: same value as the 14-bar window
    assert market_features(staircase(15), np.array([14]), 14, RP)[0][1] == pytest.approx(
        math.tanh((0.002 + 13 * 0.011) / 14 / 1.14 * 50), abs=1e-12)


def test_trend_ema_is_seeded_with_the_first_close_of_the_window():
    p = RlFeatureParams(ema_period=3)  # alpha = 0.5: 1 -> 1.5 -> 2.25
    assert market_last(make_bars([1.0, 2.0, 3.0]), p)[2] == pytest.approx(math.tanh((3 - 2.25) / 2.25 * 20))
    # A different window start is a different seed: the value is a function of the window only.
    assert market_last(make_bars([5.0, 1.0, 2.0, 3.0]), p)[2] != market_last(make_bars([1.0, 2.0, 3.0]), p)[2]


@pytest.mark.parametrize("volume, expected", [
    ([100.0] * 19 + [200.0], math.tanh((200 / 105 - 1) * 2)),
    ([0.0] * 20, math.tanh(-2.0)),  # zero volume average: MA replaced by 1
    ([0.0] * 19 + [3.0], math.tanh((3.0 / 0.15 - 1) * 2)),
    ([100.0] * 19, 0.0),  # fewer bars than the volume MA period
])
def test_vol_rel(volume, expected):
    bars = make_bars(np.full(len(volume), 1.1), volume=volume)
    assert market_last(bars)[4] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("hour, expected", [
    (0, 0.0), (3, 0.7071067811865476), (6, 1.0), (9, 0.7071067811865476), (12, 0.0),
    (15, -0.7071067811865476), (18, -1.0), (21, -0.7071067811865476),
])
def test_session_by_utc_hour(hour, expected):
    bars = make_bars([1.1], time=[MONDAY_2017_01_02 + hour * HOUR])
    assert market_last(bars)[5] == pytest.approx(expected, abs=1e-12)


def test_session_ignores_minutes_and_weekend_gaps():
    friday_21h = MONDAY_2017_01_02 - 51 * HOUR
    times = [friday_21h, MONDAY_2017_01_02 + 9 * HOUR + 30 * 60]  # a 60.5-hour weekend gap
    bars = make_bars([1.1, 1.1], time=times)
    assert market_last(bars)[5] == pytest.approx(math.sin(2 * math.pi * 9 / 24))


@pytest.mark.parametrize("window", [2, 10, 11, 12, 13, 14, 15, 19, 20, 21, 60])
def test_short_windows_inside_a_longer_history_see_only_their_bars(window):
    rng = np.random.default_rng(window)
    close = 1.1 + np.cumsum(rng.normal(0, 0.001, 80))
    bars = make_bars(close, close + 0.0005, close - 0.0007, rng.uniform(1, 2, 80))
    end = 79
    alone = bars[end - window + 1:]
    assert np.array_equal(market_features(bars, np.array([end]), window, RP)[0], market_last(alone))
    starts = np.array([end - window + 1])
    assert np.array_equal(hmm_features(bars, np.array([end]), starts, HP)[0], hmm_last(alone))


def test_features_depend_only_on_the_window():
    rng = np.random.default_rng(1)
    close = 1.1 + np.cumsum(rng.normal(0, 0.001, 400))
    bars = make_bars(close, close + 0.0005, close - 0.0007, rng.uniform(1, 2, 400))
    ends = np.array([99, 250, 399])
    many = market_features(bars, ends, 100, RP)
    for row, end in zip(many, ends, strict=True):
        assert np.array_equal(row, market_last(bars[end - 99:end + 1]))


@pytest.mark.parametrize("direction, lot, pnl, expected", [
    (0, 0.0, 0.0, (0.0, 0.0, 0.0)),
    (1, 0.01, 15.5, (1.0, 0.1, math.tanh(0.155))),
    (-1, 0.03, -40.0, (-1.0, 0.3, math.tanh(-0.4))),
    (1, 0.05, 0.0, (1.0, 0.5, 0.0)),  # lot x 10, not intensity x 10
])
def test_position_features(direction, lot, pnl, expected):
    assert position_features(direction, lot, pnl) == pytest.approx(expected, abs=1e-12)


def test_observation_order_and_one_hot():
    market = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    obs = observation(market, 3, 5, (1.0, 0.3, 0.25))
    assert obs.dtype == np.float32 and obs.shape == (14,)
    assert obs.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0, 0, 0, 1, 0, 1.0, 0.3, 0.25])
