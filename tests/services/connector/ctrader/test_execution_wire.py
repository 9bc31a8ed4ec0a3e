"""execution_wire.py reads a ProtoOAExecutionEvent as the protobuf runtime does: every field (present or not, its
value or default) of random events over every field of every message under it, and random damaged bytes either
read the same or left to the runtime (never read otherwise)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor as FD

from services.connector.ctrader import execution_wire, spots
from services.connector.ctrader import schemas as proto

oa = proto.oa
BIG = (0, 1, 127, 128, 300, 16_383, 16_384, 2**31 - 1, 2**31, 2**32 - 1, 2**32 + 5, 2**62, 2**63 - 1)
NEGATIVE = (-1, -2, -128, -(2**31), -(2**31) - 1, -(2**63))
TEXTS = ("", "c-1", "EURUSD-a-O", "OT1|x", "é", "日本", "a" * 200)


def fill(msg: Any, rng: random.Random, depth: int = 0) -> None:
    """Random values in a random subset of `msg`'s fields (every required one most of the time)."""
    for f in msg.DESCRIPTOR.fields:
        keep = 0.995 if f.label == FD.LABEL_REQUIRED else 0.5
        if rng.random() > keep:
            continue
        if f.type == FD.TYPE_MESSAGE:
            if depth < 4:
                fill(getattr(msg, f.name), rng, depth + 1)
                getattr(msg, f.name).SetInParent()
            continue
        if f.type == FD.TYPE_DOUBLE:
            value = rng.choice((0.0, -0.0, 1.1, -2.5, 1e300, 5e-324, rng.uniform(-1e6, 1e6), math.inf, -math.inf))
        elif f.type == FD.TYPE_INT64:
            value = rng.choice(BIG + NEGATIVE)
        elif f.type == FD.TYPE_UINT64:
            value = rng.choice(BIG + (2**64 - 1,))
        elif f.type == FD.TYPE_UINT32:
            value = rng.choice(tuple(v for v in BIG if v < 2**32))
        elif f.type == FD.TYPE_INT32:
            value = rng.choice(tuple(v for v in BIG + NEGATIVE if -(2**31) <= v < 2**31))
        elif f.type == FD.TYPE_BOOL:
            value = rng.random() < 0.5
        elif f.type == FD.TYPE_ENUM:
            value = rng.choice([v.number for v in f.enum_type.values])
        elif f.type == FD.TYPE_STRING:
            value = rng.choice(TEXTS)
        else:
            raise AssertionError(f"type {f.type} not filled")
        setattr(msg, f.name, value)


def fields_of(msg: Any) -> dict[str, Any]:
    """Every field of `msg` (and of the messages under it): whether it is present, and what it reads as."""
    out = {}
    for f in msg.DESCRIPTOR.fields:
        value = getattr(msg, f.name)
        if f.type == FD.TYPE_MESSAGE:
            value = fields_of(value)
        elif isinstance(value, float) and math.isnan(value):
            value = "nan"
        out[f.name] = (msg.HasField(f.name), type(value).__name__, value)
    return out


def runtime(payload: bytes) -> Any:
    msg = oa.ProtoOAExecutionEvent()
    msg.ParseFromString(payload)
    return msg


def test_every_message_type_under_the_event_is_read_field_by_field() -> None:
    assert {"ProtoOAExecutionEvent", "ProtoOAPosition", "ProtoOAOrder", "ProtoOADeal", "ProtoOATradeData",
            "ProtoOAClosePositionDetail"} <= {t.cls.__name__ for t in execution_wire._TYPES.values()}


@pytest.mark.parametrize("seed", range(300))
def test_a_random_execution_event_reads_as_the_runtime_reads_it(seed: int) -> None:
    rng = random.Random(seed)
    msg = oa.ProtoOAExecutionEvent()
    fill(msg, rng)
    payload = msg.SerializePartialToString()
    if rng.random() < 0.3:  # fields the reader does not know (a newer schema), skipped as the runtime skips them
        payload += rng.choice((bytes([0x78, 5]), bytes([0x79]) + bytes(8), bytes([0x7A, 2, 1, 2]),
                               bytes([0x7D]) + bytes(4), bytes([0x80, 0x01, 7]), bytes([0x88, 0x00, 1])))
    got = execution_wire.execution_event(payload)
    want = runtime(payload)
    if got is None:  # left to the runtime: only for what the reader does not reproduce
        assert not want.IsInitialized()
        return
    assert fields_of(got) == fields_of(want)
    assert got.DESCRIPTOR is want.DESCRIPTOR


def test_a_fill_reads_as_the_runtime_reads_it_through_the_adapters_frame_reader() -> None:
    msg = oa.ProtoOAExecutionEvent(ctidTraderAccountId=7, executionType=proto.model.ProtoOAExecutionType.Value(
        "ORDER_FILLED"), isServerEvent=False)
    msg.position.positionId, msg.position.positionStatus, msg.position.swap, msg.position.price = 5, 1, -3, 1.1
    td = msg.position.tradeData
    td.symbolId, td.volume, td.tradeSide, td.openTimestamp, td.label = 1, 100_000, 1, 1_700_000_000_000, "a-O"
    msg.deal.dealId, msg.deal.orderId, msg.deal.positionId, msg.deal.volume = 9, 8, 5, 100_000
    msg.deal.filledVolume, msg.deal.symbolId, msg.deal.createTimestamp, msg.deal.executionTimestamp = 100_000, 1, 2, 3
    msg.deal.tradeSide, msg.deal.dealStatus, msg.deal.executionPrice, msg.deal.commission = 1, 2, 1.10012, -5
    msg.order.orderId, msg.order.orderType, msg.order.orderStatus, msg.order.clientOrderId = 8, 1, 2, "a-O"
    msg.order.tradeData.symbolId, msg.order.tradeData.volume, msg.order.tradeData.tradeSide = 1, 100_000, 1
    body = proto.encode_envelope(msg, "m-1")
    ptype, got, cid = spots.read_frame_adapter(body)
    assert (ptype, cid) == (spots.EXECUTION_EVENT, "m-1")
    assert isinstance(got, execution_wire.Message) and fields_of(got) == fields_of(msg)
    accepted = oa.ProtoOAExecutionEvent(ctidTraderAccountId=7, executionType=spots.ORDER_ACCEPTED)
    assert spots.read_frame_adapter(proto.encode_envelope(accepted, "")) == spots.read_frame_lean(
        proto.encode_envelope(accepted, ""))  # an ORDER_ACCEPTED event as before (spots.OrderAccepted)


@pytest.mark.parametrize("seed", range(200))
def test_damaged_bytes_are_read_as_the_runtime_reads_them_or_left_to_it(seed: int) -> None:
    rng = random.Random(1000 + seed)
    msg = oa.ProtoOAExecutionEvent()
    fill(msg, rng)
    payload = bytearray(msg.SerializePartialToString())
    for _ in range(rng.randrange(1, 4)):
        action = rng.random()
        if action < 0.4 and payload:
            payload[rng.randrange(len(payload))] = rng.randrange(256)
        elif action < 0.7 and payload:
            del payload[rng.randrange(len(payload)):]
        else:
            at = rng.randrange(len(payload) + 1)
            payload[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
    got = execution_wire.execution_event(bytes(payload))
    try:
        want = runtime(bytes(payload))
    except Exception:
        want = None
    if got is not None:  # read: the runtime reads the same (never a value where the runtime refuses)
        assert want is not None
        assert fields_of(got) == fields_of(want)


def test_what_the_reader_does_not_reproduce_is_left_to_the_runtime() -> None:
    msg = oa.ProtoOAExecutionEvent(ctidTraderAccountId=1, executionType=3)
    msg.deal.dealId, msg.deal.orderId, msg.deal.positionId, msg.deal.volume = 1, 2, 3, 4
    msg.deal.filledVolume, msg.deal.symbolId, msg.deal.createTimestamp, msg.deal.executionTimestamp = 5, 6, 7, 8
    msg.deal.tradeSide, msg.deal.dealStatus = 1, 2
    payload = msg.SerializeToString()
    assert execution_wire.execution_event(payload) is not None
    deal = payload[payload.index(bytes([6 << 3 | 2])):]  # the deal field, last (field 6)
    assert execution_wire.execution_event(payload + deal) is None  # a message given twice: the runtime merges
    assert execution_wire.execution_event(bytes([0x08, 1, 0x10, 99])) is None  # an enum value it does not have
    assert execution_wire.execution_event(bytes([0x08, 1])) is None  # executionType (required) missing
    assert execution_wire.execution_event(payload + bytes([0x0B, 0x0C])) is None  # a group
    assert execution_wire.execution_event(payload[:-1]) is None  # truncated
    bad_text = oa.ProtoOAExecutionEvent(ctidTraderAccountId=1, executionType=3, errorCode="x").SerializeToString()
    assert execution_wire.execution_event(bad_text.replace(b"x", b"\xff")) is None  # not UTF-8
    with pytest.raises(ValueError):
        execution_wire.execution_event(payload).HasField("nope")
