import numpy as np
import pytest

from common.twin.hmm import FORWARD_FILTER
from common.twin.twin import TwinSpec, initial_state, run
from services.preditor.env import TwinEnv, market_tape


@pytest.fixture
def spec(hmm5):
    return TwinSpec(hmm5, FORWARD_FILTER)


def test_env_observations_and_equity_equal_the_twin(spec, eurusd_bars):
    bars = eurusd_bars[:700]
    actions = np.random.default_rng(0).integers(0, 7, 700)
    seen = []

    def scripted(obs):
        seen.append(obs.copy())
        return int(actions[len(seen) - 1])

    _, decisions = run(spec, initial_state(), bars, scripted)
    env = TwinEnv(spec, market_tape(spec, bars))
    obs, _ = env.reset(seed=0)
    rewards, env_obs = [], [obs]
    for i in range(len(decisions)):
        obs, reward, terminated, truncated, _ = env.step(int(actions[i]))
        rewards.append(reward)
        env_obs.append(obs)
        assert not terminated and truncated == (i == len(decisions) - 1)
    assert all(np.array_equal(a, b) for a, b in zip(seen, env_obs, strict=False))
    assert env.equity_change == decisions[-1].realized_pnl + decisions[-1].floating_pnl  # bit for bit
    assert sum(rewards) * env.reward_scale == pytest.approx(env.equity_change, abs=1e-6)


def test_episodes_start_at_seeded_random_offsets(spec, eurusd_bars):
    tape = market_tape(spec, eurusd_bars[:900])
    env = TwinEnv(spec, tape, episode_bars=100)
    starts = []
    for seed in (1, 1, 2):
        obs, _ = env.reset(seed=seed)
        starts.append(next(j for j in range(len(tape)) if np.array_equal(obs[:6], tape.features[j].astype(np.float32))))
    assert starts[0] == starts[1] != starts[2]
    for _ in range(99):
        assert not env.step(0)[3]
    assert env.step(0)[3]  # truncated after episode_bars steps
