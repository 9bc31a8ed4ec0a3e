"""The preditor in the whole system: orchestrator, every worker, the real connector on the bundled simulator (manual
clock). Its signals equal ``backtest.replay`` on the bars the simulator serves, bar for bar, across a kill -9 of the
preditor (re-handshaken by the orchestrator: load, warmup from snapshot + history; the bars that closed while it
was dead are signalled then, marked ``catch_up``) and a kill -9 of the connector (the orchestrator pushes
``preditor.warmup`` again; the new connector epoch makes the twin catch up).

The twin starts flat at the first warmup bar: the simulator starts at bar 1100, the warmup takes the 1000 closed
bars before it, so the backtest replays from CSV bar 100, on the bars the simulator serves (`served_bars`: the CSV's
prices, volume in ticks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from harness import Home, wait_for
from system.preditor_rig import SignalTap

from common import config
from services.connector.sim.catalog import CATALOG
from services.connector.sim.control import control
from services.connector.sim.replay import parse_csv
from services.connector.sim.series import served_bars
from services.preditor import backtest
from services.preditor.model_file import load_model

CSV = Path(__file__).resolve().parents[2] / "data" / "EURUSD_H1_2017.csv"
START_BAR = 1100
WARMUP = 1000


@pytest.fixture
def system(tmp_path):
    home = Home(tmp_path, {"broker": {"sim": {"speed": 0, "start_bar": START_BAR}}, "executor": {"dry_run": True},
                           "preditor": {"warmup_bars": WARMUP}})
    try:
        home.start("orchestrator")
        for s in config.WORKERS:
            home.start(s)
        home.wait_state("RUNNING", timeout=40)
        yield home
    finally:
        home.close()


def sim_bars() -> np.ndarray:
    """The EURUSD H1 bars the simulator serves, one per CSV bar, as the twin's (n, 6) array."""
    source = parse_csv(CSV.read_text())
    served = served_bars(source, CATALOG["EURUSD"], "H1", source[0].time, source[-1].time + 3600)
    assert len(served) == len(source)
    return np.array([[b.time, b.open, b.high, b.low, b.close, b.volume] for b in served])


def service(home: Home, name: str) -> dict:
    return home.status()["services"][name]


def test_signals_equal_the_backtest_with_the_real_connector_across_preditor_and_connector_kill9(system):
    home = system
    cfg = home.config()
    bars = sim_bars()
    torch.set_num_threads(1)
    model = load_model("models/EURUSD_H1.zip")
    sim = lambda cmd, **a: control(cfg.broker.sim.control_port, cmd, **a)  # noqa: E731
    tap = SignalTap(cfg)
    dead: set[int] = set()
    try:
        tap.poll(300)

        def advance(n: int, wait: bool = True) -> None:
            for _ in range(n):
                i = sim("status")["bar_index"]
                sim("advance", bars=1)
                if wait:
                    tap.wait_for("EURUSD", int(bars[i, 0]), timeout=15)
                else:
                    dead.add(int(bars[i, 0]))

        advance(30)
        killed_after = int(bars[sim("status")["bar_index"] - 1, 0])
        # kill -9 the preditor: the orchestrator re-handshakes the new process (load, warmup)
        before = service(home, "preditor")
        home.kill("preditor")
        advance(3, wait=False)
        home.start("preditor")
        wait_for(lambda: (lambda s: s["state"] == "RUNNING" and s["pid"] != before["pid"])(service(home, "preditor")),
                 60, "the restarted preditor RUNNING")
        tap.poll(300)
        advance(30)
        # kill -9 the connector: bars close while it is dead; the preditor catches up when it is back
        home.kill("connector")
        missed_by_connector = [int(bars[sim("status")["bar_index"] + k, 0]) for k in range(3)]
        sim("advance", bars=3)
        home.start("connector")
        wait_for(lambda: (lambda s: s["state"] == "RUNNING" and s["restarts"] >= 1)(service(home, "connector")),
                 60, "the restarted connector RUNNING")
        for t in missed_by_connector:  # published late by the connector, or caught up from history: signalled
            tap.wait_for("EURUSD", t, timeout=20)
        advance(20)
        tap.poll(500)
        last = sim("status")["bar_index"] - 1
    finally:
        tap.close()

    exp = {int(d.bar_time): d for d in backtest.replay(model, bars[START_BAR - WARMUP: last + 1])}
    live = {int(t) for t in bars[START_BAR: last + 1, 0]}
    got = {t for (_, t) in tap.by_key}
    # the bar before the kill goes out again (a catch-up) if the kill came before its snapshot
    assert all(s.bar_time == killed_after and s.catch_up for s in tap.duplicates), tap.duplicates
    assert got == live, f"missing {sorted(live - got)[:5]}, unexpected {sorted(got - live)[:5]}"
    assert all(tap.by_key[("EURUSD", t)].catch_up for t in dead)  # decided at the restart: marked
    for (_, t), sig in tap.by_key.items():
        d = exp[t]
        assert (sig.action, sig.direction, sig.intensity, sig.hmm_state) == (
            int(d.action), d.direction, d.intensity, d.hmm_state), f"bar {t}"
        assert sig.close == d.close and abs(sig.virtual_pnl - d.floating_pnl) <= 1e-9, f"bar {t}"
    # history is asked at warmups and catch-ups only, not at every bar (the connector's other topics are no gap)
    assert home.status_of("connector")["progress"].get("history_requests", 0) <= 3
    pred = home.status_of("preditor")
    assert pred["errors"] == [] and pred["models"]["EURUSD"]["last_bar"] == int(bars[last, 0])
    assert pred["models"]["EURUSD"]["restored"].startswith("snapshot restored")
    state = home.status()
    assert state["system"] == "RUNNING", state.get("issues")
    hb_view = state["services"]["preditor"]
    assert hb_view["restarts"] >= 1
