"""The executor process: signals -> orders on the real account under the sync rule and the risk guard.

The imperative shell around the pure domain of this package (README.md): it takes the signals waiting at a moment
as a batch, gathers their inputs from the connector in one request (positions, with the account and the live
quotes), asks `plan.plan_signal` what to do for each, sends all the batch's orders at once (one REQ socket each,
order_lines.py) and goes on while they wait for their fills, and publishes one or more `ack.<SYM>` per signal.
Signals, acks and alerts are persisted (tables `signals`, `acks`, `events`).

- Signals are desired states: the latest per symbol is acted on; a signal whose bar is not after the last one
  evaluated for its symbol is a replay and is ignored. A gap or a new epoch in the preditor's stream -> ask
  `last_signals`.
- Orders are idempotent: the client order id is derived from (symbol, bar time, action[, ticket]), so a retry
  after a timeout, a replay, or a restart between a signal and its fill never makes a second order (the
  connector answers the first result for an id it has seen).
- `executor.sync` reconciles (positions, orphans, last signals) and may close, never open.
- HALTED (system state, or the risk guard's emergency) blocks openings; closes always go.
- Dry-run: the whole decision path, no order sent; the acks say DRY_RUN.
- A closed market (README "Closed market"): an opening the broker refuses as MARKET_CLOSED is acked SKIP and not
  sent again; a close it refuses so is due at the open (due_closes.py), sent once when `market.<SYM>` says open or
  at `executor.sync` when the positions reply does not list the market as closed.
- State that must survive a restart (pause, risk state: halt, session start balance, loss streak; the last stance
  per symbol; the orders out now, written ahead, the last acks, the closes due at the open) is written atomically
  to `<data_dir>/<executor.state_file>` (state_file.py); everything else is rebuilt from the connector and the
  preditor.
- Units: lots, prices, price distances and account money only; the connector converts to and from the broker's.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import zmq

from common import bus, logs, messages, runtime, wire
from common.bus import Received
from common.config import TIMEFRAMES
from common.sequence import Delivery
from services.executor import commands, due_closes, inputs, state_file, state_v1
from services.executor import risk as risk_rules
from services.executor import symbols_config as sc
from services.executor.acks import (
    Ack,
    AckStatus,
    ack_already_due,
    ack_dry_run,
    ack_failed,
    ack_filled,
    ack_refused,
    ack_skip,
)
from services.executor.batch import Batch, Decided
from services.executor.commands import CloseOrder, RealPosition
from services.executor.due_closes import DueClose, DueCloses
from services.executor.lots import check_config_lots
from services.executor.order_lines import OrderGroup
from services.executor.plan import OpenOrder, SignalInputs, emergency_closes, plan_signal
from services.executor.sync import Direction, Stance, SyncAction
from services.paper.model_meta import read_models

log = logging.getLogger("oracle.executor")

DUE_CLOSE = "DUE_CLOSE"  # the ack action of a close sent at the open (it was refused as MARKET_CLOSED)
FLIGHT_TURN_MS = 20  # the loop's longest sleep while orders are in flight (their answers wake it at once)
ORDER_ATTEMPT_S = 5.0  # one order request's wait before it is asked again (same client order id)


class ConnectorDown(RuntimeError):
    """The connector did not answer (or refused) a request the decision needs; the signal is retried."""


@dataclass
class _Flight:
    """A batch's orders out at the connector; its signals are acked when the last answer is in."""

    batch: list[Decided]
    jobs: list[tuple[int, CloseOrder | OpenOrder]]  # (index in batch, order)
    acks: list[list[Ack | None]]  # per signal; None: the ack of an order still out
    sides: dict[int, Direction]  # ticket -> side of its closing deal
    intents: list[dict]  # kept in the state file until the flight lands
    margin: float  # required margin of its openings
    acked: set[int]  # the signals of the batch with no order out: acked when it took off
    group: OrderGroup | None = None

    @property
    def symbols(self) -> set[str]:
        return {o.sig.symbol for o in self.batch}


class Executor(runtime.Service):
    name = "executor"
    subscribe_to = {
        "orchestrator": [messages.SYS_STATE_TOPIC],
        # hb. too: a restarted preditor (new epoch) or our late join (first message) shows within a heartbeat
        "preditor": ["signal.", "hb.", "alert."],
        "connector": ["fill.", "closed.", "reject.", "market.", messages.ACCOUNT_TOPIC, messages.CONNECTION_TOPIC],
    }
    not_implemented = [
        "broker expected margin (ProtoOAExpectedMarginReq): the margin check uses the account leverage",
        "quote age: the connector's symbol_info gives no quote time; a quote is dated when received while the "
        "broker is connected",
    ]

    def __init__(self, cfg: Any, dry_run: bool = False):
        super().__init__(cfg, dry_run)
        self.symbols_path = cfg.path(cfg.executor.config_file)
        data_dir = cfg.path(cfg.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.state_path: Path = data_dir / cfg.executor.state_file
        self.config: sc.ExecutorSymbols | None = None
        self.modelled: set[str] = set()
        self.paused = False
        self.risk = risk_rules.RiskState(None, None, None)
        self.previous: dict[str, Stance] = {}  # last signal evaluated per symbol (kept in the state file)
        self.handled: dict[str, int] = {}  # bar time of that signal
        self._last_acks: list[dict] = []  # the records of the last evaluation's acks (kept in the state file)
        self._replay: list[dict] = []  # orders decided by an earlier process that died carrying them out
        self._v1_intents: list[dict] = []  # the same, written by a version-1 executor: converted when replayed
        self.due = DueCloses()  # closes refused as MARKET_CLOSED, sent at the open (kept in the state file)
        self.markets: dict[str, dict] = {}  # symbol -> {"open", "time", "reason"}: what the connector said last
        self.closed_markets: set[str] = set()  # symbols the last positions reply listed as closed
        self._opened: set[str] = set()  # symbols whose market opened with closes due there, not yet sent
        self._flights: list[_Flight] = []  # batches whose orders are out
        self._order_lines: list[bus.Requester] = []  # idle REQ sockets to the connector, one per order in flight
        self.pending: dict[str, tuple[messages.Signal, int | None, int | None]] = {}  # latest unevaluated
        self.failed_acked: set[tuple[str, int]] = set()  # signals already acked FAIL while the connector was down
        self.last_decisions: dict[str, str] = {}
        self.positions: list[RealPosition] = []
        # self.positions was fetched in this pass of the loop and no order went out since: the signals taken
        # together share one positions request (a position changed by anyone before a signal arrived is seen)
        self._positions_fresh = False
        self._symbol_data: dict[str, inputs.SymbolData] = {}  # last symbol_info per symbol (spec; quote aged)
        self._book_account: inputs.AccountData | None = None  # from the last positions answer
        self._book_quotes: dict[str, messages.BookQuote] = {}  # symbol -> live quote, from the same answer
        self.orphans: list[str] = []
        self.pip_positions: dict[str, int] = {}
        self.connected: bool | None = None
        self.synced = False
        self.stopped = False
        self._retry_at = 0.0
        self._want_last_signals = False
        self._last_signals_at = 0.0
        self._connector: bus.Requester | None = None
        self._preditor: bus.Requester | None = None
        self._alerts = 0
        self.timeframes: dict[str, str] = {}  # symbol -> timeframe of its model
        self._load_state()

    # ---- state file -----------------------------------------------------------------------------
    def _load_state(self) -> None:
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("executor state %s unreadable (%s); starting without it", self.state_path, exc)
            return
        try:
            state, notes = state_file.from_json(data)
        except state_file.StateFileError as exc:
            log.error("executor state %s: %s; ignored", self.state_path, exc)
            return
        for note in notes:
            log.warning("executor state %s: %s", self.state_path, note)
        self.paused, self.risk, self.due = state.paused, state.risk, state.due
        for symbol, (stance, bar_time) in state.last.items():
            self.previous[symbol] = stance
            self.handled[symbol] = bar_time
        self._replay = state.intents
        self._v1_intents = state.v1_intents
        for record in state.acks:  # the last evaluation's acks, maybe not handed over before a crash
            if record.get("id"):
                self.persist("acks", record)
        if len(self.due):
            logs.event(log, logging.INFO, "closes due at the open", tickets=[d.ticket for d in self.due.closes])

    def _save_state(self) -> None:
        state = state_file.ExecutorState(
            paused=self.paused, risk=self.risk,
            last={s: (self.previous[s], t) for s, t in self.handled.items() if s in self.previous},
            acks=self._last_acks, intents=self._replay + [i for f in self._flights for i in f.intents],
            v1_intents=self._v1_intents, due=self.due)
        text = json.dumps(state_file.to_json(state))
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    # ---- requests (Lazy Pirate, polled so heartbeats keep going) ---------------------------------
    def _requester(self, service: str) -> bus.Requester:
        attr = f"_{service}"
        req = getattr(self, attr)
        if req is None:
            req = bus.Requester(self.ctx, self.cfg.endpoint(service, "rep"), self.name,
                                self.cfg.runtime.request_timeout_ms)
            setattr(self, attr, req)
        return req

    def _call(self, service: str, op: str, args: Any, timeout_s: float | None = None) -> Any:
        """One request; heartbeats go on while waiting. RequestTimeout / RequestFailed / WireError on failure."""
        timeout_ms = int((timeout_s or self.cfg.runtime.request_timeout_ms / 1000) * 1000)
        return self.ask(self._requester(service), op, args, timeout_ms)

    def _connector_call(self, op: str, args: Any, timeout_s: float | None = None) -> Any:
        try:
            return self._call("connector", op, args, timeout_s)
        except (bus.RequestTimeout, bus.RequestFailed, wire.WireError) as exc:
            raise ConnectorDown(f"{op}: {exc}") from exc

    def _fetch_positions(self) -> list[RealPosition]:
        """The account's positions; the same answer brings the account and the live quotes (`_book_account`,
        `_book_quotes`), which the openings decided on these positions use."""
        self.count("positions_requests")
        raw = self._connector_call(messages.OP_POSITIONS.name, messages.NoArgs())
        try:
            self.positions = inputs.positions(raw)
        except ValueError as exc:
            raise ConnectorDown(f"positions: {exc}") from exc
        self.closed_markets = inputs.closed_markets(raw)
        # the connector answers positions only with its broker session up (its live book, or a reconcile after a
        # drop): connected now, even when its conn.state saying so still waits behind this batch
        self.connected = True
        self._book_account, self._book_quotes = inputs.account(raw.account), raw.quotes
        if self._book_account.equity is not None:
            self.risk = risk_rules.on_equity(self.risk, self._book_account.equity)
        return self.positions

    def _quoted(self, symbol: str, now: float) -> inputs.SymbolData:
        """The symbol's spec with the quote of the positions answer just read; symbol_info when it has none."""
        spec = self._symbol_data.get(symbol)
        quote_time = now if self.connected is not False else None
        fresh = inputs.with_quote(spec, self._book_quotes.get(symbol), quote_time) if spec is not None else None
        return fresh or self._fetch_symbol(symbol, now)

    def _account_now(self, now: float) -> inputs.AccountData:
        return self._book_account or self._fetch_account(now)

    def _fetch_account(self, now: float) -> inputs.AccountData:
        self.count("account_requests")
        acct = inputs.account(self._connector_call(messages.OP_ACCOUNT.name, messages.NoArgs()))
        if acct.equity is not None:
            self.risk = risk_rules.on_equity(self.risk, acct.equity)
        return acct

    def _fetch_symbol(self, symbol: str, now: float) -> inputs.SymbolData:
        self.count("symbol_info_requests")
        try:
            raw = self._call("connector", messages.OP_SYMBOL_INFO.name, messages.SymbolArgs(symbol))
        except (bus.RequestTimeout, wire.WireError) as exc:
            # no answer: the connector is down (or died with the request); the signal is retried when it is back
            # (the positions may be fresh from a moment ago: this is the only request that sees it)
            self.count("symbol_info_failures")
            raise ConnectorDown(f"symbol_info {symbol}: {exc}") from exc
        except bus.RequestFailed as exc:
            # unknown symbol, or no quote yet (the connector waits for one): the plan fails closed on openings
            # (NO_SYMBOL_DATA / NO_QUOTE) and closes still go
            log.warning("symbol_info %s: %s", symbol, exc)
            self.count("symbol_info_failures")
            return inputs.SymbolData(symbol, None, None, None)
        data = inputs.symbol_data(raw, quote_time=now if self.connected is not False else None)
        if data.volume_limits is not None and data.price_data is not None:
            self._symbol_data[symbol] = data
        if data.price_data is not None and data.price_data.pip_position is not None:
            self.pip_positions[symbol] = data.price_data.pip_position
        return data

    # ---- publishing and persisting ------------------------------------------------------------
    def _emit_ack(self, ack: Ack, signal: messages.Signal | None, index: int = 0, record: dict | None = None) -> None:
        body = messages.Ack(**ack.wire_body())
        self.publish(messages.ack_topic(ack.symbol), body)
        self.persist("acks", record or inputs.ack_record(ack, time.time(), signal, index, self.epoch))
        self.count(f"acks_{ack.status.value.lower()}")
        logs.event(log, logging.INFO, "ack", symbol=ack.symbol, bar_time=ack.bar_time, action=ack.action,
                   status=ack.status.value, reason=ack.reason, cid=ack.client_order_id or "")

    def alert(self, kind: str, severity: str, message: str, **details) -> None:
        super().alert(kind, severity, message, **details)
        self._alerts += 1
        self.persist("events", inputs.alert_record(kind, severity, message, time.time(), details,
                                                   (self.epoch, self._alerts)))

    # ---- lifecycle steps ------------------------------------------------------------------------
    def on_step(self, step: str, args: dict) -> dict:
        if step == "executor.load":
            return self._step_load()
        if step == "executor.sync":
            return self._step_sync()
        if step == "executor.stop":
            return self._step_stop()
        return super().on_step(step, args)

    def _step_load(self) -> dict:
        try:
            config = sc.load(self.symbols_path)
        except FileNotFoundError:
            raise runtime.StepFailed(f"symbol config {self.symbols_path} not found") from None
        except sc.ConfigError as exc:
            raise runtime.StepFailed(f"symbol config {self.symbols_path}: {exc}") from None
        metas, errors = read_models(self.cfg.path(self.cfg.preditor.models_dir))
        self.modelled = {m.symbol for m in metas}
        self.timeframes = {m.symbol: m.timeframe for m in metas}
        config, created = sc.ensure_symbols(config, self.modelled)
        if created:
            sc.write_atomic(self.symbols_path, config)
            self.alert("new_symbol", "info", f"config created disabled for {', '.join(created)}: enable to trade",
                       symbols=created)
        self.config = config
        return {"config_file": str(self.symbols_path), "symbols": sorted(config.symbols),
                "enabled": sorted(s for s, c in config.symbols.items() if c.enabled),
                "modelled": sorted(self.modelled), "created": created, "model_errors": errors,
                "paused": self.paused, "halted": self.risk.halted}

    def _step_sync(self) -> dict:
        if self.config is None:
            raise runtime.StepFailed("executor.sync before executor.load")
        self._wait_flights()  # the reconcile sees what the orders out now did
        now = time.time()
        try:
            positions = self._fetch_positions()
            acct = self._fetch_account(now)
        except ConnectorDown as exc:
            raise runtime.StepFailed(f"cannot reconcile: {exc}") from None
        if self.risk.session_start_balance is None and acct.balance is not None:
            start = risk_rules.start_session(acct.balance, acct.equity)  # a halt and the loss streak carry over
            self.risk = replace(self.risk, session_start_balance=start.session_start_balance,
                                peak_equity=start.peak_equity, equity=start.equity)
            self._save_state()
        orphans = sorted({p.symbol for p in positions if p.symbol not in self.modelled})
        new_orphans = [s for s in orphans if s not in self.orphans]
        self.orphans = orphans
        for symbol in new_orphans:
            tickets = [p.ticket for p in positions if p.symbol == symbol]
            self.alert("orphan", "warning", f"{symbol}: position(s) {tickets} without a model; never touched "
                       "automatically (close with `oracle ctl close {symbol}`)", symbol=symbol, tickets=tickets)
        due_before = len(self.due)
        self._release_due_at_sync()  # closes due at the open: now, where the market is not said to be closed
        self._opened.difference_update(set(self._opened) - self.closed_markets)
        lot_problems = self._check_lots(now)
        # the preditor's last signals, and anything that arrived before: evaluated, closes only
        latest = dict(self.pending)
        last, why = self._ask_last_signals()
        for sig in last:
            if sig.symbol not in latest or sig.bar_time > latest[sig.symbol][0].bar_time:
                latest[sig.symbol] = (sig, None, None)
        self.pending.clear()
        evaluated = {}
        for symbol in sorted(latest):
            sig, seq, epoch = latest[symbol]
            if sig.bar_time <= self.handled.get(symbol, -1):
                continue
            self._persist_signal(sig)
            if self._next_bar(symbol, sig.bar_time):
                # the bar right after the last one evaluated (before a crash, or while the connector restarted):
                # a live signal missed by a moment, evaluated as live once synced, as it would have been
                self.pending[symbol] = (sig, seq, epoch)
                evaluated[symbol] = "live"
                continue
            try:
                evaluated[symbol] = self._evaluate(sig, allow_open=False)
            except ConnectorDown as exc:
                self.pending[symbol] = (sig, seq, epoch)
                evaluated[symbol] = f"retry: {exc}"
        self.synced = True
        return {"positions": len(positions), "tickets": [p.ticket for p in positions], "orphans": orphans,
                "due_closes": {"before": due_before, "after": len(self.due),
                               "closed_markets": sorted(self.closed_markets)},
                "last_signals": len(last), "last_signals_note": why, "evaluated": evaluated,
                "lot_problems": lot_problems,
                "paused": self.paused, "halted": self.halted, "dry_run": self.dry_run}

    def _next_bar(self, symbol: str, bar_time: int) -> bool:
        """`bar_time` is the bar after the last one evaluated for `symbol` (one timeframe later)."""
        last, step = self.handled.get(symbol), TIMEFRAMES.get(self.timeframes.get(symbol, ""))
        return last is not None and step is not None and 0 < bar_time - last <= step

    def _check_lots(self, now: float) -> dict[str, dict[int, str]]:
        """Configured lots of every enabled modelled symbol against the broker's volume limits (an alert per symbol
        whose lots cannot be sent as they are; its openings would be skipped)."""
        assert self.config is not None
        problems: dict[str, dict[int, str]] = {}
        for symbol in sorted(self.modelled):
            cfg = self.config.symbol(symbol)
            if not cfg.enabled:
                continue
            try:
                data = self._fetch_symbol(symbol, now)
            except ConnectorDown:
                continue
            found = check_config_lots(cfg, data.volume_limits)
            if found:
                problems[symbol] = found
                rounded = all(p.startswith("ROUNDED_DOWN") for p in found.values())  # off_step: round_down
                self.alert("config", "info" if rounded else "warning",
                           f"{symbol}: configured lots not sendable as configured: {found}", symbol=symbol)
        return problems

    def _step_stop(self) -> dict:
        self._wait_flights()
        self.stopped = True
        self.pending.clear()
        # an ordered stop ends the session: the next boot measures drawdown from its own start balance (a crash
        # or kill keeps it). A halt stays until a person lifts it.
        self.risk = replace(self.risk, session_start_balance=None, peak_equity=None)
        self.previous.clear()  # and the next boot's first signal is a first signal again
        self.handled.clear()
        self._save_state()
        if not self.cfg.close_on_exit:
            return {"stopped": True, "closed": []}
        try:
            positions = self._fetch_positions()
        except ConnectorDown as exc:
            raise runtime.StepFailed(f"close_on_exit: cannot read positions: {exc}") from None
        ctx = self._command_context(positions)
        result = commands.close_all(ctx, commands.NoArgs())
        acks = self._send_closes([replace(c, reason="CLOSE_ON_EXIT") for c in result.closes], "CLOSE_ON_EXIT")
        for i, ack in enumerate(acks):
            self._emit_ack(ack, None, i)
        return {"stopped": True, "closed": [a.ticket for a in acks if a.status == AckStatus.OK],
                "failed": [a.detail for a in acks if a.status == AckStatus.FAIL]}

    # ---- last signals -------------------------------------------------------------------------
    def _ask_last_signals(self) -> tuple[list[messages.Signal], str]:
        try:
            raw = self._call("preditor", messages.OP_LAST_SIGNALS.name, messages.NoArgs())
        except (bus.RequestTimeout, bus.RequestFailed, wire.WireError) as exc:
            return [], f"preditor did not answer last_signals: {exc}"
        self.count("last_signals_asked")
        return list(inputs.latest_per_symbol(inputs.last_signals(raw)).values()), ""

    # ---- signals ------------------------------------------------------------------------------
    @property
    def halted(self) -> bool:
        return self.system_state == messages.HALTED or self.risk.halted

    def on_message(self, received: Received) -> None:
        env = received.envelope
        body = env.body
        # a gap, a restarted preditor, or the first message heard (a signal published between our sync and our
        # subscription reaching the preditor is lost otherwise): ask for the last signals
        if env.src == "preditor" and received.seen.delivery in (Delivery.GAP, Delivery.NEW_EPOCH, Delivery.FIRST):
            self._want_last_signals = True
            self.count("preditor_gaps")
        if isinstance(body, messages.Signal):
            self.count("signals_seen")
            self._take_signal(body, env.seq, env.epoch)
        elif isinstance(body, messages.AccountUpdate):
            peak = self.risk.peak_equity
            self.risk = risk_rules.on_equity(self.risk, body.equity)
            if self.risk.peak_equity != peak:
                self._save_state()  # the peak-equity drawdown survives a restart
            self._watch_risk()
        elif isinstance(body, messages.PositionClosed):
            self._on_closed(body)
        elif isinstance(body, messages.Fill):
            self.count("fills_seen")
        elif isinstance(body, messages.OrderRejected):
            self.count("rejects_seen")
        elif isinstance(body, messages.ConnectionState):
            self.connected = body.connected
        elif isinstance(body, messages.MarketState):
            self._on_market(body)

    def _take_signal(self, sig: messages.Signal, seq: int | None, epoch: int | None) -> None:
        if sig.bar_time <= self.handled.get(sig.symbol, -1):
            self.count("signals_replayed")
            return
        current = self.pending.get(sig.symbol)
        if current is not None and current[0].bar_time >= sig.bar_time:
            return
        if current is not None:
            self.count("signals_superseded")  # a newer desired state replaces one not yet acted on
        self.pending[sig.symbol] = (sig, seq, epoch)
        self._persist_signal(sig)

    def _persist_signal(self, sig: messages.Signal) -> None:
        self.persist("signals", inputs.signal_record(sig, TIMEFRAMES.get(self.timeframes.get(sig.symbol, ""))))

    def on_tick(self, now: float) -> None:
        self._drive_flights(now)
        if self._want_last_signals and self.synced and now - self._last_signals_at >= 1.0:
            self._want_last_signals = False
            self._last_signals_at = now
            last, why = self._ask_last_signals()
            if why:
                log.warning("after a gap in the preditor's stream: %s; asked again", why)
                self._want_last_signals = True  # a preditor still loading after its restart answers later
            for sig in last:
                self._take_signal(sig, None, None)
        if (self._replay or self._v1_intents) and self.synced and not self.stopped and now >= self._retry_at:
            try:  # before any newer signal: its plan must see the account these orders make
                self._replay_intents()
            except ConnectorDown as exc:
                self._retry_at = now + 1.0
                log.warning("orders of signals decided before a restart wait for the connector: %s", exc)
                return
        if self._opened and self.synced and not self.stopped and now >= self._retry_at:
            # before the symbol's newer signals: they are decided on the account without the position
            self._release_due_at_open({s for f in self._flights for s in f.symbols})
        if not self.pending or not self.synced or now < self._retry_at:
            return
        busy = {s for f in self._flights for s in f.symbols}  # a symbol's next signal waits for its orders
        if all(s in busy for s in self.pending):
            return
        self._positions_fresh = False  # asked again for every batch of signals
        if self.stopped:
            for sig, _seq, _epoch in self.pending.values():
                self._emit_ack(ack_skip(sig.symbol, "SIGNAL", "STOPPED", "executor.stop ran", sig.bar_time), sig)
            self.pending.clear()
            return
        # every waiting signal is decided first, then all their orders go out together (one state write, orders
        # overlapping at the connector, and with those of batches still waiting for their fills): a bar closing for
        # many symbols reaches its last order as soon as its first
        in_flight = sum(f.margin for f in self._flights)
        batch = Batch(committed_margin=in_flight)
        down: tuple[messages.Signal, ConnectorDown] | None = None
        for symbol in sorted(self.pending):
            if symbol in busy:
                continue
            sig, _seq, _epoch = self.pending[symbol]
            try:
                batch.decided.append(self._decide(sig, True, batch))
            except ConnectorDown as exc:
                down = (sig, exc)
                break
            self.pending.pop(symbol, None)
            self.failed_acked = {k for k in self.failed_acked if k[0] != symbol}
        if batch.decided:
            self._execute(batch.decided, batch.committed_margin - in_flight)
        if down is not None:
            sig, exc = down
            self._retry_at = time.monotonic() + 1.0
            self.count("connector_failures")
            key = (sig.symbol, sig.bar_time)
            if key not in self.failed_acked:  # one FAIL ack per signal; it is retried until a newer one comes
                self.failed_acked.add(key)
                self._emit_ack(Ack(sig.symbol, "SIGNAL", AckStatus.FAIL, "NO_CONNECTOR", str(exc),
                                   bar_time=sig.bar_time), sig)
            log.warning("signal %s %s waits for the connector: %s", sig.symbol, sig.bar_time, exc)

    def _evaluate(self, sig: messages.Signal, allow_open: bool) -> str:
        """Decide one signal and carry it out. ConnectorDown before any decision: nothing recorded, retried."""
        decided = self._decide(sig, allow_open, Batch())
        self._execute([decided])
        self._wait_flights()
        return decided.reason

    def _decide(self, sig: messages.Signal, allow_open: bool, batch: Batch) -> Decided:
        """Plan one signal (its orders are carried out by `_execute`, with the others of its batch). ConnectorDown
        before the decision: nothing recorded."""
        now = time.time()
        assert self.config is not None
        symbol = sig.symbol
        try:
            stance = inputs.stance(sig)
        except ValueError as exc:
            self.handled[symbol] = sig.bar_time
            return Decided(sig, "SIGNAL", "BAD_SIGNAL", allow_open,
                           ack=ack_skip(symbol, "SIGNAL", "BAD_SIGNAL", str(exc), sig.bar_time))
        if not self._positions_fresh:
            self._fetch_positions()  # first: a connector that is down fails here, at once
            self._positions_fresh = True
        # The sync decision reads the positions and the symbol's spec only; the quote and the account matter
        # to an opening alone, which is planned again on the quote and account that came with the positions
        # (symbol_info / account asked only when that answer lacks them)
        data = self._symbol_data.get(symbol) or self._fetch_symbol(symbol, now)
        plan = plan_signal(self._inputs(sig, stance, data, None, now))
        if plan.decision.action == SyncAction.OPEN:
            data = self._quoted(symbol, now)
            plan = plan_signal(self._inputs(sig, stance, data, batch.account(self._account_now, now), now))
            if plan.open is not None and plan.required_margin:
                batch.committed_margin += plan.required_margin
        self.modelled.add(symbol)  # a signal proves a model
        # decided: from here on the signal is consumed whatever happens to its orders
        self.previous[symbol] = stance
        self.handled[symbol] = sig.bar_time
        self.last_decisions[symbol] = plan.decision.reason
        self.count("signals_evaluated")
        if plan.halt and plan.risk is not None:
            self._halt(plan.risk.reason, plan.risk.detail)
        return Decided(sig, plan.decision.action.value, plan.decision.reason, allow_open, list(plan.closes),
                       plan.open, data, plan.ack)

    def _execute(self, batch: list[Decided], margin: float = 0.0, intents: list[dict] | None = None) -> None:
        """Carry out decided signals: the write-ahead intent, every order at once; the acks when the answers are in
        (`_drive_flights`)."""
        jobs: list[tuple[int, CloseOrder | OpenOrder]] = []
        requests: list[tuple[str, Any, str]] = []
        acks: list[list[Ack | None]] = []
        for n, o in enumerate(batch):
            mine: list[Ack | None] = []
            for c in o.closes:
                if self.dry_run:
                    mine.append(ack_dry_run(c.symbol, o.action, c.reason, client_order_id=c.client_order_id,
                                            volume=c.lots, detail=f"close ticket {c.ticket}",
                                            bar_time=o.sig.bar_time))
                    continue
                due = self._already_due(c, o.action, o.sig.bar_time)
                if due is not None:
                    mine.append(due)
                    continue
                self.count("closes_sent")
                jobs.append((n, c))
                requests.append((messages.OP_ORDER_CLOSE.name, messages.OrderCloseArgs(
                    ticket=c.ticket, lots=None, client_order_id=c.client_order_id), c.client_order_id))
                mine.append(None)
            if o.open is not None:
                early = self._open_refused(o)
                if early is None:
                    self.count("orders_sent")
                    jobs.append((n, o.open))
                    requests.append((messages.OP_ORDER_OPEN.name, self._open_args(o.open),
                                     o.open.client_order_id))
                mine.append(early)
            acks.append(mine)
        if intents is None:
            # write-ahead: a crash while these orders are out carries out the same orders again (same client order
            # ids: the connector answers their first result), never decides the signals again on an account they
            # have already changed. Only the orders sent: an opening refused here (halted) stays refused.
            directions = {p.ticket: int(p.direction) for p in self.positions}
            sent_opens = {n for n, order in jobs if isinstance(order, OpenOrder)}
            intents = [replace(batch[n], open=batch[n].open if n in sent_opens else None).intent(directions)
                       for n in sorted({n for n, _ in jobs})]
        sides = {p.ticket: Direction(-int(p.direction)) for p in self.positions}
        # the signals with no order out are done now: their acks' records are written with the intents (a kill
        # while the orders are out loses neither) and the acks go out right after the orders
        ready = [n for n, mine in enumerate(acks) if None not in mine]
        done_now = [self._done(batch[n], acks[n]) for n in ready]
        records = self._records(done_now)
        if not requests:
            self._finish(done_now, records)
            return
        flight = _Flight(batch, jobs, acks, sides, intents, margin, set(ready))
        self._flights.append(flight)
        self._last_acks = [r for rs in records for r in rs]
        self._save_state()
        self._positions_fresh = False  # whatever the outcome, the account may change
        flight.group = self._group(requests)
        flight.group.pump(time.monotonic())  # out now
        self._emit_done(done_now, records)

    def _drive_flights(self, now: float) -> None:
        """Take the answers that arrived; land the batches whose orders are all answered."""
        for flight in list(self._flights):
            assert flight.group is not None
            if flight.group.pump(now):
                self._flights.remove(flight)
                self._release(flight.group)
                self._land(flight, flight.group.final())

    def _wait_flights(self) -> None:
        """Until every batch in flight has landed (a step, a replay, a stop), heartbeats going on."""
        while self._flights:
            self._poll(self.awaited_sockets())
            self._drive_flights(time.monotonic())
            self.beat_if_due()

    def _land(self, flight: _Flight, results: list[messages.OrderResult | str]) -> None:
        acks = flight.acks
        for (n, order), res in zip(flight.jobs, results, strict=True):
            o = flight.batch[n]
            if isinstance(order, CloseOrder):
                ack = self._close_ack(order, o.action, o.sig, flight.sides.get(order.ticket), res)
            else:
                ack = self._open_ack(order, o, res)
            acks[n][acks[n].index(None)] = ack
        self._finish([self._done(flight.batch[n], acks[n]) for n in range(len(flight.batch))
                      if n not in flight.acked])

    def _done(self, o: Decided, acks: list[Ack | None]) -> tuple[messages.Signal, list[Ack]]:
        self.last_decisions[o.sig.symbol] = o.reason
        return o.sig, [a for a in acks if a is not None] + ([o.ack] if o.ack is not None else [])

    def _records(self, done: list[tuple[messages.Signal, list[Ack]]]) -> list[list[dict]]:
        stamp = time.time()
        return [[inputs.ack_record(ack, stamp, sig, i, self.epoch) for i, ack in enumerate(acks)]
                for sig, acks in done]

    def _finish(self, done: list[tuple[messages.Signal, list[Ack]]], records: list[list[dict]] | None = None) -> None:
        """The signals are evaluated and their orders answered: that, the stances and the acks' records survive a
        crash from here on (the next process hands the records to persistence again, never decides them again)."""
        records = self._records(done) if records is None else records
        self._last_acks = [r for rs in records for r in rs]
        self._save_state()
        self._emit_done(done, records)

    def _emit_done(self, done: list[tuple[messages.Signal, list[Ack]]], records: list[list[dict]]) -> None:
        for (sig, acks), rs in zip(done, records, strict=True):
            for i, (ack, record) in enumerate(zip(acks, rs, strict=True)):
                self._emit_ack(ack, sig, i, record)

    def _replay_intents(self) -> None:
        """The orders of signals an earlier process decided and died carrying out: the same orders again, the acks
        the first process would have made. ConnectorDown: kept, retried."""
        self._convert_v1_intents()
        batch = []
        for intent in self._replay:
            sig = messages.from_wire(messages.Signal, intent["signal"])
            closes = [CloseOrder(c["ticket"], c["symbol"], c["lots"], c["client_order_id"], c["reason"])
                      for c in intent["closes"]]
            known = {p.ticket for p in self.positions}
            self.positions += [RealPosition(c["ticket"], c["symbol"], Direction(c["direction"]), c["lots"], "")
                               for c in intent["closes"] if c["direction"] is not None and c["ticket"] not in known]
            order, data = None, None
            if intent["open"] is not None:
                order = OpenOrder(**{**intent["open"], "direction": Direction(intent["open"]["direction"])})
                data = self._fetch_symbol(sig.symbol, time.time())
            logs.event(log, logging.INFO, "orders of a signal decided before a restart", symbol=sig.symbol,
                       bar_time=sig.bar_time, closes=len(closes), open=order is not None)
            ack = Ack.from_dict(intent["ack"]) if intent.get("ack") else None  # an emergency's skip
            batch.append(Decided(sig, intent["action"], intent["reason"], intent["allow_open"], closes, order, data,
                                 ack))
        intents, self._replay = self._replay, []
        self._execute(batch, intents=intents)
        self._wait_flights()

    def _convert_v1_intents(self) -> None:
        """Orders written ahead by a version-1 executor (protocol volumes): converted to lots with their symbols'
        contract sizes (asked of the connector), then carried out like any. One that cannot be converted (the
        connector does not know its symbol) is not sent: an alert names its orders. ConnectorDown: kept, retried."""
        if not self._v1_intents:
            return
        sizes: dict[str, float | None] = {}
        for intent in self._v1_intents:
            for symbol in sorted(state_v1.intent_symbols(intent) - set(sizes)):
                limits = self._fetch_symbol(symbol, time.time()).volume_limits
                sizes[symbol] = limits.contract_size if limits is not None else None
        for intent in self._v1_intents:
            try:
                self._replay.append(state_v1.intent_from_v1(intent, sizes))
                logs.event(log, logging.INFO, "version-1 orders converted to lots", reason=intent.get("reason"))
            except state_v1.LegacyIntentError as exc:
                cids = [c.get("client_order_id") for c in intent.get("closes") or [] if isinstance(c, dict)]
                if isinstance(intent.get("open"), dict):
                    cids.append(intent["open"].get("client_order_id"))
                self.alert("legacy_intent", "critical", f"orders written ahead by a version-1 executor not carried "
                           f"out: {exc}; check them at the broker: {cids}", client_order_ids=cids)
        self._v1_intents = []
        self._save_state()

    def _inputs(self, sig: messages.Signal, stance: Stance, data: inputs.SymbolData,
                acct: inputs.AccountData | None, now: float) -> SignalInputs:
        assert self.config is not None
        return SignalInputs(
            symbol=sig.symbol, bar_time=sig.bar_time, signal=stance, previous=self.previous.get(sig.symbol),
            twin_previous=inputs.twin_previous(sig),
            positions=self.positions, modelled=True, paused=self.paused, config=self.config.symbol(sig.symbol),
            risk_limits=self.config.risk, risk=self.risk, now=now, quote=data.quote,
            volume_limits=data.volume_limits, price_data=data.price_data,
            balance=acct.balance if acct else None, free_margin=acct.free_margin if acct else None,
            leverage=acct.leverage if acct else None, min_sl_distance=data.min_sl_distance,
            min_tp_distance=data.min_tp_distance,
            action_index=sig.action if 0 <= sig.action <= 6 else None,
            hmm_state=sig.hmm_state if sig.hmm_state >= 0 else None, virtual_pnl=sig.virtual_pnl)

    # ---- orders -------------------------------------------------------------------------------
    def _open_refused(self, o: Decided) -> Ack | None:
        """The ack of an opening that is not sent (sync, halt, dry run); None: send it."""
        order = o.open
        assert order is not None
        action, bar_time = SyncAction.OPEN.value, o.sig.bar_time
        if not o.allow_open:
            return Ack(order.symbol, action, AckStatus.WAIT_SYNC, "SYNC_NEVER_OPENS",
                       "executor.sync reconciles and closes; it never opens", bar_time=bar_time,
                       client_order_id=order.client_order_id)
        if self.halted:  # also when a signal decided after this one in the same batch halted
            return ack_skip(order.symbol, action, "HALTED", self.risk.halt_reason or "system HALTED", bar_time)
        if self.dry_run:
            return ack_dry_run(order.symbol, action, o.reason, client_order_id=order.client_order_id,
                               volume=order.lots, detail=f"sl {order.sl_distance} tp {order.tp_distance} "
                               f"label {order.label}", bar_time=bar_time, requested_lots=order.requested_lots,
                               off_step=order.off_step)
        return None

    @staticmethod
    def _open_args(order: OpenOrder) -> messages.OrderOpenArgs:
        return messages.OrderOpenArgs(
            symbol=order.symbol, direction=int(order.direction), lots=order.lots,
            client_order_id=order.client_order_id, sl_distance=order.sl_distance, tp_distance=order.tp_distance,
            comment=order.label)

    def _open_ack(self, order: OpenOrder, o: Decided, res: messages.OrderResult | str) -> Ack:
        action, cid, bar_time = SyncAction.OPEN.value, order.client_order_id, o.sig.bar_time
        if isinstance(res, str):
            return ack_failed(order.symbol, action, res, client_order_id=cid, bar_time=bar_time)
        if not res.success or res.ticket is None or res.price is None:
            return ack_refused(order.symbol, action, opening=True, error_code=res.error_code,
                               broker_code=res.broker_code,
                               error=res.error or ("" if not res.success else "no ticket or price in the result"),
                               client_order_id=cid, bar_time=bar_time, volume=order.lots,
                               requested_lots=order.requested_lots, off_step=order.off_step)
        if all(p.ticket != res.ticket for p in self.positions):  # a positions answer may have brought it already
            self.positions.append(RealPosition(res.ticket, order.symbol, order.direction, order.lots, cid))
        pip = o.data.price_data.pip_position if o.data is not None and o.data.price_data else None
        return ack_filled(order.symbol, action, o.reason, client_order_id=cid, ticket=res.ticket,
                          volume=order.lots, fill_price=res.price, reference_price=o.sig.close,
                          side=order.direction, pip_position=pip, bar_time=bar_time,
                          requested_lots=order.requested_lots, off_step=order.off_step)

    def _close_ack(self, c: CloseOrder, action: str, sig: messages.Signal | None, side: Direction | None,
                   res: messages.OrderResult | str, bar_time: int | None = None) -> Ack:
        """The ack of a close's answer. A close the market refused becomes due at the open (kept in `self.due`;
        the caller saves the state)."""
        bar_time = sig.bar_time if sig is not None else bar_time
        if isinstance(res, str):
            return ack_failed(c.symbol, action, res, client_order_id=c.client_order_id, bar_time=bar_time)
        if res.success and res.price is not None and side is not None:
            return ack_filled(c.symbol, action, c.reason, client_order_id=c.client_order_id, ticket=c.ticket,
                              volume=c.lots, fill_price=res.price,
                              reference_price=sig.close if sig is not None else None, side=side,
                              pip_position=self.pip_positions.get(c.symbol), bar_time=bar_time)
        if res.success or res.error_code == "POSITION_NOT_FOUND" or res.error == "POSITION_NOT_FOUND":
            return Ack(c.symbol, action, AckStatus.OK, "ALREADY_FLAT" if not res.success else c.reason,
                       bar_time=bar_time, client_order_id=c.client_order_id, ticket=c.ticket, volume=c.lots)
        if due_closes.market_refused(res) and action != DUE_CLOSE:
            self.due, added = self.due.add(due_closes.refused(c, action, bar_time, time.time()))
            if added:
                logs.event(log, logging.WARNING, "close due at the open", symbol=c.symbol, ticket=c.ticket,
                           cid=c.client_order_id, action=action)
        return ack_refused(c.symbol, action, opening=False, error_code=res.error_code, broker_code=res.broker_code,
                           error=res.error, client_order_id=c.client_order_id, bar_time=bar_time, ticket=c.ticket,
                           volume=c.lots)

    def _already_due(self, c: CloseOrder, action: str, bar_time: int | None) -> Ack | None:
        """The ack of a close not sent because its position already has a close due at the open; None: send it."""
        due = self.due.for_ticket(c.ticket)
        if due is None:
            return None
        return ack_already_due(c.symbol, action, ticket=c.ticket, due_client_order_id=due.client_order_id,
                               client_order_id=c.client_order_id, bar_time=bar_time)

    def _send_closes(self, closes: list[CloseOrder], action: str, sig: messages.Signal | None = None) -> list[Ack]:
        """Closes outside a signal's plan (commands, emergency, close on exit), all at once. A position with a close
        due at the open is not closed again."""
        bar_time = sig.bar_time if sig else None
        if self.dry_run:
            return [ack_dry_run(c.symbol, action, c.reason, client_order_id=c.client_order_id, volume=c.lots,
                                detail=f"close ticket {c.ticket}", bar_time=bar_time)
                    for c in closes]
        acks: list[Ack | None] = [self._already_due(c, action, bar_time) for c in closes]
        send = [c for c, ack in zip(closes, acks, strict=True) if ack is None]
        sides = {p.ticket: Direction(-int(p.direction)) for p in self.positions}
        self.count("closes_sent", len(send))
        due_before = self.due
        results = iter(self._orders([(messages.OP_ORDER_CLOSE.name,
                                      messages.OrderCloseArgs(ticket=c.ticket, lots=None,
                                                              client_order_id=c.client_order_id),
                                      c.client_order_id) for c in send]))
        out = [ack if ack is not None else self._close_ack(c, action, sig, sides.get(c.ticket), next(results))
               for c, ack in zip(closes, acks, strict=True)]
        if self.due != due_before:
            self._save_state()
        return out

    def _send_due(self, dues: list[DueClose]) -> None:
        """Closes due at the open, sent now with their own client order ids; acked as DUE_CLOSE. The state (the
        dues marked SENT) is saved before they go, and again with their answers."""
        if not dues:
            return
        self._save_state()
        self.count("due_closes_sent", len(dues))
        results = self._orders([(messages.OP_ORDER_CLOSE.name,
                                 messages.OrderCloseArgs(ticket=d.ticket, lots=None, client_order_id=d.client_order_id),
                                 d.client_order_id) for d in dues])
        sides = {p.ticket: Direction(-int(p.direction)) for p in self.positions}
        acks = []
        for d, res in zip(dues, results, strict=True):
            self.due, again = self.due.answered(d.ticket, res)
            ack = self._close_ack(d.order, DUE_CLOSE, None, sides.get(d.ticket), res, bar_time=d.bar_time)
            logs.event(log, logging.INFO if not again else logging.WARNING,
                       "due close refused again: due at the next open" if again else "due close sent at the open",
                       symbol=d.symbol, ticket=d.ticket, cid=d.client_order_id, status=ack.status.value,
                       reason=ack.reason)
            acks.append((d, ack))
        self._save_state()
        for d, ack in acks:
            # one record per sending (a due close refused again is sent again at a later open)
            self._emit_ack(ack, None, d.sent)

    def _drop_gone(self, dropped: list[DueClose]) -> None:
        for d in dropped:
            logs.event(log, logging.INFO, "due close dropped: its position is gone", symbol=d.symbol, ticket=d.ticket,
                       cid=d.client_order_id)

    def _release_due_at_sync(self) -> None:
        """Sync / boot, right after a positions answer: the closes due where that answer does not say the market is
        closed go now; those whose position is gone are dropped."""
        if not len(self.due):
            return
        if self.dry_run:
            log.warning("dry run: %d closes due at the open are kept, not sent", len(self.due))
            return
        self.due, send, dropped = self.due.synced({p.ticket for p in self.positions}, self.closed_markets)
        self._drop_gone(dropped)
        if dropped and not send:
            self._save_state()
        self._send_due(send)

    def _release_due_at_open(self, busy: set[str]) -> None:
        """`market.<SYM>` said open: that symbol's due closes go (after its orders in flight have landed)."""
        ready = sorted(s for s in self._opened if s not in busy)
        if not ready:
            return
        if self.dry_run:
            log.warning("dry run: the closes due at the open of %s are kept, not sent", ", ".join(ready))
            self._opened.difference_update(ready)
            return
        try:
            self._fetch_positions()
        except ConnectorDown as exc:
            self._retry_at = time.monotonic() + 1.0
            log.warning("closes due at the open wait for the connector: %s", exc)
            return
        self._positions_fresh = False
        tickets = {p.ticket for p in self.positions}
        send: list[DueClose] = []
        for symbol in ready:
            self._opened.discard(symbol)
            self.due, mine, dropped = self.due.opened(symbol, tickets)
            self._drop_gone(dropped)
            send += mine
        if not send:
            self._save_state()
        self._send_due(send)

    def _orders(self, requests: list[tuple[str, Any, str]]) -> list[messages.OrderResult | str]:
        """Order requests outside a signal's batch (commands, emergency, close on exit), all at once; returns when
        every one is answered or `executor.order_timeout_s` has passed (order_lines.py). A string is the error."""
        if not requests:
            return []
        self._positions_fresh = False  # whatever the outcome, the account may have changed
        group = self._group(requests)
        while not group.pump(time.monotonic()):
            self._poll(group.sockets())
            self.beat_if_due()
        self._release(group)
        return group.final()

    def _group(self, requests: list[tuple[str, Any, str]]) -> OrderGroup:
        while len(self._order_lines) < len(requests):
            self._order_lines.append(bus.Requester(self.ctx, self.cfg.endpoint("connector", "rep"), self.name,
                                                   self.cfg.runtime.request_timeout_ms))
        lines, self._order_lines = self._order_lines[: len(requests)], self._order_lines[len(requests):]
        return OrderGroup(lines, requests, time.monotonic() + self.cfg.executor.order_timeout_s, ORDER_ATTEMPT_S)

    def _release(self, group: OrderGroup) -> None:
        self._order_lines += group.lines

    @staticmethod
    def _poll(sockets: list[zmq.Socket], timeout_ms: int = 50) -> None:
        if not sockets:
            time.sleep(0.02)  # a resend waits for its time
            return
        poller = zmq.Poller()
        for sock in sockets:
            poller.register(sock, zmq.POLLIN)
        poller.poll(timeout_ms)

    # ---- risk ---------------------------------------------------------------------------------
    def _halt(self, reason: str, detail: str) -> None:
        if self.risk.halted:
            return
        self.risk = risk_rules.halt(self.risk, reason)
        self._save_state()
        self.alert("halted", "critical", f"executor halted: {reason}: {detail}; openings refused, closing "
                   "every position", reason=reason, detail=detail)

    def _watch_risk(self) -> None:
        if self.config is None:
            return
        verdict = risk_rules.watch(self.risk, self.config.risk)
        if verdict.action != risk_rules.RiskAction.CLOSE_ALL_AND_HALT:
            return
        self._halt(verdict.reason, verdict.detail)
        try:
            positions = self._fetch_positions()
        except ConnectorDown as exc:
            log.error("emergency close: cannot read positions: %s", exc)
            return
        for i, ack in enumerate(self._send_closes(list(emergency_closes(positions, int(time.time()))),
                                                  "EMERGENCY_CLOSE")):
            self._emit_ack(ack, None, i)

    def _on_closed(self, ev: messages.PositionClosed) -> None:
        self.count("closes_seen")
        self.positions = [p for p in self.positions if p.ticket != ev.ticket]
        gone = None
        if ev.full:
            self.due, gone = self.due.gone(ev.ticket)
            if gone is not None:
                self._drop_gone([gone])
        if self.config is not None and ev.full:
            # net: the loss streak counts what the account lost (commission and swap included), never the gross
            self.risk = risk_rules.on_close(self.risk, ev.net_profit, time.time(), self.config.risk,
                                            close_id=str(ev.ticket))
        if ev.full and (self.config is not None or gone is not None):
            self._save_state()
        if ev.external:
            self.alert("external_close", "info", f"{ev.symbol} position {ev.ticket} closed outside the executor "
                       f"({ev.reason}, PnL {ev.net_profit:.2f}); its move is now a missed entry",
                       symbol=ev.symbol, ticket=ev.ticket, reason=ev.reason, pnl=ev.net_profit)

    def _on_market(self, ev: messages.MarketState) -> None:
        """The connector says a symbol's market opened or closed. Opened with closes due there: they go at the next
        turn of the loop (`_release_due_at_open`)."""
        self.count("market_events")
        self.markets[ev.symbol] = {"open": ev.open, "time": ev.time, "reason": ev.reason}
        logs.event(log, logging.INFO, "market open" if ev.open else "market closed", symbol=ev.symbol,
                   time=ev.time, reason=ev.reason)
        if ev.open:
            self.closed_markets.discard(ev.symbol)
            if ev.symbol in self.due.symbols():
                self._opened.add(ev.symbol)
        else:
            self.closed_markets.add(ev.symbol)
            self._opened.discard(ev.symbol)

    # ---- commands -----------------------------------------------------------------------------
    def _command_context(self, positions: list[RealPosition]) -> commands.CommandContext:
        assert self.config is not None
        return commands.CommandContext(
            now=int(time.time()), paused=self.paused, risk=self.risk, config=self.config,
            positions=tuple(positions), modelled_symbols=frozenset(self.modelled),
            last_decisions=dict(self.last_decisions))

    def _op_command(self, a: messages.CommandArgs) -> dict:
        if self.config is None:
            raise bus.OpError("not_ready", "executor.load has not run")
        args = dict(a.args)
        if a.name == "set_symbol_config" and "config" in args and "changes" not in args:
            args["changes"] = args.pop("config")  # `oracle ctl set-symbol` sends the changes as `config`
        positions = list(self.positions)
        if a.name in ("close", "close_all", "status"):
            try:
                positions = self._fetch_positions()
            except ConnectorDown as exc:
                if a.name != "status":
                    raise bus.OpError("no_connector", f"cannot read positions: {exc}") from None
        try:
            result = commands.run(a.name, args, self._command_context(positions))
        except commands.CommandError as exc:
            raise bus.OpError(exc.code, str(exc)) from None
        changed = result.paused != self.paused or result.risk != self.risk
        self.paused, self.risk = result.paused, result.risk
        if result.config_changed:
            sc.write_atomic(self.symbols_path, result.config)
            self.config = result.config
        if changed:
            self._save_state()
        reply = dict(result.reply)
        if result.closes:
            acks = self._send_closes(list(result.closes), "MANUAL_CLOSE")
            for i, ack in enumerate(acks):
                self._emit_ack(ack, None, i)
            reply["acks"] = [ack.wire_body() for ack in acks]
        if a.name == "status":
            reply.update(self._executor_facts())
        self.count(f"command_{a.name}")
        logs.event(log, logging.INFO, "command", name=a.name)
        return reply

    def ops(self) -> dict:
        return {messages.OP_COMMAND.name: self._op_command}

    # ---- status -------------------------------------------------------------------------------
    def _executor_facts(self) -> dict:
        return {
            "paused": self.paused, "halted": self.halted, "halt_reason": self.risk.halt_reason,
            "stopped": self.stopped, "synced": self.synced, "connected": self.connected,
            "positions": [{"ticket": p.ticket, "symbol": p.symbol, "direction": int(p.direction),
                           "lots": p.lots, "label": p.label} for p in self.positions],
            "due_closes": self.due.to_list(), "markets": dict(self.markets),
            "closed_markets": sorted(self.closed_markets),
            "orphans": list(self.orphans), "modelled": sorted(self.modelled),
            "last_decisions": dict(self.last_decisions),
            "last_bar_time": dict(self.handled), "pending_signals": sorted(self.pending),
            "risk": self.risk.to_dict(),
        }

    def status_report(self) -> dict:
        return {"symbols": sorted(self.config.symbols) if self.config else [], **self._executor_facts()}

    def health_info(self) -> dict:
        return {"halted": self.halted, "paused": self.paused, "orphans": list(self.orphans),
                "positions": len(self.positions)}

    def pending_work(self) -> int:
        return len(self.pending) + len(self._flights)

    def awaited_sockets(self) -> list[zmq.Socket]:
        return [sock for f in self._flights if f.group for sock in f.group.sockets()]  # answers to orders in flight

    def poll_timeout_ms(self) -> int:
        base = super().poll_timeout_ms()
        return min(base, FLIGHT_TURN_MS) if self._flights else base  # a request asked again is sent on time

    def on_stop(self) -> None:
        lines = [line for f in self._flights if f.group for line in f.group.lines]  # their intents stay saved
        for req in (self._connector, self._preditor, *self._order_lines, *lines):
            if req is not None:
                req.close()


def main(argv: list[str] | None = None) -> int:
    return runtime.main(Executor, argv)
