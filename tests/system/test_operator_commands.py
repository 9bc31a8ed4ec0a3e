"""The operator's commands on the whole system under the real supervisord: after the risk guard's emergency drawdown
halt, `oracle ctl` alone (run as a subprocess, as a person would) brings the executor back to opening positions.

The simulator runs on a manual clock (speed 0) and the test advances it one bar at a time through its control port;
the preditor decides with the bundled model, so the signals are the same at every run."""

from __future__ import annotations

import json

import pytest
from harness import Home, wait_for
from system.trading_rig import Listener, cleanup, symbols_config

from common import messages
from services.connector.sim.control import control

pytestmark = pytest.mark.slow

OVERLAY = {
    "broker": {"sim": {"speed": 0}},
    "runtime": {"request_timeout_ms": 5000},
    "orchestrator": {"heartbeat_timeout_s": 10.0, "step_timeout_s": 60},
    "connector": {"account_interval_s": 1.0},
}
MAX_BARS = 300  # the bundled model opens within a few dozen bars of this stretch


def ctl(home: Home, *argv: str) -> dict:
    res = home.oracle("ctl", *argv, "--json", "--timeout-ms", "10000")
    assert res.returncode == 0, (argv, res.stdout, res.stderr)
    result = json.loads(res.stdout)
    assert result["ok"], result
    return result["reply"]


class Market:
    """The simulator's clock, moved one bar at a time; each bar's signal and the executor's acks for it."""

    def __init__(self, home: Home):
        self.port = home.config().broker.sim.control_port
        self.signals = Listener(home, "preditor", ("signal.",))
        self.acks = Listener(home, "executor", ("ack.",))
        self.signals.wait_live(30)
        self.acks.wait_live(30)

    def bar(self) -> None:
        """One bar closes; returns once the executor has acked its signal."""
        heard = len(self._signals())
        control(self.port, "advance", bars=1)
        signal = wait_for(lambda: self._signals()[heard:], 60, "the bar's signal")[0]
        self.acks.wait_ack(signal.bar_time, timeout=30)

    def _signals(self) -> list[messages.Signal]:
        return [s for s in self.signals.poll() if isinstance(s, messages.Signal)]

    def until(self, done, what: str) -> None:
        """Advance bar by bar until the acks heard since this call satisfy `done`."""
        start = len(self.acks.poll())
        for _ in range(MAX_BARS):
            self.bar()
            if done([a for a in self.acks.poll()[start:] if isinstance(a, messages.Ack)]):
                return
        raise AssertionError(f"no {what} within {MAX_BARS} bars")

    def positions(self) -> list[dict]:
        return control(self.port, "status")["positions"]

    def opening_deals(self) -> int:
        return sum(not d["closing"] for d in control(self.port, "deals")["deals"])

    def close(self) -> None:
        cleanup(self.signals, self.acks)


def opened(acks: list[messages.Ack]) -> bool:
    return any(a.details.get("action") == "OPEN" and a.status == "OK" for a in acks)


def refused_halted(acks: list[messages.Ack]) -> bool:
    return any(a.details.get("action") == "OPEN" and (a.status, a.reason) == ("SKIP", "HALTED") for a in acks)


@pytest.fixture
def system(tmp_path):
    pytest.importorskip("torch")
    home = Home(tmp_path, OVERLAY)
    symbols_config(home, enter_on_first_signal=True)
    home.start_supervisord()
    market = None
    try:
        home.wait_state("RUNNING", timeout=180)
        market = Market(home)
        yield home, market
    finally:
        if market is not None:
            market.close()
        home.close()


@pytest.mark.timeout(600)
def test_after_an_emergency_drawdown_halt_oracle_ctl_alone_restores_openings(system):
    home, market = system
    limits = json.loads((home.root / "config" / "executor_symbols.json").read_text())["_risk"]

    # trading: the model opens a position; its spread and commission are a loss against the session start
    market.until(opened, "opening")
    assert market.positions()
    # the emergency: any loss is beyond the limits now; the next equity update halts and closes everything
    ctl(home, "set-risk-config", "dd_limit_pct=0.0001", "dd_emergency_pct=0.0001")
    status = wait_for(lambda: (lambda r: r if r["halted"] else None)(ctl(home, "executor-status")), 30,
                      "the executor halted")
    assert status["halt_reason"] == "EMERGENCY_DD"
    wait_for(lambda: market.positions() == [], 30, "the emergency close of every position")
    wait_for(lambda: "oracle ctl reset-halt" in home.oracle("ctl", "status").stdout, 10,
             "the halt shown by oracle ctl status (from the executor's heartbeat)")
    # halted: the model's next opening is refused
    market.until(refused_halted, "opening refused as HALTED")
    assert market.positions() == []

    # a person decides, with oracle ctl only: the limits back, the halt lifted
    risk = ctl(home, "set-risk-config", f"dd_limit_pct={limits['dd_limit_pct']}",
               f"dd_emergency_pct={limits['dd_emergency_pct']}")["risk"]
    assert (risk["dd_limit_pct"], risk["dd_emergency_pct"]) == (limits["dd_limit_pct"], limits["dd_emergency_pct"])
    assert ctl(home, "reset-halt") == {"command": "reset_halt", "halted": False, "was": "EMERGENCY_DD"}
    assert ctl(home, "executor-status")["halted"] is False
    text = home.oracle("ctl", "executor-status", "--timeout-ms", "10000")  # as a person reads it
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("executor executor-status: done\n") and "\n  halted: false\n" in text.stdout
    wait_for(lambda: "reset-halt" not in home.oracle("ctl", "status").stdout, 10, "oracle ctl status without the halt")

    # trading again: an opening reaches the broker
    before = market.opening_deals()
    market.until(opened, "opening after reset-halt")
    wait_for(lambda: market.opening_deals() > before, 10, "an opening deal at the broker")
    assert home.status()["system"] in (messages.RUNNING, messages.DEGRADED)
