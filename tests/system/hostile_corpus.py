"""A seeded corpus of malformed request frames for the hostile suite (pure: values in, frames out).

Every frame is one message (a list of ZeroMQ frames, the REQ delimiter not included) that the wire must refuse:
``refused(frames)`` runs the project's own decoder (:func:`common.wire.decode_request`) and a generated frame that
it would accept is replaced by another, so nothing in the corpus can act on the system (a request that decodes is
not malformed: it would be served). ``accepted_nonfinite()`` lists the op arguments a NaN or an infinity passes
the decoder in, the suite's check that validation comes before effect.

Kinds (``KINDS``, taken in turn, each frame of a kind varied by the seeded generator):
not msgpack, random bytes, truncated msgpack, empty frame, not a map, wrong version, a missing envelope field, a
wrong type per envelope field, unknown ops, an id over its limit, missing args, a wrong type per args field, NaN and
infinities in numeric args, huge strings and ints within the limits, oversized container counts (a header claiming
2^32-1 items), deep nesting, msgpack ext types (also the timestamp ext), maps with non-string keys, multipart
garbage. ``NO_DELIMITER`` frames (garbage without the REQ envelope) are for ROUTER endpoints only: a ROUTER service
drops and counts them, nobody to answer.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass

import msgpack

from common import messages, schema, wire

NO_DELIMITER = "no_delimiter"

_OPS = sorted(messages.OPS)
_NUMERIC = (int, float)


@dataclass(frozen=True, slots=True)
class Frame:
    kind: str
    parts: tuple[bytes, ...]  # the message's frames, as a REQ peer would send them past its delimiter

    @property
    def size(self) -> int:
        return sum(map(len, self.parts))


def pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def request(op: str, args: object = None, req_id: str = "h-1", version: object = wire.WIRE_VERSION) -> dict:
    return {"v": version, "op": op, "id": req_id, "args": {} if args is None else args}


def refused(parts: tuple[bytes, ...]) -> bool:
    """True when the wire's decoder refuses the message (a WireError), as every service's Responder would."""
    try:
        wire.decode_request(list(parts))
    except wire.WireError:
        return True
    return False


def _fields(op: str) -> list:
    return list(schema.fields_of(messages.OPS[op].args))


def valid_args(op: str) -> dict:
    """A plausible args map for ``op`` (its required fields set to a value of their type)."""
    sample = {str: "EURUSD", int: 1, float: 1.0, bool: True, dict: {}, list: []}
    return {f.name: sample[f.kinds[0]] for f in _fields(op) if f.required and f.kinds[0] in sample}


# ---- the kinds ----------------------------------------------------------------------------------------------------

def _not_msgpack(rng: random.Random) -> list[bytes]:
    # 0xc1 is the one byte msgpack never uses; then random tails
    return [b"\xc1" + rng.randbytes(rng.randrange(0, 64))]


def _random_bytes(rng: random.Random) -> list[bytes]:
    return [rng.randbytes(rng.choice((1, 2, 3, 8, 64, 512, 4096)))]


def _truncated(rng: random.Random) -> list[bytes]:
    op = rng.choice(_OPS)
    whole = pack(request(op, valid_args(op), f"t-{rng.randrange(10**6)}"))
    return [whole[: rng.randrange(1, len(whole))]]


def _empty(rng: random.Random) -> list[bytes]:
    return [b""]


def _not_a_map(rng: random.Random) -> list[bytes]:
    return [pack(rng.choice([None, True, 0, -1, 2**64 - 1, 1.5, "ping", b"ping", [], ["ping"], [1, "ping", "x", {}],
                             "x" * rng.randrange(1, 5000)]))]


def _wrong_version(rng: random.Random) -> list[bytes]:
    version = rng.choice([0, 2, -1, 255, 2**63 - 1, -(2**63), 2**64 - 1, "1", 1.0, None, True, [1], {"v": 1}])
    return [pack(request("ping", req_id="wv-1", version=version))]


def _missing_field(rng: random.Random) -> list[bytes]:
    m = request(rng.choice(_OPS))
    del m[rng.choice(["v", "op", "id"])]
    return [pack(m)]


_WRONG = [None, True, 1, -1, 1.5, math.nan, "x", b"ping", [], ["ping"], {}, {"op": "ping"}, 2**64 - 1, -(2**63)]


def _wrong_envelope_type(rng: random.Random) -> list[bytes]:
    m = request("ping")
    key = rng.choice(["op", "id", "args"])
    allowed = {"op": str, "id": str, "args": (dict, type(None))}[key]
    m[key] = rng.choice([w for w in _WRONG if not isinstance(w, allowed)])
    return [pack(m)]


def _word(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits + "._-/\\\x00é€", k=n))


def _unknown_op(rng: random.Random) -> list[bytes]:
    n = rng.choice((1, 8, 40, 200, 5000, 100_000))
    return [pack(request("op_" + _word(rng, n)))]


def _long_id(rng: random.Random) -> list[bytes]:
    return [pack(request("ping", req_id="i" * rng.choice((wire.MAX_ID_CHARS + 1, 10_000, 1_000_000))))]


def _ops_with(pred) -> list[str]:
    return [op for op in _OPS if any(pred(f) for f in _fields(op))]


_WITH_REQUIRED = _ops_with(lambda f: f.required)
_WITH_FIELDS = _ops_with(lambda f: True)
_WITH_NUMERIC = _ops_with(lambda f: set(f.kinds) & set(_NUMERIC))


def _missing_arg(rng: random.Random) -> list[bytes]:
    op = rng.choice(_WITH_REQUIRED)
    args = valid_args(op)
    del args[rng.choice([f.name for f in _fields(op) if f.required])]
    return [pack(request(op, args))]


def _wrong_arg_type(rng: random.Random) -> list[bytes]:
    op = rng.choice(_WITH_FIELDS)
    f = rng.choice(_fields(op))
    args = valid_args(op)
    wrong = [w for w in _WRONG if not isinstance(w, f.kinds) or (isinstance(w, bool) and bool not in f.kinds)]
    if f.optional:
        wrong = [w for w in wrong if w is not None]
    args[f.name] = rng.choice(wrong)
    return [pack(request(op, args))]


def _nonfinite_arg(rng: random.Random) -> list[bytes]:
    op = rng.choice(_WITH_NUMERIC)
    f = rng.choice([f for f in _fields(op) if set(f.kinds) & set(_NUMERIC)])
    args = valid_args(op)
    args[f.name] = rng.choice([math.nan, math.inf, -math.inf, -0.0 * math.nan])
    return [pack(request(op, args))]


def _huge_value(rng: random.Random) -> list[bytes]:
    """Huge strings and ints within the limits, where the envelope wants another type or the op is unknown."""
    big = rng.choice(["s" * rng.choice((10_000, 500_000)), 2**64 - 1, -(2**63), b"\x00" * 500_000,
                      ["x"] * 50_000, {str(i): i for i in range(20_000)}])
    where = rng.choice(["op", "id", "v", "extra"])
    m = request("op_unknown_" + str(rng.randrange(1000)))
    if where == "extra":
        m["junk"] = big
    else:
        m[where] = big
    return [pack(m)]


def _oversized_count(rng: random.Random) -> list[bytes]:
    """A container or string header claiming far more than the frame holds (2^32-1 items or bytes)."""
    header = rng.choice([b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
                         b"\xc6\xff\xff\xff\xff", b"\xdc\xff\xff", b"\xde\xff\xff"])
    head = b"\x84" + b"".join(pack(x) for x in ("v", 1, "op", "ping", "id", "oc-1", "args"))
    body = rng.randbytes(rng.randrange(0, 32))
    return [rng.choice([header + body, head + header + body])]


def _deep_nesting(rng: random.Random) -> list[bytes]:
    depth = rng.choice((100, 1000, 5000, 100_000))
    opener = rng.choice([b"\x91", b"\x81\xa1k"])  # [[[...]]] or {"k": {"k": ...}}
    nested = opener * depth + b"\xc0"
    # the whole frame, or the value of the op (a nesting in args is harmless and accepted: NoArgs ignores it)
    head = b"\x84" + b"".join(pack(x) for x in ("v", 1, "id", "dn-1", "args", {}, "op"))
    return [rng.choice([nested, head + nested])]


def _ext(rng: random.Random) -> list[bytes]:
    ext = rng.choice([msgpack.ExtType(rng.randrange(0, 128), rng.randbytes(rng.randrange(0, 64))),
                      msgpack.Timestamp(rng.randrange(2**34), 0)])
    op = rng.choice(["step", "query", "signals_since", "command", "ping"])
    place = rng.choice(["whole", "v", "op", "id", "args", "in_args"])
    if place == "whole":
        return [pack(ext)]
    m = request(op, valid_args(op))
    if place == "in_args":
        m["args"] = {**m["args"], "args": {"k": ext}, "where": {"k": ext}, "since": {"EURUSD": ext}}
    else:
        m[place] = ext
    return [pack(m)]


def _odd_keys(rng: random.Random) -> list[bytes]:
    """Maps keyed by something else than strings (msgpack allows any key)."""
    key = rng.choice([1, -1, 1.5, None, True, b"op", 2**64 - 1])
    m = request("ping")
    if rng.random() < 0.5:
        m = {key: "ping", **{k: v for k, v in m.items() if k != "op"}}
    else:  # an args map of only an odd key: its op's required args are missing
        m = request(rng.choice(_WITH_REQUIRED), {key: 1})
    return [pack(m)]


def _multipart(rng: random.Random) -> list[bytes]:
    n = rng.randrange(2, 6)
    parts = [rng.choice([b"", pack(request("ping")), rng.randbytes(rng.randrange(1, 64))]) for _ in range(n)]
    if all(p == b"" for p in parts[:-1]) or parts[-1] == b"" and n == 2:
        parts[0] = b"junk"
    return parts


def _no_delimiter(rng: random.Random) -> list[bytes]:
    return [pack(request("ping"))] if rng.random() < 0.3 else [rng.randbytes(rng.randrange(1, 64))]


KINDS = {
    "not_msgpack": _not_msgpack, "random_bytes": _random_bytes, "truncated": _truncated, "empty": _empty,
    "not_a_map": _not_a_map, "wrong_version": _wrong_version, "missing_field": _missing_field,
    "wrong_envelope_type": _wrong_envelope_type, "unknown_op": _unknown_op, "long_id": _long_id,
    "missing_arg": _missing_arg, "wrong_arg_type": _wrong_arg_type, "nonfinite_arg": _nonfinite_arg,
    "huge_value": _huge_value, "oversized_count": _oversized_count, "deep_nesting": _deep_nesting, "ext": _ext,
    "odd_keys": _odd_keys, "multipart": _multipart,
}


def corpus(seed: int, n: int, router: bool = False) -> Iterator[Frame]:
    """``n`` malformed messages, the kinds in turn (plus ``NO_DELIMITER`` ones for a ROUTER endpoint); the same
    seed gives the same frames. A generated message the decoder accepts is replaced by another of its kind."""
    rng = random.Random(seed)
    kinds = [*KINDS, NO_DELIMITER] if router else list(KINDS)
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == NO_DELIMITER:
            yield Frame(kind, tuple(_no_delimiter(rng)))
            continue
        for _ in range(100):
            parts = tuple(KINDS[kind](rng))
            if refused(parts):
                yield Frame(kind, parts)
                break
        else:
            raise AssertionError(f"kind {kind}: 100 generated messages in a row were accepted by the decoder")


def accepted_nonfinite() -> list[str]:
    """``op.field=value`` for every numeric op argument that the decoder accepts NaN or an infinity in (should be
    none: a value is validated before it can have an effect)."""
    found = []
    for op in _WITH_NUMERIC:
        for f in _fields(op):
            if not set(f.kinds) & set(_NUMERIC):
                continue
            for value in (math.nan, math.inf, -math.inf):
                args = {**valid_args(op), f.name: value}
                if not refused((pack(request(op, args)),)):
                    found.append(f"{op}.{f.name}={value}")
    return found

