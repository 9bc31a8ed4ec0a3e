import itertools

import pytest

from services.executor.sync import (
    FLAT,
    SYNC_TABLE,
    Direction,
    Stance,
    SyncAction,
    SyncInputError,
    SyncInputs,
    decide,
    render_markdown,
)

L = Direction.LONG
S = Direction.SHORT
W = Direction.FLAT


def st(direction: Direction, intensity: int = 0) -> Stance:
    if direction != W and intensity == 0:
        intensity = 1
    return Stance(direction, intensity)


WAIT = FLAT
LONG1, LONG2, LONG3 = Stance(L, 1), Stance(L, 2), Stance(L, 3)
SHORT1, SHORT3 = Stance(S, 1), Stance(S, 3)
LONG_UNKNOWN = Stance(L, 0)

# One row per cell:
# position, signal, previous, first-signal flag, paused, enabled, orphan -> action, reason, rule
CELLS = [
    # 1 orphan: never touched, whatever the rest
    (LONG1, None, None, False, False, True, True, SyncAction.SKIP, "ORPHAN", 1),
    (SHORT1, WAIT, WAIT, True, True, False, True, SyncAction.SKIP, "ORPHAN", 1),
    # 2 positioned, signal WAIT: close, even paused or disabled
    (LONG1, WAIT, LONG1, False, False, True, False, SyncAction.CLOSE, "SIGNAL_WAIT", 2),
    (SHORT3, WAIT, None, False, True, True, False, SyncAction.CLOSE, "SIGNAL_WAIT", 2),
    (LONG2, WAIT, LONG2, False, False, False, False, SyncAction.CLOSE, "SIGNAL_WAIT", 2),
    # 3 reversal: close then wait, even paused
    (LONG1, SHORT1, LONG1, False, False, True, False, SyncAction.CLOSE_THEN_WAIT, "REVERSAL", 3),
    (SHORT1, LONG3, None, True, True, True, False, SyncAction.CLOSE_THEN_WAIT, "REVERSAL", 3),
    (SHORT1, LONG3, WAIT, False, False, False, False, SyncAction.CLOSE_THEN_WAIT, "REVERSAL", 3),
    # 4 same direction, intensity differs: no resize
    (LONG1, LONG3, LONG1, False, False, True, False, SyncAction.NOOP, "INTENSITY_IGNORED", 4),
    (SHORT3, SHORT1, SHORT3, False, True, True, False, SyncAction.NOOP, "INTENSITY_IGNORED", 4),
    # 5 synced (intensity equal or unknown)
    (LONG2, LONG2, LONG2, False, False, True, False, SyncAction.NOOP, "SYNCED", 5),
    (LONG_UNKNOWN, LONG3, None, False, False, True, False, SyncAction.NOOP, "SYNCED", 5),
    (SHORT1, SHORT1, None, False, True, False, False, SyncAction.NOOP, "SYNCED", 5),
    # 6 flat and WAIT
    (FLAT, WAIT, None, False, False, True, False, SyncAction.NOOP, "FLAT", 6),
    (FLAT, WAIT, LONG1, True, True, False, False, SyncAction.NOOP, "FLAT", 6),
    # 7 first signal after boot, flag off: wait
    (FLAT, LONG1, None, False, False, True, False, SyncAction.WAIT_SYNC, "FIRST_SIGNAL", 7),
    (FLAT, SHORT3, None, False, True, False, False, SyncAction.WAIT_SYNC, "FIRST_SIGNAL", 7),
    # 8 missed entry (also: SL/TP hit, manual close outside the system, risk-blocked edge the bar before)
    (FLAT, LONG1, LONG1, False, False, True, False, SyncAction.WAIT_SYNC, "MISSED_ENTRY", 8),
    (FLAT, LONG3, LONG1, True, False, True, False, SyncAction.WAIT_SYNC, "MISSED_ENTRY", 8),
    (FLAT, SHORT1, SHORT3, False, True, False, False, SyncAction.WAIT_SYNC, "MISSED_ENTRY", 8),
    # 9 disabled blocks an opening
    (FLAT, LONG1, WAIT, False, False, False, False, SyncAction.SKIP, "DISABLED", 9),
    (FLAT, SHORT1, None, True, True, False, False, SyncAction.SKIP, "DISABLED", 9),
    # 10 pause blocks an opening
    (FLAT, LONG1, WAIT, False, True, True, False, SyncAction.SKIP, "PAUSED", 10),
    (FLAT, LONG1, None, True, True, True, False, SyncAction.SKIP, "PAUSED", 10),
    # 11 first signal after boot with enter_on_first_signal
    (FLAT, SHORT1, None, True, False, True, False, SyncAction.OPEN, "FIRST_SIGNAL", 11),
    # 12 edge: the direction differs from the previous signal's
    (FLAT, LONG1, WAIT, False, False, True, False, SyncAction.OPEN, "EDGE", 12),
    (FLAT, LONG2, SHORT3, False, False, True, False, SyncAction.OPEN, "EDGE", 12),
    (FLAT, SHORT1, LONG1, True, False, True, False, SyncAction.OPEN, "EDGE", 12),
]


@pytest.mark.parametrize("position,signal,previous,first,paused,enabled,orphan,action,reason,rule", CELLS)
def test_sync_cell(position, signal, previous, first, paused, enabled, orphan, action, reason, rule):
    decision = decide(SyncInputs(position, signal, previous, first, paused, enabled, orphan))
    assert (decision.action, decision.reason, decision.rule) == (action, reason, rule)
    assert decision.alert == (reason == "ORPHAN")


def test_every_table_row_is_reached_by_a_cell():
    assert {cell[-1] for cell in CELLS} == set(range(1, len(SYNC_TABLE) + 1))


STANCES = [FLAT, LONG_UNKNOWN, LONG1, LONG2, LONG3, Stance(S, 0), SHORT1, Stance(S, 2), SHORT3]
SIGNALS = [WAIT, LONG1, LONG2, LONG3, SHORT1, Stance(S, 2), SHORT3]
PREVIOUS = [None, *SIGNALS]
FLAGS = [False, True]


def all_inputs():
    for pos, sig, prev, first, paused, enabled in itertools.product(
            STANCES, SIGNALS, PREVIOUS, FLAGS, FLAGS, FLAGS):
        yield SyncInputs(pos, sig, prev, first, paused, enabled, orphan=False)


def test_product_every_combination_decides_and_obeys_the_rule():
    """An independent statement of the golden rule, checked on the whole input product (9*7*8*8 = 4032)."""
    count = 0
    for x in all_inputs():
        count += 1
        d = decide(x)
        pos, sig = x.position.direction, x.signal.direction
        if pos != W and pos != sig:
            expected = SyncAction.CLOSE if sig == W else SyncAction.CLOSE_THEN_WAIT
        elif pos != W or sig == W:
            expected = SyncAction.NOOP
        else:
            boot = x.previous is None
            edge = not boot and x.previous.direction != sig
            due = edge or (boot and x.enter_on_first_signal)
            if not due:
                expected = SyncAction.WAIT_SYNC
            elif not x.enabled or x.paused:
                expected = SyncAction.SKIP
            else:
                expected = SyncAction.OPEN
        assert d.action == expected, (x, d)
    assert count == 4032


def test_pause_and_disable_never_change_a_close_or_noop():
    for x in all_inputs():
        free = decide(SyncInputs(x.position, x.signal, x.previous, x.enter_on_first_signal))
        if free.action != SyncAction.OPEN:
            assert decide(x).action == free.action, x


def test_orphans_are_never_touched():
    for x in all_inputs():
        orphan = SyncInputs(x.position, x.signal, x.previous, x.enter_on_first_signal, x.paused, x.enabled,
                            orphan=True)
        d = decide(orphan)
        assert (d.action, d.reason, d.alert) == (SyncAction.SKIP, "ORPHAN", True)


def test_position_closed_outside_then_new_move():
    """SL hit in a LONG move: wait while LONG lasts (intensity changes included), enter on the next edge."""
    previous = LONG1  # the signal when the position was opened
    sequence = [(LONG1, SyncAction.WAIT_SYNC), (LONG3, SyncAction.WAIT_SYNC), (LONG2, SyncAction.WAIT_SYNC),
                (WAIT, SyncAction.NOOP), (LONG1, SyncAction.OPEN)]
    for signal, expected in sequence:
        assert decide(SyncInputs(FLAT, signal, previous)).action == expected, signal
        previous = signal


def test_modelled_symbol_without_signal_is_an_input_error():
    with pytest.raises(SyncInputError, match="signal is required"):
        decide(SyncInputs(FLAT, None))


@pytest.mark.parametrize("direction,intensity", [(W, 1), (L, 4), (S, -1)])
def test_invalid_stance(direction, intensity):
    with pytest.raises(ValueError):
        Stance(direction, intensity)


def test_markdown_has_every_row():
    text = render_markdown()
    assert text.count("\n") == len(SYNC_TABLE) + 1
    for rule in SYNC_TABLE:
        assert rule.why in text


def test_readme_table_is_the_code_table():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "services" / "executor" / "README.md").read_text()
    start = readme.index("<!-- sync-table:start -->\n") + len("<!-- sync-table:start -->\n")
    end = readme.index("\n<!-- sync-table:end -->")
    assert readme[start:end] == render_markdown()


@pytest.mark.parametrize(("twin_previous", "first", "action", "reason"), [
    (None, False, SyncAction.WAIT_SYNC, "FIRST_SIGNAL"),  # unknown: a first signal
    (L, False, SyncAction.WAIT_SYNC, "FIRST_SIGNAL"),  # the move started before this bar
    (L, True, SyncAction.OPEN, "FIRST_SIGNAL"),
    (W, False, SyncAction.OPEN, "EDGE"),  # the twin turned LONG at this very bar, watched
    (S, False, SyncAction.OPEN, "EDGE"),
])
def test_first_signal_after_boot_reads_the_twins_previous_direction(twin_previous, first, action, reason):
    d = decide(SyncInputs(FLAT, LONG1, None, first, twin_previous=twin_previous))
    assert (d.action, d.reason) == (action, reason)


@pytest.mark.parametrize("twin_previous", [None, W, L, S])
def test_the_twins_previous_direction_is_ignored_once_a_signal_was_evaluated(twin_previous):
    for previous in (WAIT, LONG1, SHORT1):
        assert decide(SyncInputs(FLAT, LONG1, previous, twin_previous=twin_previous)) == \
            decide(SyncInputs(FLAT, LONG1, previous))


def test_the_first_live_bar_decides_the_same_with_or_without_the_warmups_last_signal():
    """The boot race: the warmup's last signal (read back, so without a previous direction) evaluated first, or
    not; then the first live signal, which says the twin's direction at the bar before."""
    for warm, live in itertools.product([WAIT, LONG1, SHORT1], [WAIT, LONG1, LONG3, SHORT1]):
        without = decide(SyncInputs(FLAT, live, None, twin_previous=warm.direction))
        first = decide(SyncInputs(FLAT, warm, None))
        assert first.action in (SyncAction.NOOP, SyncAction.WAIT_SYNC)  # the read-back signal never opens
        after = decide(SyncInputs(FLAT, live, warm, twin_previous=warm.direction))
        assert (without.action, without.rule in (7, 8)) == (after.action, after.rule in (7, 8)), (warm, live)
