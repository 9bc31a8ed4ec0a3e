"""The `events` records persistence makes of what it hears on the stream (pure: no clock, no I/O): `alert_event`
(an `alert.*`, but not the executor's: it stores its own), `state_event` (a `sys.state` change), `gap_event` (a
sequence gap in a publisher's stream), and the event types persistence itself records.

Ids of records made from a published message are derived (uuid5) from its (publisher, topic, epoch, seq), so a message
handled twice maps to the same record and the store deduplicates it. Trades are not made here: their owners (the
connector, the paper trader) send them through their outboxes (`common/records/`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from common.records import events as ev
from common.records import schema as rec

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
    severity = {"HALTED": "CRITICAL", "FAILED": "CRITICAL", "DEGRADED": "WARNING"}.get(new, "INFO")
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
