"""Paper's loop per bar close, in this process with real sockets: its CPU per bar (main thread and its ZeroMQ
threads), its loop turns, and the same while idle.

    python bench/paper_loop_bench.py [--symbols 20] [--bars 40] [--bar-s 0.5] [--idle-s 3] [--profile]

Paper runs its real loop (runtime.Service.run: poll, SUB drain, REP, outbox, heartbeats, on_tick) in the main
thread, its book committed to a real file (write + fdatasync), its records spooled and sent to persistence. A thread
plays its peers on real ZeroMQ sockets: the preditor (a PUB publishing each bar's signals together, as its
``publish_many`` does, and a REP answering ``signals_since`` with nothing missed) and persistence (a REP
acknowledging every write). No CURVE. Signals: bench/executor_decide_bench.py's seeded walk (a symbol changes its
position on about one bar in six, so a bar closes some trades), the close a seeded random walk too.

Printed: per bar (median over the bars, warm-up bars left out) the CPU of paper's main thread and of its ZeroMQ
threads (the kernel's runtime of each, /proc), gross and net of the idle rate (measured over --idle-s with no bar)
times the bar period, and the loop turns (on_tick calls). The pair to compare is the same command on the old and
the new code, back to back.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import zmq  # noqa: E402

from bench.executor_decide_bench import SYMBOLS, Walk, make_home  # noqa: E402
from bench.executor_loop_bench import _open  # noqa: E402  (the stand-ins answer whoever asks)
from common import bus, config, messages  # noqa: E402
from common.twin.position import CostModel  # noqa: E402
from services.paper.account import new_book  # noqa: E402
from services.paper.service import Paper  # noqa: E402
from services.paper.stats import RunningStats  # noqa: E402


class Peers:
    """The preditor and persistence, served by one thread."""

    def __init__(self, cfg: config.Config):
        self.ctx = zmq.Context()
        errors = bus.WireErrors("peers")
        self.writes = 0
        self.records = 0

        def write(a: messages.WriteArgs) -> messages.WriteResult:
            self.writes += 1
            ids = [r["id"] for rs in a.tables.values() for r in rs]
            self.records += len(ids)
            return messages.WriteResult(ids)

        self.reps = [
            _open(bus.Responder(self.ctx, cfg.endpoint("persistence", "rep"), {messages.OP_WRITE.name: write},
                                errors)),
            _open(bus.Responder(self.ctx, cfg.endpoint("preditor", "rep"), {
                messages.OP_SIGNALS_SINCE.name: lambda _a: messages.SignalsSince([], {}),
            }, errors)),
        ]
        self.pub = bus.Publisher(self.ctx, cfg.endpoint("preditor", "pub"), "preditor", 1)
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        poller = zmq.Poller()
        for rep in self.reps:
            poller.register(rep.sock, zmq.POLLIN)
        while not self.stop:
            for sock, _ in poller.poll(50):
                for rep in self.reps:
                    if rep.sock is sock:
                        with self.lock:
                            rep.serve_ready()

    def publish_many(self, items: list[tuple[str, object]]) -> None:
        with self.lock:
            self.pub.publish_many(items)

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        for s in [*self.reps, self.pub]:
            s.sock.close(0)
        self.ctx.term()


def thread_cpu_s(tid: int) -> float:
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except FileNotFoundError:
        return 0.0


def tasks() -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--bars", type=int, default=40)
    ap.add_argument("--bar-s", type=float, default=0.5, help="seconds between bar closes")
    ap.add_argument("--idle-s", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="cProfile of the main thread (its CPU time)")
    ap.add_argument("--profile-out", default="", help="with --profile: also write the stats to this file")
    args = ap.parse_args()
    symbols = SYMBOLS[: args.symbols]
    turns = [0]

    class Counted(Paper):
        handshake = False  # no orchestrator: running at once

        def on_tick(self, now: float) -> None:
            turns[0] += 1
            super().on_tick(now)

    with tempfile.TemporaryDirectory(prefix="paperloop") as tmp:
        root = Path(tmp)
        make_home(root, symbols)
        cfg = config.load(env={"ORACLE_HOME": str(root)})
        cfg.path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
        peers = Peers(cfg)
        svc = Counted(cfg)
        svc.book = new_book({s: CostModel() for s in symbols})
        svc.stats = {s: RunningStats.of(a) for s, a in svc.book.accounts.items()}
        svc.store.save(svc.book)
        walk = Walk(symbols, args.seed)
        rng = random.Random(args.seed)
        price = dict.fromkeys(symbols, 1.1)
        main_tid = threading.get_native_id()
        before = tasks()
        per_bar: list[tuple[float, float, int]] = []
        idle: list[tuple[float, float]] = []
        mine: list[int] = []

        def cpu() -> tuple[float, float]:
            return thread_cpu_s(main_tid), sum(thread_cpu_s(t) for t in mine)

        def drive() -> None:
            time.sleep(1.0)  # bound, subscribed
            mine.extend(tasks() - before - {threading.get_native_id()})  # paper's ZeroMQ threads
            warm = 5
            for i in range(args.bars + warm):
                (m0, z0), t0 = cpu(), turns[0]
                out = []
                for sig in walk.signals():
                    price[sig.symbol] *= 1 + rng.gauss(0, 0.002)
                    sig = messages.Signal(sig.symbol, sig.bar_time, round(price[sig.symbol], 5), sig.action,
                                          sig.direction, sig.intensity, sig.hmm_state, sig.virtual_pnl,
                                          sig.previous_direction)
                    out.append((f"signal.{sig.symbol}", sig))
                peers.publish_many(out)
                time.sleep(args.bar_s)
                (m1, z1) = cpu()
                if i >= warm:
                    per_bar.append((m1 - m0, z1 - z0, turns[0] - t0))
            (m0, z0), t0 = cpu(), time.monotonic()
            time.sleep(args.idle_s)
            (m1, z1), dt = cpu(), time.monotonic() - t0
            idle.append(((m1 - m0) / dt, (z1 - z0) / dt))
            svc.request_stop()

        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
        prof = cProfile.Profile(time.thread_time) if args.profile else None
        if prof:
            prof.enable()
        svc.run()
        if prof:
            prof.disable()
            if args.profile_out:
                prof.dump_stats(args.profile_out)
            pstats.Stats(prof).sort_stats("tottime").print_stats(35)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(50)
        driver.join()
        peers.close()
        main_ms = statistics.median(m for m, _, _ in per_bar) * 1000
        zmq_ms = statistics.median(z for _, z, _ in per_bar) * 1000
        idle_main, idle_zmq = (x * 1000 * args.bar_s for x in idle[0])
        loops = statistics.median(n for _, _, n in per_bar)
        print(f"paper loop, {args.symbols} symbols, {len(per_bar)} bars {args.bar_s:g} s apart: per bar CPU main "
              f"{main_ms:.3f} ms + zmq threads {zmq_ms:.3f} ms = {main_ms + zmq_ms:.3f} gross; idle over a bar "
              f"period {idle_main:.3f} + {idle_zmq:.3f}; net {main_ms + zmq_ms - idle_main - idle_zmq:.3f} ms; "
              f"loop turns per bar {loops}; trades {svc.progress.get('trades', 0)}, saves "
              f"{svc.progress.get('saves', 0)}, outbox writes {svc.progress.get('outbox_writes', 0)} "
              f"(persistence saw {peers.writes}, {peers.records} records)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
