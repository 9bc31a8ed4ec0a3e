"""The executor's loop per bar close, in this process with real sockets: its main thread's CPU and its loop turns.

    python bench/executor_loop_bench.py [--symbols 20] [--bars 40] [--idle-poll-ms 100|none] [--nap-ms 2]

The executor runs its real loop (runtime.Service.run: poll, SUB drain, REP, outbox, heartbeats, on_tick) in the
main thread; a thread plays its peers on real ZeroMQ sockets: the preditor (a PUB publishing each bar's signals one
by one, some 0.3 ms apart as it steps its models, and a REP answering last_signals), the connector (a REP answering
positions with the account and quotes, and every order at once) and persistence (a REP acknowledging every write).
No CURVE (the real system's sockets are; their I/O thread costs more). The seeded random walk of the signals is
bench/executor_decide_bench.py's.

Printed per bar (median over the bars): the executor main thread's CPU (from /proc, the kernel's runtime of that
thread alone: the peers' thread and the ZeroMQ I/O threads are not in it), its loop turns (on_tick calls), and the
same thread's CPU per second while idle. The pair to compare is the same command on the old and the new code.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "tests"))

import zmq  # noqa: E402
from served_responder import open_to_anyone  # noqa: E402

from bench.executor_decide_bench import SYMBOLS, Connector, Walk, make_home  # noqa: E402
from common import bus, config, messages  # noqa: E402
from services.executor import decision_desk  # noqa: E402
from services.executor import symbols_config as sc  # noqa: E402
from services.executor.service import Executor  # noqa: E402


class Peers:
    """The preditor, the connector and persistence, served by one thread."""

    def __init__(self, cfg: config.Config, symbols: list[str]):
        self.ctx = zmq.Context()
        self.connector = Connector(symbols)
        errors = bus.WireErrors("peers")
        c = self.connector
        self.reps = [
            open_to_anyone(bus.Responder(self.ctx, cfg.endpoint("connector", "rep"), {
                messages.OP_POSITIONS.name: lambda _a: c.call("connector", "positions", None),
                messages.OP_SYMBOL_INFO.name: lambda a: c.call("connector", "symbol_info", a),
                messages.OP_ACCOUNT.name: lambda _a: c.call("connector", "account", None),
                messages.OP_ORDER_OPEN.name: lambda a: c.order(messages.OP_ORDER_OPEN.name, a),
                messages.OP_ORDER_CLOSE.name: lambda a: c.order(messages.OP_ORDER_CLOSE.name, a),
            }, errors)),
            open_to_anyone(bus.Responder(self.ctx, cfg.endpoint("persistence", "rep"), {
                messages.OP_WRITE.name: lambda a: messages.WriteResult(
                    [r["id"] for rs in a.tables.values() for r in rs]),
            }, errors)),
            open_to_anyone(bus.Responder(self.ctx, cfg.endpoint("preditor", "rep"), {
                messages.OP_LAST_SIGNALS.name: lambda _a: messages.LastSignals({}),
            }, errors)),
        ]
        self.pubs = {s: bus.Publisher(self.ctx, cfg.endpoint(s, "pub"), s, 1)
                     for s in ("preditor", "connector", "orchestrator")}
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

    def publish(self, topic: str, body: object) -> None:
        with self.lock:
            self.pubs["preditor"].publish(topic, body)

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        for s in [*self.reps, *self.pubs.values()]:
            s.sock.close(0)
        self.ctx.term()


def thread_cpu_s(tid: int) -> float:
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--bars", type=int, default=40)
    ap.add_argument("--bar-s", type=float, default=0.5, help="seconds between bar closes")
    ap.add_argument("--gap-ms", type=float, default=0.3, help="between a bar's signals (0: one burst, as the "
                    "preditor publishes a bar close's batch)")
    ap.add_argument("--idle-s", type=float, default=3.0)
    ap.add_argument("--idle-poll-ms", default="", help="override the executor's idle_poll_ms (a number or none)")
    ap.add_argument("--nap-ms", type=float, default=None, help="override decision_desk.NAP_S")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="cProfile of the main thread (its CPU time)")
    ap.add_argument("--profile-out", default="", help="with --profile: also dump the stats to this file")
    args = ap.parse_args()
    if args.nap_ms is not None:
        decision_desk.NAP_S = args.nap_ms / 1000
        sys.modules["services.executor.service"].NAP_S = args.nap_ms / 1000  # type: ignore[attr-defined]
    symbols = SYMBOLS[: args.symbols]
    turns = [0]

    class Counted(Executor):
        handshake = False  # no orchestrator: running at once

        def on_tick(self, now: float) -> None:
            turns[0] += 1
            super().on_tick(now)

    if args.idle_poll_ms:
        Counted.idle_poll_ms = None if args.idle_poll_ms == "none" else int(args.idle_poll_ms)
    with tempfile.TemporaryDirectory(prefix="exloop") as tmp:
        root = Path(tmp)
        make_home(root, symbols)
        cfg = config.load(env={"ORACLE_HOME": str(root)})
        cfg.path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
        peers = Peers(cfg, symbols)
        ex = Counted(cfg)
        assert ex.on_step("executor.load", {})
        ex.modelled = set(symbols)
        ex.timeframes = dict.fromkeys(symbols, "H1")
        ex.config, _ = sc.ensure_symbols(ex.config, ex.modelled)
        walk = Walk(symbols, args.seed)
        main_tid = threading.get_native_id()
        per_bar: list[tuple[float, int]] = []
        idle: list[float] = []

        def drive() -> None:
            time.sleep(1.0)  # bound, subscribed, synced
            for i in range(args.bars + 5):
                c0, t0 = thread_cpu_s(main_tid), turns[0]
                for sig in walk.signals():
                    peers.publish(f"signal.{sig.symbol}", sig)
                    if args.gap_ms:
                        time.sleep(args.gap_ms / 1000)
                time.sleep(args.bar_s)
                if i >= 5:  # warm-up bars left out
                    per_bar.append((thread_cpu_s(main_tid) - c0, turns[0] - t0))
            c0 = thread_cpu_s(main_tid)
            time.sleep(args.idle_s)
            idle.append((thread_cpu_s(main_tid) - c0) / args.idle_s)
            ex.request_stop()

        sync_thread = threading.Thread(target=drive, daemon=True)
        ex._next_hb = float("inf")  # no heartbeat before run() binds its PUB socket
        ex.on_step("executor.sync", {})  # the connector stand-in answers on its thread
        ex._next_hb = 0.0
        sync_thread.start()
        prof = cProfile.Profile(time.thread_time) if args.profile else None
        if prof:
            prof.enable()
        ex.run()
        if prof:
            prof.disable()
            if args.profile_out:
                prof.dump_stats(args.profile_out)
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
        sync_thread.join()
        peers.close()
        cpu = sorted(c for c, _ in per_bar)
        loops = sorted(n for _, n in per_bar)
        c = peers.connector
        print(f"executor loop, {args.symbols} symbols, idle_poll_ms={Counted.idle_poll_ms}, "
              f"NAP_S={decision_desk.NAP_S}: main thread {statistics.median(cpu) * 1000:.3f} ms CPU per bar "
              f"(p90 {cpu[int(0.9 * (len(cpu) - 1))] * 1000:.3f}), loop turns per bar {statistics.median(loops)}, "
              f"idle {idle[0] * 1000:.3f} ms/s; opens {c.opens}, closes {c.closes}, "
              f"outbox writes {ex.progress.get('outbox_writes', 0)}, signals {ex.progress.get('signals_evaluated')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
