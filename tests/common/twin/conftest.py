"""Fixtures for the twin tests (fixtures, since test modules are imported with --import-mode=importlib)."""

from __future__ import annotations

import numpy as np
import pytest

from common.twin.hmm import HmmParams

HOUR = 3600
MONDAY_2017_01_02 = 1483315200  # 00:00 UTC


def _make_bars(close, high=None, low=None, volume=None, time=None, start=MONDAY_2017_01_02) -> np.ndarray:
    close = np.asarray(close, dtype=np.float64)
    n = len(close)
    return np.column_stack([
        np.asarray(time if time is not None else start + HOUR * np.arange(n), dtype=np.float64),
        close,
        np.asarray(high if high is not None else close, dtype=np.float64),
        np.asarray(low if low is not None else close, dtype=np.float64),
        close,
        np.asarray(volume if volume is not None else np.full(n, 100.0), dtype=np.float64),
    ])


def _random_walk_bars(n: int, seed: int = 7) -> np.ndarray:
    """Hourly bars with weekend gaps (no Saturday/Sunday bars), like a real FX feed."""
    rng = np.random.default_rng(seed)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 0.0015, n)))
    spread = np.abs(rng.normal(0, 0.001, (n, 2)))
    times, t = [], MONDAY_2017_01_02
    while len(times) < n:
        if (t // 86400 + 4) % 7 < 5:  # 1970-01-01 was a Thursday: weekday index, Monday = 0
            times.append(t)
        t += HOUR
    volume = rng.uniform(50, 150, n)
    return _make_bars(close, close + spread[:, 0], close - spread[:, 1], volume, times)


@pytest.fixture
def hmm3() -> HmmParams:
    return HmmParams(
        startprob=np.array([0.3, 0.4, 0.3]),
        transmat=np.array([[0.90, 0.08, 0.02], [0.05, 0.90, 0.05], [0.02, 0.08, 0.90]]),
        means=np.array([[-2.0, -0.5, -0.5], [0.0, 0.0, 0.0], [2.0, 0.5, 0.5]]),
        covars=np.stack([np.eye(3) * 0.5, np.eye(3) * 0.3, np.eye(3) * 0.5]),
    )


def _busy_policy(obs: np.ndarray) -> int:
    """Deterministic, uses market and position features, so the position path matters."""
    return int(np.floor((obs[0] + 1.0) * 3.5 + obs[3] * 2 + obs[-1] * 50)) % 7


@pytest.fixture
def make_bars():
    return _make_bars


@pytest.fixture
def random_walk_bars():
    return _random_walk_bars


@pytest.fixture
def busy_policy():
    return _busy_policy
