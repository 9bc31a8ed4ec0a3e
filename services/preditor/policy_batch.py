"""The policies of many models asked at once: one batched matrix product per layer, the same actions as each
model's own ``PolicyNet.act``, bit for bit in effect (proof below), tested on real data.

Nets of one shape (observation size, hidden widths, outputs, activation) form a group whose weights are stacked:
each layer is one ``torch.baddbmm`` over the group's observations (a model without an observation this time gets
zeros, its row ignored). The batched logits differ from the one-by-one ones (another summation order), so an
action is taken from them only when that cannot matter:

Error bound. Both paths compute each layer ``z = W x + b`` in float32 with some summation order; for any order
``|fl(z) - z| <= g (|W| |x| + |b|)`` with ``g = gamma(n+1) = (n+1)u / (1-(n+1)u)``, ``u = 2^-24`` (we take
``g = 2 (n+2) u``, larger). With ``E`` a bound on ``|x_batched - x_single|`` (0 for the observation, the same
float32 for both), the two pre-activations differ by at most ``|W| (2g|x| + (1+g)E) + 2g|b|`` (x: the batched
values), which we bound by Cauchy-Schwarz per output: ``||W_j||_2 * ||2g|x| + (1+g)E||_2 + 2g|b_j|`` (the
column norms computed once, rounded up). ``tanh`` is 1-Lipschitz and each implementation is within 8 ulps of it
(16u relative; torch's kernels are within 2 ulps), plus 1e-30 absolute for subnormals; ``relu`` is exact and
1-Lipschitz. So every logit of the model's own path lies within ``D`` of the batched one.

Decision. When the batched largest logit ``top`` (index ``best``) leads every other ``v_i`` by
``D_best + D_i + 1.01 ARGMAX_MARGIN max(1, |top| + D_best)``, the model's own logits have the same largest index
leading every other by more than ``ARGMAX_MARGIN max(1, |its top|)``: ``PolicyNet.act`` returns ``best`` by its
shortcut (whose own proof is in ``policy.py``). Otherwise (a near tie, a NaN or an infinity anywhere: 4.9 % of
the demo model's observations over 2017) the model's own ``act`` decides. Either way the action is the one ``act``
gives. The bound arithmetic is float64 on float32 inputs and rounded up by a relative 1e-6 per layer; the 0.01
ARGMAX_MARGIN of slack (at least 1e-5) also covers underflow in the products (at most 1.2e-38 each, flushed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from services.preditor.policy import ARGMAX_MARGIN, PolicyNet

U = 2.0 ** -24  # float32 unit roundoff
TANH_ERROR = 16 * U  # relative error of a float32 tanh (8 ulps; torch's kernels: at most 2)
ROUND_UP = 1.0 + 1e-6  # the bound's own float64 arithmetic, covered
TINY = 1e-30  # absolute slack per activation (subnormals)
TINY_NORM = 1e-26  # TINY's share in the norm of a layer's input bound (any width up to 10^6)


def _shape(net: PolicyNet) -> tuple:
    return (net.observation_size, net.hidden_sizes, net.action.out_features, net.activation)


@dataclass
class _Layer:
    weights: torch.Tensor  # (m, in, out): the group's W^T stacked
    bias: torch.Tensor  # (m, 1, out)
    g: float  # 2 (in + 2) u
    norms: np.ndarray  # (m, out) float64: each output's weight column norm, rounded up
    bias_term: np.ndarray  # (m, out) float64: 2 g |b|


class _Group:
    """The nets of one shape, stacked."""

    def __init__(self, nets: list[PolicyNet]) -> None:
        self.nets = nets
        self.tanh = nets[0].activation == "tanh"
        self.size = nets[0].observation_size
        # the next layer's input bound E from this layer's output spread S: E = (S (1 + 2t) + 2t |x|) ROUND_UP + TINY
        # (t: TANH_ERROR, 0 for relu; TINY enters through TINY_NORM)
        t = 2 * TANH_ERROR if self.tanh else 0.0
        self.spread_e = (1.0 + t) * ROUND_UP
        self.spread_x = t * ROUND_UP
        self.layers: list[_Layer] = []
        self.fallbacks = 0  # actions the batched logits could not decide (the net's own path did)
        with torch.inference_mode():
            for i in range(len(nets[0]._weights)):
                w = torch.stack([net._weights[i][0].detach() for net in nets])  # (m, out, in)
                b = torch.stack([net._weights[i][1].detach() for net in nets])  # (m, out)
                n = w.shape[2]
                g = 2.0 * (n + 2) * U
                w64 = w.double().numpy()
                norms = np.sqrt((w64 * w64).sum(axis=2)) * ROUND_UP
                self.layers.append(_Layer(w.transpose(1, 2).contiguous(), b[:, None, :].contiguous(), g, norms,
                                          2.0 * g * np.abs(b.double().numpy()) * ROUND_UP))

    def actions(self, slots: list[int], observations: list[np.ndarray]) -> list[int]:
        """The nets from the lowest slot asked to the highest are computed (views of the stacked weights)."""
        lo, hi = min(slots), max(slots) + 1
        slots = [k - lo for k in slots]
        x = np.zeros((hi - lo, 1, self.size), dtype=np.float32)
        for k, obs in zip(slots, observations, strict=True):
            x[k, 0] = obs
        with torch.inference_mode():
            h = torch.from_numpy(x)
            xa = np.abs(x[:, 0, :], dtype=np.float64)  # |x| of the layer's input
            spread = None  # the bound on |x_batched - x_single| of the layer's input (None: 0, the observation)
            last = len(self.layers) - 1
            for i, layer in enumerate(self.layers):
                g = layer.g
                if spread is None:
                    v = (2.0 * g) * xa
                else:  # v = 2g|x| + (1+g)E
                    v = (2.0 * g + (1.0 + g) * self.spread_x) * xa + ((1.0 + g) * self.spread_e) * spread
                spread = (np.sqrt(np.einsum("ij,ij->i", v, v)) * ROUND_UP + TINY_NORM)[:, None] * layer.norms[lo:hi]
                spread += layer.bias_term[lo:hi]
                z = torch.baddbmm(layer.bias[lo:hi], h, layer.weights[lo:hi])
                if i == last:
                    break
                h = torch.tanh(z) if self.tanh else torch.relu(z)
                xa = np.abs(h.numpy()[:, 0, :], dtype=np.float64)
            logits = z[:, 0, :].numpy().astype(np.float64)  # exact
        # per row, the rule of the module's docstring in float64, as it reads on Python floats (the same operations):
        # best = the first largest logit (a NaN anywhere makes the row fall back, whichever index is taken), its
        # lead over every other v by D_best + D_i + 1.01 ARGMAX_MARGIN max(1, |top| + D_best)
        rows = np.arange(len(logits))
        best = np.argmax(logits, axis=1)
        top, d_best = logits[rows, best], spread[rows, best]
        with np.errstate(all="ignore"):  # infinities and NaN as on Python floats, without warnings
            limit = top - d_best - 1.01 * ARGMAX_MARGIN * np.maximum(1.0, np.abs(top) + d_best)
            lead = logits + spread < limit[:, None]
        lead[rows, best] = True
        decided = (np.isfinite(limit) & np.isfinite(spread).all(axis=1) & lead.all(axis=1)).tolist()
        best = best.tolist()
        out = []
        for k, obs in zip(slots, observations, strict=True):
            if decided[k]:
                out.append(best[k])
            else:  # a near tie, or a value not finite: the model's own path
                self.fallbacks += 1
                out.append(self.nets[lo + k].act(obs))
        return out


class PolicyBatch:
    """The policies of ``nets`` (index i: ``nets[i]``), asked together: ``actions`` gives what each net's ``act``
    gives."""

    def __init__(self, nets: Sequence[PolicyNet]) -> None:
        self.nets = list(nets)
        groups: dict[tuple, list[int]] = {}
        for i, net in enumerate(self.nets):
            groups.setdefault(_shape(net), []).append(i)
        self._where: list[tuple[_Group, int]] = [None] * len(self.nets)  # type: ignore[list-item]
        for members in groups.values():
            group = _Group([self.nets[i] for i in members])
            for slot, i in enumerate(members):
                self._where[i] = (group, slot)

    @property
    def fallbacks(self) -> int:
        """Actions asked in a batch that the nets' own paths decided (near ties)."""
        return sum(g.fallbacks for g in {id(g): g for g, _ in self._where}.values())

    def actions(self, asked: Sequence[tuple[int, np.ndarray]]) -> list[int]:
        """The action of net i for each (i, observation) (float32, its net's observation size), in order; one net
        at most once."""
        by_group: dict[int, tuple[_Group, list[int], list[int], list[np.ndarray]]] = {}
        for j, (i, obs) in enumerate(asked):
            group, slot = self._where[i]
            entry = by_group.setdefault(id(group), (group, [], [], []))
            entry[1].append(j)
            entry[2].append(slot)
            entry[3].append(obs)
        out = [0] * len(asked)
        for group, positions, slots, observations in by_group.values():
            if len(slots) != len(set(slots)):
                raise ValueError("a net asked twice in one batch")
            if len(slots) == 1:
                actions = [group.nets[slots[0]].act(observations[0])]
            else:
                actions = group.actions(slots, observations)
            for j, a in zip(positions, actions, strict=True):
                out[j] = a
        return out
