"""JSON text of plain values, fast: what `json.dumps` writes, by orjson when that is the same value.

orjson is some ten times faster than the json module, but it writes a float that is not finite (NaN, the
infinities) as null where `json.dumps` writes NaN / Infinity, and it encodes types the json module refuses
(dataclasses, datetimes, UUIDs, enums). So it is used only for plain values, checked first: dicts with str keys,
lists, tuples, str, int, bool, None and finite floats, of those exact types (a subclass such as a StrEnum goes to
json); anything else, and an int orjson cannot hold (beyond 64 bits), is encoded by the json module as before.
Both read back (`json.loads`) as the same value; the texts may differ in float spelling (1e-05 / 1e-5) and in
non-ASCII (escaped / UTF-8), which no reader of ours compares.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def _plain(value: Any) -> bool:
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return True
    if t is float:
        return value - value == 0.0  # finite: inf - inf and NaN - NaN are NaN
    if t is dict:
        return _plain_dict(value)
    if t is list or t is tuple:
        return all(_plain(v) for v in value)
    return False


def _plain_dict(d: dict) -> bool:
    for k, v in d.items():
        if type(k) is not str:
            return False
        t = type(v)
        if t is str or t is int or t is bool or v is None:
            continue
        if t is float:
            if v - v != 0.0:
                return False
        elif not _plain(v):
            return False
    return True


def dumps(value: Any) -> bytes:
    """`json.dumps(value, separators=(",", ":"))` as UTF-8 bytes, or the same value in orjson's spelling.
    TypeError / ValueError as `json.dumps` raises them."""
    if _plain(value):
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:  # an int beyond 64 bits: json writes it
            pass
    return json.dumps(value, separators=(",", ":")).encode()
