import subprocess
import sys

import pytest

from common.twin.actions import TARGETS, TRAINING_LOT_SIZES, Action, Target, action_from_index, actions_metadata
from common.twin.position import FLAT, CostModel, Position, apply_target, floating_pnl

EURUSD = CostModel()  # point 1e-5, pip value 10, spread 7, slippage 2, commission 7/lot, 5 digits
JPY = CostModel(point=0.001, digits=3)
INDEX = CostModel(point=0.01, digits=2, spread_points=50, slippage_points=10)  # 1 point per pip


@pytest.mark.parametrize("action, direction, intensity, lot", [
    (Action.WAIT, 0, 0, 0.0),
    (Action.LONG_WEAK, 1, 1, 0.01), (Action.LONG_MODERATE, 1, 2, 0.03), (Action.LONG_STRONG, 1, 3, 0.05),
    (Action.SHORT_WEAK, -1, 1, 0.01), (Action.SHORT_MODERATE, -1, 2, 0.03), (Action.SHORT_STRONG, -1, 3, 0.05),
])
def test_actions(action, direction, intensity, lot):
    assert TARGETS[action] == Target(direction, intensity)
    assert TRAINING_LOT_SIZES[intensity] == lot
    assert actions_metadata()[str(int(action))] == {"name": action.name, "direction": direction,
                                                   "intensity": intensity}


@pytest.mark.parametrize("index, action", [(0, Action.WAIT), (3, Action.LONG_STRONG), (6, Action.SHORT_STRONG),
                                           (7, Action.WAIT), (-1, Action.WAIT)])
def test_unknown_index_is_wait(index, action):
    assert action_from_index(index) is action


def test_worked_example_long_weak_then_wait():
    opened = apply_target(FLAT, Target(1, 1), 1.10000, 100, EURUSD)
    assert opened.position.entry_price == pytest.approx(1.10009, abs=1e-12)
    assert opened.balance_change == pytest.approx(-0.035)  # half the round-trip commission
    assert opened.position.floating_pnl == pytest.approx(-0.09)  # -(7+2) points = -0.9 pip x 10 x 0.01
    closed = apply_target(opened.position, Target(0, 0), 1.10100, 200, EURUSD)
    t = closed.closed
    assert closed.position == FLAT
    assert t.exit_price == pytest.approx(1.10098, abs=1e-12)
    assert t.pips == pytest.approx(8.9)
    assert t.gross_pnl == pytest.approx(0.89)
    assert t.commission == pytest.approx(0.07)
    assert t.pnl == pytest.approx(0.82)
    assert closed.balance_change == pytest.approx(0.89 - 0.035)
    assert opened.balance_change + closed.balance_change == pytest.approx(t.pnl)  # trades sum to the balance
    assert (t.entry_time, t.exit_time, t.direction, t.intensity, t.lot) == (100, 200, 1, 1, 0.01)


@pytest.mark.parametrize("costs, target, open_price, close_price, pips, pnl", [
    # short strong EURUSD: entry 1.10000 - 9 points, exit 1.09900 + 2 points -> 8.9 pips x 10 x 0.05 - 0.35
    (EURUSD, Target(-1, 3), 1.10000, 1.09900, 8.9, 8.9 * 10 * 0.05 - 0.35),
    # long moderate, losing: entry 1.10009, exit 1.09948 -> -6.1 pips x 10 x 0.03 - 0.21
    (EURUSD, Target(1, 2), 1.10000, 1.09950, -6.1, -6.1 * 10 * 0.03 - 0.21),
    # 3-digit symbol: point 0.001, 10 points per pip
    (JPY, Target(1, 1), 110.000, 110.500, 48.9, 48.9 * 10 * 0.01 - 0.07),  # 110.009 -> 110.498
    # 2-digit symbol: 1 point per pip; entry 1000 + 0.6, exit 1010 - 0.1 -> 930 "pips"
    (INDEX, Target(1, 1), 1000.0, 1010.0, 930.0, 930.0 * 10 * 0.01 - 0.07),
])
def test_round_trips(costs, target, open_price, close_price, pips, pnl):
    opened = apply_target(FLAT, target, open_price, 1, costs)
    trade = apply_target(opened.position, Target(0, 0), close_price, 2, costs).closed
    assert trade.pips == pytest.approx(pips, abs=1e-6)
    assert trade.pnl == pytest.approx(pnl, abs=1e-9)


def test_same_action_keeps_the_position_and_marks_it():
    opened = apply_target(FLAT, Target(1, 2), 1.10000, 1, EURUSD).position
    kept = apply_target(opened, Target(1, 2), 1.10209, 2, EURUSD)
    assert kept.closed is None and kept.balance_change == 0.0
    assert kept.position.entry_price == opened.entry_price and kept.position.entry_time == 1
    assert kept.position.floating_pnl == pytest.approx(20.0 * 10 * 0.03)  # (1.10209 - 1.10009) = 20 pips


@pytest.mark.parametrize("first, second", [
    (Target(1, 1), Target(1, 3)),  # intensity change: close and reopen, no scaling
    (Target(1, 3), Target(1, 1)),  # no partial close
    (Target(1, 2), Target(-1, 2)),  # reversal
])
def test_any_change_closes_and_reopens(first, second):
    opened = apply_target(FLAT, first, 1.1, 1, EURUSD).position
    update = apply_target(opened, second, 1.1, 2, EURUSD)
    lot1, lot2 = TRAINING_LOT_SIZES[first.intensity], TRAINING_LOT_SIZES[second.intensity]
    assert update.closed is not None and update.closed.intensity == first.intensity
    assert (update.position.direction, update.position.intensity, update.position.entry_time) == (
        second.direction, second.intensity, 2)
    # closing at the same price loses spread + 2 x slippage and the round-trip commission
    assert update.closed.pips == pytest.approx(-1.1)
    assert update.balance_change == pytest.approx(-1.1 * 10 * lot1 - 3.5 * lot1 - 3.5 * lot2)


def test_wait_when_flat_does_nothing():
    update = apply_target(FLAT, Target(0, 0), 1.1, 1, EURUSD)
    assert update.position == FLAT and update.closed is None and update.balance_change == 0.0


def test_floating_pnl_and_snapshot_round_trip():
    p = Position(-1, 2, 1.2, 5, 0.0)
    assert floating_pnl(p, 1.19, EURUSD) == pytest.approx(100 * 10 * 0.03)
    assert Position.from_dict(p.to_dict()) == p


def test_cost_model_imports_without_numpy():
    code = ("import sys; import common.twin.position, common.twin.actions, common.twin.metrics; "
            "assert 'numpy' not in sys.modules, 'numpy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
