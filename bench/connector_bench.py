"""Connector: closed-bar publish latency, order round trip against the simulator, RSS.

    python bench/connector_bench.py [--bars 200] [--orders 200]

Real processes in a throwaway ORACLE_HOME: the simulator (`python -m services.connector.sim --from-config`,
manual speed) and the connector (`python -m services.connector`, its connect step asked over REP, no orchestrator
needed). The bench drives the replay through the simulator's control port and listens on the connector's PUB.

- bar latency: from the control command that makes the simulator close a bar (the first tick of the next bar)
  to the `bar.EURUSD.H1` record arriving on a SUB (bars closed at random moments); an upper bound of the
  connector's share, since it includes the control round trip and the simulator's own work. The connector
  publishes broker events from its loop thread, which the runtime wakes at least every 100 ms: that poll
  period is most of this figure;
- order round trip: REQ `order_open` (0.01 lot market order, relative SL) -> reply, and `order_close`;
- history: REQ `history` of 1000 H1 bars -> reply;
- orders during a warmup: the order round trip while 20 `history(1000)` requests (a 20-model preditor warmup) are
  out, against the same round trip on the idle connector, side by side in one run (`--warmups` rounds): the
  connector serves history off its loop, so the ratio should stay near 1 (it was 12 s of delay before);
- RSS of the connector process after all that.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml
import zmq

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from harness import free_port  # noqa: E402

from common import bus, config, messages  # noqa: E402
from services.connector.sim.control import control  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def fmt_ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.2f} ms, p99 {pct(values, 0.99) * 1000:.2f} ms (n={len(values)})"


def orders_beside_a_warmup(ctx: zmq.Context, cfg: config.Config, req: bus.Requester,
                           rounds: int) -> tuple[list[float], list[float], list[float]]:
    """(order round trips on the idle connector, the same while 20 history(1000) requests are out, how long the 20
    took): an order (open, then its close) every 50 ms, alternating idle phases and warmup phases."""
    endpoint = cfg.endpoint("connector", "rep")
    idle: list[float] = []
    busy: list[float] = []
    warm: list[float] = []
    n = 0

    def order() -> float:
        nonlocal n
        n += 1
        t0 = time.perf_counter()
        r = req.call("order_open", messages.OrderOpenArgs("EURUSD", 1, 0.01, f"warm-{n}"))
        took = time.perf_counter() - t0
        if not r.success:
            raise SystemExit(f"order failed: {r.error}")
        req.call("order_close", messages.OrderCloseArgs(r.ticket))
        return took

    for _ in range(rounds):
        for _ in range(20):
            idle.append(order())
            time.sleep(0.05)
        lines = [bus.Requester(ctx, endpoint, "bench", 300_000) for _ in range(20)]
        t0 = time.perf_counter()
        for i, line in enumerate(lines):
            line.send("history", messages.HistoryArgs("EURUSD", "H1", count=1000 - i))
        out = set(range(20))
        while out:
            busy.append(order())
            for i in list(out):
                reply = lines[i].take_reply()
                if reply is not None:
                    if not reply.ok:
                        raise SystemExit(f"history failed: {reply.error_message}")
                    out.discard(i)
            time.sleep(0.05)
        warm.append(time.perf_counter() - t0)
        for line in lines:
            line.close()
    return idle, busy, warm


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bars", type=int, default=200)
    p.add_argument("--orders", type=int, default=200)
    p.add_argument("--warmups", type=int, default=3, help="rounds of 20 history(1000) requests with orders meanwhile")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="oracle-bench-") as tmp:
        home = Path(tmp)
        (home / "config").mkdir()
        (home / "config" / "default.yaml").symlink_to(REPO / "config" / "default.yaml")
        (home / "var" / "log").mkdir(parents=True)
        port, ctl = free_port(), free_port()
        overlay = {
            "broker": {
                # spot_interval_s 3600: a bar's close comes after 2 spot events, as after the 4 ticks of the
                # simulator the figures below were first measured with, not after 60
                "sim": {"port": port, "control_port": ctl, "speed": 0, "spot_interval_s": 3600,
                        "csv": str(REPO / "data" / "EURUSD_H1_2017.csv")}
            },
        }
        (home / "config" / "local.yaml").write_text(yaml.safe_dump(overlay))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
        env.update(ORACLE_HOME=str(home), PYTHONUNBUFFERED="1")
        cfg = config.load(env=env)
        procs: list[subprocess.Popen] = []

        def spawn(module: str, *extra: str) -> subprocess.Popen:
            log = open(home / "var" / "log" / f"{module}.log", "ab")  # noqa: SIM115 - owned by the child
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *extra], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            procs.append(proc)
            return proc

        ctx = zmq.Context.instance()
        try:
            spawn("services.connector.sim", "--from-config")
            deadline = time.monotonic() + 15
            while True:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit("the simulator did not start")
                time.sleep(0.05)
            connector = spawn("services.connector")
            req = bus.Requester(ctx, cfg.endpoint("connector", "rep"), "bench", 30_000)
            deadline = time.monotonic() + 30
            while True:
                try:
                    res = req.call("step", messages.StepArgs("connector.connect"), timeout_ms=30_000)
                    break
                except bus.RequestTimeout:
                    if time.monotonic() > deadline:
                        raise
            if not res.ok:
                raise SystemExit(f"connect failed: {res.error}")
            sub = bus.Subscriber(ctx, [cfg.endpoint("connector", "pub")], ["bar."], bus.WireErrors("bench"))
            time.sleep(0.5)  # the SUB connects

            # ---- closed-bar latency
            bar_lat: list[float] = []
            rng = random.Random(1)
            for _ in range(args.bars):
                # a bar closes at a moment unrelated to the connector's loop phase (no lockstep with it)
                time.sleep(rng.uniform(0.0, 0.1))
                t0 = time.perf_counter()
                control(ctl, "advance", bars=1)
                got = []
                while not got:
                    if not sub.sock.poll(5000):
                        raise SystemExit("no bar within 5 s")
                    got = [r for r in sub.drain() if r.envelope.topic.startswith("bar.")]
                bar_lat.append(time.perf_counter() - t0)

            # ---- orders
            open_rtt: list[float] = []
            close_rtt: list[float] = []
            tickets = []
            for i in range(args.orders):
                a = messages.OrderOpenArgs("EURUSD", 1 if i % 2 else -1, 0.01, f"bench-{i}", sl_distance=0.01)
                t0 = time.perf_counter()
                r = req.call("order_open", a)
                open_rtt.append(time.perf_counter() - t0)
                if not r.success:
                    raise SystemExit(f"order failed: {r.error}")
                tickets.append(r.ticket)
            for t in tickets:
                t0 = time.perf_counter()
                r = req.call("order_close", messages.OrderCloseArgs(t))
                close_rtt.append(time.perf_counter() - t0)

            # ---- history
            hist: list[float] = []
            for _ in range(10):
                t0 = time.perf_counter()
                h = req.call("history", messages.HistoryArgs("EURUSD", "H1", count=1000))
                hist.append(time.perf_counter() - t0)
                assert len(h.bars) == 1000

            # ---- orders while a 20-model warmup's history requests are out, and on the idle connector
            idle_rtt, busy_rtt, warm_s = orders_beside_a_warmup(ctx, cfg, req, args.warmups)

            rss = psutil.Process(connector.pid).memory_info().rss
            status = req.call("status", messages.NoArgs())
            print("connector bench (simulator at manual speed, ipc:// endpoints, 2-core machine)")
            print(f"  closed bar, advance command -> bar on SUB: {fmt_ms(bar_lat)}")
            print(f"  order_open round trip:  {fmt_ms(open_rtt)}")
            print(f"  order_close round trip: {fmt_ms(close_rtt)}")
            print(f"  history 1000 H1 bars:   {fmt_ms(hist)}")
            print(f"  order round trip, idle connector:           {fmt_ms(idle_rtt)}")
            print(f"  order round trip, 20 history(1000) out:     {fmt_ms(busy_rtt)}  (the 20 took "
                  f"{statistics.median(warm_s):.1f} s)")
            print(f"  ratio during / idle: p50 {statistics.median(busy_rtt) / statistics.median(idle_rtt):.2f}, "
                  f"p99 {pct(busy_rtt, 0.99) / pct(idle_rtt, 0.99):.2f}")
            print(f"  connector RSS: {rss / 2**20:.1f} MiB; bars published {status.progress.get('bars_published')}")
            sub.close()
            req.close()
        finally:
            for proc in reversed(procs):
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
