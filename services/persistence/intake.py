"""What the persistence service makes of what it is sent and what it hears. Pure: no clock, no I/O.

- `prepare_writes`: the records of one `write` op, checked one by one (a bad record is rejected with a reason
  naming the field, the others go on), with a missing `session_id` filled in;
- `fill_input` / `closed_input`: `trades.RealFill` inputs from the connector's `fill.*` / `closed.*` bodies;
- `alert_event` / `state_event` / `gap_event`: `events` records from `alert.*`, `sys.state` changes and
  sequence gaps in a publisher's stream;
- `paper_fallback`: a `trades` record from a `paper.trade.*` body, for a trade whose own record (the paper
  trader persists it through its outbox) never arrived;
- `session_totals`, `end_reason`: the numbers and the reason a session ends with.

Ids are derived (uuid5) from the message's (publisher, epoch, seq) or from the broker's facts, so a message
handled twice (a replay, a restart) maps to the same record and the store deduplicates it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.persistence import events as ev
from services.persistence import records as rec
from services.persistence import trades
from services.persistence.sessions import EndReason

# the comment of a trades record built from a paper.trade message (the paper trader's own record replaces it)
PAPER_FALLBACK_COMMENT = "from the paper.trade message: the paper trader's own record had not arrived"
RECOVERED_OPEN_COMMENT = "recovered from the connector's open positions after a gap in its stream"

FILLS_MAY_BE_MISSING = "FILLS_MAY_BE_MISSING"
FILLS_RECOVERED = "FILLS_RECOVERED"
STREAM_GAP = "STREAM_GAP"
SYSTEM_STATE = "SYSTEM_STATE"
INITIAL_BALANCE_FROM_CONFIG = "INITIAL_BALANCE_FROM_CONFIG"
TRADES_ADOPTED = "TRADES_ADOPTED"
DAY_CHANGE = "DAY_CHANGE"
SESSION_SUMMARY = "SESSION_SUMMARY"
STORE_ERROR = "STORE_ERROR"

_SEVERITY = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR", "critical": "CRITICAL"}


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def msg_id(kind: str, src: str, epoch: int, seq: int, topic: str = "") -> uuid.UUID:
    """The id of a record made from one published message (seq counts per publisher and topic)."""
    return ev.derived_id(f"{src}:{topic}:{epoch}:{seq}", kind)


# ---- the write op --------------------------------------------------------------------------------


@dataclass
class Prepared:
    """One write op's records after the per-record checks."""

    valid: list[tuple[str, str, rec.Record]] = field(default_factory=list)  # (the sender's id, table, record)
    rejected: dict[str, str] = field(default_factory=dict)  # id -> reason (never retried by the sender)


def _rid(record: Any, index: int) -> str:
    rid = record.get("id") if isinstance(record, Mapping) else None
    return rid if isinstance(rid, str) and rid else f"<record {index} without an id>"


def prepare_writes(
    table: str,
    records: Iterable[Any],
    *,
    session_id: str | None,
    stored_session: Callable[[str], str | None],
) -> Prepared:
    """Validate every record of a write op on its own, filling in a missing or empty `session_id`.

    `stored_session(id)` gives the session_id of an already stored record with that id (None when there is
    none): a sender's retry keeps the session its first copy got, so it stays a duplicate, never a conflict.
    Without a current session the field is left empty (the session adopts such trades when it starts)."""
    out = Prepared()
    try:
        rec.model_for(table)
    except rec.RecordInvalid as exc:
        for i, r in enumerate(records):
            out.rejected[_rid(r, i)] = str(exc)
        return out
    has_session = "session_id" in rec.columns(table) and table != "sessions"
    for i, raw in enumerate(records):
        rid = _rid(raw, i)
        if not isinstance(raw, Mapping):
            out.rejected[rid] = f"invalid {table} record: expected a map, got {type(raw).__name__}"
            continue
        record = dict(raw)
        if has_session and not record.get("session_id"):
            stored = stored_session(rid) if isinstance(record.get("id"), str) else None
            filled = stored if stored is not None else session_id
            record["session_id"] = filled if filled is not None else ("" if table == "trades" else None)
        try:
            out.valid.append((rid, table, rec.validate(table, record)))
        except rec.RecordInvalid as exc:
            out.rejected[rid] = str(exc)
    return out


QUERY_KEYS = ("session_id", "symbol", "is_paper", "event_type", "status", "since", "until")


def query_filters(where: Mapping[str, Any]) -> dict[str, Any]:
    """The `where` map of a query op as Store.query filters; ValueError names a key it cannot use."""
    out: dict[str, Any] = {}
    for key, value in where.items():
        if key not in QUERY_KEYS:
            raise ValueError(f"where.{key}: not a filter (use {', '.join(QUERY_KEYS)})")
        if key in ("since", "until"):
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = utc(value)
            elif isinstance(value, str):
                try:
                    value = datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    raise ValueError(f"where.{key}: not an ISO-8601 time: {value!r}") from None
                if value.tzinfo is None:
                    raise ValueError(f"where.{key}: give a timezone (UTC), got {where[key]!r}")
            else:
                raise ValueError(f"where.{key}: expected an ISO-8601 time or Unix seconds")
        elif key == "is_paper":
            if not isinstance(value, bool):
                raise ValueError("where.is_paper: expected true or false")
        elif not isinstance(value, str):
            raise ValueError(f"where.{key}: expected text")
        out[key] = value
    return out


def conflict_reason(table: str, rid: str, fields: Iterable[str]) -> str:
    return (f"conflict: a different {table} record with id {rid} and the same rev is already stored "
            f"(differing fields: {', '.join(fields) or '?'}); send it with a higher rev to replace it")


# ---- connector ---------------------------------------------------------------------------------


def bar_time_of(client_order_id: str | None) -> datetime | None:
    """The signal bar time an order id of ours carries (common.order_label), None for anyone else's."""
    if not client_order_id:
        return None
    from common.order_label import OrderLabelError, parse_client_order_id

    try:
        return utc(parse_client_order_id(client_order_id).bar_time)
    except (OrderLabelError, ValueError, OverflowError, OSError):
        return None


def signal_facts(order_comment: str | None) -> dict[str, Any]:
    """The signal's intensity and HMM state an order comment of ours carries (the executor's label,
    common.order_label); nothing for anyone else's comment, or one that does not parse (an opening's record keeps
    the comment as it came)."""
    from common.order_label import OrderLabelError, is_ours, parse

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


def real_trade_record(body: Mapping[str, Any], closing: bool) -> dict[str, Any]:
    """The `trades` record of a connector `fill.*` (or, `closing`, `closed.*`) body, in its JSON form without a
    session (the store fills it in). The connector hands it to persistence through its outbox, which keeps it
    until acknowledged: a deal that persistence missed on the stream (down, frozen, restarting) is not lost. The
    copy persistence makes from the stream is the same record (same id, same fields): a duplicate."""
    deal = closed_input(body) if closing else fill_input(body)
    return rec.to_json(trades.real_trade(deal, session_id=""))


def recovered_open_input(position: Mapping[str, Any]) -> dict[str, Any]:
    """An open position whose opening fill never reached us, as an OPEN trade (no deal id: keyed by position)."""
    label = position.get("label") or None
    return {
        "deal_id": f"position-open:{position['ticket']}", "position_id": str(position["ticket"]),
        "symbol": position["symbol"], "action": "OPEN", "direction": position["direction"],
        "volume": position["volume"], "time": utc(position["open_time"]), "entry_price": position["open_price"],
        "bar_time": bar_time_of(label), "client_order_id": label, "comment": RECOVERED_OPEN_COMMENT,
        **signal_facts(position.get("comment") or None),
    }


def unrecorded_positions(positions: Iterable[Mapping[str, Any]], recorded: set[str]) -> list[dict[str, Any]]:
    """Open positions with no trade recorded for their position id (checked again after a settle time, so a
    fill still in flight when the positions were read is not taken for a lost one)."""
    return [dict(p) for p in positions if str(p.get("ticket")) not in recorded]


# ---- events from the stream --------------------------------------------------------------------


def alert_event(src: str, epoch: int, seq: int, ts_ns: int, alert: Mapping[str, Any],
                session_id: str | None, topic: str = "") -> rec.Record:
    details = alert.get("details") or {}
    return ev.make_event(
        msg_id("alert", src, epoch, seq, topic), utc(ts_ns / 1e9), ev.ALERT, session_id=session_id,
        severity=_SEVERITY.get(str(alert.get("severity", "")).lower(), "WARNING"),
        source=alert.get("service") or src, symbol=details.get("symbol") if isinstance(details, Mapping) else None,
        message=alert.get("message"), data={"kind": alert.get("kind"), "details": details},
    )


def state_event(src: str, epoch: int, seq: int, ts_ns: int, previous: str, state: Mapping[str, Any],
                session_id: str | None, topic: str = "") -> rec.Record:
    new = state.get("state", "")
    severity = {"HALTED": "CRITICAL", "DEGRADED": "WARNING"}.get(new, "INFO")
    return ev.make_event(
        msg_id("state", src, epoch, seq, topic), utc(ts_ns / 1e9), SYSTEM_STATE, session_id=session_id,
        severity=severity, source=src, message=f"system {previous or '?'} -> {new}",
        data={"from": previous, "to": new, "event": state.get("event", ""), "issues": list(state.get("issues", [])),
              "halted_reason": state.get("halted_reason", "")},
    )


def gap_event(src: str, epoch: int, seq: int, ts_ns: int, delivery: str, missed: int,
              session_id: str | None, what: str, topic: str = "") -> rec.Record:
    return ev.make_event(
        msg_id("gap", src, epoch, seq, topic), utc(ts_ns / 1e9), STREAM_GAP, session_id=session_id, severity="WARNING",
        source="persistence", message=f"{src}: {delivery} ({missed or 'unknown number of'} message(s) missed); {what}",
        data={"publisher": src, "delivery": delivery, "missed": missed, "epoch": epoch, "seq": seq},
    )


# ---- paper -------------------------------------------------------------------------------------


def paper_fallback(trade: Mapping[str, Any], session_id: str) -> rec.Record:
    """A trades record from a `paper.trade.<SYM>` body (rev 0, marked by its comment), under the paper
    trader's own record id."""
    exit_time = utc(trade["exit_time"])
    return rec.validate("trades", {
        "id": trade["id"], "session_id": session_id, "trade_id": str(trade["id"]).replace("-", "")[:8],
        "timestamp": exit_time, "bar_time": exit_time, "symbol": trade["symbol"], "direction": trade["direction"],
        "intensity": trade.get("intensity", 0), "action": "CLOSE", "entry_price": trade["entry_price"],
        "exit_price": trade["exit_price"], "pnl": trade["pnl"], "pnl_pips": trade.get("pips", 0.0),
        "commission": abs(float(trade.get("commission", 0.0))),
        "hmm_state": None if trade.get("hmm_state", -1) < 0 else trade["hmm_state"], "is_paper": True,
        "comment": PAPER_FALLBACK_COMMENT,
    })


def replaces_fallback(stored: rec.Record | None, incoming: rec.Record) -> bool:
    """The paper trader's own record arriving after the fallback made from its message: it replaces it."""
    return (isinstance(stored, rec.Trade) and isinstance(incoming, rec.Trade) and stored.is_paper
            and stored.comment == PAPER_FALLBACK_COMMENT and incoming.comment != PAPER_FALLBACK_COMMENT
            and incoming.rev <= stored.rev)


# ---- sessions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    trades: int = 0  # positions closed (a position closed in parts counts once)
    closing_deals: int = 0
    pnl: float = 0.0  # net: every deal's pnl (opening commissions included)


def session_totals(trades: Iterable[rec.Record]) -> Totals:
    positions: set[str] = set()
    deals = 0
    pnl = 0.0
    for t in trades:
        assert isinstance(t, rec.Trade)
        pnl += t.pnl
        if t.action != "OPEN":
            deals += 1
            positions.add(t.position_id or str(t.id))
    return Totals(len(positions), deals, round(pnl, 8))


def end_reason(asked: str | None, stop_reason: str, state_before_stop: str) -> EndReason:
    """The reason a session ends with: the one the step was given; else EMERGENCY when the system was HALTED
    when the stop began; else the one the operator's stop carried (`stopping <REASON>` in sys.state); else
    NORMAL."""
    if asked and asked.upper() in EndReason.__members__:
        return EndReason(asked.upper())
    if state_before_stop == "HALTED":
        return EndReason.EMERGENCY
    if stop_reason and stop_reason.upper() in EndReason.__members__:
        return EndReason(stop_reason.upper())
    return EndReason.NORMAL


def stop_reason_of(state_event_text: str) -> str | None:
    """The reason in the orchestrator's `stopping <REASON>` sys.state event, if that is what it says."""
    words = state_event_text.split()
    return words[1] if len(words) >= 2 and words[0] == "stopping" else None
