from __future__ import annotations

import pytest

from services.connector.ctrader import periods as timeframes
from services.connector.ctrader.bars import LiveBarDetector, closed_only, merge_history
from services.connector.ctrader.ratelimit import SlidingWindow
from services.connector.port import Bar


def bar(t: int, c: float = 1.0) -> Bar:
    return Bar("EURUSD", "", t, 1.0, 1.0, 1.0, c, 0.0)


@pytest.mark.parametrize(("name", "period", "seconds"), [
    ("M1", 1, 60), ("M5", 5, 300), ("M15", 7, 900), ("H1", 9, 3600), ("H4", 10, 14400), ("D1", 12, 86400),
])
def test_timeframes(name: str, period: int, seconds: int) -> None:
    assert timeframes.period_of(name) == period
    assert timeframes.seconds_of(name) == seconds
    assert timeframes.name_of(period) == name


def test_unknown_timeframe() -> None:
    with pytest.raises(ValueError):
        timeframes.period_of("W1")


@pytest.mark.parametrize(("server_time", "kept"), [
    (7200, [0, 3600]),      # both periods ended exactly
    (7199, [0]),            # the 3600 bar is still forming
    (3599, []),
])
def test_closed_only(server_time: int, kept: list[int]) -> None:
    assert [b.time for b in closed_only([bar(0), bar(3600)], 3600, server_time)] == kept


def test_merge_history_dedupes_and_sorts() -> None:
    merged = merge_history([[bar(7200), bar(10800)], [bar(0), bar(3600), bar(7200, 2.0)]])
    assert [b.time for b in merged] == [0, 3600, 7200, 10800]


# (snapshot open time or None for a server-time-only update, server time, expected emitted open times)
DETECTOR_CASES = [
    ("first snapshot only initialises", [(0, 10)], []),
    ("new bar closes the previous", [(0, 10), (0, 2000), (3600, 3600)], [0]),
    ("server time past the end closes without a new bar", [(0, 10), (None, 3600)], [0]),
    ("server time inside the bar does not", [(0, 10), (None, 3599)], []),
    ("weekend gap: next bar days later", [(0, 10), (3 * 86400, 3 * 86400)], [0]),
    ("stale snapshot ignored", [(3600, 3700), (0, 3700)], []),
    ("no duplicate after time close + new bar", [(0, 10), (None, 3600), (3600, 3600), (3600, 3700)], [0]),
    ("consecutive bars", [(0, 0), (3600, 3600), (7200, 7200), (10800, 10800)], [0, 3600, 7200]),
]


@pytest.mark.parametrize(("label", "steps", "expected"), DETECTOR_CASES, ids=[c[0] for c in DETECTOR_CASES])
def test_live_bar_detector(label: str, steps: list[tuple[int | None, int]], expected: list[int]) -> None:
    det = LiveBarDetector("EURUSD", 3600)
    out: list[Bar] = []
    for t, server in steps:
        out += det.on_server_time(server) if t is None else det.on_snapshot(bar(t), server)
    assert [b.time for b in out] == expected


def test_detector_emits_last_snapshot_and_respects_last_emitted() -> None:
    det = LiveBarDetector("EURUSD", 3600, last_emitted=3600)
    assert det.on_snapshot(bar(3600, 1.1)) == []
    assert det.on_snapshot(bar(7200, 1.2)) == []          # 3600 already delivered before
    assert det.on_snapshot(bar(7200, 1.3)) == []
    assert det.on_snapshot(bar(10800)) == [bar(7200, 1.3)]  # the latest snapshot of the closed bar


@pytest.mark.parametrize(("limit", "sent", "now", "delay"), [
    (5, [], 0.0, 0.0),
    (5, [0.0, 0.1, 0.2, 0.3], 0.5, 0.0),
    (5, [0.0, 0.1, 0.2, 0.3, 0.4], 0.5, 0.5),
    (5, [0.0, 0.1, 0.2, 0.3, 0.4], 1.05, 0.0),  # the oldest left the window
    (2, [0.9, 1.0], 1.5, 0.4),
])
def test_sliding_window(limit: int, sent: list[float], now: float, delay: float) -> None:
    w = SlidingWindow(limit)
    for t in sent:
        w.record(t)
    assert w.delay(now) == pytest.approx(delay)
