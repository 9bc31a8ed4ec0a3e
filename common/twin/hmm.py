"""Gaussian HMM parameters and causal state decoding, numpy only (no hmmlearn, no pickle).

Decode methods (the model metadata names one; an unknown name is refused):

- ``forward_filter``: for bar t, run the HMM forward filter from ``startprob`` over the HMM features of the bars of
  the window ending at t (from the window's first bar whose features are all defined) and take the most probable
  state at t. Causal, uses the transition matrix, and a pure function of the window: the trainer (all bars at
  once) and the preditor (one window) run the same elementwise float operations in the same order.
- ``single_observation``: argmax of log startprob + log emission of bar t alone. This is what the legacy
  reference did live (``hmm.predict`` on one row); kept only to run trusted legacy models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FORWARD_FILTER = "forward_filter"
SINGLE_OBSERVATION = "single_observation"
DECODE_METHODS = (FORWARD_FILTER, SINGLE_OBSERVATION)


class UnknownDecodeMethod(ValueError):
    pass


@dataclass(frozen=True)
class HmmParams:
    """Full-covariance Gaussian HMM: startprob (K,), transmat (K, K), means (K, D), covars (K, D, D)."""

    startprob: np.ndarray
    transmat: np.ndarray
    means: np.ndarray
    covars: np.ndarray

    def __post_init__(self) -> None:
        k = len(self.startprob)
        if self.startprob.shape != (k,) or self.transmat.shape != (k, k):
            raise ValueError("startprob must be (K,) and transmat (K, K)")
        d = self.means.shape[1] if self.means.ndim == 2 else -1
        if self.means.shape != (k, d) or self.covars.shape != (k, d, d):
            raise ValueError("means must be (K, D) and covars (K, D, D)")
        for name in ("startprob", "transmat", "means", "covars"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"{name} has non-finite values")
        if self.startprob.min() < 0 or self.transmat.min() < 0:
            raise ValueError("startprob and transmat must be non-negative")
        if abs(self.startprob.sum() - 1) > 1e-6 or np.any(np.abs(self.transmat.sum(axis=1) - 1) > 1e-6):
            raise ValueError("startprob and transmat rows must sum to 1")
        try:
            np.linalg.cholesky(self.covars)
        except np.linalg.LinAlgError:
            raise ValueError("covars must be symmetric positive definite") from None

    @property
    def n_states(self) -> int:
        return len(self.startprob)

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    def to_dict(self) -> dict[str, object]:
        return {"covariance_type": "full", "startprob": self.startprob.tolist(),
                "transmat": self.transmat.tolist(), "means": self.means.tolist(), "covars": self.covars.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> HmmParams:
        if d.get("covariance_type", "full") != "full":
            raise ValueError("only full covariance matrices are stored")
        return cls(*(np.asarray(d[k], dtype=np.float64) for k in ("startprob", "transmat", "means", "covars")))


def log_emissions(params: HmmParams, x: np.ndarray) -> np.ndarray:
    """(M, K) Gaussian log densities of the rows of ``x`` (M, D) under each state, elementwise only."""
    chol = np.linalg.cholesky(params.covars)
    d = params.n_features
    out = np.empty((len(x), params.n_states))
    for k in range(params.n_states):
        z: list[np.ndarray] = []
        maha = np.zeros(len(x))
        for i in range(d):
            zi = x[:, i] - params.means[k, i]
            for j in range(i):
                zi = zi - chol[k, i, j] * z[j]
            zi = zi / chol[k, i, i]
            z.append(zi)
            maha = maha + zi * zi
        log_det = 2.0 * sum(math.log(chol[k, i, i]) for i in range(d))
        out[:, k] = -0.5 * (maha + (log_det + d * math.log(2 * math.pi)))
    return out


def _normalise(alpha: list) -> list:
    total = alpha[0]
    for a in alpha[1:]:
        total = total + a
    safe = np.where(total > 0, total, 1.0) if isinstance(total, np.ndarray) else (total if total > 0 else 1.0)
    return [a / safe for a in alpha]


def _forward_filter(startprob: list[float], transmat: list[list[float]], emissions: list) -> list:
    """Filtered state probabilities after the last step; ``emissions[step][k]`` is a float or a column.

    Python floats (one window, fast) and numpy columns (many windows) run the same IEEE-754 double operations
    in the same order, so both give the same bits.
    """
    alpha = _normalise([p * e for p, e in zip(startprob, emissions[0], strict=True)])
    for e in emissions[1:]:
        predicted = [alpha[0] * t for t in transmat[0]]
        for a_i, row in zip(alpha[1:], transmat[1:], strict=True):
            predicted = [p + a_i * t for p, t in zip(predicted, row, strict=True)]
        alpha = _normalise([p * b for p, b in zip(predicted, e, strict=True)])
    return alpha


def decode_states(params: HmmParams, method: str, features: np.ndarray, ends: np.ndarray,
                  lookback: int) -> np.ndarray:
    """The HMM state at each row index in ``ends`` of ``features`` (M, D), from rows end-lookback+1 .. end."""
    if method not in DECODE_METHODS:
        raise UnknownDecodeMethod(f"unknown HMM decode method {method!r}; known: {', '.join(DECODE_METHODS)}")
    ends = np.asarray(ends, dtype=np.int64)
    log_b = log_emissions(params, features)
    if method == SINGLE_OBSERVATION:
        with np.errstate(divide="ignore"):
            return np.argmax(np.log(params.startprob) + log_b[ends], axis=1)
    first = ends - lookback + 1
    if len(ends) and first.min() < 0:
        raise ValueError("every lookback must lie inside the features")
    peak = log_b[:, 0]
    for k in range(1, params.n_states):
        peak = np.maximum(peak, log_b[:, k])
    b = np.exp(log_b - peak[:, None])  # per-row scaling: the filter normalises every step anyway
    if len(ends) == 1:
        emissions: list = b[first[0]:ends[0] + 1].tolist()
    else:
        emissions = [[b[first + step, k] for k in range(params.n_states)] for step in range(lookback)]
    alpha = _forward_filter(params.startprob.tolist(), params.transmat.tolist(), emissions)
    return np.atleast_1d(np.argmax(np.stack([np.asarray(a, dtype=np.float64) for a in alpha]), axis=0))
