"""Whole system: bar close -> order sent latency with 1, 20 and 50 symbols, replay throughput against the in-process
backtest, RSS per process and in total.

    .venv/bin/python bench/pipeline_bench.py [--symbols 1 20 50] [--bars 200] [--bars-one 500]
                                             [--throughput-bars 300] [--offset-bars 24] [--bar-gap-s 1.0]
                                             [--no-settle] [--keep] [--config-json JSON]

Per symbol count N, a throwaway ORACLE_HOME runs the repository's deploy/supervisord.conf: the simulator
(``sim-broker``, manual clock) and the six processes, real persistence (SQLite), paper on, production clocks. The
symbols are EURUSD and the simulator's synthetic SYN01..SYN(N-1) (EURUSD-like, SYNk replaying the bundled CSV
k * --offset-bars bars ahead on the same clock, so the models do not all change position on the same bar;
--offset-bars 0 is the aligned worst case); every symbol has the demo model relabelled (same weights), an enabled
executor entry (reference lots, risk limits opened up so that the risk guard does not stop openings mid-run) and a
connector subscription. After the boot (RUNNING, every model warmed up on 1000 bars), the bench closes one bar at a
time through the simulator's control port (``advance``) and waits until the executor has acked every symbol's
signal for it, paper has applied them and persistence has acknowledged the executor's and paper's records (their
outboxes are empty; --no-settle: acks only), so each bar meets an idle system, as live H1 bars do; and two bars
are at least --bar-gap-s apart (default 1 s: the broker's request limit, 50 a second, is a 1 s window that the
orders of bars closed back to back would fill, and an hour of H1 never does).

- bar close -> order sent: the connector's own samples (its ``status`` op, ``bar_to_order_ms``): from publishing a
  symbol's closed bar to writing an order for that symbol to the broker connection (after the rate limit's wait),
  on one clock in one process;
- the shares along the way, from a SUB in the bench (its receive times): bar -> the symbol's signal (preditor),
  signal -> ack (executor, an ack follows the order's fill), and per bar the last signal / last ack;
- RSS of each process (psutil) after the warmup and at the end; the six together (the simulator apart: it is
  the broker's stand-in);
- throughput (N = 1 only): bars/s through the whole pipeline, closing a bar when the previous one is settled
  (``lockstep``, the same run) and closing --throughput-bars bars in one control command (``burst``: the
  processes work in parallel; until the last bar's ack, and until paper and persistence are done), against the
  preditor's in-process backtest (``common.twin.twin.run``, as services/preditor/backtest.py) stepping the same
  bars from the same warm state.
- CPU time per bar of each process (psutil) and the executor's connector requests per bar: where the work is;
- first, what this machine charges per hop: raw pyzmq REQ/REP round trips between two processes, each after an idle
  gap as at a bar close (``wakeup_floor``), so runs on different machines can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import zmq

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from harness import Home  # noqa: E402
from system.sub_reader import SubReader  # noqa: E402
from system.trading_rig import symbols_overlay, synthetic_symbols  # noqa: E402

from common import bus, config, messages  # noqa: E402
from common.twin.bars import load_bars_csv  # noqa: E402
from services.connector.sim.control import control  # noqa: E402

CSV = REPO / "data" / "EURUSD_H1_2017.csv"
MODEL = REPO / "models" / "EURUSD_H1.zip"
START_BAR = 1100  # the simulator's default: 1100 closed bars before the replay
HISTORY = 1000
PROGRAMS = (*config.SERVICES, "sim-broker")
EXECUTOR_COUNTERS = ("signals_seen", "signals_evaluated", "signals_superseded", "positions_requests",
                     "symbol_info_requests", "account_requests", "orders_sent", "closes_sent")
CLOCKS = {
    "runtime": {"heartbeat_interval_s": 1.0, "hello_interval_s": 0.25, "request_timeout_ms": 2000},
    "orchestrator": {"heartbeat_timeout_s": 5.0, "restart_limit": 100, "step_timeout_s": 1800},
}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


class Tap:
    """One SUB on the connector's, the preditor's and the executor's PUB, read by its own thread: when each
    bar, signal and ack (symbol, bar time) arrived (time.monotonic(), the connector's clock too)."""

    def __init__(self, cfg: config.Config):
        self.bars: dict[tuple[str, int], float] = {}
        self.signals: dict[tuple[str, int], float] = {}
        self.acks: dict[tuple[str, int], tuple[float, messages.Ack]] = {}
        self.cond = threading.Condition()
        self._reader = SubReader([cfg.endpoint(s, "pub") for s in ("connector", "preditor", "executor")],
                                 ["bar.", "signal.", "ack."], self._take)

    def _take(self, got: list[bus.Received], now: float) -> None:
        with self.cond:
            for r in got:
                b = r.envelope.body
                if isinstance(b, messages.Bar):
                    self.bars.setdefault((b.symbol, b.time), now)
                elif isinstance(b, messages.Signal):
                    self.signals.setdefault((b.symbol, b.bar_time), now)
                elif isinstance(b, messages.Ack):
                    self.acks.setdefault((b.symbol, b.bar_time), (now, b))
            self.cond.notify_all()

    def wait_acks(self, symbols: list[str], bar_time: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all((s, bar_time) in self.acks for s in symbols):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        self._reader.close()


def make_home(root: Path, symbols: list[str], offset_bars: int, overlay: dict | None = None) -> Home:
    home = Home(root, config.merge(config.merge(config.merge(CLOCKS, symbols_overlay(root, symbols, offset_bars)), {
        # no state file for the simulator: it would rewrite its whole deal list after every fill (the broker's
        # stand-in, not part of the system, sharing the cores); one spot event per symbol an hour (plus each H1
        # bar's first and last point, so live bars stay whole) instead of one a minute: with 50 symbols, a spot
        # a minute costs the simulator and the connector about ten times the CPU (bench/sim_replay_bench.py)
        "broker": {"sim": {"speed": 0, "start_bar": START_BAR, "balance": 100_000, "state_file": "",
                           "spot_interval_s": 3600}},
        "preditor": {"warmup_bars": HISTORY},
    }), overlay or {}))
    raw = json.loads((REPO / "config" / "executor_symbols.json").read_text())
    # the risk guard's drawdown and loss-streak stops would end the openings partway through a long run
    raw["_risk"].update(dd_limit_pct=100.0, dd_peak_limit_pct=100.0, dd_emergency_pct=100.0,
                        max_consecutive_losses=100_000)
    for sym in symbols:
        raw[sym] = {**raw["EURUSD"], "enabled": True, "max_spread_pips": 5.0, "notes": "pipeline bench"}
    (root / "config" / "executor_symbols.json").write_text(json.dumps(raw, indent=2))
    return home


def boot(home: Home, n: int) -> float:
    t0 = time.monotonic()
    home.start_supervisord()
    timeout = 180 + 15 * n
    next_print = t0 + 10
    while True:
        try:
            s = home.status()
        except Exception:
            s = None
        now = time.monotonic()
        if s is not None and s["system"] == "RUNNING":
            return now - t0
        if s is not None and s["system"] == "HALTED":
            raise SystemExit(f"the system HALTED during the boot: {s.get('halted_reason')} {s.get('issues')}")
        if now - t0 > timeout:
            raise SystemExit(f"not RUNNING after {timeout} s: {s and s['system']}; logs in {home.root}/var/log")
        if now >= next_print:
            next_print = now + 10
            pred = (s or {}).get("services", {}).get("preditor", {}).get("info", {}) if s else {}
            step = f", preditor step {pred['step']} for {pred.get('step_running_s', 0):.0f} s" if "step" in pred else ""
            print(f"    boot {now - t0:5.0f} s: system {s['system'] if s else 'not answering yet'}{step}", flush=True)
        time.sleep(0.5)


def rss_mib(home: Home) -> dict[str, float]:
    out = {}
    for prog in PROGRAMS:
        pid = home.pid_of(prog)
        try:
            out[prog] = psutil.Process(pid).memory_info().rss / 2**20 if pid else float("nan")
        except psutil.Error:
            out[prog] = float("nan")
    return out


def cpu_s(home: Home) -> dict[str, tuple[int, float]]:
    """(pid, CPU time used so far: user + system, s) of each process."""
    out = {}
    for prog in PROGRAMS:
        pid = home.pid_of(prog)
        try:
            t = psutil.Process(pid).cpu_times() if pid else None
            out[prog] = (pid, t.user + t.system if t else float("nan"))
        except psutil.Error:
            out[prog] = (pid, float("nan"))
    return out


def cpu_ms_per_bar(before: dict, after: dict, n_bars: int) -> dict[str, float]:
    """A process restarted in between (another pid) has no figure."""
    return {p: 1000 * (after[p][1] - before[p][1]) / n_bars if after[p][0] == before[p][0] else float("nan")
            for p in PROGRAMS}


def settled(home: Home, symbols: list[str], bar_time: int) -> bool:
    """Paper has applied every symbol's signal for the bar, and persistence has acknowledged what the executor and
    paper handed it (their outboxes are empty)."""
    paper = home.status_of("paper", timeout_ms=5000)
    accounts = paper.get("accounts", {})
    applied = {s: (accounts.get(s) or {}).get("last_bar_time") or 0 for s in symbols}  # None: no bar yet
    if paper["outbox"]["pending"] or any(t < bar_time for t in applied.values()):
        return False
    return home.status_of("executor", timeout_ms=5000)["outbox"]["pending"] == 0


def wait_settled(home: Home, symbols: list[str], bar_time: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if settled(home, symbols, bar_time):
                return True
        except (bus.RequestTimeout, bus.RequestFailed):
            pass
        time.sleep(0.02)  # status requests cost the processes a little CPU: not too often
    return False


def run(n: int, args: argparse.Namespace, times: list[int]) -> dict:
    symbols = synthetic_symbols(n, args.offset_bars)
    n_bars = args.bars_one if n == 1 else args.bars
    root = Path(tempfile.mkdtemp(prefix=f"oracle-pipe{n}-"))
    home = make_home(root, symbols, args.offset_bars, json.loads(args.config_json))
    ctl = home.config().broker.sim.control_port
    tap = Tap(home.config())
    res: dict = {"symbols": n, "home": str(root)}
    try:
        print(f"\n== {n} symbol(s): booting under supervisord (warmup {HISTORY} bars per model) ...", flush=True)
        res["boot_s"] = boot(home, n)
        print(f"    RUNNING after {res['boot_s']:.1f} s", flush=True)
        time.sleep(2.0)  # the account updates and the first heartbeats after RUNNING
        res["rss_warm"] = rss_mib(home)
        per_bar_ack, per_bar_signal, bar_signal, signal_ack, order_bar_ack = [], [], [], [], []
        order_signal_ack, settle, bar_first = [], [], []
        missing = unsettled = 0
        cpu0 = cpu_s(home)
        ex0 = home.status_of("executor", timeout_ms=5000)["progress"]
        t_start = time.monotonic()
        next_print = t_start + 10
        last_close = 0.0
        for i in range(n_bars):
            # bars at least --bar-gap-s apart: the broker's request limit (50 a second, orders and everything else
            # the connector asks) is a 1 s window, which live bars (an hour apart) never fill
            time.sleep(max(0.0, last_close + args.bar_gap_s - time.monotonic()))
            last_close = time.monotonic()
            r = control(ctl, "advance", bars=1)
            t = times[r["bar_index"] - 1]
            if not tap.wait_acks(symbols, t, 120):
                missing += sum((s, t) not in tap.acks for s in symbols)
                print(f"    bar {t}: acks missing for {missing} symbol(s) after 120 s", flush=True)
            if not args.no_settle and not wait_settled(home, symbols, t, 120):
                unsettled += 1
                print(f"    bar {t}: paper / persistence not settled after 120 s", flush=True)
            settle.append(time.monotonic())
            with tap.cond:
                first_bar = min((tap.bars[(s, t)] for s in symbols if (s, t) in tap.bars), default=float("nan"))
                sig = [tap.signals[(s, t)] for s in symbols if (s, t) in tap.signals]
                ack = [tap.acks[(s, t)] for s in symbols if (s, t) in tap.acks]
                for s in symbols:
                    if (s, t) in tap.bars and (s, t) in tap.signals:
                        bar_signal.append(tap.signals[(s, t)] - tap.bars[(s, t)])
                    if (s, t) in tap.signals and (s, t) in tap.acks:
                        signal_ack.append(tap.acks[(s, t)][0] - tap.signals[(s, t)])
                        a = tap.acks[(s, t)]
                        if "client_order_id" in a[1].details and (s, t) in tap.bars:
                            order_bar_ack.append(a[0] - tap.bars[(s, t)])
                            order_signal_ack.append(a[0] - tap.signals[(s, t)])
            bar_first.append(first_bar)
            if sig:
                per_bar_signal.append(max(sig) - first_bar)
            if ack:
                per_bar_ack.append(max(a[0] for a in ack) - first_bar)
            now = time.monotonic()
            if now >= next_print:
                next_print = now + 10
                try:
                    st = home.status()
                    state = st["system"] + (f" {st['issues']}" if st.get("issues") else "")
                except Exception as exc:  # a slow orchestrator under load: the bench goes on
                    state = f"status failed: {exc}"
                print(f"    {i + 1}/{n_bars} bars, {(i + 1) / (now - t_start):.1f} bars/s; system {state}", flush=True)
        elapsed = time.monotonic() - t_start
        cpu1 = cpu_s(home)
        ex1 = home.status_of("executor", timeout_ms=5000)["progress"]
        res["executor_per_bar"] = {k: (ex1.get(k, 0) - ex0.get(k, 0)) / n_bars for k in EXECUTOR_COUNTERS}
        res["cpu_ms_per_bar"] = cpu_ms_per_bar(cpu0, cpu1, n_bars)
        status = home.status_of("connector", timeout_ms=5000)
        res.update(
            bars=n_bars, lockstep_s=elapsed, lockstep_bars_per_s=n_bars / elapsed, missing_acks=missing,
            unsettled=unsettled, bar_to_settled_ms=[1000 * (b - a) for a, b in zip(bar_first, settle, strict=True)],
            latency=status["bar_to_order_ms"],
            orders=status["progress"].get("orders", 0), closes=status["progress"].get("closes_requested", 0),
            bar_to_last_signal_ms=[1000 * x for x in per_bar_signal],
            bar_to_last_ack_ms=[1000 * x for x in per_bar_ack],
            bar_to_signal_ms=[1000 * x for x in bar_signal], signal_to_ack_ms=[1000 * x for x in signal_ack],
            order_bar_to_ack_ms=[1000 * x for x in order_bar_ack],
            order_signal_to_ack_ms=[1000 * x for x in order_signal_ack],
        )
        res["rss_end"] = rss_mib(home)
        if n == 1 and args.throughput_bars:
            print(f"    burst: {args.throughput_bars} bars in one control command ...", flush=True)
            before = len(tap.acks)
            t0 = time.monotonic()
            r = control(ctl, "advance", bars=args.throughput_bars)
            last = times[r["bar_index"] - 1]
            ok = tap.wait_acks(symbols, last, 60 + args.throughput_bars)
            res["burst_ack_s"] = time.monotonic() - t0
            ok = wait_settled(home, symbols, last, 60 + args.throughput_bars) and ok
            res["burst_s"] = time.monotonic() - t0
            res["burst_bars"] = args.throughput_bars
            res["burst_acks"] = len(tap.acks) - before
            res["burst_complete"] = ok
        s = home.status()
        res["system_end"] = s["system"]
        res["issues"] = s.get("issues", [])
        res["restarts"] = {k: f"{v['restarts']} ({v.get('last_restart_reason')})" for k, v in s["services"].items()
                           if v.get("restarts")}
        return res
    finally:
        tap.close()
        home.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def backtest_rate(first: int, n_bars: int) -> float:
    """Bars/s of the twin stepping bars[first:first+n] in this process from the state warmed up before them."""
    import torch

    from common.twin.twin import initial_state, run
    from services.preditor.model_file import load_model

    torch.set_num_threads(1)
    bars = load_bars_csv(CSV)
    model = load_model(MODEL)
    state, _ = run(model.spec, initial_state(model.model_id), bars[first - HISTORY:first], model.policy_fn)
    t0 = time.perf_counter()
    run(model.spec, state, bars[first:first + n_bars], model.policy_fn)
    return n_bars / (time.perf_counter() - t0)


def _echo(endpoint: str, n: int) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.bind(endpoint)
    for _ in range(n):
        sock.send(sock.recv())
    sock.close()
    ctx.term()


def wakeup_floor(n: int = 60, gap_s: float = 0.1) -> dict[str, float]:
    """Raw pyzmq REQ/REP round trips (ipc, ~200 bytes, the peer another process) each after ``gap_s`` idle, as a
    bar close finds the processes: what the machine charges per hop before any of our code runs. The bar -> order
    path crosses five such hops (bar, signal, the positions request and its reply, the order request) and one
    hand-off between the connector's threads."""
    import multiprocessing as mp

    with tempfile.TemporaryDirectory() as d:
        endpoint = f"ipc://{d}/echo"
        proc = mp.get_context("spawn").Process(target=_echo, args=(endpoint, n + 10))
        proc.start()
        ctx = zmq.Context()
        sock = ctx.socket(zmq.REQ)
        sock.connect(endpoint)
        payload, lat = b"x" * 200, []
        for i in range(n + 10):
            time.sleep(gap_s)
            t0 = time.perf_counter()
            sock.send(payload)
            sock.recv()
            if i >= 10:  # the first ones connect
                lat.append(1000 * (time.perf_counter() - t0))
        sock.close()
        ctx.term()
        proc.join(10)
    return {"p50": pct(lat, 50), "p99": pct(lat, 99), "n": n, "gap_s": gap_s}


def fmt(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.1f}"


def report(results: list[dict], args: argparse.Namespace, baselines: dict) -> None:
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (2 cores: above 2 the figures include CPU waits)")
    floor = baselines.get("floor")
    if floor:
        print(f"\nthis machine: a raw pyzmq REQ/REP round trip after {floor['gap_s']:g} s idle (ipc, another process, "
              f"{floor['n']} trips): p50 {floor['p50']:.3f} ms, p99 {floor['p99']:.3f} ms")
    print("\nbar close -> order sent (the connector's samples, ms)")
    print("| symbols | bars | orders (opens + closes) | p50 | p99 | max | boot to RUNNING |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        lat = r["latency"]
        print(f"| {r['symbols']} | {r['bars']} | {lat['count']} ({r['orders']} + {r['closes']}) | "
              f"{fmt(lat['p50'])} | {fmt(lat['p99'])} | {fmt(lat['max'])} | {r['boot_s']:.1f} s |")
    print("\nshares, seen from a SUB in the bench (ms, p50 / p99)")
    print("| symbols | bar -> its signal | signal -> its ack | the same, signals with an order | bar -> ack, signals "
          "with an order | bar -> last signal of the bar | bar -> last ack of the bar | bar -> settled (paper, "
          "persistence) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        cells = [f"{fmt(pct(r[k], 50))} / {fmt(pct(r[k], 99))}" for k in
                 ("bar_to_signal_ms", "signal_to_ack_ms", "order_signal_to_ack_ms", "order_bar_to_ack_ms",
                  "bar_to_last_signal_ms", "bar_to_last_ack_ms", "bar_to_settled_ms")]
        print(f"| {r['symbols']} | " + " | ".join(cells) + " |")
    print("\nCPU time per bar while closing bars one at a time (ms, user + system)")
    print("| symbols | " + " | ".join(PROGRAMS) + " |")
    print("|---|" + "---|" * len(PROGRAMS))
    for r in results:
        print(f"| {r['symbols']} | " + " | ".join(fmt(r["cpu_ms_per_bar"][p]) for p in PROGRAMS) + " |")
    print("\nthe executor's work per bar (its status counters)")
    print("| symbols | " + " | ".join(EXECUTOR_COUNTERS) + " |")
    print("|---|" + "---|" * len(EXECUTOR_COUNTERS))
    for r in results:
        print(f"| {r['symbols']} | " + " | ".join(f"{r['executor_per_bar'][k]:.2f}" for k in EXECUTOR_COUNTERS) + " |")
    print("\nRSS after the warmup / at the end (MiB)")
    print("| symbols | " + " | ".join(PROGRAMS) + " | the six together |")
    print("|---|" + "---|" * (len(PROGRAMS) + 1))
    for r in results:
        cells = [f"{fmt(r['rss_warm'][p])} / {fmt(r['rss_end'][p])}" for p in PROGRAMS]
        six_w = sum(r["rss_warm"][p] for p in config.SERVICES)
        six_e = sum(r["rss_end"][p] for p in config.SERVICES)
        print(f"| {r['symbols']} | " + " | ".join(cells) + f" | {six_w:.1f} / {six_e:.1f} |")
    one = [r for r in results if r["symbols"] == 1]
    if one and "rate" in baselines:
        r = one[0]
        bt = baselines["rate"]
        print("\nreplay throughput, 1 symbol (bars/s)")
        print("| measure | bars/s | vs in-process backtest |")
        print("|---|---|---|")
        print(f"| in-process backtest (twin step, same bars, warm state) | {bt:.0f} | 1 |")
        print(f"| whole pipeline, lockstep (next bar when the last is settled, at least {args.bar_gap_s:g} s after "
              f"it: --bar-gap-s), {r['bars']} bars | "
              f"{r['lockstep_bars_per_s']:.1f} | {r['lockstep_bars_per_s'] / bt:.3f} |")
        if "burst_s" in r:
            rate = r["burst_bars"] / r["burst_s"]
            ack_rate = r["burst_bars"] / r["burst_ack_s"]
            note = "" if r["burst_complete"] else " (incomplete)"
            print(f"| whole pipeline, burst ({r['burst_bars']} bars in one command) until the last bar's ack "
                  f"({r['burst_acks']} acks: the executor acts on the latest signal){note} | {ack_rate:.1f} | "
                  f"{ack_rate / bt:.3f} |")
            print(f"| the same burst until paper and persistence are done{note} | {rate:.1f} | {rate / bt:.3f} |")
    for r in results:
        if r.get("missing_acks") or r.get("unsettled") or r.get("system_end") != "RUNNING" or r.get("restarts"):
            print(f"\n{r['symbols']} symbols: {r.get('missing_acks')} missing acks, {r.get('unsettled')} bars not "
                  f"settled, system {r.get('system_end')} at "
                  f"the end, issues {r.get('issues')}, restarts {r.get('restarts')}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, nargs="+", default=[1, 20, 50])
    p.add_argument("--bars", type=int, default=200, help="bars closed one at a time per run")
    p.add_argument("--bars-one", type=int, default=500, help="the same for the 1-symbol run (it trades less often)")
    p.add_argument("--throughput-bars", type=int, default=300, help="bars of the burst (1-symbol run; 0 = none)")
    p.add_argument("--offset-bars", type=int, default=24, help="SYNk replays the CSV k * this ahead (0 = aligned)")
    p.add_argument("--bar-gap-s", type=float, default=1.0,
                   help="at least this long between two bars closed one at a time (the broker's rate window)")
    p.add_argument("--no-settle", action="store_true",
                   help="close the next bar once the executor has acked (paper and persistence may lag behind)")
    p.add_argument("--keep", action="store_true", help="keep each throwaway home (logs, database)")
    p.add_argument("--config-json", default="{}",
                   help='settings merged into the config, e.g. \'{"preditor": {"fsync_snapshots": false}}\'')
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs", flush=True)
    times = [int(t) for t in load_bars_csv(CSV)[:, 0]]
    results = []
    baselines: dict = {"floor": wakeup_floor()}  # this machine's, and the backtest's rate
    print(f"raw pyzmq round trip after an idle gap: p50 {baselines['floor']['p50']:.3f} ms, "
          f"p99 {baselines['floor']['p99']:.3f} ms", flush=True)
    for n in args.symbols:
        r = run(n, args, times)
        results.append(r)
        lat = r["latency"]
        print(f"    {n} symbol(s): {lat['count']} orders, bar close -> order sent p50 {lat.get('p50')} ms, "
              f"p99 {lat.get('p99')} ms, max {lat.get('max')} ms; lockstep {r['lockstep_bars_per_s']:.1f} bars/s",
              flush=True)
        if n == 1:
            baselines["rate"] = backtest_rate(START_BAR, r["bars"])
    report(results, args, baselines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
