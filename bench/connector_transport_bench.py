"""The broker transport's read path in-process: a bar close's spot frames read over TLS by the adapter's `Transport`
(its frame decoder, the envelope and spot reader, each frame dispatched), thread CPU per burst.

    python bench/connector_transport_bench.py [--symbols 20] [--bursts 400] [--chunks 4] [--repeat 5] [--repo PATH ...]

A TLS server in a process of its own answers each request (a VersionReq, clientMsgId "b<n>") with a burst: the spot
events of a bar close (2 per symbol, with their H1 trendbar) written in `--chunks` writes, then the answer. The
client (this process's main thread, its asyncio loop) sends the request, reads the burst as events and awaits the
answer: its thread's CPU over the bursts. Each --repo (default: this checkout)
is imported in a process of its own and measured in turn, alternated --repeat times (the medians printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import time
from pathlib import Path

from measure import alternate_checkouts, print_medians

REPO = Path(__file__).resolve().parent.parent


def burst_frames(symbols: int) -> list[bytes]:
    from services.connector.ctrader import schemas as proto

    oa, model = proto.oa, proto.model
    bar_open = 1_484_244_000
    out = []
    for point, second in enumerate((3599 - 30, 3600 + 30)):
        for s in range(symbols):
            price = 112_000 + 37 * s + point
            m = oa.ProtoOASpotEvent(ctidTraderAccountId=1_000_001, symbolId=s + 1, bid=price, ask=price + 12,
                                    timestamp=(bar_open + second) * 1000)
            m.trendbar.add(volume=100, period=model.ProtoOATrendbarPeriod.Value("H1"), low=price - 40,
                           deltaOpen=15, deltaHigh=60, utcTimestampInMinutes=(bar_open + 3600 * point) // 60)
            out.append(proto.encode_frame(proto.ProtoMessage(payloadType=proto.payload_type_of(oa.ProtoOASpotEvent),
                                                             payload=m.SerializeToString()).SerializeToString()))
    return out


def serve(symbols: int, chunks: int, ports: multiprocessing.Queue) -> None:
    from services.connector.ctrader import schemas as proto
    from services.connector.sim import certs

    ctx = certs.server_context(*certs.self_signed_pem("localhost"))
    frames = burst_frames(symbols)
    listener = socket.create_server(("127.0.0.1", 0))
    ports.put(listener.getsockname()[1])
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = ctx.wrap_socket(conn, server_side=True)
    decoder = proto.FrameDecoder()
    per = max(1, -(-len(frames) // chunks))
    writes = [b"".join(frames[i:i + per]) for i in range(0, len(frames), per)]
    try:
        while True:
            data = tls.recv(65536)
            if not data:
                return
            for body in decoder.feed(data):
                env = proto.decode_envelope(body)
                answer = proto.encode_frame(proto.encode_envelope(proto.oa.ProtoOAVersionRes(version="1"),
                                                                  env.clientMsgId))
                for w in writes:
                    tls.sendall(w)
                tls.sendall(answer)
    except OSError:
        return
    finally:
        tls.close()


async def client(port: int, bursts: int) -> tuple[float, int]:
    from services.connector.ctrader import schemas as proto
    from services.connector.ctrader import spots
    from services.connector.ctrader.transport import Transport, TransportConfig

    events = [0]

    def on_event(ptype: int, msg: object, cid: str) -> None:
        events[0] += 1

    cfg = TransportConfig("127.0.0.1", port, tls=True, verify=False, rate_limit=1_000_000,
                          history_rate_limit=1_000_000, heartbeat_interval=3600, dead_after=3600)
    tr = Transport(cfg, on_event=on_event, read_frame=spots.read_frame_adapter)
    await tr.connect()
    req = proto.oa.ProtoOAVersionReq()
    for n in range(bursts // 4):  # warm-up
        await tr.request(req, client_msg_id=f"w{n}")
    events[0] = 0
    t = time.thread_time()
    for n in range(bursts):
        await tr.request(req, client_msg_id=f"b{n}")
    dt = time.thread_time() - t
    await tr.close()
    return dt, events[0]


def measure(symbols: int, bursts: int, chunks: int) -> dict:
    ports: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()
    server = multiprocessing.get_context("fork").Process(target=serve, args=(symbols, chunks, ports), daemon=True)
    server.start()
    dt, events = asyncio.run(client(ports.get(timeout=30), bursts))
    server.join(10)
    if events != bursts * 2 * symbols:
        raise SystemExit(f"{events} events read, {bursts * 2 * symbols} sent")
    return {"us_per_burst": dt / bursts * 1e6, "events": events}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--bursts", type=int, default=400)
    p.add_argument("--chunks", type=int, default=4, help="writes a burst's spot frames are sent in")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--repo", action="append", type=Path)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.symbols, args.bursts, args.chunks)))
        return 0
    one = ["--symbols", str(args.symbols), "--bursts", str(args.bursts), "--chunks", str(args.chunks)]
    got = alternate_checkouts(__file__, args.repo or [REPO], args.repeat, one)
    print_medians(got, "us_per_burst", "a burst", 1, lambda r: f"{r['events']} events")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
