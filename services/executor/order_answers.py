"""What an order's answer means (pure): its ack, the position it opened, the close it leaves due at the open.

The connector answers an order with an `OrderResult` (filled, or refused with a typed error code), or the
executor has only an error string (no answer in time, not an order result). Also the acks of the orders that are
not sent at all: an opening refused before it goes (sync, halt, dry run), a close whose position already has a
close due at the open. The wire requests of both orders are built here too, so sent and answered orders agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from common import messages
from services.executor import due_closes
from services.executor.acks import (
    Ack,
    AckStatus,
    ack_already_due,
    ack_dry_run,
    ack_failed,
    ack_filled,
    ack_refused,
    ack_skip,
)
from services.executor.batch import Decided
from services.executor.commands import CloseOrder, RealPosition
from services.executor.due_closes import DueClose, DueCloses
from services.executor.plan import OpenOrder
from services.executor.sync import Direction, SyncAction

DUE_CLOSE = "DUE_CLOSE"  # the ack action of a close sent at the open (it was refused as MARKET_CLOSED)
Answer = messages.OrderResult | str  # a string: no order result (the error)


class OrderRequest(NamedTuple):
    """One order as the connector is asked for it (`order_lines.OrderGroup` sends it as it is)."""

    op: str
    args: messages.OrderOpenArgs | messages.OrderCloseArgs
    client_order_id: str


def open_request(order: OpenOrder) -> OrderRequest:
    return OrderRequest(messages.OP_ORDER_OPEN.name, messages.OrderOpenArgs(
        symbol=order.symbol, direction=int(order.direction), lots=order.lots,
        client_order_id=order.client_order_id, sl_distance=order.sl_distance, tp_distance=order.tp_distance,
        comment=order.label), order.client_order_id)


def close_request(ticket: int, client_order_id: str) -> OrderRequest:
    return OrderRequest(messages.OP_ORDER_CLOSE.name,
                        messages.OrderCloseArgs(ticket=ticket, lots=None, client_order_id=client_order_id),
                        client_order_id)


def closing_sides(positions: Sequence[RealPosition]) -> dict[int, Direction]:
    """ticket -> the side of the deal that closes it (a buy closes a short)."""
    return {p.ticket: Direction(-int(p.direction)) for p in positions}


def open_refusal(o: Decided, *, halt_reason: str | None, dry_run: bool) -> Ack | None:
    """The ack of an opening that is not sent (sync, halt, dry run); None: send it. `halt_reason`: the reason
    openings are blocked (None: not halted)."""
    order = o.open
    assert order is not None
    action, bar_time = SyncAction.OPEN.value, o.sig.bar_time
    if not o.allow_open:
        return Ack(order.symbol, action, AckStatus.WAIT_SYNC, "SYNC_NEVER_OPENS",
                   "executor.sync reconciles and closes; it never opens", bar_time=bar_time,
                   client_order_id=order.client_order_id)
    if halt_reason is not None:
        return ack_skip(order.symbol, action, "HALTED", halt_reason, bar_time)
    if dry_run:
        return ack_dry_run(order.symbol, action, o.reason, client_order_id=order.client_order_id,
                           volume=order.lots, detail=f"sl {order.sl_distance} tp {order.tp_distance} "
                           f"label {order.label}", bar_time=bar_time, requested_lots=order.requested_lots,
                           off_step=order.off_step)
    return None


def close_dry_run(c: CloseOrder, action: str, bar_time: int | None) -> Ack:
    return ack_dry_run(c.symbol, action, c.reason, client_order_id=c.client_order_id, volume=c.lots,
                       detail=f"close ticket {c.ticket}", bar_time=bar_time)


def already_due(c: CloseOrder, action: str, bar_time: int | None, due: DueCloses) -> Ack | None:
    """The ack of a close not sent because its position already has a close due at the open; None: send it."""
    waiting = due.for_ticket(c.ticket)
    if waiting is None:
        return None
    return ack_already_due(c.symbol, action, ticket=c.ticket, due_client_order_id=waiting.client_order_id,
                           client_order_id=c.client_order_id, bar_time=bar_time)


def open_answered(order: OpenOrder, o: Decided, answer: Answer,
                  positions: Sequence[RealPosition]) -> tuple[Ack, RealPosition | None]:
    """The ack of an opening's answer, and the position it opened when `positions` does not list it yet (a
    positions answer may have brought it already)."""
    action, cid, bar_time = SyncAction.OPEN.value, order.client_order_id, o.sig.bar_time
    if isinstance(answer, str):
        return ack_failed(order.symbol, action, answer, client_order_id=cid, bar_time=bar_time), None
    if not answer.success or answer.ticket is None or answer.price is None:
        return ack_refused(order.symbol, action, opening=True, error_code=answer.error_code,
                           broker_code=answer.broker_code,
                           error=answer.error or ("" if not answer.success else "no ticket or price in the result"),
                           client_order_id=cid, bar_time=bar_time, volume=order.lots,
                           requested_lots=order.requested_lots, off_step=order.off_step), None
    opened = None
    if all(p.ticket != answer.ticket for p in positions):
        opened = RealPosition(answer.ticket, order.symbol, order.direction, order.lots, cid)
    pip = o.data.price_data.pip_position if o.data is not None and o.data.price_data else None
    return ack_filled(order.symbol, action, o.reason, client_order_id=cid, ticket=answer.ticket,
                      volume=order.lots, fill_price=answer.price, reference_price=o.sig.close,
                      side=order.direction, pip_position=pip, bar_time=bar_time,
                      requested_lots=order.requested_lots, off_step=order.off_step), opened


@dataclass(frozen=True)
class CloseAnswered:
    ack: Ack
    due: DueCloses  # with the close the market refused added (due at the open)
    newly_due: DueClose | None  # that close, when it was not due already


def close_answered(c: CloseOrder, action: str, sig: messages.Signal | None, side: Direction | None, answer: Answer,
                   *, pip_position: int | None, due: DueCloses, now: float,
                   bar_time: int | None = None) -> CloseAnswered:
    """The ack of a close's answer. A close the market refused becomes due at the open (`now`: since when); a due
    close sent at the open (action DUE_CLOSE) is not added again (`DueCloses.answered` keeps it)."""
    bar_time = sig.bar_time if sig is not None else bar_time
    if isinstance(answer, str):
        return CloseAnswered(ack_failed(c.symbol, action, answer, client_order_id=c.client_order_id,
                                        bar_time=bar_time), due, None)
    if answer.success and answer.price is not None and side is not None:
        return CloseAnswered(ack_filled(c.symbol, action, c.reason, client_order_id=c.client_order_id,
                                        ticket=c.ticket, volume=c.lots, fill_price=answer.price,
                                        reference_price=sig.close if sig is not None else None, side=side,
                                        pip_position=pip_position, bar_time=bar_time), due, None)
    if answer.success or answer.error_code == "POSITION_NOT_FOUND" or answer.error == "POSITION_NOT_FOUND":
        return CloseAnswered(Ack(c.symbol, action, AckStatus.OK, "ALREADY_FLAT" if not answer.success else c.reason,
                                 bar_time=bar_time, client_order_id=c.client_order_id, ticket=c.ticket,
                                 volume=c.lots), due, None)
    newly_due = None
    if due_closes.market_refused(answer) and action != DUE_CLOSE:
        due, added = due.add(due_closes.refused(c, action, bar_time, now))
        newly_due = due.for_ticket(c.ticket) if added else None
    ack = ack_refused(c.symbol, action, opening=False, error_code=answer.error_code, broker_code=answer.broker_code,
                      error=answer.error, client_order_id=c.client_order_id, bar_time=bar_time, ticket=c.ticket,
                      volume=c.lots)
    return CloseAnswered(ack, due, newly_due)
