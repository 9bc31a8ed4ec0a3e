"""The soak: the whole system under the real supervisord trading five M15 models through weeks of bars in
accelerated time, with faults; what tests/system/test_soak.py drives and checks.

One `Soak` is one ORACLE_HOME: supervisord with the repository's deploy/supervisord.conf, the simulator as its
sim-broker program on a manual clock (speed 0, `advance bars` counting M15 bars, `spot_interval_s` 60: a spot at
every point, so every M15 bar is whole), the fixture models of tests/fixtures/models/ for EURUSD, GBPUSD, USDJPY,
XAUUSD (gold: a daily break) and EURGBP (a cross). Time is accelerated by closing one M15 bar as soon as the
pipeline has settled on the one before: the preditor decided each symbol's bars that closed, the executor acted on
their signals, the paper accounts stepped, every record they made is durable. Which bars close at each advance is
known in advance from the simulator's own market model (`expected_closes`): a bar closes at its symbol's first
point after it, so gold's last bar before its break closes when gold trades again.

Faults (`plan_faults`): two broker disconnects (`drop`), one kill -9 of the connector, and a token expiry (the
simulator's `expire_token`: the connector refreshes its token and reconnects), each landing right after an
advance, on work in flight; after each the rig waits until the system is RUNNING again with the broker connected,
and notes how long that took. Bar freshness: the soak scales the health limits down to accelerated time
(`HEALTH`), and holds the clock in gold's daily break (forex trading) until every symbol's last bar is older than
the bar timeout, recording what the orchestrator says then: forex stale, gold (closed) not.

What is collected for the checks: every signal and bar on the wire (a SUB read by its own thread, before boot),
every system state with its issues, the simulator's orders and deals, the store's signals, acks and trades.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import shutil
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from harness import REPO, Home, status_map, wait_for
from system.sub_reader import SubReader

from common import bus, messages
from services.connector.sim import catalog
from services.connector.sim.control import control
from services.connector.sim.replay import CsvBar, parse_csv
from services.connector.sim.series import series_for, served_bars

SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "EURGBP")
TIMEFRAME = "M15"
PERIOD = 900
DAY = 86_400
MODELS = REPO / "tests" / "fixtures" / "models"
CSV = REPO / "data" / "EURUSD_H1_2017.csv"
WARMUP = 1000  # preditor.warmup_bars (the default): 1000 M15 bars are about ten trading days before the start
# The token fault: the simulator's `expire_token` control command (every access token expires now; the session
# gets ProtoOAAccountsTokenInvalidatedEvent, the connector refreshes its pair with the simulator's refresh token,
# broker.sim.refresh_token, and authorises again). False leaves it out of the plan.
TOKEN_EXPIRY = True

# The default (short) soak: Thursday 21 Dec 2017 20:00 UTC to Tuesday 26 Dec 00:00: gold's daily break (Thursday
# 22:00 UTC), a weekend, Christmas Eve's late open, Christmas Day (forex and gold closed 08:00-22:00 UTC); about 150
# M15 bars a symbol.
SHORT_START = int(dt.datetime(2017, 12, 21, 20, tzinfo=dt.UTC).timestamp())
SHORT_DAYS = 4 + 1 / 6

# Bar freshness in accelerated time: an M15 bar is stale after 0.004 x 900 s + 1 s = 4.6 s of wall time without one
# (production: 2 x 900 + 120 s). Long enough for a bar step and a fault's healing, short enough that a hold in a
# closed period crosses it within seconds.
HEALTH = {"bar_timeout_factor": 0.004, "bar_grace_s": 1.0}
BAR_LIMIT_S = PERIOD * HEALTH["bar_timeout_factor"] + HEALTH["bar_grace_s"]


def csv_bars() -> list[CsvBar]:
    return parse_csv(CSV.read_text())


def utc(t: float) -> str:
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Window:
    """The replayed stretch: bars closing from the simulator's start bar (a CSV H1 bar) on, until `end`."""

    start: int  # the first replayed bar's open (the CSV bar the simulator starts on)
    end: int
    start_bar: int  # its CSV index

    @property
    def days(self) -> float:
        return (self.end - self.start) / DAY


def window(days: int | None, source: list[CsvBar]) -> Window:
    """`days` None: the short form (SHORT_START, SHORT_DAYS); else the last `days` calendar days of the data, from
    00:00 UTC (30: 2017-11-29 to the end of the data, 2017-12-29 22:00)."""
    data_end = source[-1].time + 3600
    if days is None:
        start, end = SHORT_START, SHORT_START + int(SHORT_DAYS * DAY)
    else:
        start = data_end - days * DAY
        start -= start % DAY
        end = data_end
    index = next(i for i, b in enumerate(source) if b.time >= start)
    return Window(source[index].time, min(end, data_end), index)


@dataclass(frozen=True)
class Fault:
    at: int  # simulated time: injected right after the advance of the first step starting at most a bar before it
    kind: str  # drop | kill | token

    def __str__(self) -> str:
        return f"{self.kind} at {utc(self.at)}"


def plan_faults(w: Window) -> list[Fault]:
    """Two drops, a connector kill -9 and (TOKEN_EXPIRY) a token expiry at fixed fractions of the window: over 30
    days (2017-11-29 00:00 on), a drop on day 6, the kill on day 13, the token on day 20, a drop on the morning of
    Christmas Day (day 26), before the holiday closes the market."""
    span = w.end - w.start
    plan = [(0.2, "drop"), (0.45, "kill"), (2 / 3, "token"), (0.85, "drop")]
    return [Fault(w.start + int(f * span), kind) for f, kind in plan if kind != "token" or TOKEN_EXPIRY]


# ---- the market model: which bars close when -------------------------------------------------------------------
@dataclass
class Expected:
    """Per symbol: the bars the simulator serves from the warmup to the window's end, and when each closes (its
    symbol's first point after it; None: not within the data)."""

    bars: dict[str, list[CsvBar]]
    closes_at: dict[str, list[int | None]]

    def last_closed(self, symbol: str, now: int) -> int | None:
        """The open time of the symbol's newest bar closed at server time `now` by its own next point."""
        last = None
        for bar, at in zip(self.bars[symbol], self.closes_at[symbol], strict=True):
            if at is None or at > now:
                break
            last = bar.time
        return last

    def last_ended(self, symbol: str, now: int) -> int | None:
        """The open time of the symbol's newest bar whose period has ended at `now`. A bar is complete once its
        symbol's market closes, and the connector may publish it before the symbol's next point: its gap fill
        after a reconnect takes every bar that ended by the server time from history (gold's last bar before
        Christmas Day, published at the reopening of forex rather than of gold)."""
        last = None
        for bar in self.bars[symbol]:
            if bar.time + PERIOD > now:
                break
            last = bar.time
        return last

    def replayed(self, symbol: str, first: int, now: int) -> list[CsvBar]:
        """The symbol's bars opening at or after `first` and closed at `now` by their next point: one signal each
        (`ended` may add the one before the symbol's market reopens)."""
        return [b for b, at in zip(self.bars[symbol], self.closes_at[symbol], strict=True)
                if b.time >= first and at is not None and at <= now]

    def ended(self, symbol: str, first: int, now: int) -> list[int]:
        return [b.time for b in self.bars[symbol] if first <= b.time and b.time + PERIOD <= now]


def expected_closes(source: list[CsvBar], w: Window) -> Expected:
    # history: enough hours that WARMUP M15 bars precede the start, weekends included
    lo = w.start - 21 * DAY
    bars, closes = {}, {}
    for sym in SYMBOLS:
        spec = catalog.CATALOG[sym]
        served = served_bars(source, spec, TIMEFRAME, lo, w.end)
        assert sum(b.time < w.start for b in served) >= WARMUP, f"{sym}: fewer than {WARMUP} bars before the start"
        series = series_for(source, spec, "EURUSD")
        points = [p.time for i in range(series.index_of(lo), len(source)) for p in series.points(i)
                  if p.time >= lo]
        closes[sym] = [next_point(points, b.time + PERIOD) for b in served]
        bars[sym] = served
    return Expected(bars, closes)


def next_point(points: list[int], t: int) -> int | None:
    import bisect

    i = bisect.bisect_left(points, t)
    return points[i] if i < len(points) else None


# ---- the home ----------------------------------------------------------------------------------------------------
def executor_symbols(home: Home) -> None:
    """Every soak symbol enabled with the reference lots and a 10 USD stop loss; risk limits out of the way (a month
    of a random-ish model's costs must not halt openings: the risk guard is tested elsewhere)."""
    raw = json.loads((REPO / "config" / "executor_symbols.json").read_text())
    raw["_risk"].update(dd_limit_pct=60.0, dd_peak_limit_pct=70.0, dd_emergency_pct=90.0,
                        max_consecutive_losses=1_000_000)
    entry = {**raw["EURUSD"], "enabled": True, "sl_usd": 10.0, "max_spread_pips": 5.0}
    for sym in SYMBOLS:
        raw[sym] = {**entry, "notes": f"soak: {sym} M15 fixture model"}
    (home.root / "config" / "executor_symbols.json").write_text(json.dumps(raw, indent=2))


def overlay(root: Path, w: Window) -> dict:
    models = root / "soak_models"
    models.mkdir()
    for sym in SYMBOLS:
        shutil.copy(MODELS / f"{sym}_{TIMEFRAME}.zip", models)
    return {
        "broker": {"sim": {"speed": 0, "start_bar": w.start_bar, "timeframe": TIMEFRAME, "spot_interval_s": 60}},
        "connector": {"symbols": dict.fromkeys(SYMBOLS, TIMEFRAME)},
        "preditor": {"models_dir": str(models), "warmup_bars": WARMUP},
        "health": HEALTH,
        # a connector restarted while the machine is busy connects, reconciles and fills its gap: more than the
        # harness's 10 s step timeout
        "orchestrator": {"step_timeout_s": 30},
        "runtime": {"request_timeout_ms": 2000},
    }


# ---- what the wire shows -----------------------------------------------------------------------------------------
class Tap:
    """Signals (preditor), bars (connector) and system states (orchestrator) as published, each counted, read by
    its own thread from before the boot on."""

    def __init__(self, home: Home):
        cfg = home.config()
        self.signals: Counter[tuple[str, int]] = Counter()
        self.signal_body: dict[tuple[str, int], messages.Signal] = {}
        self.bars: Counter[tuple[str, int]] = Counter()
        self.states: list[tuple[float, str, tuple[str, ...]]] = []  # (monotonic, state, issues) at each change
        self._lock = threading.Lock()
        self._reader = SubReader([cfg.endpoint(s, "pub") for s in ("preditor", "connector", "orchestrator")],
                                 ("signal.", "signals.", "bar.", "bars.", messages.SYS_STATE_TOPIC), self._take,
                                 home.ctx)

    def _take(self, got: list[bus.Received], now: float) -> None:
        with self._lock:
            for r in got:
                body = r.envelope.body
                if isinstance(body, messages.Signal | messages.SignalRun):  # a run: each of its signals
                    for sig in body.signals if isinstance(body, messages.SignalRun) else (body,):
                        key = (sig.symbol, int(sig.bar_time))
                        self.signals[key] += 1
                        self.signal_body[key] = sig
                elif isinstance(body, messages.BarRun):
                    for bar in body.bars:
                        self.bars[(bar.symbol, int(bar.time))] += 1
                elif isinstance(body, messages.SysState):
                    issues = tuple(body.issues)
                    if not self.states or self.states[-1][1:] != (body.state, issues):
                        self.states.append((now, body.state, issues))
                elif r.envelope.topic.startswith("bar."):
                    self.bars[(body.symbol, int(body.time))] += 1

    def snapshot(self) -> tuple[Counter, dict, Counter, list]:
        with self._lock:
            return Counter(self.signals), dict(self.signal_body), Counter(self.bars), list(self.states)

    def close(self) -> None:
        self._reader.close()


# ---- the run -----------------------------------------------------------------------------------------------------
@dataclass
class Healed:
    fault: Fault
    step: int
    sim_time: int
    seconds: float


@dataclass
class Hold:
    """The clock held where `closed` symbols' market is closed (the others trading) until every symbol's last bar
    is older than the bar timeout: the orchestrator's issues and state then."""

    what: str
    sim_time: int
    closed: tuple[str, ...]
    ages: dict[str, float]
    state: str
    issues: tuple[str, ...]
    market_open: dict[str, bool | None]  # the connector's word, per stream


@dataclass
class Soak:
    root: Path
    w: Window
    source: list[CsvBar]
    log: list[str] = field(default_factory=list)
    healed: list[Healed] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home = Home(self.root, overlay(self.root, self.w))
        executor_symbols(self.home)
        self.port = self.home.config().broker.sim.control_port
        self.expected = expected_closes(self.source, self.w)
        self.tap: Tap | None = None
        self.t0 = time.monotonic()
        self.steps = 0
        self.now = 0  # the simulator's clock after the last advance
        self.booted_at = 0.0
        self.kills = 0
        self.open: dict[str, bool] = {}
        self._requesters: dict[str, bus.Requester] = {}

    # ---- lifecycle
    def boot(self) -> None:
        self.tap = Tap(self.home)
        self.home.start_supervisord()
        self.home.wait_state("RUNNING", timeout=120)
        self.now = self.sim("status")["server_time"]
        self.booted_at = time.monotonic()
        self.note(f"RUNNING at {utc(self.now)}; warm on the bars before {utc(self.w.start)}")

    def close(self) -> None:
        for req in self._requesters.values():
            req.close()
        if self.tap is not None:
            self.tap.close()
        self.home.close()

    def note(self, what: str, echo: bool = False) -> None:
        line = f"{time.monotonic() - self.t0:7.1f}s {what}"
        self.log.append(line)
        if echo:
            print(line, flush=True)

    def sim(self, cmd: str, **args: Any) -> dict:
        return control(self.port, cmd, timeout=60, **args)

    def request(self, service: str, op: str, args: Any = None) -> Any:
        """One request on a REQ socket kept per service (the settle polls many times a bar: no connect per call;
        a timed-out socket is reset by the Requester, Lazy Pirate)."""
        req = self._requesters.get(service)
        if req is None:
            req = bus.Requester(self.home.ctx, self.home.config().endpoint(service, "rep"), "soak", 3000)
            self._requesters[service] = req
        return req.call(op, args if args is not None else messages.NoArgs())

    def status_of(self, service: str) -> dict:
        return status_map(self.request(service, "status"))

    def status(self) -> dict:
        return self.status_of("orchestrator")

    # ---- one bar
    def step(self, fault: Fault | None = None) -> bool:
        """Advance the simulator to the next M15 bar (closing the bars before it), inject `fault` while the system
        works on them, wait until it has settled. False at the end of the window or of the data."""
        status = self.sim("status")
        nxt = status["next_point_time"]
        if nxt is None or nxt >= self.w.end:
            return False
        old_pid = self.home.pid_of("connector") if fault is not None and fault.kind == "kill" else 0
        got = self.sim("advance", bars=1)
        if not got["ticks"]:
            return False
        self.now = got["server_time"]
        self.open = {s: got["symbols"][s]["open"] for s in SYMBOLS}
        self.steps += 1
        if fault is not None:
            self.inject(fault, old_pid)
        self.settle()
        return True

    def settle(self, timeout: float = 120) -> None:
        """Every symbol's bars closed so far are decided (the preditor's last bar between the one closed by the
        symbol's own next point and the newest one ended: see Expected.last_ended), acted on by the executor,
        stepped by paper, and durable."""
        lo = {s: self.expected.last_closed(s, self.now) for s in SYMBOLS}
        hi = {s: self.expected.last_ended(s, self.now) for s in SYMBOLS}

        def settled() -> bool:
            pred = self.status_of("preditor")
            last = {s: pred["models"][s]["last_bar"] for s in SYMBOLS}
            if pred["pending_bars"] or any(last[s] is None or not lo[s] <= last[s] <= hi[s] for s in SYMBOLS):
                return False
            live = [s for s in SYMBOLS if last[s] >= self.w.start]
            ex = self.status_of("executor")
            if ex["pending_signals"] or ex["outbox"]["pending"] or any(
                    ex["last_bar_time"].get(s) != last[s] for s in live):
                return False
            pa = self.status_of("paper")
            if pa["outbox"]["pending"] or any(pa["accounts"][s]["last_bar_time"] != last[s] for s in live):
                return False
            return self.acceptable(self.status())

        wait_for(settled, timeout, f"the bars closed at {utc(self.now)} settled (between {lo} and {hi})",
                 interval=0.01)

    @staticmethod
    def acceptable(status: dict) -> bool:
        """RUNNING, or DEGRADED by bar freshness alone (a fault's healing can outlast the accelerated bar timeout;
        the next bars clear it)."""
        if status["system"] == "RUNNING":
            return True
        return status["system"] == "DEGRADED" and all("no bar for" in i for i in status["issues"])

    # ---- faults
    def inject(self, fault: Fault, old_pid: int) -> None:
        self.note(f"fault: {fault} (step {self.steps}, clock {utc(self.now)})", echo=True)
        started = time.monotonic()
        if fault.kind == "drop":
            assert self.sim("drop", refuse_s=0.5)["dropped"] >= 1, "no broker connection to drop"
            self._reconnected(started)
        elif fault.kind == "kill":
            os.kill(old_pid, signal.SIGKILL)
            self.kills += 1
            wait_for(lambda: self.home.pid_of("connector") not in (0, old_pid), 30, "a new connector process")
            self._reconnected(started, old_pid)
        elif fault.kind == "token":
            before = self._token()
            self.sim("expire_token")
            wait_for(lambda: self._token() not in ("", before), 60, "the connector's refreshed token pair")
            self._reconnected(started)
        else:
            raise ValueError(fault.kind)
        took = time.monotonic() - started
        self.healed.append(Healed(fault, self.steps, self.now, took))
        self.note(f"healed: {fault.kind} in {took:.2f} s", echo=True)

    def _token(self) -> str:
        path = self.home.config().path(self.home.config().data_dir) / self.home.config().broker.token_file
        try:
            return json.loads(path.read_text()).get("access_token", "")
        except (OSError, ValueError):
            return ""

    def _reconnected(self, since: float, old_pid: int = 0) -> None:
        """The connector (a new process after a kill) is connected to the simulator again and the orchestrator
        reports the system RUNNING (or only bar-fresh issues) with it."""

        def back() -> bool:
            if self.sim("status")["sessions"] < 1:
                return False
            if not self.status_of("connector")["broker"]["connected"]:
                return False
            s = self.status()
            entry = s["services"]["connector"]
            if entry["state"] != "RUNNING" or entry["pid"] in (0, old_pid) or entry["pid"] != self.home.pid_of(
                    "connector"):
                return False
            return self.acceptable(s)

        wait_for(back, 90, "the connector reconnected and the system RUNNING", interval=0.02)

    # ---- holds: closed markets while others trade
    def hold_gold_break(self) -> None:
        """Gold's daily break (17:00-18:00 New York) while forex trades: hold the clock until every symbol's last
        bar, as the connector and the preditor report it, is older than the bar timeout, then look at the
        orchestrator: the forex symbols are stale (their market is open: the alarm works), gold is not."""
        ages = self._ages_past_limit()
        s = self.status()
        said = {k: f.get("market_open") for k, f in (s["services"]["connector"]["info"].get("symbols") or {}).items()}
        closed = tuple(sym for sym in SYMBOLS if not self.open[sym])
        self.holds.append(Hold("gold's daily break", self.now, closed, ages, s["system"], tuple(s["issues"]), said))
        self.note(f"hold: gold's daily break at {utc(self.now)}: {s['system']}, issues {s['issues']}, the connector's "
                  f"market_open {said}", echo=True)

    def _ages_past_limit(self) -> dict[str, float]:
        """Wait until the connector's and the preditor's heartbeats report every symbol's last bar older than the
        bar timeout (the clock stands still meanwhile)."""

        def past() -> dict[str, float] | None:
            info = self.status()["services"]
            found = {}
            for service in ("connector", "preditor"):
                for key, facts in (info[service]["info"].get("symbols") or {}).items():
                    if isinstance(facts.get("last_bar_age_s"), int | float):
                        found[f"{service} {key.split(' ')[0]}"] = facts["last_bar_age_s"]
            return found if len(found) == 2 * len(SYMBOLS) and min(found.values()) > BAR_LIMIT_S else None

        return wait_for(past, 120, f"every symbol's last bar older than {BAR_LIMIT_S} s", interval=0.1)

    # ---- the end
    def stored(self, table: str) -> list[dict]:
        return self.home.request("persistence", "query", messages.QueryArgs(table, {}, 0),
                                 timeout_ms=30_000).records

    def deals(self) -> list[dict]:
        return self.sim("deals")["deals"]

    def rss_mb(self) -> dict[str, float]:
        """Resident memory of every supervised process now, MB."""
        out = {}
        for program in ("sim-broker", "connector", "preditor", "executor", "paper", "persistence", "orchestrator"):
            pid = self.home.pid_of(program)
            if pid:
                out[program] = round(psutil.Process(pid).memory_info().rss / 1e6, 1)
        out["test (this process, peak)"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, 1)
        return out
