"""The simulator's hand-written spot event frames are the bytes the generated protobuf classes write."""

from __future__ import annotations

import random

import pytest

from services.connector.ctrader import schemas as proto
from services.connector.ctrader import spots
from services.connector.sim import spot_frames, wire
from services.connector.sim.replay import CsvBar


def _by_protobuf(account_id: int, symbol_id: int, quote: tuple[int, int] | None, timestamp_ms: int | None,
                 bars: list[tuple[CsvBar, int]]) -> bytes:
    ev = proto.oa.ProtoOASpotEvent(ctidTraderAccountId=account_id, symbolId=symbol_id)
    if quote is not None:
        ev.bid, ev.ask = quote
    if timestamp_ms is not None:
        ev.timestamp = timestamp_ms
    for bar, period in bars:
        ev.trendbar.append(wire.trendbar(bar, period))
    return proto.encode_frame(proto.encode_envelope(ev))


def _bar(rng: random.Random) -> CsvBar:
    low = round(rng.uniform(0.5, 150.0), 5)
    high = round(low + rng.uniform(0.0, 2.0), 5)
    return CsvBar(rng.randrange(1_400_000_000, 1_800_000_000) // 3600 * 3600, round(rng.uniform(low, high), 5),
                  high, low, round(rng.uniform(low, high), 5), float(rng.choice((0, 1, 127, 128, 99_999))))


@pytest.mark.parametrize("seed", range(40))
def test_spot_frame_is_the_protobuf_bytes(seed: int) -> None:
    rng = random.Random(seed)
    account_id = rng.choice((1, 127, 128, 1_000_001, 2**40))
    symbol_id = rng.choice((1, 2, 127, 128, 300, 2**33))
    quote = None if seed % 5 == 0 else (rng.randrange(0, 2**40), rng.randrange(0, 2**40))
    timestamp = None if seed % 3 == 0 else rng.randrange(0, 2**45)
    bars = [(_bar(rng), rng.choice((1, 5, 9, 12))) for _ in range(seed % 4)]
    made = spot_frames.spot_frame(spot_frames.spot_payload(
        account_id, symbol_id, quote, timestamp, [spot_frames.trendbar_bytes(b, p) for b, p in bars]))
    assert made == _by_protobuf(account_id, symbol_id, quote, timestamp, bars)


def test_spot_frame_reads_back_through_both_readers() -> None:
    bar = CsvBar(1_500_000_000 // 3600 * 3600, 1.1, 1.2, 1.05, 1.15, 42.0)
    frame = spot_frames.spot_frame(spot_frames.spot_payload(7, 3, (110_000, 110_020), 1_500_000_000_000,
                                                            [spot_frames.trendbar_bytes(bar, 9)]))
    (body,) = proto.FrameDecoder().feed(frame)
    ev = proto.unwrap(proto.decode_envelope(body))
    assert (ev.ctidTraderAccountId, ev.symbolId, ev.bid, ev.ask, ev.timestamp) == (7, 3, 110_000, 110_020,
                                                                                   1_500_000_000_000)
    assert ev.trendbar[0].low == 105_000 and ev.trendbar[0].deltaHigh == 15_000 and ev.trendbar[0].volume == 42
    assert spots.SPOT_EVENT == spot_frames.SPOT_EVENT


@pytest.mark.parametrize("seed", range(40))
def test_a_quoted_spot_event_in_one_go_is_the_same_frame(seed: int) -> None:
    """`spot_event_frame` and `bar_bytes` (a forming bar's row) write what `spot_frame(spot_payload(...))` and
    `trendbar_bytes` write."""
    rng = random.Random(seed)
    account_id = rng.choice((1, 127, 128, 1_000_001, 2**40))
    symbol_id = rng.choice((1, 2, 127, 128, 300, 2**33))
    quote = (rng.randrange(0, 2**40), rng.randrange(0, 2**40))
    timestamp = None if seed % 3 == 0 else rng.randrange(0, 2**45)
    bars = [(_bar(rng), rng.choice((1, 5, 9, 12))) for _ in range(seed % 4)]
    rows = [([b.time, b.open, b.high, b.low, b.close, b.volume], p) for b, p in bars]
    assert [spot_frames.bar_bytes(r, p) for r, p in rows] == [spot_frames.trendbar_bytes(b, p) for b, p in bars]
    made = spot_frames.spot_event_frame(account_id, symbol_id, *quote, timestamp,
                                        [spot_frames.bar_bytes(r, p) for r, p in rows])
    assert made == _by_protobuf(account_id, symbol_id, quote, timestamp, bars)
