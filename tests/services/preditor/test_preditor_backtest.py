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
    captured = capsys.readouterr()
    printed = captured.out
    out = (tmp_path / "out").resolve()
    assert printed.splitlines()[-4:] == ["wrote:", f"  {out / 'EURUSD_H1_trades.csv'}",
                                         f"  {out / 'EURUSD_H1_decisions.csv'}", f"  {out / 'EURUSD_H1_equity.png'}"]
    progress = [ln for ln in captured.err.splitlines() if ln.startswith("[backtest] ") and "bars (" in ln]
    assert len(progress) == 10 and progress[-1].startswith("[backtest] 650/650 bars (100 %)")
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


def test_replay_with_progress_decides_the_same(demo, eurusd_bars):
    told: list[tuple[int, int]] = []
    bars = eurusd_bars[:420]
    assert backtest.replay(demo, bars, progress=lambda done, total: told.append((done, total))) == \
        backtest.replay(demo, bars)
    assert told[-1] == (420, 420) and len(told) == 10


@pytest.mark.parametrize(("content", "message"), [
    (None, "--data {path}: no such file"),
    ("", "--data {path}: empty: no header line (time,open,high,low,close[,volume])"),
    ("time,open,high,low\n1,1,1,1\n", "--data {path}: the header lacks column(s) close (it has: time, open, high, "
     "low; expected time,open,high,low,close[,volume])"),
    ("time,open,high,low,close\n1,1,1,1,1\n2,1,1,abc,1\n", "--data {path}: row 2 (line 3): column low: 'abc' is "
     "not a number"),
    ("time,open,high,low,close\n1,1,1,1,1\n2,1,1,1\n", "--data {path}: row 2 (line 3): column close is empty"),
    ("time,open,high,low,close\n1,1,1,1,nan\n", "--data {path}: row 1 (line 2): column close: 'nan' is not finite"),
    ("time,open,high,low,close\n5,1,1,1,1\n5,1,1,1,1\n", "--data {path}: row 2 (line 3): time 5 is not after the "
     "row before's 5 (times must be strictly increasing)"),
])
@pytest.mark.parametrize("tool", ["backtest", "train"])
def test_a_bad_bars_file_is_one_line_naming_what_and_where(tmp_path, capsys, content, message, tool):
    from services.preditor import train

    path = tmp_path / "bars.csv"
    if content is not None:
        path.write_text(content)
    if tool == "backtest":
        code = backtest.main(["--model", DEMO, "--data", str(path), "--out-dir", str(tmp_path / "out")])
    else:
        code = train.main(["--data", str(path), "--symbol", "EURUSD", "--timeframe", "H1", "--out",
                           str(tmp_path / "m.zip")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"oracle {tool}: {message.format(path=path)}\n"
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.zip").exists()


def test_help_shows_the_defaults():
    from services.preditor import train

    text = " ".join(train.build_parser().format_help().split())
    assert "(default: 2000000)" in text and "about 30 minutes" in text and "(default: 256,256,256)" in text
    for action in train.build_parser()._actions:
        assert action.help, action.dest
    assert "(default: backtest_out)" in " ".join(backtest.build_parser().format_help().split())
