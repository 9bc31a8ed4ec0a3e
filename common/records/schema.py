"""Record schemas (what every sender builds, what persistence stores): one pydantic model per table, and
validation with errors that name table and field.

Pure: no I/O. A record is the set of columns a client sends; `created_at` is server-side and never part
of a record. Every record has `id` (a client-made UUID) and `rev` (its version, 0 for a first write; a
changed record is written again with the same id and a higher rev).

Timestamps must be timezone-aware; they are normalised to UTC and serialised at a fixed width
(`2026-01-02T03:04:05.000000Z`) so that text order equals time order in SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class RecordInvalid(ValueError):
    """A record does not match its table's schema. The message names the table and the field(s)."""

    def __init__(self, table: str, problems: list[tuple[str, str]]):
        self.table = table
        self.problems = problems
        text = "; ".join(f"{table}.{field}: {msg}" for field, msg in problems)
        super().__init__(f"invalid {table} record: {text}")


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware (UTC), got a naive datetime")
    return value.astimezone(UTC)


_TS_TEXTS: dict[datetime, str] = {}  # format_ts's recent results: a bar's records share a few times
_TS_TEXTS_MAX = 256


def format_ts(value: datetime) -> str:
    """Fixed-width ISO-8601 UTC text for a timezone-aware datetime.

    The texts of the last few hundred instants are kept: a bar's records repeat a few times (the bar's, the send's)
    and this runs twice per record stored. Aware datetimes are equal (and hash equal) exactly when they are the
    same instant, whose UTC text is one; a naive one never matches an aware key (and is refused as before)."""
    text = _TS_TEXTS.get(value)
    if text is None:
        text = _format_ts(value)
        if len(_TS_TEXTS) >= _TS_TEXTS_MAX:
            _TS_TEXTS.clear()
        _TS_TEXTS[value] = text
    return text


def _format_ts(value: datetime) -> str:
    if value.tzinfo is not UTC:
        value = to_utc(value)
    if value.year < 1000:  # strftime's %Y does not pad them to four digits, isoformat does
        return value.strftime(TS_FORMAT)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"  # strftime(TS_FORMAT)'s text at a third of its cost


def _json_text(value: Any) -> Any:
    """Accept JSON given as text (what the old trade logger sent and what SQLite stores)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg}") from exc
    return value


UtcTime = Annotated[datetime, AfterValidator(to_utc), PlainSerializer(format_ts, when_used="json")]
JsonObject = Annotated[dict[str, Any], BeforeValidator(_json_text)]
TextList = Annotated[list[str], BeforeValidator(_json_text)]
Direction = Literal[-1, 0, 1]
Intensity = Annotated[int, Field(ge=0, le=3)]
EVENT_TYPE_RE = r"^[A-Z][A-Z0-9_]*$"

SESSION_STATUSES = ("RUNNING", "STOPPED")
END_REASONS = ("NORMAL", "DAY_CHANGE", "EMERGENCY", "MANUAL", "RECOVERED", "UNKNOWN")
SEVERITIES = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: UUID
    rev: Annotated[int, Field(ge=0)] = 0


class Session(Record):
    session_id: Annotated[str, Field(min_length=1, max_length=64)]
    start_time: UtcTime
    end_time: UtcTime | None = None
    initial_balance: float | None = None
    final_balance: float | None = None
    total_trades: Annotated[int, Field(ge=0)] = 0
    total_pnl: float = 0.0
    symbols: TextList = Field(default_factory=list)
    status: Literal["RUNNING", "STOPPED"] = "RUNNING"
    end_reason: Literal["NORMAL", "DAY_CHANGE", "EMERGENCY", "MANUAL", "RECOVERED", "UNKNOWN"] | None = None
    recovered_count: Annotated[int, Field(ge=0)] = 0


class Trade(Record):
    session_id: str
    trade_id: str | None = None
    timestamp: UtcTime
    bar_time: UtcTime | None = None
    symbol: Annotated[str, Field(min_length=1)]
    direction: Direction
    intensity: Intensity = 0
    action: Annotated[str, Field(min_length=1)]
    volume: Annotated[float, Field(ge=0)] = 0.0
    entry_price: float | None = None
    exit_price: float | None = None
    pnl: float = 0.0
    pnl_pips: float = 0.0
    commission: float = 0.0
    swap: float = 0.0
    hmm_state: int | None = None
    is_paper: bool = False
    comment: str | None = None
    position_id: str | None = None
    client_order_id: str | None = None


class Event(Record):
    session_id: str | None = None
    timestamp: UtcTime
    event_type: Annotated[str, Field(pattern=EVENT_TYPE_RE)]
    severity: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    source: str | None = None
    symbol: str | None = None
    message: str | None = None
    data: JsonObject = Field(default_factory=dict)


class SessionHeartbeat(Record):
    session_id: Annotated[str, Field(min_length=1)]
    timestamp: UtcTime
    system_state: str | None = None
    balance: float | None = None
    equity: float | None = None
    open_positions: Annotated[int, Field(ge=0)] | None = None
    backlog: Annotated[int, Field(ge=0)] | None = None
    data: JsonObject = Field(default_factory=dict)


class Signal(Record):
    session_id: str | None = None
    timestamp: UtcTime
    bar_time: UtcTime
    symbol: Annotated[str, Field(min_length=1)]
    timeframe: str | None = None
    action: Literal["WAIT", "LONG", "SHORT"]
    direction: Direction
    intensity: Intensity = 0
    hmm_state: int | None = None
    seq: int | None = None
    src_epoch: str | None = None
    data: JsonObject = Field(default_factory=dict)


class SignalAck(Record):
    """An `acks` row: the executor's answer to one signal (not a store's write acknowledgement)."""

    session_id: str | None = None
    timestamp: UtcTime
    symbol: Annotated[str, Field(min_length=1)]
    bar_time: UtcTime | None = None
    signal_id: UUID | None = None
    signal_seq: int | None = None
    decision: Annotated[str, Field(min_length=1)]
    status: str | None = None
    client_order_id: str | None = None
    position_id: str | None = None
    volume: float | None = None
    price: float | None = None
    latency_ms: float | None = None
    reason: str | None = None
    data: JsonObject = Field(default_factory=dict)


TABLES: dict[str, type[Record]] = {
    "sessions": Session,
    "trades": Trade,
    "events": Event,
    "session_heartbeats": SessionHeartbeat,
    "signals": Signal,
    "acks": SignalAck,
}

# Columns whose SQLite value is JSON text.
JSON_COLUMNS = {"symbols", "data"}


def columns(table: str) -> list[str]:
    """The record columns of a table, in schema order (without the server-side created_at)."""
    return list(model_for(table).model_fields)


def model_for(table: str) -> type[Record]:
    try:
        return TABLES[table]
    except KeyError:
        raise RecordInvalid(table, [("<table>", f"unknown table (known: {', '.join(TABLES)})")]) from None


def validate(table: str, record: Mapping[str, Any] | Record) -> Record:
    """Validate one record for `table`; raise RecordInvalid naming the table and field(s)."""
    model = model_for(table)
    if isinstance(record, model):
        return record
    if isinstance(record, Record):
        wrong = type(record).__name__
        raise RecordInvalid(table, [("<record>", f"a {wrong} record is not a {table} record")])
    if not isinstance(record, Mapping):
        raise RecordInvalid(table, [("<record>", f"expected a mapping, got {type(record).__name__}")])
    try:  # the model's validator itself: model_validate's checks of its arguments cost a third of a small record's
        return model.__pydantic_validator__.validate_python(record if type(record) is dict else dict(record))
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-")) or "<record>"
            problems.append((loc, err["msg"]))
        raise RecordInvalid(table, problems) from None


def to_json(record: Record) -> dict[str, Any]:
    """The JSON form of a record: what sinks send (UUIDs and times as text, lists and dicts as JSON)."""
    return record.model_dump(mode="json")


def to_sqlite_row(record: Record) -> dict[str, Any]:
    """The SQLite form: JSON columns as text, booleans as 0/1."""
    row = to_json(record)
    for col in JSON_COLUMNS & row.keys():
        row[col] = json.dumps(row[col], sort_keys=True, separators=(",", ":"))
    return {k: (int(v) if isinstance(v, bool) else v) for k, v in row.items()}


def from_sqlite_row(table: str, row: Mapping[str, Any]) -> Record:
    """Rebuild a record from a SQLite row (extra columns such as created_at are ignored)."""
    model = model_for(table)
    values = {k: row[k] for k in row.keys()}  # noqa: SIM118 - sqlite3.Row iterates over values
    return model.model_validate({k: values[k] for k in model.model_fields if k in values})
