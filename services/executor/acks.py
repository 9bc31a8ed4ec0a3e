"""The executor's ack: what happened to one signal (or command) on one symbol. Log-only, never fed back.

Status:
- OK: the decision was carried out (order filled, or nothing to do: SYNCED / FLAT / INTENSITY_IGNORED);
- SKIP: an action was due and deliberately not taken (disabled, paused, orphan, risk, lots, SL/TP data);
- FAIL: an order was sent and the broker rejected it or it timed out;
- WAIT_SYNC: flat while the model is positioned: missed entry, waiting for an edge;
- DRY_RUN: the order that would have been sent, not sent (dry-run mode).

Slippage is in pips and signed so that positive is against us: a LONG filled above the signal's bar close,
a SHORT filled below it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

from services.executor.sync import Direction, SyncAction, SyncDecision


class AckStatus(StrEnum):
    OK = "OK"
    SKIP = "SKIP"
    FAIL = "FAIL"
    WAIT_SYNC = "WAIT_SYNC"
    DRY_RUN = "DRY_RUN"


@dataclass(frozen=True)
class Ack:
    symbol: str
    action: str  # SyncAction value, or a command (MANUAL_CLOSE, CLOSE_ALL, EMERGENCY_CLOSE)
    status: AckStatus
    reason: str
    detail: str = ""
    bar_time: int | None = None  # the signal's bar time (seconds, UTC)
    client_order_id: str | None = None
    ticket: int | None = None  # position id
    volume: int | None = None  # protocol volume (cents of a unit)
    fill_price: float | None = None
    reference_price: float | None = None  # the signal's bar close
    slippage_pips: float | None = None
    pnl: float | None = None  # realised, on closes

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.value
        return out

    def wire_body(self) -> dict[str, Any]:
        """The `ack` record of common/messages.py: symbol, bar_time, status, reason, details (the rest)."""
        details = {k: v for k, v in self.to_dict().items()
                   if k not in ("symbol", "bar_time", "status", "reason") and v not in (None, "")}
        return {"symbol": self.symbol, "bar_time": self.bar_time or 0, "status": self.status.value,
                "reason": self.reason, "details": details}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ack:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ack fields: {sorted(unknown)}")
        return cls(**{**data, "status": AckStatus(data["status"])})


def slippage_pips(fill_price: float, reference_price: float, direction: Direction,
                  pip_position: int) -> float:
    """Fill vs the signal's bar close, in pips, positive = worse for us. `direction` is the trade's side:
    LONG for a buy (opening a long or closing a short), SHORT for a sell."""
    if direction == Direction.FLAT:
        raise ValueError("slippage needs the side of the trade, not FLAT")
    return (fill_price - reference_price) * int(direction) / 10.0 ** -pip_position


_SYNC_STATUS = {
    SyncAction.NOOP: AckStatus.OK,
    SyncAction.WAIT_SYNC: AckStatus.WAIT_SYNC,
    SyncAction.SKIP: AckStatus.SKIP,
}


def ack_without_order(symbol: str, decision: SyncDecision, bar_time: int | None = None) -> Ack:
    """The ack of a decision that sends nothing (NOOP, WAIT_SYNC, SKIP)."""
    status = _SYNC_STATUS.get(decision.action)
    if status is None:
        raise ValueError(f"{decision.action} sends an order; build its ack from the order's outcome")
    return Ack(symbol, decision.action.value, status, decision.reason, bar_time=bar_time)


def ack_skip(symbol: str, action: str, reason: str, detail: str = "", bar_time: int | None = None) -> Ack:
    """An order that was due and not sent: risk verdict, lot or SL/TP error (reason = its code)."""
    return Ack(symbol, action, AckStatus.SKIP, reason, detail, bar_time=bar_time)


def ack_filled(symbol: str, action: str, reason: str, *, client_order_id: str, ticket: int, volume: int,
               fill_price: float, reference_price: float | None, side: Direction, pip_position: int | None,
               bar_time: int | None = None, pnl: float | None = None) -> Ack:
    """A filled order. Slippage is computed when the reference price and pip data are known."""
    slip = None
    if reference_price is not None and pip_position is not None:
        slip = round(slippage_pips(fill_price, reference_price, side, pip_position), 2)
    return Ack(symbol, action, AckStatus.OK, reason, bar_time=bar_time, client_order_id=client_order_id,
               ticket=ticket, volume=volume, fill_price=fill_price, reference_price=reference_price,
               slippage_pips=slip, pnl=pnl)


def ack_failed(symbol: str, action: str, error: str, *, client_order_id: str | None = None,
               bar_time: int | None = None) -> Ack:
    return Ack(symbol, action, AckStatus.FAIL, "BROKER_ERROR", error, bar_time=bar_time,
               client_order_id=client_order_id)


def ack_dry_run(symbol: str, action: str, reason: str, *, client_order_id: str, volume: int | None,
                detail: str = "", bar_time: int | None = None) -> Ack:
    return Ack(symbol, action, AckStatus.DRY_RUN, reason, detail, bar_time=bar_time,
               client_order_id=client_order_id, volume=volume)
