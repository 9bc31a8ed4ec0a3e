"""Builders for model-file tests (fixtures: test modules are imported with --import-mode=importlib)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from common.twin.actions import actions_metadata
from common.twin.hmm import HmmParams
from services.preditor.policy import PolicyNet

BASE_METADATA = {
    "format_version": "2.0",
    "generated_at": "2026-11-26T00:00:00+00:00",
    "symbol": {"name": "EURUSD", "clean": "EURUSD", "timeframe": "H1"},
    "training_config": {"point": 0.00001, "pip_value": 10.0, "spread_points": 7, "slippage_points": 2,
                        "commission_per_lot": 7.0, "digits": 5, "initial_balance": 10000,
                        "lot_sizes": [0, 0.01, 0.03, 0.05]},
    "hmm_config": {"n_states": 5, "momentum_period": 12, "consistency_period": 12, "range_period": 20,
                   "decode_method": "forward_filter"},
    "rl_config": {"roc_period": 10, "atr_period": 14, "ema_period": 200, "range_period": 20,
                  "volume_ma_period": 20},
    "twin": {"window": 350},
    "actions": actions_metadata(),
}


def _hmm5() -> HmmParams:
    k = 5
    means = np.column_stack([np.linspace(-3, 3, k), np.linspace(-0.8, 0.8, k), np.linspace(-0.6, 0.6, k)])
    trans = np.full((k, k), 0.1 / (k - 1)) + np.eye(k) * (0.9 - 0.1 / (k - 1))
    return HmmParams(np.full(k, 1 / k), trans, means, np.stack([np.eye(3) * 0.4] * k))


def _policy_state(observation_size: int = 14, hidden=(16, 16), seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return dict(PolicyNet(observation_size, list(hidden)).state_dict())


@pytest.fixture
def metadata():
    return copy.deepcopy(BASE_METADATA)


@pytest.fixture
def hmm5():
    return _hmm5()


@pytest.fixture
def policy_state():
    return _policy_state


@pytest.fixture
def eurusd_bars():
    from common.twin.bars import load_bars_csv

    return load_bars_csv("data/EURUSD_H1_2017.csv")


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """As in the preditor and the backtest: batch-1 inference is ~15x faster on one thread on this 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
