"""The order path's own floor: the least that bar close -> order sent can cost in the issue's architecture, measured
beside the reference floor of issue 15 in one run.

    .venv/bin/python bench/order_path_floor_bench.py [--symbols 20 50] [--bars 100] [--period 1.0]
                                                     [--floor-bars 100] [--paced-bars 100]
                                                     [--anticipate-ms 0]

A skeleton of the order path, three OS processes that do only what the path cannot skip, each as cheaply as it can:
- the source (this process, the connector's part): publishes a bar time's N bars as one msgpack message on a PUB
  socket (ipc), takes the orders' request on a REP socket, appends their SENT line to a journal and fdatasyncs it
  (the write-ahead line the issue keeps before an order leaves); "sent" is then;
- the twins (the preditor's part): N models, each its own copy loaded from the file as the reference floor holds
  them, stepped by the preditor's own compute (``many.observe_bars``, ``PolicyBatch``, ``decide``: the same
  decisions as stepping them one by one); the N signals go out as one message; no snapshot, no journal;
- the desk (the executor's part): takes the signals, appends the write-ahead intent of the orders and fdatasyncs
  it, sends the orders as one request and waits for the answer. No sync rule, no risk check, no positions asked.

Nothing else runs: no broker stand-in, no persistence, no paper, no orchestrator, no logs; no validation, sequence
numbers or envelope on the wire (raw pyzmq and msgpack). Every bar time is taken as one with orders. Whatever the
real services do beyond this comes on top, so the skeleton's figures are lower bounds for the system's on the same
machine: with its p99 above 2.5x the reference floor's, no implementation of the architecture would have met issue
15's latency line in that run.

Bar times alternate between the skeleton with its two fdatasyncs (the issue's durability) and without them (what
the hops and the compute alone cost), ``--period`` seconds apart (the pipeline bench closes a bar a second: the
caches are as cold as there). The reference floor is ``preditor_bench.in_process_twenty(distinct=True)``, as in the
pipeline bench, measured before the processes start; ``--paced-bars`` bar times of the same compute with
``--period`` between them (``in_process_paced``) say what the preditor's compute costs at that pace, in-process
(the preditor line's reference is the back-to-back mean).

``--anticipate-ms A``: a design the skeleton above does not bound, one that knows when the next bar closes (the
source says it; a live H1 close is on the hour): the twins and the desk sleep until A ms before it, then the twins
step the last bar time again with its result dropped (the models' weights and the code back in the caches) and
both poll without sleeping until their message is there (the desk from A ms before its signals came the last
time): no cold caches, no wake from idle, for the CPU of the warm step and the spin (in the CPU column).

Stages (ms after the source published the bars, medians): the twins have the bars, the signals are out, the desk
has them, its intent is durable, the source has the orders, their journal line is durable (= sent). CPU: the three
processes' threads' CPU from a bar time's message in to its answer out (the floor of the six services' CPU line;
their idle cost is not in it, as it is not in the line's net figure).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import zmq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "bench"))

from measure import pct  # noqa: E402

HISTORY = 1000  # bars that warm each twin up (as preditor_bench)
TARGET = 2.5
STAGES = ("twins have the bars", "signals out", "desk has them", "intent durable", "orders at the source", "sent")


def journal_append(fd: int, line: bytes, sync: bool) -> None:
    os.write(fd, line)
    if sync:
        os.fdatasync(fd)


def _bundled_bars():
    """The bars the reference floor steps (preditor_bench's)."""
    from common.twin.bars import load_bars_csv

    return load_bars_csv(REPO / "data" / "EURUSD_H1_2017.csv")


def _joined(ctx: zmq.Context, endpoint_dir: Path, stream: str, part: str) -> tuple[zmq.Socket, zmq.Socket]:
    """A part's SUB to ``stream`` and its PUSH to the source, which has been told the part is ready."""
    sub = ctx.socket(zmq.SUB)
    sub.connect(f"ipc://{endpoint_dir}/{stream}")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    ready = ctx.socket(zmq.PUSH)
    ready.connect(f"ipc://{endpoint_dir}/ready")
    ready.send(part.encode())
    return sub, ready


def _next_message(sub: zmq.Socket, next_at: float | None, anticipate_s: float,
                  warm: Callable[[], object] | None = None) -> tuple[bytes, float]:
    """The next message on ``sub``, and the CPU spent waiting for it. Anticipating (``anticipate_s`` > 0, the next
    bar time known): asleep until that long before it, then ``warm()`` (the caches made hot with the last bar time's
    work, its result dropped), then polling without sleeping until the message is there (no wake from idle)."""
    if not anticipate_s or next_at is None:
        return sub.recv(), 0.0
    time.sleep(max(0.0, next_at - anticipate_s - time.monotonic()))
    cpu = time.thread_time()
    if warm is not None:
        warm()
    while not sub.poll(0):
        pass
    return sub.recv(), time.thread_time() - cpu


def run_twins(endpoint_dir: Path, n: int, anticipate_s: float = 0.0) -> None:
    """The preditor's part: load n models (own copies), warm them up, then step each bar time's bars at once."""
    import torch

    from common import messages
    from common.twin.many import observe_bars
    from common.twin.twin import TwinState, decide, initial_state, run
    from services.preditor import live
    from services.preditor.model_file import load_model
    from services.preditor.policy_batch import PolicyBatch

    torch.set_num_threads(1)
    bars = _bundled_bars()
    models = [load_model(REPO / "models" / "EURUSD_H1.zip") for _ in range(n)]
    state, _ = run(models[0].spec, initial_state(models[0].model_id), bars[:HISTORY], models[0].policy_fn)
    states = [state] * n
    policies = PolicyBatch([m.policy for m in models])
    symbols = [f"S{k:03d}" for k in range(n)]
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(f"ipc://{endpoint_dir}/signals")
    sub, ready = _joined(ctx, endpoint_dir, "bars", "twins")
    next_at, last_items = None, []

    def warm() -> None:
        observed = observe_bars(last_items)
        policies.actions([(k, s.observation) for k, s in enumerate(observed) if not isinstance(s, TwinState)])

    while True:
        raw, waited = _next_message(sub, next_at, anticipate_s, warm if last_items else None)
        got, cpu = time.monotonic(), time.thread_time()
        msg = msgpack.unpackb(raw)
        if msg.get("stop"):
            pub.send(raw)
            break
        items = []
        for k, row in enumerate(msg["bars"]):
            bar = live.twin_bar(messages.Bar(symbols[k], "H1", *row))
            items.append((models[k].spec, states[k], bar))
        last_items, next_at = items, msg["next"]
        observed = observe_bars(items)
        asked = [(k, s.observation) for k, s in enumerate(observed) if not isinstance(s, TwinState)]
        actions = iter(policies.actions(asked))
        signals = []
        for k, s in enumerate(observed):
            if isinstance(s, TwinState):
                states[k] = s
                continue
            states[k], decision = decide(models[k].spec, states[k], s, next(actions))
            signals.append(messages.to_wire(live.signal_of(symbols[k], decision)))
        pub.send(msgpack.packb({"i": msg["i"], "sync": msg["sync"], "signals": signals, "next": next_at,
                                "t": msg["t"] + [got, time.monotonic()], "cpu": time.thread_time() - cpu + waited}))
    for s in (sub, pub, ready):
        s.close(0)
    ctx.term()


def run_desk(endpoint_dir: Path, anticipate_s: float = 0.0) -> None:
    """The executor's part: the write-ahead intent of a bar time's orders, durable, then the orders in one request."""
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.connect(f"ipc://{endpoint_dir}/orders")
    sub, ready = _joined(ctx, endpoint_dir, "signals", "desk")
    fd = os.open(endpoint_dir / "desk-intents.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    next_at = None
    try:
        while True:
            raw, waited = _next_message(sub, next_at, anticipate_s)
            got, cpu = time.monotonic(), time.thread_time()
            msg = msgpack.unpackb(raw)
            if msg.get("stop"):
                break
            next_at = msg["next"] + (got - msg["t"][0])  # the signals come about as long after the bars as these
            orders = [{"symbol": s["symbol"], "direction": s["direction"], "intensity": s["intensity"]}
                      for s in msg["signals"]]
            journal_append(fd, msgpack.packb(orders) + b"\n", msg["sync"])
            durable = time.monotonic()
            req.send(msgpack.packb({"i": msg["i"], "sync": msg["sync"], "orders": orders,
                                    "t": msg["t"] + [got, durable], "cpu": msg["cpu"],
                                    "desk_cpu": time.thread_time() - cpu + waited}))
            req.recv()
    finally:
        os.close(fd)
        for s in (sub, req, ready):
            s.close(0)
        ctx.term()


def run_skeleton(n: int, bars: int, period: float, anticipate_s: float = 0.0) -> dict:
    """The source's side: start the twins and the desk, publish ``2 * bars`` bar times ``period`` apart (with and
    without the two fdatasyncs, alternated), time each to its orders' durable journal line. ``anticipate_s``: the
    twins and the desk know when the next bar time comes and are awake and hot that long before it."""
    history = _bundled_bars()
    with tempfile.TemporaryDirectory(prefix="oracle-orderfloor-") as d:
        where = Path(d)
        ctx = zmq.Context()
        pub = ctx.socket(zmq.PUB)
        pub.bind(f"ipc://{where}/bars")
        rep = ctx.socket(zmq.REP)
        rep.bind(f"ipc://{where}/orders")
        ready = ctx.socket(zmq.PULL)
        ready.bind(f"ipc://{where}/ready")
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'bench'}"}
        procs = [subprocess.Popen([sys.executable, __file__, "--role", role, "--dir", str(where), "--n", str(n),
                                   "--anticipate-ms", str(1000 * anticipate_s)], env=env) for role in ("twins", "desk")]
        fd = os.open(where / "source-orders.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        samples: dict[bool, list[list[float]]] = {True: [], False: []}
        try:
            poller = zmq.Poller()
            poller.register(ready, zmq.POLLIN)
            for _ in procs:
                if not poller.poll(120_000):
                    raise RuntimeError("the twins or the desk did not start within 120 s")
                ready.recv()
            time.sleep(0.5)  # the SUB sockets have joined (slow joiner)
            nxt = time.monotonic() + period
            for i in range(2 * bars):
                sync = i % 2 == 0
                row = [float(x) for x in history[HISTORY + i]]
                bar_fields = [int(row[0]), *row[1:]]
                time.sleep(max(0.0, nxt - time.monotonic()))
                nxt += period
                t0, cpu = time.monotonic(), time.thread_time()
                pub.send(msgpack.packb({"i": i, "sync": sync, "bars": [bar_fields] * n, "t": [t0], "next": nxt}))
                if not rep.poll(30_000):
                    raise RuntimeError(f"bar time {i}: no orders within 30 s")
                msg = msgpack.unpackb(rep.recv())
                at_source = time.monotonic()
                journal_append(fd, msgpack.packb(msg["orders"]) + b"\n", sync)
                sent = time.monotonic()
                rep.send(b"ok")
                source_cpu = time.thread_time() - cpu  # the wait for the orders is a poll: no CPU
                samples[sync].append([t - t0 for t in msg["t"][1:]] + [at_source - t0, sent - t0, msg["cpu"],
                                                                         msg["desk_cpu"] + source_cpu])
                if (i + 1) % 20 == 0:
                    print(f"    {n} symbols: {i + 1} of {2 * bars} bar times", flush=True)
            pub.send(msgpack.packb({"stop": True}))
            for p in procs:
                p.wait(timeout=30)
        finally:
            os.close(fd)
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for s in (pub, rep, ready):
                s.close(0)
            ctx.term()
    out = {}
    for sync, rows in samples.items():
        rows = rows[2:]  # the first bar times of each kind warm the path up
        sent = [r[5] * 1000 for r in rows]
        compute = [(r[1] - r[0]) * 1000 for r in rows]  # the twins' step of the bar time, from bars in to signals out
        out[sync] = {"p50": pct(sent, 50), "p99": pct(sent, 99), "max": max(sent), "n": len(sent),
                     "compute_p50": pct(compute, 50), "compute_p99": pct(compute, 99),
                     "twins_cpu_mean": statistics.fmean(r[6] for r in rows) * 1000,
                     "cpu_mean": statistics.fmean(r[6] + r[7] for r in rows) * 1000,
                     "stages": [statistics.median(r[k] for r in rows) * 1000 for k in range(len(STAGES))]}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, nargs="+", default=[20, 50])
    p.add_argument("--bars", type=int, default=100, help="bar times of each kind (with and without the syncs)")
    p.add_argument("--period", type=float, default=1.0, help="seconds between two bar times")
    p.add_argument("--floor-bars", type=int, default=100, help="bar times of the reference floor (issue 15: >= 100)")
    p.add_argument("--paced-bars", type=int, default=100, help="bar times of the paced in-process compute (0: none)")
    p.add_argument("--anticipate-ms", type=float, default=0.0,
                   help="the twins and the desk awake (polling, caches warmed) this long before each bar time "
                        "(0: asleep until the bars come, as the services)")
    p.add_argument("--role", choices=("twins", "desk"), help=argparse.SUPPRESS)
    p.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    anticipate_s = args.anticipate_ms / 1000
    if args.role == "twins":
        run_twins(args.dir, args.n, anticipate_s)
        return 0
    if args.role == "desk":
        run_desk(args.dir, anticipate_s)
        return 0

    import preditor_bench

    history = _bundled_bars()
    if len(history) < HISTORY + max(args.floor_bars, 2 * args.bars, args.paced_bars):
        raise SystemExit(f"the bundled bars hold {len(history)} rows, fewer than this run needs")
    results = []
    for n in args.symbols:
        print(f"== {n} symbols: the reference floor ({args.floor_bars} bar times back to back)", flush=True)
        floor = preditor_bench.in_process_twenty(history, n=args.floor_bars, n_models=n, distinct=True)
        paced = None
        if args.paced_bars:
            print(f"== {n} symbols: the same compute, {args.paced_bars} bar times {args.period:g} s apart", flush=True)
            paced = preditor_bench.in_process_paced(history, n=args.paced_bars, n_models=n, pause_s=args.period)
        print(f"== {n} symbols: the skeleton, {2 * args.bars} bar times {args.period:g} s apart", flush=True)
        results.append((n, floor, paced, run_skeleton(n, args.bars, args.period, anticipate_s)))

    print(f"\nthe order path's floor against the reference floor, same run ({args.bars} bar times of each kind, "
          f"{args.period:g} s apart; ms; ratio: p99 / the floor's p99"
          + (f"; the twins and the desk awake and hot {args.anticipate_ms:g} ms before each" if anticipate_s else "")
          + ")")
    print("| symbols | floor p50 / p99 (target: 2.5x) | the same compute paced: p50 / p99, CPU mean / floor mean "
          "| skeleton, two fdatasyncs: p50 / p99 / max, ratio | skeleton without them: p50 / p99, ratio "
          "| the skeleton's compute (twins): p50 / p99; its CPU mean / floor mean "
          "| the skeleton's CPU a bar time, the three processes (per symbol) |")
    print("|---|---|---|---|---|---|---|")
    for n, floor, paced, sk in results:
        s, q = sk[True], sk[False]
        fp99 = floor["p99_ms"]
        paced_text = "-" if not paced else (f"{paced['p50_ms']:.2f} / {paced['p99_ms']:.2f}, "
                                            f"{paced['cpu_mean_ms'] / floor['mean_ms']:.2f}x")
        print(f"| {n} | {floor['p50_ms']:.2f} / {fp99:.2f} ({TARGET * fp99:.2f}) | {paced_text} | "
              f"{s['p50']:.2f} / {s['p99']:.2f} / {s['max']:.2f}, {s['p99'] / fp99:.2f}x | "
              f"{q['p50']:.2f} / {q['p99']:.2f}, {q['p99'] / fp99:.2f}x | "
              f"{s['compute_p50']:.2f} / {s['compute_p99']:.2f}; {s['twins_cpu_mean'] / floor['mean_ms']:.2f}x | "
              f"{s['cpu_mean']:.2f} ({s['cpu_mean'] / n:.3f}) |")
    print("\nstages, ms after the source published the bars (medians; with the two fdatasyncs / without)")
    print("| symbols | " + " | ".join(STAGES) + " |")
    print("|---|" + "---|" * len(STAGES))
    for n, _f, _p, sk in results:
        cells = [f"{a:.2f} / {b:.2f}" for a, b in zip(sk[True]["stages"], sk[False]["stages"], strict=True)]
        print(f"| {n} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
