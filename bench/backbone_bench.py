"""Backbone benchmark: the wire through common/ against raw pyzmq in the same run, boot time, idle RSS.

    .venv/bin/python bench/backbone_bench.py [--quick]

Prints a table per measure; ratios are common/ over raw pyzmq measured in this same process run.
Peers are separate OS processes (multiprocessing, spawn) over ipc, as in production.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from common import bus, messages  # noqa: E402

PAYLOAD_STEP = "x" * 150  # ~200-byte request, like the dependency baselines


# ---- REQ/REP ---------------------------------------------------------------------------------

def _raw_rep(endpoint: str, n: int) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.REP)
    s.bind(endpoint)
    for _ in range(n):
        m = msgpack.unpackb(s.recv())
        s.send(msgpack.packb({"v": 1, "id": m["id"], "ok": True, "result": {"step": m["args"]["step"], "ok": True}}))
    s.close()
    ctx.term()


def _common_rep(endpoint: str, n: int) -> None:
    ctx = zmq.Context()
    r = bus.Responder(ctx, endpoint, {"step": lambda a: messages.StepResult(a.step, True)}, bus.WireErrors("b"))
    poller = zmq.Poller()  # as the service runtime's loop does
    poller.register(r.sock, zmq.POLLIN)
    served = 0
    while served < n:
        poller.poll(1000)
        served += r.serve_ready()
    r.close()
    ctx.term()


def bench_reqrep(n: int) -> dict[str, list[float]]:
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, server in (("raw pyzmq", _raw_rep), ("common/", _common_rep)):
            endpoint = f"ipc://{d}/{name[:3]}.rep"
            p = mp.get_context("spawn").Process(target=server, args=(endpoint, n + 200))
            p.start()
            ctx = zmq.Context()
            lat: list[float] = []
            if name == "raw pyzmq":
                s = ctx.socket(zmq.REQ)
                s.connect(endpoint)
                for i in range(n + 200):
                    t0 = time.perf_counter()
                    req = {"v": 1, "op": "step", "id": f"c-{i}", "args": {"step": PAYLOAD_STEP, "args": {}}}
                    s.send(msgpack.packb(req))
                    msgpack.unpackb(s.recv())
                    lat.append(time.perf_counter() - t0)
                s.close()
            else:
                req = bus.Requester(ctx, endpoint, "c", 5000)
                args = messages.StepArgs(PAYLOAD_STEP)
                for _ in range(n + 200):
                    t0 = time.perf_counter()
                    req.call("step", args)
                    lat.append(time.perf_counter() - t0)
                req.close()
            p.join()
            ctx.term()
            out[name] = lat[200:]  # drop the warm-up
    return out


# ---- PUB/SUB ---------------------------------------------------------------------------------

BAR = messages.Bar("EURUSD", "H1", 1483308000, 1.05236, 1.05253, 1.05221, 1.05227, 143539993.3)


def _raw_pub(endpoint: str, n: int) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUB)
    s.setsockopt(zmq.SNDHWM, 0)
    s.bind(endpoint)
    time.sleep(0.7)  # slow joiner
    body = messages.to_wire(BAR)
    for i in range(n):
        env = {"v": 1, "type": "bar", "src": "b", "epoch": 1, "seq": i + 1, "ts": time.time_ns(), "body": body}
        s.send_multipart([b"bar.EURUSD.H1", msgpack.packb(env)])
    time.sleep(0.5)
    s.close()
    ctx.term()


def _common_pub(endpoint: str, n: int) -> None:
    ctx = zmq.Context()
    p = bus.Publisher(ctx, endpoint, "b", 1)
    time.sleep(0.7)
    for _ in range(n):
        p.publish("bar.EURUSD.H1", BAR)
    time.sleep(0.5)
    p.close()
    ctx.term()


def bench_pubsub(n: int) -> dict[str, tuple[float, int]]:
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, publisher in (("raw pyzmq", _raw_pub), ("common/", _common_pub)):
            endpoint = f"ipc://{d}/{name[:3]}.pub"
            ctx = zmq.Context()
            if name == "raw pyzmq":
                s = ctx.socket(zmq.SUB)
                s.setsockopt(zmq.RCVHWM, 0)
                s.setsockopt(zmq.SUBSCRIBE, b"bar.")
                s.connect(endpoint)
            else:
                sub = bus.Subscriber(ctx, [endpoint], ["bar."], bus.WireErrors("b"))
                s = sub.sock
            p = mp.get_context("spawn").Process(target=publisher, args=(endpoint, n))
            p.start()
            got = 0
            t_first = t_last = 0.0
            while got < n and s.poll(3000):
                if name == "raw pyzmq":
                    batch = 0
                    while True:
                        try:
                            frames = s.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        msgpack.unpackb(frames[1])
                        batch += 1
                else:
                    batch = len(sub.drain())
                if batch and not t_first:
                    t_first = time.perf_counter()
                got += batch
                t_last = time.perf_counter()
            p.join()
            s.close()
            ctx.term()
            out[name] = (got / (t_last - t_first) if t_last > t_first else 0.0, got)
    return out


# ---- boot and idle RSS -----------------------------------------------------------------------

def bench_boot(runs: int, supervised: bool) -> tuple[list[float], dict[str, int]]:
    from harness import Home, wait_for

    times: list[float] = []
    rss: dict[str, int] = {}
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="ob") as d:
            home = Home(Path(d), {"runtime": {"hello_interval_s": 0.05}})
            t0 = time.monotonic()
            if supervised:
                home.start_supervisord()
            else:
                for s in ("orchestrator", "persistence", "preditor", "executor", "paper", "connector"):
                    home.start(s)
            try:
                wait_for(lambda h=home: h.system_state() == "RUNNING", 60, "RUNNING", interval=0.02)
                times.append(time.monotonic() - t0)
                time.sleep(2.5)  # idle, then read every process's RSS from its own heartbeat
                rss = {k: v["rss_bytes"] for k, v in home.status()["services"].items()}
            finally:
                home.close()
    return times, rss


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    n_req = 2000 if a.quick else 10000
    n_pub = 50000 if a.quick else 200000

    rr = bench_reqrep(n_req)
    print(f"\nREQ/REP round trip, ipc, peer in another process, {n_req} requests")
    print(f"{'':12} {'median us':>10} {'p99 us':>10}")
    for name, lat in rr.items():
        print(f"{name:12} {statistics.median(lat) * 1e6:10.1f} {pct(lat, 0.99) * 1e6:10.1f}")
    ratio = statistics.median(rr["common/"]) / statistics.median(rr["raw pyzmq"])
    print(f"ratio common/raw (median): {ratio:.2f}")

    ps = bench_pubsub(n_pub)
    print(f"\nPUB/SUB throughput, ipc, publisher in another process, {n_pub} bars")
    for name, (rate, got) in ps.items():
        print(f"{name:12} {rate:12,.0f} msg/s   received {got}/{n_pub}")
    print(f"ratio common/raw (throughput): {ps['common/'][0] / ps['raw pyzmq'][0]:.2f}")

    runs = 2 if a.quick else 5
    direct, rss = bench_boot(runs, supervised=False)
    sup, _ = bench_boot(max(1, runs // 2), supervised=True)
    print(f"\nboot to RUNNING (six processes): direct start {statistics.median(direct):.2f} s median of {runs} "
          f"(max {max(direct):.2f}); under supervisord {statistics.median(sup):.2f} s median of {len(sup)}")
    print("\nidle RSS per process (MiB, from each process's heartbeat)")
    for name, b in rss.items():
        print(f"  {name:13} {b / 2**20:6.1f}")
    print(f"  {'total':13} {sum(rss.values()) / 2**20:6.1f}")


if __name__ == "__main__":
    main()
