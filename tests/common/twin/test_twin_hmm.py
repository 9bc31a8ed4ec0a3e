import json

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from common.twin.hmm import (
    FORWARD_FILTER,
    SINGLE_OBSERVATION,
    HmmParams,
    UnknownDecodeMethod,
    decode_states,
    log_emissions,
)


def test_log_emissions_match_the_gaussian_density(hmm3):
    cov = np.array([[0.5, 0.1, 0.0], [0.1, 0.4, 0.05], [0.0, 0.05, 0.3]])
    params = HmmParams(hmm3.startprob, hmm3.transmat, hmm3.means, np.stack([cov, cov * 2, cov * 0.5]))
    x = np.random.default_rng(0).normal(size=(20, 3))
    expected = np.column_stack([multivariate_normal(params.means[k], params.covars[k]).logpdf(x) for k in range(3)])
    assert np.allclose(log_emissions(params, x), expected, rtol=0, atol=1e-10)


def test_params_round_trip_through_json_exactly(hmm3):
    back = HmmParams.from_dict(json.loads(json.dumps(hmm3.to_dict())))
    for name in ("startprob", "transmat", "means", "covars"):
        assert np.array_equal(getattr(back, name), getattr(hmm3, name))


@pytest.mark.parametrize("change, message", [
    ({"startprob": np.array([0.5, 0.6, -0.1])}, "non-negative"),
    ({"startprob": np.array([0.5, 0.6, 0.1])}, "sum to 1"),
    ({"transmat": np.eye(3)[:2]}, "transmat"),
    ({"means": np.zeros((3, 2))}, "means"),
    ({"covars": -np.stack([np.eye(3)] * 3)}, "positive definite"),
    ({"means": np.full((3, 3), np.nan)}, "non-finite"),
])
def test_invalid_params_are_refused(hmm3, change, message):
    fields = {"startprob": hmm3.startprob, "transmat": hmm3.transmat, "means": hmm3.means, "covars": hmm3.covars}
    with pytest.raises(ValueError, match=message):
        HmmParams(**{**fields, **change})


def regime_features(n=120, seed=3):
    rng = np.random.default_rng(seed)
    centres = np.repeat([[-2.0, -0.5, -0.5], [0.0, 0.0, 0.0], [2.0, 0.5, 0.5]], n // 3, axis=0)
    return centres + rng.normal(0, 0.4, centres.shape)


def test_forward_filter_follows_the_regimes_and_is_causal(hmm3):
    x = regime_features()
    ends = np.arange(29, 120)
    states = decode_states(hmm3, FORWARD_FILTER, x, ends, 30)
    truth = ends // 40
    assert np.mean(states == truth) > 0.9
    # causal: changing the future does not change the past
    y = x.copy()
    y[80:] = -y[80:]
    assert np.array_equal(decode_states(hmm3, FORWARD_FILTER, y, ends[ends < 80], 30), states[ends < 80])


def test_one_window_and_many_windows_give_the_same_state(hmm3):
    x = regime_features(seed=5) * 1.7  # noisier: more ambiguous states
    ends = np.arange(29, 120)
    many = decode_states(hmm3, FORWARD_FILTER, x, ends, 30)
    one = [decode_states(hmm3, FORWARD_FILTER, x[e - 29:e + 1], np.array([29]), 30)[0] for e in ends]
    assert many.tolist() == one
    assert np.array_equal(decode_states(hmm3, FORWARD_FILTER, x, ends, 30), many)  # deterministic


def test_single_observation_ignores_transitions(hmm3):
    x = np.array([[1.9, 0.5, 0.5], [0.0, 0.0, 0.0], [-2.1, -0.4, -0.6]])
    states = decode_states(hmm3, SINGLE_OBSERVATION, x, np.arange(3), 1)
    assert states.tolist() == [2, 1, 0]


def test_unknown_method_is_refused(hmm3):
    with pytest.raises(UnknownDecodeMethod, match="viterbi"):
        decode_states(hmm3, "viterbi", np.zeros((3, 3)), np.array([2]), 3)
