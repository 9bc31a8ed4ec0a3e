"""The executor's CPU per bar close, in this process: N symbols' signals heard, decided as one batch, their orders
out and answered, the acks published and the records handed to persistence.

    python bench/executor_decide_bench.py [--symbols 20] [--bars 400] [--repeats 5] [--profile]

The executor is the real one (service.py and its desks, its state file with its fdatasync, its outbox spool, a real
PUB socket); the connector is a stand-in in this process answering as the real one does (positions in lots with the
account and every symbol's live quote, decoded from wire form as a reply would be; each order answered at once), and
persistence acknowledges every record at the end of the bar (no socket). The signals follow a seeded random walk:
each symbol keeps its stance and changes it now and then, so a bar brings a few closes and openings among the
symbols in sync (about 1.5 each with 20 symbols, as the pipeline bench sees).

Printed: the CPU (time.process_time) per bar, median and p90 over the bars after a warm-up, repeated --repeats times
(the median of the medians is the figure); --profile: cProfile of one run, the top functions by own and by
cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import bus, config, messages, wire  # noqa: E402
from common.bus import Received  # noqa: E402
from common.outbox import Outbox  # noqa: E402
from common.sequence import Delivery, Seen  # noqa: E402
from services.executor import symbols_config as sc  # noqa: E402
from services.executor.service import Executor  # noqa: E402

H1 = 3600
T0 = 1_764_950_400
SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY", "USDCHF", "AUDUSD", "USDCAD", "NZDUSD", "EURGBP", "EURJPY", "GBPJPY",
           "EURCHF", "AUDJPY", "EURAUD", "EURCAD", "GBPCHF", "CADJPY", "AUDNZD", "GBPAUD", "CHFJPY", "NZDJPY",
           "AUDCAD", "AUDCHF", "CADCHF", "EURNZD", "GBPCAD", "GBPNZD", "NZDCAD", "NZDCHF", "USDSEK", "USDNOK"]


def spec(symbol: str) -> dict:
    jpy = symbol.endswith("JPY")
    bid = 150.0 if jpy else 1.1
    return {"symbol": symbol, "digits": 3 if jpy else 5, "point": 0.001 if jpy else 1e-05,
            "pip_position": 2 if jpy else 4, "pip_size": 0.01 if jpy else 0.0001, "lot_size": 100000.0,
            "min_lots": 0.01, "step_lots": 0.01, "max_lots": 100.0, "base_asset": symbol[:3],
            "quote_asset": symbol[3:], "deposit_currency": "USD", "quote_to_deposit": 1 / 150 if jpy else 1.0,
            "pip_value_per_lot": 10.0, "bid": bid, "ask": bid + (0.008 if jpy else 8e-05),
            "spread": 0.008 if jpy else 8e-05, "min_sl_distance": 0.0, "min_tp_distance": 0.0}


class Connector:
    """The connector's answers to the executor's requests, from a book of positions."""

    def __init__(self, symbols: list[str]) -> None:
        self.rows: list[dict] = []
        self.specs = {s: spec(s) for s in symbols}
        self.account = {"balance": 100_000.0, "equity": 100_000.0, "margin": 0.0, "free_margin": 100_000.0,
                        "margin_level": 0.0, "currency": "USD", "leverage": 100.0}
        self._ticket = 1000
        self.opens = self.closes = 0

    def call(self, service: str, op: str, args: Any, timeout_s: float | None = None) -> Any:
        if service != "connector":
            return messages.LastSignals({})
        if op == "positions":
            reply = {"positions": [dict(r) for r in self.rows], "account": dict(self.account),
                     "quotes": {s: {"bid": d["bid"], "ask": d["ask"], "quote_to_deposit": d["quote_to_deposit"]}
                                for s, d in self.specs.items()},
                     "server_time": time.time(), "markets": {}}
            return messages.from_wire(messages.Positions, reply)
        if op == "symbol_info":
            return messages.from_wire(messages.SymbolInfo, self.specs[args.symbol])
        if op == "account":
            return messages.from_wire(messages.AccountInfo, self.account)
        raise AssertionError(f"unexpected request {op}")

    def order(self, op: str, args: Any) -> messages.OrderResult:
        if op == messages.OP_ORDER_OPEN.name:
            self.opens += 1
            self._ticket += 1
            price = self.specs[args.symbol]["ask"]
            self.rows.append({"ticket": self._ticket, "symbol": args.symbol, "direction": args.direction,
                              "volume": args.lots, "open_price": price, "open_time": 1.0, "sl": None, "tp": None,
                              "label": args.comment, "comment": "", "used_margin": 11.0, "current_price": price,
                              "pnl": 0.0})
            return messages.OrderResult(True, args.client_order_id, ticket=self._ticket, price=price,
                                        volume=args.lots)
        self.closes += 1
        row = next(r for r in self.rows if r["ticket"] == args.ticket)
        self.rows.remove(row)
        return messages.OrderResult(True, args.client_order_id, ticket=args.ticket, price=row["open_price"],
                                    volume=row["volume"])


class Answered:
    """An OrderGroup whose orders the stand-in answers at once."""

    def __init__(self, connector: Connector, requests: list[tuple[str, Any, str]]):
        self.lines: list = []
        self.results = [connector.order(op, args) for op, args, _cid in requests]

    def pump(self, now: float) -> bool:
        return True

    def sockets(self) -> list:
        return []

    def final(self) -> list:
        return list(self.results)


def make_home(root: Path, symbols: list[str]) -> None:
    (root / "config").mkdir()
    (root / "config" / "default.yaml").symlink_to(REPO / "config" / "default.yaml")
    (root / "models").symlink_to(REPO / "models")
    (root / "config" / "local.yaml").write_text(yaml.safe_dump({}))
    raw = json.loads((REPO / "config" / "executor_symbols.json").read_text())
    raw["_risk"].update(dd_limit_pct=100.0, dd_peak_limit_pct=100.0, dd_emergency_pct=100.0,
                        max_consecutive_losses=100_000)
    for sym in symbols:
        raw[sym] = {**raw["EURUSD"], "enabled": True, "max_spread_pips": 5.0, "notes": "bench"}
    (root / "config" / "executor_symbols.json").write_text(json.dumps(raw, indent=2))


class Walk:
    """Each symbol's stance, changed now and then (seeded): a bar's signals."""

    def __init__(self, symbols: list[str], seed: int):
        self.symbols = symbols
        self.rng = random.Random(seed)
        self.stance = {s: (self.rng.choice((-1, 1)), self.rng.choice((1, 2, 3))) for s in symbols}
        self.bar = 0

    def signals(self) -> list[messages.Signal]:
        self.bar += 1
        out = []
        for s in self.symbols:
            direction, intensity = self.stance[s]
            r = self.rng.random()
            if r < 0.12:
                direction = -direction if direction else self.rng.choice((-1, 1))
            elif r < 0.14:
                direction = 0
            elif r < 0.17:
                intensity = self.rng.choice((1, 2, 3))
            self.stance[s] = (direction, intensity)
            action = 0 if direction == 0 else (intensity if direction > 0 else 3 + intensity)
            out.append(messages.Signal(s, T0 + self.bar * H1, 1.1, action, direction, intensity if direction else 0,
                                       self.rng.randrange(4), round(self.rng.uniform(-50, 50), 2),
                                       previous_direction=direction))
        return out


class Run:
    def __init__(self, root: Path, symbols: list[str], seed: int):
        self.symbols = symbols
        self.connector = Connector(symbols)
        cfg = config.load(env={"ORACLE_HOME": str(root)})
        ex = self.ex = Executor(cfg)
        cfg.path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
        ex.pub = bus.Publisher(ex.ctx, cfg.endpoint("executor", "pub"), "executor", ex.epoch)
        ex._call = self.connector.call  # type: ignore[method-assign]
        ex._group = lambda requests: Answered(self.connector, requests)  # type: ignore[method-assign]
        ex._drive_outbox = lambda now: None  # type: ignore[method-assign]
        assert ex.on_step("executor.load", {})
        ex.modelled = set(symbols)
        ex.timeframes = dict.fromkeys(symbols, "H1")
        ex.config, _ = sc.ensure_symbols(ex.config, ex.modelled)
        ex.on_step("executor.sync", {})
        self.walk = Walk(symbols, seed)
        self.seq = 0

    def signals(self) -> list[messages.Signal]:
        return self.walk.signals()

    def one_bar(self) -> float:
        """One bar close: the CPU from the first signal heard to the last ack published."""
        sigs = self.signals()
        ex = self.ex
        t0 = time.process_time()
        for sig in sigs:
            self.seq += 1
            env = wire.Envelope(f"signal.{sig.symbol}", "x", "preditor", 1, self.seq, time.time_ns(), sig)
            ex.on_message(Received(env, Seen(Delivery.IN_ORDER)))
        while ex.pending or ex._flights:
            ex.on_tick(time.monotonic())
        t1 = time.process_time()
        # persistence acknowledges the bar's records
        ex.outbox = Outbox(quiet_s=ex.outbox_quiet_ms / 1000, linger_s=ex.outbox_linger_ms / 1000)
        if ex._spool is not None:
            os.ftruncate(ex._spool, 0)
        return t1 - t0

    def close(self) -> None:
        self.ex.on_stop()
        if self.ex.pub is not None:
            self.ex.pub.sock.close(0)
        self.ex.ctx.term()


def measure(n_symbols: int, bars: int, warmup: int, seed: int, profile: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="exbench") as tmp:
        root = Path(tmp)
        make_home(root, SYMBOLS[:n_symbols])
        run = Run(root, SYMBOLS[:n_symbols], seed)
        try:
            for _ in range(warmup):
                run.one_bar()
            p = run.ex.progress
            before = dict(p)
            c0 = (run.connector.opens, run.connector.closes)
            prof = cProfile.Profile(time.process_time) if profile else None
            if prof:
                prof.enable()
            xs = [run.one_bar() for _ in range(bars)]
            if prof:
                prof.disable()
            per_bar = {k: round((p.get(k, 0) - before.get(k, 0)) / bars, 2) for k in
                       ("signals_seen", "signals_evaluated", "positions_requests", "orders_sent", "closes_sent",
                        "symbol_info_requests", "state_commits", "state_compactions")}
            per_bar["opens_filled"] = round((run.connector.opens - c0[0]) / bars, 2)
            per_bar["closes_filled"] = round((run.connector.closes - c0[1]) / bars, 2)
        finally:
            run.close()
        xs.sort()
        out = {"median_ms": statistics.median(xs) * 1000, "p90_ms": xs[int(0.9 * (len(xs) - 1))] * 1000,
               "per_bar": per_bar}
        if prof:
            out["profile"] = prof
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--bars", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    if args.profile:
        res = measure(args.symbols, args.bars, args.warmup, args.seed, profile=True)
        stats = pstats.Stats(res.pop("profile"))
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
        print(res)
        return 0
    medians = []
    for i in range(args.repeats):
        res = measure(args.symbols, args.bars, args.warmup, args.seed)
        medians.append(res["median_ms"])
        print(f"run {i + 1}: {res['median_ms']:.3f} ms per bar (p90 {res['p90_ms']:.3f}) {res['per_bar']}")
    print(f"executor decide, {args.symbols} symbols: median of medians {statistics.median(medians):.3f} ms CPU per bar")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
