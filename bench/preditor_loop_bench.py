"""The preditor's whole loop in this process: CPU of its thread per bar time of N models, net of its idle cost.

    .venv/bin/python bench/preditor_loop_bench.py [--models 20] [--bars 150] [--pause-ms 50] [--idle-s 3]

A ``Preditor`` (no orchestrator handshake) runs ``run()`` on the main thread, its models loaded and its twins
warmed up in memory (``run`` over the history, as ``_warmup`` without the connector); a driver thread publishes one
``bar.<SYM>.H1`` per model on the connector's endpoint, waits for every signal on the preditor's, then pauses.
The main thread's CPU (/proc/self/task/<tid>/schedstat) over the live bars, less its CPU over ``--idle-s`` with
no bar (heartbeats) scaled to the same time, per bar time: what the process's main thread spends per bar.
"""

from __future__ import annotations

import argparse
import functools
import math
import shutil
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "tests"))


from bench.preditor_path_bench import HISTORY  # noqa: E402
from common import bus, messages  # noqa: E402
from common.twin.bars import load_bars_csv  # noqa: E402


def thread_cpu_s(tid: int) -> float:
    return int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0]) / 1e9


def threads_cpu_s() -> dict[tuple[int, str], float]:
    """Every thread of this process: (tid, name) -> its CPU seconds so far."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            out[(int(task.name), (task / "comm").read_text().strip())] = \
                int((task / "schedstat").read_text().split()[0]) / 1e9
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=20)
    p.add_argument("--bars", type=int, default=150)
    p.add_argument("--pause-ms", type=float, default=50.0)
    p.add_argument("--idle-s", type=float, default=3.0)
    p.add_argument("--profile", default="", help="cProfile the main thread's live part, stats to this file")
    p.add_argument("--count", action="store_true", help="count the loop's calls")
    args = p.parse_args()

    import zmq

    from bench.preditor_path_bench import bench_home
    from common.twin.twin import initial_state, run
    from services.preditor import store
    from services.preditor.journal import Journal
    from services.preditor.service import Preditor

    bars = load_bars_csv(REPO / "data" / "EURUSD_H1_2017.csv")
    root, home, symbols = bench_home("ploop-", args.models)
    try:
        (root / "var" / "run").mkdir(parents=True, exist_ok=True)
        cfg = home.config()

        counts: dict[str, int] = {}

        class Bench(Preditor):
            handshake = False
            if args.count:
                def on_tick(self, now):
                    counts["on_tick"] = counts.get("on_tick", 0) + 1
                    counts["queued@tick"] = counts.get("queued@tick", 0) + len(self.queue)
                    super().on_tick(now)

                def on_message(self, received):
                    counts["on_message"] = counts.get("on_message", 0) + 1
                    super().on_message(received)

        svc = Bench(cfg)
        svc._next_hb = math.inf  # no heartbeat before the PUB socket is bound
        svc._load()
        svc.saved = {}
        first = next(iter(svc.tracks.values()))
        warm, _ = run(first.model.spec, initial_state(first.model.model_id), bars[:HISTORY], first.model.policy_fn)
        for t in svc.tracks.values():
            t.state = warm
            t.warm = True
            t.journal = Journal(line=functools.partial(store.signal_line, t.key))
            t.journal.reset()
            t.last_bar_wall = time.monotonic()
        svc._write_snapshots()
        svc._sync_snapshots()
        svc._next_hb = 0.0
        ctx = zmq.Context.instance()
        conn = bus.Publisher(ctx, cfg.endpoint("connector", "pub"), "connector", bus.new_epoch())
        main_tid = threading.get_native_id()
        result: dict = {}

        def drive() -> None:
            sub = bus.Subscriber(ctx, [cfg.endpoint(svc.name, "pub")], ["signal."], bus.WireErrors("bench"))
            try:
                time.sleep(1.0)  # connected both ways
                c0, t0 = thread_cpu_s(main_tid), time.monotonic()
                time.sleep(args.idle_s)
                idle_per_s = (thread_cpu_s(main_tid) - c0) / (time.monotonic() - t0)
                counts.clear()
                every0 = threads_cpu_s()
                c0, t0 = thread_cpu_s(main_tid), time.monotonic()
                for i in range(HISTORY, HISTORY + args.bars):
                    row = bars[i]
                    for s in symbols:
                        conn.publish(f"bar.{s}.H1", messages.Bar(s, "H1", int(row[0]),
                                                                 *(float(x) for x in row[1:])))
                    got = 0
                    while got < len(symbols):
                        if sub.sock.poll(5000):
                            got += sum(1 for r in sub.drain() if r.envelope.body.bar_time == int(row[0]))
                        else:
                            raise RuntimeError("no signal")
                    time.sleep(args.pause_ms / 1000)
                cpu, live_s = thread_cpu_s(main_tid) - c0, time.monotonic() - t0
                every1 = threads_cpu_s()
                result["threads"] = {k: 1000 * (v - every0.get(k, 0.0)) / args.bars for k, v in every1.items()
                                     if k[0] not in (main_tid, threading.get_native_id())}
                result.update(gross=1000 * cpu / args.bars, net=1000 * (cpu - idle_per_s * live_s) / args.bars,
                              idle_ms_per_s=1000 * idle_per_s)
            finally:
                sub.close()
                svc.request_stop()

        driver = threading.Thread(target=drive)
        driver.start()
        if args.profile:
            import cProfile

            prof = cProfile.Profile(timer=time.thread_time)
            prof.runcall(svc.run)
            prof.dump_stats(args.profile)
        else:
            svc.run()
        driver.join()
        conn.close()
        print(f"{args.models} models, {args.bars} bar times, pause {args.pause_ms:g} ms: main thread CPU per bar "
              f"time gross {result['gross']:.3f} ms, net {result['net']:.3f} ms (idle {result['idle_ms_per_s']:.2f}"
              f" ms/s)")
        print("  the other threads' CPU per bar time (ms; the driver's own context's too): " + ", ".join(
            f"{name}/{tid} {ms:.3f}" for (tid, name), ms in sorted(result["threads"].items()) if ms >= 0.005))
        if counts:
            print("  per bar time: " + ", ".join(f"{k} {v / args.bars:.1f}" for k, v in counts.items()))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
