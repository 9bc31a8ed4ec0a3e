"""Orders, positions, deals and the account on the Open API (the execution client).

- The book: positions from the session's reconcile, kept by execution events since (a reconcile answered after an
  event keeps what the event said); the balance from the trader and each closing deal.
- Orders: MARKET orders with relative SL/TP, idempotent by client order id (it is also the order's label): a
  repeated id returns the first result; a request whose outcome is unknown (timeout, lost connection) is sent again
  only after a reconcile shows no position carrying its label. The broker's answer is an execution event or an
  order error event (``ProtoOAOrderErrorEvent``) with the request's clientMsgId, mapped to a typed result
  (parsing.failed_order). A request refused for its rate (REQUEST_FREQUENCY_EXCEEDED) was not executed: it is sent
  again after the window, with the same client order id.
- Lots off the symbol's step are refused (BAD_VOLUME), never rounded here.
- The book as one value (`Book`: positions, their protocol volumes, the balance), published whole by the broker's
  loop after each change, before anything awaits: a reader outside the loop (`book_now`; the connector steps the
  loop on its own thread today, the adapter does not rely on it) takes it without a trip to the broker's loop and
  never sees a position half-updated, nor a close without the balance it left.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from services.connector import orders
from services.connector.ctrader import parsing, requests_wire
from services.connector.ctrader import schemas as proto
from services.connector.ctrader.data import DAY_MS, MarketData
from services.connector.ctrader.link import Link
from services.connector.ctrader.providers import Instruments
from services.connector.ctrader.transport import RATE_ERRORS, WINDOW_S
from services.connector.port import (
    AccountInfo,
    BookNow,
    BrokerConnectionError,
    BrokerError,
    BrokerTimeout,
    Deal,
    OrderFilled,
    OrderRejected,
    OrderResult,
    Position,
    Quote,
    position_closed,
)

log = logging.getLogger(__name__)
oa = proto.oa

ORDER_ACCEPTED, ORDER_FILLED, ORDER_REPLACED, ORDER_REJECTED, ORDER_PARTIAL_FILL = 2, 3, 4, 7, 11
POSITION_CLOSED = 2
MARKET = 1
RATE_RESENDS = 3  # times an order refused for its rate is sent again
UNKNOWN_OUTCOME = (TimeoutError, BrokerTimeout, BrokerConnectionError)


@dataclass(frozen=True)
class Book:
    """The positions (ticket -> position, its protocol volume) and the balance at one instant: replaced whole,
    never changed, so a reader on another thread takes one consistent value with one attribute read."""

    positions: Mapping[int, Position]
    volumes: Mapping[int, int]
    balance: float


EMPTY_BOOK = Book(MappingProxyType({}), MappingProxyType({}), 0.0)


class Execution:
    def __init__(self, link: Link, instruments: Instruments, market: MarketData, order_timeout: float,
                 order_attempts: int) -> None:
        self.link = link
        self.instruments = instruments
        self.market = market
        self.order_timeout = order_timeout
        self.order_attempts = order_attempts
        self.balance = 0.0
        self.positions: dict[int, Position] = {}
        self._volumes: dict[int, int] = {}  # ticket -> protocol volume (what a full close sends)
        # execution events counted, and the count at each position's last event: a reconcile answered after an
        # event keeps what the event said (the answer was made before it)
        self._executions = 0
        self._touched: dict[int, int] = {}
        self._reconciling: list[int] = []  # the count when each reconcile still waiting for its answer was asked
        self._own: dict[str, OrderResult] = {}
        self._inflight: dict[str, asyncio.Future[OrderResult]] = {}
        self._waiters: dict[str, asyncio.Future[OrderResult]] = {}
        self._msgid_waiter: dict[str, str] = {}
        # a trading request's clientMsgId: this process's prefix and a count (unique as a uuid4 each, without the
        # random bytes' system call per order)
        self._msgid_prefix = uuid.uuid4().hex[:16]
        self._msgid_seq = itertools.count(1)
        self._closing_by_us: set[int] = set()
        self._seen_deals: set[int] = set()
        self.on_order_sent: Callable[[str], None] | None = None  # called on the broker loop's thread: keep it short
        self.book = EMPTY_BOOK  # what `_publish_book` last published (read from any thread)
        self._marks: dict[int, tuple[tuple, Position]] = {}  # ticket -> (what it was marked from, marked)
        self._book_now: tuple[Book, int, BookNow] | None = None  # the last `book_now`: of which book and quotes

    def _publish_book(self) -> None:
        """The book as it is now, for readers on other threads (`book_now`); called on the broker loop after each
        change of the positions or the balance, before the next await."""
        self.book = Book(MappingProxyType(dict(self.positions)), MappingProxyType(dict(self._volumes)), self.balance)

    @property
    def orders_out(self) -> int:
        return len(self._waiters)

    def fail_waiters(self, reason: str) -> None:
        """The connection is gone: every order's outcome is unknown (callers reconcile before any resend)."""
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(BrokerConnectionError(reason))

    # ---- account
    async def refresh_trader(self) -> None:
        res = await self.link.request(oa.ProtoOATraderReq(ctidTraderAccountId=self.link.account_id))
        self.balance = self.instruments.apply_trader(res.trader)
        self._publish_book()

    def on_trader_updated(self, msg: Any) -> None:
        self.balance = parsing.money_from_wire(msg.trader.balance, self.instruments.money_digits)
        self._publish_book()

    async def get_positions(self, refresh: bool = False) -> list[Position]:
        """Open positions, marked to the last quotes: gross PnL at the price they would close at, net with costs."""
        if refresh:
            await self.link.wait_ready()
            await self.reconcile(report_missing=True)
        return self._marked(self.book, self.market.quotes)

    def _marked(self, book: Book, quotes: Mapping[str, Quote]) -> list[Position]:
        """The book's positions marked to `quotes`; a position whose own value, quote, rate and volume are those of
        its last marking is not marked again (either thread may call: the memo's entries are whole values)."""
        out = []
        md = self.instruments.money_digits
        memo = self._marks
        for p in book.positions.values():
            q = quotes.get(p.symbol)
            if q is None:
                out.append(p)
                continue
            rate = self.market.rate_from_quotes(p.symbol, quotes)
            volume = book.volumes.get(p.ticket, 0)
            key = (p, q, rate, volume, md)
            known = memo.get(p.ticket)
            if known is not None and known[0] == key:
                out.append(known[1])
                continue
            marked = parsing.marked(p, q.bid if p.direction > 0 else q.ask, rate, volume, md)
            memo[p.ticket] = (key, marked)
            out.append(marked)
        if len(memo) > 2 * len(book.positions) + 16:  # positions closed meanwhile
            self._marks = {t: m for t, m in memo.copy().items() if t in book.positions}  # copy: one C call
        return out

    def _account(self, balance: float, positions: list[Position]) -> AccountInfo:
        md = self.instruments.money_digits
        gross = round(sum(p.gross_pnl for p in positions), md)
        swap = round(sum(p.swap for p in positions), md)
        commission = round(sum(p.commission for p in positions), md)
        equity = round(balance + gross + swap + commission, md)
        margin = sum(p.used_margin for p in positions)
        return AccountInfo(
            balance=balance, equity=equity, margin=margin, free_margin=round(equity - margin, md),
            margin_level=equity / margin * 100 if margin else 0.0, currency=self.instruments.deposit_asset,
            leverage=self.instruments.leverage, gross_pnl=gross, swap=swap, commission=commission,
        )

    async def get_account(self, refresh: bool = False) -> AccountInfo:
        """Balance from the broker; equity = balance + the positions' net PnL; margin = their used margin."""
        if refresh:
            await self.link.wait_ready()
            await self.refresh_trader()
        for name in {p.symbol for p in self.positions.values()}:
            if self.link.is_open:
                with contextlib.suppress(BrokerError, TimeoutError):
                    await self.market.ensure_quote(name)
                    await self.market.quote_to_deposit(name)
        book = self.book
        return self._account(book.balance, self._marked(book, self.market.quotes))

    def book_now(self) -> BookNow | None:
        """From any thread, without awaiting: the positions marked to the quotes at hand, the account they make and
        every live quote with its rate, all of one book and one copy of the quotes; None when a position's quote or
        rate is not at hand (`get_account` fetches them)."""
        book = self.book
        version = self.market.quotes_version  # before the copy: a quote stored meanwhile makes the next call compute
        known = self._book_now
        if known is not None and known[0] is book and known[1] == version:
            return known[2]  # nothing changed since: the positions need not be marked again
        quotes = self.market.quotes.copy()  # one C call under the GIL: a consistent copy
        for p in book.positions.values():
            if p.symbol not in quotes or self.market.rate_from_quotes(p.symbol, quotes) is None:
                return None
        positions = self._marked(book, quotes)
        live = {}
        for symbol, q in quotes.items():
            if q.bid > 0 and q.ask > 0:
                live[symbol] = (q, self.market.rate_from_quotes(symbol, quotes))
        now = BookNow(tuple(positions), self._account(book.balance, positions), MappingProxyType(live))
        self._book_now = (book, version, now)
        return now

    async def get_deals(self, since: float, until: float | None = None, max_rows: int = 0) -> list[Deal]:
        """Deals executed between `since` and `until` (Unix s, broker time), in time order. The server answers at
        most a page of them (`hasMore` past it): unless `max_rows` caps the answer, a window with more is asked
        again in halves until every part fits."""
        await self.link.wait_ready()
        to_ms = parsing.seconds_to_ms(until) if until is not None else (self.market.server_ms or 0) + DAY_MS
        raw = await self._deal_list(parsing.seconds_to_ms(since), to_ms, max_rows)
        specs, by_id = self.instruments.specs, self.instruments.by_id
        unique = {d.dealId: d for d in raw if d.symbolId in by_id}  # a deal on a halves' edge comes once
        deals = [parsing.deal(d, specs[by_id[d.symbolId]]) for d in unique.values()]
        return sorted(deals, key=lambda d: (d.time, d.deal_id))

    async def _deal_list(self, from_ms: int, to_ms: int, max_rows: int) -> list[Any]:
        req = oa.ProtoOADealListReq(ctidTraderAccountId=self.link.account_id, fromTimestamp=from_ms, toTimestamp=to_ms)
        if max_rows:
            req.maxRows = max_rows
        res = await self.link.request(req)
        if not res.hasMore or max_rows:
            return list(res.deal)
        if to_ms <= from_ms:  # a page of deals within one millisecond: nothing narrower to ask
            log.warning("the deal list at %d ms holds more than one page: %d deal(s) read", from_ms, len(res.deal))
            return list(res.deal)
        mid = (from_ms + to_ms) // 2
        return [*await self._deal_list(from_ms, mid, 0), *await self._deal_list(mid + 1, to_ms, 0)]

    # ---- reconcile
    async def reconcile(self, report_missing: bool = False) -> None:
        asked_at = self._executions
        self._reconciling.append(asked_at)
        try:
            res = await self.link.request(oa.ProtoOAReconcileReq(ctidTraderAccountId=self.link.account_id))
        finally:
            self._reconciling.remove(asked_at)
        fresh: dict[int, Position] = {}
        volumes: dict[int, int] = {}
        for p in res.position:
            name = self.instruments.name_of(p.tradeData.symbolId)
            if name is not None:
                fresh[p.positionId], volumes[p.positionId] = parsing.position(p, self.instruments.specs[name])
        # an execution event that came while the answer was on its way is newer than the answer (an order filled
        # or a position closed meanwhile): it wins
        newer = {pid for pid, n in self._touched.items() if n > asked_at}
        for pid in newer:
            fresh.pop(pid, None)
            volumes.pop(pid, None)
            if pid in self.positions:
                fresh[pid], volumes[pid] = self.positions[pid], self._volumes[pid]
        missing = [p for pid, p in self.positions.items() if pid not in fresh]
        self.positions, self._volumes = fresh, volumes
        self._publish_book()
        oldest = min(self._reconciling, default=self._executions)  # what a reconcile still out must compare with
        self._touched = {pid: n for pid, n in self._touched.items() if n > oldest}
        if report_missing and missing:
            await self._report_closed_while_away(missing)

    async def _report_closed_while_away(self, gone: list[Position]) -> None:
        """Positions that vanished between sessions: report their closing deals from the deal list."""
        since_ms = parsing.seconds_to_ms(min(p.open_time for p in gone))
        to_ms = (self.market.server_ms or parsing.seconds_to_ms(time.time())) + DAY_MS
        res = await self.link.request(
            oa.ProtoOADealListReq(ctidTraderAccountId=self.link.account_id, fromTimestamp=since_ms, toTimestamp=to_ms)
        )
        by_pid = {p.ticket: p for p in gone}
        for d in res.deal:
            name = self.instruments.name_of(d.symbolId)
            if name is None or d.positionId not in by_pid or d.dealId in self._seen_deals:
                continue
            deal = parsing.deal(d, self.instruments.specs[name])
            if not deal.closing:
                continue
            self._seen_deals.add(deal.deal_id)
            if deal.balance is not None:
                self.balance = deal.balance
                self._publish_book()
            p = by_pid[d.positionId]
            external = d.positionId not in self._closing_by_us
            self.link.emit(position_closed(deal, p.direction, external, False, True, p.label, p.comment))
            self._closing_by_us.discard(d.positionId)

    async def _report_filled_while_away(self, ticket: int) -> None:
        """A position an order opened whose fill events never came (lost with a dropped connection, or late): its
        opening deals from the deal list, emitted as those events would have been, so its opening is recorded
        and published like any other. The same deal ids: a late event of one is a deal seen, not a second fill."""
        pos = self.positions.get(ticket)
        if pos is None:
            return
        try:
            deals = await self.get_deals(pos.open_time - 1.0)
        except BrokerError as exc:
            log.warning("position %s: its opening deals cannot be read (%s); its opening is recorded from the deal "
                        "list when the connector next connects", ticket, exc)
            return
        for deal in deals:
            if deal.position_id != ticket or deal.closing or deal.deal_id in self._seen_deals:
                continue
            self._seen_deals.add(deal.deal_id)
            self.link.emit(OrderFilled(pos.label, ticket, deal.symbol, deal.direction, deal.volume, deal.price,
                                       deal.time, deal.deal_id, pos.comment, deal.commission))

    # ---- sending
    async def _send_and_wait(self, msg: Any, key: str, symbol: str = "") -> OrderResult:
        """Send a trading request; its answer is an execution or error event resolving `key`. A refusal for the
        request rate means nothing was executed: sent again after the window. `on_order_sent(symbol)` is called
        once the request is written to the connection (after the rate limit's wait)."""
        for resend in range(RATE_RESENDS + 1):
            fut: asyncio.Future[OrderResult] = asyncio.get_running_loop().create_future()
            self._waiters[key] = fut
            msg_id = f"{self._msgid_prefix}{next(self._msgid_seq)}"
            self._msgid_waiter[msg_id] = key
            try:
                await self.link.send(msg, msg_id)
                if symbol and self.on_order_sent is not None:
                    self.on_order_sent(symbol)
                result = await asyncio.wait_for(asyncio.shield(fut), self.order_timeout)
            finally:
                self._msgid_waiter.pop(msg_id, None)
                if self._waiters.get(key) is fut:
                    del self._waiters[key]
            if result.success or result.broker_code not in RATE_ERRORS or resend == RATE_RESENDS:
                return result
            log.info("%s refused for its rate (%s); sent again in %.1f s", key, result.broker_code, WINDOW_S)
            await asyncio.sleep(WINDOW_S)
        raise AssertionError("unreachable")

    def _resolve(self, key: str, result: OrderResult) -> None:
        fut = self._waiters.get(key)
        if fut is not None and not fut.done():
            fut.set_result(result)

    # ---- orders
    async def market_order(
        self,
        symbol: str,
        direction: int,
        lots: float,
        *,
        sl_distance: float | None = None,
        tp_distance: float | None = None,
        client_order_id: str | None = None,
        comment: str = "",
    ) -> OrderResult:
        """A MARKET order with relative SL/TP (price distances from the fill), idempotent by `client_order_id`."""
        cid = orders.validate_client_order_id(client_order_id or orders.new_client_order_id())
        known = orders.existing_order(cid, self._own, self.positions.values())
        if known is not None:
            return known
        if cid in self._inflight:
            return await asyncio.shield(self._inflight[cid])
        fut: asyncio.Future[OrderResult] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._inflight[cid] = fut
        try:
            result = await self._place(cid, symbol, direction, lots, sl_distance, tp_distance, comment)
            fut.set_result(result)
            return result
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        finally:
            self._inflight.pop(cid, None)

    async def _place(self, cid: str, symbol: str, direction: int, lots: float, sl_distance: float | None,
                     tp_distance: float | None, comment: str) -> OrderResult:
        await self.link.wait_ready()
        spec = self.instruments.spec(symbol)
        try:
            volume = parsing.order_volume(lots, spec)
        except ValueError as exc:
            return parsing.failed_order(cid, "TRADING_BAD_VOLUME", str(exc))
        try:
            relative_sl = parsing.relative_from_distance(sl_distance, spec.digits) if sl_distance else None
            relative_tp = parsing.relative_from_distance(tp_distance, spec.digits) if tp_distance else None
        except ValueError as exc:
            return parsing.failed_order(cid, "TRADING_BAD_STOPS", str(exc))
        last_error = ""
        for attempt in range(1, self.order_attempts + 1):
            await self.link.wait_ready()
            # ProtoOANewOrderReq, serialised by hand (requests_wire.py: the same bytes, without the runtime's cost)
            req = requests_wire.new_order(
                self.link.account_id, spec.symbol_id, MARKET, 1 if direction > 0 else 2, volume,
                comment=comment[:512] if comment else None, label=cid, client_order_id=cid,
                relative_stop_loss=relative_sl, relative_take_profit=relative_tp,
            )
            try:
                result = await self._send_and_wait(req, f"order:{cid}", symbol)
                if result.error_code == "MARKET_CLOSED":
                    self.market.mark_closed(symbol, result.error)
                return result
            except UNKNOWN_OUTCOME as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                log.warning("order %s attempt %d: no answer (%s); reconciling before any resend", cid, attempt,
                            last_error)
            # outcome unknown: the order may exist. Look before sending again.
            await self.link.wait_ready()
            try:
                await self.reconcile()
            except BrokerError as exc:
                last_error = str(exc)
                continue
            known = orders.existing_order(cid, self._own, self.positions.values())
            if known is not None:
                if known.recovered:  # found open by its label: its fill events were lost (or are late)
                    await self._report_filled_while_away(known.ticket)
                return known
        return OrderResult(False, cid, error=f"no confirmation after {self.order_attempts} attempts: {last_error}",
                           error_code="NO_CONFIRMATION")

    async def close_position(self, ticket: int, lots: float | None = None) -> OrderResult:
        """Close a position (all of it unless `lots`), sending its volume as the protocol requires."""
        await self.link.wait_ready()
        pos = self.positions.get(ticket)
        if pos is None:
            await self.reconcile()
            pos = self.positions.get(ticket)
            if pos is None:
                return parsing.failed_order("", "POSITION_NOT_FOUND", f"position {ticket} is not open", ticket)
        spec = self.instruments.spec(pos.symbol)
        full_volume = self._volumes[ticket]
        try:
            volume = full_volume if lots is None else parsing.order_volume(lots, spec)
        except ValueError as exc:
            return parsing.failed_order("", "TRADING_BAD_VOLUME", str(exc), ticket)
        self._closing_by_us.add(ticket)
        last_error = ""
        for _ in range(self.order_attempts):
            await self.link.wait_ready()
            req = requests_wire.close_position(self.link.account_id, ticket, volume)  # ProtoOAClosePositionReq
            try:
                result = await self._send_and_wait(req, f"close:{ticket}", pos.symbol)
                if not result.success:
                    self._closing_by_us.discard(ticket)
                    if result.error_code == "MARKET_CLOSED":
                        self.market.mark_closed(pos.symbol, result.error)
                return result
            except UNKNOWN_OUTCOME as exc:
                last_error = str(exc)
            await self.link.wait_ready()
            with contextlib.suppress(BrokerError):
                await self.reconcile(report_missing=True)
            now = self.positions.get(ticket)
            if now is None or self._volumes.get(ticket, 0) < full_volume:
                return OrderResult(True, "", ticket=ticket, recovered=True)
        return OrderResult(False, "", ticket=ticket, error=f"no confirmation: {last_error}",
                           error_code="NO_CONFIRMATION")

    async def amend_position(self, ticket: int, sl: float | None = None, tp: float | None = None) -> OrderResult:
        """Set absolute SL/TP prices on an open position (None leaves that side without protection)."""
        await self.link.wait_ready()
        req = oa.ProtoOAAmendPositionSLTPReq(ctidTraderAccountId=self.link.account_id, positionId=ticket)
        if sl is not None:
            req.stopLoss = sl
        if tp is not None:
            req.takeProfit = tp
        pos = self.positions.get(ticket)
        try:
            result = await self._send_and_wait(req, f"amend:{ticket}")
            if result.error_code == "MARKET_CLOSED" and pos is not None:
                self.market.mark_closed(pos.symbol, result.error)
            return result
        except UNKNOWN_OUTCOME as exc:
            await self.link.wait_ready()
            await self.reconcile()
            p = self.positions.get(ticket)
            if p is not None and p.sl == sl and p.tp == tp:
                return OrderResult(True, "", ticket=ticket, sl=sl, tp=tp, recovered=True)
            return OrderResult(False, "", ticket=ticket, error=f"no confirmation: {exc}",
                               error_code="NO_CONFIRMATION")

    # ---- events
    def on_error(self, msg: Any, cid: str) -> None:
        """ProtoOAOrderErrorEvent / ProtoOAErrorRes answering a trading request (by its clientMsgId)."""
        key = self._msgid_waiter.get(cid)
        code = getattr(msg, "errorCode", "UNKNOWN")
        desc = getattr(msg, "description", "")
        if key is None:
            log.warning("broker error without a waiting request: %s %s", code, desc)
            return
        kind, _, ident = key.partition(":")
        ticket = int(ident) if kind in ("close", "amend") and ident.isdigit() else None
        self._resolve(key, parsing.failed_order(ident if kind == "order" else "", code, desc, ticket))

    def on_accepted(self, position_id: int | None, symbol_id: int | None) -> None:
        """An ORDER_ACCEPTED execution event (spots.OrderAccepted): the position it is for counts as touched by an
        execution (a reconcile answered after it keeps what the events say); nothing else changes (the order's deal
        changes the book, with the balance it moves), as `_on_execution` does with it."""
        if position_id is not None and symbol_id is not None and self.instruments.name_of(symbol_id) is not None:
            self._executions += 1
            self._touched[position_id] = self._executions

    def on_execution(self, ev: Any, cid: str) -> None:
        try:
            self._on_execution(ev, cid)
        finally:
            self._publish_book()  # the position and the balance the event changed, together

    def _on_execution(self, ev: Any, cid: str) -> None:
        etype = ev.executionType
        pos = ev.position if ev.HasField("position") else None
        order = ev.order if ev.HasField("order") else None
        if pos is not None:
            name = self.instruments.name_of(pos.tradeData.symbolId)
            if name is not None:
                self._executions += 1
                self._touched[pos.positionId] = self._executions
                if etype == ORDER_ACCEPTED:
                    # the position as the order will leave it (closed, reduced): changed by the order's deal, with
                    # the balance it moves, so that no book shows a close without its profit
                    pass
                elif pos.positionStatus == POSITION_CLOSED:
                    self.positions.pop(pos.positionId, None)
                    self._volumes.pop(pos.positionId, None)
                else:
                    p, vol = parsing.position(pos, self.instruments.specs[name])
                    self.positions[pos.positionId], self._volumes[pos.positionId] = p, vol
        client_oid = order.clientOrderId if order is not None and order.HasField("clientOrderId") else ""
        if etype == ORDER_REJECTED:
            code = ev.errorCode if ev.HasField("errorCode") else "REJECTED"
            symbol = (self.instruments.name_of(order.tradeData.symbolId) or "") if order is not None else ""
            result = parsing.failed_order(client_oid, code)
            self._resolve(f"order:{client_oid}", result)
            key = self._msgid_waiter.get(cid)
            if key:
                self._resolve(key, result)
            self.link.emit(OrderRejected(client_oid, symbol, result.error, result.error_code, code))
            return
        if etype == ORDER_REPLACED and pos is not None:
            p = self.positions.get(pos.positionId)
            self._resolve(
                f"amend:{pos.positionId}",
                OrderResult(True, "", ticket=pos.positionId, sl=p.sl if p else None, tp=p.tp if p else None),
            )
            return
        if etype not in (ORDER_FILLED, ORDER_PARTIAL_FILL) or not ev.HasField("deal"):
            return
        name = self.instruments.name_of(ev.deal.symbolId)
        if name is None:
            return
        deal = parsing.deal(ev.deal, self.instruments.specs[name])
        if deal.balance is not None:
            self.balance = deal.balance
        first_time = deal.deal_id not in self._seen_deals
        self._seen_deals.add(deal.deal_id)
        if deal.closing:
            full = pos is None or pos.positionStatus == POSITION_CLOSED
            if pos is None:  # a closing deal without its position: what it says (closed) is the book's too
                self.positions.pop(deal.position_id, None)
                self._volumes.pop(deal.position_id, None)
            result = OrderResult(True, client_oid, ticket=deal.position_id, price=deal.price, volume=deal.volume)
            self._resolve(f"close:{deal.position_id}", result)
            if first_time:
                self._report_close(deal, ev, pos, full)
            return
        if etype == ORDER_FILLED:  # a partial fill's first deals answer nothing yet: the order is not done
            p = self.positions.get(deal.position_id)
            spec = self.instruments.specs[name]
            filled = order is not None and order.HasField("executedVolume") and order.HasField("executionPrice")
            result = OrderResult(
                True, client_oid, ticket=deal.position_id,
                price=order.executionPrice if filled else deal.price,  # the average over every deal of the order
                volume=parsing.volume_to_lots(order.executedVolume, spec.lot_size) if filled else deal.volume,
                sl=p.sl if p else None, tp=p.tp if p else None,
            )
            if client_oid:
                self._own.setdefault(client_oid, result)
                self._resolve(f"order:{client_oid}", result)
        if not self.market.is_subscribed(name):
            self.link.spawn(self.market.subscribe_quietly(name))  # quotes for the position's PnL
        if first_time:
            comment = pos.tradeData.comment if pos is not None else ""
            self.link.emit(OrderFilled(client_oid, deal.position_id, name, deal.direction, deal.volume, deal.price,
                                       deal.time, deal.deal_id, comment, deal.commission))

    def _report_close(self, deal: Deal, ev: Any, pos: Any, full: bool) -> None:
        order = ev.order if ev.HasField("order") else None
        server_stop = bool(ev.isServerEvent) or (order is not None and order.orderType == parsing.STOP_LOSS_TAKE_PROFIT)
        external = deal.position_id not in self._closing_by_us
        label, comment = (pos.tradeData.label, pos.tradeData.comment) if pos is not None else ("", "")
        self.link.emit(position_closed(deal, -deal.direction, external and not server_stop, server_stop,
                                       full, label, comment))
        if full:
            self._closing_by_us.discard(deal.position_id)

