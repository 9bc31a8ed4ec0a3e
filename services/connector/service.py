"""The connector process: the broker connection (cTrader Open API or the simulator) plugged into the backbone.

Two threads, one owner per resource:
- the runtime loop thread owns every ZeroMQ socket (ROUTER, PUB, heartbeats), the state file and the order journal;
- one asyncio loop thread runs the broker adapter behind the port (port.py; its transport, reconnects, bars).

Bridge: a request handler submits a coroutine to the asyncio loop (``run_coroutine_threadsafe``) and waits for it,
beating and publishing meanwhile, so a long history request never stops heartbeats. An order does not wait: its
handler journals it, submits it and answers a ``bus.Deferred``; the reply goes out when the broker has answered
(the future's completion wakes the loop), so the orders of one bar are out together. The same order asked again
while it is out joins it (one order, the same reply). Broker events (closed bars,
fills, closes, rejections, connection changes) are moved by a pump task onto a thread-safe queue, a byte on a
pipe wakes the loop (``add_reader``), and the loop thread alone publishes them.

Exactly-once bars across restarts: the last published bar time per (symbol, timeframe) is written (atomically)
before the bar is published; on connect every subscription resumes with ``since`` = that time, so the bars closed
while the connector was down come first, in order, and positions closed while it was down are reported from the
broker's deal list (state.py). Idempotent orders across restarts: an
append-only, fsynced journal client_order_id -> result is consulted before anything is sent (journal.py), on top
of the broker client's own reconcile by label.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

from common import bus, logs, messages, runtime
from common.config import TIMEFRAMES
from services.connector import factory, journal, orders
from services.connector.port import (
    AuthenticationError,
    AuthStatus,
    BrokerConnectionError,
    BrokerError,
    BrokerPort,
    BrokerRequestError,
    BrokerTimeout,
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
from services.persistence.intake import real_trade_record

log = logging.getLogger("oracle.connector")

MAX_HISTORY_BARS = 50_000
LATENCY_SAMPLES = 10_000  # bar close -> order sent samples kept for the status op
TOKEN_LOOK_S = 2.0  # how often the token file is looked at for a pair handed in while running
SWITCH_INTERVAL_S = 0.0005  # sys.setswitchinterval while the broker thread runs (see BrokerLoop.start)


def latency_summary(samples: Iterable[float]) -> dict:
    """count, p50, p90, p99, max (ms, nearest rank) of the bar close -> order sent samples."""
    xs = sorted(samples)
    if not xs:
        return {"count": 0}

    def pct(q: float) -> float:
        return round(xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))], 3)

    return {"count": len(xs), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": round(xs[-1], 3)}


class BrokerLoop:
    """An asyncio event loop on a daemon thread: the broker client's home."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="broker-loop", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> BrokerLoop:
        # two threads share the GIL: a thread ready to run waits up to the switch interval for the one holding it
        # (5 ms by default, a bar's whole budget); the loop thread answering an order must not wait that long on
        # the broker thread parsing a burst of quotes, nor the other way round
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._thread.start()
        return self

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        """Cancel what still runs there (the event pump, orders given up on), then stop the loop."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._cancel_all(), self.loop)
            self._thread.join(5)

    async def _cancel_all(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.loop.stop()


def market_open_now(closed_since: float | None, calendar: Any, server_time: float | None,
                    since_seen_s: float) -> bool:
    """Whether a symbol's bars are due: its market is not known closed by the broker (a refused order) and is open
    by its trading calendar at the broker's time: the last server time seen (any symbol's spot), moved on by the
    wall time since it was seen (outside a replay the broker's clock is the wall clock), so a daily break while
    other symbols trade, or a weekend after the last tick, is closed. No calendar or no time yet: open."""
    if closed_since is not None:
        return False
    if calendar is None or server_time is None:
        return True
    return calendar.is_open(server_time + max(0.0, since_seen_s))


def _op_error(exc: BaseException, what: str) -> bus.OpError:
    """A broker failure as a clear error answer."""
    if isinstance(exc, bus.OpError):
        return exc
    if isinstance(exc, SymbolNotFoundError):
        return bus.OpError("unknown_symbol", str(exc))
    if isinstance(exc, AuthenticationError):
        return bus.OpError("auth_failed", f"{what}: the broker refused the credentials: {exc}")
    if isinstance(exc, BrokerConnectionError):
        return bus.OpError("not_connected", f"{what}: the broker is not connected: {exc}")
    if isinstance(exc, BrokerTimeout | TimeoutError):
        return bus.OpError("timeout", f"{what}: the broker did not answer in time: {exc}")
    if isinstance(exc, BrokerRequestError):
        return bus.OpError("broker_error", f"{what}: the broker refused: {exc}")
    if isinstance(exc, BrokerError):
        return bus.OpError("broker_error", f"{what}: {exc}")
    if isinstance(exc, ValueError):
        return bus.OpError("bad_args", f"{what}: {exc}")
    return bus.OpError("internal", f"{what}: {type(exc).__name__}: {exc}")


def _final_refusal(res: OrderResult) -> bool:
    """The broker refused the order itself (not its rate, not for lack of a session, not an unknown outcome)."""
    return res.error_code not in ("NO_CONFIRMATION", "NOT_CONNECTED", "RATE_LIMITED")


async def _history(broker: BrokerPort, a: messages.HistoryArgs, tf_s: int) -> list[BrokerBar]:
    """The closed bars a history request asks for (runs on the broker's loop)."""

    async def fetch(n: int) -> list[BrokerBar]:
        return await broker.get_history(a.symbol, a.timeframe, n)

    async def bars_after(t: int) -> int:
        # calendar bars since t bound the trading bars since t from above (closed markets only remove bars)
        now = broker.server_time
        if now is None:
            await fetch(1)
            now = broker.server_time or t
        return max(1, int((now - t) // tf_s) + 2)

    if a.since is not None:
        span = await bars_after(a.since)
        if span > MAX_HISTORY_BARS:
            raise bus.OpError("too_many", f"more than {MAX_HISTORY_BARS} bars since {a.since}: ask for a shorter range")
        bars = [b for b in await fetch(min(span, MAX_HISTORY_BARS)) if b.time > a.since]
        if a.until is not None:
            bars = [b for b in bars if b.time < a.until]
        return bars[: a.count] if a.count else bars
    if a.until is not None:
        n = a.count + await bars_after(a.until)
        while True:
            got = await fetch(min(n, MAX_HISTORY_BARS))
            bars = [b for b in got if b.time < a.until]
            if len(bars) >= a.count or len(got) < n or n >= MAX_HISTORY_BARS:
                return bars[-a.count :]
            n *= 2
    return await fetch(a.count)


class Connector(runtime.Service):
    name = "connector"
    concurrent_requests = True  # orders overlap: each one's reply is deferred until the broker answers it
    not_implemented: list[str] = []

    def __init__(self, cfg: Any, dry_run: bool = False):
        super().__init__(cfg, dry_run)
        data_dir = cfg.path(cfg.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.state_path: Path = data_dir / cfg.connector.state_file
        self.journal_path: Path = data_dir / cfg.connector.journal_file
        self.book = self._load_state()
        self.journal, bad = self._load_journal()
        if bad:
            log.warning("order journal %s: %d unreadable line(s) ignored (a torn last write)", self.journal_path, bad)
        self._journal_fh: Any = None
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # the broker thread writes a byte here after queueing an event, so the loop publishes it at once
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.add_reader(self._wake_r, self._on_wake)
        self._aio: BrokerLoop | None = None
        self.broker: BrokerPort | None = None
        self.auth_problem = ""  # the broker refused the credentials: what a person must do (empty: none)
        self._token_stamp: tuple[int, int] | None = None  # the token file as last seen (a pair handed in)
        self._next_token_look = 0.0
        self._pumping = False
        self._session_open = False  # broker.connect succeeded and no disconnect since (it reconnects by itself)
        self._state_said = False  # the connection state published again once the publish grace is over
        self.connected = False
        self.conn_reason = "not connected yet"
        self._active: set[str] = set()  # "SYM TF" whose live bars the broker delivers in this process
        self._last_bar_wall: dict[str, float] = {}  # "SYM TF" -> monotonic time of the last publication (or open)
        self._server_time_seen: tuple[float | None, float] = (None, 0.0)  # broker time, monotonic when first seen
        self._opened_at: dict[str, float] = {}  # symbol -> monotonic time its market last opened (after a closure)
        # bar close -> order sent: when each symbol's last closed bar went out; an order for the symbol within one
        # bar period of it adds a sample (ms), shown by the status op as `bar_to_order_ms`
        self._bar_published: dict[str, float] = {}
        self._bar_to_order_ms: collections.deque[float] = collections.deque(maxlen=LATENCY_SAMPLES)
        self._next_account = 0.0
        self._account_fut: concurrent.futures.Future | None = None
        self._in_flight: dict[str, bus.Deferred] = {}  # journal key -> the order out at the broker now
        self._in_flight_peak = 0  # the most orders out at once since the start (status: `orders`)

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
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.book.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

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
        self.journal[journal.jkey(entry.kind, entry.cid)] = entry

    # ---- the bridge ---------------------------------------------------------------------------
    def _wait(self, coro: Coroutine[Any, Any, Any], timeout: float | None, what: str) -> Any:
        """Run `coro` on the broker loop and wait for it, beating and publishing meanwhile."""
        assert self._aio is not None
        fut = self._aio.submit(coro)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            done, _ = concurrent.futures.wait([fut], timeout=0.05)
            if done:
                try:
                    return fut.result()
                except Exception as exc:
                    raise _op_error(exc, what) from exc
            self.beat_if_due()
            self._drain_events()
            if self._stop:  # SIGTERM while waiting: answer now, the process is stopping
                fut.cancel()
                raise bus.OpError("stopping", f"{what}: the connector is stopping")
            if deadline is not None and time.monotonic() >= deadline:
                fut.cancel()
                raise bus.OpError("timeout", f"{what}: no answer from the broker in {timeout:g} s")

    def _defer(self, key: str | None, coro: Coroutine[Any, Any, Any], settle: Callable[[Any], Any], what: str,
               wait_s: float | None = None) -> bus.Deferred:
        """Run `coro` on the broker loop without waiting: the loop goes on serving other requests and the reply goes
        out when the broker answers (or after `wait_s`, default an order's longest wait). `settle(result)` (journal,
        book) runs once, in the loop thread. An order (`key`) asked again meanwhile (`_joined`) gets the same
        reply."""
        assert self._aio is not None
        fut = self._aio.submit(coro)
        fut.add_done_callback(lambda _f: self._wake())
        outcome: list[tuple[bool, Any]] = []

        def finish(f: concurrent.futures.Future) -> Any:
            if not outcome:
                if key is not None and self._in_flight.get(key) is deferred:
                    del self._in_flight[key]
                try:
                    outcome.append((True, settle(f.result())))
                except Exception as exc:
                    outcome.append((False, _op_error(exc, what)))
            ok, value = outcome[0]
            if not ok:
                raise value
            return value

        deferred = bus.Deferred(fut, finish, time.monotonic() + (wait_s or self._order_wait_s()), what)
        if key is not None:
            self._in_flight[key] = deferred
            self._in_flight_peak = max(self._in_flight_peak, len(self._in_flight))
        return deferred

    def _joined(self, key: str) -> bus.Deferred | None:
        """The same order while it is out (the executor asked again after a timeout, or restarted): one order."""
        first = self._in_flight.get(key)
        if first is None:
            return None
        if first.future.cancelled():  # given up on (deadline): its outcome is looked for like any unknown one
            del self._in_flight[key]
            return None
        self.count("orders_joined")
        return bus.Deferred(first.future, first.finish, first.deadline, first.what)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # full: awake already; closed: stopping
            os.write(self._wake_w, b"\0")

    def _pip_size(self, symbol: str) -> float | None:
        try:
            return self.broker.instrument(symbol).pip_size if self.broker is not None else None
        except SymbolNotFoundError:
            return None

    def _need_broker(self) -> BrokerPort:
        if self.broker is None or self._aio is None:
            raise bus.OpError("not_connected", "the broker is not connected (connector.connect has not run)")
        if not self._session_open:  # closed on purpose (connector.disconnect): fail fast, never wait on it
            raise bus.OpError("not_connected", f"the broker is not connected ({self.conn_reason})")
        return self.broker

    async def _pump(self, broker: BrokerPort) -> None:
        while True:
            self._events.put(await broker.events.get())
            self._wake()

    def _on_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        self._drain_events()

    # ---- steps ----------------------------------------------------------------------------------
    def on_step(self, step: str, args: dict) -> dict:
        if step == "connector.connect":
            return self._connect()
        if step == "connector.disconnect":
            return self._disconnect()
        return super().on_step(step, args)

    def _facts(self) -> dict:
        return {
            "broker": self.cfg.broker.type,
            **(self.broker.describe() if self.broker is not None else {}),
            "connected": self.connected,
            "subscriptions": {s: list(tfs) for s, tfs in self.book.subscriptions.items()},
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
        if self._aio is None:
            self._aio = BrokerLoop().start()
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
        if not self._pumping:
            self._aio.submit(self._pump(broker))
            self._pumping = True
        self._set_connected(True, "")
        self._set_auth_problem("")
        self._report_closed_while_away(broker)
        for symbol, timeframes in sorted(merged_subscriptions(dict(self.cfg.connector.symbols),
                                                              self.book.subscriptions).items()):
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
        if stamp == self._token_stamp or self.broker is None or self._aio is None:
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
        """Positions open before this process started and gone now: publish their closes from the deal list."""
        try:
            now_open = self._wait(broker.get_positions(), self.cfg.connector.op_timeout_s, "positions")
            changed = False
            for p in now_open:
                changed |= self.book.opened(p.ticket, p.symbol, p.direction, p.open_time, p.label, p.comment)
            open_ids = {p.ticket for p in now_open}
            gone = [p for t, p in self.book.positions.items() if int(t) not in open_ids]
            if gone:
                since = min(float(p["open_time"]) for p in gone) - 1
                until = max(broker.server_time or 0.0, time.time()) + 86_400  # server time may be unknown yet
                deals = self._wait(broker.get_deals(since, until), self.cfg.connector.op_timeout_s, "deals")
                closes, unexplained = closed_while_away(self.book.positions, open_ids, deals)
                for ticket in unexplained:
                    log.warning("position %s is gone but no closing deal was found; forgetting it", ticket)
                    changed |= self.book.closed(ticket)
                for close in closes:
                    self._events.put(close)  # published like any broker event (state saved first)
            if changed:
                self._save_state()
        except bus.OpError as exc:  # not fatal: the closes are reported at the next connect
            log.warning("could not check positions closed while away: %s", exc.message)

    def _disconnect(self) -> dict:
        if self.broker is not None and self._aio is not None and self._session_open:
            with contextlib.suppress(bus.OpError):
                self._wait(self.broker.close(), 10.0, "disconnect")
            self._session_open = False
            self._active.clear()
        self._drain_events()
        self._set_connected(False, "disconnected (connector.disconnect)")
        return self._facts()

    def on_stop(self) -> None:
        if self.broker is not None and self._aio is not None and self._session_open:
            with contextlib.suppress(bus.OpError):
                self._wait(self.broker.close(), min(3.0, self.cfg.runtime.stop_timeout_s / 2), "close")
            self._session_open = False
        if self._aio is not None:
            self._aio.stop()
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
        events = []
        for _ in range(limit):
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                break
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
            if self.book.opened(ev.ticket, ev.symbol, ev.direction, ev.time, ev.client_order_id, ev.comment):
                self._save_state()
            fill = messages.Fill(
                ev.symbol, ev.ticket, ev.client_order_id, ev.direction, ev.volume, ev.price, ev.time, ev.deal_id,
                ev.comment, ev.commission,
            )
            self.persist("trades", real_trade_record(messages.to_wire(fill), closing=False))
            self.publish(messages.fill_topic(ev.symbol), fill)
            self.count("fills")
            self._next_account = 0.0
        elif isinstance(ev, PositionClosed):
            if ev.full and self.book.closed(ev.ticket):
                self._save_state()
            closed = messages.PositionClosed(
                ticket=ev.ticket,
                symbol=ev.symbol,
                direction=ev.direction,
                volume=ev.volume,
                entry_price=ev.entry_price,
                close_price=ev.close_price,
                gross_profit=ev.gross_profit,
                swap=ev.swap,
                commission=ev.commission,
                net_profit=ev.net_profit,
                time=ev.time,
                reason=ev.reason,
                external=ev.external,
                balance=ev.balance,
                label=ev.label,
                full=ev.full,
                comment=ev.comment,
                pip_size=self._pip_size(ev.symbol),
            )
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
            now = self._opened_at[ev.symbol] = time.monotonic()
            for key in self._last_bar_wall:
                if key.split(" ")[0] == ev.symbol:
                    self._last_bar_wall[key] = now
        self.publish(messages.market_topic(ev.symbol), messages.MarketState(ev.symbol, ev.open, ev.time, ev.reason))
        self.count("market_opens" if ev.open else "market_closes")

    def _publish_bars(self, bars: list[BrokerBar]) -> None:
        fresh = []
        for bar in bars:
            tf = bar.timeframe
            if tf not in self.book.subscriptions.get(bar.symbol, ()):
                continue
            if not self.book.should_publish(bar.symbol, tf, bar.time):
                self.count("bars_duplicate_dropped")
                continue
            self.book.record(bar.symbol, tf, bar.time)
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
            self._last_bar_wall[f"{bar.symbol} {tf}"] = self._bar_published[bar.symbol] = time.monotonic()
            self.count("bars_published")

    def _order_sent(self, symbol: str) -> None:
        """An order for `symbol` was just written to the broker connection (called on the broker thread, after the
        rate limit's wait): a bar close -> order sent sample, when a bar of the symbol was published less than one
        bar period ago (orders at boot or by an operator are not a bar's reaction). A deque append: thread-safe."""
        t = self._bar_published.get(symbol)
        period = max((TIMEFRAMES.get(tf, 0) for tf in self.book.subscriptions.get(symbol, ())), default=0)
        if t is not None and time.monotonic() - t < period:
            self._bar_to_order_ms.append((time.monotonic() - t) * 1000)

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
        if self.connected and self.broker is not None and self._aio is not None and now >= self._next_account:
            self._next_account = now + self.cfg.connector.account_interval_s
            self._account_fut = self._aio.submit(self.broker.get_account())

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
        if a.count < 0 or a.count > MAX_HISTORY_BARS:
            raise bus.OpError("bad_args", f"count must be 0..{MAX_HISTORY_BARS}")
        if not a.count and a.since is None:
            raise bus.OpError("bad_args", "give count (the last N closed bars) or since (every bar after it)")
        self.count("history_requests")

        def settle(bars: list[BrokerBar]) -> messages.HistoryResult:
            return messages.HistoryResult(
                a.symbol, a.timeframe, [compact_bar(b.time, b.open, b.high, b.low, b.close, b.volume) for b in bars]
            )

        return self._defer(None, _history(broker, a, tf_s), settle, f"history {a.symbol} {a.timeframe}",
                           self.cfg.connector.history_timeout_s)

    def _subscribe(self, symbol: str, timeframe: str, since: int | None) -> messages.Subscribed:
        broker = self._need_broker()
        key = f"{symbol} {timeframe}"
        resume = self.book.since(symbol, timeframe, since)
        if key not in self._active:
            self._wait(
                broker.subscribe_bars([symbol], timeframe, since={symbol: resume} if resume is not None else None),
                self.cfg.connector.op_timeout_s,
                f"subscribe {symbol} {timeframe}",
            )
            self._active.add(key)
            self._last_bar_wall.setdefault(key, time.monotonic())
            if self.book.subscribe(symbol, timeframe):
                self._save_state()
        return messages.Subscribed(symbol, timeframe, subscribed=True, resumed_after=resume,
                                   last_published=self.book.last.get(f"{symbol}.{timeframe}"))

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

    def _earlier_outcome(self, entry: journal.Entry | None,
                         resolve: Callable[[journal.Entry], OrderResult | None]) -> messages.OrderResult | None:
        """The result of an order asked before: the journal's, or found at the broker by `resolve` (then journaled).
        None: never asked, or its outcome is still unknown (it is sent, again)."""
        if entry is None:
            return None
        if entry.status == journal.DONE:
            self.count("orders_replayed")
            return messages.OrderResult(**entry.result)
        found = resolve(entry)
        if found is None:
            return None
        self._journal(dataclasses.replace(entry, status=journal.DONE, ts=time.time(), result=dataclasses.asdict(found)))
        self.count("orders_recovered")
        return found

    def _resolve_unknown(self, entry: journal.Entry) -> OrderResult | None:
        """An order sent before without a known outcome: find it at the broker before anything is resent."""
        broker = self._need_broker()
        cid = entry.cid
        for p in self._wait(broker.get_positions(refresh=True), self.cfg.connector.op_timeout_s, "reconcile"):
            if p.label == cid:
                return OrderResult(
                    True, cid, ticket=p.ticket, price=p.open_price, volume=p.volume, sl=p.sl, tp=p.tp, recovered=True
                )
        sent_at = entry.request.get("server_time")
        if sent_at is None:
            return None
        until = max(broker.server_time or 0.0, time.time()) + 86_400
        deals = self._wait(broker.get_deals(float(sent_at) - 3600, until), self.cfg.connector.op_timeout_s, "deals")
        d = journal.match_opening_deal(entry, deals, journal.claimed_tickets(self.journal), entry.request["symbol"])
        if d is None:
            return None
        return OrderResult(True, cid, ticket=d.position_id, price=d.price, volume=d.volume, recovered=True)

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
        key = journal.jkey("open", cid)
        joined = self._joined(key)
        if joined is not None:
            return joined
        entry = self.journal.get(key)
        earlier = self._earlier_outcome(entry, self._resolve_unknown)
        if earlier is not None:
            return earlier
        if entry is None:
            request = {
                "symbol": a.symbol,
                "direction": a.direction,
                "lots": a.lots,
                "sl_distance": a.sl_distance,
                "tp_distance": a.tp_distance,
                "server_time": broker.server_time,
            }
            self._journal(journal.Entry(cid, "open", journal.SENT, time.time(), request))
        self.count("orders")
        order = broker.market_order(
            a.symbol, a.direction, a.lots, sl_distance=a.sl_distance, tp_distance=a.tp_distance,
            client_order_id=cid, comment=a.comment,
        )
        return self._defer(key, order, lambda res: self._settle_open(key, cid, a, res), f"order_open {cid}")

    def _settle_open(self, key: str, cid: str, a: messages.OrderOpenArgs, res: OrderResult) -> messages.OrderResult:
        server_time = self.broker.server_time if self.broker is not None else None  # the session may be gone now
        if (
            res.success
            and res.ticket
            and self.book.opened(res.ticket, a.symbol, a.direction, (server_time or time.time()) - 3600, cid,
                                 a.comment)
        ):
            self._save_state()  # known open now, even if this process dies before its fill event is published
        if res.success or _final_refusal(res):
            # a fill, or the broker's definite no: final for this id. An unknown outcome, or a request that never
            # reached the broker (not connected, refused for its rate), stays open: the same id may be sent again.
            sent = self.journal[key]
            self._journal(
                dataclasses.replace(sent, status=journal.DONE, ts=time.time(), result=dataclasses.asdict(res))
            )
        if not res.success:
            self.count("orders_failed")
        return res

    def _op_order_close(self, a: messages.OrderCloseArgs) -> messages.OrderResult:
        broker = self._need_broker()
        if a.lots is not None and not a.lots > 0:
            raise bus.OpError("bad_args", "lots must be positive (or null for the whole position)")
        key = journal.jkey("close", a.client_order_id) if a.client_order_id else ""
        joined = self._joined(f"close-ticket:{a.ticket}")  # one close of a ticket at a time, whoever asks
        if joined is not None:
            return joined
        entry = self.journal.get(key) if key else None
        earlier = self._earlier_outcome(entry, self._resolve_close)
        if earlier is not None:
            return earlier
        if key and entry is None:
            self._journal(
                journal.Entry(
                    a.client_order_id, "close", journal.SENT, time.time(),
                    {"ticket": a.ticket, "lots": a.lots, "server_time": broker.server_time},
                )
            )
        self.count("closes_requested")
        return self._defer(f"close-ticket:{a.ticket}", broker.close_position(a.ticket, a.lots),
                           lambda res: self._settle_close(key, a, res), f"order_close {a.ticket}")

    def _settle_close(self, key: str, a: messages.OrderCloseArgs, res: OrderResult) -> messages.OrderResult:
        res = dataclasses.replace(res, client_order_id=a.client_order_id or res.client_order_id)
        if key and res.success:
            self._journal(
                journal.Entry(
                    a.client_order_id,
                    "close",
                    journal.DONE,
                    time.time(),
                    {"ticket": a.ticket, "lots": a.lots},
                    dataclasses.asdict(res),
                )
            )
        return res

    def _resolve_close(self, entry: journal.Entry) -> OrderResult | None:
        """A full close sent before without a known outcome (this process, or one killed before the answer): the
        position's closing deal when it is closed now; None (send it again) when it is still open."""
        ticket, sent_at = entry.request.get("ticket"), entry.request.get("server_time")
        if entry.request.get("lots") is not None or ticket is None or sent_at is None:
            return None  # a partial close cannot be told from the position's state
        broker = self._need_broker()
        positions = self._wait(broker.get_positions(refresh=True), self.cfg.connector.op_timeout_s, "reconcile")
        if any(p.ticket == int(ticket) for p in positions):
            return None
        until = max(broker.server_time or 0.0, time.time()) + 86_400
        deals = self._wait(broker.get_deals(float(sent_at) - 3600, until), self.cfg.connector.op_timeout_s, "deals")
        closing = [d for d in deals if d.closing and d.position_id == int(ticket)]
        if not closing:
            return None
        d = closing[-1]
        return OrderResult(True, entry.cid, ticket=int(ticket), price=d.price, volume=d.volume, recovered=True)

    def _op_order_amend(self, a: messages.OrderAmendArgs) -> bus.Deferred:
        for name, price in (("sl", a.sl), ("tp", a.tp)):
            if price is not None and not (math.isfinite(price) and price > 0):
                raise bus.OpError("bad_args", f"{name} must be a positive price or null, got {price!r}")
        broker = self._need_broker()
        key = f"amend-ticket:{a.ticket}"
        joined = self._joined(key)
        if joined is not None:
            return joined
        self.count("amends")
        return self._defer(key, broker.amend_position(a.ticket, a.sl, a.tp), lambda res: res,
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
        info["symbols"] = {
            key: {"timeframe": key.split(" ")[1], "last_bar_age_s": round(now - self._last_bar_wall.get(key, now), 1),
                  "market_open": self._market_open(key.split(" ")[0], now),
                  **({"open_for_s": round(now - opened, 1)} if (opened := self._opened_at.get(key.split(" ")[0]))
                     is not None else {})}
            for key in sorted(self._active)
        }
        return info

    def _market_open(self, symbol: str, now: float) -> bool:
        broker = self.broker
        server_time = broker.server_time
        if server_time != self._server_time_seen[0]:
            self._server_time_seen = (server_time, now)
        try:
            calendar = broker.instrument(symbol).calendar
        except SymbolNotFoundError:  # not loaded yet: no calendar, judged open
            calendar = None
        return market_open_now(broker.market_closed(symbol), calendar, server_time, now - self._server_time_seen[1])

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
            "subscriptions": {s: list(tfs) for s, tfs in self.book.subscriptions.items()},
            "last_bar_time": dict(self.book.last),
            "journal": {"entries": len(self.journal), "path": str(self.journal_path)},
            "orders": {"in_flight": len(self._in_flight), "in_flight_peak": self._in_flight_peak},
            "bar_to_order_ms": latency_summary(self._bar_to_order_ms),
        }


def main(argv: list[str] | None = None) -> int:
    return runtime.main(Connector, argv)
