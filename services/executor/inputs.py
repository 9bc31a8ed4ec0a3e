"""Wire replies -> the executor's domain values, and domain values -> persisted records. Pure.

The connector's `positions`, `symbol_info` and `account` ops and the preditor's `last_signals` op answer typed
records (common/messages/), validated on receipt (a malformed reply is a wire error naming the op and the field).
This module turns them into the executor's values and checks what a schema cannot: finite numbers, positive
lots, a direction of +1/-1. Every reader fails closed: a value out of range gives None (the plan then skips the
opening with a NO_* reason), never a guess; an unreadable position raises (the account is never guessed).

Records for persistence (`signals`, `acks`, `events`) carry deterministic ids (`common.outbox.record_id`) from their
natural keys, so a replay after a restart maps to the same rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
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


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _distance(value: float) -> float | None:
    """A broker minimum distance: a price distance, 0 meaning none."""
    d = _finite(value)
    return d if d is not None and d > 0 else None


# ---- connector replies


@dataclass(frozen=True)
class SymbolData:
    """What `symbol_info` tells about one symbol: static spec, live quote and the quote->deposit rate."""

    symbol: str
    volume_limits: VolumeLimits | None
    price_data: PriceData | None
    quote: Quote | None
    min_sl_distance: float | None = None  # the broker's minimum price distances of a stop (None: none)
    min_tp_distance: float | None = None


def _volume_limits(info: messages.SymbolInfo) -> VolumeLimits | None:
    """`min_lots` / `step_lots` / `max_lots` (lots) and `lot_size` (units of the base asset in one lot: the
    contract size). None when any is not finite, or the limits do not hold together."""
    values = [_finite(v) for v in (info.min_lots, info.step_lots, info.max_lots, info.lot_size)]
    if any(v is None for v in values):
        return None
    limits = VolumeLimits(*values)  # type: ignore[arg-type]
    return None if limits.problems() else limits


def symbol_data(info: messages.SymbolInfo, quote_time: float | None = None) -> SymbolData:
    """Read a `symbol_info` answer. The quote is dated `quote_time` by the receiver (None while the broker is
    not known connected: the risk guard then fails closed); the broker's clock may be a replay clock."""
    price_data = PriceData(digits=info.digits, pip_position=info.pip_position,
                           quote_to_deposit=_finite(info.quote_to_deposit))
    bid, ask = _finite(info.bid), _finite(info.ask)
    quote = Quote(bid=bid, ask=ask, time=quote_time) if bid is not None and ask is not None else None
    return SymbolData(info.symbol, _volume_limits(info), price_data, quote,
                      min_sl_distance=_distance(info.min_sl_distance), min_tp_distance=_distance(info.min_tp_distance))


def with_quote(data: SymbolData, quote: messages.BookQuote | None, quote_time: float | None) -> SymbolData | None:
    """A symbol's spec (from an earlier `symbol_info`) with the live quote and quote->deposit rate of its entry in
    a `positions` answer's `quotes`; None when the entry or the spec lacks any of them (ask `symbol_info`)."""
    if quote is None or data.price_data is None or data.volume_limits is None:
        return None
    bid, ask, rate = _finite(quote.bid), _finite(quote.ask), _finite(quote.quote_to_deposit)
    if bid is None or ask is None or rate is None:
        return None
    return replace(data, price_data=replace(data.price_data, quote_to_deposit=rate),
                   quote=Quote(bid=bid, ask=ask, time=quote_time))


def positions(answer: messages.Positions) -> list[RealPosition]:
    """The open positions of a `positions` answer, by ticket; `volume` is in lots. A position without a side or
    with no volume raises ValueError naming it: the account's positions are never guessed."""
    out = []
    for i, p in enumerate(answer.positions):
        lots = _finite(p.volume)
        if p.direction not in (1, -1) or lots is None or lots <= 0 or not p.symbol:
            raise ValueError(f"positions[{i}] (ticket {p.ticket}) has no symbol, direction +1/-1 or volume in lots: "
                             f"{p.symbol!r} {p.direction!r} {p.volume!r}")
        out.append(RealPosition(p.ticket, p.symbol, Direction(p.direction), lots, p.label))
    return sorted(out, key=lambda p: p.ticket)


def closed_markets(answer: messages.Positions) -> set[str]:
    """The symbols a `positions` answer lists as closed; a symbol absent is not known closed."""
    return {symbol for symbol, market in answer.markets.items() if not market.open}


@dataclass(frozen=True)
class AccountData:
    balance: float | None
    equity: float | None
    free_margin: float | None
    leverage: float | None
    currency: str = ""


def account(info: messages.AccountInfo) -> AccountData:
    """The account of an `account` (or `positions`) answer; a figure that is not finite is None."""
    return AccountData(balance=_finite(info.balance), equity=_finite(info.equity),
                       free_margin=_finite(info.free_margin), leverage=_finite(info.leverage), currency=info.currency)


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


def last_signals(answer: messages.LastSignals) -> list[messages.Signal]:
    """The signals of a `last_signals` answer, by symbol and bar."""
    return sorted(answer.signals.values(), key=lambda s: (s.symbol, s.bar_time))


def latest_per_symbol(signals: list[messages.Signal]) -> dict[str, messages.Signal]:
    """Signals are desired states: only the latest bar of each symbol matters."""
    out: dict[str, messages.Signal] = {}
    for s in signals:
        if s.symbol not in out or s.bar_time >= out[s.symbol].bar_time:
            out[s.symbol] = s
    return out


# ---- records for persistence


@lru_cache(maxsize=16)
def _ts(seconds: float) -> str:
    """A time as a record writes it (the records of one batch share their time: formatted once)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@lru_cache(maxsize=256)
def _bar_ts(seconds: int) -> str:
    """A bar's time as a record writes it: the same few bar times for every symbol of a bar close."""
    return _ts(seconds)


_ACTION_NAMES = {0: "WAIT", 1: "LONG", -1: "SHORT"}
@lru_cache(maxsize=256)
def _signal_id(symbol: str, bar_time: int) -> str:
    return record_id("signals", symbol, bar_time)


def signal_id(signal: messages.Signal) -> str:
    return _signal_id(signal.symbol, signal.bar_time)


def signal_record(signal: messages.Signal, timeframe_s: int | None = None) -> dict:
    """The `signals` row: a pure function of the signal (the same signal, received live or from `last_signals`,
    in this process or after a restart, is the same row; the store deduplicates it). `timestamp` is the bar's
    close (open time + timeframe) when the timeframe is known, else its open time."""
    return {
        "id": signal_id(signal), "timestamp": _bar_ts(signal.bar_time + (timeframe_s or 0)),
        "bar_time": _bar_ts(signal.bar_time), "symbol": signal.symbol, "action": _ACTION_NAMES[signal.direction],
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
        "bar_time": _bar_ts(ack.bar_time) if ack.bar_time else None,
        "signal_id": signal_id(signal) if signal is not None else None,
        "decision": ack.action, "status": ack.status.value, "client_order_id": ack.client_order_id,
        "position_id": str(ack.ticket) if ack.ticket is not None else None,
        "volume": float(ack.volume) if ack.volume is not None else None, "price": ack.fill_price,
        "reason": ack.reason,
        "data": {k: v for k in _ACK_DATA if (v := getattr(ack, k)) is not None},
    }


_ACK_DATA = ("detail", "reference_price", "slippage_pips", "pnl", "requested_lots", "off_step", "error_code",
             "broker_code", "due_at_open")


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
