"""The simulator's most frequent frame written without the protobuf runtime (pure): a ``ProtoOASpotEvent`` with its
live trendbars, in its ``ProtoMessage`` envelope, length-prefixed.

A replay burst sends one spot event per symbol per point (60 an hour), and the protobuf runtime that
ctrader-open-api pins (3.20) builds and serialises them in pure Python, a dozen objects and descriptor look-ups per
field: most of the simulator's CPU in a burst. `spot_frame` writes the bytes the generated classes write for the
same fields (proto2: the fields set, in field-number order; int64 as 64-bit two's complement varints), so the
connector reads exactly what it read before (tests compare the two byte for byte). Field numbers and types are
the generated descriptors' (checked at import, as the connector's reader, ctrader/spots.py, does).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from services.connector.ctrader import parsing as units
from services.connector.ctrader import schemas as proto
from services.connector.sim.replay import CsvBar

SPOT_EVENT = proto.payload_type_of(proto.oa.ProtoOASpotEvent)
_VARINT, _BYTES = 0, 2
_UINT64 = 1 << 64
# protobuf field types: int64, uint64, enum, uint32
_INT64, _UINT64_T, _ENUM, _UINT32 = 3, 4, 14, 13


def _tag(cls: type, name: str, kind: int, wire_type: int = _VARINT) -> bytes:
    f = cls.DESCRIPTOR.fields_by_name[name]
    if f.type != kind:
        raise ImportError(f"{cls.DESCRIPTOR.name}.{name} is not of protobuf type {kind}")
    return _varint((f.number << 3) | wire_type)


def _varint(value: int) -> bytes:
    if value < 0:
        value += _UINT64  # int64: two's complement, 10 bytes
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((v,)) for v in range(0x80)]
_oa, _om = proto.oa, proto.model
_ENV_TYPE = _tag(proto.ProtoMessage, "payloadType", _UINT32)
_ENV_PAYLOAD = _tag(proto.ProtoMessage, "payload", 12, _BYTES)
_ACCOUNT = _tag(_oa.ProtoOASpotEvent, "ctidTraderAccountId", _INT64)
_SYMBOL = _tag(_oa.ProtoOASpotEvent, "symbolId", _INT64)
_BID = _tag(_oa.ProtoOASpotEvent, "bid", _UINT64_T)
_ASK = _tag(_oa.ProtoOASpotEvent, "ask", _UINT64_T)
_TRENDBAR = _tag(_oa.ProtoOASpotEvent, "trendbar", 11, _BYTES)
_TIMESTAMP = _tag(_oa.ProtoOASpotEvent, "timestamp", _INT64)
_TB_VOLUME = _tag(_om.ProtoOATrendbar, "volume", _INT64)
_TB_PERIOD = _tag(_om.ProtoOATrendbar, "period", _ENUM)
_TB_LOW = _tag(_om.ProtoOATrendbar, "low", _INT64)
_TB_OPEN = _tag(_om.ProtoOATrendbar, "deltaOpen", _UINT64_T)
_TB_CLOSE = _tag(_om.ProtoOATrendbar, "deltaClose", _UINT64_T)
_TB_HIGH = _tag(_om.ProtoOATrendbar, "deltaHigh", _UINT64_T)
_TB_MINUTES = _tag(_om.ProtoOATrendbar, "utcTimestampInMinutes", _UINT32)
_FIELD_ORDER = (  # proto2 writes the fields set in field-number order: the tags above must follow it
    [_oa.ProtoOASpotEvent.DESCRIPTOR.fields_by_name[n].number
     for n in ("ctidTraderAccountId", "symbolId", "bid", "ask", "trendbar", "timestamp")],
    [_om.ProtoOATrendbar.DESCRIPTOR.fields_by_name[n].number
     for n in ("volume", "period", "low", "deltaOpen", "deltaClose", "deltaHigh", "utcTimestampInMinutes")],
)
if any(order != sorted(order) for order in _FIELD_ORDER):
    raise ImportError("the spot event's fields are not in the order spot_frame writes them")
_ENVELOPE_HEAD = _ENV_TYPE + _varint(SPOT_EVENT) + _ENV_PAYLOAD


def trendbar_bytes(bar: CsvBar, period: int) -> bytes:
    """A ``ProtoOATrendbar`` as sim/wire.py's `trendbar` makes it, serialised."""
    low, d_open, d_high, d_close = units.trendbar_wire(bar.open, bar.high, bar.low, bar.close)
    return b"".join((
        _TB_VOLUME, _varint(int(round(bar.volume))), _TB_PERIOD, _varint(period), _TB_LOW, _varint(low),
        _TB_OPEN, _varint(d_open), _TB_CLOSE, _varint(d_close), _TB_HIGH, _varint(d_high),
        _TB_MINUTES, _varint(units.seconds_to_minutes(bar.time)),
    ))


def spot_payload(account_id: int, symbol_id: int, quote: tuple[int, int] | None, timestamp_ms: int | None,
                 trendbars: Sequence[bytes] = ()) -> bytes:
    """A ``ProtoOASpotEvent`` serialised: `quote` (bid, ask in wire units) and `timestamp_ms` when given, the
    trendbars as `trendbar_bytes` made them."""
    parts = [_head(account_id, symbol_id)]
    if quote is not None:
        parts += (_BID, _varint(quote[0]), _ASK, _varint(quote[1]))
    for tb in trendbars:
        parts += (_TRENDBAR, _varint(len(tb)), tb)
    if timestamp_ms is not None:
        parts += (_TIMESTAMP, _varint(timestamp_ms))
    return b"".join(parts)


@functools.lru_cache(maxsize=1024)
def _head(account_id: int, symbol_id: int) -> bytes:
    return b"".join((_ACCOUNT, _varint(account_id), _SYMBOL, _varint(symbol_id)))


def bar_bytes(row: Sequence[float], period: int) -> bytes:
    """`trendbar_bytes` of a forming bar kept as a row [time, open, high, low, close, volume]."""
    low = round(row[3] * units.PRICE_SCALE)
    return b"".join((
        _TB_VOLUME, _varint(int(round(row[5]))), _TB_PERIOD, _varint(period), _TB_LOW, _varint(low),
        _TB_OPEN, _varint(round(row[1] * units.PRICE_SCALE) - low),
        _TB_CLOSE, _varint(round(row[4] * units.PRICE_SCALE) - low),
        _TB_HIGH, _varint(round(row[2] * units.PRICE_SCALE) - low),
        _TB_MINUTES, _varint(units.seconds_to_minutes(int(row[0]))),
    ))


def spot_event_frame(account_id: int, symbol_id: int, bid: int, ask: int, timestamp_ms: int | None,
                     trendbars: Sequence[bytes] = ()) -> bytes:
    """`spot_frame(spot_payload(...))` of a quoted spot event, in one go (a burst's most frequent frame)."""
    parts = [_head(account_id, symbol_id), _BID, _varint(bid), _ASK, _varint(ask)]
    for tb in trendbars:
        parts += (_TRENDBAR, _varint(len(tb)), tb)
    if timestamp_ms is not None:
        parts += (_TIMESTAMP, _varint(timestamp_ms))
    payload = b"".join(parts)
    body_len = len(_ENVELOPE_HEAD) + len(_varint(len(payload))) + len(payload)
    if body_len > proto.MAX_FRAME:
        raise proto.FrameError(f"frame of {body_len} bytes exceeds {proto.MAX_FRAME}")
    return b"".join((proto.HEADER.pack(body_len), _ENVELOPE_HEAD, _varint(len(payload)), payload))


def spot_frame(payload: bytes) -> bytes:
    """The spot event's frame: its ``ProtoMessage`` envelope (no clientMsgId), length-prefixed."""
    body = b"".join((_ENVELOPE_HEAD, _varint(len(payload)), payload))
    return proto.encode_frame(body)
