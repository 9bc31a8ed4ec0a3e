import numpy as np
import pytest
import torch

from services.preditor.policy import PolicyNet, actor_state_from_sb3, mode_of


@pytest.fixture(scope="module")
def ppo():
    import gymnasium as gym
    from stable_baselines3 import PPO

    class Shapes(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (14,), np.float32)
        action_space = gym.spaces.Discrete(7)

        def reset(self, *, seed=None, options=None):
            return np.zeros(14, np.float32), {}

        def step(self, action):
            return np.zeros(14, np.float32), 0.0, True, False, {}

    return PPO("MlpPolicy", Shapes(), n_steps=8, batch_size=8, seed=3, device="cpu",
               policy_kwargs={"net_arch": {"pi": [64, 64, 64], "vf": [32]}, "activation_fn": torch.nn.Tanh})


def test_exported_actor_reproduces_sb3_deterministic_actions(ppo):
    net = PolicyNet.from_state_dict(actor_state_from_sb3(ppo.policy.state_dict()))
    assert (net.observation_size, net.hidden_sizes, net.training) == (14, (64, 64, 64), False)
    obs = np.random.default_rng(0).normal(0, 2, (400, 14)).astype(np.float32)
    ours = [net.act(o) for o in obs]
    assert ours == [int(ppo.predict(o, deterministic=True)[0]) for o in obs]
    assert len(set(ours)) > 1  # the comparison is not trivially constant


def test_exported_weights_contain_only_the_actor(ppo):
    keys = set(actor_state_from_sb3(ppo.policy.state_dict()))
    assert keys == {f"hidden.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")} | {"action.weight",
                                                                                          "action.bias"}


@pytest.mark.parametrize("state", [
    {},
    {"hidden.0.weight": torch.zeros(4, 14)},  # no action layer
    {"hidden.1.weight": torch.zeros(4, 14), "action.weight": torch.zeros(7, 4), "action.bias": torch.zeros(7)},
    {"action.weight": "not a tensor"},
])
def test_malformed_weights_are_refused(state):
    with pytest.raises((ValueError, RuntimeError)):
        PolicyNet.from_state_dict(state)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_forward_gives_the_bits_of_the_layer_modules(ppo, activation):
    """``forward`` calls F.linear and the activation directly: the same kernels as the modules, the same bits."""
    net = PolicyNet.from_state_dict(actor_state_from_sb3(ppo.policy.state_dict()), activation=activation)
    obs = torch.as_tensor(np.random.default_rng(1).normal(0, 2, (300, 14)).astype(np.float32))
    with torch.inference_mode():
        for o in obs:
            x = o.reshape(1, -1)
            assert torch.equal(net(x), net.action(net.hidden(x)))


def test_the_demo_model_acts_as_through_its_modules():
    from common.twin.bars import load_bars_csv
    from common.twin.twin import initial_state, run
    from services.preditor.model_file import load_model

    model = load_model("models/EURUSD_H1.zip")
    net = model.policy
    _, decisions = run(model.spec, initial_state(), load_bars_csv("data/EURUSD_H1_2017.csv")[:700], model.policy_fn)
    with torch.inference_mode():
        for d in decisions:
            x = torch.tensor([d.observation], dtype=torch.float32)
            logits = net.action(net.hidden(x))
            assert torch.equal(net(x), logits)
            expected = torch.softmax(logits - logits.logsumexp(dim=-1, keepdim=True), dim=-1).argmax(dim=-1).item()
            assert int(d.action) == expected


def _net_with_action_rows(rows: list[list[float]], bias: list[float]) -> PolicyNet:
    """A net without hidden layers: its logits are ``rows @ obs + bias`` (observation of size 2)."""
    return PolicyNet.from_state_dict({"action.weight": torch.tensor(rows), "action.bias": torch.tensor(bias)})


def test_act_equals_the_distribution_mode_on_many_observations(ppo):
    net = PolicyNet.from_state_dict(actor_state_from_sb3(ppo.policy.state_dict()))
    obs = np.random.default_rng(7).normal(0, 3, (3000, 14)).astype(np.float32)
    with torch.inference_mode():
        modes = [mode_of(net(torch.as_tensor(o).reshape(1, -1))) for o in obs]
    acts = [net.act(o) for o in obs]
    assert acts == modes
    assert len(set(acts)) > 2


@pytest.mark.parametrize(("bias", "expected"), [
    ([0.0, 0.5, 0.5, 0.1, 0.0, 0.0, 0.0], 1),  # an exact tie: the first index, as the distribution's argmax
    ([0.0, 0.5, 0.5 + 1e-7, 0.1, 0.0, 0.0, 0.0], None),  # within the margin: the distribution decides
    ([0.0, 0.5, 0.5 + 2e-3, 0.1, 0.0, 0.0, 0.0], 2),  # past the margin: the largest logit
    ([30.0, 0.0, 0.0, 0.0, 0.0, 0.0, 30.0], 0),  # probabilities rounding to the same value far from zero
    ([0.0, float("nan"), 0.0, 0.0, 0.0, 0.0, 0.0], None),  # not finite: the distribution's answer, whatever it is
])
def test_act_near_ties_take_the_distribution_path(bias, expected):
    net = _net_with_action_rows([[0.0, 0.0]] * 7, bias)
    obs = np.zeros(2, np.float32)
    with torch.inference_mode():
        mode = mode_of(net(torch.as_tensor(obs).reshape(1, -1)))
    assert net.act(obs) == mode
    if expected is not None:
        assert mode == expected
