"""Real trades as records: the connector's fills, closes and recovered openings -> `trades` records. Pure.

The connector is the only writer of real trades: it hands each record to persistence through its outbox
(`runtime.Service.persist`), which keeps it until acknowledged, also across a restart. Ids are derived from the
broker's facts (`trades.real_trade`: the deal id), so a record handed over twice is a duplicate at the store.

- `fill_input` / `closed_input`: `trades.RealFill` inputs from `fill.<SYM>` / `closed.<SYM>` bodies;
- `recovered_open_input`: an open position whose opening fill the connector never saw (it opened while the
  connector was down) and whose opening deal the broker's deal list does not hold, keyed by the position (when the
  list holds it, the connector records that deal as the fill it was: services/connector/state.py `opening_fills`);
- `real_trade_record`, `recovered_open_record`: those as records in their JSON form, without a session (the store
  fills in the running one).

The signal's intensity and HMM state come from the order's comment when it is ours (the executor's label).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from common.order_label import OrderLabelError, is_ours, parse, parse_client_order_id
from common.records import schema as rec
from common.records import trades

RECOVERED_OPEN_COMMENT = "recovered from the broker's open positions: its opening fill was not seen"


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def bar_time_of(client_order_id: str | None) -> datetime | None:
    """The signal bar time an order id of ours carries (common/order_label.py), None for anyone else's."""
    if not client_order_id:
        return None
    try:
        return utc(parse_client_order_id(client_order_id).bar_time)
    except (OrderLabelError, ValueError, OverflowError, OSError):
        return None


def signal_facts(order_comment: str | None) -> dict[str, Any]:
    """The signal's intensity and HMM state an order comment of ours carries (common/order_label.py); nothing for
    anyone else's comment, or one that does not parse (an opening's record keeps the comment as it came)."""
    if not is_ours(order_comment):
        return {}
    try:
        label = parse(order_comment or "")
    except OrderLabelError:
        return {}
    facts = {"intensity": label.intensity, "hmm_state": label.hmm_state}
    return {k: v for k, v in facts.items() if v is not None}


def fill_input(fill: Mapping[str, Any]) -> dict[str, Any]:
    """A `fill.<SYM>` body (an opening deal) as a `trades.RealFill` input, with the signal's intensity and HMM state
    when the order's comment is ours."""
    cid = fill.get("client_order_id") or None
    order_comment = fill.get("comment") or None
    return {
        "deal_id": str(fill["deal_id"]), "position_id": str(fill["ticket"]), "symbol": fill["symbol"],
        "action": "OPEN", "direction": fill["direction"], "volume": fill["volume"], "time": utc(fill["time"]),
        "entry_price": fill["price"], "bar_time": bar_time_of(cid), "client_order_id": cid, "comment": order_comment,
        **signal_facts(order_comment),
    }


def closed_input(closed: Mapping[str, Any]) -> dict[str, Any]:
    """A `closed.<SYM>` body as a `trades.RealFill` input. The message has no deal id: the closing deal is
    keyed by (position, time, volume), the same for the same deal whenever it is reported."""
    label = closed.get("label") or None
    comment = f"{closed.get('reason', '')}{' external' if closed.get('external') else ''}".strip() or None
    return {
        "deal_id": f"close:{closed['ticket']}:{float(closed['time']):.3f}:{float(closed['volume']):g}",
        "position_id": str(closed["ticket"]), "symbol": closed["symbol"],
        "action": "CLOSE" if closed.get("full", True) else "PARTIAL_CLOSE",
        "direction": closed["direction"], "volume": closed["volume"], "time": utc(closed["time"]),
        "entry_price": closed["entry_price"], "exit_price": closed["close_price"],
        "gross_pnl": closed["gross_profit"], "commission": abs(float(closed["commission"])),
        "swap": closed["swap"], "comment": comment, "client_order_id": label, "pip_size": closed.get("pip_size"),
        **signal_facts(closed.get("comment") or None),
    }


def recovered_open_input(position: Mapping[str, Any]) -> dict[str, Any]:
    """An open position whose opening fill was not seen, as an OPEN trade (no deal id: keyed by position). Keys:
    ticket, symbol, direction, volume, open_time, open_price, label, comment."""
    label = position.get("label") or None
    return {
        "deal_id": f"position-open:{position['ticket']}", "position_id": str(position["ticket"]),
        "symbol": position["symbol"], "action": "OPEN", "direction": position["direction"],
        "volume": position["volume"], "time": utc(position["open_time"]), "entry_price": position["open_price"],
        "bar_time": bar_time_of(label), "client_order_id": label, "comment": RECOVERED_OPEN_COMMENT,
        **signal_facts(position.get("comment") or None),
    }


def real_trade_record(body: Mapping[str, Any], closing: bool) -> dict[str, Any]:
    """The `trades` record of a connector `fill.*` (or, `closing`, `closed.*`) body, in its JSON form without a
    session (the store fills it in): the model's own JSON form, built directly when its values are plain
    (`trades.real_trade_json`)."""
    deal = closed_input(body) if closing else fill_input(body)
    return trades.real_trade_json(deal, session_id="")


def recovered_open_record(position: Mapping[str, Any]) -> dict[str, Any]:
    """The `trades` OPEN record of a position found open whose opening fill was not seen (`recovered_open_input`),
    in its JSON form without a session."""
    return rec.to_json(trades.real_trade(recovered_open_input(position), session_id=""))
