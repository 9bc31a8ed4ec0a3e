"""The PPO actor as a plain torch MLP, rebuilt from exported weights (no stable-baselines3 at run time).

It reproduces SB3's ``PPO.predict(obs, deterministic=True)`` for an ``MlpPolicy`` with separate actor and critic
networks: hidden Linear+activation layers, then ``action_net``, then the mode of the categorical distribution
(argmax of the softmax of the normalised logits, computed the way torch's ``Categorical`` does so that near-ties
resolve identically). Runs in eval mode under ``torch.inference_mode``.

``forward`` calls the functions the layer modules would (``F.linear``, ``torch.tanh`` / ``torch.relu``) directly:
the same kernels on the same tensors, so the same bits, without the module calls and attribute look-ups (tens of
microseconds per batch-1 observation).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}
ACTIVATION_FUNCTIONS = {"tanh": torch.tanh, "relu": torch.relu}  # what nn.Tanh / nn.ReLU(inplace=False) call
_HIDDEN_KEY = re.compile(r"^hidden\.(\d+)\.weight$")
ARGMAX_MARGIN = 1e-3  # logits closer than this (relative past 1) to the largest take the distribution's path


def mode_of(logits: torch.Tensor) -> int:
    """The mode of ``Categorical(logits=logits)`` as SB3's deterministic predict takes it: argmax of the softmax
    of the normalised logits (one row)."""
    normalised = logits - logits.logsumexp(dim=-1, keepdim=True)
    return int(torch.softmax(normalised, dim=-1).argmax(dim=-1).item())


class PolicyNet(nn.Module):
    def __init__(self, observation_size: int, hidden: Sequence[int], n_actions: int = 7,
                 activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        layers: list[nn.Module] = []
        size = observation_size
        for width in hidden:
            layers += [nn.Linear(size, width), ACTIVATIONS[activation]()]
            size = width
        self.hidden = nn.Sequential(*layers)
        self.action = nn.Linear(size, n_actions)
        self.observation_size = observation_size
        self.hidden_sizes = tuple(hidden)
        self.activation = activation
        self._activation_fn = ACTIVATION_FUNCTIONS[activation]
        self._weights = self._layer_weights()
        self.eval()

    def _layer_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight, bias) of each Linear, the action layer last. ``load_state_dict`` copies into these same
        tensors; ``from_state_dict`` takes them again after loading all the same."""
        linears = [m for m in self.hidden if isinstance(m, nn.Linear)] + [self.action]
        return [(m.weight, m.bias) for m in linears]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``self.action(self.hidden(obs))``, calling the layers' functions directly (same kernels, same bits)."""
        *hidden, (action_w, action_b) = self._weights
        x = obs
        for w, b in hidden:
            x = self._activation_fn(F.linear(x, w, b))
        return F.linear(x, action_w, action_b)

    def act(self, obs: np.ndarray) -> int:
        """Deterministic action index for one observation (float32, shape (observation_size,)): the index of
        the largest logit when it leads every other by ``ARGMAX_MARGIN`` (relative to its size past 1), else
        ``mode_of`` (the distribution's own computation).

        Why the shortcut is exact: ``mode_of`` subtracts one scalar (the log-sum-exp) from every logit, then
        softmax subtracts one scalar (the max), exponentiates and divides by one scalar, each rounding monotonic
        for a shared operand; so the largest logit keeps the largest probability. Its argmax takes the first
        index holding that value, which is another index only when their probabilities round to the same
        float32: that needs logits within a few ulps, far inside the margin. The shortcut skips ~0.1 ms of
        small torch calls per observation (most of the policy's time)."""
        with torch.inference_mode():
            logits = self.forward(torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(1, -1))
            row = logits[0].tolist()
            best = max(range(len(row)), key=row.__getitem__)
            top = row[best]
            margin = ARGMAX_MARGIN * max(1.0, abs(top))
            if math.isfinite(top) and all(v < top - margin for i, v in enumerate(row) if i != best):
                return best
            return mode_of(logits)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], activation: str = "tanh") -> PolicyNet:
        """Rebuild the net from its exported weights; the layer sizes come from the weight shapes."""
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError("policy weights must be a dict of tensors")
        indices = sorted(int(m.group(1)) for k in state if (m := _HIDDEN_KEY.match(k)))
        if "action.weight" not in state or indices != [2 * i for i in range(len(indices))]:
            raise ValueError("policy weights lack hidden.<i>.weight / action.weight entries")
        hidden = [state[f"hidden.{i}.weight"].shape[0] for i in indices]
        observation_size = (state["hidden.0.weight"] if indices else state["action.weight"]).shape[1]
        net = cls(observation_size, hidden, state["action.weight"].shape[0], activation)
        net.load_state_dict(state, strict=True)
        net._weights = net._layer_weights()
        net.eval()
        return net


def actor_state_from_sb3(sb3_policy_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our weight names from an SB3 ActorCriticPolicy state dict (actor part only, copied, float32)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sb3_policy_state.items():
        if key.startswith("mlp_extractor.policy_net."):
            out["hidden." + key.removeprefix("mlp_extractor.policy_net.")] = value.detach().clone().float()
        elif key.startswith("action_net."):
            out["action." + key.removeprefix("action_net.")] = value.detach().clone().float()
    return out
