from __future__ import annotations

import random
import subprocess
import sys

import pytest

from services.connector.ctrader import schemas as framing
from services.connector.ctrader import schemas as proto

oa = proto.oa


def test_frame_is_4_byte_big_endian_length() -> None:
    assert framing.encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert framing.encode_frame(b"") == b"\x00\x00\x00\x00"


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_decoder_reassembles_split_frames(chunk: int) -> None:
    bodies = [b"x" * n for n in (0, 1, 5, 300, 70_000)]
    stream = b"".join(framing.encode_frame(b) for b in bodies)
    dec = framing.FrameDecoder()
    out: list[bytes] = []
    for i in range(0, len(stream), chunk):
        out += dec.feed(stream[i:i + chunk])
    assert out == bodies
    assert dec.pending == 0


def test_decoder_rejects_absurd_length() -> None:
    with pytest.raises(framing.FrameError):
        framing.FrameDecoder(max_frame=10).feed(b"\x00\x00\x01\x00")


@pytest.mark.parametrize(("cls", "ptype"), [
    (oa.ProtoOAApplicationAuthReq, 2100), (oa.ProtoOAAccountAuthRes, 2103), (oa.ProtoOANewOrderReq, 2106),
    (oa.ProtoOAExecutionEvent, 2126), (oa.ProtoOASpotEvent, 2131), (oa.ProtoOAGetTrendbarsReq, 2137),
    (oa.ProtoOAErrorRes, 2142), (oa.ProtoOASubscribeLiveTrendbarReq, 2135), (proto.common.ProtoHeartbeatEvent, 51),
])
def test_payload_type_lookup(cls, ptype: int) -> None:
    assert proto.payload_type_of(cls) == ptype
    assert proto.class_for(ptype) is cls


def test_envelope_round_trip_with_client_msg_id() -> None:
    msg = oa.ProtoOAGetTrendbarsReq(ctidTraderAccountId=7, symbolId=1, period=9, fromTimestamp=1, toTimestamp=2)
    frame = framing.encode_frame(proto.encode_envelope(msg, "abc-1"))
    (body,) = framing.FrameDecoder().feed(frame)
    env = proto.decode_envelope(body)
    assert env.payloadType == 2137 and env.clientMsgId == "abc-1"
    assert proto.unwrap(env) == msg


def test_unknown_payload_type_unwraps_to_none() -> None:
    env = proto.ProtoMessage(payloadType=65000, payload=b"")
    assert proto.unwrap(env) is None
    assert proto.type_name(65000) == "UNKNOWN_65000"


def test_no_twisted_in_the_process() -> None:
    code = ("import sys; import services.connector.service, services.connector.sim.server; "
            "bad = [m for m in sys.modules if m.startswith('twisted')]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_decoder_cuts_frames_however_the_bytes_are_split() -> None:
    rng = random.Random(7)
    bodies = [bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 3, 40, 200)))) for _ in range(300)]
    stream = b"".join(framing.encode_frame(b) for b in bodies)
    dec = framing.FrameDecoder()
    out: list[bytes] = []
    i = 0
    while i < len(stream):
        n = rng.choice((1, 2, 4, 5, 37, 600, 5000))
        out += dec.feed(stream[i:i + n])
        i += n
    assert out == bodies
    assert dec.pending == 0
