"""A trading rig for system tests: the real simulator process, the real connector and executor processes, and the
test's own inputs on the preditor's endpoints (a PUB publishing signals, a REP answering `last_signals`), in a
throwaway ORACLE_HOME. No orchestrator: the test runs the lifecycle steps itself over the `step` op."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import zmq
from harness import REPO, Home, wait_for
from system.sub_reader import SubReader

from common import bus, messages
from services.connector.sim import catalog
from services.connector.sim.control import control
from services.connector.sim.replay import CsvBar, parse_csv
from services.connector.sim.series import served_bars

CSV = REPO / "data" / "EURUSD_H1_2017.csv"
START_BAR = 1100


def bars() -> list[CsvBar]:
    return parse_csv(CSV.read_text())


class Sim:
    """The simulator as an OS process, manual clock (speed 0), driven through its control port."""

    def __init__(self, home: Home, start_bar: int = START_BAR, state: Path | None = None):
        root = home.root
        self.state = state or root / "var" / "data" / "sim-state.json"
        self.state.parent.mkdir(parents=True, exist_ok=True)
        self.cert = root / "var" / "data" / "sim-broker-cert.pem"  # where the connector looks for it (broker.sim)
        self.log = open(root / "var" / "log" / "sim.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.connector.sim", "--csv", str(CSV), "--symbol", "EURUSD", "--timeframe",
             "H1", "--speed", "0", "--port", "0", "--control-port", "0", "--start-bar", str(start_bar), "--state",
             str(self.state), "--heartbeat", "2", "--tls", "--cert", str(self.cert)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self.log)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert line.startswith("SIM-BROKER READY"), f"simulator did not start: {line!r}"
        fields = dict(part.split("=") for part in line.split()[2:])
        self.port, self.control_port = int(fields["port"]), int(fields["control_port"])
        home.procs["connector.sim"] = self.proc  # the home's broker: nothing else starts one for its connector

    def cmd(self, name: str, **args: Any) -> dict:
        return control(self.control_port, name, **args)

    def status(self) -> dict:
        return self.cmd("status")

    def advance_bar(self) -> dict:
        return self.cmd("advance", bars=1)

    def saved(self) -> dict:
        """The simulator's account as it writes it to its state file (balance, positions), and every deal."""
        self.cmd("save")
        return {**json.loads(self.state.read_text())["account"], "deals": self.cmd("deals")["deals"]}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class PreditorStandIn:
    """The test's signal source on the preditor's endpoints: a PUB for `signal.<SYM>` and a REP for
    `last_signals` answering the last signal published per symbol."""

    def __init__(self, home: Home):
        cfg = home.config()
        run_dir = cfg.path(cfg.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        run_dir.chmod(0o700)
        self.ctx = zmq.Context()
        self.pub = bus.Publisher(self.ctx, cfg.endpoint("preditor", "pub"), "preditor", bus.new_epoch())
        self.last: dict[str, messages.Signal] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._rep_endpoint = cfg.endpoint("preditor", "rep")
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        def last_signals(_a: Any) -> dict:
            with self.lock:
                return {"signals": {s: messages.to_wire(v) for s, v in self.last.items()}}

        rep = bus.Responder(self.ctx, self._rep_endpoint, {"last_signals": last_signals}, bus.WireErrors("test"))
        while not self._stop.is_set():
            if rep.sock.poll(50):
                rep.serve_ready()
        rep.close()

    def signal(self, bar: CsvBar, direction: int, intensity: int, symbol: str = "EURUSD",
               previous_direction: int | None = None) -> messages.Signal:
        action = 0 if direction == 0 else (intensity if direction > 0 else 3 + intensity)
        sig = messages.Signal(symbol, bar.time, bar.close, action, direction, intensity if direction else 0, 1, 0.0,
                              previous_direction)
        with self.lock:
            self.last[symbol] = sig
        self.pub.publish(messages.signal_topic(symbol), sig)
        return sig

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.pub.close()
        self.ctx.term()


class Listener:
    """Subscribes to the executor's acks (and anything else asked), collecting them in order, read by its own thread
    (sub_reader.py: it resubscribes to a restarted service at once). It also hears the service's heartbeats: one
    from the process running now proves the subscription reached that process's publisher."""

    def __init__(self, home: Home, service: str = "executor", prefixes: tuple[str, ...] = ("ack.",)):
        self.home, self.service = home, service
        self._beat_topic = messages.hb_topic(service)
        self._keep_beats = self._beat_topic in prefixes
        self.got: list[Any] = []
        self.arrived: list[float] = []  # perf_counter() at receipt, one per entry of `got` (latency measurements)
        self.beat_epochs: set[int] = set()
        self._lock = threading.Lock()
        self._reader = SubReader([home.config().endpoint(service, "pub")], (*prefixes, self._beat_topic), self._take,
                                 home.ctx, clock=time.perf_counter)

    def _take(self, got: list[bus.Received], now: float) -> None:
        with self._lock:
            for received in got:
                if received.envelope.topic == self._beat_topic:
                    self.beat_epochs.add(received.envelope.epoch)
                    if not self._keep_beats:
                        continue
                self.got.append(received.envelope.body)
                self.arrived.append(now)

    def poll(self) -> list[Any]:
        """What was heard so far, in order."""
        with self._lock:
            return list(self.got)

    def wait_live(self, timeout: float = 10.0) -> None:
        """Wait for a heartbeat of the process running now (its epoch, from its status)."""
        epoch = self.home.status_of(self.service)["epoch"]

        def heard() -> bool:
            with self._lock:
                return epoch in self.beat_epochs

        wait_for(heard, timeout, f"a heartbeat of {self.service} epoch {epoch}")

    def acks_for(self, bar_time: int) -> list[messages.Ack]:
        return [a for _, a in self.ack_arrivals(bar_time)]

    def ack_arrivals(self, bar_time: int) -> list[tuple[float, messages.Ack]]:
        """This bar's acks with their perf_counter() at receipt."""
        with self._lock:
            return [(t, a) for t, a in zip(self.arrived, self.got, strict=True)
                    if isinstance(a, messages.Ack) and a.bar_time == bar_time]

    def wait_ack(self, bar_time: int, timeout: float = 20.0, settle_s: float = 0.02) -> list[messages.Ack]:
        """This bar's acks, once there is one and nothing more has come for `settle_s` (a signal's acks -- its
        closes, its open, its decision -- are published back to back)."""
        def settled() -> list[messages.Ack]:
            with self._lock:
                quiet = bool(self.arrived) and time.perf_counter() - self.arrived[-1] >= settle_s
            return self.acks_for(bar_time) if quiet else []

        return wait_for(settled, timeout, f"ack for bar {bar_time}", interval=0.005)

    def close(self) -> None:
        self._reader.close()


def symbols_config(home: Home, *, also: tuple[str, ...] | list[str] = (), **eurusd: Any) -> None:
    """The executor's symbols: EURUSD enabled (a 10 USD stop loss, `eurusd` on top), and each of `also` (the
    simulator's synthetic symbols) with the same entry."""
    path = home.root / "config" / "executor_symbols.json"
    raw = json.loads((REPO / "config" / "executor_symbols.json").read_text())
    raw["_risk"]["max_consecutive_losses"] = 50  # the loss streak cooldown is unit-tested; here it would interfere
    raw["EURUSD"] = {**raw["EURUSD"], "enabled": True, "sl_usd": 10.0, "max_spread_pips": 5.0, **eurusd}
    for sym in also:
        raw[sym] = {**raw["EURUSD"], "notes": "synthetic (simulator)"}
    path.write_text(json.dumps(raw, indent=2))


# ---- several symbols: EURUSD and the simulator's synthetic SYN01.. ---------------------------------------------
# SYNk is EURUSD-like and replays the bundled CSV k * offset_bars bars ahead on the same clock
# (services/connector/sim/catalog.py), traded by the demo model relabelled for it (same weights). The same set-up
# as bench/pipeline_bench.py.
MODEL = REPO / "models" / "EURUSD_H1.zip"


def synthetic_symbols(count: int, offset_bars: int) -> list[str]:
    """`count` symbols: EURUSD, then the simulator's synthetic SYN01..SYN<count-1>."""
    return ["EURUSD", *catalog.synthetic(count - 1, offset_bars)]


def symbols_overlay(root: Path, symbols: list[str], offset_bars: int) -> dict:
    """The config overlay for a home at `root` trading `symbols` (synthetic_symbols()): the simulator serves the
    synthetic ones, the connector subscribes to every one, the preditor loads the demo model relabelled per symbol
    (written to `root`/symbol_models). The executor's entries: symbols_config(home, also=symbols[1:])."""
    if symbols == ["EURUSD"]:
        return {}
    from system.preditor_rig import copy_model_as

    models = root / "symbol_models"
    models.mkdir(parents=True, exist_ok=True)
    for sym in symbols:
        copy_model_as(MODEL, models, sym)
    return {
        "broker": {"sim": {"synthetic_symbols": len(symbols) - 1, "synthetic_offset_bars": offset_bars}},
        "connector": {"symbols": {s: "H1" for s in symbols}},
        "preditor": {"models_dir": str(models)},
    }


def symbol_bars(symbols: list[str], offset_bars: int) -> dict[str, list[CsvBar]]:
    """The H1 bars the simulator serves for each of `symbols` (synthetic ones shifted and scaled; volume in ticks),
    by symbol: one per CSV bar (these forex symbols trade every hour the CSV has)."""
    served = catalog.symbols(len(symbols) - 1, offset_bars)
    source = bars()
    out = {sym: served_bars(source, served[sym], "H1", source[0].time, source[-1].time + 3600) for sym in symbols}
    assert all(len(b) == len(source) for b in out.values())
    return out


def start_broker_side(home: Home, sim: Sim) -> None:
    """The connector process against the simulator, connected (the step the orchestrator would ask for)."""
    home.start("connector")
    wait_for(lambda: home.request("connector", "ping"), 20, "connector up")
    res = home.request("connector", "step", messages.StepArgs("connector.connect"), timeout_ms=60_000)
    assert res.ok, res.error
    sim.cmd("advance", ticks=1)  # a first spot after the subscription: quotes exist


def step(home: Home, service: str, name: str, timeout_ms: int = 30_000) -> messages.StepResult:
    res = home.request(service, "step", messages.StepArgs(name), timeout_ms=timeout_ms)
    assert res.ok, f"{name}: {res.error}"
    return res


def start_executor(home: Home, *args: str, sync: bool = True) -> None:
    home.start("executor", *args)
    wait_for(lambda: home.request("executor", "ping"), 20, "executor up")
    step(home, "executor", "executor.load")
    if sync:
        step(home, "executor", "executor.sync")


def command(home: Home, name: str, **args: Any) -> Any:
    """The command's result record (messages.COMMAND_RESULTS)."""
    return home.request("executor", "command", messages.CommandArgs(name, args), timeout_ms=30_000)


def copy_overlay(home: Home, overlay: dict) -> None:
    from harness import TEST_OVERLAY

    from common import config as cfgmod

    home.write_overlay(cfgmod.merge(TEST_OVERLAY, overlay))


class Ledger:
    """What the simulator shows, sampled after every action: position id -> label (= client order id)."""

    def __init__(self, sim: Sim):
        self.sim = sim
        self.labels: dict[int, str] = {}

    def sample(self) -> list[dict]:
        positions = self.sim.status()["positions"]
        for p in positions:
            known = self.labels.setdefault(p["position_id"], p["label"])
            assert known == p["label"]
        return positions

    def assert_no_duplicate(self) -> dict[str, int]:
        """Every opening deal at the simulator made one position, and no client order id opened two."""
        self.sample()
        saved = self.sim.saved()
        opening = [d for d in saved["deals"] if not d["closing"]]
        position_ids = [d["position_id"] for d in opening]
        assert len(position_ids) == len(set(position_ids)), "two opening deals on one position"
        unknown = [pid for pid in position_ids if pid not in self.labels]
        assert not unknown, f"positions opened and closed between samples: {unknown}"
        labels = [self.labels[pid] for pid in position_ids]
        assert len(labels) == len(set(labels)), f"a client order id opened twice: {labels}"
        return {label: pid for pid, label in self.labels.items()}


def wait_positions(sim: Sim, count: int, timeout: float = 20.0) -> list[dict]:
    return wait_for(lambda: (lambda p: p if len(p) == count else None)(sim.status()["positions"]) or
                    (count == 0 and not sim.status()["positions"] and [{}]), timeout, f"{count} positions at the sim")


def cleanup(*things: Any) -> None:
    for thing in things:
        if thing is not None:
            with contextlib.suppress(Exception):  # best effort in teardown
                (thing.stop if hasattr(thing, "stop") else thing.close)()


class ManualClient:
    """A second cTrader client on the simulator's account: a person acting in the cTrader app."""

    def __init__(self, sim: Sim):
        from services.connector.ctrader.client import CTraderConfig

        self.config = CTraderConfig(host="127.0.0.1", port=sim.port, tls=True, verify=True, ca_file=str(sim.cert),
                                   client_id="sim-client", client_secret="sim-secret", access_token="sim-token",
                                   account_id=1_000_001)

    def _run(self, action: Callable[[Any], Awaitable[Any]]) -> Any:
        from services.connector.ctrader.client import CTraderBroker

        async def go() -> Any:
            broker = CTraderBroker(self.config)
            await broker.connect(max_attempts=3)
            try:
                return await action(broker)
            finally:
                await broker.close()

        return asyncio.run(go())

    def close(self, ticket: int) -> Any:
        return self._run(lambda b: b.close_position(ticket))

    def open(self, direction: int, lots: float, label: str, symbol: str = "EURUSD") -> Any:
        return self._run(lambda b: b.market_order(symbol, direction, lots, client_order_id=label))


@contextlib.contextmanager
def trading_system(tmp_path: Path, overlay: dict) -> Any:
    """The whole system's home for a test that starts the services itself: the simulator (advanced by the test),
    the bundled EURUSD model entering on its first signal, patient timeouts, and ``overlay``'s sections on top.
    Yields (home, sim, listeners); the listeners the test adds are closed at the end."""
    home = Home(tmp_path)
    sim = Sim(home)
    copy_overlay(home, {"broker": {"sim": {"port": sim.port, "control_port": -1}},
                        "runtime": {"request_timeout_ms": 5000},
                        "orchestrator": {"heartbeat_timeout_s": 10.0, "step_timeout_s": 60}, **overlay})
    symbols_config(home, enter_on_first_signal=True)
    listeners: list[Listener] = []
    try:
        yield home, sim, listeners
    finally:
        cleanup(*listeners)
        home.close()
        sim.stop()


def preditor_signals(home: Home) -> int:
    """The signals the preditor has published for the bundled model's symbol."""
    return home.status_of("preditor")["models"]["EURUSD"]["signals"]
