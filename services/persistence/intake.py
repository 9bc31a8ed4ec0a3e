"""What the persistence service makes of what it is sent and what it hears. Pure: no clock, no I/O.

- `prepare_writes`: the records of one `write` op, checked one by one (a bad record is rejected with a reason
  naming the field, the others go on), with a missing `session_id` filled in;
- `alert_event` / `state_event` / `gap_event`: `events` records from `alert.*`, `sys.state` changes and
  sequence gaps in a publisher's stream;
- `session_totals`, `end_reason`: the numbers a session keeps up to date and the reason it ends with.

Trades are not made here: their owners (the connector, the paper trader) send them through their outboxes
(`common/records/real_trades.py`, `common/records/trades.py`). Ids of records made from a published message are
derived (uuid5) from its (publisher, epoch, seq), so a message handled twice maps to the same record and the store
deduplicates it.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from common.records import events as ev
from common.records import schema as rec
from services.persistence.sessions import EndReason

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
