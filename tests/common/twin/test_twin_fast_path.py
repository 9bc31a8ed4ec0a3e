"""The live step's fast path gives the same bits as the reference and as the trainer's path.

- the C loops (``cloops``: forward filter, trend EMA) equal their Python specifications (``forward_filter_reference``
  on Python floats and on numpy columns, ``trend_ema_reference``) on random parameters and real data;
- the last bar's features on Python floats (``last_bar``) and one emission row (``log_emission_row``,
  ``scaled_emission_row``) equal the numpy functions the trainer runs, on real and random bars, short windows and
  degenerate bars included;
- the incremental twin (``step`` keeping each bar's emission row) equals ``market_series`` bar for bar, also after
  a restart from a snapshot (rows rebuilt from the bars).

Equality is of the float64 bits (``tobytes``), not approximate.
"""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from common.twin import cloops
from common.twin.bars import bar_at, load_bars_csv
from common.twin.features import (
    HmmFeatureParams,
    RlFeatureParams,
    hmm_features,
    market_features,
    trend_ema,
    trend_ema_reference,
)
from common.twin.hmm import (
    FORWARD_FILTER,
    SINGLE_OBSERVATION,
    HmmParams,
    forward_filter,
    forward_filter_reference,
    log_emission_row,
    log_emissions,
    scaled_emission_row,
    scaled_emissions,
)
from common.twin.last_bar import last_hmm_row, last_market_row
from common.twin.twin import (
    TwinSpec,
    TwinState,
    _view,
    emission_rows,
    initial_state,
    market_series,
    next_emission_rows,
    run,
    step,
)


def same_bits(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.fixture(scope="module")
def eurusd() -> np.ndarray:
    return load_bars_csv("data/EURUSD_H1_2017.csv")


def random_hmm(rng: np.random.Generator, k: int, sharp: float = 1.0) -> HmmParams:
    start = rng.dirichlet(np.ones(k))
    trans = rng.dirichlet(np.ones(k) * sharp, size=k)
    means = rng.normal(0, 1.5, (k, 3))
    a = rng.normal(0, 0.6, (k, 3, 3))
    covars = a @ a.transpose(0, 2, 1) + np.eye(3) * rng.uniform(0.05, 1.0, (k, 1, 1))
    return HmmParams(start, trans, means, covars)


def demo_hmm() -> HmmParams:
    from services.preditor.model_file import load_model

    return load_model("models/EURUSD_H1.zip").spec.hmm


# ---- the C forward filter -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed, k, lookback", [(0, 2, 1), (1, 3, 30), (2, 5, 331), (3, 7, 120), (4, 4, 2)])
def test_c_filter_equals_the_reference_on_one_window_and_on_many(seed, k, lookback):
    rng = np.random.default_rng(seed)
    params = random_hmm(rng, k, sharp=rng.uniform(0.2, 5))
    b = rng.uniform(0, 1, (lookback + 60, k)) ** rng.uniform(1, 30, (1, k))  # near-zero columns too
    b[rng.uniform(size=b.shape) < 0.05] = 0.0
    ends = np.arange(lookback - 1, len(b))
    c = forward_filter(params, b, ends, lookback)
    sp, tm = params.startprob.tolist(), params.transmat.tolist()
    for i, e in enumerate(ends[::7]):
        one = forward_filter_reference(sp, tm, b[e - lookback + 1:e + 1].tolist())  # Python floats
        assert same_bits(c[7 * i], one)
    columns = [[b[ends - lookback + 1 + s, j] for j in range(k)] for s in range(lookback)]
    many = forward_filter_reference(sp, tm, columns)  # numpy columns
    assert same_bits(c, np.stack(many, axis=1))


def test_c_filter_equals_the_reference_on_the_demo_model_and_real_bars(eurusd):
    params = demo_hmm()
    p = HmmFeatureParams()
    rows = np.arange(p.first_full_row, 2000)
    b = scaled_emissions(log_emissions(params, hmm_features(eurusd, rows, np.zeros_like(rows), p)))
    lookback = 350 - p.first_full_row
    ends = np.arange(lookback - 1, len(b), 13)
    c = forward_filter(params, b, ends, lookback)
    sp, tm = params.startprob.tolist(), params.transmat.tolist()
    for i, e in enumerate(ends):
        assert same_bits(c[i], forward_filter_reference(sp, tm, b[e - lookback + 1:e + 1].tolist()))


def test_c_filter_all_zero_emissions_keep_zero_probabilities():
    params = random_hmm(np.random.default_rng(9), 3)
    b = np.zeros((5, 3))
    b[0] = 1.0
    out = forward_filter(params, b, np.array([4]), 5)
    assert same_bits(out[0], forward_filter_reference(params.startprob.tolist(), params.transmat.tolist(),
                                                      b.tolist()))


def test_c_loops_refuse_bad_arguments():
    params = random_hmm(np.random.default_rng(0), 3)
    sp, tm = params.contiguous
    b = np.ones((10, 3))
    out = np.empty((1, 3))
    with pytest.raises(ValueError, match="inside"):
        cloops.forward_filter(sp, tm, b, np.array([3]), 5, out)
    with pytest.raises(ValueError, match="inside"):
        cloops.forward_filter(sp, tm, b, np.array([10]), 5, out)
    with pytest.raises(ValueError, match="shapes"):
        cloops.forward_filter(sp, tm, np.ones((10, 2)), np.array([9]), 5, out)
    with pytest.raises(TypeError, match="float64"):
        cloops.forward_filter(sp, tm, b.astype(np.float32), np.array([9]), 5, out)
    with pytest.raises(TypeError, match="contiguous"):
        cloops.forward_filter(sp, tm, np.ones((10, 6))[:, ::2], np.array([9]), 5, out)
    with pytest.raises(ValueError, match="inside"):
        cloops.ema(np.ones(10), np.array([5]), 6, 0.1, np.empty(1))


# ---- the C trend EMA ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window, period", [(350, 200), (60, 20), (2, 5), (1, 3)])
def test_c_ema_equals_the_reference(eurusd, random_walk_bars, window, period):
    for bars in (eurusd[:1500], random_walk_bars(800, seed=window)):
        ends = np.arange(window - 1, len(bars))
        c = trend_ema(bars, ends, window, period)
        assert same_bits(c, trend_ema_reference(bars, ends, window, period))  # numpy columns
        for e in ends[::97]:
            assert same_bits(trend_ema(bars, np.array([e]), window, period),
                             trend_ema_reference(bars, np.array([e]), window, period))  # Python floats


# ---- the last bar's features on Python floats -------------------------------------------------------------------


def assert_last_bar_features_equal(bars: np.ndarray, window: int, hp: HmmFeatureParams, rp: RlFeatureParams):
    for end in range(window - 1, len(bars)):
        w = bars[end - window + 1:end + 1]
        with np.errstate(all="ignore"):
            market = market_features(w, np.array([window - 1]), window, rp)[0]
            hmm = hmm_features(w, np.array([window - 1]), np.array([0]), hp)[0]
        assert same_bits(last_market_row(w, rp), market), (window, end)
        assert same_bits(last_hmm_row(w, hp), hmm), (window, end)


def test_last_bar_features_equal_numpy_on_every_real_window(eurusd):
    assert_last_bar_features_equal(eurusd[:1400], 350, HmmFeatureParams(), RlFeatureParams())


@pytest.mark.parametrize("window", [1, 2, 5, 11, 12, 13, 14, 15, 19, 20, 21, 22, 40])
def test_last_bar_features_equal_numpy_on_short_windows(random_walk_bars, window):
    bars = random_walk_bars(120, seed=window)
    assert_last_bar_features_equal(bars, window, HmmFeatureParams(), RlFeatureParams())


def test_last_bar_features_equal_numpy_with_other_periods(random_walk_bars):
    bars = random_walk_bars(200, seed=3)
    hp = HmmFeatureParams(momentum_period=5, consistency_period=9, range_period=30)
    rp = RlFeatureParams(roc_period=3, atr_period=25, ema_period=7, range_period=8, volume_ma_period=31)
    for window in (4, 24, 26, 29, 30, 31, 32, 60):
        assert_last_bar_features_equal(bars, window, hp, rp)


def test_last_bar_features_equal_numpy_on_degenerate_bars(make_bars):
    rng = np.random.default_rng(5)
    close = np.round(1.1 + np.cumsum(rng.choice([-0.001, 0.0, 0.001], 150)), 3)  # ties, flat runs
    close[40:75] = 1.1  # a flat stretch: zero spans, zero true ranges, zero returns
    volume = rng.choice([0.0, 0.0, 5.0], 150)  # zero volume averages
    bars = make_bars(close, close, close, volume)
    assert_last_bar_features_equal(bars, 30, HmmFeatureParams(), RlFeatureParams())
    zero_price = bars.copy()
    zero_price[60, 1:5] = 0.0  # a (bad) zero price: numpy's inf/nan, not a Python ZeroDivisionError
    zero_price[90, 5] = np.nan
    assert_last_bar_features_equal(zero_price, 30, HmmFeatureParams(), RlFeatureParams())


def test_one_emission_row_equals_many(eurusd):
    rng = np.random.default_rng(2)
    for params in (demo_hmm(), random_hmm(rng, 3), random_hmm(rng, 6)):
        x = np.concatenate([rng.normal(0, 2, (300, 3)), rng.normal(0, 60, (20, 3)), np.zeros((1, 3))])
        log_b = log_emissions(params, x)
        b = scaled_emissions(log_b)
        for i, row in enumerate(x.tolist()):
            log_row = log_emission_row(params, row)
            assert same_bits(log_row, log_b[i])
            assert same_bits(scaled_emission_row(log_row), b[i])


# ---- the incremental twin equals the trainer's path --------------------------------------------------------------


@pytest.mark.parametrize("method", [FORWARD_FILTER, SINGLE_OBSERVATION])
def test_incremental_views_equal_market_series_on_every_bar(eurusd, method):
    spec = TwinSpec(demo_hmm(), method)
    bars = eurusd[:1300]
    features, states = market_series(spec, bars)
    state = initial_state()
    for i in range(len(bars)):
        window = np.concatenate([state.bars, bars[i:i + 1]])[-spec.window:]
        rows = next_emission_rows(spec, state, window)
        if len(window) == spec.window:
            view = _view(spec, window, rows)
            j = i - spec.window + 1
            assert same_bits(view.features, features[j]) and view.hmm_state == states[j], i
        state = TwinState(window, emission_rows=rows)
    assert method == SINGLE_OBSERVATION or state.emission_rows is not None


def test_incremental_rows_equal_rows_rebuilt_from_the_window(eurusd):
    spec = TwinSpec(demo_hmm(), FORWARD_FILTER)
    state, _ = run(spec, initial_state(), eurusd[:900], lambda obs: 0)
    assert state.emission_rows is not None and state.emission_rows.belongs_to(spec, state.bars)
    first = spec.hmm_features.first_full_row
    assert same_bits(state.emission_rows.b[first:], emission_rows(spec, state.bars).b[first:])


@pytest.mark.parametrize("hmm", ["demo", "random"])
def test_step_decisions_carry_the_states_of_market_series(eurusd, busy_policy, hmm):
    params = demo_hmm() if hmm == "demo" else random_hmm(np.random.default_rng(11), 4)
    spec = TwinSpec(params, FORWARD_FILTER)
    bars = eurusd[1000:1700]
    features, states = market_series(spec, bars)
    _, decisions = run(spec, initial_state(), bars, busy_policy)
    assert [d.hmm_state for d in decisions] == states.tolist()
    assert [d.observation[:6] for d in decisions] == [tuple(np.float32(f).tolist()) for f in features]
    assert len(set(states.tolist())) > 1


def test_a_restored_twin_rebuilds_its_rows_and_decides_the_same(eurusd, busy_policy):
    spec = TwinSpec(demo_hmm(), FORWARD_FILTER)
    bars = eurusd[:900]
    _, full = run(spec, initial_state("m"), bars, busy_policy)
    before, first = run(spec, initial_state("m"), bars[:600], busy_policy)
    restored = TwinState.from_dict(before.to_dict(), model_id="m")
    assert restored.emission_rows is None
    _, rest = run(spec, restored, bars, busy_policy)
    assert first + rest == full
    # rows of another spec object, or of other bars, are not trusted: rebuilt
    other = TwinSpec(demo_hmm(), FORWARD_FILTER)
    assert next_emission_rows(other, before, before.bars).spec is other
    stale = replace(before, bars=before.bars.copy())
    after, _ = step(spec, stale, bar_at(bars, 600), busy_policy)
    assert after.emission_rows is not None and after.emission_rows.bars is after.bars


# ---- the extension must be built ---------------------------------------------------------------------------


def test_an_unbuilt_extension_is_a_clear_import_error():
    code = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'common.twin._filter':\n"
        "            raise ImportError('No module named common.twin._filter')\n"
        "sys.meta_path.insert(0, Block())\n"
        "try:\n"
        "    import common.twin.twin\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "not built" in out and "bootstrap.sh" in out
