import json
from pathlib import Path

import pytest

from services.executor import symbols_config as sc
from services.executor.symbols_config import ConfigError, SymbolConfig

SAMPLE = Path(__file__).resolve().parents[3] / "config" / "executor_symbols.json"

RISK = {"dd_limit_pct": 5.0, "dd_emergency_pct": 10.0}


def doc(**symbols):
    return {"_version": 1, "_comment": "keep me", "_risk": dict(RISK),
            "_default": {"lot_weak": 0.02, "sl_usd": 12.0, "max_spread_pips": 3.0}, **symbols}


def test_sample_config_loads():
    config = sc.load(SAMPLE)
    eurusd = config.symbol("EURUSD")
    assert eurusd.enabled is True
    assert (eurusd.lot_weak, eurusd.lot_moderate, eurusd.lot_strong) == (0.01, 0.03, 0.05)
    assert eurusd.enter_on_first_signal is False
    assert config.risk.dd_emergency_pct == 10.0


def test_default_fills_missing_keys_then_code_defaults():
    config = sc.parse(doc(EURUSD={"enabled": True}))
    eurusd = config.symbol("EURUSD")
    assert (eurusd.enabled, eurusd.lot_weak, eurusd.sl_usd, eurusd.max_spread_pips) == (True, 0.02, 12.0, 3.0)
    assert eurusd.lot_moderate == 0.03  # code default


def test_unknown_symbol_is_default_and_disabled():
    config = sc.parse({**doc(), "_default": {"enabled": True, "lot_weak": 0.02}})
    assert config.symbol("GBPUSD").enabled is False
    assert config.symbol("GBPUSD").lot_weak == 0.02


def test_ensure_symbols_creates_disabled_entries_once():
    config = sc.parse(doc(EURUSD={"enabled": True}))
    config, created = sc.ensure_symbols(config, ["EURUSD", "US500", "GBPUSD"])
    assert created == ["GBPUSD", "US500"]
    assert config.symbols["US500"].enabled is False
    assert config.symbols["EURUSD"].enabled is True
    assert sc.ensure_symbols(config, ["US500"])[1] == []


@pytest.mark.parametrize("raw,key", [
    ({"_risk": RISK}, "_version"),
    ({"_version": 2, "_risk": RISK}, "_version"),
    ({"_version": 1}, "_risk"),
    ({"_version": 1, "_risk": {"dd_limit_pct": -1}}, "_risk.dd_limit_pct"),
    ({"_version": 1, "_risk": {"dd_limit_pct": 8, "dd_emergency_pct": 6}}, "_risk"),
    ({"_version": 1, "_risk": {"max_loss": 3}}, "_risk.max_loss"),
    ({"_version": 1, "_risk": RISK, "_default": {"lot_weak": -0.01}}, "_default.lot_weak"),
    ({"_version": 1, "_risk": RISK, "_default": []}, "_default"),
    ({"_version": 1, "_risk": RISK, "EURUSD": {"lot_strong": "big"}}, "EURUSD.lot_strong"),
    ({"_version": 1, "_risk": RISK, "EURUSD": {"max_spread_pips": 0}}, "EURUSD.max_spread_pips"),
    ({"_version": 1, "_risk": RISK, "EURUSD": {"sl_usd": -5}}, "EURUSD.sl_usd"),
    ({"_version": 1, "_risk": RISK, "EURUSD": {"lots": [1, 2, 3]}}, "EURUSD.lots"),
    ({"_version": 1, "_risk": RISK, "EURUSD": 3}, "EURUSD"),
    ({"_version": 1, "_risk": RISK, "EURUSD": {"off_step": "round"}}, "EURUSD.off_step"),
    ({"_version": 1, "_risk": RISK, "_default": {"off_step": True}}, "_default.off_step"),
])
def test_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError) as info:
        sc.parse(raw)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


def test_set_symbol_config_validates_and_names_the_key():
    config = sc.parse(doc(EURUSD={"enabled": True}))
    changed = sc.with_symbol_changes(config, "EURUSD", {"sl_usd": 20.0})
    assert changed.symbol("EURUSD").sl_usd == 20.0
    assert config.symbol("EURUSD").sl_usd == 12.0  # values, not mutation
    with pytest.raises(ConfigError) as info:
        sc.with_symbol_changes(config, "EURUSD", {"lot_weak": -1})
    assert info.value.key == "EURUSD.lot_weak"
    new = sc.with_symbol_changes(config, "USDJPY", {"sl_usd": 15.0})
    assert (new.symbol("USDJPY").enabled, new.symbol("USDJPY").sl_usd) == (False, 15.0)
    with pytest.raises(ConfigError):
        sc.with_symbol_changes(config, "_risk", {"enabled": True})


def test_risk_changes():
    config = sc.parse(doc())
    assert sc.with_risk_changes(config, {"max_consecutive_losses": 5}).risk.max_consecutive_losses == 5
    with pytest.raises(ConfigError) as info:
        sc.with_risk_changes(config, {"max_consecutive_losses": 0})
    assert info.value.key == "_risk.max_consecutive_losses"


def test_atomic_write_round_trip_keeps_sections(tmp_path):
    path = tmp_path / "executor_symbols.json"
    config = sc.parse(doc(EURUSD={"enabled": True}, US500={"lot_weak": 0.1, "sl_usd": 50.0}))
    config = sc.with_symbol_changes(config, "EURUSD", {"tp_usd": 15.0})
    sc.write_atomic(path, config)
    raw = json.loads(path.read_text())
    assert raw["_comment"] == "keep me"
    assert list(raw)[:4] == ["_version", "_comment", "_risk", "_default"]
    again = sc.load(path)
    assert again == config
    assert [p.name for p in tmp_path.iterdir()] == ["executor_symbols.json"]  # no temp file left


def test_atomic_write_failure_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "executor_symbols.json"
    config = sc.parse(doc(EURUSD={"enabled": True}))
    sc.write_atomic(path, config)
    before = path.read_text()

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(sc.os, "replace", broken_replace)
    with pytest.raises(OSError):
        sc.write_atomic(path, sc.with_symbol_changes(config, "EURUSD", {"sl_usd": 99.0}))
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["executor_symbols.json"]


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{ nope")
    with pytest.raises(ConfigError, match="bad.json: invalid JSON at line 1"):
        sc.load(path)


@pytest.mark.parametrize("intensity,lots", [(0, 0.0), (1, 0.01), (2, 0.03), (3, 0.05)])
def test_lots_per_intensity(intensity, lots):
    assert SymbolConfig().lots(intensity) == lots


def test_lots_bad_intensity():
    with pytest.raises(ValueError):
        SymbolConfig().lots(4)


def test_off_step_rule_defaults_to_refuse_and_is_set_per_symbol():
    config = sc.parse(doc(EURUSD={"enabled": True}, US500={"off_step": "round_down"}))
    assert config.symbol("EURUSD").off_step == "refuse"
    assert config.symbol("US500").off_step == "round_down"
    assert sc.parse({**doc(), "_default": {"off_step": "round_down"}, "GBPUSD": {}}).symbol("GBPUSD").off_step \
        == "round_down"
    changed = sc.with_symbol_changes(config, "EURUSD", {"off_step": "round_down"})
    assert changed.symbol("EURUSD").off_step == "round_down"
    with pytest.raises(ConfigError) as info:
        sc.with_symbol_changes(config, "EURUSD", {"off_step": "nearest"})
    assert info.value.key == "EURUSD.off_step"
    assert sc.parse(sc.to_raw(changed)).symbol("EURUSD").off_step == "round_down"  # written and read back
