"""The `write` and `query` ops' rules (pure: no clock, no I/O): `prepare_write` checks one write op's parts (a map
table -> records, several tables committed in one transaction) and `prepare_writes` one table's records one by
one (a bad record is rejected with a reason naming the field, the others go on) and fills in a missing
`session_id`; `query_filters` checks a query's filters; `conflict_reason` says why a record differing from the stored
one under the same id is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from common.messages.requests import MAX_WRITE_RECORDS, NAME_CHARS
from common.records import schema as rec
from common.schema import SHOWN_CHARS, shown
from services.persistence.stream_events import utc


@dataclass
class Prepared:
    """One write op's records after the per-record checks."""

    valid: list[tuple[str, str, rec.Record]] = field(default_factory=list)  # (the sender's id, table, record)
    session_filled: set[int] = field(default_factory=set)  # positions in `valid` whose session_id was filled in
    rejected: dict[str, str] = field(default_factory=dict)  # id -> reason (never retried by the sender)


class WriteMalformed(ValueError):
    """A write op whose parts are not a map table -> list of records within the bounds: refused as a whole."""


def prepare_write(
    tables: Any,
    *,
    session_id: str | None,
    stored_session: Callable[[str], str | None] | None = None,
) -> Prepared:
    """One write op's parts: each table's records checked by `prepare_writes` (an unknown table's records are
    rejected one by one), in one `Prepared` whose `valid` keeps each table's records in the order sent. A part that
    is not a table name with a list, or more than MAX_WRITE_RECORDS records in all, is a `WriteMalformed` (the
    whole request refused, nothing of it written)."""
    if not isinstance(tables, Mapping):
        raise WriteMalformed(f"a write's tables must be a map table -> records, got {type(tables).__name__}")
    total = 0
    for table, records in tables.items():
        if not isinstance(table, str) or not table or len(table) > NAME_CHARS:
            raise WriteMalformed(f"a write's table name must be a text of 1 to {NAME_CHARS} characters, got "
                                 f"{shown(table)}")
        if not isinstance(records, list):
            raise WriteMalformed(f"the {shown(table)} records of a write must be a list, got "
                                 f"{type(records).__name__}")
        total += len(records)
    if total > MAX_WRITE_RECORDS:
        raise WriteMalformed(f"a write holds at most {MAX_WRITE_RECORDS} records, got {total}")
    if len(tables) == 1:
        [(table, records)] = tables.items()
        return prepare_writes(table, records, session_id=session_id, stored_session=stored_session)
    out = Prepared()
    for table, records in tables.items():
        part = prepare_writes(table, records, session_id=session_id, stored_session=stored_session)
        out.session_filled.update(len(out.valid) + i for i in part.session_filled)
        out.valid.extend(part.valid)
        out.rejected.update(part.rejected)
    return out


def _rid(record: Any, index: int) -> str:
    rid = record.get("id") if isinstance(record, Mapping) else None
    return rid if isinstance(rid, str) and rid else f"<record {index} without an id>"


def prepare_writes(
    table: str,
    records: Iterable[Any],
    *,
    session_id: str | None,
    stored_session: Callable[[str], str | None] | None = None,
) -> Prepared:
    """Validate every record of a write op on its own, filling in a missing or empty `session_id`.

    `stored_session(id)` gives the session_id of an already stored record with that id (None when there is
    none): a sender's retry keeps the session its first copy got, so it stays a duplicate, never a conflict.
    Without it, the filled-in records are listed in `session_filled`, for the store to keep the stored copy's
    session in the write's transaction (Store.write_batch's keep_stored_session), which is what the service does.
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
        record = raw  # copied only to be filled in (validation copies nothing: the record is not changed)
        filled_in = has_session and not record.get("session_id")
        if filled_in:
            record = dict(raw)
            stored = stored_session(rid) if stored_session and isinstance(record.get("id"), str) else None
            filled = stored if stored is not None else session_id
            record["session_id"] = filled if filled is not None else ("" if table == "trades" else None)
        try:
            validated = rec.validate(table, record)
            if filled_in:
                out.session_filled.add(len(out.valid))
            out.valid.append((rid, table, validated))
        except rec.RecordInvalid as exc:
            out.rejected[rid] = str(exc)
    return out


QUERY_KEYS = ("session_id", "symbol", "is_paper", "event_type", "status", "since", "until")


MAX_QUERY_TIME = 10**10  # Unix seconds (year 2286)


def query_filters(where: Mapping[str, Any]) -> dict[str, Any]:
    """The `where` map of a query op as Store.query filters; ValueError names a key it cannot use."""
    out: dict[str, Any] = {}
    for key, value in where.items():
        if key not in QUERY_KEYS:
            raise ValueError(f"where.{str(key)[:SHOWN_CHARS]}: not a filter (use {', '.join(QUERY_KEYS)})")
        if key in ("since", "until"):
            if isinstance(value, int | float) and not isinstance(value, bool):
                if not (isinstance(value, int) or math.isfinite(value)) or not 0 <= value <= MAX_QUERY_TIME:
                    raise ValueError(f"where.{key}: Unix seconds must be 0..{MAX_QUERY_TIME}, got "
                                     f"{shown(value)}")
                value = utc(value)
            elif isinstance(value, str):
                try:
                    value = datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    raise ValueError(f"where.{key}: not an ISO-8601 time: {shown(value)}") from None
                if value.tzinfo is None:
                    raise ValueError(f"where.{key}: give a timezone (UTC), got {shown(where[key])}")
                try:
                    value.astimezone(UTC)  # a time at the calendar's very ends may have no UTC equivalent
                except OverflowError:
                    raise ValueError(f"where.{key}: out of range: {shown(where[key])}") from None
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
