"""The whole system trading: orchestrator, persistence, preditor, executor, paper and connector as real processes
against the simulator, booted through the handshakes. The simulator's clock is advanced by the test, one bar at a
time; every signal the preditor publishes gets an ack from the executor and a step of the paper account."""

from __future__ import annotations

import pytest
from harness import wait_for
from system.trading_rig import Ledger, Listener, preditor_signals, trading_system

from common import config, messages

N_BARS = 40


@pytest.fixture
def system(tmp_path):
    pytest.importorskip("torch")
    with trading_system(tmp_path, {"connector": {"account_interval_s": 1.0}}) as system:
        yield system


def test_signals_become_acks_orders_and_paper_trades(system):
    home, sim, listeners = system
    signals = Listener(home, "preditor", ("signal.",))  # before the boot: a subscriber reconnects by itself
    acks = Listener(home, "executor", ("ack.", "hb.executor"))
    paper = Listener(home, "paper", ("paper.metrics.",))
    listeners += [signals, acks, paper]
    for service in ("orchestrator", *config.WORKERS):
        home.start(service)
    home.wait_state("RUNNING", timeout=90)
    ledger = Ledger(sim)

    for i in range(N_BARS):
        if i == N_BARS // 2:  # kill -9 both, as a crash would; the orchestrator re-handshakes the new processes
            # first everything so far is acked and stored (what a kill loses from memory is tested elsewhere)
            heard = [s for s in signals.poll() if isinstance(s, messages.Signal)]
            for s in heard:
                acks.wait_ack(s.bar_time, timeout=20)
            for service in ("executor", "paper"):
                wait_for(lambda sv=service: home.status_of(sv)["outbox"]["pending"] == 0, 20,
                         f"{service} outbox empty")
            for service in ("executor", "paper"):
                home.kill(service)
                home.start(service)
            wait_for(lambda: all(home.status()["services"][s]["restarts"] == 1 and
                                 home.status()["services"][s]["state"] == "RUNNING" for s in ("executor", "paper")),
                     30, "executor and paper back")
            executor = home.status_of("executor")
            assert executor["synced"] is True
            wait_for(lambda e=executor["epoch"]: any(isinstance(h, messages.Heartbeat) and h.epoch == e
                                                     for h in acks.poll()), 10, "the new executor heard")
            assert home.status_of("paper")["restored"] is True
        before = preditor_signals(home)
        sim.advance_bar()
        wait_for(lambda b=before: preditor_signals(home) > b, 30, "the bar's signal")
        ledger.sample()

    def all_signals() -> list[messages.Signal]:
        return [s for s in signals.poll() if isinstance(s, messages.Signal)]

    got = wait_for(lambda: (lambda g: g if len(g) == preditor_signals(home) else None)(all_signals()), 10,
                   "every signal heard")
    assert len(got) >= N_BARS
    for s in got:  # every signal acked
        assert acks.wait_ack(s.bar_time, timeout=20)
    wait_for(lambda: home.status_of("paper")["accounts"]["EURUSD"]["last_bar_time"] == got[-1].bar_time,
             20, "paper at the last signal")
    assert [m.symbol for m in paper.poll() if isinstance(m, messages.PaperMetrics)]
    opened = [a for s in got for a in acks.acks_for(s.bar_time) if a.details.get("action") == "OPEN"]
    assert opened and all(a.status == "OK" for a in opened)  # the bundled model trades on this stretch
    latency = home.status_of("connector")["bar_to_order_ms"]  # bar close -> order sent, a sample per order
    assert latency["count"] >= len(opened) and 0 < latency["p50"] <= latency["max"]
    cids = [a.details["client_order_id"] for a in opened]
    assert len(cids) == len(set(cids))
    # no order twice: one opening deal at the broker per acked open (a position may open and hit its SL
    # between two samples here, so the deals are counted rather than the positions seen)
    assert sum(not d["closing"] for d in sim.saved()["deals"]) == len(cids)
    assert set(ledger.labels.values()) <= set(cids)

    def stored(table: str) -> list[dict]:
        return home.request("persistence", "query", messages.QueryArgs(table, {}, 0)).records

    wait_for(lambda: len(stored("signals")) == len(got), 20, "signals stored")
    wait_for(lambda: len(stored("acks")) >= len(got), 20, "acks stored")
    paper_account = home.status_of("paper")["accounts"]["EURUSD"]
    still_open = int(paper_account["position"]["direction"] != 0)

    def paper_records(action: str) -> int:
        return len([t for t in stored("trades") if t["is_paper"] and t["action"] == action])

    # one CLOSE record per paper trade, one OPEN record per position opened (the open one too)
    wait_for(lambda: (paper_records("CLOSE"), paper_records("OPEN")) == (paper_account["trades"],
                                                                         paper_account["trades"] + still_open),
             20, "paper trades and openings stored")
    assert home.status_of("persistence")["progress"].get("records_rejected", 0) == 0  # ids are stable
    # a real opening's record says which signal made it: its intensity and HMM state, read from the order's comment
    def real_opens() -> dict[str, dict]:
        return {t["client_order_id"]: t for t in stored("trades") if not t["is_paper"] and t["action"] == "OPEN"}

    wait_for(lambda: set(cids) <= set(real_opens()), 20, "the real openings stored")
    stored_opens = real_opens()
    for a in opened:
        sig = next(s for s in got if s.bar_time == a.bar_time)
        t = stored_opens[a.details["client_order_id"]]
        assert (t["intensity"], t["hmm_state"]) == (sig.intensity, sig.hmm_state), (t, sig)
    # a real close's result in pips, from its prices and EURUSD's pip
    real_closes = [t for t in stored("trades") if not t["is_paper"] and t["action"] == "CLOSE"]
    assert real_closes  # the stretch closes positions (by signal and at the stop loss)
    for t in real_closes:
        assert t["pnl_pips"] == pytest.approx(t["direction"] * (t["exit_price"] - t["entry_price"]) / 0.0001,
                                              abs=0.06), t
    # the costs in the ledger: each close's commission (both sides) and swap, its net PnL the broker's
    deals = {d["position_id"]: d for d in sim.saved()["deals"] if d["closing"]}
    for t in real_closes:
        deal = deals[int(t["position_id"])]
        assert t["commission"] == pytest.approx(-deal["realised_commission"] / 100) and t["commission"] > 0, t
        assert t["swap"] == pytest.approx(deal["swap"] / 100), t
        assert t["pnl"] == pytest.approx((deal["gross_profit"] + deal["swap"] + deal["realised_commission"]) / 100), t
    executor = home.status_of("executor")
    assert executor["last_bar_time"] == {"EURUSD": got[-1].bar_time}
    status = home.status()
    assert status["system"] == "RUNNING", status.get("issues")
