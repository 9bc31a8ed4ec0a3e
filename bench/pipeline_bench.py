"""Whole system: bar close -> order sent latency with 1, 20 and 50 symbols against the reference floor of the same
run, CPU per bar of each process net of its idle cost, replay throughput against the in-process backtest, RSS per
process and in total; at the end, issue 15's acceptance lines with their verdicts.

    .venv/bin/python bench/pipeline_bench.py [--symbols 1 20 50] [--bars 200] [--bars-one 500]
                                             [--throughput-bars 300] [--catch-up-bars 300] [--offset-bars 24]
                                             [--bar-gap-s 1.0]
                                             [--idle-s 10] [--floor-bars 100]
                                             [--no-settle] [--keep] [--config-json JSON] [--curve off|on|both]
                                             [--slowest N]

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
orders of bars closed back to back would fill, and an hour of H1 never does). The settle wait asks nothing of the
measured processes (a measuring instrument should not load what it measures): it reads what they publish anyway, on
the bench's SUB, in the order each sent it: paper's ``paper.metrics.<SYM>`` of every symbol (published by the commit
that applied the bar's signal), then a heartbeat of paper's with nothing pending and no record unacknowledged by
persistence; every symbol's ack of the bar (each ack's record is handed to persistence before the ack is published),
then a heartbeat of the executor's with no record unacknowledged. A service beats when its outbox empties, and paper
when a commit left nothing to store (common/runtime.py, services/paper/service.py), so the wait ends when the work is
done, not at the next periodic beat; paper takes persistence's answer at its next wake (``outbox_answer_wakes``
False: no wake of its own), its next heartbeat at the latest, so "bar -> settled" is mostly the phase of paper's
heartbeat (0.1-1 s; the next bar closes at least --bar-gap-s after the last one anyway). The progress lines read the
orchestrator's ``sys.state``. The status requests
per bar (0 now; a burst's and a catch-up's settle wait, outside any CPU window, still polls ``status`` every 20 ms)
are counted and printed with what one costs paper and the executor (20 requests in a row after the idle window), and
the heartbeats per bar. "bar -> settled" is when the bench's SUB had the last of these.

- bar close -> order sent: the connector's own samples (its ``status`` op, ``bar_to_order_ms``): from publishing a
  symbol's closed bar to writing an order for that symbol to the broker connection (after the rate limit's wait),
  on one clock in one process;
- the shares along the way, from a SUB in the bench (its receive times): bar -> the symbol's signal (preditor),
  signal -> ack (executor, an ack follows the order's fill), and per bar the last signal / last ack;
- RSS of each process (psutil) after the warmup and at the end; the six together (the simulator apart: it is
  the broker's stand-in);
- throughput (N = 1 only): bars/s through the whole pipeline, closing a bar when the previous one is settled
  (``lockstep``, the same run) and closing --throughput-bars bars in one control command (``burst``: the
  processes work in parallel; until the last bar's ack, the acceptance figure, target at least 0.5x, and until
  paper and persistence are done), against the preditor's in-process backtest (``common.twin.twin.run``, as
  services/preditor/backtest.py) stepping the burst's bars from a warm state (CPU time, best of 15 passes),
  measured after the run's shutdown; and the burst's stages as the bench's SUB saw them (the simulator's reply, the
  connector's bars, the preditor's signals, the executor's acks), the executor's counters and each process's CPU
  meanwhile. The burst is the simulator's LIVE form: it models every bar's 60 instants (spots, stops, swaps) and
  sends the bars as they close, so it measures the simulator's pace as much as the pipeline's (the connector forms
  runs of whatever bars wait when it drains: ``bar_runs_published``);
- catch-up (N = 1, --catch-up-bars, after the burst; the REPLAY form): the simulator drops the connection and refuses
  new ones while its clock moves N bars on (no session: no spot sent), then accepts again; the connector reconnects
  (its back-off, not counted), fills the gap from the broker's trendbar history (``ProtoOAGetTrendbarsReq``, as the
  real cTrader serves a catch-up) and publishes each stream's bars as ONE run (``bars.<SYM>.<TF>``,
  ``connector.bar_runs``; --config-json '{"connector": {"bar_runs": false}}' publishes them one by one: the pair),
  the preditor steps the run and publishes one ``signals.<SYM>`` run, the executor acts on its latest signal, paper
  simulates each. Timed from the connector's ``conn.state`` connected (the bench's SUB; the gap's history request
  follows it) to the last bar's ack, and to paper and persistence done, against the in-process backtest of the
  catch-up's own bars (as the burst's); the stages, the run messages seen and each process's CPU are printed.
- the reference floor (issue 15), measured in this process before each boot (so it does not share the cores with
  the system): ``in_process_twenty`` of bench/preditor_bench.py with N distinct copies of the model stepped one by
  one over --floor-bars bar times (default 100, the issue's minimum); printed next to bar close -> order sent with
  the ratios (target p99 ratio at most 2.5 with 20 and with 50 symbols);
- CPU time per bar of each process (its threads' runtime, bench/measure.py: to the ns, where psutil's user +
  system counts 10 ms ticks), gross and net of its idle cost:
  after RUNNING and the settle delay (2 s), each process's CPU over --idle-s seconds with no bar (heartbeats,
  timers: ms per second), and net = gross - idle rate x the bar period (the bar loop's time / its bars), at least 0
  (a process with no work per bar, the orchestrator, may cost less than its idle estimate: 0, not a negative
  figure taken off the others' in the sum); the six
  services' net sum and net per symbol (target at most 1 ms per symbol with 20 symbols), the simulator apart, and
  the same less what the bench's status requests cost paper and the executor (see the settle wait above); the
  preditor's net CPU per bar against the floor's mean compute (target at most 1.5x); and the executor's connector
  requests per bar: where the work is;
- --skeleton-bars N (default 0: none): before each boot, the order path's own floor
  (bench/order_path_floor_bench.py: the compute, the two write-ahead fdatasyncs and the hops, three processes doing
  nothing else) over N bar times of each kind, a second apart; printed beside the system's bar close -> order sent
  (what the services add to the least the architecture costs on this machine, in the same run);
- acceptance: each line of issue 15 the bench measures, its value, target and PASS / FAIL (the durability line is
  the chaos suite's and the parity tests', not measured here).
- --slowest N: the services mark their stages in trace files (common/trace.py: the connector's bars published,
  order requests in and orders sent, the preditor's signals published, the executor's positions asked and in, its
  write-ahead intent durable and its orders out; every process's fdatasyncs, garbage collections of the older
  generations and loop turns over 1 ms, persistence's WAL checkpoints); after each run's bars, its N slowest bars
  and the median one stage by stage, with what the processes did meanwhile (bench/bar_trace.py, which also reads a
  kept run's files: --keep);
- --sim-nice N: the simulator's threads at niceness N once RUNNING (default 0, unchanged). On two cores the
  simulator, woken by a flight's first order, takes a core from the connector still writing the rest (the
  connector's release step 1.5 ms wall for 0.56 ms of CPU, p50, at 50 symbols; BENCHMARKS.md, ninth step, i15o);
  a remote broker does not;
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
from collections import Counter
from pathlib import Path

import psutil
import zmq

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import bar_trace  # noqa: E402
from harness import Home  # noqa: E402
from measure import CpuSample, cpu_sample, cpu_used_s, net_ms, pct, verdict  # noqa: E402
from order_path_floor_bench import run_skeleton  # noqa: E402
from preditor_bench import in_process_twenty  # noqa: E402
from system.sub_reader import SubReader  # noqa: E402
from system.trading_rig import symbols_overlay, synthetic_symbols  # noqa: E402

from common import bus, config, keys, messages, trace  # noqa: E402
from common.twin.bars import load_bars_csv  # noqa: E402
from services.connector.sim.control import control  # noqa: E402

CSV = REPO / "data" / "EURUSD_H1_2017.csv"
MODEL = REPO / "models" / "EURUSD_H1.zip"
START_BAR = 1100  # the simulator's default: 1100 closed bars before the replay
HISTORY = 1000
PROGRAMS = (*config.SERVICES, "sim-broker")
SETTLE_BACKOFF_S = (0.02,)  # a burst's settle wait: the wait before each status check
SETTLE_PUBLISHERS = ("connector", "preditor", "executor", "paper", "orchestrator")  # the bench's SUB
TARGET_LATENCY_RATIO = 2.5  # p99 bar close -> order sent / the floor's p99, with 20 and with 50 symbols
TARGET_MS_PER_SYMBOL = 1.0  # the six services' CPU per bar net of idle, per symbol, with 20 symbols
TARGET_PREDITOR_RATIO = 1.5  # the preditor's CPU per bar / its in-process compute
TARGET_THROUGHPUT_RATIO = 0.5  # burst until the last ack / the in-process backtest
BURST_SERVICES = ("connector", "preditor", "executor", "paper", "persistence")  # their counters over the burst
BACKTEST_REPEATS = 15  # timed passes of the in-process backtest (the best CPU-time rate is the divisor)
EXECUTOR_COUNTERS = ("signals_seen", "signals_evaluated", "signals_superseded", "positions_requests",
                     "symbol_info_requests", "account_requests", "orders_sent", "closes_sent")
PERSISTENCE_COUNTERS = ("writes", "records_acked")
SENDERS = ("executor", "paper", "connector", "orchestrator")  # the services that persist records (outbox_writes)
CLOCKS = {
    "runtime": {"heartbeat_interval_s": 1.0, "hello_interval_s": 0.25, "request_timeout_ms": 2000},
    "orchestrator": {"heartbeat_timeout_s": 5.0, "restart_limit": 100, "step_timeout_s": 1800},
}


class Tap:
    """One SUB on the connector's, the preditor's, the executor's, paper's and the orchestrator's PUB, read by its own
    thread: when each bar, signal and ack (symbol, bar time) arrived (time.monotonic(), the connector's clock too);
    and for the settle wait, in the order received (one publisher's messages arrive in the order it sent them): the
    last of paper's metrics of each symbol and of each bar's acks, and paper's and the executor's heartbeats, which
    say whether their work is done (``pending``, and ``info.outbox``: the records persistence has not acknowledged
    yet); the orchestrator's last system state (the progress lines)."""

    def __init__(self, cfg: config.Config):
        self.bars: dict[tuple[str, int], float] = {}
        self.signals: dict[tuple[str, int], float] = {}
        self.acks: dict[tuple[str, int], tuple[float, messages.Ack]] = {}
        self.ack_seq: dict[tuple[str, int], int] = {}  # the receipt number of each ack
        self.paper_metrics: dict[str, tuple[float, int]] = {}  # when, and the receipt number, of the last
        self.idle_beat: dict[str, int] = {}  # paper / executor: the receipt number of the last heartbeat with no work
        self.beats: Counter[str] = Counter()  # heartbeats received, paper / executor
        self.system = "?"  # the orchestrator's sys.state
        self.connected: list[tuple[float, bool]] = []  # the connector's conn.state, when it arrived
        self.runs = Counter()  # run messages seen: "bars", "signals"
        self.seq = 0  # messages received so far
        self.cond = threading.Condition()
        self._reader = SubReader([cfg.endpoint(s, "pub") for s in SETTLE_PUBLISHERS],
                                 ["bar.", "bars.", "signal.", "signals.", "ack.", "paper.metrics.",
                                  messages.hb_topic("paper"), messages.hb_topic("executor"), messages.SYS_STATE_TOPIC,
                                  messages.CONNECTION_TOPIC], self._take)

    def _take(self, got: list[bus.Received], now: float) -> None:
        with self.cond:
            for r in got:
                self.seq += 1
                b = r.envelope.body
                if isinstance(b, messages.Bar):
                    self.bars.setdefault((b.symbol, b.time), now)
                elif isinstance(b, messages.BarRun):
                    self.runs["bars"] += 1
                    for bar in b.bars:
                        self.bars.setdefault((bar.symbol, bar.time), now)
                elif isinstance(b, messages.Signal):
                    self.signals.setdefault((b.symbol, b.bar_time), now)
                elif isinstance(b, messages.SignalRun):
                    self.runs["signals"] += 1
                    for sig in b.signals:
                        self.signals.setdefault((sig.symbol, sig.bar_time), now)
                elif isinstance(b, messages.ConnectionState):
                    self.connected.append((now, b.connected))
                elif isinstance(b, messages.Ack):
                    self.acks.setdefault((b.symbol, b.bar_time), (now, b))
                    self.ack_seq[(b.symbol, b.bar_time)] = self.seq
                elif isinstance(b, messages.PaperMetrics):
                    self.paper_metrics[b.symbol] = (now, self.seq)
                elif isinstance(b, messages.Heartbeat) and b.service in ("paper", "executor"):
                    self.beats[b.service] += 1
                    # the executor: every record it handed persistence is acknowledged (its acks' records are
                    # spooled before the acks are published); paper: nothing applied waits for its commit either
                    if "outbox" not in b.info and (b.service == "executor" or b.pending == 0):
                        self.idle_beat[b.service] = self.seq
                elif isinstance(b, messages.SysState):
                    self.system = b.state + (f" {b.issues}" if b.issues else "")
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

    def wait_connected(self, connected: bool, since: float, timeout: float) -> float | None:
        """When the connector said it is (dis)connected after ``since``; None: not within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                at = next((t for t, c in self.connected if t >= since and c == connected), None)
                if at is not None:
                    return at
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.05))

    def settled(self, symbols: list[str], bar_time: int, since: float) -> bool:
        """Has the system settled on the bar closed at ``since``, as its publications say? Paper's metrics of every
        symbol arrived after ``since`` (published by the commit that applied the bar's signal: one a bar per
        account), then a heartbeat of paper's with nothing pending and no record unacknowledged; every symbol's ack
        of the bar, then a heartbeat of the executor's with no record unacknowledged. Called with ``cond`` held."""
        metrics = [self.paper_metrics.get(s, (-1.0, 0)) for s in symbols]
        if any(t < since for t, _ in metrics):
            return False
        acks = [self.ack_seq.get((s, bar_time)) for s in symbols]
        if any(a is None for a in acks):
            return False
        return (self.idle_beat.get("paper", 0) > max(n for _, n in metrics)
                and self.idle_beat.get("executor", 0) > max(acks))

    def wait_settled(self, symbols: list[str], bar_time: int, since: float, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.settled(symbols, bar_time, since):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        self._reader.close()


class Settler:
    """Waits until the system has settled on a bar (paper has applied every symbol's signal, and persistence has
    acknowledged what the executor and paper handed it: their outboxes are empty). A bar closed one at a time is
    seen settled from what the services publish anyway (``Tap.settled``: nothing asked of them, their CPU per bar
    is theirs alone); a burst's or a catch-up's last bar (no CPU measured then) by asking ``status`` with a wait in
    between. Counts its requests."""

    def __init__(self, home: Home, tap: Tap):
        self.home, self.tap = home, tap
        self.calls: Counter[str] = Counter()  # status requests, per process asked

    def status(self, service: str) -> dict:
        self.calls[service] += 1
        return self.home.status_of(service, timeout_ms=5000)

    def paper_settled(self, symbols: list[str], bar_time: int) -> bool:
        paper = self.status("paper")
        accounts = paper.get("accounts", {})
        applied = {s: (accounts.get(s) or {}).get("last_bar_time") or 0 for s in symbols}  # None: no bar yet
        return not paper["outbox"]["pending"] and all(t >= bar_time for t in applied.values())

    def executor_settled(self) -> bool:
        return self.status("executor")["outbox"]["pending"] == 0

    def wait(self, symbols: list[str], bar_time: int, timeout: float, since: float | None = None,
             backoff: tuple[float, ...] = SETTLE_BACKOFF_S) -> bool:
        """``since``: when the bar was closed (one bar: the publications say when it is settled); None: poll the
        status from now."""
        if since is not None:
            return self.tap.wait_settled(symbols, bar_time, since, timeout)
        deadline = time.monotonic() + timeout
        paper_done = False  # paper is not asked again once it has settled on the bar: nothing more comes to it
        for k in range(1_000_000):
            time.sleep(max(0.0, min(backoff[min(k, len(backoff) - 1)], deadline - time.monotonic())))
            try:
                paper_done = paper_done or self.paper_settled(symbols, bar_time)
                if paper_done and self.executor_settled():
                    return True
            except (bus.RequestTimeout, bus.RequestFailed):
                pass
            if time.monotonic() >= deadline:
                break
        return False


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


def renice(pid: int, niceness: int) -> int:
    """Every thread of `pid` at `niceness` (the simulator: the broker's stand-in, remote in production, then yields
    the two cores to the services it serves); how many threads."""
    tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    for tid in tids:
        os.setpriority(os.PRIO_PROCESS, tid, niceness)
    return len(tids)


def pids_of(home: Home) -> dict[str, int]:
    return {prog: home.pid_of(prog) for prog in PROGRAMS}


def cpu_now(pids: dict[str, int]) -> dict[str, CpuSample | None]:
    """CPU time used so far by each process (bench/measure.py)."""
    return {prog: cpu_sample(pid) if pid else None for prog, pid in pids.items()}


def idle_ms_per_s(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Each process's CPU over ``seconds`` with no bar closed and nothing asked by the bench (heartbeats, timers,
    the orchestrator's watch): ms per second."""
    c0, t0 = cpu_now(pids), time.monotonic()
    time.sleep(seconds)
    c1, dt = cpu_now(pids), time.monotonic() - t0
    return {p: 1000 * cpu_used_s(c0[p], c1[p]) / dt for p in pids}


def status_cost_ms(home: Home, pids: dict[str, int], idle: dict[str, float], calls: int = 20) -> dict[str, float]:
    """CPU ms one ``status`` request costs paper and the executor (``calls`` in a row, their idle rate taken off):
    what the settle wait adds to their CPU per bar."""
    out = {}
    for service in ("paper", "executor"):
        c0, t0 = cpu_sample(pids[service]), time.monotonic()
        for _ in range(calls):
            home.status_of(service, timeout_ms=5000)
        c1, dt = cpu_sample(pids[service]), time.monotonic() - t0
        out[service] = (1000 * cpu_used_s(c0, c1) - idle.get(service, 0.0) * dt) / calls
    return out


def cpu_per_bar(c0: dict[str, CpuSample | None], c1: dict[str, CpuSample | None], idle: dict[str, float],
                n_bars: int, period_s: float, restarted: set[str]) -> dict[str, dict[str, float]]:
    """Gross CPU ms per bar, the idle cost over a bar period (ms) and net = gross - idle, per process; a process
    restarted in between (another pid) has no figure."""
    out: dict[str, dict[str, float]] = {}
    for p in PROGRAMS:
        gross = 1000 * cpu_used_s(c0[p], c1[p]) / n_bars if p not in restarted else float("nan")
        rate = idle.get(p, float("nan"))
        out[p] = {"gross": gross, "idle_ms_per_s": rate, "idle": rate * period_s,
                  "net": net_ms(gross, rate, period_s)}
    return out


def run(n: int, args: argparse.Namespace, bars, curve: bool = False) -> dict:
    times = [int(t) for t in bars[:, 0]]
    symbols = synthetic_symbols(n, args.offset_bars)
    n_bars = args.bars_one if n == 1 else args.bars
    res: dict = {"symbols": n, "curve": curve}
    if args.floor_bars:
        # before the boot: the floor has the cores to itself
        print(f"\n== {n} symbol(s): the reference floor, {n} models stepped in-process over {args.floor_bars} bar "
              "times ...", flush=True)
        res["floor"] = in_process_twenty(bars, n=args.floor_bars, n_models=n, distinct=True)
        print(f"    floor p50 {res['floor']['p50_ms']:.2f} ms, p99 {res['floor']['p99_ms']:.2f} ms, mean "
              f"{res['floor']['mean_ms']:.2f} ms", flush=True)
    if args.skeleton_bars and n > 1:
        print(f"\n== {n} symbols: the order path's own floor, {2 * args.skeleton_bars} bar times a second apart ...",
              flush=True)
        res["skeleton"] = run_skeleton(n, args.skeleton_bars, 1.0)[True]
    root = Path(tempfile.mkdtemp(prefix=f"oracle-pipe{n}-"))
    res["home"] = str(root)
    home = tap = None
    try:
        home = make_home(root, symbols, args.offset_bars,
                         config.merge(json.loads(args.config_json), {"wire": {"curve": curve}}))
        if args.slowest:  # the services inherit it from supervisord, which inherits it from this process
            traces = root / "trace"
            traces.mkdir()
            os.environ[trace.ENV] = str(traces)
        ctl = home.config().broker.sim.control_port
        if curve:  # every program's keypair, and this bench's own sockets with the operator's
            cfg = home.config()
            keys.init(cfg.path(cfg.wire.keys_dir), keys.names(cfg.programs()))
            keys.secure_process(cfg, keys.OPERATOR)
        tap = Tap(home.config())
        settler = Settler(home, tap)
        print(f"\n== {n} symbol(s): booting under supervisord (warmup {HISTORY} bars per model) ...", flush=True)
        res["boot_s"] = boot(home, n)
        print(f"    RUNNING after {res['boot_s']:.1f} s", flush=True)
        time.sleep(2.0)  # the account updates and the first heartbeats after RUNNING
        res["rss_warm"] = rss_mib(home)
        pids = pids_of(home)
        if args.sim_nice:
            res["sim_nice"] = renice(pids["sim-broker"], args.sim_nice)
            print(f"    the simulator's threads at nice {args.sim_nice}: {res['sim_nice']}", flush=True)
        if args.idle_s > 0:
            print(f"    idle window: {args.idle_s:g} s, no bar ...", flush=True)
            res["idle_ms_per_s"] = idle_ms_per_s(pids, args.idle_s)
        else:
            res["idle_ms_per_s"] = {p: float("nan") for p in PROGRAMS}
        res["status_cost_ms"] = status_cost_ms(home, pids, res["idle_ms_per_s"] if args.idle_s > 0 else {})
        per_bar_ack, per_bar_signal, bar_signal, signal_ack, order_bar_ack = [], [], [], [], []
        order_signal_ack, settle, bar_first = [], [], []
        missing = unsettled = 0
        ex0 = settler.status("executor")["progress"]
        pe0 = home.status_of("persistence", timeout_ms=5000)["progress"]
        sends0 = {p: home.status_of(p, timeout_ms=5000)["progress"].get("outbox_writes", 0) for p in SENDERS}
        settler.calls.clear()
        with tap.cond:
            beats0 = Counter(tap.beats)
        cpu0 = cpu_now(pids)
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
            if not args.no_settle and not settler.wait(symbols, t, 120, since=last_close):
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
                with tap.cond:
                    state = tap.system  # the orchestrator's sys.state (not asked: it publishes it every second)
                print(f"    {i + 1}/{n_bars} bars, {(i + 1) / (now - t_start):.1f} bars/s; system {state}", flush=True)
        elapsed = time.monotonic() - t_start
        cpu1 = cpu_now(pids)
        if args.slowest:
            res["slowest"] = bar_trace.report(root / "trace", args.slowest)
            print("\n".join(res["slowest"]), flush=True)
        res["status_calls_per_bar"] = {k: v / n_bars for k, v in settler.calls.items()}
        res["beats_per_bar"] = {k: (tap.beats[k] - beats0[k]) / n_bars for k in ("paper", "executor")}
        restarted = {p for p, pid in pids_of(home).items() if pid != pids[p]}
        res["cpu"] = cpu_per_bar(cpu0, cpu1, res["idle_ms_per_s"], n_bars, elapsed / n_bars, restarted)
        ex1 = home.status_of("executor", timeout_ms=5000)["progress"]
        res["executor_per_bar"] = {k: (ex1.get(k, 0) - ex0.get(k, 0)) / n_bars for k in EXECUTOR_COUNTERS}
        pe1 = home.status_of("persistence", timeout_ms=5000)["progress"]
        res["persistence_per_bar"] = {k: (pe1.get(k, 0) - pe0.get(k, 0)) / n_bars for k in PERSISTENCE_COUNTERS}
        res["persistence_per_bar"].update({
            f"from {p}": (home.status_of(p, timeout_ms=5000)["progress"].get("outbox_writes", 0) - sends0[p]) / n_bars
            for p in SENDERS})
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
            res["burst_first"] = control(ctl, "status")["bar_index"]  # the forming bar: the burst's first to close
            prog_b0 = {sv: home.status_of(sv, timeout_ms=5000)["progress"] for sv in BURST_SERVICES}
            ex_b0, con_b0 = prog_b0["executor"], prog_b0["connector"]
            cpu_b0 = cpu_now(pids)
            t0 = time.monotonic()
            r = control(ctl, "advance", bars=args.throughput_bars)
            t_control = time.monotonic()
            last = times[r["bar_index"] - 1]
            ok = tap.wait_acks(symbols, last, 60 + args.throughput_bars)
            res["burst_ack_s"] = time.monotonic() - t0
            cpu_b1 = cpu_now(pids)
            res["burst_timeline"] = burst_timeline(tap, symbols[0], t0, t_control, last)
            prog_b1 = {sv: home.status_of(sv, timeout_ms=5000)["progress"] for sv in BURST_SERVICES}
            ex_b1, con_b1 = prog_b1["executor"], prog_b1["connector"]
            res["burst_progress"] = {sv: {k: v - prog_b0[sv].get(k, 0) for k, v in prog_b1[sv].items()
                                          if isinstance(v, int | float) and v != prog_b0[sv].get(k, 0)}
                                     for sv in BURST_SERVICES}
            res["burst_counters"] = {**{k: ex_b1.get(k, 0) - ex_b0.get(k, 0) for k in EXECUTOR_COUNTERS},
                                     **{f"connector {k}": con_b1.get(k, 0) - con_b0.get(k, 0)
                                        for k in ("orders", "closes_requested")}}
            res["burst_cpu_ms"] = {p: 1000 * cpu_used_s(cpu_b0[p], cpu_b1[p]) if p not in restarted else float("nan")
                                   for p in PROGRAMS}
            # every 20 ms: the burst's settle time is a figure of its own (no bar's CPU is measured here)
            ok = settler.wait(symbols, last, 60 + args.throughput_bars) and ok
            res["burst_s"] = time.monotonic() - t0
            res["burst_bars"] = args.throughput_bars
            res["burst_acks"] = len(tap.acks) - before
            res["burst_complete"] = ok
        if n == 1 and args.catch_up_bars:
            print(f"    catch-up: {args.catch_up_bars} bars from the broker's history after a reconnect ...",
                  flush=True)
            res.update(catch_up(home, tap, settler, symbols, times, pids, args.catch_up_bars, ctl))
        s = home.status()
        res["system_end"] = s["system"]
        res["issues"] = s.get("issues", [])
        res["restarts"] = {k: f"{v['restarts']} ({v.get('last_restart_reason')})" for k, v in s["services"].items()
                           if v.get("restarts")}
        return res
    finally:
        os.environ.pop(trace.ENV, None)
        if tap is not None:
            tap.close()
        if home is not None:
            home.close()
        bus.plain()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def catch_up(home: Home, tap: Tap, settler: Settler, symbols: list[str], times: list[int], pids: dict[str, int],
             n_bars: int, ctl: int) -> dict:
    """The replay form of a burst (``catch_up_*``): bars the connector receives faster than real time from the
    broker's trendbar history (``ProtoOAGetTrendbarsReq``, as the real cTrader serves a catch-up), not as live spots.
    The simulator drops the connection and refuses new ones; its clock moves ``n_bars`` on meanwhile (no session: no
    spot event sent); then it accepts again, the connector reconnects (its back-off), fills the gap from history and
    publishes the bars (as runs with ``connector.bar_runs``, else one by one). Timed from the connector's
    ``conn.state`` connected (the bench's SUB; the gap's history request follows it) to the last bar's ack, and to
    paper and persistence done; the stages as the SUB saw them, each process's CPU over it."""
    first = control(ctl, "status")["bar_index"]  # the forming bar: the first to close
    t_drop = time.monotonic()
    control(ctl, "drop", refuse_s=3600)
    if tap.wait_connected(False, t_drop, 30) is None:
        raise RuntimeError("the connector did not say it was disconnected within 30 s")
    r = control(ctl, "advance", bars=n_bars)
    last = times[r["bar_index"] - 1]
    prog0 = {sv: home.status_of(sv, timeout_ms=5000)["progress"] for sv in BURST_SERVICES}
    cpu0 = cpu_now(pids)
    t_clear = time.monotonic()
    control(ctl, "clear")
    up = tap.wait_connected(True, t_clear, 60)
    ok = up is not None and tap.wait_acks(symbols, last, 60 + n_bars)
    cpu1 = cpu_now(pids)
    with tap.cond:
        t_ack = max((tap.acks[(s, last)][0] for s in symbols if (s, last) in tap.acks), default=float("nan"))
    up = t_clear if up is None else up
    timeline = burst_timeline(tap, symbols[0], up, up, last)
    prog1 = {sv: home.status_of(sv, timeout_ms=5000)["progress"] for sv in BURST_SERVICES}
    ok = settler.wait(symbols, last, 60 + n_bars) and ok
    t_settled = time.monotonic()
    with tap.cond:
        runs = dict(tap.runs)
    return {
        "catch_up_first": first, "catch_up_bars": n_bars, "catch_up_complete": ok,
        "catch_up_reconnect_s": up - t_clear, "catch_up_ack_s": t_ack - up, "catch_up_s": t_settled - up,
        "catch_up_timeline": timeline, "catch_up_runs": runs,
        "catch_up_cpu_ms": {p: 1000 * cpu_used_s(cpu0[p], cpu1[p]) for p in PROGRAMS},
        "catch_up_progress": {sv: {k: v - prog0[sv].get(k, 0) for k, v in prog1[sv].items()
                                   if isinstance(v, int | float) and v != prog0[sv].get(k, 0)}
                              for sv in BURST_SERVICES},
    }


def burst_timeline(tap: Tap, symbol: str, t0: float, t_control: float, last: int) -> dict:
    """When the burst's stages reached the bench's SUB (ms after the control command was sent): the simulator's
    reply (all its bars processed and written), the connector's bars, the preditor's signals, the executor's acks
    (first, half, last), and the acks that carried an order."""
    with tap.cond:
        bars = sorted(v for (s, t), v in tap.bars.items() if s == symbol and v >= t0 and t <= last)
        sigs = sorted(v for (s, t), v in tap.signals.items() if s == symbol and v >= t0 and t <= last)
        acks = sorted(((v, a) for (s, t), (v, a) in tap.acks.items() if s == symbol and v >= t0 and t <= last),
                      key=lambda va: va[0])

    def stage(xs: list[float]) -> dict:
        ms = [1000 * (x - t0) for x in xs]
        return {"n": len(ms), "first": ms[0] if ms else float("nan"), "half": ms[len(ms) // 2] if ms else float("nan"),
                "last": ms[-1] if ms else float("nan")}

    return {"control_ms": 1000 * (t_control - t0), "bars": stage(bars), "signals": stage(sigs),
            "acks": stage([v for v, _ in acks]),
            "order_acks": stage([v for v, a in acks if "client_order_id" in a.details])}


def backtest_rate(first: int, n_bars: int, repeats: int = BACKTEST_REPEATS) -> dict:
    """Bars/s of the twin stepping bars[first:first+n] in this process from the state warmed up before them (the
    preditor's 1000 bars of history): one pass untimed (caches, allocator, the policy's first calls), then the best
    of ``repeats`` timed passes from the same state, each timed by its CPU time (the thread's: torch on one thread),
    which waiting for a core does not stretch (a single pass timed by the wall clock moved 3.7k-6.9k bars/s between
    runs with the other helpers' load); the spread and the best wall-clock rate are printed."""
    import torch

    from common.twin.twin import initial_state, run
    from services.preditor.model_file import load_model

    torch.set_num_threads(1)
    bars = load_bars_csv(CSV)
    model = load_model(MODEL)
    state, _ = run(model.spec, initial_state(model.model_id), bars[first - HISTORY:first], model.policy_fn)
    run(model.spec, state, bars[first:first + n_bars], model.policy_fn)  # warm
    rates, wall = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        run(model.spec, state, bars[first:first + n_bars], model.policy_fn)
        rates.append(n_bars / (time.thread_time() - c0))
        wall.append(n_bars / (time.perf_counter() - t0))
    return {"rate": max(rates), "median": pct(rates, 50), "min": min(rates), "wall": max(wall),
            "repeats": repeats, "bars": n_bars, "first": first}


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


def fmt2(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.2f}"


def ratio(a: float | None, b: float | None) -> float:
    return a / b if a is not None and b and a == a and b == b else float("nan")


def run_label(r: dict) -> str:
    """A run's symbol count, marked when its wire was CURVE."""
    return f"{r['symbols']}{' CURVE' if r.get('curve') else ''}"


def curve_rows(results: list[dict]) -> None:
    """--curve both: bar close -> order sent with the wire CURVE off and on, same symbols, same run."""
    pairs = [(off, on) for off in results for on in results
             if off["symbols"] == on["symbols"] and not off.get("curve") and on.get("curve")]
    if not pairs:
        return
    print("\nbar close -> order sent (the connector's samples, ms) with wire.curve off and on, same run: every socket "
          "of the six processes CURVE (ipc), handshakes authenticated by the ZAP handler")
    print("| symbols | orders off / on | p50 off | p50 on | p99 off | p99 on | ratio p50 | ratio p99 | "
          "bar -> last ack p50 off / on |")
    print("|---|---|---|---|---|---|---|---|---|")
    for off, on in pairs:
        lo, ln = off["latency"], on["latency"]
        print(f"| {off['symbols']} | {lo['count']} / {ln['count']} | {fmt(lo['p50'])} | {fmt(ln['p50'])} | "
              f"{fmt(lo['p99'])} | {fmt(ln['p99'])} | {fmt2(ratio(ln['p50'], lo['p50']))} | "
              f"{fmt2(ratio(ln['p99'], lo['p99']))} | {fmt(pct(off['bar_to_last_ack_ms'], 50))} / "
              f"{fmt(pct(on['bar_to_last_ack_ms'], 50))} |")


def six_net(r: dict) -> float:
    return sum(r["cpu"][p]["net"] for p in config.SERVICES)


def requests_ms(r: dict, prog: str) -> float:
    """What the bench's status requests cost ``prog`` per bar (paper and the executor; 0 for the others)."""
    return r["status_calls_per_bar"].get(prog, 0.0) * r["status_cost_ms"].get(prog, 0.0)


def latency_rows(results: list[dict]) -> None:
    print("\nbar close -> order sent (the connector's samples) against the reference floor of the same run (N models "
          "stepped one by one in-process, each with its own copy, measured before the boot), ms")
    print("| symbols | bars | orders (opens + closes) | p50 | p99 | max | floor p50 | floor p99 (bar times) | "
          "ratio p50 | ratio p99 (target <= 2.5 with 20 and 50) | boot to RUNNING |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        lat, fl = r["latency"], r.get("floor") or {}
        print(f"| {run_label(r)} | {r['bars']} | {lat['count']} ({r['orders']} + {r['closes']}) | "
              f"{fmt(lat['p50'])} | {fmt(lat['p99'])} | {fmt(lat['max'])} | {fmt2(fl.get('p50_ms'))} | "
              f"{fmt2(fl.get('p99_ms'))} ({fl.get('bar_times', '-')}) | {fmt2(ratio(lat['p50'], fl.get('p50_ms')))} | "
              f"{fmt2(ratio(lat['p99'], fl.get('p99_ms')))} | {r['boot_s']:.1f} s |")
    with_skeleton = [r for r in results if r.get("skeleton")]
    if not with_skeleton:
        return
    print("\nthe same against the order path's own floor of the same run (bench/order_path_floor_bench.py: the "
          "compute, the two write-ahead fdatasyncs and the hops, nothing else), ms")
    print("| symbols | system p50 / p99 | skeleton p50 / p99 | skeleton p99 / floor p99 | system p99 / skeleton p99 |")
    print("|---|---|---|---|---|")
    for r in with_skeleton:
        lat, sk, fl = r["latency"], r["skeleton"], r.get("floor") or {}
        print(f"| {run_label(r)} | {fmt(lat['p50'])} / {fmt(lat['p99'])} | {fmt2(sk['p50'])} / {fmt2(sk['p99'])} | "
              f"{fmt2(ratio(sk['p99'], fl.get('p99_ms')))} | {fmt2(ratio(lat['p99'], sk['p99']))} |")


def cpu_rows(results: list[dict], args: argparse.Namespace) -> None:
    print(f"\nCPU per bar while closing bars one at a time (ms, the threads' runtime): gross; idle = the process's "
          f"CPU over {args.idle_s:g} s with no bar (ms/s) x the bar period; net = gross - idle, at least 0. The six "
          "services summed, the simulator (the broker's stand-in) apart")
    print("| symbols | bar period | measure | " + " | ".join(PROGRAMS) + " | six services | six, per symbol |")
    print("|---|---|---|" + "---|" * (len(PROGRAMS) + 2))
    for r in results:
        period = 1000 * r["lockstep_s"] / r["bars"]
        for key, label in (("gross", "gross ms/bar"), ("idle_ms_per_s", "idle ms/s"), ("idle", "idle ms/bar"),
                           ("net", "net ms/bar")):
            cells = [fmt2(r["cpu"][p][key]) for p in PROGRAMS]
            six = sum(r["cpu"][p][key] for p in config.SERVICES)
            per_symbol = fmt2(six / r["symbols"]) if key in ("gross", "net") else ""
            print(f"| {run_label(r)} | {period:.0f} ms | {label} | " + " | ".join(cells) + f" | {fmt2(six)} | "
                  f"{per_symbol} |")
        less = {p: r["cpu"][p]["net"] - requests_ms(r, p) for p in PROGRAMS}
        six = sum(less[p] for p in config.SERVICES)
        print(f"| {run_label(r)} | {period:.0f} ms | net, less the bench's status requests | "
              + " | ".join(fmt2(less[p]) for p in PROGRAMS) + f" | {fmt2(six)} | {fmt2(six / r['symbols'])} |")
    print("\nthe preditor's net CPU per bar against its in-process compute (the floor's mean per bar time)")
    print("| symbols | preditor net ms/bar | in-process compute ms/bar | ratio (target <= 1.5) |")
    print("|---|---|---|---|")
    for r in results:
        mean = (r.get("floor") or {}).get("mean_ms")
        net = r["cpu"]["preditor"]["net"]
        print(f"| {run_label(r)} | {fmt2(net)} | {fmt2(mean)} | {fmt2(ratio(net, mean))} |")
    print("\nthe bench's status requests per bar while closing bars one at a time (none: the settle wait and the "
          "progress lines read what the services publish), what one costs paper and the executor (20 in a row after "
          "the idle window, net of idle), so what they add to their CPU per bar above; and the heartbeats of paper "
          "and the executor per bar (the settle wait's cue: each beats when its work of a burst is done; idle, one "
          "a heartbeat interval)")
    print("| symbols | paper | executor | orchestrator | ms per status call, paper / executor | status requests' cost "
          "per bar, paper / executor (ms) | heartbeats per bar, paper / executor |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        c, cost, beats = r["status_calls_per_bar"], r["status_cost_ms"], r.get("beats_per_bar", {})
        print(f"| {run_label(r)} | " + " | ".join(f"{c.get(k, 0):.2f}" for k in ("paper", "executor", "orchestrator"))
              + f" | {fmt2(cost['paper'])} / {fmt2(cost['executor'])} | {fmt2(c.get('paper', 0) * cost['paper'])} / "
              f"{fmt2(c.get('executor', 0) * cost['executor'])} | {fmt2(beats.get('paper'))} / "
              f"{fmt2(beats.get('executor'))} |")


def throughput_rows(r: dict, baselines: dict, args: argparse.Namespace) -> None:
    bt = baselines["rate"]
    print("\nreplay throughput, 1 symbol (bars/s; the in-process backtest measured after the run's shutdown)")
    print("| measure | bars/s | vs in-process backtest |")
    print("|---|---|---|")
    b = baselines["backtest"]
    print(f"| in-process backtest (twin step, the burst's {b['bars']} bars from bar {b['first']}, warm state; CPU "
          f"time, best of {b['repeats']} passes, median {b['median']:.0f}, worst {b['min']:.0f}; best by the wall "
          f"clock {b['wall']:.0f}) | {bt:.0f} | 1 |")
    lockstep = r["lockstep_bars_per_s"]
    print(f"| whole pipeline, lockstep (next bar when the last is settled, at least {args.bar_gap_s:g} s after "
          f"it: --bar-gap-s), {r['bars']} bars | {lockstep:.1f} | {lockstep / bt:.3f} |")
    if "burst_s" in r:
        rate = r["burst_bars"] / r["burst_s"]
        ack_rate = r["burst_bars"] / r["burst_ack_s"]
        note = "" if r["burst_complete"] else " (incomplete)"
        print(f"| REPLAY THROUGHPUT (acceptance, target >= 0.5x): whole pipeline, burst ({r['burst_bars']} bars in "
              f"one command) until the last bar's ack ({r['burst_acks']} acks: the executor acts on the latest "
              f"signal){note} | {ack_rate:.1f} | {ack_rate / bt:.3f} |")
        print(f"| the same burst until paper and persistence are done{note} | {rate:.1f} | {rate / bt:.3f} |")
        tl = r["burst_timeline"]
        print(f"\nthe burst's stages seen from the bench's SUB (ms after the control command; the simulator replied "
              f"after {tl['control_ms']:.1f} ms: every bar processed and written)")
        print("| stage | count | first | half | last |")
        print("|---|---|---|---|---|")
        for key, label in (("bars", "bars (connector)"), ("signals", "signals (preditor)"), ("acks", "acks (executor)"),
                           ("order_acks", "acks with an order")):
            st = tl[key]
            print(f"| {label} | {st['n']} | {fmt(st['first'])} | {fmt(st['half'])} | {fmt(st['last'])} |")
        print("\nduring the burst (until the last ack): the executor's and the connector's counters, CPU ms per "
              "process")
        print("| " + " | ".join(r["burst_counters"]) + " |")
        print("|" + "---|" * len(r["burst_counters"]))
        print("| " + " | ".join(str(v) for v in r["burst_counters"].values()) + " |")
        print("| " + " | ".join(PROGRAMS) + " |")
        print("|" + "---|" * len(PROGRAMS))
        print("| " + " | ".join(fmt(r["burst_cpu_ms"][p]) for p in PROGRAMS) + " |")
        print("\nthe services' progress counters that moved during the burst (until the last ack and the counters' "
              "read)")
        for sv, moved in r["burst_progress"].items():
            print(f"- {sv}: " + ", ".join(f"{k} {v:g}" for k, v in sorted(moved.items())))
    if "catch_up_ack_s" in r:
        catch_up_rows(r, baselines)


def catch_up_rows(r: dict, baselines: dict) -> None:
    b = baselines["catch_up_backtest"]
    bt, n = b["rate"], r["catch_up_bars"]
    note = "" if r["catch_up_complete"] else " (incomplete)"
    ack_rate, rate = n / r["catch_up_ack_s"], n / r["catch_up_s"]
    print(f"\ncatch-up (the replay form): {n} bars the connector fills from the broker's trendbar history after a "
          f"reconnect (it reconnected {1000 * r['catch_up_reconnect_s']:.0f} ms after the simulator accepted again: "
          f"its back-off, not counted); timed from its conn.state connected; run messages seen: "
          f"{r['catch_up_runs'] or 'none'}")
    print("| measure | bars/s | vs in-process backtest |")
    print("|---|---|---|")
    print(f"| in-process backtest (the catch-up's {b['bars']} bars from bar {b['first']}, warm state; CPU time, best "
          f"of {b['repeats']}, median {b['median']:.0f}) | {bt:.0f} | 1 |")
    print(f"| REPLAY THROUGHPUT, catch-up: connected -> the last bar's ack{note} | {ack_rate:.1f} | "
          f"{ack_rate / bt:.3f} |")
    print(f"| the same until paper and persistence are done{note} | {rate:.1f} | {rate / bt:.3f} |")
    tl = r["catch_up_timeline"]
    print("| stage (ms after connected) | count | first | half | last |")
    print("|---|---|---|---|---|")
    for key, label in (("bars", "bars (connector)"), ("signals", "signals (preditor)"), ("acks", "acks (executor)"),
                       ("order_acks", "acks with an order")):
        st = tl[key]
        print(f"| {label} | {st['n']} | {fmt(st['first'])} | {fmt(st['half'])} | {fmt(st['last'])} |")
    print("| " + " | ".join(PROGRAMS) + " |")
    print("|" + "---|" * len(PROGRAMS))
    print("| " + " | ".join(fmt(r["catch_up_cpu_ms"][p]) for p in PROGRAMS) + " | (CPU ms, clear -> last ack)")
    for sv, moved in r["catch_up_progress"].items():
        print(f"- {sv}: " + ", ".join(f"{k} {v:g}" for k, v in sorted(moved.items())))


def acceptance_rows(results: list[dict], baselines: dict) -> None:
    by_n: dict[int, dict] = {}
    for r in results:  # with --curve both: the run with CURVE off (the first) is the acceptance's
        by_n.setdefault(r["symbols"], r)
    rows: list[tuple[str, str, str, str]] = []
    for n in (20, 50):
        r = by_n.get(n)
        line = f"p99 bar close -> order sent / floor p99, {n} symbols"
        if r is None or not r.get("floor"):
            rows.append((line, f"not run (--symbols {n}, --floor-bars >= 100)", f"<= {TARGET_LATENCY_RATIO:g}", "-"))
            continue
        x = ratio(r["latency"]["p99"], r["floor"]["p99_ms"])
        rows.append((line, f"{fmt2(x)} ({fmt(r['latency']['p99'])} / {fmt2(r['floor']['p99_ms'])} ms)",
                     f"<= {TARGET_LATENCY_RATIO:g}", verdict(x, TARGET_LATENCY_RATIO)))
    r = by_n.get(20)
    line = "CPU per bar, six services net of idle, per symbol, 20 symbols"
    if r is None:
        rows.append((line, "not run (--symbols 20)", f"<= {TARGET_MS_PER_SYMBOL:g} ms", "-"))
    else:
        x = six_net(r) / 20
        less = (six_net(r) - sum(requests_ms(r, p) for p in config.SERVICES)) / 20
        rows.append((line, f"{fmt2(x)} ms ({fmt2(six_net(r))} ms in all; {fmt2(less)} ms less the bench's status "
                     "requests)", f"<= {TARGET_MS_PER_SYMBOL:g} ms", verdict(x, TARGET_MS_PER_SYMBOL)))
    for r in results:
        mean = (r.get("floor") or {}).get("mean_ms")
        x = ratio(r["cpu"]["preditor"]["net"], mean)
        rows.append((f"preditor CPU per bar (net) / in-process compute, {run_label(r)} symbols",
                     f"{fmt2(x)} ({fmt2(r['cpu']['preditor']['net'])} / {fmt2(mean)} ms)",
                     f"<= {TARGET_PREDITOR_RATIO:g}", verdict(x, TARGET_PREDITOR_RATIO)))
    r = by_n.get(1)
    line = "replay throughput, burst until the last ack / in-process backtest"
    if r is None or "burst_ack_s" not in r or "rate" not in baselines:
        rows.append((line, "not run (--symbols 1, --throughput-bars > 0)", f">= {TARGET_THROUGHPUT_RATIO:g}", "-"))
    else:
        x = r["burst_bars"] / r["burst_ack_s"] / baselines["rate"]
        rows.append((line, f"{x:.3f}" + ("" if r["burst_complete"] else " (incomplete)"),
                     f">= {TARGET_THROUGHPUT_RATIO:g}", verdict(x, TARGET_THROUGHPUT_RATIO, at_most=False)))
    if r is not None and "catch_up_ack_s" in r and "catch_up_backtest" in baselines:
        x = r["catch_up_bars"] / r["catch_up_ack_s"] / baselines["catch_up_backtest"]["rate"]
        rows.append(("replay throughput, catch-up (history after a reconnect) until the last ack / in-process "
                     "backtest", f"{x:.3f}" + ("" if r["catch_up_complete"] else " (incomplete)"),
                     f">= {TARGET_THROUGHPUT_RATIO:g}", verdict(x, TARGET_THROUGHPUT_RATIO, at_most=False)))
    rows.append(("no durability lost (kill -9 at any moment)", "not measured here: the chaos suite, parity tests",
                 "pass unchanged", "-"))
    print("\nacceptance (issue 15), this run")
    print("| line | measured | target | verdict |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def report(results: list[dict], args: argparse.Namespace, baselines: dict) -> None:
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (2 cores: above 2 the figures include CPU waits)")
    hop = baselines.get("hop")
    if hop:
        print(f"\nthis machine: a raw pyzmq REQ/REP round trip after {hop['gap_s']:g} s idle (ipc, another process, "
              f"{hop['n']} trips): p50 {hop['p50']:.3f} ms, p99 {hop['p99']:.3f} ms")
    latency_rows(results)
    print("\nshares, seen from a SUB in the bench (ms, p50 / p99; settled: when the check that found it returned)")
    print("| symbols | bar -> its signal | signal -> its ack | the same, signals with an order | bar -> ack, signals "
          "with an order | bar -> last signal of the bar | bar -> last ack of the bar | bar -> settled (paper, "
          "persistence) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        cells = [f"{fmt(pct(r[k], 50))} / {fmt(pct(r[k], 99))}" for k in
                 ("bar_to_signal_ms", "signal_to_ack_ms", "order_signal_to_ack_ms", "order_bar_to_ack_ms",
                  "bar_to_last_signal_ms", "bar_to_last_ack_ms", "bar_to_settled_ms")]
        print(f"| {run_label(r)} | " + " | ".join(cells) + " |")
    cpu_rows(results, args)
    print("\nthe executor's work per bar (its status counters)")
    print("| symbols | " + " | ".join(EXECUTOR_COUNTERS) + " |")
    print("|---|" + "---|" * len(EXECUTOR_COUNTERS))
    for r in results:
        print(f"| {run_label(r)} | " + " | ".join(f"{r['executor_per_bar'][k]:.2f}" for k in EXECUTOR_COUNTERS) + " |")
    print("\npersistence's work per bar (its status counters: writes = write requests from every sender)")
    for r in results:
        keys = list(r["persistence_per_bar"])
        print("| symbols | " + " | ".join(keys) + " |")
        print("|---|" + "---|" * len(keys))
        print(f"| {run_label(r)} | " + " | ".join(f"{r['persistence_per_bar'][k]:.2f}" for k in keys) + " |")
    print("\nRSS after the warmup / at the end (MiB)")
    print("| symbols | " + " | ".join(PROGRAMS) + " | the six together |")
    print("|---|" + "---|" * (len(PROGRAMS) + 1))
    for r in results:
        cells = [f"{fmt(r['rss_warm'][p])} / {fmt(r['rss_end'][p])}" for p in PROGRAMS]
        six_w = sum(r["rss_warm"][p] for p in config.SERVICES)
        six_e = sum(r["rss_end"][p] for p in config.SERVICES)
        print(f"| {run_label(r)} | " + " | ".join(cells) + f" | {six_w:.1f} / {six_e:.1f} |")
    curve_rows(results)
    one = [r for r in results if r["symbols"] == 1]
    if one and "rate" in baselines:
        throughput_rows(one[0], baselines, args)
    for r in results:
        if r.get("missing_acks") or r.get("unsettled") or r.get("system_end") != "RUNNING" or r.get("restarts"):
            print(f"\n{run_label(r)} symbols: {r.get('missing_acks')} missing acks, {r.get('unsettled')} bars not "
                  f"settled, system {r.get('system_end')} at "
                  f"the end, issues {r.get('issues')}, restarts {r.get('restarts')}")
    acceptance_rows(results, baselines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, nargs="+", default=[1, 20, 50])
    p.add_argument("--bars", type=int, default=200, help="bars closed one at a time per run")
    p.add_argument("--bars-one", type=int, default=500, help="the same for the 1-symbol run (it trades less often)")
    p.add_argument("--throughput-bars", type=int, default=300, help="bars of the burst (1-symbol run; 0 = none)")
    p.add_argument("--catch-up-bars", type=int, default=300,
                   help="bars of the catch-up (1-symbol run, after the burst): history after a reconnect; 0 = none")
    p.add_argument("--offset-bars", type=int, default=24, help="SYNk replays the CSV k * this ahead (0 = aligned)")
    p.add_argument("--bar-gap-s", type=float, default=1.0,
                   help="at least this long between two bars closed one at a time (the broker's rate window)")
    p.add_argument("--idle-s", type=float, default=10.0,
                   help="idle window after RUNNING (no bar) for the CPU net of idle cost (0 = none: no net figures)")
    p.add_argument("--floor-bars", type=int, default=100,
                   help="bar times of the reference floor before each boot (the issue: at least 100; 0 = none)")
    p.add_argument("--skeleton-bars", type=int, default=0,
                   help="bar times of each kind of the order path's own floor before each boot (0 = none)")
    p.add_argument("--no-settle", action="store_true",
                   help="close the next bar once the executor has acked (paper and persistence may lag behind)")
    p.add_argument("--keep", action="store_true", help="keep each throwaway home (logs, database)")
    p.add_argument("--slowest", type=int, default=0,
                   help="the services mark their stages (common/trace.py: a line written per mark, a few us each, "
                        "in the CPU figures); after each run's bars, its N slowest bars stage by stage "
                        "(bench/bar_trace.py)")
    p.add_argument("--sim-nice", type=int, default=0,
                   help="the simulator's threads at this niceness once RUNNING (0: unchanged); e.g. 19: the broker's "
                        "stand-in no longer takes a core from the connector writing a flight's orders, as a remote "
                        "broker would not")
    p.add_argument("--curve", choices=("off", "on", "both"), default="off",
                   help="wire.curve of the runs; both: each symbol count twice, CURVE off then on (compared)")
    p.add_argument("--config-json", default="{}",
                   help='settings merged into the config, e.g. \'{"preditor": {"fsync_snapshots": false}}\'')
    args = p.parse_args()
    if 0 < args.floor_bars < 100:
        print(f"--floor-bars {args.floor_bars}: fewer than the issue's 100 bar times", flush=True)
    print(f"load average at start: {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs", flush=True)
    bars = load_bars_csv(CSV)
    results = []
    baselines: dict = {"hop": wakeup_floor()}  # this machine's, and the backtest's rate
    print(f"raw pyzmq round trip after an idle gap: p50 {baselines['hop']['p50']:.3f} ms, "
          f"p99 {baselines['hop']['p99']:.3f} ms", flush=True)
    curves = {"off": [False], "on": [True], "both": [False, True]}[args.curve]
    for n, curve in ((n, c) for n in args.symbols for c in curves):
        r = run(n, args, bars, curve)
        results.append(r)
        lat = r["latency"]
        print(f"    {run_label(r)} symbol(s): {lat['count']} orders, bar close -> order sent p50 {lat.get('p50')} ms, "
              f"p99 {lat.get('p99')} ms, max {lat.get('max')} ms; lockstep {r['lockstep_bars_per_s']:.1f} bars/s",
              flush=True)
        if n == 1 and "rate" not in baselines:
            # the burst's own bars (else the lockstep's), measured after the shutdown, in this (niced) process
            first, count = r.get("burst_first", START_BAR), r.get("burst_bars", r["bars"])
            baselines["backtest"] = backtest_rate(first, count)
            baselines["rate"] = baselines["backtest"]["rate"]
            if "catch_up_first" in r:
                baselines["catch_up_backtest"] = backtest_rate(r["catch_up_first"], r["catch_up_bars"])
    report(results, args, baselines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
