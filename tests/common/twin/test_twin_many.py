"""``many.observe_bars`` (the bars of one close, the twins' features computed together) equals ``observe_bar`` one
twin at a time, bit for bit: the window, the emission rows, the market features, the HMM state and the observation,
then the decisions, on real and degenerate bars, for twins with their own HMMs and histories, and for the twins
that step alone (a window not full, rows to rebuild, another decode method, another window, a lone kind)."""

from dataclasses import replace

import numpy as np
import pytest

from common.twin.bars import bar_at, load_bars_csv
from common.twin.features import HmmFeatureParams, RlFeatureParams
from common.twin.hmm import FORWARD_FILTER, SINGLE_OBSERVATION, HmmParams
from common.twin.many import observe_bars, run_bars, step_run
from common.twin.twin import Observed, StaleBar, TwinSpec, TwinState, decide, initial_state, observe_bar, run, step


def random_hmm(rng: np.random.Generator, k: int) -> HmmParams:
    means = rng.normal(0, 1.5, (k, 3))
    a = rng.normal(0, 0.6, (k, 3, 3))
    covars = a @ a.transpose(0, 2, 1) + np.eye(3) * rng.uniform(0.05, 1.0, (k, 1, 1))
    return HmmParams(rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k), size=k), means, covars)


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same(one, many, where) -> None:
    assert type(one) is type(many), where
    if isinstance(one, TwinState):
        assert same_bits(one.bars, many.bars) and one.last_bar_time == many.last_bar_time, where
        assert (one.emission_rows is None) == (many.emission_rows is None), where
        if one.emission_rows is not None:
            assert same_bits(one.emission_rows.b, many.emission_rows.b), where
        return
    assert isinstance(many, Observed) and one.bar == many.bar, where
    assert same_bits(one.window, many.window), where
    if one.rows is None:  # a decode method that does not filter
        assert many.rows is None, where
    else:
        assert same_bits(one.rows.b, many.rows.b) and many.rows.belongs_to(one.rows.spec, many.window), where
    assert same_bits(one.view.features, many.view.features), where
    assert one.view.hmm_state == many.view.hmm_state, where
    assert same_bits(one.observation, many.observation), where


def lockstep(specs, states, bars_of, n_bars, policy) -> list:
    """Step every twin through ``n_bars`` bars both ways (``bars_of(k, i)``: twin k's bar i), comparing; returns
    the decisions (those of both ways, equal)."""
    one_states, many_states, decisions = list(states), list(states), []
    for i in range(n_bars):
        bars = [bars_of(k, i) for k in range(len(specs))]
        many = observe_bars(list(zip(specs, many_states, bars, strict=True)))
        for k, (spec, bar) in enumerate(zip(specs, bars, strict=True)):
            one = observe_bar(spec, one_states[k], bar)
            assert_same(one, many[k], (k, i))
            if isinstance(one, TwinState):
                one_states[k], many_states[k] = one, many[k]
                continue
            one_states[k], d1 = decide(spec, one_states[k], one, policy(one.observation))
            many_states[k], d2 = decide(spec, many_states[k], many[k], policy(many[k].observation))
            assert d1 == d2, (k, i)
            decisions.append(d1)
    return decisions


@pytest.fixture(scope="module")
def eurusd() -> np.ndarray:
    return load_bars_csv("data/EURUSD_H1_2017.csv")


def test_twins_with_their_own_hmms_and_histories_see_the_same_bits(eurusd, busy_policy):
    rng = np.random.default_rng(3)
    specs = [TwinSpec(random_hmm(rng, k), FORWARD_FILTER) for k in (5, 5, 4, 5, 4, 3, 5, 5)]
    offsets = [0, 7, 30, 61, 100, 150, 3, 211]
    states = [run(s, initial_state(), eurusd[o:o + 400], busy_policy)[0] for s, o in zip(specs, offsets, strict=True)]
    decisions = lockstep(specs, states, lambda k, i: bar_at(eurusd, offsets[k] + 400 + i), 400, busy_policy)
    assert len(decisions) == 8 * 400
    assert len({d.hmm_state for d in decisions}) > 2 and len({d.action for d in decisions}) > 2


def test_twins_on_full_precision_bars_see_the_same_bits(random_walk_bars, busy_policy):
    """Real prices have 5 decimals, so their sums rarely depend on the order; these bars' sums do."""
    rng = np.random.default_rng(4)
    specs = [TwinSpec(random_hmm(rng, 5), FORWARD_FILTER) for _ in range(5)]
    bars = [random_walk_bars(700, seed=20 + k) for k in range(5)]
    states = [run(s, initial_state(), b[:360], busy_policy)[0] for s, b in zip(specs, bars, strict=True)]
    lockstep(specs, states, lambda k, i: bar_at(bars[k], 360 + i), 340, busy_policy)


def test_degenerate_bars_see_the_same_bits(make_bars, busy_policy):
    rng = np.random.default_rng(5)
    close = np.round(1.1 + np.cumsum(rng.choice([-0.001, 0.0, 0.001], 400)), 3)  # ties, flat runs
    close[140:175] = 1.1  # zero spans, zero true ranges, zero returns
    volume = rng.choice([0.0, 0.0, 5.0], 400)  # zero volume averages
    bars = make_bars(close, close, close, volume)
    bars[260, 1:5] = 0.0  # a (bad) zero price: numpy's inf and nan
    bars[290, 5] = np.nan
    hp = HmmFeatureParams(momentum_period=5, consistency_period=9, range_period=12)
    rp = RlFeatureParams(roc_period=3, atr_period=25, ema_period=7, range_period=8, volume_ma_period=17)
    rng = np.random.default_rng(8)
    specs = [TwinSpec(random_hmm(rng, 4), FORWARD_FILTER, hp, rp, window=40) for _ in range(3)]
    states = [initial_state()] * 3  # from the first bar: windows not full, then full
    lockstep(specs, states, lambda k, i: bar_at(bars, i + k), 390, busy_policy)


def test_twins_that_step_alone_see_the_same_bits(eurusd, busy_policy):
    rng = np.random.default_rng(9)
    hmm = random_hmm(rng, 5)
    full = TwinSpec(hmm, FORWARD_FILTER)
    specs = [full, full, TwinSpec(hmm, SINGLE_OBSERVATION), TwinSpec(hmm, FORWARD_FILTER, window=200),
             TwinSpec(random_hmm(rng, 5), FORWARD_FILTER), full]
    states = [run(s, initial_state(), eurusd[:600], busy_policy)[0] for s in specs[:5]]
    restored = TwinState.from_dict(states[4].to_dict())  # its rows are rebuilt at the next bar
    states[4] = restored
    states.append(run(full, initial_state(), eurusd[251:600], busy_policy)[0])  # its window fills at the next bar
    assert len(states[5].bars) == full.window - 1 and states[4].emission_rows is None
    lockstep(specs, states, lambda k, i: bar_at(eurusd, 600 + i), 30, busy_policy)


def test_a_bar_not_after_the_last_is_refused(eurusd, busy_policy):
    spec = TwinSpec(random_hmm(np.random.default_rng(1), 4), FORWARD_FILTER)
    state = run(spec, initial_state(), eurusd[:400], busy_policy)[0]
    with pytest.raises(StaleBar):
        observe_bars([(spec, state, bar_at(eurusd, 400)), (spec, state, bar_at(eurusd, 399))])
    older = replace(state)  # another state object, the same bars: computed together still
    assert len(observe_bars([(spec, state, bar_at(eurusd, 400)), (spec, older, bar_at(eurusd, 400))])) == 2


def steps_one_by_one(spec, state, bars, policy) -> list:
    out = []
    for bar in bars:
        state, decision = step(spec, state, bar, policy)
        out.append((state, decision))
    return out


def assert_same_steps(one, run_of) -> None:
    assert len(one) == len(run_of)
    for i, ((s1, d1), (s2, d2)) in enumerate(zip(one, run_of, strict=True)):
        assert d1 == d2, i  # the observation (a tuple of floats) and every number: bit for bit but a NaN's
        if d1 is not None:
            assert same_bits(np.array(d1.observation), np.array(d2.observation)), i
        assert same_bits(s1.bars, s2.bars) and s1.last_bar_time == s2.last_bar_time, i
        assert s1.position == s2.position and s1.realized_pnl == s2.realized_pnl and s1.decisions == s2.decisions, i
        assert (s1.emission_rows is None) == (s2.emission_rows is None), i
        if s1.emission_rows is not None:
            assert s2.emission_rows.belongs_to(s1.emission_rows.spec, s2.bars), i
            first = s1.emission_rows.spec.hmm_features.first_full_row  # the rows read (those before: NaN or not)
            assert same_bits(s1.emission_rows.b[first:], s2.emission_rows.b[first:]), i


def test_a_run_of_bars_steps_as_step_does_bar_after_bar(eurusd, busy_policy):
    rng = np.random.default_rng(11)
    spec = TwinSpec(random_hmm(rng, 5), FORWARD_FILTER)
    warm = run(spec, initial_state(), eurusd[:500], busy_policy)[0]
    bars = [bar_at(eurusd, i) for i in range(500, 900)]
    steps = step_run(spec, warm, bars, busy_policy)
    assert_same_steps(steps_one_by_one(spec, warm, bars, busy_policy), steps)
    decisions = [d for _, d in steps]
    assert len({d.hmm_state for d in decisions}) > 1 and len({d.action for d in decisions}) > 2
    # then the next bars from the run's last state (its rows known), and after a restart (rows rebuilt first)
    more = [bar_at(eurusd, i) for i in range(900, 950)]
    assert_same_steps(steps_one_by_one(spec, steps[-1][0], more, busy_policy),
                      step_run(spec, steps[-1][0], more, busy_policy))
    restored = TwinState.from_dict(steps[-1][0].to_dict())
    assert_same_steps(steps_one_by_one(spec, restored, more, busy_policy), step_run(spec, restored, more, busy_policy))


def test_a_run_from_a_flat_twin_and_on_degenerate_bars_steps_as_step_does(make_bars, busy_policy):
    rng = np.random.default_rng(5)
    close = np.round(1.1 + np.cumsum(rng.choice([-0.001, 0.0, 0.001], 400)), 3)
    close[140:175] = 1.1
    volume = rng.choice([0.0, 0.0, 5.0], 400)
    bars = make_bars(close, close, close, volume)
    bars[260, 1:5] = 0.0
    bars[290, 5] = np.nan
    hp = HmmFeatureParams(momentum_period=5, consistency_period=9, range_period=12)
    rp = RlFeatureParams(roc_period=3, atr_period=25, ema_period=7, range_period=8, volume_ma_period=17)
    spec = TwinSpec(random_hmm(np.random.default_rng(8), 4), FORWARD_FILTER, hp, rp, window=40)
    seq = [bar_at(bars, i) for i in range(400)]
    assert_same_steps(steps_one_by_one(spec, initial_state(), seq, busy_policy),
                      step_run(spec, initial_state(), seq, busy_policy))


def test_a_run_on_full_precision_bars_and_other_methods_steps_as_step_does(random_walk_bars, busy_policy):
    bars = random_walk_bars(700, seed=21)
    rng = np.random.default_rng(4)
    for spec in (TwinSpec(random_hmm(rng, 5), FORWARD_FILTER), TwinSpec(random_hmm(rng, 5), SINGLE_OBSERVATION)):
        warm = run(spec, initial_state(), bars[:360], busy_policy)[0]
        seq = [bar_at(bars, i) for i in range(360, 700)]
        assert_same_steps(steps_one_by_one(spec, warm, seq, busy_policy), step_run(spec, warm, seq, busy_policy))


def test_a_stale_bar_in_a_run_is_refused_where_step_refuses_it(eurusd, busy_policy):
    spec = TwinSpec(random_hmm(np.random.default_rng(1), 4), FORWARD_FILTER)
    state = run(spec, initial_state(), eurusd[:400], busy_policy)[0]
    with pytest.raises(StaleBar):
        step_run(spec, state, [bar_at(eurusd, 400), bar_at(eurusd, 401), bar_at(eurusd, 401)], busy_policy)
    with pytest.raises(StaleBar):
        step_run(spec, state, [bar_at(eurusd, 399), bar_at(eurusd, 400)], busy_policy)


def test_run_bars_is_run_bit_for_bit_stale_bars_skipped(eurusd, busy_policy):
    spec = TwinSpec(random_hmm(np.random.default_rng(12), 5), FORWARD_FILTER)
    one_state, one = run(spec, initial_state(), eurusd[:700], busy_policy)
    many_state, many = run_bars(spec, initial_state(), eurusd[:700], busy_policy)
    assert one == many and len(one) == 700 - spec.window + 1
    assert same_bits(one_state.bars, many_state.bars) and one_state.position == many_state.position
    again = [bar_at(eurusd, i) for i in (650, 699, 700, 700, 701, 650, 702)]  # the stale ones skipped, as run does
    assert run(spec, one_state, again, busy_policy)[1] == run_bars(spec, many_state, again, busy_policy)[1]
    assert run_bars(spec, one_state, eurusd[600:650], busy_policy) == (one_state, [])
