"""The spot event reader (spots.py) against the protobuf runtime: the same fields, presence and values."""

from __future__ import annotations

import random

import pytest

from services.connector.ctrader import schemas as proto
from services.connector.ctrader import spots

oa, model = proto.oa, proto.model
SPOT_FIELDS = ("ctidTraderAccountId", "symbolId", "bid", "ask", "sessionClose", "timestamp")
BAR_FIELDS = ("volume", "period", "low", "deltaOpen", "deltaClose", "deltaHigh", "utcTimestampInMinutes")


def random_spot(rng: random.Random) -> oa.ProtoOASpotEvent:
    big = (0, 1, 127, 128, 300, 16_383, 16_384, 2**31 - 1, 2**32 + 5, 2**62, 2**63 - 1)
    m = oa.ProtoOASpotEvent(ctidTraderAccountId=rng.choice(big), symbolId=rng.choice(big))
    for name in ("bid", "ask", "sessionClose", "timestamp"):
        if rng.random() < 0.6:
            setattr(m, name, rng.choice(big + (rng.randrange(2**64),)) if name != "timestamp"
                    else rng.choice(big + (-1, -(2**63))))
    for _ in range(rng.randrange(4)):
        tb = m.trendbar.add(volume=rng.choice((0, 5, -3, 2**40)))
        for name, values in (("period", (1, 5, 9, 12)), ("low", (0, 112_345, -7)), ("deltaOpen", (0, 3, 2**40)),
                             ("deltaClose", (0, 9)), ("deltaHigh", (1, 2**33)), ("utcTimestampInMinutes", (0, 2**31))):
            if rng.random() < 0.7:
                setattr(tb, name, rng.choice(values))
    return m


def same(got: object, want: object, fields: tuple[str, ...]) -> None:
    for name in fields:
        assert (name, got.HasField(name)) == (name, want.HasField(name))
        assert (name, getattr(got, name)) == (name, getattr(want, name))


@pytest.mark.parametrize("seed", range(40))
def test_a_spot_event_reads_as_the_protobuf_runtime_reads_it(seed: int) -> None:
    rng = random.Random(seed)
    msg = random_spot(rng)
    cid = rng.choice(("", "abc", "é-id"))
    ptype, got, got_cid = spots.read_frame(proto.encode_envelope(msg, cid or None))
    want = proto.unwrap(proto.decode_envelope(proto.encode_envelope(msg, cid or None)))
    assert (ptype, got_cid, got.DESCRIPTOR.name) == (spots.SPOT_EVENT, cid, "ProtoOASpotEvent")
    same(got, want, SPOT_FIELDS)
    assert len(got.trendbar) == len(want.trendbar)
    for g, w in zip(got.trendbar, want.trendbar, strict=True):
        same(g, w, BAR_FIELDS)


def test_other_messages_come_from_their_generated_class_and_unknown_fields_are_skipped() -> None:
    req = oa.ProtoOAGetTrendbarsReq(ctidTraderAccountId=7, symbolId=1, period=9, fromTimestamp=1, toTimestamp=2)
    assert spots.read_frame(proto.encode_envelope(req, "x")) == (2137, req, "x")
    assert spots.read_frame(proto.ProtoMessage(payloadType=65000, payload=b"").SerializeToString()) == (65000, None, "")
    spot = oa.ProtoOASpotEvent(ctidTraderAccountId=1, symbolId=2, bid=3)
    # field 15 as a varint, a fixed64, bytes and a fixed32: unknown to the reader, skipped
    extra = bytes([15 << 3, 0x96, 0x01, (15 << 3) | 1, *b"8bytes!!", (15 << 3) | 2, 2, 0, 0, (15 << 3) | 5, 1, 2, 3, 4])
    payload = spot.SerializeToString() + extra
    _p, got, _c = spots.read_frame(proto.ProtoMessage(payloadType=spots.SPOT_EVENT, payload=payload)
                                   .SerializeToString())
    assert (got.symbolId, got.bid, got.HasField("ask"), got.trendbar) == (2, 3, False, [])


def test_a_truncated_spot_event_is_an_error() -> None:
    payload = oa.ProtoOASpotEvent(ctidTraderAccountId=1, symbolId=2, bid=2**40).SerializeToString()
    body = proto.ProtoMessage(payloadType=spots.SPOT_EVENT, payload=payload[:-2]).SerializeToString()
    with pytest.raises((ValueError, IndexError)):
        spots.read_frame(body)


def random_execution(rng: random.Random) -> oa.ProtoOAExecutionEvent:
    big = (0, 1, 127, 128, 2**31 - 1, 2**32 + 5, 2**62, 2**63 - 1)
    m = oa.ProtoOAExecutionEvent(ctidTraderAccountId=rng.choice(big), executionType=rng.choice((2, 2, 2, 3, 4, 7)))
    if rng.random() < 0.8:
        p = m.position
        p.positionId, p.positionStatus, p.swap = rng.choice(big), rng.choice((1, 2)), rng.choice((0, -5, 2**40))
        td = p.tradeData
        td.symbolId, td.volume, td.tradeSide = rng.choice(big), rng.choice((1000, 2**33)), rng.choice((1, 2))
        td.label, td.comment = rng.choice(("", "c-1")), rng.choice(("", "OT1|x", "é"))
        if rng.random() < 0.5:
            p.price, p.stopLoss = 1.1, 1.0
    if rng.random() < 0.7:
        o = m.order
        o.orderId, o.orderType, o.orderStatus = rng.choice(big), 1, 1
        o.tradeData.symbolId, o.tradeData.volume, o.tradeData.tradeSide = 1, 1000, 1
        o.clientOrderId = rng.choice(("", "EURUSD-a-O"))
    return m


@pytest.mark.parametrize("seed", range(40))
def test_an_order_accepted_event_reads_its_position_as_the_protobuf_runtime_does(seed: int) -> None:
    rng = random.Random(seed)
    msg = random_execution(rng)
    ptype, got, cid = spots.read_frame_lean(proto.encode_envelope(msg, "m-1"))
    want = proto.unwrap(proto.decode_envelope(proto.encode_envelope(msg, "m-1")))
    assert (ptype, cid) == (spots.EXECUTION_EVENT, "m-1")
    assert spots.read_frame(proto.encode_envelope(msg, "m-1")) == (ptype, want, cid)  # unless asked: the class
    if want.executionType != spots.ORDER_ACCEPTED:
        assert got == want and type(got) is type(want)  # any other execution: the generated class
    elif want.HasField("position"):
        assert got == spots.OrderAccepted(want.position.positionId, want.position.tradeData.symbolId)
    else:
        assert got == spots.OrderAccepted(None, None)


def test_an_order_accepted_event_the_reader_cannot_vouch_for_is_left_to_the_generated_class() -> None:
    msg = oa.ProtoOAExecutionEvent(ctidTraderAccountId=1, executionType=spots.ORDER_ACCEPTED)
    msg.position.positionId, msg.position.positionStatus, msg.position.swap = 5, 1, 0
    msg.position.tradeData.symbolId, msg.position.tradeData.volume, msg.position.tradeData.tradeSide = 1, 100, 1
    payload = msg.SerializeToString()
    assert spots.order_accepted(payload) == spots.OrderAccepted(5, 1)
    assert spots.order_accepted(payload + bytes([3 << 3, 2])) is None  # executionType twice: the runtime merges
    trade_data_missing = oa.ProtoOAExecutionEvent(ctidTraderAccountId=1, executionType=spots.ORDER_ACCEPTED)
    body = trade_data_missing.SerializeToString() + bytes([4 << 3 | 2, 6, 8, 5, 24, 1, 32, 0])  # a position without it
    assert spots.order_accepted(body) is None


TRENDBARS_FIELDS = ("ctidTraderAccountId", "period", "timestamp", "symbolId")


def random_trendbars(rng: random.Random) -> oa.ProtoOAGetTrendbarsRes:
    big = (0, 1, 127, 128, 300, 16_383, 16_384, 2**31 - 1, 2**32 + 5, 2**62, 2**63 - 1, -1, -(2**63))
    m = oa.ProtoOAGetTrendbarsRes(ctidTraderAccountId=rng.choice(big), period=rng.choice((1, 5, 9, 12)),
                                  timestamp=rng.choice(big))
    if rng.random() < 0.6:
        m.symbolId = rng.choice(big)
    for _ in range(rng.randrange(300)):
        tb = m.trendbar.add(volume=rng.choice((0, 5, -3, 2**40)))
        for name, values in (("period", (1, 5, 9, 12)), ("low", (0, 112_345, -7)), ("deltaOpen", (0, 3, 2**40)),
                             ("deltaClose", (0, 9)), ("deltaHigh", (1, 2**33)), ("utcTimestampInMinutes", (0, 2**31))):
            if rng.random() < 0.8:
                setattr(tb, name, rng.choice(values))
    return m


@pytest.mark.parametrize("seed", range(20))
def test_a_history_answer_reads_as_the_protobuf_runtime_reads_it(seed: int) -> None:
    rng = random.Random(seed)
    msg = random_trendbars(rng)
    ptype, got, cid = spots.read_frame(proto.encode_envelope(msg, "h-1"))
    want = proto.unwrap(proto.decode_envelope(proto.encode_envelope(msg, "h-1")))
    assert (ptype, cid, got.DESCRIPTOR.name) == (spots.TRENDBARS_RES, "h-1", "ProtoOAGetTrendbarsRes")
    assert isinstance(got, spots.TrendbarsRes)
    same(got, want, TRENDBARS_FIELDS)
    assert len(got.trendbar) == len(want.trendbar)
    for g, w in zip(got.trendbar, want.trendbar, strict=True):
        same(g, w, BAR_FIELDS)


def test_a_history_answer_without_a_required_field_is_left_to_the_generated_class() -> None:
    msg = oa.ProtoOAGetTrendbarsRes(ctidTraderAccountId=1, period=9, timestamp=5)
    payload = msg.SerializeToString()
    without_timestamp = bytes(payload[:-2])  # timestamp=5 is the last field: tag 0x20, value 5
    assert payload[-2:] == bytes([0x20, 5])
    body = proto.ProtoMessage(payloadType=spots.TRENDBARS_RES, payload=without_timestamp).SerializeToString()
    _p, got, _c = spots.read_frame(body)
    assert isinstance(got, oa.ProtoOAGetTrendbarsRes) and not got.HasField("timestamp")
