"""Preditor benchmark: per-bar latency through the process with 1 and 20 models, warmup time, RSS.

    .venv/bin/python bench/preditor_bench.py [--bars 300] [--models 1 20] [--pause-ms 50] [--idle-s 5]
                                             [--floor-bars 100]

The preditor is the real process (``python -m services.preditor``) in a throwaway ORACLE_HOME; the connector is the
protocol-level stand-in of tests/system/preditor_rig.py on the connector's ipc endpoints, serving the bundled
EURUSD H1 bars (history and live). The 20 models are the demo model relabelled for 20 symbols (same weights).

Latency = from the stand-in publishing ``bar.<SYM>.H1`` to the test's SUB receiving the ``signal.<SYM>``: the wire
both ways, the twin step (features, HMM forward filter, policy), the signal, and the atomic snapshot write (fsync).
With N models one bar per symbol is published at once; "per bar" is until the last of the N signals. The snapshots
are written after the signals: ``--pause-ms`` (default 50) between bar times lets the preditor finish them, as the
hour between two H1 closes does (``--pause-ms 0`` publishes the next bar as soon as the last signal is in).
Also printed: the preditor process's CPU time (its threads' runtime, bench/measure.py) per bar time over the live
bars (the pauses included), gross and net of its idle cost (its CPU over ``--idle-s`` seconds with no bar, after
the warmup: heartbeats, about 0.5 % of a core, times the bar period), and the acceptance ratio of issue 15: the net
figure against the in-process compute of the same models (``in_process_twenty``: mean per bar time, each twin with
its own copy of the model, over ``--floor-bars`` bar times; CPU is a mean too), target at most 1.5x; and the twin
step alone in this process (no wire, no file), and its parts, for reference. The temporary homes (``pbench<N>-*``
under the temp dir) are removed, also when a run fails.

    --bars N         live bars per run (default 300)
    --models N ...   model counts (default 1 20)
    --pause-ms MS    pause after each bar time's signals (default 50)
    --idle-s S       the idle window before the live bars, for the net CPU figure (default 5; 0: gross only)
    --floor-bars N   bar times of the in-process reference (default 100)
"""

from __future__ import annotations

import argparse
import os
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
from measure import cpu_sample, cpu_used_s, net_ms, pct, verdict  # noqa: E402
from system.preditor_rig import SignalTap, StandInConnector, copy_model_as, start_preditor  # noqa: E402

from common import messages  # noqa: E402
from common.twin.bars import bar_row, load_bars_csv  # noqa: E402

SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY", "USDCHF", "AUDUSD", "NZDUSD", "USDCAD", "EURGBP", "EURJPY", "GBPJPY",
           "EURCHF", "AUDJPY", "EURAUD", "GBPCHF", "CADJPY", "AUDNZD", "EURCAD", "GBPAUD", "NZDJPY", "CHFJPY"]
HISTORY = 1000


def symbol_of(k: int) -> str:
    """The k-th symbol of the model sets (20 real names, then SYN20, SYN21, ...)."""
    return SYMBOLS[k] if k < len(SYMBOLS) else f"SYN{k:02d}"


def run(n_models: int, n_bars: int, bars, pause_s: float, idle_s: float = 0.0) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"pbench{n_models}-"))
    home = conn = tap = None
    try:
        models = root / "bench_models"
        models.mkdir()
        symbols = [symbol_of(k) for k in range(n_models)]
        for sym in symbols:
            copy_model_as(REPO / "models" / "EURUSD_H1.zip", models, sym)
        home = Home(root, {"preditor": {"models_dir": str(models), "warmup_bars": HISTORY}})
        (root / "var" / "run").mkdir(parents=True, exist_ok=True)
        cfg = home.config()
        conn = StandInConnector(cfg, bars, {s: "H1" for s in symbols}, cursor=HISTORY)
        tap = SignalTap(cfg)
        t0 = time.perf_counter()
        steps = start_preditor(home)
        warm_total = time.perf_counter() - t0
        warm_ms = [w["ms"] for w in steps["warmup"]["warmed_up"].values()]
        rss_warm = home.status_of("preditor")["rss_bytes"]
        per_bar, per_signal = [], []
        pid = home.procs["preditor"].pid
        idle_ms_per_s = float("nan")
        if idle_s > 0:  # no bar: what the warm preditor spends on heartbeats and timers
            c0, t0 = cpu_sample(pid), time.monotonic()
            time.sleep(idle_s)
            idle_ms_per_s = 1000 * cpu_used_s(c0, cpu_sample(pid)) / (time.monotonic() - t0)
        cpu0, t_live = cpu_sample(pid), time.monotonic()
        for i in range(HISTORY, HISTORY + n_bars):
            t = int(bars[i, 0])
            start = time.perf_counter()
            conn.publish(i)
            for sym in symbols:
                tap.wait_for(sym, t)
            per_bar.append(max(tap.arrived[(s, t)] for s in symbols) - start)
            per_signal += [tap.arrived[(s, t)] - start for s in symbols]
            time.sleep(pause_s)
        cpu1, period_s = cpu_sample(pid), (time.monotonic() - t_live) / n_bars
        status = home.status_of("preditor")
        gross = 1000 * cpu_used_s(cpu0, cpu1) / n_bars
        return {
            "models": n_models, "bars": n_bars,
            "process_start_to_warm_s": warm_total,
            "warmup_step_ms": sum(warm_ms), "warmup_per_model_ms": statistics.median(warm_ms),
            "per_bar_p50_ms": 1000 * pct(per_bar, 50), "per_bar_p99_ms": 1000 * pct(per_bar, 99),
            "first_signal_p50_ms": 1000 * pct([x for j, x in enumerate(per_signal) if j % n_models == 0], 50),
            "per_signal_p50_ms": 1000 * pct(per_signal, 50),
            "rss_after_warmup_mib": rss_warm / 2**20, "rss_end_mib": status["rss_bytes"] / 2**20,
            "signals": status["progress"].get("signals_sent", 0),
            "cpu_per_bar_ms": gross, "idle_ms_per_s": idle_ms_per_s, "period_ms": 1000 * period_s,
            "net_cpu_per_bar_ms": net_ms(gross, idle_ms_per_s, period_s) if idle_s > 0 else gross,
        }
    finally:
        for part in (tap, conn, home):
            if part is not None:
                part.close()
        shutil.rmtree(root, ignore_errors=True)


def in_process_step(bars, n: int = 500) -> dict:
    import numpy as np
    import torch

    from common.twin.twin import _view, initial_state, next_emission_rows, observe, run, step
    from services.preditor import live
    from services.preditor.model_file import load_model

    torch.set_num_threads(1)
    model = load_model(REPO / "models" / "EURUSD_H1.zip")
    t0 = time.perf_counter()
    state, _ = run(model.spec, initial_state(model.model_id), bars[:HISTORY], model.policy_fn)
    warmup_s = time.perf_counter() - t0
    times, parts = [], {"emission row": [], "features + filter": [], "policy": [], "snapshot encode": [],
                        "snapshot encode (full)": []}
    encoder = live.SnapshotEncoder()  # as the service: reuses the previous snapshot's bar rows
    encoder.encode(state)
    for i in range(HISTORY, HISTORY + n):
        bar = live.twin_bar(messages.Bar("EURUSD", "H1", int(bars[i, 0]), *(float(x) for x in bars[i, 1:])))
        t = time.perf_counter()
        new, _ = step(model.spec, state, bar, model.policy_fn)
        times.append(time.perf_counter() - t)
        window = np.concatenate([state.bars, bar_row(bar)[None, :]])[-model.spec.window:]
        t1 = time.perf_counter()
        rows = next_emission_rows(model.spec, state, window)
        t2 = time.perf_counter()
        obs = observe(model.spec, _view(model.spec, window, rows), state.position)
        t3 = time.perf_counter()
        model.policy_fn(obs)
        t4 = time.perf_counter()
        encoder.encode(new)
        t5 = time.perf_counter()
        live.snapshot_bytes(new)
        t6 = time.perf_counter()
        for name, dt in zip(parts, (t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True):
            parts[name].append(dt)
        state = new
    return {"step_p50_ms": 1000 * pct(times, 50), "step_p99_ms": 1000 * pct(times, 99), "warmup_s": warmup_s,
            "parts_p50_ms": {name: 1000 * pct(xs, 50) for name, xs in parts.items()}}


def policy_shortcut(bars, n: int = 500) -> dict:
    """The policy's action on the observations of ``n`` live bars: ``act`` (the largest logit when it leads by the
    margin) against the distribution's path (``mode_of``, what ``act`` did before), same net, same process."""
    import numpy as np
    import torch

    from common.twin.twin import initial_state, run
    from services.preditor.model_file import load_model
    from services.preditor.policy import mode_of

    torch.set_num_threads(1)
    model = load_model(REPO / "models" / "EURUSD_H1.zip")
    _, decisions = run(model.spec, initial_state(model.model_id), bars[:HISTORY + n], model.policy_fn)
    obs = [np.asarray(d.observation, dtype=np.float32) for d in decisions[-n:]]
    net = model.policy

    def full(o):
        with torch.inference_mode():
            return mode_of(net(torch.as_tensor(o).reshape(1, -1)))

    out: dict = {}
    for name, fn in (("distribution", full), ("act", net.act), ("distribution again", full)):
        times = []
        for o in obs:
            t = time.perf_counter()
            fn(o)
            times.append(time.perf_counter() - t)
        out[name] = 1000 * pct(times, 50)
    out["same_actions"] = all(net.act(o) == full(o) for o in obs)
    return out


def batched_policy(bars, n_models: int = 20, n: int = 100) -> dict:
    """The policies of ``n_models`` models (the demo's weights, perturbed: other weights, same architecture) for
    one bar time: one by one (``PolicyNet.forward``, what the preditor does) against one ``torch.baddbmm`` per
    layer over the stacked weights, and against one batched ``forward`` of a single net over ``n_models``
    observations (grouping identical weights). Counts the bar times whose logits are bit-identical."""
    import numpy as np
    import torch

    from common.twin.twin import initial_state, run
    from services.preditor.model_file import load_model
    from services.preditor.policy import PolicyNet

    torch.set_num_threads(1)
    model = load_model(REPO / "models" / "EURUSD_H1.zip")
    _, decisions = run(model.spec, initial_state(model.model_id), bars[:HISTORY + n + n_models], model.policy_fn)
    obs = np.array([d.observation for d in decisions[-(n + n_models):]], dtype=np.float32)
    g = torch.Generator().manual_seed(1)
    nets = [model.policy] + [
        PolicyNet.from_state_dict({k: v + 0.01 * torch.randn(v.shape, generator=g)
                                   for k, v in model.policy.state_dict().items()}, model.policy.activation)
        for _ in range(n_models - 1)]
    layers = [(torch.stack([net._weights[i][1] for net in nets])[:, None, :].contiguous(),
               torch.stack([net._weights[i][0].t() for net in nets]).contiguous())
              for i in range(len(nets[0]._weights))]
    times: dict[str, list[float]] = {"one by one": [], "baddbmm": [], "one net, batched": []}
    same = {"baddbmm": 0, "one net, batched": 0}
    with torch.inference_mode():
        for j in range(n):
            batch = obs[j:j + n_models]
            t0 = time.perf_counter()
            ref = torch.cat([net.forward(torch.as_tensor(batch[k]).reshape(1, -1)) for k, net in enumerate(nets)])
            t1 = time.perf_counter()
            x = torch.as_tensor(batch)[:, None, :]
            for i, (b, w) in enumerate(layers):
                x = torch.baddbmm(b, x, w)
                x = torch.tanh(x) if i < len(layers) - 1 else x
            t2 = time.perf_counter()
            one = model.policy.forward(torch.as_tensor(batch))
            t3 = time.perf_counter()
            alone = torch.cat([model.policy.forward(torch.as_tensor(o).reshape(1, -1)) for o in batch])
            for name, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                times[name].append(dt)
            same["baddbmm"] += torch.equal(ref, x[:, 0, :])
            same["one net, batched"] += torch.equal(alone, one)
    return {"p50_ms": {k: 1000 * pct(v, 50) for k, v in times.items()}, "bit_identical": same, "n": n}


def in_process_twenty(bars, n: int = 100, n_models: int = 20, distinct: bool = False) -> dict:
    """One bar time for ``n_models`` twins (the demo model's, each with its own state), in this process, over ``n``
    bar times: step + signal, one by one, one torch thread (as the preditor). ``distinct``: each twin with its own
    copy of the model loaded from the file, as the preditor holds N models (N sets of weights to read from memory
    at every bar, instead of one set kept in the CPU's cache): the reference floor of issue 15."""
    import torch

    from common.twin.twin import initial_state, run, step
    from services.preditor import live
    from services.preditor.model_file import load_model

    torch.set_num_threads(1)
    models = [load_model(REPO / "models" / "EURUSD_H1.zip") for _ in range(n_models if distinct else 1)]
    models = (models * n_models)[:n_models]
    state, _ = run(models[0].spec, initial_state(models[0].model_id), bars[:HISTORY], models[0].policy_fn)
    states = [state] * n_models
    times = []
    for i in range(HISTORY, HISTORY + n):
        bar = live.twin_bar(messages.Bar("EURUSD", "H1", int(bars[i, 0]), *(float(x) for x in bars[i, 1:])))
        t = time.perf_counter()
        for k, model in enumerate(models):
            states[k], decision = step(model.spec, states[k], bar, model.policy_fn)
            messages.to_wire(live.signal_of(symbol_of(k), decision))
        times.append(time.perf_counter() - t)
    return {"p50_ms": 1000 * pct(times, 50), "p99_ms": 1000 * pct(times, 99),
            "mean_ms": 1000 * statistics.fmean(times), "bar_times": n, "models": n_models}


def in_process_paced(bars, n: int = 100, n_models: int = 20, pause_s: float = 0.05) -> dict:
    """``in_process_twenty(distinct=True)`` as the preditor meets it: ``pause_s`` between two bar times (the
    bench's pause), so each bar time starts with the caches the pause left (cold: the weights and states of 20
    models are read from memory again). Wall and thread CPU time per bar time, means."""
    import torch

    from common.twin.twin import initial_state, run, step
    from services.preditor import live
    from services.preditor.model_file import load_model

    torch.set_num_threads(1)
    models = [load_model(REPO / "models" / "EURUSD_H1.zip") for _ in range(n_models)]
    state, _ = run(models[0].spec, initial_state(models[0].model_id), bars[:HISTORY], models[0].policy_fn)
    states = [state] * n_models
    walls, cpus = [], []
    for i in range(HISTORY, HISTORY + n):
        time.sleep(pause_s)
        bar = live.twin_bar(messages.Bar("EURUSD", "H1", int(bars[i, 0]), *(float(x) for x in bars[i, 1:])))
        t, c = time.perf_counter(), time.thread_time()
        for k, model in enumerate(models):
            states[k], decision = step(model.spec, states[k], bar, model.policy_fn)
            messages.to_wire(live.signal_of(symbol_of(k), decision))
        cpus.append(time.thread_time() - c)
        walls.append(time.perf_counter() - t)
    return {"mean_ms": 1000 * statistics.fmean(walls), "cpu_mean_ms": 1000 * statistics.fmean(cpus),
            "p50_ms": 1000 * pct(walls, 50), "p99_ms": 1000 * pct(walls, 99), "bar_times": n, "models": n_models,
            "pause_s": pause_s}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bars", type=int, default=300, help="live bars per run")
    p.add_argument("--models", type=int, nargs="+", default=[1, 20])
    p.add_argument("--pause-ms", type=float, default=50.0, help="pause after each bar time's signals")
    p.add_argument("--idle-s", type=float, default=5.0,
                   help="idle window after the warmup (no bars), for the CPU net of idle cost (0: gross only)")
    p.add_argument("--floor-bars", type=int, default=100, help="bar times of the in-process reference")
    args = p.parse_args()
    bars = load_bars_csv(REPO / "data" / "EURUSD_H1_2017.csv")
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores: above 2 the figures include waiting for a CPU)")
    step = in_process_step(bars)
    print(f"twin step in-process (demo model, no wire, no file): p50 {step['step_p50_ms']:.3f} ms, "
          f"p99 {step['step_p99_ms']:.3f} ms; in-process warmup over {HISTORY} bars {step['warmup_s']:.2f} s")
    print("  parts, p50: " + ", ".join(f"{k} {v:.3f} ms" for k, v in step["parts_p50_ms"].items()))
    shortcut = policy_shortcut(bars)
    base = (shortcut["distribution"] + shortcut["distribution again"]) / 2
    print(f"policy per observation, p50: distribution's path {base:.3f} ms, act {shortcut['act']:.3f} ms "
          f"(ratio {shortcut['act'] / base:.2f}); same actions: {shortcut['same_actions']}")
    twenty = in_process_twenty(bars)
    print(f"20 twins stepped in-process for one bar time (+ their signals, no wire, no file): "
          f"p50 {twenty['p50_ms']:.2f} ms, p99 {twenty['p99_ms']:.2f} ms")
    twenty = in_process_twenty(bars, distinct=True)
    print(f"  the same, each twin with its own copy of the model (as 20 models): "
          f"p50 {twenty['p50_ms']:.2f} ms, p99 {twenty['p99_ms']:.2f} ms")
    batched = batched_policy(bars)
    print("policies of 20 models for one bar time, p50: " + ", ".join(f"{k} {v:.3f} ms" for k, v in
                                                                     batched["p50_ms"].items())
          + "; bar times with bit-identical logits: " + ", ".join(f"{k} {v}/{batched['n']}" for k, v in
                                                                  batched["bit_identical"].items())
          + " (logits not bit-exact: the preditor's PolicyBatch takes an action from them only where an error"
          " bound proves it is the one-by-one action, else the net's own act)")
    floors = {n: in_process_twenty(bars, n=args.floor_bars, n_models=n, distinct=True) for n in args.models}
    paced = {n: in_process_paced(bars, n=args.floor_bars, n_models=n, pause_s=args.pause_ms / 1000)
             for n in args.models}
    ratios = {}
    for n in args.models:
        r = run(n, args.bars, bars, args.pause_ms / 1000, args.idle_s)
        print(f"\n{n} model(s), {r['bars']} live bars, {r['signals']} signals, pause {args.pause_ms:g} ms")
        print(f"  per bar (publish -> last signal received): p50 {r['per_bar_p50_ms']:.2f} ms, "
              f"p99 {r['per_bar_p99_ms']:.2f} ms")
        print(f"  first signal of a bar p50 {r['first_signal_p50_ms']:.2f} ms; any signal p50 "
              f"{r['per_signal_p50_ms']:.2f} ms")
        floor = floors[n]["mean_ms"]
        idle = (f"idle {r['idle_ms_per_s']:.2f} ms/s x bar period {r['period_ms']:.0f} ms" if args.idle_s > 0
                else "idle not measured (--idle-s 0)")
        print(f"  preditor CPU per bar time (its threads' runtime): gross {r['cpu_per_bar_ms']:.2f} ms, {idle}, "
              f"net {r['net_cpu_per_bar_ms']:.2f} ms")
        ratios[n] = r["net_cpu_per_bar_ms"] / floor
        print(f"  RATIO preditor CPU per bar (net) / in-process compute of the same {n} models (mean over "
              f"{floors[n]['bar_times']} bar times, each twin with its own copy) {floor:.2f} ms = {ratios[n]:.2f}x "
              f"(target at most 1.5x: {verdict(ratios[n], 1.5)})")
        cold = paced[n]
        print(f"  the same compute paced as the preditor meets it ({args.pause_ms:g} ms pause between bar times, "
              f"cold caches): wall {cold['mean_ms']:.2f} ms, CPU {cold['cpu_mean_ms']:.2f} ms per bar time; "
              f"RATIO net CPU / paced CPU {r['net_cpu_per_bar_ms'] / cold['cpu_mean_ms']:.2f}x")
        print(f"  warmup step ({HISTORY} history bars each): {r['warmup_step_ms'] / 1000:.2f} s in all, "
              f"{r['warmup_per_model_ms']:.0f} ms per model (median); process start to warm "
              f"{r['process_start_to_warm_s']:.2f} s")
        print(f"  RSS after warmup {r['rss_after_warmup_mib']:.1f} MiB, after the live bars "
              f"{r['rss_end_mib']:.1f} MiB; load average now {os.getloadavg()[0]:.1f}")
    print("\nacceptance (issue 15): the preditor's CPU per bar at most 1.5x its in-process compute")
    print("| models | ratio (net CPU / in-process compute) | target | verdict |")
    print("|---|---|---|---|")
    for n, ratio in ratios.items():
        print(f"| {n} | {ratio:.2f}x | <= 1.5x | {verdict(ratio, 1.5)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
