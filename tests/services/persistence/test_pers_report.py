"""`report sessions|trades|events` over a real store file."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from pers_helpers import T0, event_record, trade_record

from services.persistence import report
from services.persistence import sessions as ss
from services.persistence.store import Store

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "oracle.sqlite3"
    with Store.open(path, sinks=("supabase",)) as store:
        plan = ss.start_session(uuid.UUID(int=5), T0, initial_balance=10_000.0, symbols=["EURUSD"])
        store.write_batch(plan.writes)
        for i in range(12):
            store.write("trades", trade_record(i, session_id=plan.session.session_id,
                                               timestamp=T0 + timedelta(minutes=i)))
        store.write("events", event_record(data={"service": "executor", "nested": {"a": [1, 2]}}))
    return path


def run(argv):
    out = io.StringIO()
    code = report.main(argv, out=out)
    return code, out.getvalue()


def test_trades_json_newest_first_with_limit(db):
    code, text = run(["trades", "--db", str(db), "--format", "json", "--limit", "5"])
    assert code == 0
    rows = json.loads(text)
    assert len(rows) == 5 and rows[0]["timestamp"] == "2026-03-02T09:41:00.000000Z"
    assert rows[0]["pnl"] == 23.0 and rows[0]["is_paper"] is True


def test_trades_filters(db):
    _, text = run(["trades", "--db", str(db), "--format", "json", "--limit", "0", "--paper"])
    assert len(json.loads(text)) == 6
    _, text = run(["trades", "--db", str(db), "--format", "json", "--symbol", "GBPUSD"])
    assert json.loads(text) == []


def test_csv_has_every_column(db):
    _, text = run(["events", "--db", str(db), "--format", "csv", "--type", "WATCHDOG_RESTART"])
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["event_type"] == "WATCHDOG_RESTART"
    assert json.loads(row["data"]) == {"service": "executor", "nested": {"a": [1, 2]}}


def test_table_view(db):
    code, text = run(["sessions", "--db", str(db)])
    assert code == 0
    assert "00000000" in text and "RUNNING" in text and "EURUSD" in text


def test_missing_db_is_a_clear_error(tmp_path, capsys):
    code, _ = run(["events", "--db", str(tmp_path / "nope.db")])
    assert code == 2
    assert "no store at" in capsys.readouterr().err


def test_bad_arguments_exit_2():
    with pytest.raises(SystemExit) as exc:
        report.main(["orders"])
    assert exc.value.code == 2


def test_runs_as_a_module_while_a_writer_holds_the_store(db):
    with Store.open(db, sinks=("supabase",)) as store:  # a live system has the store open
        store.write("events", event_record(event_type="HALT"))
        proc = subprocess.run(
            [sys.executable, "-m", "services.persistence.report", "events", "--db", str(db), "--format", "json",
             "--type", "HALT"],
            cwd=REPO, capture_output=True, text=True, timeout=30,
        )
    assert proc.returncode == 0, proc.stderr
    assert [r["event_type"] for r in json.loads(proc.stdout)] == ["HALT"]


def test_default_db_from_env(db, monkeypatch):
    monkeypatch.setenv("ORACLE_DB", str(db))
    code, text = run(["sessions", "--format", "json"])
    assert code == 0 and json.loads(text)[0]["status"] == "RUNNING"


def test_default_db_from_config(tmp_path, monkeypatch):
    monkeypatch.delenv("ORACLE_DB", raising=False)
    monkeypatch.setenv("ORACLE_HOME", str(tmp_path))
    assert report.default_db().is_relative_to(tmp_path)
