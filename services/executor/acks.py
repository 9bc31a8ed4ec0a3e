"""The executor's ack: what happened to one signal (or command) on one symbol. Log-only, never fed back.
The same fact has two other forms: published as `common.messages.Ack` on `ack.<SYM>` (`Ack.wire_body`), and
stored as an ack record (`inputs.ack_record`; the state file keeps the last ones as `ack_records`).

Status:
- OK: the decision was carried out (order filled, or nothing to do: SYNCED / FLAT / INTENSITY_IGNORED);
- SKIP: an action was due and deliberately not taken (disabled, paused, orphan, risk, lots, SL/TP data), or an
  opening the broker refused because its market is closed (MARKET_CLOSED: never sent again, a missed entry);
- FAIL: an order was sent and the broker rejected it or it timed out. The reason is the connector's typed error
  (`OrderResult.error_code`: BAD_VOLUME, MARKET_CLOSED, ...; BROKER_ERROR when the result has none) with the
  broker's own code and words in the details; CONNECTOR_ERROR when the connector gave no order result at all.
  A close refused as MARKET_CLOSED is kept as due at the open (`due_at_open`, due_closes.py);
- WAIT_SYNC: flat while the model is positioned: missed entry, waiting for an edge;
- DRY_RUN: the order that would have been sent, not sent (dry-run mode).

Slippage is in pips and signed so that positive is against us: a LONG filled above the signal's bar close,
a SHORT filled below it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from common.messages import ORDER_ERROR_CODES
from services.executor.sync import Direction, SyncAction, SyncDecision

MARKET_CLOSED = "MARKET_CLOSED"


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
    volume: float | None = None  # lots sent (an opening) or of the position (a close)
    fill_price: float | None = None
    reference_price: float | None = None  # the signal's bar close
    slippage_pips: float | None = None
    pnl: float | None = None  # realised, on closes
    requested_lots: float | None = None  # the configured lots, when they were off the symbol's step
    off_step: str | None = None  # the symbol's off-step rule applied to them (refuse / round_down)
    error_code: str | None = None  # the connector's typed order error (common/messages/ ORDER_ERROR_CODES)
    broker_code: str | None = None  # the broker's own error code
    due_at_open: bool | None = None  # a close the market refused: kept, sent once at the open

    def to_dict(self) -> dict[str, Any]:
        # every field is a plain value: read directly (dataclasses.asdict deep-copies, 10x the cost, per ack)
        out = {name: getattr(self, name) for name in _FIELDS}
        out["status"] = self.status.value
        return out

    def wire_body(self) -> dict[str, Any]:
        """The `ack` record of common/messages/: symbol, bar_time, status, reason, details (the rest)."""
        details = {k: v for k in _DETAIL_FIELDS if (v := getattr(self, k)) is not None and v != ""}
        return {"symbol": self.symbol, "bar_time": self.bar_time or 0, "status": self.status.value,
                "reason": self.reason, "details": details}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ack:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ack fields: {sorted(unknown)}")
        return cls(**{**data, "status": AckStatus(data["status"])})


_FIELDS = tuple(f.name for f in fields(Ack))
_DETAIL_FIELDS = tuple(n for n in _FIELDS if n not in ("symbol", "bar_time", "status", "reason"))


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


def ack_skip(symbol: str, action: str, reason: str, detail: str = "", bar_time: int | None = None,
             requested_lots: float | None = None, off_step: str | None = None) -> Ack:
    """An order that was due and not sent: risk verdict, lot or SL/TP error (reason = its code)."""
    return Ack(symbol, action, AckStatus.SKIP, reason, detail, bar_time=bar_time,
               **_off_step(requested_lots, off_step))


def _off_step(requested_lots: float | None, off_step: str | None) -> dict[str, Any]:
    return {"requested_lots": requested_lots, "off_step": off_step} if off_step else {}


def ack_filled(symbol: str, action: str, reason: str, *, client_order_id: str, ticket: int, volume: float,
               fill_price: float, reference_price: float | None, side: Direction, pip_position: int | None,
               bar_time: int | None = None, pnl: float | None = None, requested_lots: float | None = None,
               off_step: str | None = None) -> Ack:
    """A filled order (`volume` in lots). Slippage is computed when the reference price and pip data are known.
    `requested_lots` and `off_step` are given when the configured lots were off the symbol's step."""
    slip = None
    if reference_price is not None and pip_position is not None:
        slip = round(slippage_pips(fill_price, reference_price, side, pip_position), 2)
    return Ack(symbol, action, AckStatus.OK, reason, bar_time=bar_time, client_order_id=client_order_id,
               ticket=ticket, volume=volume, fill_price=fill_price, reference_price=reference_price,
               slippage_pips=slip, pnl=pnl, **_off_step(requested_lots, off_step))


def ack_failed(symbol: str, action: str, error: str, *, client_order_id: str | None = None,
               bar_time: int | None = None, reason: str = "CONNECTOR_ERROR") -> Ack:
    """An order without an order result: the connector did not answer it or refused the request itself."""
    return Ack(symbol, action, AckStatus.FAIL, reason, error, bar_time=bar_time, client_order_id=client_order_id)


def order_error_reason(error_code: str) -> str:
    """The ack reason of an order the connector answered with a failure: its typed error code, or BROKER_ERROR
    when it has none (or one outside the contract; the code is still in the ack's details)."""
    return error_code if error_code in ORDER_ERROR_CODES else "BROKER_ERROR"


def ack_refused(symbol: str, action: str, *, opening: bool, error_code: str, broker_code: str, error: str,
                client_order_id: str, bar_time: int | None = None, ticket: int | None = None,
                volume: float | None = None, requested_lots: float | None = None,
                off_step: str | None = None) -> Ack:
    """An order the connector answered with a failure. Reason = the typed error code; the broker's code and words
    in the details. MARKET_CLOSED: an opening is SKIP (not sent again: its move is a missed entry); a close is FAIL
    and due at the open (the caller keeps it, due_closes.py)."""
    reason = order_error_reason(error_code)
    status = AckStatus.FAIL
    due = None
    detail = error or "refused without a message"
    if reason == MARKET_CLOSED and opening:
        status = AckStatus.SKIP
        detail = f"market closed: the opening is not sent again (its move is a missed entry); broker: {detail}"
    elif reason == MARKET_CLOSED:
        due = True
        detail = (f"market closed: the close is due at the open, sent once then with the same client order id; "
                  f"broker: {detail}")
    return Ack(symbol, action, status, reason, detail, bar_time=bar_time, client_order_id=client_order_id,
               ticket=ticket, volume=volume, error_code=error_code or None, broker_code=broker_code or None,
               due_at_open=due, **_off_step(requested_lots, off_step))


def ack_already_due(symbol: str, action: str, *, ticket: int, due_client_order_id: str, client_order_id: str,
                    bar_time: int | None = None) -> Ack:
    """A close not sent because the same position already has a close due at the open."""
    return Ack(symbol, action, AckStatus.SKIP, MARKET_CLOSED,
               f"position {ticket} already has a close due at the open ({due_client_order_id})",
               bar_time=bar_time, client_order_id=client_order_id, ticket=ticket, due_at_open=True)


def ack_dry_run(symbol: str, action: str, reason: str, *, client_order_id: str, volume: float | None,
                detail: str = "", bar_time: int | None = None, requested_lots: float | None = None,
                off_step: str | None = None) -> Ack:
    return Ack(symbol, action, AckStatus.DRY_RUN, reason, detail, bar_time=bar_time,
               client_order_id=client_order_id, volume=volume, **_off_step(requested_lots, off_step))
