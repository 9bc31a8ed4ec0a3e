"""The wire: msgpack envelopes for PUB/SUB and request/reply maps for REQ/REP.

PUB messages are two frames ``[topic, payload]``; the payload is an envelope map
``{v, type, src, epoch, seq, ts, body}``. Requests are ``{v, op, id, args}``; replies are
``{v, id, ok: true, result}`` or ``{v, id, ok: false, error: {code, message}}``.

Everything here is pure: bytes in, values out, or a :class:`WireError` whose ``code`` says
which kind of malformation it was (the code is also the key of the malformed-frame counters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from common import messages, schema
from common.text import clip

WIRE_VERSION = 1

# Error codes, used in reply errors and as counter keys for malformed frames.
BAD_FRAMES = "bad_frames"
BAD_MSGPACK = "bad_msgpack"
BAD_ENVELOPE = "bad_envelope"
BAD_VERSION = "bad_version"
UNKNOWN_TYPE = "unknown_type"
UNKNOWN_OP = "unknown_op"
BAD_BODY = "bad_body"
BAD_TOPIC = "bad_topic"
HANDLER_ERROR = "handler_error"
TIMEOUT = "timeout"
REFUSED = "refused"
TOO_LARGE = "too_large"  # over a size limit below: refused before (or while) decoding, never built whole

# ---- limits ------------------------------------------------------------------------------------
# The largest legitimate messages, measured by encoding them with the functions below (realistic records):
# signals_since of 20 symbols x 5000 kept signals 13.5 MB (50 symbols ~34 MB), query of 10 000 events 8.6 MB,
# history of 50 000 bars 2.6 MB, positions with 1000 positions 0.45 MB, a write of 200 events 0.17 MB.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # every socket's ZMQ_MAXMSGSIZE (bus.py): ZeroMQ drops a larger frame unread
MAX_REQUEST_BYTES = 2 * 1024 * 1024  # a request (the largest, a write of 200 records, is 0.17 MB): refused unread
MAX_TOPIC_BYTES = 1024  # a topic frame ("bar.EURUSD.H1", "alert.<kind>")
MAX_ID_CHARS = 128  # a request id ("<service>-<n>"): echoed in the reply, so bounded
# A frame up to CHECKED_FROM bytes cannot cost much to decode (64 KiB of empty maps is ~5 MB of objects) and is
# decoded as is; a larger one with msgpack's limits and at most one array or map per BYTES_PER_CONTAINER bytes (a
# bar of history is one per 51 bytes, a signal one per 135): an "amplification" frame of empty lists (one 72-byte
# list per byte) is refused after a bounded number of them, never built whole.
CHECKED_FROM = 64 * 1024
BYTES_PER_CONTAINER = 16
CONTAINER_SLACK = 4096
DECODE_LIMITS = {
    "max_str_len": 1024 * 1024,  # the longest legitimate string is a message or an error text of a few KB
    "max_bin_len": 1024 * 1024,  # no bin field on the wire today
    "max_array_len": 1_000_000,  # signals_since of 50 symbols x 5000 signals: 250 000 items
    "max_map_len": 100_000,  # per-symbol maps, a status's counters
    "max_ext_len": 0,  # no ext type on this wire
}
QUOTE_CHARS = 100  # a peer's string (an op, a type) quoted in an error: the head and its length, never all of it
MAX_ERROR_CHARS = 1000  # an error message, in a reply and in a log line




class WireError(ValueError):
    """A frame that cannot be accepted; ``code`` names the kind of defect."""

    def __init__(self, code: str, message: str):
        message = clip(message, MAX_ERROR_CHARS)
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Envelope:
    topic: str
    type: str
    src: str
    epoch: int
    seq: int
    ts: int
    body: Any  # the typed record (a messages.* dataclass)


@dataclass(frozen=True, slots=True)
class Request:
    op: str
    id: str
    args: Any  # the typed args record


@dataclass(frozen=True, slots=True)
class Reply:
    id: str
    ok: bool
    result: Any = None
    error_code: str = ""
    error_message: str = ""


_packer = msgpack.Packer(use_bin_type=True)
_pack = _packer.pack  # one Packer reused: the module is used from a single thread per process

# positional constructors that set the slots directly (cheaper than a frozen dataclass's __init__)
_envelope = schema.maker(Envelope)
_request = schema.maker(Request)
_reply = schema.maker(Reply)

_TOPICS: dict[str, bytes] = {}  # topic -> its frame: a publisher's topics are few and published again and again
_TOPICS_MAX = 4096


class _ExtType(Exception):
    pass


def _no_ext(code: int, data: bytes) -> Any:
    """msgpack's ext_hook: this wire has no ext type (a longer one is refused by ``max_ext_len``; an empty one, or
    one in a frame decoded without limits, reaches here), so no ``ExtType`` object ever gets to a handler."""
    raise _ExtType


def _ext_error(what: str) -> WireError:
    return WireError(BAD_MSGPACK, f"{what} holds a msgpack ext type, not used on this wire")


def _unpack(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES, what: str = "payload") -> Any:
    if len(data) > CHECKED_FROM:
        return _unpack_checked(data, max_bytes, what)
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, max_ext_len=0, ext_hook=_no_ext)
    except _ExtType:
        raise _ext_error(what) from None
    except Exception as exc:  # msgpack raises several unrelated exception types
        if isinstance(exc, ValueError) and "max_ext_len" in str(exc):
            raise _ext_error(what) from None
        raise WireError(BAD_MSGPACK, f"{what} is not valid msgpack ({type(exc).__name__})") from None


class _TooManyContainers(Exception):
    pass


def _unpack_checked(data: bytes, max_bytes: int, what: str) -> Any:
    """A large frame decoded within the limits (module head), or a TOO_LARGE WireError saying which."""
    size = len(data)
    if size > max_bytes:
        raise WireError(TOO_LARGE, f"{what} of {size} bytes, over the limit of {max_bytes}")
    allowed = size // BYTES_PER_CONTAINER + CONTAINER_SLACK
    left = allowed

    def count(container: Any) -> Any:  # msgpack calls it as each array or map is complete
        nonlocal left
        left -= 1
        if left < 0:
            raise _TooManyContainers
        return container

    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, list_hook=count, object_hook=count,
                               ext_hook=_no_ext, **DECODE_LIMITS)
    except _ExtType:
        raise _ext_error(what) from None
    except _TooManyContainers:
        raise WireError(TOO_LARGE, f"{what} of {size} bytes holds more than {allowed} arrays and maps (at most one "
                                   f"per {BYTES_PER_CONTAINER} bytes)") from None
    except Exception as exc:  # msgpack raises several unrelated exception types
        if isinstance(exc, ValueError) and "max_ext_len" in str(exc):
            raise _ext_error(what) from None
        if isinstance(exc, ValueError) and "exceeds max_" in str(exc):  # e.g. "20000000 exceeds max_array_len(...)"
            raise WireError(TOO_LARGE, f"{what} of {size} bytes: {exc}") from None
        raise WireError(BAD_MSGPACK, f"{what} is not valid msgpack ({type(exc).__name__})") from None


def _field(m: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in m:
        raise WireError(BAD_ENVELOPE, f"{where} has no '{key}'")
    value = m[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise WireError(BAD_ENVELOPE, f"{where} field '{key}' has type {type(value).__name__}")
    return value


def _check_version(m: dict, where: str) -> None:
    v = _field(m, "v", int, where)
    if v != WIRE_VERSION:
        raise WireError(BAD_VERSION, f"{where} has version {v}, this build speaks {WIRE_VERSION}")


def _single_map(frames: list[bytes], what: str, max_bytes: int = MAX_MESSAGE_BYTES) -> dict:
    """The one frame of a request or reply, unpacked: a map of this wire version."""
    if len(frames) != 1:
        raise WireError(BAD_FRAMES, f"expected 1 {what} frame, got {len(frames)}")
    m = _unpack(frames[0], max_bytes, what)
    if not isinstance(m, dict):
        raise WireError(BAD_ENVELOPE, f"{what} is a {type(m).__name__}, not a map")
    _check_version(m, what)
    return m


# ---- PUB/SUB ---------------------------------------------------------------------------------


def encode_pub(topic: str, src: str, epoch: int, seq: int, ts: int, body: Any) -> list[bytes]:
    """Frames for one published message. ``body`` is a messages.* dataclass."""
    type_ = messages.type_name(body)
    topic_frame = _TOPICS.get(topic)
    if topic_frame is None:
        if len(_TOPICS) >= _TOPICS_MAX:
            _TOPICS.clear()
        topic_frame = _TOPICS[topic] = topic.encode()
    payload = {"v": WIRE_VERSION, "type": type_, "src": src, "epoch": epoch, "seq": seq, "ts": ts,
               "body": schema.to_wire(body)}
    return [topic_frame, _pack(payload)]


def decode_pub(frames: list[bytes]) -> Envelope:
    if len(frames) != 2:
        raise WireError(BAD_FRAMES, f"expected 2 frames [topic, payload], got {len(frames)}")
    if len(frames[0]) > MAX_TOPIC_BYTES:
        raise WireError(BAD_TOPIC, f"topic of {len(frames[0])} bytes, over the limit of {MAX_TOPIC_BYTES}")
    try:
        topic = frames[0].decode()
    except UnicodeDecodeError:
        raise WireError(BAD_TOPIC, "topic is not UTF-8") from None
    m = _unpack(frames[1])
    # the common case in exact-type tests; anything else is checked again field by field, for the precise error
    get = m.get if type(m) is dict else None
    if get is None or type(v := get("v")) is not int or v != WIRE_VERSION or type(type_ := get("type")) is not str \
            or type(src := get("src")) is not str or type(epoch := get("epoch")) is not int \
            or type(seq := get("seq")) is not int or type(ts := get("ts")) is not int \
            or (raw_body := get("body", _NO_BODY)) is _NO_BODY:
        type_, src, epoch, seq, ts, raw_body = _envelope_fields(m)
    decode = _EVENT_DECODERS.get(type_)
    if decode is None:
        cls = messages.EVENTS.get(type_)
        if cls is None:
            raise WireError(UNKNOWN_TYPE, f"unknown message type '{clip(type_, QUOTE_CHARS)}'")
        decode = _EVENT_DECODERS[type_] = schema.decoder(cls)
    try:
        body = decode(raw_body)
    except messages.SchemaError as exc:
        raise WireError(BAD_BODY, f"{type_}: {exc}") from None
    return _envelope(topic, type_, src, epoch, seq, ts, body)


_NO_BODY = object()
_EVENT_DECODERS: dict[str, Any] = {}  # message type -> its record's compiled decoder (the types are a fixed set)


def _envelope_fields(m: object) -> tuple:
    """The envelope's fields by the full checks: a WireError naming the defect (or the fields, when only an
    unusual but valid type made the fast test fail)."""
    if not isinstance(m, dict):
        raise WireError(BAD_ENVELOPE, f"envelope is a {type(m).__name__}, not a map")
    _check_version(m, "envelope")
    type_ = _field(m, "type", str, "envelope")
    src = _field(m, "src", str, "envelope")
    epoch = _field(m, "epoch", int, "envelope")
    seq = _field(m, "seq", int, "envelope")
    ts = _field(m, "ts", int, "envelope")
    if "body" not in m:
        raise WireError(BAD_ENVELOPE, "envelope has no 'body'")
    return type_, src, epoch, seq, ts, m["body"]


# ---- REQ/REP ---------------------------------------------------------------------------------


def encode_request(op: str, req_id: str, args: Any) -> bytes:
    return _pack({"v": WIRE_VERSION, "op": op, "id": req_id, "args": schema.to_wire(args)})


def decode_request(frames: list[bytes]) -> Request:
    """Decode a request; a WireError carries the id when it could be read (for the error reply)."""
    m = _unpack(frames[0], MAX_REQUEST_BYTES, "request") if len(frames) == 1 else None
    # the common case in exact-type tests; anything else is checked again field by field, for the precise error
    if type(m) is not dict or type(v := m.get("v")) is not int or v != WIRE_VERSION \
            or type(op := m.get("op")) is not str or type(req_id := m.get("id")) is not str \
            or len(req_id) > MAX_ID_CHARS:
        m = _single_map(frames, "request", MAX_REQUEST_BYTES)
        op = _field(m, "op", str, "request")
        req_id = _field(m, "id", str, "request")
        if len(req_id) > MAX_ID_CHARS:  # not echoed: the error reply has no id
            raise WireError(BAD_ENVELOPE, f"request id of {len(req_id)} chars, over the limit of {MAX_ID_CHARS}")
    spec = messages.OPS.get(op)
    if spec is None:
        raise RequestError(req_id, UNKNOWN_OP, f"unknown op '{clip(op, QUOTE_CHARS)}'")
    raw_args = m.get("args", {})
    if raw_args is None:
        raw_args = {}
    try:
        args = schema.from_wire(spec.args, raw_args)
    except messages.SchemaError as exc:
        raise RequestError(req_id, BAD_BODY, f"{op} args: {exc}") from None
    return _request(op, req_id, args)


class RequestError(WireError):
    """A request whose id was readable, so the error reply can be correlated."""

    def __init__(self, req_id: str, code: str, message: str):
        super().__init__(code, message)
        self.req_id = req_id


def encode_reply(req_id: str, result: Any) -> bytes:
    return _pack({"v": WIRE_VERSION, "id": req_id, "ok": True, "result": schema.to_wire(result)})


def encode_error(req_id: str, code: str, message: str) -> bytes:
    """An error reply; its message clipped (a handler's error may quote what the peer sent)."""
    return _pack({"v": WIRE_VERSION, "id": req_id, "ok": False,
                  "error": {"code": code, "message": clip(message, MAX_ERROR_CHARS)}})


def decode_reply(frames: list[bytes], op: str) -> Reply:
    m = _unpack(frames[0], MAX_MESSAGE_BYTES, "reply") if len(frames) == 1 else None
    # the common case (an answer) in exact-type tests; anything else is checked again field by field
    if type(m) is not dict or type(v := m.get("v")) is not int or v != WIRE_VERSION \
            or type(req_id := m.get("id")) is not str or m.get("ok") is not True:
        m = _single_map(frames, "reply")
        req_id = _field(m, "id", str, "reply")
        ok = _field(m, "ok", bool, "reply")
        if not ok:
            err = _field(m, "error", dict, "reply")
            return _reply(req_id, False, None, clip(str(err.get("code", "")), QUOTE_CHARS),
                          clip(str(err.get("message", "")), MAX_ERROR_CHARS))
    spec = messages.OPS.get(op)
    raw = m.get("result")
    if spec is None or spec.result is None:
        return _reply(req_id, True, raw, "", "")
    try:
        return _reply(req_id, True, schema.from_wire(spec.result, raw), "", "")
    except messages.SchemaError as exc:
        raise WireError(BAD_BODY, f"{op} result: {exc}") from None
