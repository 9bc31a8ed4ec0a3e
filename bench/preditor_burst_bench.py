"""The preditor's CPU over a replay burst in this process, against the in-process backtest of the same bars.

    .venv/bin/python bench/preditor_burst_bench.py [--bars 300] [--runs 20] [--repeats 5] [--profile FILE]

A ``Preditor`` (one model, the demo model's) is built in this process as in bench/preditor_path_bench.py, warmed up
in memory over the history; ``--bars`` closed bars then come on ``bars.<SYM>.H1`` as ``--runs`` ``BarRun``
messages (the pipeline bench's burst reaches the preditor as 17-27 runs), all published before the service reads
any. The main thread's CPU (``time.thread_time``) from the first read of the SUB socket to the last fdatasync
(drain, ``on_message``, ``on_tick``: the twin's steps, signals, snapshot writes; the sync) is set against
``backtest.replay`` of the same bars from the same state (``run``: the backtest's own loop), both the best of
``--repeats`` (a fresh twin each time). The signals are checked to be the backtest's decisions, bit for bit.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "tests"))

from bench.preditor_path_bench import HISTORY, bench_home, loaded_preditor  # noqa: E402
from common import bus, messages  # noqa: E402
from common.twin.bars import load_bars_csv  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bars", type=int, default=300)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile", default="")
    args = p.parse_args()

    import zmq

    from common.twin.twin import initial_state, run
    from services.preditor import live, store
    from services.preditor.journal import Journal

    bars = load_bars_csv(REPO / "data" / "EURUSD_H1_2017.csv")
    live_bars = bars[HISTORY:HISTORY + args.bars]
    chunk = -(-args.bars // args.runs)
    prof = cProfile.Profile() if args.profile else None
    service_s, backtest_s = [], []
    for _ in range(args.repeats):
        root, home, symbols = bench_home("pburst-", 1)
        sym = symbols[0]
        try:
            cfg = home.config()
            svc = loaded_preditor(cfg)
            track = next(iter(svc.tracks.values()))
            model = track.model
            warm, _ = run(model.spec, initial_state(model.model_id), bars[:HISTORY], model.policy_fn)
            track.state, track.warm = warm, True
            track.journal = Journal(line=functools.partial(store.signal_line, track.key))
            track.journal.reset()
            svc._write_snapshots()
            svc._sync_snapshots()
            c = time.thread_time()
            expected = run(model.spec, warm, live_bars, model.policy_fn)[1]
            backtest_s.append(time.thread_time() - c)
            ctx = zmq.Context.instance()
            conn = bus.Publisher(ctx, f"ipc://{root}/conn.pub", "connector", bus.new_epoch())
            svc.sub = bus.Subscriber(ctx, [f"ipc://{root}/conn.pub"], ["bar.", "bars."], svc.errors)
            svc.pub = bus.Publisher(ctx, f"ipc://{root}/pred.pub", svc.name, svc.epoch)
            out = bus.Subscriber(ctx, [f"ipc://{root}/pred.pub"], ["signal"], bus.WireErrors("bench"))
            time.sleep(0.3)  # the SUBs connected
            runs = [messages.BarRun(sym, "H1", [messages.Bar(sym, "H1", int(r[0]), *(float(x) for x in r[1:]))
                                                for r in live_bars[i:i + chunk]])
                    for i in range(0, args.bars, chunk)]
            conn.publish_many([(f"bars.{sym}.H1", r) for r in runs])
            time.sleep(0.2)  # all of them on the SUB socket
            if prof:
                prof.enable()
            c = time.thread_time()
            while True:  # the service's turns (``runtime._loop``'s wait: a poll of the SUB socket, no CPU)
                for r in svc.sub.drain():
                    svc.on_message(r)
                svc.on_tick(time.monotonic())
                if not svc.queue and not svc.unsaved and not svc.log.unsynced and not svc._bars_arriving():
                    break
                svc.sub.sock.poll(svc.poll_timeout_ms())
            service_s.append(time.thread_time() - c)
            if prof:
                prof.disable()
            time.sleep(0.2)
            got = []
            for r in out.drain():
                body = r.envelope.body
                got += body.signals if isinstance(body, messages.SignalRun) else [body]
            fields = ("bar_time", "close", "action", "direction", "intensity", "hmm_state", "virtual_pnl")
            want = [live.signal_of(sym, d) for d in expected]
            assert [[getattr(s, f) for f in fields] for s in got] == [[getattr(s, f) for f in fields] for s in want], \
                "signals differ from the backtest"
            for s in (conn, svc.sub, svc.pub, out):
                s.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    best_s, best_b = min(service_s), min(backtest_s)
    print(f"{args.bars} bars in {len(runs)} runs, best of {args.repeats}: preditor main thread {1000 * best_s:.2f} ms "
          f"(all: {', '.join(f'{1000 * x:.1f}' for x in service_s)}), backtest {1000 * best_b:.2f} ms; overhead "
          f"{1000 * (best_s - best_b):.2f} ms, {1e6 * (best_s - best_b) / args.bars:.1f} us a bar")
    if prof:
        prof.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
