"""The preditor's per-bar path in this process: the service's own code from the SUB socket to the fdatasync.

    .venv/bin/python bench/preditor_path_bench.py [--models 20] [--bars 100] [--pause-ms 5] [--profile FILE]

A ``Preditor`` (services/preditor/service.py) is built in this process with its models loaded (``_load``) and its
twins warmed up in memory (``run`` over the history, as ``_warmup`` without the connector); its SUB socket is
connected to a publisher standing in for the connector's and its PUB bound, both on ipc in a temporary directory.
For each bar time one ``bar.<SYM>.H1`` per model is published (untimed), then the service's work is timed in CPU
time (``time.thread_time``), in its parts: the drain of the SUB socket and ``on_message`` (decoding), ``on_tick``
(the queue stepped: batched policy and twin steps, signals built and published, snapshots and journal lines
encoded and written), and the fdatasync (``_sync_snapshots``); within them, the CPU of some methods (the batched
policy ``actions``, ``_stepped``, ``_records``, the file's ``append``...) and of the garbage collector. Median and
mean over the bar times (the first two, which rebuild the twins' emission rows, left out); ``--pause-ms`` between
bar times lets the caches cool as the bar period does. With ``--profile`` the timed work runs under cProfile, its
stats written to FILE (``python -m pstats FILE``).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "tests"))

from harness import Home  # noqa: E402
from system.preditor_rig import copy_model_as  # noqa: E402

from common import bus, messages  # noqa: E402
from common.twin.bars import load_bars_csv  # noqa: E402

HISTORY = 1000


def bench_home(prefix: str, n_models: int) -> tuple[Path, Home, list[str]]:
    """A throwaway home whose preditor holds `n_models` copies of the demo model, named as bench/preditor_bench.py
    names them; the caller removes the root."""
    from bench.preditor_bench import symbol_of

    root = Path(tempfile.mkdtemp(prefix=prefix))
    models = root / "bench_models"
    models.mkdir()
    symbols = [symbol_of(k) for k in range(n_models)]
    for sym in symbols:
        copy_model_as(REPO / "models" / "EURUSD_H1.zip", models, sym)
    return root, Home(root, {"preditor": {"models_dir": str(models), "warmup_bars": HISTORY}}), symbols


def loaded_preditor(cfg):
    """A Preditor in this process, its models loaded and twins warmed up, nothing saved yet: no heartbeat (no
    orchestrator here)."""
    from services.preditor.service import Preditor

    svc = Preditor(cfg)
    svc._next_hb = math.inf
    svc._load()
    svc.saved = {}
    return svc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=20)
    p.add_argument("--bars", type=int, default=100)
    p.add_argument("--profile", default="")
    p.add_argument("--pause-ms", type=float, default=5.0, help="pause between bar times (caches cool down)")
    args = p.parse_args()

    import zmq

    from common.twin.twin import initial_state, run
    from services.preditor import store
    from services.preditor.journal import Journal

    bars = load_bars_csv(REPO / "data" / "EURUSD_H1_2017.csv")
    root, home, symbols = bench_home("ppath-", args.models)
    try:
        cfg = home.config()
        svc = loaded_preditor(cfg)
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
        ctx = zmq.Context.instance()
        conn = bus.Publisher(ctx, f"ipc://{root}/conn.pub", "connector", bus.new_epoch())
        svc.sub = bus.Subscriber(ctx, [f"ipc://{root}/conn.pub"], ["bar.", "bars."], svc.errors)
        svc.pub = bus.Publisher(ctx, f"ipc://{root}/pred.pub", svc.name, svc.epoch)
        time.sleep(0.3)  # the SUB connected
        parts: dict[str, list[float]] = {"drain + on_message": [], "on_tick (step, publish, write)": [],
                                         "fdatasync": [], "total": []}
        acc: dict[str, float] = {}  # CPU of the parts within a bar time (the service's methods, wrapped)

        def timed(fn, name):
            def wrapper(*a, **k):
                c = time.thread_time()
                try:
                    return fn(*a, **k)
                finally:
                    acc[name] = acc.get(name, 0.0) + time.thread_time() - c
            return wrapper

        for obj, name in ((svc, "_process_together"), (svc.policies, "actions"), (svc, "_stepped"),
                          (svc, "_publish_decided"), (svc, "_records"), (svc.log, "append"), (svc.log, "rewrite")):
            setattr(obj, name, timed(getattr(obj, name), name))
        gc_runs: dict[str, int] = {}
        gc_start = [0.0]

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                gc_start[0] = time.thread_time()
            else:
                key = f"gc gen{info['generation']}"
                acc[key] = acc.get(key, 0.0) + time.thread_time() - gc_start[0]
                gc_runs[key] = gc_runs.get(key, 0) + 1

        gc.callbacks.append(on_gc)
        prof = cProfile.Profile() if args.profile else None
        signals0 = svc.progress.get("signals_sent", 0)
        skip = 2  # the first bar times rebuild each twin's emission rows (its state was warmed on another spec)
        for i in range(HISTORY, HISTORY + args.bars + skip):
            row = bars[i]
            conn.publish_many([(f"bar.{s}.H1", messages.Bar(s, "H1", int(row[0]), *(float(x) for x in row[1:])))
                               for s in symbols])
            time.sleep(args.pause_ms / 1000)
            if prof:
                prof.enable()
            c0 = time.thread_time()
            got = 0
            while got < len(symbols):  # every bar of the close (a wait for the socket is no CPU)
                for r in svc.sub.drain():
                    svc.on_message(r)
                    got += 1
                if got < len(symbols):
                    svc.sub.sock.poll(1000)
            c1 = time.thread_time()
            svc.on_tick(time.monotonic())
            svc._write_snapshots()  # a live close's are written SNAPSHOT_AFTER_S later (the next ticks): here at once
            c2 = time.thread_time()
            svc._sync_snapshots()
            c3 = time.thread_time()
            if prof:
                prof.disable()
            assert not svc.queue and not svc.unsaved and not svc.log.unsynced
            if i >= HISTORY + skip:
                for name, dt in zip(list(parts)[:4], (c1 - c0, c2 - c1, c3 - c2, c3 - c0), strict=True):
                    parts[name].append(1000 * dt)
                for name, dt in acc.items():
                    parts.setdefault(name, []).append(1000 * dt)
            else:
                signals0 = svc.progress.get("signals_sent", 0)
            acc.clear()
        sent = svc.progress.get("signals_sent", 0) - signals0
        assert sent == args.models * args.bars, sent
        print(f"{args.models} models, {args.bars} bar times, {sent} signals; CPU ms per bar time "
              f"(median / mean):")
        for name, xs in parts.items():
            xs = xs + [0.0] * (args.bars - len(xs))
            print(f"  {name:32s} {statistics.median(xs):7.3f} / {statistics.fmean(xs):7.3f}")
        print("  gc collections per bar time: " + ", ".join(f"{k} {v / args.bars:.2f}" for k, v in gc_runs.items())
              + f"; objects tracked {len(gc.get_objects())}")
        for name in ("_records", "total", "on_tick (step, publish, write)"):
            xs = parts[name]
            top = sorted(range(len(xs)), key=xs.__getitem__)[-5:]
            print(f"  {name} largest: " + ", ".join(f"#{j} {xs[j]:.2f}" for j in top))
        if prof:
            prof.dump_stats(args.profile)
        conn.close()
        svc.sub.close()
        svc.pub.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
