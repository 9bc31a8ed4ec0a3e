"""The executor's path from a bar close's signals to its orders, stage by stage, with its peers in another process.

    python bench/executor_stages_bench.py [--bars 40] [--gap-ms 0]

The executor runs its real loop in this process (as bench/executor_loop_bench.py: no orchestrator, real ZeroMQ,
its state file with its fdatasync, its outbox spool); its peers (bench/executor_loop_bench.py `Peers`: the
preditor's PUB, the connector's and persistence's REP) run in a forked process, so their work does not share this
process's GIL. Each bar's 20 signals are published in one burst (--gap-ms 0, as the preditor publishes a bar
close's batch), 0.5 s apart. Printed, per stage, p50 and p90 over the bars (after 5 warm-up bars) of the time after
the bar's last signal was published (CLOCK_MONOTONIC, shared by the processes): the first and last signal taken,
the batch decided (`_decide_waiting`), carried out (`_execute`), the write-ahead state entry (`_save_state`: its
encoding, the journal's write and fdatasync), and the first order in at the connector's stand-in. The pair to
compare is the same command on the old and the new code.
"""
import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bench.executor_loop_bench as lb  # noqa: E402
from bench.executor_decide_bench import SYMBOLS, Walk, make_home  # noqa: E402
from common import config  # noqa: E402
from common import durable as _d  # noqa: E402
from services.executor import service  # noqa: E402
from services.executor import symbols_config as sc  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--bars", type=int, default=40)
ap.add_argument("--gap-ms", type=float, default=0.0, help="between a bar's signals")
ARGS = ap.parse_args()
BARS, GAP = ARGS.bars, ARGS.gap_ms
STAMPS: list[tuple[str, float]] = []  # (stage, CLOCK_MONOTONIC), in this process


def stamped(cls: type, name: str, before: str | None = None, after: str | None = None) -> None:
    f = getattr(cls, name)

    def g(*a, **k):
        if before:
            STAMPS.append((before, time.monotonic()))
        r = f(*a, **k)
        if after:
            STAMPS.append((after, time.monotonic()))
        return r

    setattr(cls, name, g)


stamped(service.Executor, "_take_signal", after="taken")
stamped(service.Executor, "_decide_waiting", before="decided from")
stamped(service.Executor, "_execute", before="executed from")
stamped(service.Executor, "_save_state", before="state from", after="state done")
stamped(_d.JournaledState, "commit", before="commit from", after="commit done")
stamped(_d.AppendLog, "commit", before="journal write from", after="journal fdatasync done")


def peers(cfg: config.Config, symbols: list[str], q: mp.Queue, start_at: float) -> None:
    """The forked process: the peers, and the bars' signals published."""
    p = lb.Peers(cfg, symbols)
    order = p.connector.order
    stamps: list[tuple[str, float]] = []

    def order_in(op, a):
        stamps.append(("order in", time.monotonic()))
        return order(op, a)

    p.connector.order = order_in
    walk = Walk(symbols, 7)
    while time.monotonic() < start_at:
        time.sleep(0.01)
    for _ in range(BARS + 5):
        sigs = walk.signals()
        stamps.append(("bar", time.monotonic()))
        for sig in sigs:
            p.publish(f"signal.{sig.symbol}", sig)
            if GAP:
                time.sleep(GAP / 1000)
        stamps.append(("last published", time.monotonic()))
        time.sleep(0.5)
    q.put(stamps)
    time.sleep(0.5)
    p.close()


class Bench(service.Executor):
    handshake = False  # no orchestrator: running at once


def main() -> int:
    fork = mp.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="exstages") as tmp:
        root = Path(tmp)
        symbols = SYMBOLS[:20]
        make_home(root, symbols)
        cfg = config.load(env={"ORACLE_HOME": str(root)})
        cfg.path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
        q = fork.Queue()
        child = fork.Process(target=peers, args=(cfg, symbols, q, time.monotonic() + 2.5))
        child.start()
        time.sleep(0.5)
        ex = Bench(cfg)
        assert ex.on_step("executor.load", {})
        ex.modelled = set(symbols)
        ex.timeframes = dict.fromkeys(symbols, "H1")
        ex.config, _ = sc.ensure_symbols(ex.config, ex.modelled)
        ex._next_hb = float("inf")  # no heartbeat before run() binds its PUB socket
        ex.on_step("executor.sync", {})
        ex._next_hb = 0.0
        got: list[list[tuple[str, float]]] = []

        def stopper() -> None:
            got.append(q.get())
            ex.request_stop()

        threading.Thread(target=stopper, daemon=True).start()
        c0 = time.thread_time()
        ex.run()
        cpu = time.thread_time() - c0
        child.join()
    theirs = got[0]
    bars = [t for s, t in theirs if s == "bar"] + [float("inf")]
    lasts = [t for s, t in theirs if s == "last published"]
    events = sorted(STAMPS + [e for e in theirs if e[0] == "order in"], key=lambda e: e[1])
    rel: dict[str, list[float]] = defaultdict(list)
    for i in range(5, len(lasts)):
        seen: dict[str, float] = {}
        for stage, t in events:
            if not bars[i] <= t < bars[i + 1]:
                continue
            if stage == "taken":
                seen.setdefault("first signal taken", t)
                seen["last signal taken"] = t
            else:
                seen.setdefault(stage, t)
        for stage, t in seen.items():
            rel[stage].append((t - lasts[i]) * 1000)
    print(f"executor stages, 20 symbols, {BARS} bars, gap {GAP} ms: its main thread {cpu * 1000 / (BARS + 5):.3f} ms "
          "CPU per bar (idle included)")
    for stage in sorted(rel, key=lambda s: statistics.median(rel[s])):
        xs = sorted(rel[stage])
        print(f"  {stage:24s} p50 {statistics.median(xs):7.3f}  p90 {xs[int(0.9 * (len(xs) - 1))]:7.3f} ms after the "
              f"last signal published ({len(xs)} bars)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
