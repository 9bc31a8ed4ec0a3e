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
    """Block on the SUB socket until the ack of this bar arrives; the time it took."""
    t0 = time.perf_counter()
    while True:
        assert rig.acks.sub.sock.poll(10_000), "no ack in 10 s"
        for r in rig.acks.sub.drain():
            if isinstance(r.envelope.body, messages.Ack) and r.envelope.body.bar_time == bar_time:
                return (time.perf_counter() - t0) * 1000, r.envelope.body


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
