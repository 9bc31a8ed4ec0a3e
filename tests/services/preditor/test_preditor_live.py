"""The preditor's pure pieces: the gap decision, signals and position views, snapshot bytes (tables, real data)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest

from common import messages
from common.twin.bars import bar_at
from common.twin.twin import initial_state, run, step
from services.preditor import gaps, live
from services.preditor.model_file import load_model

H1, H4, D1 = 3600, 14400, 86400
FRI_20 = 1483732800  # Friday 2017-01-06 20:00 UTC
FRI_21 = FRI_20 + H1
SUN_22 = FRI_21 + 49 * H1  # Sunday 2017-01-08 22:00 UTC
MON_07 = 1514185200  # Monday 2017-12-25 07:00 UTC (the CSV's Christmas hole: next bar 22:00)
TUE_10 = 1483437600  # Tuesday 2017-01-03 10:00 UTC


def test_weekly_close_window():
    assert gaps.week_seconds(1483315200) == 0  # Monday 2017-01-02 00:00
    assert not gaps.in_weekly_close(FRI_20)
    assert gaps.in_weekly_close(FRI_21) and gaps.in_weekly_close(FRI_21 + 40 * H1)
    assert gaps.in_weekly_close(SUN_22) and not gaps.in_weekly_close(SUN_22 + H1)


@pytest.mark.parametrize(("last", "t", "tf", "fill"), [
    (None, TUE_10, H1, False),  # nothing seen yet: the warmup's business
    (TUE_10, TUE_10 + H1, H1, False),  # the next bar
    (TUE_10, TUE_10, H1, False),  # a duplicate
    (TUE_10, TUE_10 + 2 * H1, H1, True),  # one bar missing mid-week
    (TUE_10, TUE_10 + 30 * H1, H1, True),
    (FRI_21, SUN_22, H1, False),  # the winter weekend as in the CSV (Fri 21:00 -> Sun 22:00)
    (FRI_20, SUN_22 - H1, H1, False),  # the summer weekend (Fri 20:00 -> Sun 21:00)
    (FRI_20, SUN_22 + 2 * H1, H1, True),  # the weekend and Monday's first bars
    (FRI_20 - H1, SUN_22, H1, True),  # Friday 20:00 is missing
    (MON_07, MON_07 + 15 * H1, H1, True),  # a holiday: ask (history answers nothing, the bar goes on)
    (FRI_20 - 4 * H1, SUN_22 + 2 * H1, H4, True),  # H4 Fri 16:00 -> Mon 00:00: the Fri 20:00 bar may exist: ask
    (FRI_20, SUN_22 + 2 * H1, H4, False),  # H4 Fri 20:00 -> Mon 00:00: every missing slot is in the close
    (TUE_10, TUE_10 + 2 * D1, D1, True),
])
def test_needs_fill(last, t, tf, fill):
    assert gaps.needs_fill(last, t, tf) is fill


def test_the_bundled_data_asks_only_at_the_christmas_hole(eurusd_bars):
    t = eurusd_bars[:, 0].astype(int)
    asks = [int(t[i]) for i in range(1, len(t)) if gaps.needs_fill(int(t[i - 1]), int(t[i]), H1)]
    assert asks == [MON_07 + 15 * H1]  # 52 weekends, no question; the one holiday, one question


@pytest.fixture(scope="module")
def demo():
    return load_model("models/EURUSD_H1.zip")


def test_signal_and_position_views_of_a_real_run(demo, eurusd_bars):
    state, decisions = run(demo.spec, initial_state(demo.model_id), eurusd_bars[:420], demo.policy_fn)
    d = decisions[-1]
    sig = live.signal_of("EURUSD", d)
    assert sig == messages.Signal("EURUSD", d.bar_time, d.close, int(d.action), d.direction, d.intensity,
                                  d.hmm_state, d.floating_pnl)
    assert messages.from_wire(messages.Signal, messages.to_wire(sig)) == sig  # what the executor reads back
    assert sig.previous_direction is None  # read back later (last_signals): the decision before is not said
    live_sig = live.signal_of("EURUSD", d, decisions[-2])
    assert (live_sig.previous_direction, live_sig.bar_time) == (decisions[-2].direction, d.bar_time)
    assert messages.from_wire(messages.Signal, messages.to_wire(live_sig)) == live_sig
    view = live.position_view("EURUSD", "H1", state)
    assert view.direction == state.position.direction and view.realized_pnl == state.realized_pnl
    assert view.last_bar_time == d.bar_time and view.decisions == len(decisions)
    assert messages.from_wire(messages.VirtualPosition, messages.to_wire(view)) == view  # its types hold


def test_twin_bar_gives_the_backtest_s_floats_and_keeps_a_bar_that_has_them():
    wire_ints = messages.Bar("EURUSD", "H1", 3600, 1, 2, 1, 2, 100)
    b = live.twin_bar(wire_ints)
    assert [type(x) for x in (b.time, b.open, b.high, b.low, b.close, b.volume)] == [int] + [float] * 5
    assert (b.open, b.volume) == (1.0, 100.0)
    assert live.twin_bar(b) is b


def test_a_decision_s_snapshot_holds_its_closed_trade_as_asdict_would(demo, eurusd_bars):
    """``Trade.to_dict`` (the snapshot's, without asdict's deep copy) is asdict's map, every field in order."""
    _, decisions = run(demo.spec, initial_state(demo.model_id), eurusd_bars[:600], demo.policy_fn)
    trades = [d.closed_trade for d in decisions if d.closed_trade is not None]
    assert trades
    for trade in trades:
        assert list(trade.to_dict().items()) == list(asdict(trade).items())


def test_snapshot_round_trips_exactly_and_refuses_another_model(demo, eurusd_bars):
    state, _ = run(demo.spec, initial_state(demo.model_id), eurusd_bars[:400], demo.policy_fn)
    raw = live.snapshot_bytes(state)
    back = live.restore(raw, demo.model_id)
    assert back.state is not None and back.state.to_dict() == state.to_dict()
    assert np.array_equal(back.state.bars, state.bars)
    assert live.restore(None, demo.model_id) == live.Restored(None, "no snapshot")
    other = live.restore(raw, "0123456789abcdef")
    assert other.state is None and "belongs to model" in other.why
    assert live.restore(b"{not json", demo.model_id).state is None
    bad_version = json.dumps({**json.loads(raw), "version": 99}).encode()
    assert "version" in live.restore(bad_version, demo.model_id).why


def test_history_continues_a_snapshot_only_without_a_hole(eurusd_bars):
    state = initial_state("m")
    assert live.covers(eurusd_bars[100:200], state, H1)
    at = replace(state, last_bar_time=int(eurusd_bars[150, 0]))
    assert live.covers(eurusd_bars[100:200], at, H1)  # overlaps
    assert live.covers(eurusd_bars[151:200], at, H1)  # starts right after
    assert not live.covers(eurusd_bars[160:200], at, H1)  # bars 151..159 would be missing
    weekend = replace(state, last_bar_time=int(eurusd_bars[119, 0]))  # Friday's last bar
    assert live.covers(eurusd_bars[120:200], weekend, H1)  # history starts on Sunday evening


def test_history_array_checks_order():
    rows = [[1, 1.0, 1.0, 1.0, 1.0, 5], [2, 1.0, 1.0, 1.0, 1.0, 5]]
    assert live.history_array(rows).shape == (2, 6) and live.history_array([]).shape == (0, 6)
    with pytest.raises(ValueError, match="increasing"):
        live.history_array(rows[::-1])


def test_snapshot_encoder_writes_the_same_bytes_as_snapshot_bytes(demo, eurusd_bars):
    """The encoder reuses the text of the bars it encoded before: every snapshot, one per step or several steps
    apart, after a restore (another array, same bars) and after an unrelated state, is byte for byte the same."""
    enc = live.SnapshotEncoder()
    state = initial_state(demo.model_id)
    assert enc.encode(state) == live.snapshot_bytes(state)  # no bar yet
    trades = 0
    for i in range(600):
        state, d = step(demo.spec, state, bar_at(eurusd_bars, i), demo.policy_fn)
        trades += d is not None and d.closed_trade is not None
        if i % 5 != 4 and not 340 <= i <= 360:  # mostly every step; sometimes a few coalesced; the window fills
            assert enc.encode(state) == live.snapshot_bytes(state), i
    assert trades  # a closed trade in the last decision was encoded too
    restored = live.restore(live.snapshot_bytes(state), demo.model_id).state
    assert restored is not None and restored.bars is not state.bars
    assert enc.encode(restored) == live.snapshot_bytes(state)
    far, _ = run(demo.spec, initial_state(demo.model_id), eurusd_bars[2000:2400], demo.policy_fn)
    assert enc.encode(far) == live.snapshot_bytes(far)  # no overlap: encoded afresh
    changed = replace(far, bars=far.bars.copy())
    changed.bars[-2, 4] += 1e-5  # same times, another close: that row is not reused
    changed.bars[-3, 5] = 0.0
    assert enc.encode(changed) == live.snapshot_bytes(changed)
    negative_zero = replace(changed, bars=changed.bars.copy())
    negative_zero.bars[-3, 5] = -0.0  # == 0.0, but not the same text
    assert enc.encode(negative_zero) == live.snapshot_bytes(negative_zero) != live.snapshot_bytes(changed)
    assert enc.encode(initial_state("m")) == live.snapshot_bytes(initial_state("m"))


def test_snapshot_encoder_refuses_what_json_refuses(demo, eurusd_bars):
    state, _ = run(demo.spec, initial_state(demo.model_id), eurusd_bars[:10], demo.policy_fn)
    bad = replace(state, bars=state.bars.copy())
    bad.bars[-1, 5] = np.nan
    with pytest.raises(ValueError):
        live.snapshot_bytes(bad)
    with pytest.raises(ValueError):
        live.SnapshotEncoder().encode(bad)
