import json
from dataclasses import asdict, replace

import numpy as np
import pytest

from common.twin.bars import bar_at, load_bars_csv
from common.twin.hmm import FORWARD_FILTER, SINGLE_OBSERVATION
from common.twin.twin import (
    StaleBar,
    TwinSpec,
    TwinState,
    initial_state,
    market_series,
    market_view,
    run,
    step,
    warmup,
)

WINDOW = 60


@pytest.fixture
def spec(hmm3):
    return TwinSpec(hmm3, FORWARD_FILTER, window=WINDOW)


@pytest.fixture
def bars(random_walk_bars):
    return random_walk_bars(400)


def test_no_decision_until_the_window_is_full(spec, bars, busy_policy):
    state = initial_state()
    for i in range(WINDOW - 1):
        state, decision = step(spec, state, bar_at(bars, i), busy_policy)
        assert decision is None
    state, decision = step(spec, state, bar_at(bars, WINDOW - 1), busy_policy)
    assert decision is not None and decision.bar_time == int(bars[WINDOW - 1, 0])
    assert len(state.bars) == WINDOW and state.decisions == 1
    state, _ = step(spec, state, bar_at(bars, WINDOW), busy_policy)
    assert len(state.bars) == WINDOW and state.bars[0, 0] == bars[1, 0]


def test_a_bar_not_newer_than_the_last_is_refused_and_run_skips_it(spec, bars, busy_policy):
    state, _ = run(spec, initial_state(), bars[:WINDOW + 5], busy_policy)
    with pytest.raises(StaleBar):
        step(spec, state, bar_at(bars, WINDOW + 4), busy_policy)
    with pytest.raises(StaleBar):
        step(spec, state, bar_at(bars, 0), busy_policy)
    again, decisions = run(spec, state, bars[:WINDOW + 5], busy_policy)
    assert decisions == [] and again is state


def test_position_features_are_the_position_after_the_previous_bar(spec, bars, busy_policy):
    _, decisions = run(spec, initial_state(), bars, busy_policy)
    actions = {d.action for d in decisions}
    assert len(actions) == 7  # the policy exercises every action
    n = spec.n_states
    for prev, cur in zip(decisions, decisions[1:], strict=False):
        lot = spec.costs.lot_sizes[prev.intensity]
        assert cur.observation[6 + n:] == pytest.approx((prev.direction, lot * 10, np.tanh(prev.floating_pnl / 100)),
                                                         abs=1e-6)
        assert cur.equity == pytest.approx(spec.costs.initial_balance + cur.realized_pnl + cur.floating_pnl)
    trades = sum(d.closed_trade.pnl for d in decisions if d.closed_trade)
    open_cost = 0.0 if decisions[-1].direction == 0 else (
        spec.costs.commission_per_lot * spec.costs.lot_sizes[decisions[-1].intensity] / 2)
    assert decisions[-1].realized_pnl == pytest.approx(trades - open_cost, abs=1e-9)


@pytest.mark.parametrize("restart_after", [WINDOW - 10, WINDOW, 150, 399])
def test_restart_from_snapshot_gives_the_same_decisions_bit_for_bit(spec, bars, busy_policy, restart_after):
    _, full = run(spec, initial_state("m1"), bars, busy_policy)
    before, first = run(spec, initial_state("m1"), bars[:restart_after], busy_policy)
    saved = json.loads(json.dumps(before.to_dict()))  # what the service writes to disk
    restored = TwinState.from_dict(saved, model_id="m1")
    # warmup after restart: the history overlaps the snapshot; seen bars are skipped
    assert restored.last_decision == before.last_decision  # the last signal survives the restart
    _, rest = run(spec, restored, bars, busy_policy)
    assert first + rest == full  # dataclass equality: every float identical


def test_snapshot_is_tied_to_its_model_and_version(spec, bars, busy_policy):
    state, _ = run(spec, initial_state("m1"), bars[:WINDOW + 3], busy_policy)
    d = state.to_dict()
    with pytest.raises(ValueError, match="model"):
        TwinState.from_dict(d, model_id="other")
    with pytest.raises(ValueError, match="version"):
        TwinState.from_dict({**d, "version": 99})
    back = TwinState.from_dict(d)
    assert np.array_equal(back.bars, state.bars) and back.position == state.position
    assert (back.realized_pnl, back.last_bar_time, back.decisions, back.last_decision) == (
        state.realized_pnl, state.last_bar_time, state.decisions, state.last_decision)
    assert state.last_decision is not None


def test_warmup_without_snapshot_may_hold_another_position(spec, bars, busy_policy):
    """Why the snapshot exists: a twin started later is flat where the running one may be in a trade."""
    _, full = run(spec, initial_state(), bars, busy_policy)
    _, late = run(spec, initial_state(), bars[200:], busy_policy)
    assert warmup(spec, initial_state(), bars[200:], busy_policy).last_decision == late[-1]
    by_time = {d.bar_time: d for d in full}
    first_late = late[0]
    assert first_late.observation[-3:] == (0.0, 0.0, 0.0)
    assert by_time[first_late.bar_time].observation[-3:] != (0.0, 0.0, 0.0)


@pytest.mark.parametrize("method", [FORWARD_FILTER, SINGLE_OBSERVATION])
def test_training_path_equals_the_live_path_on_real_data(hmm3, method):
    bars = load_bars_csv("data/EURUSD_H1_2017.csv")[:520]
    spec = TwinSpec(hmm3, method)  # the real 350-bar window
    features, states = market_series(spec, bars)
    assert len(states) == 520 - 349
    for j in range(0, len(states), 3):
        view = market_view(spec, bars[j:j + 350])
        assert np.array_equal(view.features, features[j]) and view.hmm_state == states[j]


def test_spec_refuses_unknown_decode_method_and_short_window(hmm3):
    with pytest.raises(ValueError, match="decode"):
        TwinSpec(hmm3, "viterbi_full_sequence")
    with pytest.raises(ValueError, match="window"):
        replace(TwinSpec(hmm3, FORWARD_FILTER), window=15)


def test_snapshot_dicts_are_the_dataclass_fields_in_order(spec, bars, busy_policy):
    """``to_dict`` is written by hand (asdict is slow): the same keys, order and values as ``asdict`` would give."""
    state, decisions = run(spec, initial_state("m"), bars, busy_policy)
    with_trade = [d for d in decisions if d.closed_trade is not None]
    assert with_trade and any(d.closed_trade is None for d in decisions)
    for d in decisions:
        expected = {**asdict(d), "action": int(d.action), "observation": list(d.observation)}
        assert json.dumps(d.to_dict()) == json.dumps(expected)
    assert list(state.position.to_dict().items()) == list(asdict(state.position).items())
    d = state.to_dict()
    assert list(d) == ["version", "model_id", "bars", "position", "realized_pnl", "last_bar_time", "decisions",
                       "last_decision"]
    assert {k: v for k, v in d.items() if k not in ("version", "model_id", "bars")} == state.to_dict_after_bars()


def test_step_is_observe_bar_then_decide_with_the_policys_action():
    """``step`` = ``observe_bar`` + ``decide`` (what the preditor calls when it asks many policies at once)."""
    from common.twin.bars import bar_at, load_bars_csv
    from common.twin.twin import TwinState, decide, initial_state, observe_bar, step
    from services.preditor.model_file import load_model

    model = load_model("models/EURUSD_H1.zip")
    bars = load_bars_csv("data/EURUSD_H1_2017.csv")[:700]
    one, two = initial_state(model.model_id), initial_state(model.model_id)
    for i in range(len(bars)):
        bar = bar_at(bars, i)
        one, expected = step(model.spec, one, bar, model.policy_fn)
        seen = observe_bar(model.spec, two, bar)
        if isinstance(seen, TwinState):
            two, decision = seen, None
        else:
            two, decision = decide(model.spec, two, seen, model.policy_fn(seen.observation))
        assert decision == expected
        assert one.to_dict() == two.to_dict()
    assert one.decisions > 300
