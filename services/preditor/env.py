"""The trainer's gymnasium environment, built from the twin's own parts.

The market part of each observation comes from ``market_series`` (bit-identical to the twin's per-window
``market_view``); the position part, the action and the costs go through the twin's ``observe`` and
``apply_action``. So an agent trained here sees exactly the observations the preditor will build live.

Timing, as in the twin: the observation at bar t carries the position after bar t-1 (PnL marked at close t-1);
the action is applied at close t. Reward: the equity change from just before the action at close t to close t+1
(costs of the action plus the next move of the new position), divided by ``reward_scale`` USD.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from common.twin.actions import N_ACTIONS, action_from_index
from common.twin.bars import CLOSE, TIME
from common.twin.position import FLAT, floating_pnl
from common.twin.twin import MarketView, TwinSpec, apply_action, market_series, observe


@dataclass(frozen=True)
class MarketTape:
    """Precomputed market views of consecutive decision bars: row j of each array is one bar."""

    features: np.ndarray  # (n, 6)
    states: np.ndarray  # (n,)
    times: np.ndarray  # (n,) int
    closes: np.ndarray  # (n,)

    def __len__(self) -> int:
        return len(self.states)

    def view(self, j: int) -> MarketView:
        return MarketView(self.features[j], int(self.states[j]))

    def slice(self, start: int, stop: int) -> MarketTape:
        return MarketTape(self.features[start:stop], self.states[start:stop], self.times[start:stop],
                          self.closes[start:stop])


def market_tape(spec: TwinSpec, bars: np.ndarray) -> MarketTape:
    """Views of bars window-1 .. n-1 of ``bars``: row j is bar ``window - 1 + j``."""
    features, states = market_series(spec, bars)
    decided = bars[spec.window - 1:]
    return MarketTape(features, states, decided[:, TIME].astype(np.int64), decided[:, CLOSE].copy())


class TwinEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, spec: TwinSpec, tape: MarketTape, episode_bars: int | None = None,
                 reward_scale: float = 10.0) -> None:
        if len(tape) < 2:
            raise ValueError("the tape needs at least 2 bars")
        self.spec, self.tape, self.reward_scale = spec, tape, reward_scale
        self.episode_bars = min(episode_bars or len(tape), len(tape))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (spec.observation_size,), np.float32)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self._i = self._end = 0
        self._position = FLAT
        self._realized = 0.0

    @property
    def equity_change(self) -> float:
        """Realized plus floating PnL since the episode began (USD)."""
        return self._realized + self._position.floating_pnl

    def _obs(self) -> np.ndarray:
        return observe(self.spec, self.tape.view(self._i), self._position)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        start = 0
        if self.episode_bars < len(self.tape):
            start = int(self.np_random.integers(0, len(self.tape) - self.episode_bars + 1))
        self._i, self._end = start, start + self.episode_bars
        self._position, self._realized = FLAT, 0.0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        costs, i = self.spec.costs, self._i
        close = float(self.tape.closes[i])
        before = self._realized + floating_pnl(self._position, close, costs)
        update = apply_action(self.spec, self._position, action_from_index(action), int(self.tape.times[i]), close)
        self._position, self._realized = update.position, self._realized + update.balance_change
        self._i = i + 1
        truncated = self._i >= self._end
        next_close = close if truncated else float(self.tape.closes[self._i])
        after = self._realized + floating_pnl(self._position, next_close, costs)
        obs = self._obs() if not truncated else observe(self.spec, self.tape.view(i), self._position)
        return obs, (after - before) / self.reward_scale, False, truncated, {}
