"""Per-symbol executor config (`config/executor_symbols.json`): schema, pure edits, loader, atomic writer.

File layout: keys starting with `_` are sections, every other key is a symbol.

    {"_version": 1, "_comment": "...", "_risk": {...}, "_default": {...}, "EURUSD": {...}, ...}

- `_version` and `_risk` are required (a missing risk section once bypassed the drawdown check).
- `_default` fills every key a symbol entry leaves out; keys missing there too take the code defaults below.
- A symbol with a model but no entry is created from `_default` with `enabled` forced to false: a person
  enables it.
- Other `_` keys (`_comment`, `_notes`...) are kept as they are when the file is rewritten.
- `off_step` (per symbol, or in `_default`): configured lots that are not a whole number of the broker's volume
  step are refused (`"refuse"`, the default: the opening is skipped with OFF_STEP) or rounded down to the step
  (`"round_down"`: never more than configured); the ack says which, with the requested and the sent lots.

Only `load()` and `write_atomic()` touch the file system; everything else is values in, values out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common import durable
from common.schema import shown

SCHEMA_VERSION = 1
SECTION_PREFIX = "_"
MAX_LOTS = 100.0  # a configured lot size above this is a typo, never a plan (the broker's max_lots also holds)


class ConfigError(ValueError):
    """A config value is invalid; the message starts with the key path (e.g. `EURUSD.lot_weak`)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class SymbolConfig(BaseModel):
    """What the executor needs for one symbol. Money is in the account's deposit currency (USD here)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # numbers finite

    enabled: bool = False
    lot_weak: float = Field(0.01, ge=0, le=MAX_LOTS, description="lots for intensity 1")
    lot_moderate: float = Field(0.03, ge=0, le=MAX_LOTS, description="lots for intensity 2")
    lot_strong: float = Field(0.05, ge=0, le=MAX_LOTS, description="lots for intensity 3")
    sl_usd: float = Field(10.0, ge=0, description="stop loss in deposit currency; 0 = none")
    tp_usd: float = Field(0.0, ge=0, description="take profit in deposit currency; 0 = none")
    max_spread_pips: float = Field(2.0, gt=0, description="openings blocked above this live spread")
    enter_on_first_signal: bool = Field(False, description="open on the first signal after boot")
    off_step: Literal["refuse", "round_down"] = Field(
        "refuse", description="configured lots that are not a whole number of the symbol's steps: refuse the "
        "opening (SKIP OFF_STEP) or round down to the step; the ack reports the requested and the sent lots")
    notes: str = Field("", max_length=1000)

    def lots(self, intensity: int) -> float:
        """Lots for intensity 1-3; 0 for intensity 0 (WAIT)."""
        if intensity == 0:
            return 0.0
        if intensity == 1:
            return self.lot_weak
        if intensity == 2:
            return self.lot_moderate
        if intensity == 3:
            return self.lot_strong
        raise ValueError(f"intensity must be 0-3, got {intensity}")


class RiskConfig(BaseModel):
    """The `_risk` section: limits of the pre-trade risk guard (openings only)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # numbers finite

    dd_limit_pct: float = Field(5.0, gt=0, le=100, description="drawdown from session start balance")
    dd_peak_limit_pct: float = Field(7.0, gt=0, le=100, description="drawdown from peak equity")
    dd_emergency_pct: float = Field(10.0, gt=0, le=100, description="close everything and HALT")
    max_consecutive_losses: int = Field(3, ge=1)
    cooldown_minutes: float = Field(60.0, gt=0, description="openings blocked after the loss streak")
    margin_buffer_pct: float = Field(20.0, ge=0, description="free margin must exceed required by this")
    max_quote_age_s: float = Field(120.0, gt=0, description="older bid/ask fails the spread check")

    @model_validator(mode="after")
    def _emergency_above_limit(self) -> RiskConfig:
        if self.dd_emergency_pct < self.dd_limit_pct:
            raise ValueError("dd_emergency_pct must be >= dd_limit_pct")
        return self


class ExecutorSymbols(BaseModel):
    """The whole file, validated. `default` holds the `_default` section as given (partial)."""

    model_config = ConfigDict(frozen=True)

    version: int = SCHEMA_VERSION
    risk: RiskConfig
    default: dict[str, Any] = Field(default_factory=dict)
    symbols: dict[str, SymbolConfig] = Field(default_factory=dict)
    extra_sections: dict[str, Any] = Field(default_factory=dict)

    def symbol(self, symbol: str) -> SymbolConfig:
        """The symbol's config; an unknown symbol gets the `_default` values, disabled."""
        found = self.symbols.get(symbol)
        return found if found is not None else new_symbol_config(self.default)


def _error_key(prefix: str, error: Mapping[str, Any]) -> str:
    loc = ".".join(str(part) for part in error.get("loc", ()))
    return f"{prefix}.{loc}" if loc else prefix


def _validate(model: type[BaseModel], raw: Any, key: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, f"must be an object, got {type(raw).__name__}")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        got = f", got {shown(first['input'])}" if "input" in first and first.get("type") != "missing" else ""
        raise ConfigError(_error_key(key, first), first["msg"] + got) from exc


def new_symbol_config(default: Mapping[str, Any]) -> SymbolConfig:
    """A symbol entry created from `_default`: always disabled until a person enables it."""
    return _validate(SymbolConfig, {**default, "enabled": False}, "_default")


def parse(raw: Mapping[str, Any]) -> ExecutorSymbols:
    """Validate the JSON document; errors name the key."""
    if not isinstance(raw, Mapping):
        raise ConfigError("<root>", "must be an object")
    if "_version" not in raw:
        raise ConfigError("_version", "missing")
    if raw["_version"] != SCHEMA_VERSION:
        raise ConfigError("_version", f"unsupported {raw['_version']!r}, expected {SCHEMA_VERSION}")
    if "_risk" not in raw:
        raise ConfigError("_risk", "section missing (the risk guard needs explicit limits)")
    risk = _validate(RiskConfig, raw["_risk"], "_risk")
    default = raw.get("_default", {})
    _validate(SymbolConfig, default, "_default")
    symbols: dict[str, SymbolConfig] = {}
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("_version", "_risk", "_default"):
            continue
        if key.startswith(SECTION_PREFIX):
            extra[key] = value
            continue
        if not key.strip():
            raise ConfigError(repr(key), "a symbol name cannot be blank")
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"must be an object, got {type(value).__name__}")
        symbols[key] = _validate(SymbolConfig, {**default, **value}, key)
    return ExecutorSymbols(version=SCHEMA_VERSION, risk=risk, default=dict(default), symbols=symbols,
                           extra_sections=extra)


def to_raw(config: ExecutorSymbols) -> dict[str, Any]:
    """The JSON document for `config` (symbols written in full, sorted; `_` sections first)."""
    raw: dict[str, Any] = {"_version": config.version, **config.extra_sections,
                           "_risk": config.risk.model_dump(), "_default": dict(config.default)}
    for symbol in sorted(config.symbols):
        raw[symbol] = config.symbols[symbol].model_dump()
    return raw


def ensure_symbols(config: ExecutorSymbols,
                   model_symbols: Iterable[str]) -> tuple[ExecutorSymbols, list[str]]:
    """A disabled entry (from `_default`) for each modelled symbol without one. Returns (config, created)."""
    created = sorted({s for s in model_symbols if s not in config.symbols})
    if not created:
        return config, []
    symbols = dict(config.symbols)
    for symbol in created:
        symbols[symbol] = new_symbol_config(config.default)
    return config.model_copy(update={"symbols": symbols}), created


def with_symbol_changes(config: ExecutorSymbols, symbol: str, changes: Mapping[str, Any]) -> ExecutorSymbols:
    """The `set symbol config` command: apply `changes` to one symbol (created disabled if new), validated."""
    if not symbol or symbol.startswith(SECTION_PREFIX):
        raise ConfigError(repr(symbol), "not a symbol name")
    current = config.symbol(symbol).model_dump()
    updated = _validate(SymbolConfig, {**current, **changes}, symbol)
    return config.model_copy(update={"symbols": {**config.symbols, symbol: updated}})


def with_risk_changes(config: ExecutorSymbols, changes: Mapping[str, Any]) -> ExecutorSymbols:
    risk = _validate(RiskConfig, {**config.risk.model_dump(), **changes}, "_risk")
    return config.model_copy(update={"risk": risk})


# ---- the only file I/O of this module

def load(path: str | os.PathLike[str]) -> ExecutorSymbols:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ConfigError(str(path), f"invalid JSON at {where}: {exc.msg}") from exc
    return parse(raw)


def write_atomic(path: str | os.PathLike[str], config: ExecutorSymbols) -> None:
    """Write `path` atomically (common/durable.py): a crash leaves either the old file or the new one."""
    durable.write_atomic(path, json.dumps(to_raw(config), indent=2, ensure_ascii=False) + "\n")
