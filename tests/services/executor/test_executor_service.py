"""The executor process on its own (no broker): loading its symbol config, and refusing a broken one."""

from __future__ import annotations

import json
import subprocess
import sys

from harness import Home, wait_for

from common import messages


def start(home: Home, *args: str) -> None:
    home.start("executor", *args)
    wait_for(lambda: home.request("executor", "ping"), 20, "executor up")


def test_load_creates_a_modelled_symbol_disabled(tmp_path):
    home = Home(tmp_path)
    path = tmp_path / "config" / "executor_symbols.json"
    raw = json.loads(path.read_text())
    del raw["EURUSD"]  # the bundled model trades EURUSD: its entry must be created, disabled
    path.write_text(json.dumps(raw))
    try:
        start(home)
        res = home.request("executor", "step", messages.StepArgs("executor.load"))
        assert res.ok and res.result["created"] == ["EURUSD"] and res.result["enabled"] == []
        written = json.loads(path.read_text())
        assert written["EURUSD"]["enabled"] is False
        assert written["_risk"] == raw["_risk"] and written["_comment"] == raw["_comment"]
        status = home.request("executor", "command", messages.CommandArgs("executor_status", {}))
        assert isinstance(status, messages.TradingState)
        assert status.symbols["EURUSD"].enabled is False and status.symbols["EURUSD"].modelled
    finally:
        home.close()


def test_a_broken_symbol_config_fails_the_step_naming_the_key(tmp_path):
    home = Home(tmp_path)
    path = tmp_path / "config" / "executor_symbols.json"
    raw = json.loads(path.read_text())
    raw["EURUSD"]["lot_weak"] = -1
    path.write_text(json.dumps(raw))
    try:
        start(home)
        res = home.request("executor", "step", messages.StepArgs("executor.load"))
        assert not res.ok and "EURUSD.lot_weak" in res.error
    finally:
        home.close()


def test_dry_run_from_the_environment(tmp_path):
    home = Home(tmp_path)
    try:
        home.procs["executor"] = subprocess.Popen([sys.executable, "-m", "services.executor"], cwd=tmp_path,
                                                  env={**home.env, "ORACLE_DRY_RUN": "true"},
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: home.request("executor", "ping"), 20, "executor up")
        assert home.status_of("executor")["dry_run"] is True
    finally:
        home.close()
