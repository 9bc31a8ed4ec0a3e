"""The Open API's most frequent frame read without the protobuf runtime (pure): the envelope, and
``ProtoOASpotEvent`` with its live trendbars; and its largest, ``ProtoOAGetTrendbarsRes`` (a history answer: a
catch-up's hundreds of trendbars, on the way from the broker to the first bar published).

Spot events come by the thousand (every tick of every subscribed symbol, each with the forming bar of every
subscribed period), and the protobuf runtime that ctrader-open-api pins (3.20) parses in pure Python, a dozen
objects and descriptor look-ups per field. These readers decode the same bytes into plain objects with the
attributes and ``HasField`` of the generated classes that the adapter reads (data.py, parsing.py); an ORDER_ACCEPTED
execution event (one per order) is read as far as the adapter uses it (`OrderAccepted`), any other (its fill) by
execution_wire.py (whose varint and skip readers these share). Field numbers and
types are the generated descriptors' (checked at import); an unknown field is skipped by its wire type, as the
protobuf runtime does. Every other message is parsed by its generated class (schemas.unwrap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.connector.ctrader import execution_wire
from services.connector.ctrader import schemas as proto
from services.connector.ctrader.execution_wire import skip, varint

SPOT_EVENT = proto.payload_type_of(proto.oa.ProtoOASpotEvent)
EXECUTION_EVENT = proto.payload_type_of(proto.oa.ProtoOAExecutionEvent)
ORDER_ACCEPTED = proto.model.ProtoOAExecutionType.Value("ORDER_ACCEPTED")
_INT64 = 1 << 63
_UINT64 = 1 << 64
_VARINT, _BYTES = 0, 2  # wire types

# (field number, name, signed) of the varint fields read: int64 fields are two's complement on the wire
_SPOT_FIELDS = ((1, "payloadType", False), (2, "ctidTraderAccountId", True), (3, "symbolId", True),
                (4, "bid", False), (5, "ask", False), (7, "sessionClose", False), (8, "timestamp", True))
_TRENDBAR_FIELDS = ((3, "volume", True), (4, "period", False), (5, "low", True), (6, "deltaOpen", False),
                    (7, "deltaClose", False), (8, "deltaHigh", False), (9, "utcTimestampInMinutes", False))
_INT_TYPES = {3: True, 4: False, 13: False, 14: False}  # protobuf field type -> signed 64-bit (int64)


def _check(cls: Any, fields: tuple[tuple[int, str, bool], ...]) -> dict[int, tuple[str, bool]]:
    """The varint fields by tag, after checking them against the generated class's descriptor."""
    by_name = cls.DESCRIPTOR.fields_by_name
    for number, name, signed in fields:
        f = by_name[name]
        if f.number != number or _INT_TYPES.get(f.type) is not signed:
            raise ImportError(f"{cls.DESCRIPTOR.name}.{name} is not field {number} of the expected type")
    return {(number << 3) | _VARINT: (name, signed) for number, name, signed in fields}


_SPOT_TAGS = _check(proto.oa.ProtoOASpotEvent, _SPOT_FIELDS)
TRENDBARS_RES = proto.payload_type_of(proto.oa.ProtoOAGetTrendbarsRes)
_TRENDBARS_FIELDS = ((1, "payloadType", False), (2, "ctidTraderAccountId", True), (3, "period", False),
                     (4, "timestamp", True), (6, "symbolId", True))
_TRENDBARS_REQUIRED = ("ctidTraderAccountId", "period", "timestamp")
_TRENDBARS_TAGS = _check(proto.oa.ProtoOAGetTrendbarsRes, _TRENDBARS_FIELDS)
_TRENDBARS_TRENDBAR_TAG = (proto.oa.ProtoOAGetTrendbarsRes.DESCRIPTOR.fields_by_name["trendbar"].number << 3) | 2
_TRENDBAR_TAGS = _check(proto.model.ProtoOATrendbar, _TRENDBAR_FIELDS)
_TRENDBAR_TAG = (proto.oa.ProtoOASpotEvent.DESCRIPTOR.fields_by_name["trendbar"].number << 3) | _BYTES
_TRENDBAR_DEFAULTS = {"period": int(proto.model.ProtoOATrendbar.DESCRIPTOR.fields_by_name["period"].default_value)}


class Fields:
    """A decoded message: its fields as attributes, `HasField` as generated classes. A field read is in the
    instance's dict (its presence), an absent one reads as its default, a class attribute (`_with_defaults`); the
    repeated ``trendbar`` (a list, in the dict too) has no presence."""

    def HasField(self, name: str) -> bool:  # noqa: N802 (the protobuf API's name)
        return name in self.__dict__ and name != "trendbar"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({ {n: v for n, v in sorted(vars(self).items()) if n != 'trendbar'} })"


def _with_defaults(cls: type[Fields], defaults: dict[str, int]) -> None:
    for name, value in defaults.items():
        setattr(cls, name, value)


class SpotEvent(Fields):
    DESCRIPTOR = proto.oa.ProtoOASpotEvent.DESCRIPTOR  # its name, as the generated class says it


class Trendbar(Fields):
    DESCRIPTOR = proto.model.ProtoOATrendbar.DESCRIPTOR


class TrendbarsRes(Fields):
    DESCRIPTOR = proto.oa.ProtoOAGetTrendbarsRes.DESCRIPTOR


def _read(buf: bytes, pos: int, end: int, tags: dict[int, tuple[str, bool]], values: dict[str, Any],
          nested: list[tuple[int, int]] | None = None, nested_tag: int = _TRENDBAR_TAG) -> None:
    """The varint fields of `tags` into `values` (a message's instance dict), the spans of the `nested_tag` field
    into `nested`; any other field skipped."""
    get = tags.get
    while pos < end:
        tag = buf[pos]  # every tag read here is one byte (field numbers below 16): no call for it
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = varint(buf, pos)
        known = get(tag)
        if known is not None:
            value = buf[pos]
            if value < 0x80:
                pos += 1
            else:
                value, pos = varint(buf, pos)
            name, signed = known
            if signed and value >= _INT64:
                value -= _UINT64
            values[name] = value
        elif nested is not None and tag == nested_tag:
            n, pos = varint(buf, pos)
            nested.append((pos, pos + n))
            pos += n
        else:
            pos = skip(buf, pos, tag & 7)
    if pos != end:
        raise ValueError("truncated message")


_with_defaults(SpotEvent, {name: 0 for _n, name, _s in _SPOT_FIELDS} | {"payloadType": SPOT_EVENT})
_with_defaults(Trendbar, {name: 0 for _n, name, _s in _TRENDBAR_FIELDS} | _TRENDBAR_DEFAULTS)


def _trendbars(payload: bytes, spans: list[tuple[int, int]]) -> list[Trendbar]:
    bars = []
    for start, end in spans:
        tb = Trendbar()
        _read(payload, start, end, _TRENDBAR_TAGS, tb.__dict__)
        bars.append(tb)
    return bars


def spot_event(payload: bytes) -> SpotEvent:
    """A ProtoOASpotEvent's bytes as a `SpotEvent` (``trendbar``: a list of `Trendbar`)."""
    out = SpotEvent()
    spans: list[tuple[int, int]] = []
    _read(payload, 0, len(payload), _SPOT_TAGS, out.__dict__, spans)
    out.__dict__["trendbar"] = _trendbars(payload, spans) if spans else []
    return out


_with_defaults(TrendbarsRes, {name: 0 for _n, name, _s in _TRENDBARS_FIELDS} | {
    "payloadType": TRENDBARS_RES,
    "period": int(proto.oa.ProtoOAGetTrendbarsRes.DESCRIPTOR.fields_by_name["period"].default_value)})


def trendbars_res(payload: bytes) -> TrendbarsRes | None:
    """A ProtoOAGetTrendbarsRes's bytes as a `TrendbarsRes` (``trendbar``: a list of `Trendbar`, in order); None
    when a required field is missing (the generated class says what is wrong)."""
    out = TrendbarsRes()
    spans: list[tuple[int, int]] = []
    _read(payload, 0, len(payload), _TRENDBARS_TAGS, out.__dict__, spans, _TRENDBARS_TRENDBAR_TAG)
    if not all(out.HasField(name) for name in _TRENDBARS_REQUIRED):
        return None
    out.__dict__["trendbar"] = _trendbars(payload, spans)
    return out


@dataclass(frozen=True)
class OrderAccepted:
    """A ``ProtoOAExecutionEvent`` of type ORDER_ACCEPTED (one per order, before its fill), read as far as the
    adapter uses it: the position it is for, by ``positionId`` and its trade data's ``symbolId`` (None: it carries
    no position). The order and deal it may carry are left unread (the fill that follows says what changed)."""

    position_id: int | None
    symbol_id: int | None


def _fields(buf: bytes, pos: int, end: int) -> dict[int, Any] | None:
    """A message's varint fields (number -> value) and length-delimited ones (number -> (start, end)); None when a
    field comes twice (the runtime would merge it: left to the generated class)."""
    out: dict[int, Any] = {}
    while pos < end:
        tag, pos = varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == _VARINT:
            value, pos = varint(buf, pos)
        elif wire_type == _BYTES:
            n, pos = varint(buf, pos)
            value, pos = (pos, pos + n), pos + n
        else:
            pos = skip(buf, pos, wire_type)
            continue
        if number in out:
            return None
        out[number] = value
    if pos != end:
        raise ValueError("truncated message")
    return out


def _ints(fields: dict[int, Any], numbers: tuple[int, ...]) -> bool:
    return all(isinstance(fields.get(n), int) for n in numbers)


def _int64(value: int) -> int:
    return value - _UINT64 if value >= _INT64 else value


def order_accepted(payload: bytes) -> OrderAccepted | None:
    """A ProtoOAExecutionEvent's bytes as an `OrderAccepted` when it is one, with the required fields of the event,
    its position and the position's trade data present; None otherwise (read by the generated class)."""
    top = _fields(payload, 0, len(payload))
    if top is None or top.get(3) != ORDER_ACCEPTED or not _ints(top, (2,)):  # executionType, ctidTraderAccountId
        return None
    span = top.get(4)  # position
    if span is None:
        return OrderAccepted(None, None)
    if isinstance(span, int):
        return None
    position = _fields(payload, *span)
    if position is None or not _ints(position, (1, 3, 4)) or not isinstance(position.get(2), tuple):
        return None  # positionId, positionStatus, swap; tradeData
    trade = _fields(payload, *position[2])
    if trade is None or not _ints(trade, (1, 2, 3)):  # symbolId, volume, tradeSide
        return None
    return OrderAccepted(_int64(position[1]), _int64(trade[1]))


def read_frame(body: bytes, accepted: bool = False, fills: bool = False) -> tuple[int, Any, str]:
    """A frame body (the ProtoMessage envelope): its payload type, its message (a spot event read here, with
    `accepted` an ORDER_ACCEPTED execution event as an `OrderAccepted`, and with `fills` too any other execution
    event by execution_wire.py; any other by its generated class, None for an unknown type) and its clientMsgId (""
    when absent)."""
    ptype, payload, cid = 0, b"", ""
    pos, end = 0, len(body)
    while pos < end:
        tag = body[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = varint(body, pos)
        if tag == 0x08:  # payloadType (uint32)
            ptype, pos = varint(body, pos)
            ptype &= 0xFFFFFFFF
        elif tag == 0x12:  # payload (bytes)
            n, pos = varint(body, pos)
            payload, pos = body[pos:pos + n], pos + n
        elif tag == 0x1A:  # clientMsgId (string)
            n, pos = varint(body, pos)
            cid, pos = body[pos:pos + n].decode(), pos + n
        else:
            pos = skip(body, pos, tag & 7)
    if pos != end:
        raise ValueError("truncated envelope")
    if ptype == SPOT_EVENT:
        return ptype, spot_event(payload), cid
    if ptype == TRENDBARS_RES and (res := trendbars_res(payload)) is not None:
        return ptype, res, cid
    if accepted and ptype == EXECUTION_EVENT:
        event = order_accepted(payload)
        if event is None and fills:  # any other execution event (a fill) by execution_wire.py, or else the runtime
            event = execution_wire.execution_event(payload)
        if event is not None:
            return ptype, event, cid
    cls = proto.class_for(ptype)
    if cls is None:
        return ptype, None, cid
    msg = cls()
    msg.ParseFromString(payload)
    return ptype, msg, cid


def read_frame_lean(body: bytes) -> tuple[int, Any, str]:
    """`read_frame` with an ORDER_ACCEPTED execution event as an `OrderAccepted`."""
    return read_frame(body, accepted=True)


def read_frame_adapter(body: bytes) -> tuple[int, Any, str]:
    """`read_frame` as the adapter reads its frames: an ORDER_ACCEPTED execution event as an `OrderAccepted`, any
    other execution event (a fill) as an `execution_wire.Message` (client.py)."""
    return read_frame(body, accepted=True, fills=True)
