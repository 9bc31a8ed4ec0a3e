"""The connector's spot path in-process: a bar close's spot events (20 symbols, each the last point of the closing
bar and the first of the next, with its forming H1 trendbar, as the simulator sends them at spot_interval_s 3600) read
from their frames and applied to the adapter's market data (quotes, ticks, live bars closed), thread CPU per spot.

    python bench/connector_spot_bench.py [--symbols 20] [--bars 400] [--repeat 5] [--repo PATH ...]

Each --repo (default: this checkout) is imported in a process of its own and measured in turn, alternated --repeat
times (the medians printed): the same frames, so the figures compare.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from pathlib import Path
from types import SimpleNamespace

from measure import alternate_checkouts, print_medians

REPO = Path(__file__).resolve().parent.parent


def frames(symbols: int, bars: int) -> list[list[bytes]]:
    """Per bar close, the frames of its spot events (the protobuf runtime's bytes)."""
    from services.connector.ctrader import schemas as proto

    oa, model = proto.oa, proto.model
    t0 = 1_484_244_000  # Thursday 12 January 2017 18:00 UTC
    out = []
    for b in range(bars):
        burst = []
        for point, (bar_open, second) in enumerate(((t0 + b * 3600, 3599 - 30), (t0 + (b + 1) * 3600, 30))):
            for s in range(symbols):
                price = 112_000 + 37 * s + 11 * b + point
                m = oa.ProtoOASpotEvent(ctidTraderAccountId=1_000_001, symbolId=s + 1, bid=price, ask=price + 12,
                                        timestamp=(bar_open + second) * 1000)
                m.trendbar.add(volume=100 + b, period=model.ProtoOATrendbarPeriod.Value("H1"), low=price - 40,
                               deltaOpen=15, deltaHigh=60, utcTimestampInMinutes=bar_open // 60)
                burst.append(proto.ProtoMessage(payloadType=proto.payload_type_of(oa.ProtoOASpotEvent),
                                                payload=m.SerializeToString()).SerializeToString())
        out.append(burst)
    return out


def measure(symbols: int, bars: int) -> dict:
    from services.connector.ctrader import data, spots
    from services.connector.ctrader.bars import LiveBarDetector

    names = ["EURUSD", *(f"SYN{k:02d}" for k in range(1, symbols))]
    instruments = SimpleNamespace(
        by_id={i + 1: n for i, n in enumerate(names)}, specs={n: SimpleNamespace(digits=5) for n in names},
        calendars={})
    instruments.name_of = instruments.by_id.get
    emitted: list = []
    link = SimpleNamespace(emit=emitted.append)
    md = data.MarketData(link, instruments)
    for n in names:
        sub = data.BarSubscription(n, "H1", 9, 3600, LiveBarDetector(n, 3600))
        md.subs[(n, "H1")] = sub
    md._index_subs()
    loop = asyncio.new_event_loop()  # on_spot sets asyncio events: they need a loop
    asyncio.set_event_loop(loop)
    read = spots.read_frame_adapter
    bursts = frames(symbols, bars)
    warm = bursts[: bars // 4]
    for burst in warm:
        for body in burst:
            md.on_spot(read(body)[1])
    emitted.clear()
    t = time.thread_time()
    n = 0
    for burst in bursts[bars // 4:]:
        for body in burst:
            md.on_spot(read(body)[1])
            n += 1
    dt = time.thread_time() - t
    closed = [(b.symbol, b.time, b.open, b.high, b.low, b.close, b.volume) for b in emitted]
    digest = hashlib.sha256(repr(closed).encode()).hexdigest()[:12]
    return {"us_per_spot": dt / n * 1e6, "bars": len(closed), "digest": digest}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--bars", type=int, default=400)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--repo", action="append", type=Path)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.symbols, args.bars)))
        return 0
    one = ["--symbols", str(args.symbols), "--bars", str(args.bars)]
    got = alternate_checkouts(__file__, args.repo or [REPO], args.repeat, one)
    print_medians(got, "us_per_spot", "a spot", 2, lambda r: f"{r['bars']} bars closed, digest {r['digest']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
