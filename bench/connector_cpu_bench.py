"""The connector's CPU per bar close, by thread: the simulator and the connector alone, N symbols subscribed.

    python bench/connector_cpu_bench.py [--symbols 20] [--bars 60] [--orders [--together N] | --positions]
                                       [--timing DIR] [--profile DIR] [--strace FILE]

Real processes in a throwaway home (tests/harness.py): the simulator (manual clock, a spot event per symbol at a
bar's first and last point, as bench/pipeline_bench.py sets it) and the connector, subscribed to EURUSD and the
simulator's synthetic SYN01.. (H1). Each bar: `advance bars=1` on the control port, the N closed bars awaited on a
SUB; with --orders also what the executor asks per bar (one `positions`, an `order_open` and the `order_close` of
the previous bar's position, one after the other; --together N: the closes of the previous bar's positions and N
opens sent at once, each on its own REQ socket, as the executor's order lines send a batch). The connector's CPU
over the bars is read per thread (/proc/PID/task/*/schedstat: the loop thread, which also runs the broker's asyncio
loop, ZeroMQ's I/O threads, a broker thread where there is one),
its idle cost (a quiet stretch) taken off per bar's wall time, how many times each thread was scheduled in per bar
(its wakes, schedstat) and how many times it went to sleep (/proc/.../status). --timing DIR: the connector run by
bench/_conn_timing.py, thread CPU per function over the measured bars; --profile DIR: under cProfile (thread CPU)
on the loop thread (loop.prof, and the frames received, frames.pickle, in DIR); --strace FILE: strace -f over the
measured bars.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from harness import Home, wait_for  # noqa: E402

from common import bus, config, messages  # noqa: E402
from services.connector.sim import catalog  # noqa: E402
from services.connector.sim.control import control  # noqa: E402

PROFILED = """
import cProfile, signal, sys, threading, time
out = sys.argv[1]
import pickle
from services.connector.ctrader import spots
frames = []
reader = "read_frame_adapter" if hasattr(spots, "read_frame_adapter") else "read_frame_lean"
lean = getattr(spots, reader)
def recording(body):
    frames.append(body)
    return lean(body)
setattr(spots, reader, recording)
from services.connector.service import main
p = cProfile.Profile(time.thread_time)
p.enable()
try:
    main([])
finally:
    p.disable()
    p.dump_stats(out + "/loop.prof")
    with open(out + "/frames.pickle", "wb") as f:
        pickle.dump(frames, f)
"""


def threads(pid: int) -> dict[str, float]:
    """CPU seconds so far by thread (the main thread as "loop", ZeroMQ's as "other", the rest as "broker"), the
    times each was scheduled in (the second field of schedstat: its wakes) as "<key> wakes", and the times it went to
    sleep (its voluntary context switches: a poll, an fdatasync, a lock; the rest of its wakes are preemptions) as
    "<key> sleeps"."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            stat = (task / "schedstat").read_text().split()
            status = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
        except (OSError, ValueError):
            continue
        key = "loop" if task.name == str(pid) else ("other" if name.startswith("ZMQ") else "broker")
        out[key] = out.get(key, 0.0) + int(stat[0]) / 1e9
        out[key + " wakes"] = out.get(key + " wakes", 0.0) + int(stat[2])
        out[key + " sleeps"] = out.get(key + " sleeps", 0.0) + int(status["voluntary_ctxt_switches"])
    return out


def diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b.get(k, 0.0) - a.get(k, 0.0) for k in b}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--bars", type=int, default=60)
    p.add_argument("--orders", action="store_true")
    p.add_argument("--positions", action="store_true", help="only the positions request per bar (no orders)")
    p.add_argument("--together", type=int, default=0,
                   help="with --orders: N opens and the previous bar's closes sent at once, a REQ socket each")
    p.add_argument("--idle-s", type=float, default=5.0)
    p.add_argument("--period", type=float, default=0.0, help="a bar closed every this many seconds (0: at once)")
    p.add_argument("--profile", type=Path)
    p.add_argument("--timing", type=Path, help="thread CPU per function (bench/_conn_timing.py), files in this dir")
    p.add_argument("--strace", type=Path, help="strace -f the connector over the measured bars into this file")
    args = p.parse_args()
    symbols = ["EURUSD", *catalog.synthetic(args.symbols - 1, 24)]
    with tempfile.TemporaryDirectory(prefix="oracle-conn-cpu-") as tmp:
        home = Home(Path(tmp), {
            "runtime": {"heartbeat_interval_s": 1.0, "hello_interval_s": 0.25, "request_timeout_ms": 2000},
            "broker": {"sim": {"speed": 0, "start_bar": 1100, "balance": 100_000, "state_file": "",
                               "spot_interval_s": 3600, "synthetic_symbols": args.symbols - 1,
                               "synthetic_offset_bars": 24}},
            "connector": {"symbols": {s: "H1" for s in symbols}},
        })
        cfg: config.Config = home.config()
        ctl = cfg.broker.sim.control_port
        try:
            if args.timing is not None:
                args.timing.mkdir(parents=True, exist_ok=True)
                home.start_sim()
                conn = subprocess.Popen([sys.executable, str(REPO / "bench" / "_conn_timing.py"),
                                         str(args.timing.resolve() / "t.json")], cwd=home.root, env=home.env,
                                        stdout=open(home.root / "var/log/connector.log", "ab"),  # noqa: SIM115
                                        stderr=subprocess.STDOUT)
                home.procs["connector"] = conn
            elif args.profile is None:
                conn = home.start("connector")
            else:
                args.profile.mkdir(parents=True, exist_ok=True)
                home.start_sim()
                conn = subprocess.Popen([sys.executable, "-c", PROFILED, str(args.profile.resolve())], cwd=home.root,
                                        env=home.env, stdout=open(home.root / "var/log/connector.log", "ab"),  # noqa: SIM115
                                        stderr=subprocess.STDOUT)
                home.procs["connector"] = conn
            wait_for(lambda: home.request("connector", "ping"), 20, "connector up")
            res = home.request("connector", "step", messages.StepArgs("connector.connect"), timeout_ms=60_000)
            assert res.ok, res.error
            control(ctl, "advance", ticks=1)
            sub = bus.Subscriber(home.ctx, [cfg.endpoint("connector", "pub")], ["bar.", "bars."],
                                 bus.WireErrors("bench"))
            req = bus.Requester(home.ctx, cfg.endpoint("connector", "rep"), "bench", 10_000)
            lines = [bus.Requester(home.ctx, cfg.endpoint("connector", "rep"), "bench", 10_000)
                     for _ in range(2 * args.together)]

            def batch(i: int, ticket: list[int]) -> None:
                """The previous bar's closes and `--together` opens, sent at once (a REQ socket each)."""
                asks = [("order_close", messages.OrderCloseArgs(t)) for t in ticket]
                ticket.clear()
                for k in range(args.together):
                    asks.append(("order_open", messages.OrderOpenArgs(
                        symbols[(i * args.together + k) % len(symbols)], 1 if (i + k) % 2 else -1, 0.01,
                        f"cpu-{i}-{k}-{time.time_ns()}")))
                for line, (op, a) in zip(lines, asks, strict=False):
                    line.send(op, a)
                for line, (op, _a) in zip(lines, asks, strict=False):
                    while (r := line.take_reply()) is None:
                        line.sock.poll(10_000)
                    assert r.ok, r.error_message
                    if op == "order_open":
                        assert r.result.success, r.result.error
                        ticket.append(r.result.ticket)
            time.sleep(1.0)

            def one_bar(i: int, ticket: list[int]) -> None:
                control(ctl, "advance", bars=1)
                seen = 0
                while seen < args.symbols:
                    if not sub.sock.poll(10_000):
                        raise SystemExit(f"bar {i}: {seen} of {args.symbols} bars within 10 s")
                    for r in sub.drain():
                        b = r.envelope.body
                        seen += len(b.bars) if isinstance(b, messages.BarRun) else 1
                if args.orders or args.positions:
                    req.call("positions", messages.NoArgs())
                if args.orders and args.together:
                    batch(i, ticket)
                elif args.orders:
                    if ticket:
                        req.call("order_close", messages.OrderCloseArgs(ticket.pop()))
                    r = req.call("order_open", messages.OrderOpenArgs(symbols[i % len(symbols)], 1 if i % 2 else -1,
                                                                      0.01, f"cpu-{i}-{time.time_ns()}"))
                    assert r.success, r.error
                    ticket.append(r.ticket)

            tickets: list[int] = []
            for i in range(5):  # warm
                one_bar(i, tickets)
            time.sleep(1.0)
            i0, t0 = threads(conn.pid), time.monotonic()
            time.sleep(args.idle_s)
            idle = diff(i0, threads(conn.pid))
            idle_s = time.monotonic() - t0
            walls = []
            tracer = None
            if args.strace is not None:
                tracer = subprocess.Popen(["strace", "-f", "-tt", "-o", str(args.strace), "-p", str(conn.pid)])
                time.sleep(1.0)
            p0 = dict(req.call("status", messages.NoArgs()).progress)
            if args.timing is not None:
                os.kill(conn.pid, signal.SIGUSR1)
                time.sleep(0.3)
            c0 = threads(conn.pid)
            w0 = time.monotonic()
            for i in range(args.bars):
                t = time.monotonic()
                one_bar(5 + i, tickets)
                walls.append(time.monotonic() - t)
                time.sleep(max(0.0, args.period - (time.monotonic() - t)))
            wall = time.monotonic() - w0
            used = diff(c0, threads(conn.pid))
            p1 = dict(req.call("status", messages.NoArgs()).progress)
            if args.timing is not None:
                os.kill(conn.pid, signal.SIGUSR1)
                time.sleep(0.3)
            if tracer is not None:
                tracer.terminate()
                tracer.wait(10)
            n = args.bars
            print(f"connector CPU per bar, {args.symbols} symbols, {n} bars{', orders' if args.orders else ''} "
                  f"(bar wall p50 {statistics.median(walls) * 1000:.1f} ms)")
            tot_g = tot_n = 0.0
            for k in ("loop", "broker", "other"):
                if k not in used:  # no broker thread (the broker's loop runs on the loop thread)
                    continue
                gross = used[k] / n * 1000
                net = (used[k] - idle[k] / idle_s * wall) / n * 1000
                tot_g += gross
                tot_n += net
                wakes, idle_wakes = used[k + " wakes"] / n, idle[k + " wakes"] / idle_s
                print(f"  {k:6s} gross {gross:6.2f} ms  net {net:6.2f} ms  (idle {idle[k] / idle_s * 1000:.2f} ms/s); "
                      f"scheduled {wakes:5.1f} times per bar (idle {idle_wakes:.1f}/s), "
                      f"slept {used[k + ' sleeps'] / n:5.1f}")
            print(f"  total  gross {tot_g:6.2f} ms  net {tot_n:6.2f} ms")
            print("  per bar: " + ", ".join(f"{k} {(p1[k] - p0.get(k, 0)) / n:.2f}" for k in sorted(p1)
                                            if p1[k] != p0.get(k, 0)))
            if args.timing is not None:
                a = json.loads((args.timing / "t.json.1").read_text())
                b = json.loads((args.timing / "t.json.2").read_text())
                for k in sorted(b):
                    dt = (b[k][0] - a.get(k, [0, 0])[0]) / n * 1000
                    calls = (b[k][1] - a.get(k, [0, 0])[1]) / n
                    if calls:
                        print(f"    {k:40s} {dt:6.3f} ms/bar  {calls:6.2f} calls/bar  "
                              f"{dt / calls * 1000 if calls else 0:7.1f} us/call")
            sub.close()
            req.close()
            for line in lines:
                line.close()
        except BaseException:
            time.sleep(3)
            print(home.log("connector")[-3000:])
            raise
        finally:
            for proc in reversed(list(home.procs.values())):
                proc.terminate()
                try:
                    proc.wait(10)
                except Exception:
                    proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
