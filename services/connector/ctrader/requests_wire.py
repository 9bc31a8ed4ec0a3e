"""The trading requests sent at every bar written without the protobuf runtime (pure): ``ProtoOANewOrderReq``,
``ProtoOAClosePositionReq`` and their ``ProtoMessage`` envelope.

The runtime that ctrader-open-api pins (3.20) builds and serialises a message in pure Python, through a dozen
generic setters and encoders per field: a few hundred microseconds when its code is out of the CPU caches, as it is
at a bar close. These writers give the same bytes as ``SerializeToString`` (the fields set, in field-number order,
varints and length-delimited strings; field numbers and types checked against the generated descriptors at import),
so the broker receives the very messages the generated classes would have sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.connector.ctrader import schemas as proto

_VARINT, _BYTES = 0, 2
_UINT64 = (1 << 64) - 1
# protobuf field types: int64 3, uint32 13, enum 14, string 9, bytes 12
_CHECKS = {
    proto.oa.ProtoOANewOrderReq: {"ctidTraderAccountId": (2, 3), "symbolId": (3, 3), "orderType": (4, 14),
                                  "tradeSide": (5, 14), "volume": (6, 3), "comment": (13, 9), "label": (16, 9),
                                  "clientOrderId": (18, 9), "relativeStopLoss": (19, 3),
                                  "relativeTakeProfit": (20, 3)},
    proto.oa.ProtoOAClosePositionReq: {"ctidTraderAccountId": (2, 3), "positionId": (3, 3), "volume": (4, 3)},
    proto.ProtoMessage: {"payloadType": (1, 13), "payload": (2, 12), "clientMsgId": (3, 9)},
}
for _cls, _fields in _CHECKS.items():
    for _name, (_number, _type) in _fields.items():
        _f = _cls.DESCRIPTOR.fields_by_name[_name]
        if (_f.number, _f.type) != (_number, _type):
            raise ImportError(f"{_cls.DESCRIPTOR.name}.{_name} is not field {_number} of type {_type}")

NEW_ORDER_REQ = proto.payload_type_of(proto.oa.ProtoOANewOrderReq)
CLOSE_POSITION_REQ = proto.payload_type_of(proto.oa.ProtoOAClosePositionReq)


@dataclass(frozen=True)
class Encoded:
    """A request already serialised: what the transport sends in place of a generated message."""

    payload_type: int
    payload: bytes
    name: str  # the message's name, as the generated class says it (logs)


def _varint(value: int) -> bytes:
    value &= _UINT64  # a negative int64 or enum: ten bytes of two's complement, as the runtime writes it
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3 | _VARINT) + _varint(value)


def _bytes(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | _BYTES) + _varint(len(value)) + value


def _text(number: int, value: str) -> bytes:
    return _bytes(number, value.encode("utf-8"))


def new_order(account_id: int, symbol_id: int, order_type: int, trade_side: int, volume: int, *,
              comment: str | None = None, label: str | None = None, client_order_id: str | None = None,
              relative_stop_loss: int | None = None, relative_take_profit: int | None = None) -> Encoded:
    """``ProtoOANewOrderReq`` with these fields set (None: not set)."""
    parts = [_int(2, account_id), _int(3, symbol_id), _int(4, order_type), _int(5, trade_side), _int(6, volume)]
    if comment is not None:
        parts.append(_text(13, comment))
    if label is not None:
        parts.append(_text(16, label))
    if client_order_id is not None:
        parts.append(_text(18, client_order_id))
    if relative_stop_loss is not None:
        parts.append(_int(19, relative_stop_loss))
    if relative_take_profit is not None:
        parts.append(_int(20, relative_take_profit))
    return Encoded(NEW_ORDER_REQ, b"".join(parts), "ProtoOANewOrderReq")


def close_position(account_id: int, position_id: int, volume: int) -> Encoded:
    """``ProtoOAClosePositionReq``."""
    return Encoded(CLOSE_POSITION_REQ, _int(2, account_id) + _int(3, position_id) + _int(4, volume),
                   "ProtoOAClosePositionReq")


def envelope(msg: Encoded, client_msg_id: str | None = None) -> bytes:
    """The ``ProtoMessage`` carrying `msg` (as `schemas.encode_envelope`: the clientMsgId when given)."""
    body = _int(1, msg.payload_type) + _bytes(2, msg.payload)
    return body + _text(3, client_msg_id) if client_msg_id else body


def _check_against_the_runtime() -> None:
    """At import: a request written here is the generated class's serialisation of the same fields."""
    oa = proto.oa
    samples = (
        (new_order(7, 1, 1, 2, 1_000, comment="c", label="l", client_order_id="o", relative_stop_loss=300,
                   relative_take_profit=2**40),
         oa.ProtoOANewOrderReq(ctidTraderAccountId=7, symbolId=1, orderType=1, tradeSide=2, volume=1_000, comment="c",
                               label="l", clientOrderId="o", relativeStopLoss=300, relativeTakeProfit=2**40)),
        (close_position(7, 2**33, 100),
         oa.ProtoOAClosePositionReq(ctidTraderAccountId=7, positionId=2**33, volume=100)),
    )
    for encoded, message in samples:
        if envelope(encoded, "m") != proto.encode_envelope(message, "m"):
            raise ImportError(f"{encoded.name} written by hand differs from the generated class's bytes")


_check_against_the_runtime()
