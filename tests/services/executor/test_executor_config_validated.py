"""The executor process: set_symbol_config and set_risk_config refuse a value that is not finite or out of range,
naming the key and the value, and leave the config file as it was."""

from __future__ import annotations

import math

import pytest
from harness import Home, wait_for

from common import bus, messages


@pytest.fixture(scope="module")
def executor(tmp_path_factory):
    home = Home(tmp_path_factory.mktemp("execcfg"))
    try:
        home.start("executor")
        wait_for(lambda: home.request("executor", "ping"), 20, "executor up")
        assert home.request("executor", "step", messages.StepArgs("executor.load")).ok
        yield home
    finally:
        home.close()


def config_file(home: Home) -> str:
    return (home.root / "config" / "executor_symbols.json").read_text()


@pytest.mark.parametrize(("command", "changes", "key", "shown"), [
    ("set_symbol_config", {"lot_weak": math.inf}, "EURUSD.lot_weak", "inf"),
    ("set_symbol_config", {"lot_strong": math.nan}, "EURUSD.lot_strong", "nan"),
    ("set_symbol_config", {"lot_moderate": 1000}, "EURUSD.lot_moderate", "1000"),
    ("set_symbol_config", {"lot_weak": -0.01}, "EURUSD.lot_weak", "-0.01"),
    ("set_symbol_config", {"sl_usd": math.inf}, "EURUSD.sl_usd", "inf"),
    ("set_symbol_config", {"max_spread_pips": math.nan}, "EURUSD.max_spread_pips", "nan"),
    ("set_risk_config", {"cooldown_minutes": math.inf}, "_risk.cooldown_minutes", "inf"),
    ("set_risk_config", {"margin_buffer_pct": math.nan}, "_risk.margin_buffer_pct", "nan"),
])
def test_a_bad_config_value_is_refused_naming_the_key_and_the_value(executor, command, changes, key, shown):
    before = config_file(executor)
    args = {"symbol": "EURUSD", "changes": changes} if command == "set_symbol_config" else {"changes": changes}
    with pytest.raises(bus.RequestFailed) as info:
        executor.request("executor", "command", messages.CommandArgs(command, args))
    assert info.value.code == "BAD_CONFIG" and key in info.value.message and shown in info.value.message
    assert config_file(executor) == before


def test_a_good_lot_size_is_still_written(executor):
    args = {"symbol": "EURUSD", "changes": {"lot_weak": 0.02}}
    res = executor.request("executor", "command", messages.CommandArgs("set_symbol_config", args))
    assert res.config["lot_weak"] == 0.02
    assert '"lot_weak": 0.02' in config_file(executor)


def test_a_symbol_name_of_100_kb_is_refused_and_nothing_is_written(executor):
    before = config_file(executor)
    args = {"symbol": "E" * 100_000, "changes": {"lot_weak": 0.02}}
    with pytest.raises(bus.RequestFailed) as info:
        executor.request("executor", "command", messages.CommandArgs("set_symbol_config", args))
    assert "symbol" in info.value.message and len(info.value.message) < 1000
    assert config_file(executor) == before
