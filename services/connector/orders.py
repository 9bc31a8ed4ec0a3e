"""Order idempotency decisions (pure): is this client order id already an order at the broker?"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from services.connector.port import OrderResult, Position

MAX_CLIENT_ORDER_ID = 50  # ProtoOANewOrderReq.clientOrderId limit (label: 100)


def new_client_order_id(prefix: str = "ot") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def validate_client_order_id(cid: str) -> str:
    if not cid or len(cid) > MAX_CLIENT_ORDER_ID:
        raise ValueError(f"client order id must be 1..{MAX_CLIENT_ORDER_ID} characters: {cid!r}")
    return cid


def existing_order(
    cid: str, own: Mapping[str, OrderResult], positions: Iterable[Position]
) -> OrderResult | None:
    """The order this id already produced: our own record first, else an open position labelled with it."""
    if cid in own:
        return own[cid]
    for p in positions:
        if p.label == cid:
            return OrderResult(
                True,
                cid,
                ticket=p.ticket,
                price=p.open_price,
                volume=p.volume,
                sl=p.sl,
                tp=p.tp,
                recovered=True,
            )
    return None
