"""The args records' bounds: every request's numbers are checked when it is decoded (before any handler), and a
refusal names the field and the value, truncated."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from common import messages, schema
from common.schema import SchemaError, from_wire

OPEN = {"symbol": "EURUSD", "direction": 1, "lots": 0.01, "client_order_id": "c1"}


def test_every_number_of_every_request_has_bounds():
    """A float or int argument without bounds would reach a handler as inf, NaN or 2**64: each one declares its."""
    unbounded = []
    for spec in messages.OPS.values():
        hints = typing.get_type_hints(spec.args)
        for f in dataclasses.fields(spec.args):
            kinds = set(typing.get_args(hints[f.name])) or {hints[f.name]}
            if kinds & {int, float} and schema.check_of(f) is None:
                unbounded.append(f"{spec.name}: {spec.args.__name__}.{f.name}")
    assert unbounded == [
        "query: QueryArgs.limit",  # <= 0 means no limit, and the store caps it: every int is a valid answer
    ]


@pytest.mark.parametrize(("field", "value", "words"), [
    ("lots", math.inf, "must be a finite number, got inf"),
    ("lots", math.nan, "must be a finite number, got nan"),
    ("lots", -1.0, "must be > 0, got -1.0"),
    ("lots", 10_001, "must be <= 10000, got 10001"),
    ("direction", 0, "must be one of 1, -1, got 0"),
    ("sl_distance", -0.5, "must be >= 0, got -0.5"),
])
def test_a_value_out_of_bounds_is_refused_naming_the_field_and_the_value(field, value, words):
    with pytest.raises(SchemaError) as info:
        from_wire(messages.OrderOpenArgs, {**OPEN, field: value})
    assert info.value.path == field and info.value.reason == words


def test_a_long_value_is_shown_truncated():
    with pytest.raises(SchemaError) as info:
        from_wire(messages.OrderOpenArgs, {**OPEN, "comment": "c" * 1_000_000})
    assert info.value.path == "comment" and len(str(info.value)) < 150 and "1000002 chars" in str(info.value)


def test_values_in_bounds_and_nulls_pass():
    got = from_wire(messages.OrderOpenArgs, {**OPEN, "lots": 1, "sl_distance": None, "tp_distance": 0.0})
    assert got == messages.OrderOpenArgs("EURUSD", 1, 1, "c1", None, 0.0)
    assert from_wire(messages.OrderAmendArgs, {"ticket": 5}) == messages.OrderAmendArgs(5)
    assert from_wire(messages.HistoryArgs, {"symbol": "EURUSD", "timeframe": "H1", "since": 0}).since == 0


def test_a_record_built_in_code_is_not_checked_only_a_decoded_one():
    """The bounds guard the wire's way in; a record built by our own code is what its code says."""
    assert messages.OrderOpenArgs("EURUSD", 1, math.inf, "c1").lots == math.inf
