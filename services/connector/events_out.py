"""The connector's broker events out (shell, part of service.py's `Connector`): what the broker says unasked,
published on the backbone.

The broker's loop queues its events (bridge.py); the connector's loop drains them: closed bars go out once (never twice,
state.py), fills and closes are recorded through the outbox then published, rejects, market opens/closes, the
connection and credentials state are said in the order they came.

What is durable before what (group commit): everything a drain changed in the state (the bars' times, the positions
a fill opened or a close ended) is made durable with one write and one fdatasync (`_commit`), then what the drain
says goes out, in order (`_say`, `_say_held`): a bar is never published before its time is durable (a crash may lose
it, repairable from history, never repeat it); a fill or close is in the outbox's spool before the state says it is
recorded (a kill in between hands it over twice, never not at all: its opening is then taken again from the deal list
with the same deal id, a duplicate at the store), and published after both. At connect, positions closed while the
connector was away are found in the broker's deal list and published like any close; the account is
published every `connector.account_interval_s` (and `ACCOUNT_AFTER_TRADE_S` after a fill or close).

It lives on the `Connector` (a base class of it): it reads and writes the connector's published state and uses
its broker, bridge, counters and publishing (`_commit`, `_save_state`, `_pip_size`, `_set_auth_problem`, `_wait`,
`publish`, `persist`, `count`, `uptime`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from common import bus, logs, messages, trace
from common.config import TIMEFRAMES
from common.records.real_trades import real_trade_record, recovered_open_record
from services.connector.bridge import Bridge
from services.connector.freshness import Freshness
from services.connector.port import (
    AuthStatus,
    BrokerPort,
    ConnectionStatus,
    Deal,
    MarketStatus,
    OrderFilled,
    OrderRejected,
    Position,
    PositionClosed,
)
from services.connector.port import Bar as BrokerBar
from services.connector.state import ConnectorState, closed_while_away, opening_fills

log = logging.getLogger("oracle.connector")

# the account is published this long after a fill or close: the trades of one bar (a few ms apart) make one update
ACCOUNT_AFTER_TRADE_S = 0.2


def as_runs(out: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """What a drain says, the bars of one stream that follow each other in it (already closed and waiting together:
    a history catch-up, a burst the loop fell behind) as ``BarRun`` messages of at most ``messages.MAX_RUN`` bars,
    in the same order; a bar alone stays a ``Bar`` (the live path: one bar per stream per close)."""
    said: list[tuple[str, Any]] = []
    i, n = 0, len(out)
    while i < n:
        topic, record = out[i]
        j = i + 1
        if isinstance(record, messages.Bar):
            while j < n and out[j][0] == topic and isinstance(out[j][1], messages.Bar):
                j += 1
        if j - i == 1:
            said.append((topic, record))
        else:
            bars = [r for _t, r in out[i:j]]
            for part in messages.split_run(bars):
                if len(part) == 1:
                    said.append((topic, part[0]))
                else:
                    said.append((messages.bars_topic(record.symbol, record.timeframe),
                                 messages.BarRun(record.symbol, record.timeframe, part)))
        i = j
    return said


class EventsOut:
    """Broker events published; the connector's state it works on is declared here (made by `Connector`)."""

    cfg: Any
    pub: bus.Publisher | None  # runtime.Service's
    published: ConnectorState
    bridge: Bridge
    broker: BrokerPort | None
    connected: bool
    conn_reason: str
    freshness: Freshness
    _calendars: dict[str, Any]
    _state_said: bool
    _held_out: list[tuple[str, Any, bool]] | None  # what a drain says once its state changes are durable
    _commit_or_log: Callable[[], OSError | None]  # `_commit`, its failure logged and returned (service.py)
    _next_account: float
    _account_fut: concurrent.futures.Future | None

    def _drain_events(self, limit: int = 10_000) -> None:
        """The broker's events taken and applied, what they changed made durable (one commit), then said (on its
        own: at a disconnect, at a stop; the loop's turn does it with the orders and the answers, `_turn`)."""
        held = self._take_events(limit)
        if held is not None:
            self._say_held(held, self._commit_or_log() is None)

    def _take_events(self, limit: int = 10_000) -> list[tuple[str, Any, bool]] | None:
        """The broker's events queued since the last call applied to the state (not committed yet), and what they say,
        held in order for `_say_held` once that is durable; None: no event was taken."""
        if self.uptime() < self.cfg.connector.publish_grace_s:
            return None  # subscribers are still reconnecting to this new PUB socket (slow joiner): keep events queued
        if not self._state_said and self.connected is not None:
            # the connection state said at connect (within the grace) may have reached no one; a subscriber that
            # heard the previous process say "disconnected" would believe it until the next change
            self._state_said = True
            self.publish(messages.CONNECTION_TOPIC, messages.ConnectionState(self.connected, self.conn_reason))
        events = self.bridge.take_events(limit)
        if not events:
            return None
        self._held_out = []
        try:
            for ev in events:
                try:
                    if isinstance(ev, BrokerBar):
                        self._on_bar(ev)
                    else:
                        self._on_broker_event(ev)
                except Exception:  # one bad event must not stop the others (or the process)
                    log.exception("cannot publish broker event %r", ev)
                    self.count("event_errors")
        finally:
            held, self._held_out = self._held_out, None
        return held

    def _say(self, topic: str, record: Any, needs_state: bool = False) -> None:
        """Publish `record`; during a drain, once what the drain changed in the state is durable (in the order
        said). `needs_state`: not said at all when that cannot be made durable (a bar, a fill, a close)."""
        if self._held_out is None:
            self.publish(topic, record)
        else:
            self._held_out.append((topic, record, needs_state))

    def _say_held(self, held: list[tuple[str, Any, bool]], durable: bool) -> None:
        """What a drain held said, in order, its state changes being durable (`durable`; else what needs them is
        dropped: bars are repaired from history, trades are in the outbox)."""
        if not durable:
            lost = sum(needs for _t, _r, needs in held)
            log.error("cannot write the connector state: %d bar(s), fill(s) or close(s) not published "
                      "(bars are repaired from history, trades are in the outbox)", lost)
            held = [h for h in held if not h[2]]
        log.debug("drain: %d record(s) said after one state commit", len(held))
        if not held:
            return
        assert self.pub is not None
        out = [(topic, record) for topic, record, _needs in held]
        if self.cfg.connector.bar_runs:
            out = as_runs(out)
        self.pub.publish_many(out)  # the I/O thread woken once
        runs = sum(isinstance(record, messages.BarRun) for _topic, record in out)
        if runs:
            self.count("bar_runs_published", runs)
        now = time.monotonic()
        bars = 0
        for _topic, record, _needs in held:
            if isinstance(record, messages.Bar):
                self.freshness.published(record.symbol, record.timeframe, now)
                bars += 1
        if bars:
            trace.mark("connector.bars_published", str(bars))
            self.count("bars_published", bars)

    def _on_broker_event(self, ev: Any) -> None:
        """One broker event other than a closed bar (the drain publishes those together, `_publish_bars`)."""
        if isinstance(ev, OrderFilled):
            fill = messages.Fill(
                ev.symbol, ev.ticket, ev.client_order_id, ev.direction, ev.volume, ev.price, ev.time, ev.deal_id,
                ev.comment, ev.commission,
            )
            # in the outbox's spool before the state says so: a kill in between hands it over twice (the restart takes
            # it from the deal list: same deal id, one record at the store), never not at all
            self.persist("trades", real_trade_record(messages.to_wire(fill), closing=False))
            self.published.opened(ev.ticket, ev.symbol, ev.direction, ev.time, ev.client_order_id, ev.comment,
                                  recorded=True)
            self._say(messages.fill_topic(ev.symbol), fill, needs_state=True)
            self.count("fills")
            self._account_soon()
        elif isinstance(ev, PositionClosed):
            if ev.full:
                self.published.closed(ev.ticket)
            closed = dataclasses.replace(ev, pip_size=self._pip_size(ev.symbol))  # the adapter's, with the pip
            self.persist("trades", real_trade_record(messages.to_wire(closed), closing=True))
            self._say(messages.closed_topic(ev.symbol), closed, needs_state=True)
            self.count("closes")
            if ev.external:
                self.count("closes_external")
            self._account_soon()
        elif isinstance(ev, OrderRejected):
            self._say(
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
        self._say(messages.market_topic(ev.symbol), messages.MarketState(ev.symbol, ev.open, ev.time, ev.reason))
        self.count("market_opens" if ev.open else "market_closes")

    def _on_bar(self, bar: BrokerBar) -> None:
        """A closed bar: recorded in the state and said once that is durable (the bars of one drain, those closing
        together as they came from the broker's loop, after one state write)."""
        tf = bar.timeframe
        if tf not in self.published.subscriptions.get(bar.symbol, ()):
            return
        if not self.published.should_publish(bar.symbol, tf, bar.time):
            self.count("bars_duplicate_dropped")
            return
        self.published.record(bar.symbol, tf, bar.time)
        self._say(messages.bar_topic(bar.symbol, tf),
                  messages.Bar(bar.symbol, tf, bar.time, bar.open, bar.high, bar.low, bar.close, bar.volume),
                  needs_state=True)  # before publishing: a crash may lose these bars (repairable), never repeat them

    def _order_sent(self, symbol: str) -> None:
        """An order for `symbol` was just written to the broker connection (called on the broker's loop, after the
        rate limit's wait): perhaps a bar close -> order sent sample (`Freshness.order_sent`, thread-safe)."""
        trace.mark("connector.order_sent", symbol)
        period = max((TIMEFRAMES.get(tf, 0) for tf in self.published.subscriptions.get(symbol, ())), default=0)
        self.freshness.order_sent(symbol, period, time.monotonic())

    def _set_connected(self, connected: bool, reason: str) -> None:
        changed = connected != self.connected or (not connected and reason != self.conn_reason)
        self.connected, self.conn_reason = connected, reason
        if not changed:
            return
        self._say(messages.CONNECTION_TOPIC, messages.ConnectionState(connected, reason))
        self.beat_soon()  # the orchestrator's health reads `connected` from the heartbeat
        if connected:
            self._calendars.clear()  # a new session loaded the symbols again: their calendars may have changed
            self.count("connects")
            self._next_account = 0.0
            logs.event(log, logging.INFO, "broker connected")
        else:
            self.count("disconnects")
            logs.event(log, logging.WARNING, "broker disconnected", reason=reason)

    def _account_soon(self) -> None:
        """A fill or close changed the account: published within `ACCOUNT_AFTER_TRADE_S` (with the others near)."""
        self._next_account = min(self._next_account, time.monotonic() + ACCOUNT_AFTER_TRADE_S)

    def _drive_account(self, now: float) -> None:
        """The account published every interval and after a fill or close: from the adapter's memory when it holds
        all it needs (`book_now`), else fetched on the broker's loop (published when it is in)."""
        fut = self._account_fut
        if fut is not None:
            if not fut.done():
                return
            self._account_fut = None
            try:
                self._publish_account(fut.result())
            except Exception as exc:
                log.debug("account update failed: %s", exc)
        broker = self.broker
        if self.connected and broker is not None and self.bridge.running and now >= self._next_account:
            self._next_account = now + self.cfg.connector.account_interval_s
            book = broker.book_now() if broker.is_connected else None
            if book is not None:
                self._publish_account(book.account)
            else:
                self._account_fut = self.bridge.submit(broker.get_account())

    def _publish_account(self, a: messages.AccountInfo) -> None:
        self.publish(
            messages.ACCOUNT_TOPIC,
            messages.AccountUpdate(a.balance, a.equity, a.margin, a.free_margin, a.currency, a.gross_pnl, a.swap,
                                   a.commission),
        )
        self.count("account_updates")

    def _record_opening(self, position: Position, deals: list[Deal]) -> None:
        """The trade record of an open position whose fill was never recorded: its opening fills from the deal list,
        else (the list does not reach back to it) one record made from the position itself."""
        fills = opening_fills(position, deals)
        for fill in fills:
            self.persist("trades", real_trade_record(messages.to_wire(fill), closing=False))
        if not fills:
            log.warning("position %s is open but its opening deal is not in the deal list: recorded from the "
                        "position", position.ticket)
            self.persist("trades", recovered_open_record(dataclasses.asdict(position)))
        self.count("openings_recovered")

    def _report_closed_while_away(self, broker: BrokerPort) -> None:
        """Positions open before this process started and gone now: publish (and record) their closes from the deal
        list; positions open now whose opening was never recorded (opened while away, or the process killed between
        the record and the state saying so): record their opening fills from the deal list, the same records (same
        ids) as the fill events would have made."""
        try:
            now_open = self._wait(broker.get_positions(), self.cfg.connector.op_timeout_s, "positions")
            unrecorded = self.published.unrecorded(p.ticket for p in now_open)
            open_ids = {p.ticket for p in now_open}
            gone = [p for t, p in self.published.positions.items() if int(t) not in open_ids]
            deals = []
            if gone or unrecorded:
                since = min([float(p["open_time"]) for p in gone]
                            + [p.open_time for p in now_open if p.ticket in unrecorded]) - 1
                until = max(broker.server_time or 0.0, time.time()) + 86_400  # server time may be unknown yet
                deals = self._wait(broker.get_deals(since, until), self.cfg.connector.op_timeout_s, "deals")
            changed = False
            for p in now_open:
                if p.ticket in unrecorded:
                    self._record_opening(p, deals)
                changed |= self.published.opened(p.ticket, p.symbol, p.direction, p.open_time, p.label, p.comment,
                                                 recorded=True)
            if gone:
                closes, unexplained = closed_while_away(self.published.positions, open_ids, deals,
                                                        self.ledger.closes_asked())
                for ticket in unexplained:
                    log.warning("position %s is gone but no closing deal was found; forgetting it", ticket)
                    changed |= self.published.closed(ticket)
                for close in closes:
                    self.bridge.put(close)  # published like any broker event (state saved first)
            if changed:
                self._save_state()
        except bus.OpError as exc:  # not fatal: the closes are reported at the next connect
            log.warning("could not check positions closed while away: %s", exc.message)
