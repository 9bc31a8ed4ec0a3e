import csv
import json
from pathlib import Path

import pytest

from common.twin.bars import load_bars_csv
from common.twin.twin import TwinState, initial_state, run
from services.preditor import backtest
from services.preditor.model_file import load_model

DEMO = "models/EURUSD_H1.zip"


@pytest.fixture(scope="module")
def demo():
    return load_model(DEMO)


def test_replay_is_deterministic_and_survives_a_restart(demo, eurusd_bars):
    bars = eurusd_bars[:650]
    full = backtest.replay(demo, bars)
    assert len(full) == 650 - 349 and full == backtest.replay(demo, bars)
    # the preditor's path: stop after bar 500, persist the snapshot, restart, warm up on overlapping history
    state, first = run(demo.spec, initial_state(demo.model_id), bars[:500], demo.policy_fn)
    restored = TwinState.from_dict(json.loads(json.dumps(state.to_dict())), model_id=demo.model_id)
    _, rest = run(demo.spec, restored, bars[300:], demo.policy_fn)
    assert first + rest == full


def test_backtest_cli_writes_trades_decisions_and_equity_png(tmp_path, demo, capsys):
    lines = Path("data/EURUSD_H1_2017.csv").read_text(encoding="utf-8").splitlines()[:651]
    data = tmp_path / "bars.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert backtest.main(["--model", DEMO, "--data", str(data), "--out-dir", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    for word in ("trades", "win rate", "profit factor", "max drawdown", "Sharpe", "PnL"):
        assert word in printed
    trades = list(csv.DictReader((tmp_path / "out" / "EURUSD_H1_trades.csv").read_text(encoding="utf-8").splitlines()))
    decisions = list(csv.DictReader((tmp_path / "out" / "EURUSD_H1_decisions.csv").read_text(encoding="utf-8")
                                     .splitlines()))
    assert len(decisions) == 650 - 349
    expected = backtest.replay(demo, load_bars_csv(data))
    assert [d["action"] for d in decisions] == [d.action.name for d in expected]
    assert len(trades) == sum(d.closed_trade is not None for d in expected)
    assert f"trades          {len(trades)} " in printed
    assert (tmp_path / "out" / "EURUSD_H1_equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_backtest_cli_refuses_a_bad_model(tmp_path, capsys):
    bad = tmp_path / "BAD_H1.zip"
    bad.write_bytes(b"nope")
    assert backtest.main(["--model", str(bad), "--data", "data/EURUSD_H1_2017.csv"]) == 2
    assert "BAD_H1.zip: not a readable zip" in capsys.readouterr().err
