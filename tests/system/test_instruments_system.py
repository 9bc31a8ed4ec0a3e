"""Models of lower and higher timeframes, a cross and an account in euros, through the whole system: orchestrator,
every worker, the real connector on the simulator (manual clock). The fixture models (tests/fixtures/models/) were
trained by the project's trainer on the bars the simulator serves; the preditor's signals equal
``backtest.replay`` on exactly those bars (`served_bars`), bar for bar.

- XAUUSD (gold, a daily break: no bar in it) on M15 and EURUSD on H4 at once: the connector publishes each symbol on
  its model's timeframe (subscribed by the preditor), bars of both built from one tick stream per symbol;
- EURGBP (a cross) on M15 on a EUR account: it trades, and its money is in euros (the GBP profit converted at the
  broker's chain, EURGBP itself).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from harness import REPO, Home, wait_for
from system.preditor_rig import SignalTap

from common import config, messages
from services.connector.sim.catalog import CATALOG
from services.connector.sim.control import control
from services.connector.sim.replay import parse_csv
from services.connector.sim.series import served_bars
from services.preditor import backtest
from services.preditor.model_file import load_model

pytestmark = pytest.mark.slow

FIXTURES = REPO / "tests" / "fixtures" / "models"
CSV = REPO / "data" / "EURUSD_H1_2017.csv"
START_BAR = 4000  # Tuesday 2017-08-22 13:00 UTC: more than 400 H4 bars of history before it
WARMUP = 400


def boot(tmp_path: Path, models: list[str], overlay: dict) -> Home:
    models_dir = tmp_path / "fixture-models"
    models_dir.mkdir()
    for name in models:
        shutil.copy(FIXTURES / name, models_dir / name)
    home = Home(tmp_path, config.merge({"broker": {"sim": {"speed": 0, "start_bar": START_BAR}},
                                        "preditor": {"warmup_bars": WARMUP, "models_dir": str(models_dir)}},
                                       overlay))
    try:
        home.start("orchestrator")
        for s in config.WORKERS:
            home.start(s)
        home.wait_state("RUNNING", timeout=90)
    except BaseException:
        home.close()  # no process outlives a system that did not boot
        raise
    return home


def sim_deals(home: Home) -> dict[int, dict]:
    """The simulator's closing deals by position."""
    deals = control(home.config().broker.sim.control_port, "deals")["deals"]
    return {d["position_id"]: d for d in deals if d["closing"]}


def served(symbol: str, timeframe: str) -> np.ndarray:
    source = parse_csv(CSV.read_text())
    bars = served_bars(source, CATALOG[symbol], timeframe, source[0].time, source[-1].time + 3600)
    return np.array([[b.time, b.open, b.high, b.low, b.close, b.volume] for b in bars])


def assert_equal_to_backtest(tap: SignalTap, symbol: str, model_file: str, bars: np.ndarray, tf_s: int, start: int,
                             last: int) -> int:
    """The live signals of `symbol` equal the backtest from the warmup's first bar; how many were compared."""
    first = int(np.searchsorted(bars[:, 0], start - tf_s, side="right"))  # the first bar not closed at the boot
    exp = {int(d.bar_time): d for d in backtest.replay(load_model(str(FIXTURES / model_file)),
                                                       bars[first - WARMUP: last + 1])}
    live = {int(t) for t in bars[first: last + 1, 0]}
    got = {t for (s, t) in tap.by_key if s == symbol}
    assert got == live, f"{symbol}: missing {sorted(live - got)[:5]}, unexpected {sorted(got - live)[:5]}"
    for t in sorted(got):
        sig, d = tap.by_key[(symbol, t)], exp[t]
        assert (sig.action, sig.direction, sig.intensity, sig.hmm_state) == (
            int(d.action), d.direction, d.intensity, d.hmm_state), f"{symbol} bar {t}"
        assert sig.close == d.close and abs(sig.virtual_pnl - d.floating_pnl) <= 1e-9, f"{symbol} bar {t}"
    return len(got)


def test_m15_and_h4_models_live_at_once_equal_the_backtest(tmp_path):
    torch.set_num_threads(1)
    home = boot(tmp_path, ["XAUUSD_M15.zip", "EURUSD_H4.zip"], {"executor": {"dry_run": True}})
    cfg = home.config()
    start = parse_csv(CSV.read_text())[START_BAR].time
    gold, eurusd = served("XAUUSD", "M15"), served("EURUSD", "H4")
    tap = SignalTap(cfg)
    try:
        tap.poll(300)
        for _ in range(30):  # 30 H1 bars: 120 M15 bars less gold's daily break, 7 H4 bars
            control(cfg.broker.sim.control_port, "advance", bars=1)
        now = control(cfg.broker.sim.control_port, "status")["server_time"]
        last_gold = int(np.searchsorted(gold[:, 0], now - 900, side="right")) - 1  # the last M15 bar closed
        last_h4 = int(np.searchsorted(eurusd[:, 0], now - 14_400, side="right")) - 1
        tap.wait_for("XAUUSD", int(gold[last_gold, 0]), timeout=30)
        tap.wait_for("EURUSD", int(eurusd[last_h4, 0]), timeout=30)
        tap.poll(300)
    finally:
        tap.close()
    try:
        assert not tap.duplicates
        n_gold = assert_equal_to_backtest(tap, "XAUUSD", "XAUUSD_M15.zip", gold, 900, start, last_gold)
        n_h4 = assert_equal_to_backtest(tap, "EURUSD", "EURUSD_H4.zip", eurusd, 14_400, start, last_h4)
        assert n_gold >= 100 and n_h4 >= 6
        subs = home.status_of("connector")["subscriptions"]
        assert "M15" in subs["XAUUSD"] and "H4" in subs["EURUSD"]
        assert home.status()["system"] == "RUNNING"  # gold's daily break: no bar, and no stale-bar alarm
    finally:
        home.close()


def test_a_eurgbp_model_trades_on_a_eur_account(tmp_path):
    torch.set_num_threads(1)
    symbols = json.loads((REPO / "config" / "executor_symbols.json").read_text())
    symbols["EURGBP"] = {**symbols["EURUSD"], "enabled": True}
    cfg_path = tmp_path / "executor_symbols.json"
    cfg_path.write_text(json.dumps(symbols))
    home = boot(tmp_path, ["EURGBP_M15.zip"], {"broker": {"sim": {"deposit_currency": "EUR"}},
                                                "executor": {"config_file": str(cfg_path)}})
    cfg = home.config()
    try:
        info = home.request("connector", "symbol_info", messages.SymbolArgs("EURGBP"), timeout_ms=10_000)
        assert info.deposit_currency == "EUR" and info.quote_asset == "GBP"
        assert info.quote_to_deposit == pytest.approx(1 / info.bid)  # GBP -> EUR along EURGBP itself
        for _ in range(48):  # two days of M15 bars
            control(cfg.broker.sim.control_port, "advance", bars=1)
        stored = lambda: home.request("persistence", "query", messages.QueryArgs("trades", {}, 0),  # noqa: E731
                                      timeout_ms=5000).records
        closes = wait_for(lambda: [t for t in stored() if not t["is_paper"] and t["action"] == "CLOSE"], 60,
                          "a real EURGBP trade closed")
        deals = sim_deals(home)
        for t in closes:
            deal = deals[int(t["position_id"])]
            # the gross profit in euros: the GBP move over the volume, at the EURGBP rate when it closed
            gbp = (t["exit_price"] - t["entry_price"]) * t["direction"] * t["volume"] * 100_000
            gross = t["pnl"] + t["commission"] - t["swap"]  # the store keeps net = gross - commission + swap
            assert gross == pytest.approx(gbp * deal["quote_to_deposit"], abs=0.02), t
            assert gross == pytest.approx(deal["gross_profit"] / 100), t
            assert deal["quote_to_deposit"] == pytest.approx(1 / t["exit_price"], rel=0.01)
        account = home.request("connector", "account", timeout_ms=5000)
        assert account.currency == "EUR"
        assert home.status()["system"] == "RUNNING"
    finally:
        home.close()
