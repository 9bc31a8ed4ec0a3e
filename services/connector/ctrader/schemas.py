"""The cTrader Open API wire: its message classes (loaded without Twisted), the envelope, and the framing.

Framing: a 4-byte big-endian length, then a serialized ProtoMessage envelope {payloadType, payload, clientMsgId}.

`ctrader_open_api/__init__.py` imports its Twisted client, so `import ctrader_open_api.messages` would
pull Twisted into the process. We load only the generated `*_pb2` modules: a bare package object stands in
for the top-level package while they import, then it is removed so that a later real
`import ctrader_open_api` still works.
"""

from __future__ import annotations

import importlib
import importlib.util
import struct
import sys
import types
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message


def _load_messages() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType, types.ModuleType]:
    names = (
        "OpenApiCommonMessages_pb2",
        "OpenApiCommonModelMessages_pb2",
        "OpenApiMessages_pb2",
        "OpenApiModelMessages_pb2",
    )
    stub_installed = False
    if "ctrader_open_api" not in sys.modules:
        spec = importlib.util.find_spec("ctrader_open_api")
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError("ctrader-open-api is not installed")
        stub = types.ModuleType("ctrader_open_api")
        stub.__path__ = list(spec.submodule_search_locations)
        sys.modules["ctrader_open_api"] = stub
        stub_installed = True
    try:
        mods = tuple(importlib.import_module(f"ctrader_open_api.messages.{n}") for n in names)
    finally:
        if stub_installed:
            del sys.modules["ctrader_open_api"]
    return mods  # type: ignore[return-value]


common, common_model, oa, model = _load_messages()

ProtoMessage = common.ProtoMessage

# payloadType -> message class, from each class's `payloadType` field default.
_BY_TYPE: dict[int, type[Message]] = {}
for _mod in (common, oa):
    for _name, _desc in _mod.DESCRIPTOR.message_types_by_name.items():
        _field = _desc.fields_by_name.get("payloadType")
        if _field is not None and _field.has_default_value:
            _BY_TYPE[int(_field.default_value)] = getattr(_mod, _name)

HEARTBEAT = 51
ERROR_RES = common_model.ProtoPayloadType.Value("ERROR_RES")
OA_ERROR_RES = model.ProtoOAPayloadType.Value("PROTO_OA_ERROR_RES")


def payload_type_of(msg: Message | type[Message]) -> int:
    """The payloadType a message class declares (its field default)."""
    desc = msg.DESCRIPTOR
    return int(desc.fields_by_name["payloadType"].default_value)


def class_for(payload_type: int) -> type[Message] | None:
    return _BY_TYPE.get(payload_type)


def type_name(payload_type: int) -> str:
    cls = _BY_TYPE.get(payload_type)
    return cls.DESCRIPTOR.name if cls else f"UNKNOWN_{payload_type}"


def wrap(msg: Message, client_msg_id: str | None = None) -> Any:
    """Put a message into the ProtoMessage envelope."""
    env = ProtoMessage(payloadType=payload_type_of(msg), payload=msg.SerializeToString())
    if client_msg_id:
        env.clientMsgId = client_msg_id
    return env


def unwrap(env: Any) -> Message | None:
    """Decode the payload of an envelope into its message class (None for unknown types)."""
    cls = _BY_TYPE.get(env.payloadType)
    if cls is None:
        return None
    msg = cls()
    msg.ParseFromString(env.payload)
    return msg


def encode_envelope(msg: Message, client_msg_id: str | None = None) -> bytes:
    return wrap(msg, client_msg_id).SerializeToString()


def decode_envelope(data: bytes) -> Any:
    env = ProtoMessage()
    env.ParseFromString(data)
    return env


# ---- framing (pure)

HEADER = struct.Struct(">I")
MAX_FRAME = 4 * 1024 * 1024  # far above any Open API message; guards against a corrupt length


class FrameError(ValueError):
    pass


def encode_frame(body: bytes) -> bytes:
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


@dataclass
class FrameDecoder:
    """Accumulates bytes and yields complete frame bodies in order."""

    max_frame: int = MAX_FRAME
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        """The frame bodies `data` completes, in order; the bytes of an incomplete frame kept for the next feed.
        Bytes read with nothing kept are cut into frames where they lie (one copy a frame); what is kept is cut once
        per feed, not once per frame."""
        buf = self._buf
        if buf:
            buf.extend(data)
            src: bytes | bytearray = buf
        else:
            src = data
        size = HEADER.size
        unpack = HEADER.unpack_from
        total = len(src)
        pos = 0
        out: list[bytes] = []
        while total - pos >= size:
            (length,) = unpack(src, pos)
            if length > self.max_frame:
                raise FrameError(f"frame length {length} exceeds {self.max_frame}")
            end = pos + size + length
            if end > total:
                break
            out.append(bytes(src[pos + size : end]))
            pos = end
        if src is buf:
            del buf[:pos]
        elif pos < total:
            buf.extend(data[pos:] if pos else data)
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)
