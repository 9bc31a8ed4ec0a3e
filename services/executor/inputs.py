"""Wire replies -> the executor's domain values, and domain values -> persisted records. Pure.

The connector's `positions`, `symbol_info` and `account` ops and the preditor's `last_signals` op answer free-form
maps (common/messages.py declares no result record for them). This module is the one place that reads them, so a
change of shape is one edit here, tested by tables. Every reader fails closed: a missing or malformed field gives
None (the plan then skips the opening with a NO_* reason), never a guess.

Records for persistence (`signals`, `acks`, `events`) carry deterministic ids (`common.outbox.record_id`) from their
natural keys, so a replay after a restart maps to the same rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from common import messages
from common.outbox import record_id
from services.executor.acks import Ack
from services.executor.commands import RealPosition
from services.executor.lots import VolumeLimits
from services.executor.risk import Quote
from services.executor.sltp import PriceData
from services.executor.sync import Direction, Stance

# ---- small readers


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in data and data[key] is not None:
            return data[key]
    return None


def _direction(raw: Mapping[str, Any]) -> Direction | None:
    d = _int(_first(raw, "direction", "dir"))
    if d in (1, -1):
        return Direction(d)
    side = raw.get("side") or raw.get("trade_side")
    if isinstance(side, str):
        return {"BUY": Direction.LONG, "SELL": Direction.SHORT}.get(side.upper())
    return None


# ---- connector replies


@dataclass(frozen=True)
class SymbolData:
    """What `symbol_info` tells about one symbol: static spec, live quote and the quote->deposit rate."""

    symbol: str
    volume_limits: VolumeLimits | None
    price_data: PriceData | None
    quote: Quote | None
    min_sl_distance: float | None = None  # the broker's minimum price distances of a stop (None or 0: none)
    min_tp_distance: float | None = None


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    inner = data.get(name)
    return inner if isinstance(inner, Mapping) else {}


def _volume_limits(spec: Mapping[str, Any]) -> VolumeLimits | None:
    """`min_lots` / `step_lots` / `max_lots` (lots) and `lot_size` (units of the base asset in one lot: the
    contract size). None when any is missing or not positive."""
    values = [_num(spec.get(k)) for k in ("min_lots", "step_lots", "max_lots", "lot_size")]
    if any(v is None for v in values):
        return None
    limits = VolumeLimits(*values)  # type: ignore[arg-type]
    return None if limits.problems() else limits


def _distance(value: Any) -> float | None:
    """A broker minimum distance: a price distance, 0 (or absent) meaning none."""
    d = _num(value)
    return d if d is not None and d > 0 else None


def symbol_data(symbol: str, raw: Any, now: float, quote_time: float | None = None) -> SymbolData:
    """Read a `symbol_info` reply. Fields may be flat or nested under `spec` / `quote`.

    Quote time: the broker's clock may be a replay clock (the simulator's), so the quote's age is taken from the
    reply when given (`age_s`, or `server_time_ms - time_ms` on the broker's own clock) and applied to `now`, the
    executor's clock. A quote with no way to date it gets no time (the risk guard then fails closed).
    """
    if not isinstance(raw, Mapping):
        return SymbolData(symbol, None, None, None)
    spec = {**raw, **_section(raw, "spec")}
    q = {**raw, **_section(raw, "quote")}
    limits = _volume_limits(spec)
    rate = _num(_first(q, "quote_to_deposit", "conversion_rate"))
    price_data = PriceData(digits=_int(spec.get("digits")), pip_position=_int(spec.get("pip_position")),
                           quote_to_deposit=rate)
    bid, ask = _num(q.get("bid")), _num(q.get("ask"))
    quote = None
    if bid is not None and ask is not None:
        age = _num(_first(q, "age_s", "quote_age_s"))
        if age is None:
            server_ms, time_ms = _num(raw.get("server_time_ms")), _num(_first(q, "time_ms", "quote_time_ms"))
            if server_ms is not None and time_ms is not None and time_ms > 0:
                age = max(0.0, (server_ms - time_ms) / 1000.0)
        quote = Quote(bid=bid, ask=ask, time=quote_time if age is None else now - age)
    return SymbolData(symbol, limits, price_data, quote, min_sl_distance=_distance(spec.get("min_sl_distance")),
                      min_tp_distance=_distance(spec.get("min_tp_distance")))


def with_quote(data: SymbolData, raw: Any, quote_time: float | None) -> SymbolData | None:
    """A symbol's spec (from an earlier `symbol_info`) with the live quote and quote->deposit rate of its entry in
    a `positions` reply's `quotes`; None when the entry or the spec lacks any of them (ask `symbol_info`)."""
    if not isinstance(raw, Mapping) or data.price_data is None or data.volume_limits is None:
        return None
    bid, ask, rate = _num(raw.get("bid")), _num(raw.get("ask")), _num(raw.get("quote_to_deposit"))
    if bid is None or ask is None or rate is None:
        return None
    return replace(data, price_data=replace(data.price_data, quote_to_deposit=rate),
                   quote=Quote(bid=bid, ask=ask, time=quote_time))


def positions(raw: Any) -> list[RealPosition]:
    """Read a `positions` reply: a list, or a map with `positions`; each row's `volume` is in lots. Unreadable
    rows raise ValueError: the account's positions are never guessed."""
    rows = raw.get("positions") if isinstance(raw, Mapping) else raw
    if not isinstance(rows, list):
        raise ValueError(f"positions reply is not a list: {type(rows).__name__}")
    out = []
    for row in rows:
        if not isinstance(row, Mapping):
            raise ValueError(f"position row is not a map: {row!r}")
        ticket = _int(_first(row, "ticket", "position_id"))
        symbol = row.get("symbol")
        direction = _direction(row)
        lots = _num(row.get("volume"))
        if ticket is None or not isinstance(symbol, str) or direction is None or lots is None or lots <= 0:
            raise ValueError(f"position row lacks ticket, symbol, direction or volume (lots): {dict(row)!r}")
        out.append(RealPosition(ticket, symbol, direction, lots, str(row.get("label") or "")))
    return sorted(out, key=lambda p: p.ticket)


def closed_markets(raw: Any) -> set[str]:
    """The symbols a `positions` reply lists as closed (`markets: {SYM: {"open": false, ...}}`). A symbol absent,
    or a reply without `markets` (a connector that does not say), is not known closed."""
    markets = raw.get("markets") if isinstance(raw, Mapping) else None
    if not isinstance(markets, Mapping):
        return set()
    return {s for s, m in markets.items() if isinstance(s, str) and isinstance(m, Mapping) and m.get("open") is False}


@dataclass(frozen=True)
class AccountData:
    balance: float | None
    equity: float | None
    free_margin: float | None
    leverage: float | None
    currency: str = ""


def account(raw: Any) -> AccountData:
    if not isinstance(raw, Mapping):
        return AccountData(None, None, None, None)
    return AccountData(balance=_num(raw.get("balance")), equity=_num(raw.get("equity")),
                       free_margin=_num(raw.get("free_margin")), leverage=_num(raw.get("leverage")),
                       currency=str(raw.get("currency") or ""))


# ---- signals


def stance(signal: messages.Signal) -> Stance:
    """The signal's desired position; ValueError when direction/intensity are inconsistent."""
    direction = Direction(signal.direction)
    return Stance(direction, 0 if direction == Direction.FLAT else signal.intensity)


def twin_previous(signal: messages.Signal) -> Direction | None:
    """The twin's direction at the bar before the signal, when the signal says it (None: unknown or invalid)."""
    try:
        return None if signal.previous_direction is None else Direction(signal.previous_direction)
    except ValueError:
        return None


def last_signals(raw: Any) -> list[messages.Signal]:
    """Read a `last_signals` reply: `{"signals": {SYM: signal}}`, `{"signals": [signal, ...]}`, `{SYM: signal}`
    or a list. Malformed entries are dropped (a later live signal repairs them)."""
    body = raw.get("signals", raw) if isinstance(raw, Mapping) else raw
    items = body.values() if isinstance(body, Mapping) else body if isinstance(body, list) else []
    out = []
    for item in items:
        try:
            out.append(messages.from_wire(messages.Signal, item))
        except messages.SchemaError:
            continue
    return sorted(out, key=lambda s: (s.symbol, s.bar_time))


def latest_per_symbol(signals: list[messages.Signal]) -> dict[str, messages.Signal]:
    """Signals are desired states: only the latest bar of each symbol matters."""
    out: dict[str, messages.Signal] = {}
    for s in signals:
        if s.symbol not in out or s.bar_time >= out[s.symbol].bar_time:
            out[s.symbol] = s
    return out


# ---- records for persistence


def _ts(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


_ACTION_NAMES = {0: "WAIT", 1: "LONG", -1: "SHORT"}


def signal_id(signal: messages.Signal) -> str:
    return record_id("signals", signal.symbol, signal.bar_time)


def signal_record(signal: messages.Signal, timeframe_s: int | None = None) -> dict:
    """The `signals` row: a pure function of the signal (the same signal, received live or from `last_signals`,
    in this process or after a restart, is the same row; the store deduplicates it). `timestamp` is the bar's
    close (open time + timeframe) when the timeframe is known, else its open time."""
    return {
        "id": signal_id(signal), "timestamp": _ts(signal.bar_time + (timeframe_s or 0)),
        "bar_time": _ts(signal.bar_time), "symbol": signal.symbol, "action": _ACTION_NAMES[signal.direction],
        "direction": signal.direction, "intensity": signal.intensity if signal.direction else 0,
        "hmm_state": signal.hmm_state,
        "data": {"close": signal.close, "action_index": signal.action, "virtual_pnl": signal.virtual_pnl},
    }


def ack_record(ack: Ack, now: float, signal: messages.Signal | None = None, index: int = 0,
               epoch: int = 0) -> dict:
    """One ack row. `index` tells apart several acks of one signal (one per closed position); `epoch` (the executor
    process) several evaluations of one signal (a restarted executor re-evaluates the last signal at sync)."""
    key = (ack.symbol, ack.bar_time, ack.action, ack.client_order_id or "", index, epoch)
    return {
        "id": record_id("acks", *key), "timestamp": _ts(now), "symbol": ack.symbol,
        "bar_time": _ts(ack.bar_time) if ack.bar_time else None,
        "signal_id": signal_id(signal) if signal is not None else None,
        "decision": ack.action, "status": ack.status.value, "client_order_id": ack.client_order_id,
        "position_id": str(ack.ticket) if ack.ticket is not None else None,
        "volume": float(ack.volume) if ack.volume is not None else None, "price": ack.fill_price,
        "reason": ack.reason,
        "data": {k: v for k, v in ack.to_dict().items() if v is not None and k in (
            "detail", "reference_price", "slippage_pips", "pnl", "requested_lots", "off_step", "error_code",
            "broker_code", "due_at_open")},
    }


_SEVERITY = {"info": "INFO", "warning": "WARNING", "critical": "CRITICAL"}


def alert_record(kind: str, severity: str, message: str, now: float, details: Mapping[str, Any],
                 key: tuple = ()) -> dict:
    """An `events` row for an alert; `key` makes the id unique (the executor passes its epoch and a counter)."""
    return {
        "id": record_id("events", "executor-alert", kind, *key), "timestamp": _ts(now),
        "event_type": "ALERT_" + re.sub(r"[^A-Z0-9_]", "_", kind.upper()),
        "severity": _SEVERITY.get(severity, "WARNING"),
        "source": "executor", "symbol": details.get("symbol"), "message": message,
        "data": {k: v for k, v in details.items() if isinstance(v, str | int | float | bool | list | type(None))},
    }
