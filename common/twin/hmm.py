"""Gaussian HMM parameters and causal state decoding, numpy only (no hmmlearn, no pickle).

Decode methods (the model metadata names one; an unknown name is refused):

- ``forward_filter``: for bar t, run the HMM forward filter from ``startprob`` over the HMM features of the bars of
  the window ending at t (from the window's first bar whose features are all defined) and take the most probable
  state at t. Causal, uses the transition matrix, and a pure function of the window: the trainer (all bars at
  once) and the preditor (one window) run the same float operations in the same order. The filter's loop is C
  (``cloops.forward_filter``, the same loop for one window and many); ``forward_filter_reference`` is its Python
  specification, which the tests hold it to bit for bit.
- ``single_observation``: argmax of log startprob + log emission of bar t alone. This is what the legacy
  reference did live (``hmm.predict`` on one row); kept only to run trusted legacy models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from common.twin import cloops

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

    @cached_property
    def gaussians(self) -> Gaussians:
        return Gaussians.of(self)

    @cached_property
    def contiguous(self) -> tuple[np.ndarray, np.ndarray]:
        """startprob and transmat as C-contiguous float64 (what the C filter reads)."""
        return (np.ascontiguousarray(self.startprob, dtype=np.float64),
                np.ascontiguousarray(self.transmat, dtype=np.float64))

    @cached_property
    def log_startprob(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.startprob)

    def to_dict(self) -> dict[str, object]:
        return {"covariance_type": "full", "startprob": self.startprob.tolist(),
                "transmat": self.transmat.tolist(), "means": self.means.tolist(), "covars": self.covars.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> HmmParams:
        if d.get("covariance_type", "full") != "full":
            raise ValueError("only full covariance matrices are stored")
        return cls(*(np.asarray(d[k], dtype=np.float64) for k in ("startprob", "transmat", "means", "covars")))


@dataclass(frozen=True, eq=False)
class Gaussians:
    """Per-state constants of the emission densities, computed once per ``HmmParams`` and shared by the many-rows
    (numpy) and the one-row (Python floats) paths: ``chol`` (K, D, D) and ``offset[k]`` = log det + D log 2 pi."""

    chol: np.ndarray
    offset: tuple[float, ...]
    means_rows: tuple[tuple[float, ...], ...]
    chol_rows: tuple[tuple[tuple[float, ...], ...], ...]

    @classmethod
    def of(cls, params: HmmParams) -> Gaussians:
        chol = np.linalg.cholesky(params.covars)
        d = params.n_features
        offset = []
        for k in range(params.n_states):
            log_det = 2.0 * sum(math.log(chol[k, i, i]) for i in range(d))
            offset.append(log_det + d * math.log(2 * math.pi))
        return cls(chol, tuple(offset), tuple(tuple(m) for m in params.means.tolist()),
                   tuple(tuple(tuple(r) for r in c) for c in chol.tolist()))


def log_emissions(params: HmmParams, x: np.ndarray) -> np.ndarray:
    """(M, K) Gaussian log densities of the rows of ``x`` (M, D) under each state, elementwise only."""
    g = params.gaussians
    d = params.n_features
    out = np.empty((len(x), params.n_states))
    for k in range(params.n_states):
        z: list[np.ndarray] = []
        maha = np.zeros(len(x))
        for i in range(d):
            zi = x[:, i] - params.means[k, i]
            for j in range(i):
                zi = zi - g.chol[k, i, j] * z[j]
            zi = zi / g.chol[k, i, i]
            z.append(zi)
            maha = maha + zi * zi
        out[:, k] = -0.5 * (maha + g.offset[k])
    return out


def log_emission_row(params: HmmParams, x: Sequence[float]) -> list[float]:
    """``log_emissions`` of one row on Python floats: the same operations in the same order, the same bits."""
    g = params.gaussians
    out = []
    for mean, chol, offset in zip(g.means_rows, g.chol_rows, g.offset, strict=True):
        z: list[float] = []
        maha = 0.0
        for i, (xi, mi, ci) in enumerate(zip(x, mean, chol, strict=True)):
            zi = xi - mi
            for j in range(i):
                zi = zi - ci[j] * z[j]
            zi = zi / ci[i]
            z.append(zi)
            maha = maha + zi * zi
        out.append(-0.5 * (maha + offset))
    return out


def scaled_emissions(log_b: np.ndarray) -> np.ndarray:
    """exp(log_b - row max): per-row scaling, which the filter's normalisation at every step cancels."""
    peak = log_b[:, 0]
    for k in range(1, log_b.shape[1]):
        peak = np.maximum(peak, log_b[:, k])
    return np.exp(log_b - peak[:, None])


def scaled_emission_row(log_row: Sequence[float]) -> np.ndarray:
    """``scaled_emissions`` of one row: max and differences on Python floats (np.maximum's NaN rule), exp by
    numpy as for many rows (libm's exp may round differently)."""
    peak = log_row[0]
    for v in log_row[1:]:
        peak = peak if (peak >= v or peak != peak) else v
    return np.exp(np.array([v - peak for v in log_row]))


def _normalise(alpha: list) -> list:
    total = alpha[0]
    for a in alpha[1:]:
        total = total + a
    safe = np.where(total > 0, total, 1.0) if isinstance(total, np.ndarray) else (total if total > 0 else 1.0)
    return [a / safe for a in alpha]


def forward_filter_reference(startprob: list[float], transmat: list[list[float]], emissions: list) -> list:
    """The forward filter's specification: the filtered state probabilities after the last step.

    ``emissions[step][k]`` is a float or a column. Python floats (one window) and numpy columns (many windows)
    run the same IEEE-754 double operations in the same order, so both give the same bits, and so does the C
    loop (``forward_filter``) that the preditor and the trainer run.
    """
    alpha = _normalise([p * e for p, e in zip(startprob, emissions[0], strict=True)])
    for e in emissions[1:]:
        predicted = [alpha[0] * t for t in transmat[0]]
        for a_i, row in zip(alpha[1:], transmat[1:], strict=True):
            predicted = [p + a_i * t for p, t in zip(predicted, row, strict=True)]
        alpha = _normalise([p * b for p, b in zip(predicted, e, strict=True)])
    return alpha


def forward_filter(params: HmmParams, b: np.ndarray, ends: np.ndarray, lookback: int) -> np.ndarray:
    """(len(ends), K): filtered probabilities after row e from rows e-lookback+1 .. e of ``b`` (M, K), in C."""
    startprob, transmat = params.contiguous
    out = np.empty((len(ends), params.n_states))
    cloops.forward_filter(startprob, transmat, np.ascontiguousarray(b, dtype=np.float64),
                          np.ascontiguousarray(ends, dtype=np.int64), lookback, out)
    return out


def filter_states(params: HmmParams, b: np.ndarray, ends: np.ndarray, lookback: int) -> np.ndarray:
    """The most probable state after each end (the first on a tie, as the reference's numpy argmax)."""
    return np.argmax(forward_filter(params, b, ends, lookback), axis=1)


def single_observation_states(params: HmmParams, log_b: np.ndarray) -> np.ndarray:
    """argmax of log startprob + log emission, per row of ``log_b`` (M, K)."""
    return np.argmax(params.log_startprob + log_b, axis=1)


def decode_states(params: HmmParams, method: str, features: np.ndarray, ends: np.ndarray,
                  lookback: int) -> np.ndarray:
    """The HMM state at each row index in ``ends`` of ``features`` (M, D), from rows end-lookback+1 .. end."""
    if method not in DECODE_METHODS:
        raise UnknownDecodeMethod(f"unknown HMM decode method {method!r}; known: {', '.join(DECODE_METHODS)}")
    ends = np.asarray(ends, dtype=np.int64)
    log_b = log_emissions(params, features)
    if method == SINGLE_OBSERVATION:
        return single_observation_states(params, log_b[ends])
    first = ends - lookback + 1
    if len(ends) and first.min() < 0:
        raise ValueError("every lookback must lie inside the features")
    return filter_states(params, scaled_emissions(log_b), ends, lookback)
