"""plain_json: orjson's text only where it reads back as the same value as the json module's; the rest as before."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from enum import IntEnum, StrEnum

import pytest

from common import plain_json


class Side(IntEnum):
    LONG = 1


class Status(StrEnum):
    OK = "OK"


def same(a, b) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


VALUES = [
    {"id": "x", "n": 3, "f": 1.1, "tiny": 1e-05, "big": 1e16, "neg": -0.0, "t": True, "none": None, "s": "é€"},
    {"record": {"data": {"close": 1.10123, "pnl": None, "list": [1, 2.5, "a", None, [True]]}}, "tuple": (1, 2)},
    {"nan": float("nan"), "ok": 1.0},  # orjson would write null: json's NaN instead
    {"inf": [1.0, float("inf")], "minus": -math.inf},
    {1: "int key", "b": 2},  # json writes the key as "1"; orjson refuses it
    {"huge": 2**70, "neg_huge": -(2**65)},  # beyond 64 bits: json
    {"side": Side.LONG, "status": Status.OK},  # subclasses: json's spelling
    [], {}, "text", 0, 2.5, None, False,
]


@pytest.mark.parametrize("value", VALUES)
def test_the_text_reads_back_as_the_json_modules_does(value):
    text = plain_json.dumps(value)
    assert isinstance(text, bytes)
    assert same(json.loads(text), json.loads(json.dumps(value)))


def test_plain_values_are_compact_and_the_rest_as_json_wrote_them():
    assert plain_json.dumps({"a": [1, "b"], "c": None}) == b'{"a":[1,"b"],"c":null}'
    assert plain_json.dumps({"nan": float("nan")}) == b'{"nan":NaN}'  # not null: a NaN reads back a NaN
    assert plain_json.dumps({"x": Status.OK}) == json.dumps({"x": Status.OK}, separators=(",", ":")).encode()


@pytest.mark.parametrize("value", [{"when": datetime(2026, 1, 1, tzinfo=UTC)}, {"s": {1, 2}}, object()])
def test_what_json_refuses_is_refused(value):
    with pytest.raises(TypeError):
        plain_json.dumps(value)
