"""The executor process: signals -> orders on the real account under the sync rule and the risk guard.

The imperative shell around the pure domain of this package (README.md): it takes the signals waiting at a moment
as a batch, gathers their inputs from the connector in one request (positions, with the account and the live
quotes), asks `plan.plan_signal` what to do for each, sends all the batch's orders at once as a flight (its order
desk, order_desk.py: flights.py decides, one REQ socket each) and goes on while they wait for their fills, and
publishes one or more `ack.<SYM>` per signal.
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
  per symbol; the orders out now, written ahead, the last acks, the closes due at the open) is kept in
  `<data_dir>/<executor.state_file>`, a snapshot and a journal of the sections each save changed (state_file.py:
  group commit, one write and one fdatasync per save); everything else is rebuilt from the connector and the
  preditor.
- Logs: no INFO line per message; an ack is a DEBUG line and a counter, and one INFO line a minute sums the acks
  by status. INFO stays for the rare: commands, markets opening and closing, halts, restarts.
- Units: lots, prices, price distances and account money only; the connector converts to and from the broker's.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import zmq

from common import bus, durable, logs, messages, runtime, trace, wire
from common.bus import Received
from common.commands import CloseAll
from common.config import TIMEFRAMES
from common.model_meta import live_only, read_models
from common.sequence import Delivery
from services.executor import commands, inputs, state_file
from services.executor import risk as risk_rules
from services.executor import symbols_config as sc
from services.executor.acks import Ack, AckStatus
from services.executor.commands import RealPosition
from services.executor.decision_desk import NAP_S, DecisionDesk
from services.executor.due_closes import DueCloses
from services.executor.lots import check_config_lots
from services.executor.order_desk import ConnectorDown, OrderDesk
from services.executor.plan import emergency_closes
from services.executor.sync import Stance

log = logging.getLogger("oracle.executor")

SUMMARY_S = 60.0  # the acks by status since the last summary: one INFO line at most this often
_ACK_COUNTERS = {s.value: f"acks_{s.value.lower()}" for s in AckStatus}  # status -> its counter's name


class Executor(DecisionDesk, OrderDesk, runtime.Service):
    name = "executor"
    idle_poll_ms = None  # on_tick's timers are declared in poll_timeout_ms: no wake every 100 ms while idle
    status_record = messages.ExecutorReport
    steps = {"executor.load": "_step_load", "executor.sync": "_step_sync", "executor.stop": "_step_stop"}
    subscribe_to = {
        "orchestrator": [messages.SYS_STATE_TOPIC],
        # hb. too: a restarted preditor (new epoch) or our late join (first message) shows within a heartbeat
        "preditor": ["signal.", "signals.", "hb.", "alert."],
        # not fill. nor reject.: an order's outcome is its answer (order_lines.py); decoding them cost a wakeup each
        "connector": ["closed.", "market.", messages.ACCOUNT_TOPIC, messages.CONNECTION_TOPIC],
    }
    not_implemented = [
        "broker expected margin (ProtoOAExpectedMarginReq): the margin check uses the account leverage",
        "quote age: the connector's symbol_info gives no quote time; a quote is dated when received while the "
        "broker is connected",
    ]

    def __init__(self, cfg: Any, dry_run: bool = False):
        super().__init__(cfg, dry_run)
        # the preditor's programs (its shards, common/programs.py): one stream of signals from all of them
        self.preditors = cfg.of_kind("preditor")
        self.subscribe_to = {**{k: v for k, v in self.subscribe_to.items() if k != "preditor"},
                             **{p: self.subscribe_to["preditor"] for p in self.preditors}}
        self._preditors: dict[str, bus.Requester] = {}
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
        self.due = DueCloses()  # closes refused as MARKET_CLOSED, sent at the open (kept in the state file)
        self.markets: dict[str, dict] = {}  # symbol -> {"open", "time", "reason"}: what the connector said last
        self.closed_markets: set[str] = set()  # symbols the last positions reply listed as closed
        self.pending: dict[str, tuple[messages.Signal, int | None, int | None]] = {}  # latest unevaluated
        self._signal_records: list[dict] | None = None  # while the SUB socket is read: its signals' records
        self.failed_acked: set[tuple[str, int]] = set()  # signals already acked FAIL while the connector was down
        self.last_decisions: dict[str, str] = {}
        self.positions: list[RealPosition] = []
        # self.positions was fetched for the batch of signals being gathered (as its first signal arrived) and no
        # order went out since: the signals taken together share one positions request
        self._positions_fresh = False
        self._positions_down: ConnectorDown | None = None  # the batch's positions request failed (decision_desk.py)
        self._deferred: list[Received] | None = None  # read while the batch's positions are awaited (ask)
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
        self._acks_since: dict[str, int] = {}  # status -> acks emitted since the last summary (INFO once a minute)
        self._summary_at = time.monotonic() + SUMMARY_S
        self.timeframes: dict[str, str] = {}  # symbol -> timeframe of its model
        # the state changed by a message (a higher equity peak, a closed position's loss streak): made durable at
        # the end of the loop's turn, with whatever else that turn changed (one journal entry, not one per message)
        self._state_dirty = False
        self._saved_sections: dict[str, Any] = {}  # section -> its value as made durable last (state_file.to_json)
        self._gather_from: float | None = None  # the signals waiting: when the first arrived (decision_desk.py)
        self._expecting: tuple[tuple[str, int], frozenset[str]] = (("", -1), frozenset())
        self._open_desk()
        self.store = durable.JournaledState(self.state_path)  # state_file.py: snapshot and journal
        self._load_state()

    # ---- state file -----------------------------------------------------------------------------
    def _load_state(self) -> None:
        try:
            data, notes = self.store.load()
        except (OSError, ValueError) as exc:
            log.error("executor state %s unreadable (%s); starting without it", self.state_path, exc)
            return
        for note in notes:
            log.warning("executor state %s: %s", self.state_path, note)
        if data is None:
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
        for record in state.ack_records:  # the last evaluation's acks, maybe not handed over before a crash
            if record.get("id"):
                self.persist("acks", record)
        if self.store.needs_compaction:  # a file of the format before the journal (or a version 1): converted once
            logs.event(log, logging.INFO, "executor state converted to snapshot and journal", path=self.state_path)
            self._save_state(compact=True)
        if len(self.due):
            logs.event(log, logging.INFO, "closes due at the open", tickets=[d.ticket for d in self.due.closes])

    def _save_state(self, compact: bool = False, sync: bool = True, ahead: bool = False) -> None:
        """Make the state durable: the sections that changed since the last save as one journal entry (one write,
        one fdatasync), or a whole snapshot when `compact` or a rare section changed (state_file.py). `sync=False`:
        the entry is in the OS at once (a kill loses nothing) and on the disk with the next synced one (the batch's
        fdatasync covers it): for what arrives between batches (equity, closed positions). `ahead`: the entry
        written ahead of a batch's orders, which wait for it: a journal grown past its size is folded into a
        snapshot by the next save (its landing's), not by this one."""
        self._state_dirty = False
        state = state_file.ExecutorState(
            paused=self.paused, risk=self.risk,
            last={s: (self.previous[s], t) for s, t in self.handled.items() if s in self.previous},
            ack_records=self._last_ack_records, intents=self._replay + self._flights.intents(),
            v1_intents=self._v1_intents, due=self.due)
        compactions = self.store.compactions
        data = state_file.to_json(state)
        saved = self._saved_sections
        # only the sections whose value differs from the one made durable last are encoded (a value compare costs
        # a fraction of its JSON); the journal entry holds those that changed
        changed = [k for k, v in data.items() if k not in saved or saved[k] != v]
        written = self.store.commit(data, sync=sync, compact=compact, compact_on=state_file.COMPACT_ON,
                                    changed=changed, defer_compaction=ahead)
        self._saved_sections = data
        if written:
            self.count("state_bytes", written)
            self.count("state_compactions" if self.store.compactions != compactions else "state_commits")

    # ---- requests (Lazy Pirate, polled so heartbeats keep going) ---------------------------------
    def _requester(self, service: str) -> bus.Requester:
        if service in self.preditors:
            req = self._preditors.get(service)
            if req is None:
                req = self._preditors[service] = bus.Requester(self.ctx, self.cfg.endpoint(service, "rep"), self.name,
                                                               self.cfg.runtime.request_timeout_ms)
            return req
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

    def _await_reply(self, req: bus.Requester) -> None:
        """runtime.Service.ask's wait; while the gathered batch's positions are awaited (`_deferred`, decision_desk.py
        `_prefetch_positions`), the SUB socket is read too: the bar's signals arriving meanwhile are taken (read
        and spooled) during the round trip, not after it; the other messages read are kept in `_deferred`."""
        sub = self.sub
        if self._deferred is None or sub is None or self._poller is None:
            super()._await_reply(req)
            return
        assert req.sock is not None
        both = zmq.Poller()
        both.register(sub.sock, zmq.POLLIN)
        both.register(req.sock, zmq.POLLIN)
        if sub.sock in dict(both.poll(100)):
            self._read_sub(self._poller, time.monotonic())

    def _connector_call(self, op: str, args: Any, timeout_s: float | None = None) -> Any:
        try:
            return self._call("connector", op, args, timeout_s)
        except (bus.RequestTimeout, bus.RequestFailed, wire.WireError) as exc:
            raise ConnectorDown(f"{op}: {exc}") from exc

    def _fetch_positions(self) -> list[RealPosition]:
        """The account's positions; the same answer brings the account and the live quotes (`_book_account`,
        `_book_quotes`), which the openings decided on these positions use."""
        self.count("positions_requests")
        trace.mark("executor.positions_asked")
        raw = self._connector_call(messages.OP_POSITIONS.name, messages.NoArgs())
        try:
            self.positions = inputs.positions(raw)
        except ValueError as exc:
            raise ConnectorDown(f"positions: {exc}") from exc
        self.closed_markets = inputs.closed_markets(raw)
        trace.mark("executor.positions_in")
        self._positions_down = None  # a failure the gathered batch's request met is over (decision_desk.py)
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
    def _emit_ack(self, ack: Ack, signal: messages.Signal | None, index: int = 0, record: dict | None = None,
                  persist: bool = True) -> None:
        """Publish the ack and hand its record to persistence (`persist=False`: handed over already)."""
        if persist:
            self.persist("acks", record or inputs.ack_record(ack, time.time(), signal, index, self.epoch))
        self._publish_acks([ack])

    def _publish_acks(self, acks: list[Ack]) -> None:
        """Publish acks together (one lock, one timestamp, the I/O thread woken once: `Publisher.publish_many`),
        in order, and count them; their records are the caller's."""
        assert self.pub is not None
        self.pub.publish_many([(messages.ack_topic(a.symbol), messages.Ack(**a.wire_body())) for a in acks])
        since = self._acks_since
        for ack in acks:
            status = ack.status.value
            self.count(_ACK_COUNTERS.get(status) or f"acks_{status.lower()}")
            since[status] = since.get(status, 0) + 1
        if log.isEnabledFor(logging.DEBUG):  # per message: DEBUG only (an INFO line per ack cost 9 % of the CPU)
            for ack in acks:
                logs.event(log, logging.DEBUG, "ack", symbol=ack.symbol, bar_time=ack.bar_time, action=ack.action,
                           status=ack.status.value, reason=ack.reason, cid=ack.client_order_id or "")

    def _summarize(self, now: float) -> None:
        """Once a `SUMMARY_S`: the acks by status since the last summary (none: no line)."""
        if now < self._summary_at:
            return
        self._summary_at = now + SUMMARY_S
        if self._acks_since:
            logs.event(log, logging.INFO, "acks", **dict(sorted(self._acks_since.items())),
                       state_commits=self.store.commits, state_compactions=self.store.compactions)
            self._acks_since = {}

    def alert(self, kind: str, severity: str, message: str, **details) -> None:
        super().alert(kind, severity, message, **details)
        self._alerts += 1
        self.persist("events", inputs.alert_record(kind, severity, message, time.time(), details,
                                                   (self.epoch, self._alerts)))

    # ---- lifecycle steps ------------------------------------------------------------------------
    def _step_load(self, args: dict) -> dict:
        try:
            config = sc.load(self.symbols_path)
        except FileNotFoundError:
            raise runtime.PermanentFailure(f"symbol config {self.symbols_path} not found") from None
        except sc.ConfigError as exc:
            raise runtime.PermanentFailure(f"symbol config {self.symbols_path}: {exc}") from None
        metas, errors = read_models(self.cfg.path(self.cfg.preditor.models_dir))
        try:  # the preditor's load result (through the orchestrator): a model it refused trades nothing
            metas, not_live = live_only(metas, args)
        except ValueError as exc:
            raise runtime.StepFailed(str(exc)) from None
        errors += not_live
        self.modelled = {m.symbol for m in metas}
        self.timeframes = {m.symbol: m.timeframe for m in metas}
        config, created = sc.ensure_symbols(config, self.modelled)
        if created:
            sc.write_atomic(self.symbols_path, config)
            self.alert("new_symbol", "info", f"config created disabled for {', '.join(created)}: enable to trade",
                       symbols=created)
        self.config = config
        self._open_order_lines()
        return {"config_file": str(self.symbols_path), "symbols": sorted(config.symbols),
                "enabled": sorted(s for s, c in config.symbols.items() if c.enabled),
                "modelled": sorted(self.modelled), "created": created, "model_errors": errors,
                "paused": self.paused, "halted": self.risk.halted}

    def _open_order_lines(self) -> None:
        """One order line per enabled modelled symbol, opened now (order_desk.py `_open_lines`): a bar's flights
        take them, none is opened on an order's path. None in a dry run (no order is sent)."""
        if self.config is None or self.dry_run:
            return
        config = self.config
        self._open_lines(sum(1 for s in self.modelled if config.symbol(s).enabled))

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
        if why:  # a preditor (shard) that did not answer is asked again after the sync
            self._want_last_signals = True
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
        self._save_state(compact=True)
        if not self.cfg.close_on_exit:
            return {"stopped": True, "closed": []}
        try:
            positions = self._fetch_positions()
        except ConnectorDown as exc:
            raise runtime.StepFailed(f"close_on_exit: cannot read positions: {exc}") from None
        ctx = self._command_context(positions)
        result = commands.close_all(ctx, CloseAll())
        acks = self._send_closes([replace(c, reason="CLOSE_ON_EXIT") for c in result.closes], "CLOSE_ON_EXIT")
        for i, ack in enumerate(acks):
            self._emit_ack(ack, None, i)
        return {"stopped": True, "closed": [a.ticket for a in acks if a.status == AckStatus.OK],
                "failed": [a.detail for a in acks if a.status == AckStatus.FAIL]}

    # ---- last signals -------------------------------------------------------------------------
    def _ask_last_signals(self) -> tuple[list[messages.Signal], str]:
        """Every preditor program's last signals (each shard has its own symbols); the answers of those that gave
        one, and why the others did not (asked again)."""
        got: list[messages.Signal] = []
        why = []
        for program in self.preditors:
            try:
                raw = self._call(program, messages.OP_LAST_SIGNALS.name, messages.NoArgs())
            except (bus.RequestTimeout, bus.RequestFailed, wire.WireError) as exc:
                why.append(f"{program} did not answer last_signals: {exc}")
                continue
            self.count("last_signals_asked")
            got += inputs.last_signals(raw)
        return list(inputs.latest_per_symbol(got).values()), "; ".join(why)

    # ---- signals ------------------------------------------------------------------------------
    @property
    def halted(self) -> bool:
        return self.system_state == messages.HALTED or self.risk.halted

    def _read_sub(self, poller: zmq.Poller, now: float) -> None:
        """The messages waiting, read (runtime.py); the records of the signals among them spooled together, with
        one write, once they are all read: before anything of the turn acts on them (the decisions come after, in
        `on_tick`; another message read after them spools them before it acts), so a kill before that write is a
        kill before they were read (the preditor's `last_signals` gives them again), as a kill between a message's
        read and its own write was."""
        self._signal_records = []
        try:
            super()._read_sub(poller, now)
        finally:
            self._spool_signals()
            self._signal_records = None

    def _spool_signals(self) -> None:
        """The records of the signals read so far in this pass, to the spool (one write)."""
        records = self._signal_records
        if records:
            self._signal_records = []
            self.persist_many("signals", records)

    def on_message(self, received: Received) -> None:
        env = received.envelope
        body = env.body
        if self._deferred is not None and not isinstance(body, messages.Signal | messages.SignalRun):
            self._deferred.append(received)  # read while the batch's positions were awaited: handled after them
            return
        # a gap, a restarted preditor, or the first message heard (a signal published between our sync and our
        # subscription reaching the preditor is lost otherwise): ask for the last signals
        if env.src in self.preditors and received.seen.delivery in (Delivery.GAP, Delivery.NEW_EPOCH, Delivery.FIRST):
            self._want_last_signals = True
            self.count("preditor_gaps")
        if isinstance(body, messages.Signal):
            self._on_signal(body, env.seq, env.epoch)
            return
        if isinstance(body, messages.SignalRun):  # each signal as if it came alone: the latest is acted on
            self.count("signal_runs_seen")
            for sig in body.signals:
                self._on_signal(sig, env.seq, env.epoch)
            return
        self._spool_signals()  # those read before this message are spooled before it acts (a halt's closes wait)
        if isinstance(body, messages.AccountUpdate):
            peak = self.risk.peak_equity
            self.risk = risk_rules.on_equity(self.risk, body.equity)
            if self.risk.peak_equity != peak:
                self._state_dirty = True  # the peak-equity drawdown survives a restart
            self._watch_risk()
        elif isinstance(body, messages.PositionClosed):
            self._on_closed(body)
        elif isinstance(body, messages.ConnectionState):
            self.connected = body.connected
        elif isinstance(body, messages.MarketState):
            self._on_market(body)

    def _on_signal(self, sig: messages.Signal, seq: int | None, epoch: int | None) -> None:
        self.count("signals_seen")
        if sig.catch_up:  # a bar decided late (the preditor was down): recorded; the latest position is
            self.count("catch_up_signals")  # acted on (last_signals, or the live signal that follows)
            self._persist_signal(sig)
            return
        self._take_signal(sig, seq, epoch)

    def _take_signal(self, sig: messages.Signal, seq: int | None, epoch: int | None) -> None:
        handled = self.handled.get(sig.symbol, -1)
        if sig.bar_time <= handled:
            self.count("signals_replayed")
            if sig.bar_time < handled:  # older than the one acted on, heard after it (a run after `last_signals`
                self._persist_signal(sig)  # answered the newer): recorded all the same (the store deduplicates)
            return
        current = self.pending.get(sig.symbol)
        if current is not None and current[0].bar_time == sig.bar_time and current[1] is None and seq is not None:
            # the live copy of a bar whose read-back copy (`last_signals`, asked as the preditor's burst arrived)
            # waits: the live one says the twin's previous direction (the edge at a boot), so it is the one decided
            self.pending[sig.symbol] = (sig, seq, epoch)
            self.count("read_backs_replaced_live")
            return
        if current is not None and current[0].bar_time >= sig.bar_time:
            if current[0].bar_time > sig.bar_time:  # heard after a newer one: recorded, not acted on
                self.count("signals_superseded")
                self._persist_signal(sig)
            return
        if current is not None:
            self.count("signals_superseded")  # a newer desired state replaces one not yet acted on
        self.pending[sig.symbol] = (sig, seq, epoch)
        self._note_waiting()
        self._persist_signal(sig)

    def _persist_signal(self, sig: messages.Signal) -> None:
        record = inputs.signal_record(sig, TIMEFRAMES.get(self.timeframes.get(sig.symbol, "")))
        if self._signal_records is not None:  # read from the SUB socket: spooled together once all are read
            self._signal_records.append(record)
        else:
            self.persist("signals", record)

    def on_tick(self, now: float) -> None:
        queued = len(self.outbox)
        try:
            self._turn(now)
        finally:
            if self._state_dirty:  # what this turn's messages changed, unless a save of the turn took it
                self._save_state(sync=False)
            if len(self.outbox) > queued:
                # the records of a batch decided or landed in this turn: to persistence now, not in a turn of the
                # loop of their own (or at its next wakeup). With no signal waiting and no order out, the bar's
                # records are all in: they leave at once, not at the end of the outbox's quiet time (a wake for it)
                if not self.pending and not self._flights:
                    self.outbox.whole()
                self._drive_outbox(time.monotonic())

    def _turn(self, now: float) -> None:
        self._drive_flights(now)
        self._summarize(now)
        if self._want_last_signals and self.synced and now - self._last_signals_at >= 1.0:
            self._want_last_signals = False
            self._last_signals_at = now
            last, why = self._ask_last_signals()
            if why:
                log.warning("after a gap in the preditor's stream: %s; asked again", why)
                self._want_last_signals = True  # a preditor still loading after its restart answers later
            for sig in last:
                self._take_signal(sig, None, None)
            read_back = any(self.pending.get(sig.symbol, (None,))[0] is sig for sig in last)  # one waits
        else:
            read_back = False
        if (self._replay or self._v1_intents) and self.synced and not self.stopped and now >= self._retry_at:
            try:  # before any newer signal: its plan must see the account these orders make
                self._replay_intents()
            except ConnectorDown as exc:
                self._retry_at = now + 1.0
                log.warning("orders of signals decided before a restart wait for the connector: %s", exc)
                return
        if self._opened and self.synced and not self.stopped and now >= self._retry_at:
            # before the symbol's newer signals: they are decided on the account without the position
            self._release_due_at_open(self._flights.symbols())
        # signals read back are decided in a later turn: the live copies of their bar, published before the
        # preditor answered, are read first (``_take_signal`` keeps the live copy of a bar)
        if self.pending and self.synced and now >= self._retry_at and not read_back:
            ready = self._batch_ready(now)
            asked = ready is False and self._prefetch_positions()
            if asked:
                # the bar's other signals arrived during the positions' round trip (taken during it, or read now):
                # decided in this turn when they are all in (not in a turn of their own)
                self._read_more()
                ready = self._batch_ready(time.monotonic())
            if ready:
                self._decide_waiting()
            elif ready is not None and not asked and (left := self._gather_left_s(time.monotonic())) is not None:
                time.sleep(min(NAP_S, left))  # more signals of the bar close on their way: taken in one turn

    def _read_more(self) -> bool:
        """The messages that arrived since this turn's read, read now (as the loop's next turn would first: on_tick
        comes after the read, runtime.py); True when there were some."""
        if self.sub is None or self._poller is None or not self.sub.sock.poll(0):
            return False
        self._read_sub(self._poller, time.monotonic())
        return True

    # ---- risk ---------------------------------------------------------------------------------
    def _halt(self, reason: str, detail: str) -> None:
        if self.risk.halted:
            return
        self.risk = risk_rules.halt(self.risk, reason)
        self._save_state(compact=True)
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
        if gone is not None:
            self._save_state(sync=False)  # a due close gone (rare): a new snapshot at once, COMPACT_ON
        elif ev.full and self.config is not None:
            # the loss streak: in the OS at the end of this turn of the loop (before it waits for anything), on the
            # disk with the next batch's fdatasync
            self._state_dirty = True
        if ev.external:
            self.alert("external_close", "info", f"{ev.symbol} position {ev.ticket} closed outside the executor "
                       f"({ev.reason}, PnL {ev.net_profit:.2f}); its move is now a missed entry",
                       symbol=ev.symbol, ticket=ev.ticket, reason=ev.reason, pnl=ev.net_profit)

    # ---- commands -----------------------------------------------------------------------------
    def _command_context(self, positions: list[RealPosition]) -> commands.CommandContext:
        assert self.config is not None
        return commands.CommandContext(
            now=int(time.time()), paused=self.paused, risk=self.risk, config=self.config,
            positions=tuple(positions), modelled_symbols=frozenset(self.modelled),
            last_decisions=dict(self.last_decisions), system_halted=self.system_state == messages.HALTED)

    def _op_command(self, a: messages.CommandArgs) -> Any:
        try:
            args = commands.validate(a.name, a.args)  # before any effect: the registry's definition
        except commands.CommandError as exc:
            raise bus.OpError(exc.code, exc.message) from None
        if self.config is None:
            raise bus.OpError("not_ready", "executor.load has not run")
        positions = list(self.positions)
        if a.name in ("close", "close_all", "executor_status"):
            try:
                positions = self._fetch_positions()
            except ConnectorDown as exc:
                if a.name != "executor_status":
                    raise bus.OpError("no_connector", f"cannot read positions: {exc}") from None
        try:
            result = commands.run(a.name, args, self._command_context(positions))
        except commands.CommandError as exc:
            raise bus.OpError(exc.code, exc.message) from None
        changed = result.paused != self.paused or result.risk != self.risk
        self.paused, self.risk = result.paused, result.risk
        if result.config_changed:
            sc.write_atomic(self.symbols_path, result.config)
            self.config = result.config
            self._open_order_lines()  # a symbol enabled: its line
        if changed:
            self._save_state(compact=True)
        reply = result.reply
        if result.closes:
            acks = self._send_closes(list(result.closes), "MANUAL_CLOSE")
            for i, ack in enumerate(acks):
                self._emit_ack(ack, None, i)
            reply = replace(reply, acks=[messages.Ack(**ack.wire_body()) for ack in acks])
        if isinstance(reply, messages.TradingState):
            reply = replace(reply, **self._trading_facts())
        self.count(f"command_{a.name}")
        logs.event(log, logging.INFO, "command", name=a.name)
        return reply

    def ops(self) -> dict:
        return {messages.OP_COMMAND.name: self._op_command}

    def _trading_facts(self) -> dict[str, Any]:
        """The process's own facts, in `executor_status` (the `messages.TradingState` fields its handler leaves)
        and in the status report."""
        return {
            "synced": self.synced, "connected": self.connected, "stopped": self.stopped,
            "due_closes": [messages.DueAtOpen(**d) for d in self.due.to_list()],
            "markets": {s: messages.MarketState(s, **m) for s, m in self.markets.items()},
            "closed_markets": sorted(self.closed_markets), "last_bar_time": dict(self.handled),
            "pending_signals": sorted(self.pending),
        }

    # ---- status -------------------------------------------------------------------------------
    def status_report(self) -> dict[str, Any]:
        return {
            "symbols": sorted(self.config.symbols) if self.config else [],
            "paused": self.paused, "halted": self.halted, "halt_reason": self.risk.halt_reason,
            "positions": [messages.TradingPosition(p.ticket, p.symbol, int(p.direction), p.lots, p.label)
                          for p in self.positions],
            "orphans": list(self.orphans), "modelled": sorted(self.modelled),
            "last_decisions": dict(self.last_decisions), "risk": commands.risk_status(self.risk),
            **self._trading_facts(),
        }

    def health_info(self) -> dict:
        return {"halted": self.halted, "paused": self.paused, "orphans": list(self.orphans),
                "positions": len(self.positions)}

    def pending_work(self) -> int:
        return len(self.pending) + len(self._flights)

    def awaited_sockets(self) -> list[zmq.Socket]:
        return [sock for group in self._flight_lines.values() for sock in group.sockets()]  # answers awaited

    def poll_timeout_ms(self) -> int:
        """Until the first of on_tick's timers (no short poll: ``idle_poll_ms`` None): an order request's resend,
        the gathered batch's deadline, the retry of what waits for the connector or for the preditor's last
        signals, the next summary line. What else on_tick does follows a message or an answer (it wakes the loop)."""
        base = super().poll_timeout_ms()
        now = time.monotonic()
        due = self._summary_at
        if self._flight_lines:  # answers wake the loop at once; a request asked again is sent on time
            due = min(due, min(group.next_due() for group in self._flight_lines.values()))
        if self._want_last_signals and self.synced:  # asked again a second after the last ask
            due = min(due, self._last_signals_at + 1.0)
        if self._retry_at > now and (self.pending or self._replay or self._v1_intents or self._opened):
            due = min(due, self._retry_at)  # a connector that failed them: tried again then
        base = min(base, max(0, math.ceil((due - now) * 1000)))
        left = self._gather_left_s(now)
        return base if left is None else min(base, 1 + int(left * 1000))  # a gathered batch is decided on time

    def on_stop(self) -> None:
        self._summarize(float("inf"))  # the acks since the last summary
        self.store.close()
        lines = [line for group in self._flight_lines.values() for line in group.lines]  # their intents stay saved
        for req in (self._connector, self._preditor, *self._preditors.values(), *self._order_lines, *lines):
            if req is not None:
                req.close()


def main(argv: list[str] | None = None) -> int:
    return runtime.main(Executor, argv)
