"""The connector process: the broker connection (cTrader Open API or the simulator) plugged into the backbone.

The shell: the ZeroMQ sockets, the loop, the op handlers (the orders' in order_ops.py), the broker's events
published (events_out.py), the state file and the order journal. The broker runs on an asyncio loop behind the port
(port.py) that this loop steps on its own thread, reached through the bridge (bridge.py); the orders' idempotency is
decided by the order ledger (ledger.py): the same order asked again while it is out joins it (one order, the same
reply), one asked before is answered from the journal or found at the broker, never sent twice.

Exactly-once bars across restarts: the last published bar time per (symbol, timeframe) is durable before the bar is
published; on connect every subscription resumes with ``since`` = that time, so the bars closed
while the connector was down come first, in order, and positions closed while it was down are reported from the
broker's deal list (state.py). Idempotent orders across restarts: an append-only, fsynced journal
client_order_id -> result is consulted before anything is sent (journal.py, ledger.py), on top of the broker
client's own reconcile by label.

Group commit (`_commit`): the state is a snapshot and a journal of its changed sections (`durable.JournaledState`,
the snapshot being the whole-file state of old and `journal_seq`, compacted every `STATE_COMPACT_AFTER` journal
lines; a state file of old is read and compacted at the first commit) and the order journal an
append-only file (`durable.AppendLog`); each is made durable with one write and one fdatasync per batch, never per
change. What is durable before what:
- a drain of the broker's events (events_out.py): all it changed in the state (bars' times, positions opened or
  closed) before any of it is published;
- the orders asked in one turn of the loop (order_ops.py): their ``sent`` lines before any of them leaves
  (`_turn`: on the loop's tick and on a wake; `_send_held`: before a request waits on the broker);
- the broker's answers settled together (`_turn`): their ``done`` lines and the positions they opened before
  any of them is answered;
- a subscription, the positions found at connect, an outcome found by a look-up: at once (`_save_state`,
  `_commit`), before the reply.
A turn of the loop takes the first three together: the events drained, the answers settled and the orders held make
one commit (one write and one fdatasync per file): the order journal's, then the orders leave, then the state's,
then the events are said and the answers given.
The per-message detail is logged at DEBUG; every `SUMMARY_S` the counters of the work done go out in one INFO line.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from common import bus, durable, logs, messages, runtime
from common.config import TIMEFRAMES
from services.connector import factory, history, journal, ledger
from services.connector.bridge import Bridge
from services.connector.events_out import EventsOut
from services.connector.freshness import Freshness, latency_summary
from services.connector.order_ops import OrderOps
from services.connector.port import Bar as BrokerBar
from services.connector.port import BrokerPort, SymbolNotFoundError
from services.connector.state import ConnectorState, compact_bar, merged_subscriptions

log = logging.getLogger("oracle.connector")

TOKEN_LOOK_S = 2.0  # how often the token file is looked at for a pair handed in while running
SUMMARY_S = 300.0  # how often the counters of the work done are logged (INFO), instead of a line per message
SUMMARIZED = ("bars_published", "orders", "closes_requested", "fills", "closes", "rejects", "journal_commits",
              "state_commits", "event_errors")
STATE_COMPACT_AFTER = 1000  # change lines in the state's journal before the whole state is written again


class Connector(EventsOut, OrderOps, runtime.Service):
    name = "connector"
    status_record = messages.ConnectorStatus
    steps = {"connector.connect": "_connect", "connector.disconnect": "_disconnect"}
    concurrent_requests = True  # orders overlap: each one's reply is deferred until the broker answers it
    not_implemented: list[str] = []

    def __init__(self, cfg: Any, dry_run: bool = False):
        super().__init__(cfg, dry_run)
        data_dir = cfg.path(cfg.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.state_path: Path = data_dir / cfg.connector.state_file
        self.journal_path: Path = data_dir / cfg.connector.journal_file
        self.state_store = durable.JournaledState(self.state_path, compact_after=STATE_COMPACT_AFTER)
        self.published = self._load_state()  # bars, subscriptions and open positions published (state.py)
        self.orders_log = durable.AppendLog(self.journal_path)
        entries, bad = journal.replay(self.orders_log.lines)
        self.orders_log.lines = []
        self.ledger: ledger.OrderLedger[bus.Deferred] = ledger.OrderLedger(entries, lambda d: d.future.cancelled())
        self._flight_since: float | None = None
        self._flight_expected = 0
        if bad or self.orders_log.torn:
            log.warning("order journal %s: %d unreadable line(s) ignored%s", self.journal_path, bad,
                        ", a torn last line cut off" if self.orders_log.torn else "")
        self.bridge = Bridge(self._meanwhile, lambda: self._stop)
        self.add_reader(self.bridge.wake_fd, self._on_wake)
        self.add_reader(self.bridge.io_fd, self._on_broker_io)  # the broker's connection: read in this loop
        self.broker: BrokerPort | None = None
        self.auth_problem = ""  # the broker refused the credentials: what a person must do (empty: none)
        self._token_stamp: tuple[int, int] | None = None  # the token file as last seen (a pair handed in)
        self._next_token_look = 0.0
        self._session_open = False  # broker.connect succeeded and no disconnect since (it reconnects by itself)
        self._state_said = False  # the connection state published again once the publish grace is over
        self._held_out: list[tuple[str, Any, bool]] | None = None  # said once a drain's state changes are durable
        self.connected = False
        self.conn_reason = "not connected yet"
        self._active: set[str] = set()  # "SYM TF" whose live bars the broker delivers in this process
        self.freshness = Freshness()  # bar ages per stream, bar close -> order sent (monotonic times)
        self._calendars: dict[str, Any] = {}  # symbol -> its trading calendar, as loaded by this session
        self._next_account = 0.0
        self._account_fut: concurrent.futures.Future | None = None
        self._next_summary = time.monotonic() + SUMMARY_S
        self._summarized: dict[str, int] = {}  # the counters at the last summary

    # ---- files (state, journal) -------------------------------------------------------------
    def _load_state(self) -> ConnectorState:
        """The snapshot (the state file of old reads as one) and the sections journaled since."""
        try:
            raw, notes = self.state_store.load()
            for note in notes:
                log.warning("connector state %s: %s", self.state_path, note)
            return ConnectorState.from_dict(raw) if raw is not None else ConnectorState()
        except (OSError, ValueError) as exc:
            log.error("connector state %s unreadable (%s); starting without it", self.state_path, exc)
        state = ConnectorState()
        with contextlib.suppress(OSError):  # a snapshot of its own, or every change after it would be lost too
            self.state_store.commit(state.to_dict(), compact=True)
        return state

    def _commit(self) -> None:
        """What changed since the last commit made durable: the order journal's lines, then the state's changed
        sections (one line), each file with one write and one fdatasync (group commit); the state compacted now and
        then (durable.JournaledState)."""
        self._commit_journal()
        self._commit_state()

    def _commit_journal(self) -> None:
        """The order journal's lines added since the last commit made durable (one write, one fdatasync)."""
        if self.orders_log.pending:
            self.orders_log.commit()
            self.count("journal_commits")

    def _commit_state(self) -> None:
        """The state's sections changed since the last commit made durable (one journal line, one fdatasync)."""
        if self.published.dirty:
            compactions = self.state_store.compactions
            self.state_store.commit(self.published.to_dict(), changed=self.published.changed)
            self.published.committed()
            if self.state_store.compactions != compactions:
                self.count("state_compactions")
            self.count("state_commits")

    def _save_state(self) -> None:
        """The state's changes (and any journal line written meanwhile) durable now."""
        self._commit()

    def _journal(self, entry: journal.Entry) -> None:
        """An order journal line, durable at the next `_commit` (before the held orders leave, before the answers
        settled with it are given)."""
        self.orders_log.add(journal.line(entry).rstrip("\n"))
        self.ledger.recorded(entry)

    def _commit_or_log(self, commit: Callable[[], None] | None = None) -> OSError | None:
        """`commit` (default `_commit`: the journal and the state); its failure logged, counted and returned (None:
        what changed is durable)."""
        try:
            (commit or self._commit)()
        except OSError as exc:
            log.exception("cannot write the order journal or the connector state")
            self.count("event_errors")
            return exc
        return None

    def _send_held(self) -> None:
        """The orders held since the last call leave, once their ``sent`` lines are durable (one fsync for all)."""
        if not self.bridge.has_held:
            return
        failed = self._commit_or_log()
        if failed is not None:
            self._flight_gone()
            self.bridge.refuse_held(bus.OpError("internal", f"cannot write the order journal: {failed}"))
            return
        self._flight_gone()
        n = self.bridge.release()
        log.debug("%d order(s) sent after one journal commit", n)

    def _turn(self) -> None:
        """The loop's turn (group commit): the broker's events applied (`_take_events`), its answers settled
        (`Bridge.answered_now`) and the orders asked meanwhile held; what they all changed made durable together
        (one commit: one write and one fdatasync per file): the order journal, then the orders leave (their lines
        are all they wait for), then the state, then the events are said and the answers given."""
        said = self._take_events()
        ready = self.bridge.answered_now()
        held = self.bridge.has_held and self.flight_whole(time.monotonic())  # else they wait for their flight
        if said is None and not ready and not held:
            return
        failed = self._commit_or_log(self._commit_journal)
        if held:  # the orders need their lines alone: they leave before the state's fdatasync
            self._flight_gone()
            if failed is None:
                log.debug("%d order(s) sent after one journal commit", self.bridge.release())
            else:
                self.bridge.refuse_held(bus.OpError("internal", f"cannot write the order journal: {failed}"))
        if failed is None:
            failed = self._commit_or_log(self._commit_state)
        if said is not None:
            self._say_held(said, failed is None)
        if ready:
            if failed is not None:
                log.error("%d answer(s) given as errors: the order journal cannot be written", len(ready))
                outcome = (False, bus.OpError("internal", f"cannot write the order journal: {failed}"))
                ready = [(fut, outcome) for fut, _outcome in ready]
            self.bridge.answer(ready)

    # ---- the bridge (bridge.py) ----------------------------------------------------------------------
    def _wait(self, coro: Coroutine[Any, Any, Any], timeout: float | None, what: str) -> Any:
        """Run `coro` on the broker loop and wait for it, beating and publishing meanwhile (the orders held go
        first)."""
        self._send_held()
        return self.bridge.wait(coro, timeout, what)

    def _meanwhile(self) -> None:
        self.beat_if_due()
        self._turn()

    def _defer(self, key: str | None, coro: Coroutine[Any, Any, Any], settle: Callable[[Any], Any], what: str,
               wait_s: float | None = None) -> bus.Deferred:
        """Run `coro` on the broker loop without waiting: the reply goes out when the broker answers (or after
        `wait_s`, default an order's longest wait). An order (`key`) is out until then: asked again, it is joined."""
        answered = None if key is None else (lambda d: self.ledger.came_back(key, d))
        # an order waits for its journal line (once per batch: `_send_held`); nothing else is journaled
        deferred = self.bridge.defer(coro, settle, what, wait_s or self._order_wait_s(), answered,
                                     hold=key is not None)
        if key is not None:
            self.ledger.went_out(key, deferred)
        return deferred

    def _pip_size(self, symbol: str) -> float | None:
        try:
            return self.broker.instrument(symbol).pip_size if self.broker is not None else None
        except SymbolNotFoundError:
            return None

    def _need_broker(self) -> BrokerPort:
        if self.broker is None or not self.bridge.running:
            raise bus.OpError("not_connected", "the broker is not connected (connector.connect has not run)")
        if not self._session_open:  # closed on purpose (connector.disconnect): fail fast, never wait on it
            raise bus.OpError("not_connected", f"the broker is not connected ({self.conn_reason})")
        return self.broker

    def _on_wake(self) -> None:
        self.bridge.woken()
        self._turn()

    def _on_broker_io(self) -> None:
        """The broker loop has I/O ready: run it now, then take what it answered or queued in the same turn."""
        self.bridge.step()
        if self.bridge.wake_pending:
            self._on_wake()

    # ---- steps ----------------------------------------------------------------------------------
    def _facts(self) -> dict:
        return {
            "broker": self.cfg.broker.type,
            **(self.broker.describe() if self.broker is not None else {}),
            "connected": self.connected,
            "subscriptions": {s: list(tfs) for s, tfs in self.published.subscriptions.items()},
        }

    def _connect(self) -> dict:
        b = self.cfg.broker
        if self.broker is not None and self._session_open:
            # already connected, or reconnecting by itself: nothing to redo
            return {**self._facts(), "reconnecting": not self.broker.is_connected}
        if self.broker is None:
            try:
                self.broker = factory.make_broker(self.cfg, os.environ)
            except factory.SettingsError as exc:  # the configuration or the environment: no restart fixes it
                raise runtime.PermanentFailure(str(exc)) from None
            self.broker.on_order_sent = self._order_sent
            self._token_stamp = self._token_file_stamp()
        self.bridge.start()
        broker = self.broker
        where = "{host}:{port}".format(**broker.describe())
        attempts = b.connect_attempts
        budget = None if attempts == 0 else attempts * (b.request_timeout_s * 4 + 30.0)
        while True:
            try:
                self._wait(broker.connect(max_attempts=attempts), budget, f"connect to {where}")
                break
            except bus.OpError as exc:
                if exc.code != "auth_failed":
                    raise runtime.StepFailed(f"cannot connect to the {b.type} broker at {where}: {exc.message}") \
                        from None
                self._await_new_token(broker.auth_problem or exc.message)
        self._session_open = True
        self.bridge.pump(broker)
        self._set_connected(True, "")
        self._set_auth_problem("")
        self._report_closed_while_away(broker)
        for symbol, timeframes in sorted(merged_subscriptions(dict(self.cfg.connector.symbols),
                                                              self.published.subscriptions).items()):
            for tf in timeframes:
                try:
                    self._subscribe(symbol, tf, None)
                except bus.OpError as exc:
                    raise runtime.StepFailed(f"cannot subscribe {symbol} {tf}: {exc.message}") from None
        return self._facts()

    # ---- credentials a person must hand in --------------------------------------------------------
    def _token_file_stamp(self) -> tuple[int, int] | None:
        try:
            st = factory.token_path(self.cfg).stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def _token_handed_in(self) -> bool:
        """The token file changed since last seen (`oracle broker-token` wrote a new pair): the broker takes it."""
        stamp = self._token_file_stamp()
        if stamp == self._token_stamp or self.broker is None or not self.bridge.running:
            return False
        self._token_stamp = stamp
        try:
            return bool(self._wait(self.broker.reload_credentials(), 10.0, "reload the broker token"))
        except bus.OpError as exc:
            log.error("the broker token file changed but cannot be read: %s", exc.message)
            return False

    def _await_new_token(self, why: str) -> None:
        """At connect, the broker refused the credentials: wait (heartbeats going, DEGRADED with the reason) until
        a person hands in a new pair, instead of failing the step into a restart storm."""
        self._set_auth_problem(why)
        while not self._token_handed_in():
            if self._stop:
                raise runtime.StepFailed(f"stopping while waiting for a new broker token ({why})")
            self.beat_if_due()
            time.sleep(0.25)
        logs.event(log, logging.INFO, "a new broker token was handed in; connecting again")

    def _set_auth_problem(self, text: str) -> None:
        if text == self.auth_problem:
            return
        self.auth_problem = text
        if text:
            self.alert("broker_auth", "critical", text)
        else:
            logs.event(log, logging.INFO, "the broker accepted the credentials")

    def _disconnect(self) -> dict:
        if self.broker is not None and self.bridge.running and self._session_open:
            with contextlib.suppress(bus.OpError):
                self._wait(self.broker.close(), 10.0, "disconnect")
            self._session_open = False
            self._active.clear()
        self._drain_events()
        self._set_connected(False, "disconnected (connector.disconnect)")
        return self._facts()

    def on_stop(self) -> None:
        if self.broker is not None and self.bridge.running and self._session_open:
            with contextlib.suppress(bus.OpError):
                self._wait(self.broker.close(), min(3.0, self.cfg.runtime.stop_timeout_s / 2), "close")
            self._session_open = False
        self.bridge.refuse_held(bus.OpError("stopping", "the connector is stopping"))
        self.bridge.stop()
        with contextlib.suppress(Exception):
            self._drain_events()
        if self.connected:
            self._set_connected(False, "connector stopping")
        with contextlib.suppress(OSError):
            self._commit()
        self.orders_log.close()
        self.state_store.close()

    # ---- the loop's tick (the broker's events: events_out.py) -----------------------------------
    def poll_timeout_ms(self) -> int:
        """No short poll while answers are awaited: the broker's frames wake the loop (its selector is polled), and
        the loop gives the answers itself (`_turn`); asleep no longer than the broker loop's next timer."""
        due = self.bridge.next_timer_s()
        flight = self.flight_left_s(time.monotonic())  # the orders held leave then, whole or not
        if flight is not None:
            due = flight if due is None else min(due, flight)
        return 100 if due is None else min(100, math.ceil(due * 1000))

    def on_tick(self, now: float) -> None:
        self.bridge.step_if_due()  # the broker loop's timers due (its I/O is read as it comes: `_on_broker_io`)
        if self.bridge.wake_pending:
            self.bridge.woken()
        self._turn()  # the orders this turn's requests asked for: out together after one journal fsync
        self._drive_account(now)
        if now >= self._next_summary:
            self._next_summary = now + SUMMARY_S
            self._log_summary()
        if now >= self._next_token_look:  # a token pair handed in while running (`oracle broker-token`)
            self._next_token_look = now + TOKEN_LOOK_S
            self._token_handed_in()

    def _log_summary(self) -> None:
        """The work done since the last summary, in one INFO line (nothing done: no line)."""
        done = {k: self.progress.get(k, 0) - self._summarized.get(k, 0) for k in SUMMARIZED}
        self._summarized = {k: self.progress.get(k, 0) for k in SUMMARIZED}
        if any(done.values()):
            logs.event(log, logging.INFO, f"the last {SUMMARY_S:g} s", **{k: v for k, v in done.items() if v})

    # ---- REP operations -------------------------------------------------------------------------
    def ops(self) -> dict:
        return {
            messages.OP_HISTORY.name: self._op_history,
            messages.OP_SUBSCRIBE.name: self._op_subscribe,
            messages.OP_SYMBOL_INFO.name: self._op_symbol_info,
            messages.OP_ACCOUNT.name: self._op_account,
            messages.OP_POSITIONS.name: self._op_positions,
            messages.OP_ORDER_OPEN.name: self._op_order_open,
            messages.OP_ORDER_CLOSE.name: self._op_order_close,
            messages.OP_ORDER_AMEND.name: self._op_order_amend,
        }

    @staticmethod
    def _check_tf(timeframe: str) -> int:
        if timeframe not in TIMEFRAMES:
            raise bus.OpError("bad_args", f"unknown timeframe {timeframe!r}; known: {', '.join(TIMEFRAMES)}")
        return TIMEFRAMES[timeframe]

    def _check_symbol(self, symbol: str) -> None:
        broker = self._need_broker()
        if broker.symbols and symbol not in broker.symbols:
            raise bus.OpError("unknown_symbol", f"{symbol!r} is not a symbol of this broker")

    def _op_history(self, a: messages.HistoryArgs) -> bus.Deferred:
        """Served off the loop: the bars are fetched on the broker's loop and the reply goes out when they are in,
        while this loop serves orders and other requests (a warmup's many history requests never delay them)."""
        tf_s = self._check_tf(a.timeframe)
        self._check_symbol(a.symbol)
        broker = self._need_broker()
        if a.count < 0 or a.count > history.MAX_BARS:
            raise bus.OpError("bad_args", f"count must be 0..{history.MAX_BARS}")
        if not a.count and a.since is None:
            raise bus.OpError("bad_args", "give count (the last N closed bars) or since (every bar after it)")
        self.count("history_requests")

        def settle(bars: list[BrokerBar]) -> messages.HistoryResult:
            return messages.HistoryResult(
                a.symbol, a.timeframe, [compact_bar(b.time, b.open, b.high, b.low, b.close, b.volume) for b in bars]
            )

        return self._defer(None, history.closed_bars(broker, a, tf_s), settle, f"history {a.symbol} {a.timeframe}",
                           self.cfg.connector.history_timeout_s)

    def _subscribe(self, symbol: str, timeframe: str, since: int | None) -> messages.Subscribed:
        broker = self._need_broker()
        key = f"{symbol} {timeframe}"
        resume = self.published.since(symbol, timeframe, since)
        if key not in self._active:
            self._wait(
                broker.subscribe_bars([symbol], timeframe, since={symbol: resume} if resume is not None else None),
                self.cfg.connector.op_timeout_s,
                f"subscribe {symbol} {timeframe}",
            )
            self._active.add(key)
            self.freshness.watched(key, time.monotonic())
            if self.published.subscribe(symbol, timeframe):
                self._save_state()
        return messages.Subscribed(symbol, timeframe, subscribed=True, resumed_after=resume,
                                   last_published=self.published.last.get(f"{symbol}.{timeframe}"))

    def _op_subscribe(self, a: messages.SubscribeArgs) -> messages.Subscribed:
        self._check_tf(a.timeframe)
        self._check_symbol(a.symbol)
        return self._subscribe(a.symbol, a.timeframe, a.since)

    def _op_symbol_info(self, a: messages.SymbolArgs) -> messages.SymbolInfo:
        self._check_symbol(a.symbol)
        broker = self._need_broker()
        q, rate, acct = self._wait(self._quote_facts(broker, a.symbol), self.cfg.connector.op_timeout_s,
                                   f"symbol_info {a.symbol}")
        spec = broker.instrument(a.symbol)
        return messages.SymbolInfo(
            symbol=spec.symbol,
            digits=spec.digits,
            point=spec.point,
            pip_position=spec.pip_position,
            pip_size=spec.pip_size,
            lot_size=spec.lot_units,
            min_lots=spec.min_lots,
            step_lots=spec.step_lots,
            max_lots=spec.max_lots,
            min_sl_distance=spec.min_sl_distance,
            min_tp_distance=spec.min_tp_distance,
            base_asset=spec.base_asset,
            quote_asset=spec.quote_asset,
            deposit_currency=acct.currency,
            quote_to_deposit=rate,
            pip_value_per_lot=spec.pip_size * spec.lot_units * rate,
            bid=q.bid if q else None,
            ask=q.ask if q else None,
            spread=round(q.ask - q.bid, spec.digits) if q else None,
            market_open=broker.market_closed(a.symbol) is None,
        )

    @staticmethod
    async def _quote_facts(broker: BrokerPort, symbol: str) -> tuple[Any, float, Any]:
        """The symbol's quote, its quote->deposit rate and the account, in one trip to the broker loop."""
        await broker.ensure_quote(symbol)
        rate = await broker.quote_to_deposit(symbol)
        return broker.quote(symbol), rate, await broker.get_account()

    def _live_book(self, broker: BrokerPort) -> bool:
        """The broker's positions and balance, kept by its execution events since the session's reconcile, are
        the account's now: no round trip to the broker (a session that dropped reconciles first)."""
        return bool(self.connected and broker.is_connected)

    def _op_account(self, _a: Any) -> messages.AccountInfo:
        broker = self._need_broker()
        book = broker.book_now() if self._live_book(broker) else None
        if book is not None:
            return book.account
        refresh = not self._live_book(broker)
        return self._wait(broker.get_account(refresh=refresh), self.cfg.connector.op_timeout_s, "account")

    def _op_positions(self, _a: Any) -> messages.Positions:
        """The open positions, and with them what an order decided on them needs (one trip instead of three): the
        account and the live quote of every symbol with one, with its quote->deposit rate. A live book is answered
        from the adapter's memory (`book_now`: one consistent value, no trip to the broker's thread)."""
        broker = self._need_broker()
        live = self._live_book(broker)
        book = broker.book_now() if live else None
        if book is not None:
            got, acct = book.positions, book.account
            quotes = {s: messages.BookQuote(q.bid, q.ask, rate) for s, (q, rate) in book.quotes.items()}
            self.count("books_from_memory")
        else:
            got, acct, quotes = self._wait(self._book_facts(broker, not live), self.cfg.connector.op_timeout_s,
                                           "positions")
        markets = {p.symbol: messages.MarketClosed(since) for p in got
                   if (since := broker.market_closed(p.symbol)) is not None}
        return messages.Positions(list(got), acct, quotes, markets, broker.server_time)

    @staticmethod
    async def _book_facts(broker: BrokerPort, refresh: bool) -> tuple[list, Any, dict]:
        positions = await broker.get_positions(refresh=refresh)
        acct = await broker.get_account()
        quotes = {}
        for symbol in broker.quoted_symbols():
            q = broker.quote(symbol)
            if q is None or q.bid <= 0 or q.ask <= 0:
                continue
            rate = broker.rate_from_quotes(symbol)
            quotes[symbol] = messages.BookQuote(q.bid, q.ask, rate)
        return positions, acct, quotes

    # ---- status and health ----------------------------------------------------------------------
    def health_info(self) -> dict:
        info: dict[str, Any] = {}
        if self.auth_problem:
            info["broker_auth"] = self.auth_problem
            info["waiting_for_operator"] = "a new broker token pair (oracle broker-token)"
        if self.broker is None:
            return info
        now = time.monotonic()
        info["connected"] = self.connected
        info["symbols"] = {key: self.freshness.stream(key, self._market_open(key.split(" ")[0], now), now)
                           for key in sorted(self._active)}
        return info

    def _market_open(self, symbol: str, now: float) -> bool:
        broker = self.broker
        calendar = self._calendars.get(symbol)
        if calendar is None:
            try:
                calendar = broker.instrument(symbol).calendar
            except SymbolNotFoundError:  # not loaded yet: no calendar, judged open
                calendar = None
            if calendar is not None:
                self._calendars[symbol] = calendar
        return self.freshness.market_open(broker.market_closed(symbol), calendar, broker.server_time, now)

    def status_report(self) -> dict[str, Any]:
        return {
            "broker": {
                "type": self.cfg.broker.type,
                "environment": self.cfg.broker.environment if self.cfg.broker.type == "ctrader" else "",
                **(self.broker.describe() if self.broker is not None else {}),
                "connected": self.connected,
                "reason": self.conn_reason,
                "auth_problem": self.auth_problem,
                "server_time": self.broker.server_time if self.broker else None,
            },
            "subscriptions": {s: list(tfs) for s, tfs in self.published.subscriptions.items()},
            "last_bar_time": dict(self.published.last),
            "journal": messages.JournalSummary(entries=len(self.ledger), path=str(self.journal_path)),
            "orders": messages.OrdersInFlight(in_flight=len(self.ledger.out), in_flight_peak=self.ledger.peak),
            "bar_to_order_ms": latency_summary(self.freshness.bar_to_order_ms),
        }


def main(argv: list[str] | None = None) -> int:
    return runtime.main(Connector, argv)
