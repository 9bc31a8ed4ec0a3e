"""The trading requests written by hand (requests_wire.py) against the protobuf runtime: the same bytes."""

from __future__ import annotations

import random

import pytest

from services.connector.ctrader import requests_wire
from services.connector.ctrader import schemas as proto

oa = proto.oa
BIG = (0, 1, 127, 128, 300, 16_383, 16_384, 2**31 - 1, 2**32 + 5, 2**62, 2**63 - 1)


@pytest.mark.parametrize("seed", range(40))
def test_a_new_order_request_is_the_generated_class_bytes(seed: int) -> None:
    rng = random.Random(seed)
    fields = {"ctidTraderAccountId": rng.choice(BIG), "symbolId": rng.choice(BIG), "orderType": rng.choice((1, 2, 3)),
              "tradeSide": rng.choice((1, 2)), "volume": rng.choice(BIG)}
    optional = {"comment": rng.choice(("", "OT1|a", "é" * 300)), "label": rng.choice(("", "c-1", "x" * 100)),
                "clientOrderId": rng.choice(("", "EURUSD-abc-O")), "relativeStopLoss": rng.choice(BIG + (-5,)),
                "relativeTakeProfit": rng.choice(BIG)}
    chosen = {k: v for k, v in optional.items() if rng.random() < 0.6}
    want = oa.ProtoOANewOrderReq(**fields, **chosen)
    got = requests_wire.new_order(
        fields["ctidTraderAccountId"], fields["symbolId"], fields["orderType"], fields["tradeSide"], fields["volume"],
        comment=chosen.get("comment"), label=chosen.get("label"), client_order_id=chosen.get("clientOrderId"),
        relative_stop_loss=chosen.get("relativeStopLoss"), relative_take_profit=chosen.get("relativeTakeProfit"))
    assert (got.payload_type, got.name) == (proto.payload_type_of(want), want.DESCRIPTOR.name)
    assert got.payload == want.SerializeToString()
    cid = rng.choice(("", "abc", "é-id", "f" * 32))
    assert requests_wire.envelope(got, cid or None) == proto.encode_envelope(want, cid or None)


@pytest.mark.parametrize("seed", range(20))
def test_a_close_position_request_is_the_generated_class_bytes(seed: int) -> None:
    rng = random.Random(seed)
    account, ticket, volume = rng.choice(BIG), rng.choice(BIG), rng.choice(BIG)
    want = oa.ProtoOAClosePositionReq(ctidTraderAccountId=account, positionId=ticket, volume=volume)
    got = requests_wire.close_position(account, ticket, volume)
    assert (got.payload_type, got.payload, got.name) == (
        proto.payload_type_of(want), want.SerializeToString(), want.DESCRIPTOR.name)
    assert requests_wire.envelope(got, "m-1") == proto.encode_envelope(want, "m-1")
