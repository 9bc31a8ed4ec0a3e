"""A rig for the preditor process: a protocol-level stand-in for the connector on the connector's own endpoints
(a PUB publishing ``bar.<SYM>.<TF>`` and a REP answering ``history`` and ``subscribe`` from a bar array), and a SUB
collecting the preditor's signals. No orchestrator: the test runs the preditor's steps over the ``step`` op.

The stand-in is enough for the preditor's properties (parity, gap fill, restarts): what is under test is the
preditor, fed through the real sockets with the real wire code. Bars up to ``cursor`` (exclusive) are "closed":
history answers from them only, as a broker would.
"""

from __future__ import annotations

import json
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from system.sub_reader import SubReader

from common import bus, config, messages


class StandInConnector:
    """The connector's two sockets, answering from ``bars`` (the twin's (n, 6) array) for one or more symbols; or
    from one array per symbol (a map; the same bar times in each)."""

    def __init__(self, cfg: config.Config, bars: np.ndarray | dict[str, np.ndarray], symbols: dict[str, str],
                 cursor: int = 0):
        self.cfg = cfg
        self.symbols = dict(symbols)  # symbol -> timeframe
        self.by_symbol = bars if isinstance(bars, dict) else dict.fromkeys(self.symbols, bars)
        self.bars = next(iter(self.by_symbol.values()))
        self.times = self.bars[:, 0].astype(np.int64)
        self.cursor = cursor
        self.requests: list[tuple[str, Any]] = []  # (op, args), in order
        self.subscriptions: dict[str, int | None] = {}
        self.fail_history = False  # True: history answers an error, as a connector whose broker is away
        self.ctx = zmq.Context.instance()
        self._lock = threading.Lock()
        self.pub = self._new_pub()
        self._stop = threading.Event()
        self._rep_ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._rep_ready.wait(5)

    def _new_pub(self) -> bus.Publisher:
        return bus.Publisher(self.ctx, self.cfg.endpoint("connector", "pub"), "connector", bus.new_epoch())

    # ---- REP (its own thread and socket) --------------------------------------------------------
    def _serve(self) -> None:
        rep = bus.Responder(self.ctx, self.cfg.endpoint("connector", "rep"),
                            {messages.OP_HISTORY.name: self._history, messages.OP_SUBSCRIBE.name: self._subscribe},
                            bus.WireErrors("stand-in"))
        self._rep_ready.set()
        try:
            while not self._stop.is_set():
                if rep.sock.poll(50):
                    rep.serve_ready()
        finally:
            rep.close()

    def _closed(self, symbol: str, timeframe: str) -> np.ndarray:
        if self.symbols.get(symbol) != timeframe:
            raise bus.OpError("unknown_symbol", f"{symbol} {timeframe} is not served")
        with self._lock:
            return self.by_symbol[symbol][: self.cursor]

    def _history(self, a: messages.HistoryArgs) -> messages.HistoryResult:
        self.requests.append(("history", a))
        if self.fail_history:
            raise bus.OpError("not_connected", "history: the broker is not connected (stand-in)")
        bars = self._closed(a.symbol, a.timeframe)
        t = bars[:, 0]
        keep = np.ones(len(bars), dtype=bool)
        if a.since is not None:
            keep &= t > a.since
        if a.until is not None:
            keep &= t < a.until
        sel = bars[keep]
        if a.since is None:
            sel = sel[-a.count:] if a.count else sel[:0]
        elif a.count:
            sel = sel[: a.count]
        rows = [[int(r[0]), *(float(x) for x in r[1:])] for r in sel]
        return messages.HistoryResult(a.symbol, a.timeframe, rows)

    def _subscribe(self, a: messages.SubscribeArgs) -> messages.Subscribed:
        self.requests.append(("subscribe", a))
        self._closed(a.symbol, a.timeframe)
        self.subscriptions[a.symbol] = a.since
        return messages.Subscribed(a.symbol, a.timeframe, subscribed=True)

    # ---- the market (test thread) ---------------------------------------------------------------
    def close_bar(self, i: int) -> None:
        """Bar ``i`` is closed: history serves it from now on (it is not published)."""
        with self._lock:
            self.cursor = max(self.cursor, i + 1)

    def publish(self, i: int, symbols: list[str] | None = None) -> None:
        """Close bar ``i`` and publish it on ``bar.<SYM>.<TF>`` for each symbol."""
        self.close_bar(i)
        for sym in symbols or list(self.symbols):
            tf = self.symbols[sym]
            t, o, h, lo, c, v = (float(x) for x in self.by_symbol[sym][i])
            self.pub.publish(messages.bar_topic(sym, tf), messages.Bar(sym, tf, int(t), o, h, lo, c, v))

    def publish_run(self, start: int, stop: int, symbols: list[str] | None = None) -> int:
        """Close bars ``start``..``stop - 1`` and publish them as runs on ``bars.<SYM>.<TF>`` (at most
        ``messages.MAX_RUN`` bars each, as the connector splits a longer one); returns the run messages sent."""
        self.close_bar(stop - 1)
        sent = 0
        for sym in symbols or list(self.symbols):
            tf = self.symbols[sym]
            rows = self.by_symbol[sym][start:stop]
            bars = [messages.Bar(sym, tf, int(r[0]), *(float(x) for x in r[1:])) for r in rows]
            for part in messages.split_run(bars):
                self.pub.publish(messages.bars_topic(sym, tf), messages.BarRun(sym, tf, part))
                sent += 1
        return sent

    def restart_pub(self, settle_s: float = 0.5) -> None:
        """A connector restart as subscribers see it: the PUB comes back with a new epoch."""
        self.pub.close()
        time.sleep(0.1)
        self.pub = self._new_pub()
        time.sleep(settle_s)  # let the subscribers reconnect (a PUB drops what it sends before they have)

    def history_requests(self) -> list[messages.HistoryArgs]:
        return [a for op, a in self.requests if op == "history"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.pub.close()


class SignalTap:
    """A SUB on the preditor's PUB, read by its own thread (sub_reader.py: it resubscribes to a restarted preditor at
    once): every signal, by (symbol, bar_time), duplicates apart; a run's signals (``signals.``) each as if alone,
    the runs counted (``runs``)."""

    def __init__(self, cfg: config.Config, prefixes: tuple[str, ...] = ("signal.", "signals."),
                 programs: tuple[str, ...] = ("preditor",)):
        self.signals: list[messages.Signal] = []
        self.by_key: dict[tuple[str, int], messages.Signal] = {}
        self.duplicates: list[messages.Signal] = []
        self.other: list[bus.Received] = []
        self.arrived: dict[tuple[str, int], float] = {}  # perf_counter() at receipt (benchmarks)
        self.runs: list[messages.SignalRun] = []
        self._lock = threading.Lock()
        self._reader = SubReader([cfg.endpoint(p, "pub") for p in programs], prefixes, self._take,
                                 clock=time.perf_counter)

    def _take(self, got: list[bus.Received], now: float) -> None:
        with self._lock:
            for r in got:
                body = r.envelope.body
                if isinstance(body, messages.SignalRun):
                    self.runs.append(body)
                    for sig in body.signals:
                        self._signal(sig, now)
                elif isinstance(body, messages.Signal):
                    self._signal(body, now)
                else:
                    self.other.append(r)

    def _signal(self, body: messages.Signal, now: float) -> None:
        self.signals.append(body)
        key = (body.symbol, body.bar_time)
        if key in self.by_key:
            self.duplicates.append(body)
        self.by_key[key] = body
        self.arrived.setdefault(key, now)

    def poll(self, timeout_ms: int = 50) -> None:
        """Let the reader thread catch up for a moment."""
        time.sleep(timeout_ms / 1000)

    def wait_for(self, symbol: str, bar_time: int, timeout: float = 10.0) -> messages.Signal:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = self.by_key.get((symbol, bar_time))
                last = self.signals[-1] if self.signals else None
            if got is not None:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"no signal for {symbol} bar {bar_time} within {timeout} s; last: {last}")
            time.sleep(0.002)

    def close(self) -> None:
        self._reader.close()


def run_step(home: Any, step: str, timeout_ms: int = 120_000, program: str = "preditor") -> dict:
    res = home.request(program, messages.OP_STEP.name, messages.StepArgs(step), timeout_ms=timeout_ms)
    assert res.ok, f"{step} failed: {res.error}"
    return res.result


def start_preditor(home: Any, program: str = "preditor", steps: bool = True) -> dict:
    """Start the preditor process (``program`` ``preditor-<n>``: shard n) and run its two boot steps (as the
    orchestrator would; ``steps`` False: started and answering, no step run)."""
    shard = program.rpartition("-")[2] if program != "preditor" else None
    home.start("preditor", *(("--shard", shard) if shard is not None else ()), program=program)
    deadline = time.monotonic() + 60
    while True:  # wait for its REP socket (the process imports torch first)
        try:
            home.request(program, "ping", timeout_ms=500)
            break
        except bus.RequestTimeout:
            if time.monotonic() > deadline:
                log = home.log(program)[-2000:]
                raise AssertionError(f"{program} did not answer ping within 60 s: {log}") from None
    time.sleep(0.3)  # let subscribers (re)connect to its new PUB: a PUB drops what it sends before they have
    if not steps:
        return {}
    load = run_step(home, "preditor.load", program=program)
    warm = run_step(home, "preditor.warmup", program=program)
    return {"load": load, "warmup": warm}


def copy_model_as(src: Path, dst_dir: Path, symbol: str) -> Path:
    """The model ``src`` re-labelled for ``symbol`` (metadata and member names; same HMM and weights)."""
    with zipfile.ZipFile(src) as zin:
        meta = json.loads(zin.comment.decode("utf-8"))
        old = f"{meta['symbol']['name']}_{meta['symbol']['timeframe']}"
        new = f"{symbol}_{meta['symbol']['timeframe']}"
        meta["symbol"]["name"] = symbol
        meta["symbol"]["clean"] = symbol
        out = dst_dir / f"{new}.zip"
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                renamed = zipfile.ZipInfo(info.filename.replace(old, new, 1), date_time=info.date_time)
                renamed.compress_type = zipfile.ZIP_DEFLATED
                zout.writestr(renamed, zin.read(info.filename))
            zout.comment = json.dumps(meta, sort_keys=True).encode("utf-8")
    return out
