"""What CURVE costs on the wire: common/'s REQ/REP round trip and PUB -> SUB (paced latency and burst throughput)
with wire CURVE off and on, over ipc and tcp loopback, side by side in one run.

    .venv/bin/python bench/curve_bench.py [--requests 5000] [--paced 2000] [--burst 100000]

The peer is another OS process (multiprocessing, spawn), as in production; with CURVE on both ends run
``bus.secure`` with keys made by ``common.keys.init`` (the server: the connector's key, the client: the operator's),
so the handshake, the ZAP authenticator and the per-message encryption are the production ones. Ratios are on over
off of the same transport in the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import zmq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common import bus, keys, messages  # noqa: E402

BAR = messages.Bar("EURUSD", "H1", 1483308000, 1.05236, 1.05253, 1.05221, 1.05227, 143539993.3)
PAYLOAD = "x" * 150  # ~200-byte request, as bench/backbone_bench.py
WARMUP = 200


def _secure(keys_dir: str | None, own: str, endpoint: str) -> None:
    if keys_dir is None:
        return
    ring = keys.load(Path(keys_dir), own)
    bus.secure(ring, own, {endpoint: ring.publics["connector"]})


def _server(endpoint: str, n: int, keys_dir: str | None) -> None:
    _secure(keys_dir, "connector", endpoint)
    ctx = zmq.Context()
    r = bus.Responder(ctx, endpoint, {"step": lambda a: messages.StepResult(a.step, True)}, bus.WireErrors("b"))
    poller = zmq.Poller()
    poller.register(r.sock, zmq.POLLIN)
    served = 0
    while served < n:
        poller.poll(1000)
        served += r.serve_ready()
    r.close()
    bus.release(ctx)
    ctx.term()


def _publisher(endpoint: str, paced: int, burst: int, keys_dir: str | None) -> None:
    _secure(keys_dir, "connector", endpoint)
    ctx = zmq.Context()
    p = bus.Publisher(ctx, endpoint, "b", 1, hwm=0)
    time.sleep(1.0)  # slow joiner (and the CURVE handshake)
    for _ in range(paced):  # one at a time, as bars and signals go: the latency of one message
        p.publish("bar.EURUSD.H1", BAR)
        time.sleep(0.001)
    time.sleep(0.3)
    for _ in range(burst):
        p.publish("bar.EURUSD.H1", BAR)
    time.sleep(1.0)
    p.close()
    bus.release(ctx)
    ctx.term()


def reqrep(endpoint: str, n: int, keys_dir: str | None) -> list[float]:
    _secure(keys_dir, "operator", endpoint)
    proc = mp.get_context("spawn").Process(target=_server, args=(endpoint, n + WARMUP, keys_dir))
    proc.start()
    ctx = zmq.Context()
    req = bus.Requester(ctx, endpoint, "c", 10_000)
    args = messages.StepArgs("bench.step", {"payload": PAYLOAD})
    lat = []
    for _ in range(n + WARMUP):
        t0 = time.perf_counter()
        req.call("step", args)
        lat.append(time.perf_counter() - t0)
    req.close()
    proc.join(30)
    ctx.term()
    bus.plain()
    return lat[WARMUP:]


def pubsub(endpoint: str, paced: int, burst: int, keys_dir: str | None) -> tuple[list[float], float, int]:
    """(one-way latencies of the paced messages in s, the burst's rate in msg/s, messages received)."""
    _secure(keys_dir, "operator", endpoint)
    ctx = zmq.Context()
    sub = bus.Subscriber(ctx, [endpoint], ["bar."], bus.WireErrors("b"))
    proc = mp.get_context("spawn").Process(target=_publisher, args=(endpoint, paced, burst, keys_dir))
    proc.start()
    lat: list[float] = []
    got = 0
    burst_sent = burst_last = 0  # the burst's first message as published (its ts), its last as received (ns)
    while got < paced + burst and sub.sock.poll(5000):
        batch = sub.drain()
        now = time.time_ns()
        for r in batch:
            if got < paced:
                lat.append((now - r.envelope.ts) / 1e9)
            elif not burst_sent:
                burst_sent = r.envelope.ts
            got += 1
        burst_last = now
    proc.join(30)
    sub.close()
    ctx.term()
    bus.plain()
    # published -> all received: what the pair sustains, whatever the SUB's batching
    rate = (got - paced) / ((burst_last - burst_sent) / 1e9) if burst_last > burst_sent else 0.0
    return lat[50:], rate, got


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--paced", type=int, default=2000, help="PUB -> SUB messages 1 ms apart (latency)")
    ap.add_argument("--burst", type=int, default=100_000, help="PUB -> SUB messages back to back (throughput)")
    ap.add_argument("--rounds", type=int, default=3, help="off/on pairs per transport, pooled (throughput: median)")
    a = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        keys_dir = Path(d) / "keys"
        keys.init(keys_dir, ["connector", "operator"])
        pooled: dict[tuple[str, bool], tuple[list[float], list[float], list[float], int]] = {}
        for i in range(a.rounds):  # off and on alternate, so the machine's other load falls on both alike
            for transport in ("ipc", "tcp"):
                for curve in (False, True):
                    kd = str(keys_dir) if curve else None
                    rr = reqrep(_endpoint(transport, d, f"rep-{int(curve)}-{i}"), a.requests, kd)
                    lat, rate, got = pubsub(_endpoint(transport, d, f"pub-{int(curve)}-{i}"), a.paced, a.burst, kd)
                    rr0, lat0, rates0, got0 = pooled.get((transport, curve), ([], [], [], 0))
                    pooled[(transport, curve)] = (rr0 + rr, lat0 + lat, [*rates0, rate], got0 + got)
                    print(f"  round {i + 1}: {transport} curve {'on ' if curve else 'off'}: REQ/REP p50 "
                          f"{statistics.median(rr) * 1e6:.1f} us; PUB->SUB p50 {pct(lat, 0.5) * 1e6:.1f} us, "
                          f"{rate:,.0f} msg/s", flush=True)
        for (transport, curve), (rr, lat, rates, got) in pooled.items():
            rows.append((transport, curve, rr, lat, statistics.median(rates), got))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    print(f"\ncommon/ over the wire, peer in another process, {a.rounds} rounds pooled: REQ/REP {a.requests} round "
          f"trips (~200 B), PUB -> SUB {a.paced} bars 1 ms apart (one-way latency, same host clock) and {a.burst} "
          "back to back (throughput: first published -> last received, median of the rounds)")
    print("| transport | CURVE | REQ/REP p50 us | REQ/REP p99 us | PUB->SUB p50 us | PUB->SUB p99 us | "
          "PUB->SUB msg/s | received |")
    print("|---|---|---|---|---|---|---|---|")
    for transport, curve, rr, lat, rate, got in rows:
        print(f"| {transport} | {'on' if curve else 'off'} | {pct(rr, 0.5) * 1e6:.1f} | {pct(rr, 0.99) * 1e6:.1f} | "
              f"{pct(lat, 0.5) * 1e6:.1f} | {pct(lat, 0.99) * 1e6:.1f} | {rate:,.0f} | "
              f"{got}/{a.rounds * (a.paced + a.burst)} |")
    print("\nratio CURVE on / off, same transport, same run")
    print("| transport | REQ/REP p50 | REQ/REP p99 | PUB->SUB p50 | PUB->SUB p99 | PUB->SUB throughput |")
    print("|---|---|---|---|---|---|")
    by = {(t, c): (rr, lat, rate) for t, c, rr, lat, rate, _ in rows}
    for transport in ("ipc", "tcp"):
        (r0, l0, t0), (r1, l1, t1) = by[(transport, False)], by[(transport, True)]
        print(f"| {transport} | {pct(r1, 0.5) / pct(r0, 0.5):.2f} | {pct(r1, 0.99) / pct(r0, 0.99):.2f} | "
              f"{pct(l1, 0.5) / pct(l0, 0.5):.2f} | {pct(l1, 0.99) / pct(l0, 0.99):.2f} | "
              f"{t1 / t0 if t0 else float('nan'):.2f} |")
    return 0


def _endpoint(transport: str, d: str, name: str) -> str:
    if transport == "ipc":
        return f"ipc://{d}/{name}"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


if __name__ == "__main__":
    raise SystemExit(main())
