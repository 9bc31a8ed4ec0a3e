"""The batched policies decide as each model's own ``PolicyNet.act``: on real data (bars of the bundled EURUSD H1
2017, the demo model and other nets), and at near ties and non-finite logits (the nets' own path).

The real-data test asks the nets every 4th bar of 2017 (each net reads another bar each time, so the ~6 000
observations are all read, by some net); ``ORACLE_POLICY_BATCH_FULL=1`` asks every net at every bar (4 times as
long). The branches are the same in both: batched logits decided, near ties and non-finite logits on the nets' own
path (the parametrized test below pins each), nets of two shapes and both activations in one batch."""

import math
import os

import numpy as np
import pytest
import torch

from common.twin.bars import load_bars_csv
from common.twin.twin import initial_state, run
from services.preditor.model_file import load_model
from services.preditor.policy import ARGMAX_MARGIN, PolicyNet
from services.preditor.policy_batch import PolicyBatch, decided

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


def _decided_row(row: list[float], d: list[float]) -> int:
    """The per-row rule as it was written before ``decided`` (Python floats, one row at a time): the reference."""
    best = max(range(len(row)), key=row.__getitem__)
    top, d_best = row[best], d[best]
    limit = top - d_best - 1.01 * ARGMAX_MARGIN * max(1.0, abs(top) + d_best)
    if (math.isfinite(limit) and all(math.isfinite(s) for s in d)
            and all(v + s < limit for i, (v, s) in enumerate(zip(row, d, strict=True)) if i != best)):
        return best
    return -1


def test_decided_is_the_per_row_rule_on_every_row():
    """``decided`` (all rows at once) against the per-row rule on 200 000 rows of float32 logits and float64
    spreads: clear leads, leads at the bound's edge (a spread just below and above what separates them), exact
    ties, several equal largest, NaN and infinities in logits and spreads, tiny and huge values."""
    rng = np.random.default_rng(7)
    n, k = 200_000, 7
    logits = rng.normal(0.0, rng.choice([1e-3, 1.0, 30.0, 1e6], size=(n, 1)), size=(n, k)).astype(np.float32)
    spreads = np.abs(rng.normal(0.0, rng.choice([0.0, 1e-7, 1e-4, 1e-2], size=(n, 1)), size=(n, k)))
    ties = rng.random(n) < 0.05
    logits[ties, 3] = logits[ties].max(axis=1)
    logits[ties, 5] = logits[ties, 3]
    wide = logits.astype(np.float64)
    order = np.sort(wide, axis=1)
    gap = order[:, -1] - order[:, -2]
    edge = rng.random(n) < 0.1  # the spreads put the runner-up at the limit, one way or the other
    spreads[edge] = np.repeat((gap[edge] * rng.choice([0.49999, 0.5, 0.50001], size=edge.sum()))[:, None], k, axis=1)
    for value, share in ((np.nan, 0.01), (np.inf, 0.01), (-np.inf, 0.01)):
        at = rng.random((n, k)) < share / k
        logits[at] = value
    spreads[rng.random((n, k)) < 0.002] = np.inf
    spreads[rng.random((n, k)) < 0.002] = np.nan
    got = decided(logits.astype(np.float64), spreads).tolist()
    rows, ds = logits.tolist(), spreads.tolist()
    expected = [_decided_row(rows[i], ds[i]) for i in range(n)]
    assert got == expected
    assert 0.2 * n < sum(x >= 0 for x in expected) < 0.9 * n  # both outcomes, in numbers
