"""Signal -> ack latency of the executor with the real connector and simulator (a measurement: BENCHMARKS.md).

Run: .venv/bin/pytest tests/system/test_executor_latency.py -m slow -s
"""

from __future__ import annotations

import statistics
import time

import pytest
from system.test_executor_sim import BARS, LONG, WAIT, Rig

from common import messages

PATTERN = [WAIT, LONG, LONG, WAIT]  # flat (no order), edge (open), synced (no order), close


def ack_after(rig: Rig, bar_time: int) -> tuple[float, messages.Ack]:
    """Wait for the ack of this bar; the time from now to its receipt (the listener's thread stamps it)."""
    t0 = time.perf_counter()
    rig.acks.wait_ack(bar_time, timeout=10)
    received, ack = rig.acks.ack_arrivals(bar_time)[-1]
    return (received - t0) * 1000, ack


@pytest.mark.slow
def test_signal_to_ack_latency(tmp_path):
    rig = Rig(tmp_path)
    by_action: dict[str, list[float]] = {}
    try:
        for i in range(80):
            bar = BARS[rig.sim.advance_bar()["bar_index"] - 1]
            time.sleep(0.05)  # the bar's ticks have reached the connector
            rig.pred.signal(bar, PATTERN[i % len(PATTERN)], 1)
            ms, ack = ack_after(rig, bar.time)
            if i >= len(PATTERN):  # the first round warms up
                by_action.setdefault(str(ack.details.get("action")), []).append(ms)
    finally:
        rig.close()
    for action, values in sorted(by_action.items()):
        q = statistics.quantiles(values, n=20)
        print(f"{action:16s} n={len(values):3d} median {statistics.median(values):6.1f} ms  p95 {q[-1]:6.1f} ms")
    assert statistics.median(by_action["OPEN"]) < 1000
