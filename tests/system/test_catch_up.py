"""Paper equals the backtest across kills of the preditor and of paper while bars close (issue 14, item 6).

The whole system under the real supervisord (tests/system/chaos_rig.py), the simulator on a manual clock. A process
is "down while bars close" by freezing it (SIGSTOP, waited for until the kernel says it is stopped), closing the
bars (waited for until the connector has published them), then killing it (SIGKILL): what it would have heard is
lost with it. The orchestrator's heartbeat timeout is raised so that its watchdog leaves the frozen process to the
test.

- Bars 10-11 close with paper down (the preditor decides them, live); bars 12-14 with the preditor down too; then
  both are killed -9 and come back: the preditor restores its snapshot (bar 11) and publishes the decisions of bars
  12-14 marked ``catch_up``; paper asks ``signals_since`` its last bar (9) and simulates bars 10-14, each at its bar.
- Bars 25-27 close with the preditor down, paper up: paper simulates each catch-up signal at its bar.
- Bars 32-33 close with paper down alone.
- Bars 35-39 close while the broker connection is lost (the simulator refuses it): at the reconnect the connector
  fills them from the broker's trendbar history and publishes each symbol's as ONE run (``bars.<SYM>.<TF>``), the
  preditor steps the run and publishes its signals as one run, paper simulates each at its bar, the executor records
  each and acts on the latest only (acks for bar 39 alone).

At the end each symbol's paper trades equal ``backtest.replay``'s trades over the same bars (exit time, direction,
prices, PnL), the stored signals are the backtest's decisions for every bar (catch-up ones recorded by the executor),
and the executor did not act on a catch-up signal of a past bar: after each restart its last bar is the latest one.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
import yaml
from harness import wait_for
from system.chaos_rig import SYMBOLS, Replay
from system.sub_reader import SubReader
from system.test_chaos import backtest

from common import config, messages

pytestmark = pytest.mark.slow

N_BARS = 40
BOTH_DOWN = (10, 12, 15)  # paper down from bar 10, the preditor from bar 12; both back before bar 15
PREDITOR_DOWN = (25, 28)  # the preditor down for bars 25-27
PAPER_DOWN = (32, 34)  # paper down for bars 32-33
CATCH_UP = range(35, 40)  # closed while the connector is cut off from the broker: filled from history, as runs


def frozen(pid: int) -> bool:
    """The kernel reports the process stopped (state T)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] in "Tt"


class Bars:
    """The bars the connector published, by (symbol, bar time) (a SUB of its own)."""

    def __init__(self, endpoint: str):
        self.seen: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self.reader = SubReader([endpoint], ["bar."], self._take)

    def _take(self, got: list, _at: float) -> None:
        with self._lock:
            for r in got:
                if isinstance(r.envelope.body, messages.Bar):
                    self.seen.add((r.envelope.body.symbol, r.envelope.body.time))

    def published(self, bar_time: int) -> bool:
        with self._lock:
            return all((s, bar_time) in self.seen for s in SYMBOLS)


class CatchUpReplay(Replay):
    """The chaos rig's replay, with processes held down while bars close."""

    def __post_init__(self) -> None:
        super().__post_init__()
        # the watchdog leaves a frozen process to the test (it is killed by the test, not for its silence)
        local = self.root / "config" / "local.yaml"
        self.home.write_overlay(config.merge(yaml.safe_load(local.read_text()), {"orchestrator": {
            "heartbeat_timeout_s": 600, "stall_timeout_s": 600}}))
        self.bus_bars = Bars(self.home.config().endpoint("connector", "pub"))
        self.down: dict[str, int] = {}  # frozen services: their pid

    def close(self) -> None:
        self.bus_bars.reader.close()
        super().close()

    def freeze(self, service: str) -> None:
        pid = self.home.pid_of(service)
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: frozen(pid), 10, f"{service} stopped", interval=0.01)
        self.down[service] = pid
        self.note(f"{service} down (pid {pid})")

    def close_bar(self) -> int:
        """Close one bar; wait until the connector published it and the services up have settled on it."""
        bar_time = self.bars[self.sim("status")["bar_index"]].time
        self.sim("advance", bars=1)
        self.closed.append(bar_time)
        wait_for(lambda: self.bus_bars.published(bar_time), 30, f"bar {bar_time} published", interval=0.01)
        if "preditor" not in self.down:
            def decided() -> bool:
                pred = self.status_of("preditor")
                return all(pred["models"][s]["last_bar"] == bar_time for s in SYMBOLS) and not pred["pending_bars"]
            wait_for(decided, 30, f"bar {bar_time} decided", interval=0.02)
        if not self.down:
            wait_for(lambda: all(a["last_bar_time"] == bar_time
                                 for a in self.status_of("paper")["accounts"].values()),
                     30, f"bar {bar_time} simulated", interval=0.02)
        return bar_time

    def catch_up(self, n: int) -> list[int]:
        """Close ``n`` bars while the broker refuses the connector; let it reconnect and wait until the system has
        settled on the last of them (the connector filled them from history); their times."""
        self.sim("drop", refuse_s=3600)
        wait_for(lambda: not self.status_of("connector")["broker"]["connected"], 30, "the connector disconnected",
                 interval=0.02)
        index = self.sim("status")["bar_index"]
        self.sim("advance", bars=n)
        times = [self.bars[index + k].time for k in range(n)]
        self.closed += times
        self.note(f"bars {index}..{index + n - 1} closed while disconnected")
        self.sim("clear")
        wait_for(self._reconnected, 30, "the connector reconnected", interval=0.05)
        self.settle(times[-1], timeout=90)
        return times

    def kill_down(self) -> None:
        """Kill -9 the frozen services; wait until supervisord ran new ones and the system is RUNNING with them."""
        for service, pid in self.down.items():
            os.kill(pid, signal.SIGKILL)
            self.note(f"kill -9 {service}")
        for service, pid in self.down.items():
            self._back(service, pid, timeout=60)
        self.down.clear()
        self.note("back")


def test_paper_equals_the_backtest_with_preditor_and_paper_killed_while_bars_close(tmp_path):
    pytest.importorskip("torch")
    replay = CatchUpReplay(tmp_path)
    progress: dict[str, dict] = {}
    try:
        replay.boot()
        for i in range(N_BARS):
            if i in CATCH_UP:
                if i == CATCH_UP.start:
                    runs_before = {s: replay.status_of(s)["progress"] for s in ("connector", "preditor", "executor")}
                    catch_up = replay.catch_up(len(CATCH_UP))
                    progress["catch-up"] = {s: {k: v - runs_before[s].get(k, 0)
                                                for k, v in replay.status_of(s)["progress"].items()
                                                if isinstance(v, int | float)}
                                            for s in ("connector", "preditor", "executor")}
                continue
            if i == BOTH_DOWN[0]:
                replay.freeze("paper")
            if i == BOTH_DOWN[1]:
                replay.freeze("preditor")
            if i in (PREDITOR_DOWN[0],):
                replay.freeze("preditor")
            if i in (PAPER_DOWN[0],):
                replay.freeze("paper")
            if i in (BOTH_DOWN[2], PREDITOR_DOWN[1], PAPER_DOWN[1]):
                replay.kill_down()
                replay.settle(replay.closed[-1], timeout=90)  # decided, acted on, simulated, durable
                ex = replay.status_of("executor")
                assert all(ex["last_bar_time"][s] == replay.closed[-1] for s in SYMBOLS)
                progress[f"bar {i}"] = {s: replay.status_of(s)["progress"] for s in ("preditor", "paper")}
            if replay.down:
                replay.close_bar()
            else:
                replay.step()
        replay.note(f"{N_BARS} bars settled")
        outcome = replay.outcome()
    except BaseException:
        print("\n".join(["the replay so far:", *replay.log]))
        raise
    finally:
        replay.close()
    print("\n".join(replay.log))
    exp = backtest(N_BARS)
    assert outcome.bars == replay.closed and len(outcome.bars) == N_BARS
    # the restarts went through the catch-up paths
    both, pred_only, paper_only = (progress[f"bar {i}"] for i in (BOTH_DOWN[2], PREDITOR_DOWN[1], PAPER_DOWN[1]))
    assert both["preditor"].get("catch_up_signals_sent", 0) >= 3 * len(SYMBOLS), both
    assert both["paper"].get("signals_missed", 0) >= 5 * len(SYMBOLS), both
    assert pred_only["preditor"].get("catch_up_signals_sent", 0) >= 3 * len(SYMBOLS), pred_only
    assert paper_only["paper"].get("signals_missed", 0) >= 2 * len(SYMBOLS), paper_only
    # the catch-up went as runs, one per symbol at each hop, and the executor acted on its latest signals only
    runs = progress["catch-up"]
    n = len(SYMBOLS)
    assert runs["connector"]["bar_runs_published"] == n and runs["connector"]["bars_published"] == n * len(CATCH_UP)
    assert runs["preditor"]["bar_runs"] == n and runs["preditor"]["signals_sent"] == n * len(CATCH_UP)
    assert runs["executor"]["signal_runs_seen"] == n and runs["executor"]["signals_seen"] == n * len(CATCH_UP)
    acked = {(a[0], a[1]) for a in outcome.acks if a[1] in catch_up}
    assert acked == {(s, catch_up[-1]) for s in SYMBOLS}
    # every bar's signal is the backtest's decision (the catch-up ones recorded too)
    assert sorted(outcome.signals) == sorted((s, t) for s in SYMBOLS for t in outcome.bars)
    for key, (_action, direction, intensity, hmm_state, close, _pnl) in sorted(outcome.signals.items()):
        d = exp["decisions"][key]
        assert (direction, intensity, hmm_state, close) == (d.direction, d.intensity, d.hmm_state, d.close), key
    # each symbol's paper account made the backtest's trades, float for float
    live = set(outcome.bars)
    for sym in SYMBOLS:
        want = sorted((t.exit_time, t.direction, t.entry_price, t.exit_price, round(t.pnl, 6))
                      for t in exp["trades"][sym] if t.exit_time in live)
        got = sorted((bar_time, direction, entry, exit_, pnl)
                     for bar_time, _ts, s, a, direction, _i, _h, _v, entry, exit_, pnl, _p, _c in outcome.paper_trades
                     if s == sym and a == "CLOSE")
        assert got == want, sym
        # and each opening is stored once, at the backtest's entry bar (none lost or doubled across the kills); the
        # one opening not in the backtest's closed trades can be the position still open at the end
        opened = [bar_time for bar_time, _ts, s, a, *_ in outcome.paper_trades if s == sym and a == "OPEN"]
        entries = {t.entry_time for t in exp["trades"][sym] if t.entry_time in live}
        assert len(opened) == len(set(opened)) and entries <= set(opened), sym
        assert len(set(opened) - entries) <= 1, sym
        assert outcome.paper_account[sym][1] == len(want), sym
    assert sum(len(t) for t in exp["trades"].values()) >= 3  # the stretch has trades to compare
