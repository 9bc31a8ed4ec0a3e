"""The simulator's replay cost: CPU time of the simulator process per H1 bar with EURUSD and N synthetic symbols, and
of a connector-like client (the real broker client, subscribed to every symbol's spots and H1 live trendbars), for
the simulator of this checkout at one or more spot spacings and for an older revision (``git archive``), in one run.

    .venv/bin/python bench/sim_replay_bench.py [--symbols 20] [--bars 100] [--old-rev main] [--intervals 60 3600]
                                               [--burst 300] [--repeat 3]

Each variant is its own simulator process (manual clock, plain TCP on loopback, no state file) started from the
bundled CSV at bar 1100. The client warms up like the connector (1000 H1 bars of history per symbol), subscribes,
then closes one bar at a time through the control port and waits for every symbol's closed bar. Reported: the
simulator's CPU ms per bar (replay) and for the history warmup, the client's CPU ms per bar (decoding the spots).
With --burst N, each variant then closes N bars in one control command (as bench/pipeline_bench.py's replay
burst), --repeat times: the simulator's wall time until its reply (every bar processed and written) and its CPU,
and when the client had the last bar: the simulator's share of the pipeline's replay throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]

from services.connector.ctrader.client import CTraderBroker  # noqa: E402
from services.connector.ctrader.client import CTraderConfig as BrokerConfig  # noqa: E402
from services.connector.port import Bar  # noqa: E402
from services.connector.sim.control import acontrol  # noqa: E402

CSV = REPO / "data" / "EURUSD_H1_2017.csv"
START_BAR = 1100


def export(rev: str, into: Path) -> Path:
    """The repository at `rev` as files (no worktree involved)."""
    archive = into / "src.tar"
    with open(archive, "wb") as out:
        subprocess.run(["git", "-C", str(REPO), "archive", rev], stdout=out, check=True)
    root = into / "src"
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


def start_sim(root: Path, symbols: int, extra: list[str]) -> tuple[subprocess.Popen, int, int]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.connector.sim", "--csv", str(CSV), "--symbol", "EURUSD", "--timeframe",
         "H1", "--speed", "0", "--port", "0", "--control-port", "0", "--start-bar", str(START_BAR),
         "--synthetic-symbols", str(symbols), "--log-level", "WARNING",
         "--token-lifetime", str(10 * 365 * 86_400), *extra],  # bursts cross a month of server time
        cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("SIM-BROKER READY"):
        proc.kill()
        raise SystemExit(f"the simulator in {root} did not start: {line!r}")
    fields = dict(part.split("=") for part in line.split()[2:])
    return proc, int(fields["port"]), int(fields["control_port"])


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


async def measure(port: int, control_port: int, proc: psutil.Process, names: list[str], n_bars: int,
                  burst: int = 0, burst_repeat: int = 1) -> dict:
    broker = CTraderBroker(BrokerConfig(host="127.0.0.1", port=port, tls=False, verify=False,
                                        client_id="sim-client", client_secret="sim-secret",
                                        access_token="sim-token", request_timeout=60))
    await broker.connect()
    sim0 = cpu_s(proc)
    last = {}
    for name in names:
        last[name] = (await broker.get_history(name, "H1", 1000))[-1].time
    history_ms = 1000 * (cpu_s(proc) - sim0)
    await broker.subscribe_bars(names, "H1", since=last)
    sim0, client0, wall0 = cpu_s(proc), time.process_time(), time.perf_counter()
    closed = dict.fromkeys(names, 0)
    for i in range(1, n_bars + 1):
        await acontrol(control_port, "advance", bars=1)  # one bar of every symbol closes
        while min(closed.values()) < i:
            ev = await asyncio.wait_for(broker.events.get(), 60)
            if isinstance(ev, Bar):
                closed[ev.symbol] += 1
    out = {
        "sim_ms_per_bar": 1000 * (cpu_s(proc) - sim0) / n_bars,
        "client_ms_per_bar": 1000 * (time.process_time() - client0) / n_bars,
        "wall_ms_per_bar": 1000 * (time.perf_counter() - wall0) / n_bars,
        "history_ms": history_ms,
    }
    bursts = []
    for _ in range(burst_repeat if burst else 0):
        sim0, wall0 = cpu_s(proc), time.perf_counter()
        reply = asyncio.create_task(acontrol(control_port, "advance", bars=burst))
        seen = dict.fromkeys(names, 0)
        first_s = None
        while min(seen.values()) < burst:
            ev = await asyncio.wait_for(broker.events.get(), 60)
            if isinstance(ev, Bar):
                seen[ev.symbol] += 1
                first_s = first_s or time.perf_counter() - wall0
        client_s = time.perf_counter() - wall0
        await reply
        bursts.append({"reply_ms": 1000 * (time.perf_counter() - wall0), "client_ms": 1000 * client_s,
                       "first_ms": 1000 * (first_s or client_s), "sim_cpu_ms": 1000 * (cpu_s(proc) - sim0)})
    if bursts:
        best = min(bursts, key=lambda b: b["client_ms"])
        out.update(burst_reply_ms=best["reply_ms"], burst_client_ms=best["client_ms"], burst_first_ms=best["first_ms"],
                   burst_sim_cpu_ms=best["sim_cpu_ms"], burst_bars_per_s=burst / best["client_ms"] * 1000)
    await broker.close()
    return out


def run_variant(root: Path, label: str, args: argparse.Namespace, extra: list[str]) -> dict:
    names = ["EURUSD", *[f"SYN{k:02d}" for k in range(1, args.symbols + 1)]]
    proc, port, cport = start_sim(root, args.symbols, extra)
    try:
        res = asyncio.run(measure(port, cport, psutil.Process(proc.pid), names, args.bars, args.burst, args.repeat))
    finally:
        proc.terminate()
        proc.wait(10)
    res["variant"] = label
    print(f"  {label}: simulator {res['sim_ms_per_bar']:.1f} ms CPU per bar, client {res['client_ms_per_bar']:.1f} "
          f"ms, wall {res['wall_ms_per_bar']:.1f} ms; history warmup {res['history_ms']:.0f} ms", flush=True)
    if "burst_client_ms" in res:
        print(f"  {label}: burst of {args.burst} bars (best of {args.repeat}): the client had the last bar after "
              f"{res['burst_client_ms']:.1f} ms ({res['burst_bars_per_s']:.0f} bars/s; the first after "
              f"{res['burst_first_ms']:.1f} ms), the reply after "
              f"{res['burst_reply_ms']:.1f} ms, simulator CPU {res['burst_sim_cpu_ms']:.1f} ms", flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--symbols", type=int, default=20, help="synthetic symbols besides EURUSD")
    p.add_argument("--bars", type=int, default=100, help="H1 bars closed per variant")
    p.add_argument("--old-rev", default="main", help="the older simulator's revision ('' = none; its CLI must take "
                   "--spot-interval)")
    p.add_argument("--intervals", type=int, nargs="+", default=[60, 3600], help="spot spacings of this checkout")
    p.add_argument("--burst", type=int, default=0, help="then bars closed in one control command (0 = none)")
    p.add_argument("--repeat", type=int, default=3, help="bursts per variant (the best is reported)")
    args = p.parse_args()
    print(f"simulator replay, EURUSD + {args.symbols} synthetic symbols, {args.bars} H1 bars per variant "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
        old = export(args.old_rev, Path(tmp)) if args.old_rev else None
        for interval in args.intervals:
            spacing = ["--spot-interval", str(interval)]
            if old is not None:
                results.append(run_variant(old, f"old ({args.old_rev}), spot_interval_s {interval}", args, spacing))
            results.append(run_variant(REPO, f"new, spot_interval_s {interval}", args, spacing))
    burst = (f" | burst of {args.burst}: client's first bar, ms | last bar, ms | bars/s | sim CPU ms"
             if args.burst else "")
    print("\n| variant | simulator CPU ms / bar | client CPU ms / bar | wall ms / bar | history warmup, sim CPU ms"
          f"{burst} |")
    print("|---|---|---|---|---|" + ("---|---|---|---|" if args.burst else ""))
    for r in results:
        cells = (f" | {r['burst_first_ms']:.1f} | {r['burst_client_ms']:.1f} | {r['burst_bars_per_s']:.0f} | "
                 f"{r['burst_sim_cpu_ms']:.1f}"
                 if args.burst else "")
        print(f"| {r['variant']} | {r['sim_ms_per_bar']:.1f} | {r['client_ms_per_bar']:.1f} | "
              f"{r['wall_ms_per_bar']:.1f} | {r['history_ms']:.0f}{cells} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
