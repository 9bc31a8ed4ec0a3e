"""The whole system under the real supervisord, replaying the bundled bars on a manual clock, with faults injected at
chosen bars: what tests/system/test_chaos.py drives and compares.

One `Replay` is one ORACLE_HOME: supervisord with the repository's deploy/supervisord.conf (the simulator is its
sim-broker program, speed 0), booted to RUNNING. `step()` closes one bar through the simulator's control port and
waits until the pipeline has settled on it: the preditor decided the bar, the executor acted on its signal and the
paper account stepped, and every record they made is acknowledged by persistence. A fault is injected after the
advance (after a seeded random delay of 0-50 ms, so it lands on work in flight), then the system is waited for
until it is RUNNING again with the faulted process back, and only then does the bar settle. `outcome()` collects
what must not depend on faults: broker positions, balance and orders, the store's signals, acks, trades and
events, the paper accounts.

It trades SYMBOLS: EURUSD and the simulator's synthetic SYN01.. (ORACLE_CHAOS_SYMBOLS in all, default 3), SYNk
replaying the bundled CSV k * OFFSET_BARS bars ahead with the demo model relabelled for it (trading_rig.py,
as bench/pipeline_bench.py), so that on some bars several symbols order at once: the executor sends a bar's
orders together, concurrently in flight at the connector. Their arrival order at the broker is then not
deterministic: the simulator's position ids (numbered in arrival order) are replaced by the position's label (its
opening client order id), also where a close's client order id holds its ticket, and the orders of one broker tick
are compared sorted.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from harness import REPO, Home, status_map, wait_for
from system.trading_rig import symbols_config, symbols_overlay, synthetic_symbols

from common import bus, config, messages
from services.connector.sim import catalog
from services.connector.sim.control import control
from services.connector.sim.replay import CsvBar, parse_csv

START_BAR = 1100
# 40 bars from START_BAR, 3 symbols: the backtest's directions change for 2+ symbols on 5 bars (13, 14, 16, 17,
# 36); the executor orders for 2+ symbols on 3 (14: two opens, 16: two closes, 36: an open and a close)
OFFSET_BARS = 30
SYMBOLS = synthetic_symbols(int(os.environ.get("ORACLE_CHAOS_SYMBOLS") or 3), OFFSET_BARS)
SYMBOL_NAMES = {s.spec.symbol_id: name for name, s in catalog.symbols(len(SYMBOLS) - 1, OFFSET_BARS).items()}
WORKERS = ("connector", "persistence", "paper", "executor", "preditor")
KILLABLE = (*WORKERS, "orchestrator")

OVERLAY = {
    # one spot event per symbol an hour (each H1 bar's first and last point: live bars stay whole), not one a
    # minute: with ORACLE_CHAOS_SYMBOLS symbols the spots would dominate the CPU of the simulator and the connector
    "broker": {"sim": {"speed": 0, "start_bar": START_BAR, "spot_interval_s": 3600}},
    # a preditor restarted under load imports torch and warms up: more than the harness's 10 s step timeout
    "orchestrator": {"step_timeout_s": 30},
    "runtime": {"request_timeout_ms": 2000},
}


def csv_bars() -> list[CsvBar]:
    return parse_csv((REPO / "data" / "EURUSD_H1_2017.csv").read_text())


@dataclass(frozen=True)
class Fault:
    bar: int  # index in the replay (0 = the first bar closed by the test)
    kind: str  # kill | restart | freeze | drop
    service: str = ""  # "" for drop (the simulator aborts the connector's connection)
    delay_s: float = 0.0  # after the advance

    def __str__(self) -> str:
        what = f"{self.kind} {self.service}".strip()
        return f"bar {self.bar}: {what} after {1000 * self.delay_s:.0f} ms"


def plan_faults(rng: random.Random, n_bars: int, order_bars: list[int]) -> list[Fault]:
    """kill -9 of each service once, a broker disconnect, a `supervisorctl restart` of a worker and a SIGSTOP of
    another one, in a seeded order at distinct bars (never the first three: the executor's first signal after
    boot is not an edge, nor the last two); and a kill -9 of the executor while an order of its is in flight, at
    one of `order_bars` (bars whose signal opens a position)."""
    inflight = rng.choice(order_bars)
    kinds = [("kill", s) for s in KILLABLE] + [("drop", "")]
    restart, freeze = rng.sample(WORKERS, 2)
    kinds += [("restart", restart), ("freeze", freeze)]
    rng.shuffle(kinds)
    slots = [b for b in range(3, n_bars - 2, 2) if abs(b - inflight) > 1]
    assert len(slots) >= len(kinds), f"{n_bars} bars are too few for {len(kinds)} faults"
    bars = sorted(rng.sample(slots, len(kinds)))
    faults = [Fault(b, k, s, round(rng.uniform(0.0, 0.05), 3)) for b, (k, s) in zip(bars, kinds, strict=True)]
    return sorted([*faults, Fault(inflight, "inflight", "executor")], key=lambda f: f.bar)


@dataclass
class Replay:
    root: Path
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home = Home(self.root, config.merge(OVERLAY, symbols_overlay(self.root, SYMBOLS, OFFSET_BARS)))
        # every symbol enabled, a 10 USD stop loss (some trades end at the broker's SL)
        symbols_config(self.home, also=SYMBOLS[1:])
        self.bars = csv_bars()
        self.port = self.home.config().broker.sim.control_port
        self.closed: list[int] = []  # bar times closed so far, in order
        self.t0 = time.monotonic()

    # ---- lifecycle ----------------------------------------------------------------------------
    def boot(self) -> None:
        self.home.start_supervisord()
        self.home.wait_state("RUNNING", timeout=90)
        self.note("RUNNING")

    def close(self) -> None:
        self.home.close()

    def note(self, what: str) -> None:
        self.log.append(f"{time.monotonic() - self.t0:6.1f}s {what}")

    def sim(self, cmd: str, **args: Any) -> dict:
        return control(self.port, cmd, **args)

    def request(self, service: str, op: str, args: Any = None) -> Any:
        return self.home.request(service, op, args, timeout_ms=2000)

    def status_of(self, service: str) -> dict:
        return status_map(self.request(service, "status"))

    # ---- one bar -------------------------------------------------------------------------------
    def step(self, fault: Fault | None = None) -> int:
        """Close the simulator's current bar (the fault lands in flight), wait until it is settled; its time."""
        pid = self.home.pid_of(fault.service) if fault is not None and fault.service else 0
        index = self.sim("status")["bar_index"]
        bar_time = self.bars[index].time
        orders = len(self.sim("orders")["orders"])
        if fault is not None and fault.kind == "inflight":  # the order's fill reaches the connector 2 s late
            self.sim("delay", seconds=2.0, count=2, types=["ProtoOAExecutionEvent"])
        self.sim("advance", bars=1)
        if fault is not None and fault.kind == "inflight":
            wait_for(lambda: len(self.sim("orders")["orders"]) > orders, 20, "the order filled", interval=0.01)
        if fault is not None:
            time.sleep(fault.delay_s)
            self.inject(fault, pid)
        self.closed.append(bar_time)
        self.settle(bar_time, timeout=90 if fault is not None else 30)
        return bar_time

    def inject(self, fault: Fault, pid: int) -> None:
        self.note(str(fault))
        if fault.kind == "drop":
            assert self.sim("drop", refuse_s=0.5)["dropped"] >= 1, "no connection to drop"
            wait_for(self._reconnected, 30, "the connector reconnected", interval=0.05)
        elif fault.kind in ("kill", "inflight"):
            os.kill(pid, signal.SIGKILL)
            self._back(fault.service, pid)
        elif fault.kind == "restart":
            out = self.home.supervisorctl("restart", fault.service)
            assert "started" in out, out
            self._back(fault.service, pid)
        elif fault.kind == "freeze":
            os.kill(pid, signal.SIGSTOP)
            try:
                self._back(fault.service, pid, timeout=30)  # the watchdog kills it, supervisord starts it again
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            reason = self.home.status()["services"][fault.service]["last_restart_reason"]
            assert reason.startswith("no heartbeat for"), reason
        else:
            raise ValueError(fault.kind)
        self.note(f"healed: {fault.kind} {fault.service}".strip())

    def _reconnected(self) -> bool:
        return self.sim("status")["sessions"] >= 1 and self.status_of("connector")["broker"]["connected"]

    def _back(self, service: str, old_pid: int, timeout: float = 30) -> None:
        """supervisord runs a new process and the orchestrator reports the system RUNNING with it."""
        wait_for(lambda: self.home.pid_of(service) not in (0, old_pid), timeout, f"a new {service} process")

        def running() -> bool:
            try:
                s = self.home.status()
            except (bus.RequestTimeout, bus.RequestFailed):
                return False
            entry = s["services"][service]
            if s["system"] != "RUNNING" or entry["state"] != "RUNNING" or entry["pid"] == old_pid:
                return False
            return entry["pid"] == self.home.pid_of(service)  # the process supervisord runs now

        wait_for(running, 60, f"RUNNING with the new {service}", interval=0.1)

    def settle(self, bar_time: int, timeout: float) -> None:
        """The bar's signal is decided, acted on by the executor, stepped by the paper account, and every record
        they made is durable (their outboxes are empty); the system is RUNNING."""

        def settled() -> bool:
            if not self.decided(bar_time):
                return False
            ex = self.status_of("executor")
            if (any(ex["last_bar_time"].get(s) != bar_time for s in SYMBOLS) or ex["pending_signals"]
                    or ex["outbox"]["pending"]):
                return False
            pa = self.status_of("paper")
            if any(pa["accounts"][s]["last_bar_time"] != bar_time for s in SYMBOLS) or pa["outbox"]["pending"]:
                return False
            return self.home.status()["system"] == "RUNNING"

        wait_for(settled, timeout, f"bar {bar_time} settled", interval=0.02)

    def decided(self, bar_time: int) -> bool:
        """The preditor decided the bar for every symbol and has no bar waiting."""
        pred = self.status_of("preditor")
        return all(pred["models"][s]["last_bar"] == bar_time for s in SYMBOLS) and not pred["pending_bars"]

    # ---- what is compared --------------------------------------------------------------------
    def stored(self, table: str) -> list[dict]:
        return self.home.request("persistence", "query", messages.QueryArgs(table, {}, 0), timeout_ms=5000).records

    def outcome(self) -> Outcome:
        # the connector's fills and closes reach persistence on the bus: wait until the store has every deal the
        # simulator made (one real trade record per deal)
        orders = self.sim("orders")["orders"]
        wait_for(lambda: len([t for t in self.stored("trades") if not t["is_paper"]]) >= len(orders), 20,
                 "every broker deal in the trade log")
        status = self.sim("status")
        accounts = self.status_of("paper")["accounts"]
        label = {str(o["position_id"]): o["client_order_id"] for o in orders if not o["closing"]}
        # one broker tick's orders sorted: concurrent orders reach the simulator in any order
        got = sorted((Order(SYMBOL_NAMES[o["symbol_id"]], label[str(o["position_id"])], o["trade_side"],
                            o["volume"], o["execution_price"], o["timestamp_ms"], o["closing"],
                            order_id(o["client_order_id"], label)) for o in orders), key=lambda o: (o.timestamp_ms, o))
        trades = self.stored("trades")
        # only the replayed bars: whether the executor hears the preditor's warmup decision of the bar before the
        # first one (START_BAR - 1: `last_signals` asked on the preditor's first message, answered with the models
        # warm by then) and records a signal and an ack for it depends on the boot's timing, not on faults
        first = self.closed[0]
        signals = [r for r in self.stored("signals") if epoch(r["bar_time"]) >= first]
        acks = [r for r in self.stored("acks") if r["bar_time"] is None or epoch(r["bar_time"]) >= first]
        return Outcome(
            bars=list(self.closed),
            positions=sorted((SYMBOL_NAMES[p["symbol_id"]], p["side"], p["volume"], p["entry_price"], p["label"],
                              p["stop_loss"]) for p in status["positions"]),
            balance=status["balance"],
            orders=got,
            arrival=[o["client_order_id"] for o in orders],
            signals={(r["symbol"], epoch(r["bar_time"])): (r["action"], r["direction"], r["intensity"],
                                                           r["hmm_state"], r["data"]["close"],
                                                           r["data"]["virtual_pnl"])
                     for r in signals},
            acks=ack_keys(acks, label),
            trades=trade_keys((t for t in trades if not t["is_paper"]), label),
            paper_trades=trade_keys((t for t in trades if t["is_paper"]), label),
            paper_account={s: (a["balance"], a["trades"], a["pnl"], a["position"]) for s, a in accounts.items()},
            events=event_keys(self.stored("events")),
            rejected=self.status_of("persistence")["progress"].get("records_rejected", 0),
        )


def epoch(stamp: str | None) -> int:
    """The store's ISO time (``...Z`` or ``+00:00``) as Unix seconds (0 for none)."""
    if stamp is None:
        return 0
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


def position(pid: Any, label: dict[str, str]) -> str:
    """A broker position id as the position's label (its opening client order id): the simulator numbers
    positions in the order their orders arrive, which is not deterministic for concurrent orders."""
    return label.get(str(pid), f"unknown position {pid}") if pid else ""


CLOSE_ID = re.compile(r"^(.+-[CME])([0-9a-z]+)$")  # common/order_label.py: a close's id ends with its ticket


def order_id(cid: str | None, label: dict[str, str]) -> str:
    """A client order id, a close's ticket (base 36) as the position's label (see position())."""
    match = CLOSE_ID.match(cid or "")
    return f"{match[1]}[{position(int(match[2], 36), label)}]" if match else cid or ""


def ack_keys(records: list[dict], label: dict[str, str]) -> list[tuple]:
    """One key per ack, without what a process start makes (ids carry the executor's epoch, timestamps)."""
    return sorted((r["symbol"], epoch(r["bar_time"]), r["decision"], r["status"], r["reason"] or "",
                   order_id(r["client_order_id"], label), position(r["position_id"], label), r["volume"],
                   r["price"])
                  for r in records)


def trade_keys(records: Any, label: dict[str, str]) -> list[tuple]:
    return sorted((epoch(t["bar_time"]), epoch(t["timestamp"]), t["symbol"], t["action"], t["direction"],
                   t["intensity"], t["hmm_state"], t["volume"], t["entry_price"], t["exit_price"], round(t["pnl"], 6),
                   position(t.get("position_id"), label), order_id(t.get("client_order_id"), label))
                  for t in records)


def event_keys(records: list[dict]) -> list[tuple]:
    return sorted((r["event_type"], r.get("source") or "", r.get("symbol") or "") for r in records)


class Order(NamedTuple):
    """A broker order (the simulator's), its position as the position's label."""

    symbol: str
    position: str
    trade_side: int
    volume: int
    price: float
    timestamp_ms: int
    closing: bool
    client_order_id: str


@dataclass
class Outcome:
    bars: list[int]
    positions: list[tuple]
    balance: float
    orders: list[Order]  # by broker tick, then sorted
    arrival: list[str]  # the client order ids of the broker's orders, in the order it filled them
    signals: dict[tuple[str, int], tuple]  # by (symbol, bar time)
    acks: list[tuple]
    trades: list[tuple]
    paper_trades: list[tuple]
    paper_account: dict[str, tuple]  # by symbol
    events: list[tuple]
    rejected: int


def run_replay(root: Path, n_bars: int, faults: list[Fault] = ()) -> tuple[Outcome, Replay]:
    replay = Replay(root)
    try:
        replay.boot()
        at = {f.bar: f for f in faults}
        for i in range(n_bars):
            replay.step(at.get(i))
        replay.note(f"{n_bars} bars settled")
        return replay.outcome(), replay
    except BaseException:
        print("\n".join(["the replay so far:", *replay.log]))  # shown with the failure
        raise
    finally:
        replay.close()
