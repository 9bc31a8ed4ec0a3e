"""The batched policies decide as each model's own ``PolicyNet.act``: on real data (bars of the bundled EURUSD H1
2017, the demo model and other nets), and at near ties and non-finite logits (the nets' own path).

The real-data test asks the nets every 4th bar of 2017 (each net reads another bar each time, so the ~6 000
observations are all read, by some net); ``ORACLE_POLICY_BATCH_FULL=1`` asks every net at every bar (4 times as
long). The branches are the same in both: batched logits decided, near ties and non-finite logits on the nets' own
path (the parametrized test below pins each), nets of two shapes and both activations in one batch."""

import os

import numpy as np
import pytest
import torch

from common.twin.bars import load_bars_csv
from common.twin.twin import initial_state, run
from services.preditor.model_file import load_model
from services.preditor.policy import PolicyNet
from services.preditor.policy_batch import PolicyBatch

BAR_STRIDE = 1 if os.environ.get("ORACLE_POLICY_BATCH_FULL") == "1" else 4


@pytest.fixture(scope="module")
def demo():
    return load_model("models/EURUSD_H1.zip")


@pytest.fixture(scope="module")
def observations(demo):
    """The demo model's observation at every bar of 2017 (float32, one row a bar once the window is full)."""
    _, decisions = run(demo.spec, initial_state(demo.model_id), load_bars_csv("data/EURUSD_H1_2017.csv"),
                       demo.policy_fn)
    return np.array([d.observation for d in decisions], dtype=np.float32)


def _perturbed(net: PolicyNet, seed: int, scale: float, activation: str | None = None) -> PolicyNet:
    g = torch.Generator().manual_seed(seed)
    state = {k: v + scale * torch.randn(v.shape, generator=g) for k, v in net.state_dict().items()}
    return PolicyNet.from_state_dict(state, activation or net.activation)


def test_batched_actions_are_the_models_own_on_every_bar_of_real_data(demo, observations):
    """20 nets of the demo's shape (its weights as loaded from the file, twice, and perturbed copies), 3 of the
    demo's with relu and 2 of another shape, each reading another bar's observation: at every BAR_STRIDE-th bar
    the actions equal ``act`` one by one, most of them taken from the batched logits."""
    own = [load_model("models/EURUSD_H1.zip").policy, demo.policy]
    nets = own + [_perturbed(demo.policy, s, 0.01) for s in range(18)]
    nets += [_perturbed(demo.policy, 100 + s, 0.0, "relu") for s in range(3)]
    torch.manual_seed(5)
    nets += [PolicyNet(demo.policy.observation_size, [64, 32]) for _ in range(2)]
    batch = PolicyBatch(nets)
    n = len(observations)
    asked_total = 0
    seen_actions: set[int] = set()
    read: set[int] = set()
    for t in range(0, n, BAR_STRIDE):
        asked = [(i, observations[(t + 7 * i) % n]) for i in range(len(nets))]
        read.update((t + 7 * i) % n for i in range(len(nets)))
        expected = [nets[i].act(o) for i, o in asked]
        assert batch.actions(asked) == expected, f"bar {t}"
        asked_total += len(asked)
        seen_actions.update(expected)
    assert n > 5000 and len(seen_actions) >= 4
    assert len(read) == n  # every observation of the year read by some net
    assert 0 < batch.fallbacks < 0.1 * asked_total  # the batched logits decide most; near ties go one by one


def test_a_subset_and_any_order_of_the_nets(demo, observations):
    nets = [_perturbed(demo.policy, s, 0.02) for s in range(6)]
    batch = PolicyBatch(nets)
    for t in range(0, 600, 3):
        asked = [(i, observations[t + i]) for i in (4, 1, 3)]
        assert batch.actions(asked) == [nets[i].act(o) for i, o in asked]
        assert batch.actions([(2, observations[t])]) == [nets[2].act(observations[t])]
    with pytest.raises(ValueError):
        batch.actions([(1, observations[0]), (1, observations[1])])


def _net_with_action_rows(rows: list[list[float]], bias: list[float]) -> PolicyNet:
    """A net with one hidden layer of 2 (identity-like weights) before ``rows @ h + bias``."""
    return PolicyNet.from_state_dict({"hidden.0.weight": torch.eye(2), "hidden.0.bias": torch.zeros(2),
                                      "action.weight": torch.tensor(rows), "action.bias": torch.tensor(bias)})


@pytest.mark.parametrize("bias", [
    [0.0, 0.5, 0.5, 0.1, 0.0, 0.0, 0.0],  # an exact tie
    [0.0, 0.5, 0.5 + 1e-7, 0.1, 0.0, 0.0, 0.0],  # within the margin
    [0.0, 0.5, 0.5 + 1.001e-3, 0.1, 0.0, 0.0, 0.0],  # just past act's margin: not past the batch's
    [30.0, 0.0, 0.0, 0.0, 0.0, 0.0, 30.0],
    [0.0, float("nan"), 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, float("inf"), 0.0, 0.0, 0.0, 0.0, 0.0],
])
def test_near_ties_and_non_finite_logits_go_to_the_nets_own_path(bias):
    tied = _net_with_action_rows([[0.0, 0.0]] * 7, bias)
    clear = _net_with_action_rows([[0.0, 0.0]] * 7, [0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0])
    batch = PolicyBatch([tied, clear])
    obs = np.array([0.25, -0.5], np.float32)
    assert batch.actions([(0, obs), (1, obs)]) == [tied.act(obs), 3]
    assert batch.fallbacks == 1
