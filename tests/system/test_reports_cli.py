"""The report tools as the operator runs them (the `oracle` command, its output and exit code): `report trades`
written to a file and read by `report drift`, the drift of the store by default with its plot where it says, and
`backtest` / `train` answering a bad bars file with one line and exit code 2 (the rest: the unit tests of
services/paper/report.py, backtest.py and train.py)."""

from __future__ import annotations

import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import REPO, VENV

from services.persistence.store import Store


def oracle(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    env.update(ORACLE_HOME=str(home), PYTHONPATH=str(REPO))
    return subprocess.run([str(VENV / "bin" / "oracle"), *args], cwd=home, env=env, capture_output=True, text=True,
                          timeout=120)


def test_drift_of_the_store_and_of_what_report_trades_wrote(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "default.yaml").symlink_to(REPO / "config" / "default.yaml")
    db = tmp_path / "var" / "data" / "oracle.db"  # the configured store under this ORACLE_HOME
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    with Store.open(db) as store:
        for i, (action, paper, pnl) in enumerate([("OPEN", False, 0.0), ("CLOSE", False, 1.5), ("CLOSE", True, 2.0)]):
            store.write("trades", {"id": str(uuid.UUID(int=i + 1)), "session_id": "abcd1234",
                                   "timestamp": t0 + timedelta(hours=i), "symbol": "EURUSD", "direction": 1,
                                   "action": action, "volume": 0.01, "pnl": pnl, "commission": 0.07,
                                   "is_paper": paper})
    default = oracle(tmp_path, "report", "drift")
    png = tmp_path / "var" / "reports" / "drift.png"
    assert default.returncode == 0, default.stderr
    lines = default.stdout.splitlines()
    assert lines[2].startswith("| EURUSD | 1 | 1 | 2.00 | 1.50 | 0.50 |")
    assert lines[-2:] == [f"2 closed trades from the store {db}", f"equity curves: {png}"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    written = oracle(tmp_path, "report", "trades", "--format", "csv", "--limit", "0")
    (tmp_path / "trades.csv").write_text(written.stdout)
    from_file = oracle(tmp_path, "report", "drift", "trades.csv", "--png", "mine.png")
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout.splitlines()[2] == lines[2]
    assert from_file.stdout.splitlines()[-1] == f"equity curves: {tmp_path / 'mine.png'}"



def test_backtest_and_train_answer_a_bad_file_in_one_line(tmp_path):
    (tmp_path / "bars.csv").write_text("time,open,high,low,close\n1,1,1,1,1\n2,1,1,x,1\n")
    bt = oracle(tmp_path, "backtest", "--model", str(REPO / "models" / "EURUSD_H1.zip"), "--data", "bars.csv")
    assert (bt.returncode, bt.stderr) == (2, "oracle backtest: --data bars.csv: row 2 (line 3): column low: 'x' is "
                                             "not a number\n")
    assert not (tmp_path / "backtest_out").exists()
    tr = oracle(tmp_path, "train", "--data", "none.csv", "--symbol", "EURUSD", "--timeframe", "H1", "--out", "m.zip")
    assert (tr.returncode, tr.stderr) == (2, "oracle train: --data none.csv: no such file\n")
