"""``ProtoOAExecutionEvent`` read without the protobuf runtime (pure): the fill of every order and close.

The runtime that ctrader-open-api pins (3.20) parses in pure Python: an ORDER_FILLED event (the event, its order,
position, deal, their trade data and close detail: six messages, some fifty fields) took about 190 us of the broker
thread at a bar close, its code out of the CPU caches. This reader decodes the same bytes into plain objects, one
class per message type made from the generated descriptors at import: each field an attribute (its default, or an
empty message, when absent), ``HasField`` and ``DESCRIPTOR`` as the generated classes have them, which is all the
adapter reads (execution.py, parsing.py).

It decodes what the runtime decodes the same way (varints masked and signed as the field's type says, a wrong
wire type or an unknown field skipped, the last value of a scalar given twice kept) and gives up (None: the caller
parses with the generated class, which says what is wrong) on anything it does not reproduce: a required field
missing, a message field given twice (the runtime merges), an enum value the enum does not have (kept as an
unknown field), a group, a truncated or malformed buffer, a string that is not UTF-8.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor as FD

from services.connector.ctrader import schemas as proto

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1
_DOUBLE = struct.Struct("<d").unpack_from

# field kinds: how the value is read (and converted) from the wire
_K_UINT64, _K_INT64, _K_UINT32, _K_INT32, _K_BOOL, _K_ENUM, _K_DOUBLE, _K_STRING, _K_BYTES, _K_MESSAGE = range(10)
_KINDS = {FD.TYPE_UINT64: (_K_UINT64, _VARINT), FD.TYPE_INT64: (_K_INT64, _VARINT),
          FD.TYPE_UINT32: (_K_UINT32, _VARINT), FD.TYPE_INT32: (_K_INT32, _VARINT),
          FD.TYPE_BOOL: (_K_BOOL, _VARINT), FD.TYPE_ENUM: (_K_ENUM, _VARINT),
          FD.TYPE_DOUBLE: (_K_DOUBLE, _FIXED64), FD.TYPE_STRING: (_K_STRING, _BYTES),
          FD.TYPE_BYTES: (_K_BYTES, _BYTES), FD.TYPE_MESSAGE: (_K_MESSAGE, _BYTES)}


class GiveUp(ValueError):
    """What the runtime would read otherwise (or refuse): left to the generated class. A ValueError: spots.py reads
    its varints with `varint` and `skip` below, and refuses a malformed buffer as one."""


class Message:
    """A decoded message: the fields present in the instance's ``__dict__``, the defaults on the class."""

    DESCRIPTOR: Any = None

    def HasField(self, name: str) -> bool:  # noqa: N802 (the protobuf API's name)
        if name not in self.DESCRIPTOR.fields_by_name:
            raise ValueError(f'Protocol message {self.DESCRIPTOR.name} has no field "{name}"')
        return name in self.__dict__

    def __repr__(self) -> str:
        return f"{self.DESCRIPTOR.name}({self.__dict__})"


@dataclass
class _Type:
    cls: type
    fields: dict[int, tuple[str, int, Any, frozenset[int] | None]]  # tag -> (name, kind, sub-type, enum values)
    required: frozenset[str]


def _build(descriptor: Any, types: dict[str, _Type]) -> _Type:
    """The class and the tag table of a message type (and of every message type under it)."""
    known = types.get(descriptor.full_name)
    if known is not None:
        return known
    cls = type(descriptor.name, (Message,), {"DESCRIPTOR": descriptor, "__slots__": ()})
    t = _Type(cls, {}, frozenset(f.name for f in descriptor.fields if f.label == FD.LABEL_REQUIRED))
    types[descriptor.full_name] = t
    for f in descriptor.fields:
        if f.label == FD.LABEL_REPEATED or f.type not in _KINDS:
            raise ImportError(f"{descriptor.name}.{f.name}: a repeated field or type {f.type} is not read here")
        kind, wire_type = _KINDS[f.type]
        sub = _build(f.message_type, types) if kind == _K_MESSAGE else None
        values = frozenset(v.number for v in f.enum_type.values) if kind == _K_ENUM else None
        t.fields[(f.number << 3) | wire_type] = (f.name, kind, sub, values)
        if kind != _K_MESSAGE:
            setattr(cls, f.name, f.default_value)
    for f in descriptor.fields:
        if f.type == FD.TYPE_MESSAGE:  # an absent message field reads as an empty message (all defaults)
            setattr(cls, f.name, types[f.message_type.full_name].cls())
    return t


_TYPES: dict[str, _Type] = {}
_EVENT = _build(proto.oa.ProtoOAExecutionEvent.DESCRIPTOR, _TYPES)


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    value, shift = b & 0x7F, 7
    while True:
        pos += 1
        b = buf[pos]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value & _U64, pos + 1
        shift += 7
        if shift >= 70:
            raise GiveUp("varint longer than 10 bytes")


def skip(buf: bytes, pos: int, wire_type: int) -> int:
    if wire_type == _VARINT:
        return varint(buf, pos)[1]
    if wire_type == _FIXED64:
        return pos + 8
    if wire_type == _BYTES:
        n, pos = varint(buf, pos)
        return pos + n
    if wire_type == _FIXED32:
        return pos + 4
    raise GiveUp(f"wire type {wire_type}")


def _parse(t: _Type, buf: bytes, pos: int, end: int) -> Message:
    obj = t.cls()
    values = obj.__dict__
    fields = t.fields
    while pos < end:
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
            f = fields.get(tag)
        else:  # the runtime matches a tag by its bytes: one not written in the fewest is an unknown field's
            start = pos
            tag, pos = varint(buf, pos)
            f = fields.get(tag) if pos - start == (tag.bit_length() + 6) // 7 else None
        if f is None:
            if tag < 8:
                raise GiveUp("field number 0")
            pos = skip(buf, pos, tag & 7)
            continue
        name, kind, sub, enum_values = f
        if kind <= _K_ENUM:  # a varint
            value = buf[pos]
            if value < 0x80:
                pos += 1
            else:
                value, pos = varint(buf, pos)
            if kind == _K_INT64:
                if value > 0x7FFFFFFFFFFFFFFF:
                    value -= 1 << 64
            elif kind == _K_UINT32:
                value &= _U32
            elif kind in (_K_INT32, _K_ENUM):
                value &= _U32
                if value > 0x7FFFFFFF:
                    value -= 1 << 32
                if kind == _K_ENUM and value not in enum_values:
                    raise GiveUp(f"{name}: enum value {value} unknown")
            elif kind == _K_BOOL:
                value = value != 0
        elif kind == _K_DOUBLE:
            if pos + 8 > end:
                raise GiveUp("truncated")
            value = _DOUBLE(buf, pos)[0]
            pos += 8
        else:  # length-delimited
            n, pos = varint(buf, pos)
            stop = pos + n
            if stop > end:
                raise GiveUp("truncated")
            if kind == _K_MESSAGE:
                if name in values:
                    raise GiveUp(f"{name} given twice (merged by the runtime)")
                value = _parse(sub, buf, pos, stop)
            elif kind == _K_STRING:
                value = buf[pos:stop].decode("utf-8")
            else:
                value = bytes(buf[pos:stop])
            pos = stop
        values[name] = value
    if pos != end:
        raise GiveUp("truncated")
    if not t.required <= values.keys():
        raise GiveUp("a required field is missing")
    return obj


def execution_event(payload: bytes) -> Message | None:
    """A ProtoOAExecutionEvent's bytes as a `Message` of its fields; None when the runtime is to read it."""
    try:
        return _parse(_EVENT, payload, 0, len(payload))
    except (GiveUp, IndexError, UnicodeDecodeError):
        return None
