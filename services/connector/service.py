"""The connector process: the broker connection (cTrader Open API or the simulator) plugged into the backbone.

The shell: the ZeroMQ sockets, the loop, the op handlers, the state file and the order journal. The broker runs on
a thread of its own behind the port (port.py), reached through the bridge (bridge.py); the orders' idempotency is
decided by the order ledger (ledger.py): the same order asked again while it is out joins it (one order, the same
reply), one asked before is answered from the journal or found at the broker, never sent twice.

Exactly-once bars across restarts: the last published bar time per (symbol, timeframe) is written (atomically)
before the bar is published; on connect every subscription resumes with ``since`` = that time, so the bars closed
while the connector was down come first, in order, and positions closed while it was down are reported from the
broker's deal list (state.py). Idempotent orders across restarts: an append-only, fsynced journal
client_order_id -> result is consulted before anything is sent (journal.py, ledger.py), on top of the broker
client's own reconcile by label.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from common import bus, durable, logs, messages, runtime
from common.config import TIMEFRAMES
from common.records.real_trades import real_trade_record, recovered_open_record
from services.connector import factory, history, journal, ledger, orders
from services.connector.bridge import Bridge
from services.connector.freshness import Freshness, latency_summary
from services.connector.port import (
    AuthStatus,
    BrokerPort,
    ConnectionStatus,
    MarketStatus,
    OrderFilled,
    OrderRejected,
    OrderResult,
    PositionClosed,
    SymbolNotFoundError,
)
from services.connector.port import Bar as BrokerBar
from services.connector.state import ConnectorState, closed_while_away, compact_bar, merged_subscriptions

log = logging.getLogger("oracle.connector")

TOKEN_LOOK_S = 2.0  # how often the token file is looked at for a pair handed in while running


class Connector(runtime.Service):
    name = "connector"
    steps = {"connector.connect": "_connect", "connector.disconnect": "_disconnect"}
    concurrent_requests = True  # orders overlap: each one's reply is deferred until the broker answers it
    not_implemented: list[str] = []

    def __init__(self, cfg: Any, dry_run: bool = False):
        super().__init__(cfg, dry_run)
        data_dir = cfg.path(cfg.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.state_path: Path = data_dir / cfg.connector.state_file
        self.journal_path: Path = data_dir / cfg.connector.journal_file
        self.published = self._load_state()  # bars, subscriptions and open positions published (state.py)
        entries, bad = self._load_journal()
        self.ledger: ledger.OrderLedger[bus.Deferred] = ledger.OrderLedger(entries, lambda d: d.future.cancelled())
        if bad:
            log.warning("order journal %s: %d unreadable line(s) ignored (a torn last write)", self.journal_path, bad)
        self._journal_fh: Any = None
        self.bridge = Bridge(self._meanwhile, lambda: self._stop)
        self.add_reader(self.bridge.wake_fd, self._on_wake)
        self.broker: BrokerPort | None = None
        self.auth_problem = ""  # the broker refused the credentials: what a person must do (empty: none)
        self._token_stamp: tuple[int, int] | None = None  # the token file as last seen (a pair handed in)
        self._next_token_look = 0.0
        self._session_open = False  # broker.connect succeeded and no disconnect since (it reconnects by itself)
        self._state_said = False  # the connection state published again once the publish grace is over
        self.connected = False
        self.conn_reason = "not connected yet"
        self._active: set[str] = set()  # "SYM TF" whose live bars the broker delivers in this process
        self.freshness = Freshness()  # bar ages per stream, bar close -> order sent (monotonic times)
        self._next_account = 0.0
        self._account_fut: concurrent.futures.Future | None = None

    # ---- files (state, journal) -------------------------------------------------------------
    def _load_state(self) -> ConnectorState:
        try:
            return ConnectorState.from_json(self.state_path.read_text())
        except FileNotFoundError:
            return ConnectorState()
        except (OSError, ValueError) as exc:
            log.error("connector state %s unreadable (%s); starting without it", self.state_path, exc)
            return ConnectorState()

    def _save_state(self) -> None:
        """Atomic: a temporary file, fsynced, renamed over the old one."""
        durable.write_atomic(self.state_path, self.published.to_json())

    def _load_journal(self) -> tuple[dict[str, journal.Entry], int]:
        try:
            with open(self.journal_path, encoding="utf-8") as f:
                return journal.replay(f)
        except FileNotFoundError:
            return {}, 0

    def _journal(self, entry: journal.Entry) -> None:
        if self._journal_fh is None:
            self._journal_fh = open(self.journal_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        self._journal_fh.write(journal.line(entry))
        self._journal_fh.flush()
        os.fsync(self._journal_fh.fileno())
        self.ledger.recorded(entry)

    # ---- the bridge (bridge.py) ----------------------------------------------------------------------
    def _wait(self, coro: Coroutine[Any, Any, Any], timeout: float | None, what: str) -> Any:
        """Run `coro` on the broker loop and wait for it, beating and publishing meanwhile."""
        return self.bridge.wait(coro, timeout, what)

    def _meanwhile(self) -> None:
        self.beat_if_due()
        self._drain_events()

    def _defer(self, key: str | None, coro: Coroutine[Any, Any, Any], settle: Callable[[Any], Any], what: str,
               wait_s: float | None = None) -> bus.Deferred:
        """Run `coro` on the broker loop without waiting: the reply goes out when the broker answers (or after
        `wait_s`, default an order's longest wait). An order (`key`) is out until then: asked again, it is joined."""
        answered = None if key is None else (lambda d: self.ledger.came_back(key, d))
        deferred = self.bridge.defer(coro, settle, what, wait_s or self._order_wait_s(), answered)
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
        self._drain_events()

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
            except factory.SettingsError as exc:
                raise runtime.StepFailed(str(exc)) from None
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

    def _report_closed_while_away(self, broker: BrokerPort) -> None:
        """Positions open before this process started and gone now: publish (and record) their closes from the deal
        list; positions open now that it did not know of: record their openings."""
        try:
            now_open = self._wait(broker.get_positions(), self.cfg.connector.op_timeout_s, "positions")
            changed = False
            unrecorded = self.published.unrecorded(p.ticket for p in now_open)
            for p in now_open:
                if p.ticket in unrecorded:  # its fill was never recorded (opened while away, or killed meanwhile)
                    self.persist("trades", recovered_open_record(dataclasses.asdict(p)))
                changed |= self.published.opened(p.ticket, p.symbol, p.direction, p.open_time, p.label, p.comment,
                                                 recorded=True)
            open_ids = {p.ticket for p in now_open}
            gone = [p for t, p in self.published.positions.items() if int(t) not in open_ids]
            if gone:
                since = min(float(p["open_time"]) for p in gone) - 1
                until = max(broker.server_time or 0.0, time.time()) + 86_400  # server time may be unknown yet
                deals = self._wait(broker.get_deals(since, until), self.cfg.connector.op_timeout_s, "deals")
                closes, unexplained = closed_while_away(self.published.positions, open_ids, deals)
                for ticket in unexplained:
                    log.warning("position %s is gone but no closing deal was found; forgetting it", ticket)
                    changed |= self.published.closed(ticket)
                for close in closes:
                    self.bridge.put(close)  # published like any broker event (state saved first)
            if changed:
                self._save_state()
        except bus.OpError as exc:  # not fatal: the closes are reported at the next connect
            log.warning("could not check positions closed while away: %s", exc.message)

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
        self.bridge.stop()
        with contextlib.suppress(Exception):
            self._drain_events()
        if self.connected:
            self._set_connected(False, "connector stopping")
        if self._journal_fh is not None:
            self._journal_fh.close()

    # ---- events from the broker (loop thread only) -------------------------------------------
    def on_tick(self, now: float) -> None:
        self._drain_events()
        self._drive_account(now)
        if now >= self._next_token_look:  # a token pair handed in while running (`oracle broker-token`)
            self._next_token_look = now + TOKEN_LOOK_S
            self._token_handed_in()

    def _drain_events(self, limit: int = 10_000) -> None:
        if self.uptime() < self.cfg.connector.publish_grace_s:
            return  # subscribers are still reconnecting to this new PUB socket (slow joiner): keep events queued
        if not self._state_said and self.connected is not None:
            # the connection state said at connect (within the grace) may have reached no one; a subscriber that
            # heard the previous process say "disconnected" would believe it until the next change
            self._state_said = True
            self.publish(messages.CONNECTION_TOPIC, messages.ConnectionState(self.connected, self.conn_reason))
        events = self.bridge.take_events(limit)
        bars: list[BrokerBar] = []
        for ev in events:
            if isinstance(ev, BrokerBar):
                bars.append(ev)  # bars closing together: one state write, then all of them go out
                continue
            self._publish_bars(bars)
            try:
                self._on_broker_event(ev)
            except Exception:  # one bad event must not stop the others (or the process)
                log.exception("cannot publish broker event %r", ev)
                self.count("event_errors")
        self._publish_bars(bars)

    def _on_broker_event(self, ev: Any) -> None:
        """One broker event other than a closed bar (the drain publishes those together, `_publish_bars`)."""
        if isinstance(ev, OrderFilled):
            fill = messages.Fill(
                ev.symbol, ev.ticket, ev.client_order_id, ev.direction, ev.volume, ev.price, ev.time, ev.deal_id,
                ev.comment, ev.commission,
            )
            # in the outbox's spool before the state says so: a kill in between records it twice, never not at all
            self.persist("trades", real_trade_record(messages.to_wire(fill), closing=False))
            if self.published.opened(ev.ticket, ev.symbol, ev.direction, ev.time, ev.client_order_id, ev.comment,
                                     recorded=True):
                self._save_state()
            self.publish(messages.fill_topic(ev.symbol), fill)
            self.count("fills")
            self._next_account = 0.0
        elif isinstance(ev, PositionClosed):
            if ev.full and self.published.closed(ev.ticket):
                self._save_state()
            closed = dataclasses.replace(ev, pip_size=self._pip_size(ev.symbol))  # the adapter's, with the pip
            self.persist("trades", real_trade_record(messages.to_wire(closed), closing=True))
            self.publish(messages.closed_topic(ev.symbol), closed)
            self.count("closes")
            if ev.external:
                self.count("closes_external")
            self._next_account = 0.0
        elif isinstance(ev, OrderRejected):
            self.publish(
                messages.reject_topic(ev.symbol or "UNKNOWN"),
                messages.OrderRejected(ev.client_order_id, ev.symbol, ev.error),
            )
            self.count("rejects")
        elif isinstance(ev, ConnectionStatus):
            self._set_connected(ev.connected, ev.reason)
        elif isinstance(ev, MarketStatus):
            self._on_market(ev)
        elif isinstance(ev, AuthStatus):
            self._set_auth_problem("" if ev.ok else ev.reason)

    def _on_market(self, ev: MarketStatus) -> None:
        """A symbol's market opened or closed: said on `market.<SYM>`; bar freshness restarts at an open (for every
        service: the heartbeat says how long the market has been open, `open_for_s`)."""
        if ev.open:
            self.freshness.market_opened(ev.symbol, time.monotonic())
        self.publish(messages.market_topic(ev.symbol), messages.MarketState(ev.symbol, ev.open, ev.time, ev.reason))
        self.count("market_opens" if ev.open else "market_closes")

    def _publish_bars(self, bars: list[BrokerBar]) -> None:
        fresh = []
        for bar in bars:
            tf = bar.timeframe
            if tf not in self.published.subscriptions.get(bar.symbol, ()):
                continue
            if not self.published.should_publish(bar.symbol, tf, bar.time):
                self.count("bars_duplicate_dropped")
                continue
            self.published.record(bar.symbol, tf, bar.time)
            fresh.append((bar, tf))
        bars.clear()
        if not fresh:
            return
        try:
            self._save_state()  # before publishing: a crash may lose these bars (repairable), never repeat them
        except OSError:
            log.exception("cannot write the connector state: %d bar(s) not published (subscribers repair them "
                          "from history)", len(fresh))
            self.count("event_errors")
            return
        for bar, tf in fresh:
            self.publish(
                messages.bar_topic(bar.symbol, tf),
                messages.Bar(bar.symbol, tf, bar.time, bar.open, bar.high, bar.low, bar.close, bar.volume),
            )
            self.freshness.published(bar.symbol, tf, time.monotonic())
            self.count("bars_published")

    def _order_sent(self, symbol: str) -> None:
        """An order for `symbol` was just written to the broker connection (called on the broker thread, after the
        rate limit's wait): perhaps a bar close -> order sent sample (`Freshness.order_sent`, thread-safe)."""
        period = max((TIMEFRAMES.get(tf, 0) for tf in self.published.subscriptions.get(symbol, ())), default=0)
        self.freshness.order_sent(symbol, period, time.monotonic())

    def _set_connected(self, connected: bool, reason: str) -> None:
        changed = connected != self.connected or (not connected and reason != self.conn_reason)
        self.connected, self.conn_reason = connected, reason
        if not changed:
            return
        self.publish(messages.CONNECTION_TOPIC, messages.ConnectionState(connected, reason))
        if connected:
            self.count("connects")
            self._next_account = 0.0
            logs.event(log, logging.INFO, "broker connected")
        else:
            self.count("disconnects")
            logs.event(log, logging.WARNING, "broker disconnected", reason=reason)

    def _drive_account(self, now: float) -> None:
        fut = self._account_fut
        if fut is not None:
            if not fut.done():
                return
            self._account_fut = None
            try:
                a = fut.result()
            except Exception as exc:
                log.debug("account update failed: %s", exc)
            else:
                self.publish(
                    messages.ACCOUNT_TOPIC,
                    messages.AccountUpdate(a.balance, a.equity, a.margin, a.free_margin, a.currency, a.gross_pnl,
                                           a.swap, a.commission),
                )
                self.count("account_updates")
        if self.connected and self.broker is not None and self.bridge.running and now >= self._next_account:
            self._next_account = now + self.cfg.connector.account_interval_s
            self._account_fut = self.bridge.submit(self.broker.get_account())

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
        refresh = not self._live_book(broker)
        return self._wait(broker.get_account(refresh=refresh), self.cfg.connector.op_timeout_s, "account")

    def _op_positions(self, _a: Any) -> messages.Positions:
        """The open positions, and with them what an order decided on them needs (one trip instead of three): the
        account and the live quote of every symbol with one, with its quote->deposit rate."""
        broker = self._need_broker()
        refresh = not self._live_book(broker)
        got, acct, quotes = self._wait(self._book_facts(broker, refresh), self.cfg.connector.op_timeout_s,
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

    def _order_wait_s(self) -> float:
        b = self.cfg.broker
        return b.order_timeout_s * 3 + b.request_timeout_s * 3 + 15.0  # the client's attempts and reconciles

    def _asked_before(self, step: ledger.Join | ledger.Replay | ledger.LookUp | ledger.Send
                      ) -> bus.Deferred | messages.OrderResult | ledger.Send:
        """The ledger's decision carried out: an order out now joined, one done answered from the journal, one sent
        without a known outcome found at the broker (then journaled); else the `Send`, its `sent` line journaled."""
        if isinstance(step, ledger.Join):
            self.count("orders_joined")
            return self.bridge.joined(step.handle)
        if isinstance(step, ledger.Replay):
            self.count("orders_replayed")
            return step.result
        if isinstance(step, ledger.LookUp):
            step = self.ledger.after_look_up(step, self._look_up(step.entry), time.time())
            if isinstance(step, ledger.Recovered):
                self._journal(step.record)
                self.count("orders_recovered")
                return step.result
        if step.record is not None:
            self._journal(step.record)
        return step

    def _look_up(self, entry: journal.Entry) -> messages.OrderResult | None:
        """An order sent before without a known outcome: found at the broker (its positions, then its deals since
        the send) before anything is resent; None: not executed, or it cannot be told."""
        if not self.ledger.can_look_up(entry):
            return None
        broker = self._need_broker()
        positions = self._wait(broker.get_positions(refresh=True), self.cfg.connector.op_timeout_s, "reconcile")
        found, deals_tell = self.ledger.found_in_positions(entry, positions)
        window = ledger.deals_window(entry, broker.server_time, time.time()) if deals_tell else None
        if window is None:
            return found
        deals = self._wait(broker.get_deals(*window), self.cfg.connector.op_timeout_s, "deals")
        return self.ledger.found_in_deals(entry, deals)

    def _op_order_open(self, a: messages.OrderOpenArgs) -> messages.OrderResult:
        try:
            cid = orders.validate_client_order_id(a.client_order_id)
        except ValueError as exc:
            raise bus.OpError("bad_args", str(exc)) from None
        if a.direction not in (1, -1):
            raise bus.OpError("bad_args", "direction must be +1 (long) or -1 (short)")
        if not a.lots > 0:
            raise bus.OpError("bad_args", "lots must be positive")
        for name, dist in (("sl_distance", a.sl_distance), ("tp_distance", a.tp_distance)):
            if dist is not None and dist < 0:
                raise bus.OpError("bad_args", f"{name} is a price distance from the fill and cannot be negative")
        self._check_symbol(a.symbol)
        broker = self._need_broker()
        request = {
            "symbol": a.symbol,
            "direction": a.direction,
            "lots": a.lots,
            "sl_distance": a.sl_distance,
            "tp_distance": a.tp_distance,
            "server_time": broker.server_time,
        }
        step = self._asked_before(self.ledger.ask_open(cid, request, time.time()))
        if not isinstance(step, ledger.Send):
            return step
        self.count("orders")
        order = broker.market_order(
            a.symbol, a.direction, a.lots, sl_distance=a.sl_distance, tp_distance=a.tp_distance,
            client_order_id=cid, comment=a.comment,
        )
        return self._defer(step.out_key, order, lambda res: self._settle_open(cid, a, res), f"order_open {cid}")

    def _settle_open(self, cid: str, a: messages.OrderOpenArgs, res: OrderResult) -> messages.OrderResult:
        server_time = self.broker.server_time if self.broker is not None else None  # the session may be gone now
        if (
            res.success
            and res.ticket
            and self.published.opened(res.ticket, a.symbol, a.direction, (server_time or time.time()) - 3600, cid,
                                 a.comment)
        ):
            self._save_state()  # known open now, even if this process dies before its fill event is published
        done = self.ledger.settled_open(cid, res, time.time())  # None: the same id may be sent again
        if done is not None:
            self._journal(done)
        if not res.success:
            self.count("orders_failed")
        return res

    def _op_order_close(self, a: messages.OrderCloseArgs) -> messages.OrderResult:
        broker = self._need_broker()
        if a.lots is not None and not a.lots > 0:
            raise bus.OpError("bad_args", "lots must be positive (or null for the whole position)")
        step = self._asked_before(
            self.ledger.ask_close(a.client_order_id, a.ticket, a.lots, broker.server_time, time.time()))
        if not isinstance(step, ledger.Send):
            return step
        self.count("closes_requested")
        return self._defer(step.out_key, broker.close_position(a.ticket, a.lots),
                           lambda res: self._settle_close(a, res), f"order_close {a.ticket}")

    def _settle_close(self, a: messages.OrderCloseArgs, res: OrderResult) -> messages.OrderResult:
        res, done = self.ledger.settled_close(a.client_order_id, a.ticket, a.lots, res, time.time())
        if done is not None:
            self._journal(done)
        return res

    def _op_order_amend(self, a: messages.OrderAmendArgs) -> bus.Deferred:
        for name, price in (("sl", a.sl), ("tp", a.tp)):
            if price is not None and not (math.isfinite(price) and price > 0):
                raise bus.OpError("bad_args", f"{name} must be a positive price or null, got {price!r}")
        broker = self._need_broker()
        step = self._asked_before(self.ledger.ask_amend(a.ticket))
        if not isinstance(step, ledger.Send):
            return step
        self.count("amends")
        return self._defer(step.out_key, broker.amend_position(a.ticket, a.sl, a.tp), lambda res: res,
                           f"order_amend {a.ticket}")

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
        try:
            calendar = broker.instrument(symbol).calendar
        except SymbolNotFoundError:  # not loaded yet: no calendar, judged open
            calendar = None
        return self.freshness.market_open(broker.market_closed(symbol), calendar, broker.server_time, now)

    def status_report(self) -> dict:
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
            "journal": {"entries": len(self.ledger), "path": str(self.journal_path)},
            "orders": {"in_flight": len(self.ledger.out), "in_flight_peak": self.ledger.peak},
            "bar_to_order_ms": latency_summary(self.freshness.bar_to_order_ms),
        }


def main(argv: list[str] | None = None) -> int:
    return runtime.main(Connector, argv)
