"""Market data from the Open API: quotes, history, live closed bars, and what the broker's clock says.

- Quotes: spot subscriptions; an event may carry only the side that changed (merged with the last quote).
- History: ``ProtoOAGetTrendbarsReq`` paged backwards by from/to, closed bars only (the forming one dropped).
- Live bars, any number of timeframes per symbol: the forming trendbar of each subscribed period arrives in every
  spot event; a snapshot with a later open time, or a spot time past the pending bar's end, closes it
  (bars.LiveBarDetector). After a reconnect, the bars closed meanwhile come from history first, in order and
  without duplicates, before any newer live bar.
- Market state: a symbol is known closed after the broker refused an order as MARKET_CLOSED, or when the trading
  calendar shows a closed period between two of its ticks; its first tick after that is the open (`MarketStatus`).
- Conversion: a quote asset -> deposit asset rate from the quotes of the broker's conversion chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.connector.ctrader import parsing, periods
from services.connector.ctrader import schemas as proto
from services.connector.ctrader.bars import LiveBarDetector, closed_only, merge_history
from services.connector.ctrader.link import Link
from services.connector.ctrader.providers import Instruments
from services.connector.port import Bar, BrokerError, MarketStatus, Quote

log = logging.getLogger(__name__)
oa = proto.oa
DAY_MS = 86_400_000
CONVERT_CHUNK = 200  # trendbars converted between two chances for the loop to serve something else


def history_span_s(tf_seconds: int) -> int:
    """Widest from/to window we ask for in one trendbar request: below cTrader's limits per period (3.5 days up to
    M5, 245 days up to H1, 366 days above; Spotware's OpenAPI.Net TrendbarsMaximumTime)."""
    if tf_seconds <= 300:
        return 3 * 86_400
    if tf_seconds <= 3_600:
        return 35 * 86_400
    return 365 * 86_400


@dataclass
class BarSubscription:
    symbol: str
    timeframe: str
    period: int
    tf_seconds: int
    detector: LiveBarDetector
    filling: bool = False  # a gap fill is due or running: live bars wait in `buffer`
    buffer: list[Bar] = field(default_factory=list)
    generation: int = 0  # bumped per session; a gap fill from an older session delivers nothing


class MarketData:
    def __init__(self, link: Link, instruments: Instruments) -> None:
        self.link = link
        self.instruments = instruments
        self.quotes: dict[str, Quote] = {}
        self.quotes_version = 0  # counts the quotes stored: a reader on another thread knows when they changed
        self._quote_events: dict[str, asyncio.Event] = {}
        self._spot_subs: set[int] = set()
        self._last_tick: dict[str, float] = {}  # symbol -> broker time of its last spot
        self.closed_since: dict[str, float] = {}  # symbol -> broker time it was known closed
        self._next_close: dict[str, float] = {}  # symbol -> its calendar's next closed instant after its last tick
        self.server_ms: int | None = None
        self._session_time_known = False  # server time seen since the current session started
        self.subs: dict[tuple[str, str], BarSubscription] = {}
        self._subs_of: dict[str, list[BarSubscription]] = {}  # symbol -> its subscriptions (`subs` by symbol)
        self.last_bar: dict[tuple[str, str], int] = {}

    # ---- session
    def new_session(self) -> None:
        """Before a (re)connection: spot subscriptions are gone; a forming bar seen before may be stale, so the
        gap is filled from history instead (live bars wait meanwhile)."""
        self._spot_subs = set()
        self._session_time_known = False
        self._next_close = {}  # the calendars are loaded again
        for key, sub in self.subs.items():
            sub.detector = LiveBarDetector(sub.symbol, sub.tf_seconds, last_emitted=self.last_bar.get(key))
            sub.filling = True
            sub.generation += 1

    async def resubscribe(self, also: Iterable[str]) -> None:
        """Spots for every symbol we quote, hold or receive bars of; the live trendbars of each subscription."""
        symbols = {s for s, _ in self.subs} | set(self.quotes) | set(also)
        for name in sorted(symbols):
            await self.subscribe_spots(name)
        for sub in self.subs.values():
            await self._subscribe_trendbar(sub)

    def start_gap_fills(self) -> None:
        for sub in list(self.subs.values()):
            self.link.spawn(self._gap_fill(sub))

    # ---- clock
    @property
    def server_time(self) -> float | None:
        return parsing.ms_to_seconds(self.server_ms) if self.server_ms is not None else None

    def note_server_time(self, ms: int) -> None:
        if ms and (self.server_ms is None or ms > self.server_ms):
            self.server_ms = int(ms)
        if ms:
            self._session_time_known = True

    # ---- quotes and conversion
    async def subscribe_spots(self, symbol: str) -> None:
        sid = self.instruments.spec(symbol).symbol_id
        if sid in self._spot_subs:
            return
        self._quote_events.setdefault(symbol, asyncio.Event())
        self._spot_subs.add(sid)  # before the await: a concurrent caller must not subscribe twice
        try:
            await self.link.request(
                oa.ProtoOASubscribeSpotsReq(
                    ctidTraderAccountId=self.link.account_id, symbolId=[sid], subscribeToSpotTimestamp=True
                )
            )
        except BaseException:
            self._spot_subs.discard(sid)
            raise

    async def subscribe_quietly(self, symbol: str) -> None:
        with contextlib.suppress(BrokerError):
            await self.subscribe_spots(symbol)

    def is_subscribed(self, symbol: str) -> bool:
        spec = self.instruments.specs.get(symbol)
        return spec is not None and spec.symbol_id in self._spot_subs

    async def ensure_quote(self, symbol: str, timeout: float = 5.0) -> Quote:
        """Subscribe to the symbol's spots if needed and return its latest quote."""
        await self.subscribe_spots(symbol)
        ev = self._quote_events.setdefault(symbol, asyncio.Event())
        q = self.quotes.get(symbol)
        if q is None or q.bid <= 0 or q.ask <= 0:
            await asyncio.wait_for(ev.wait(), timeout)
            q = self.quotes[symbol]
        return q

    def rate_from_quotes(self, symbol: str, quotes: Mapping[str, Quote] | None = None) -> float | None:
        """The symbol's quote->deposit rate from the quotes at hand, or from `quotes` (a copy taken on another
        thread); None: a quote of its chain is missing."""
        quotes = self.quotes if quotes is None else quotes
        spec = self.instruments.spec(symbol)
        chain = self.instruments.known_chain(spec.quote_asset)
        if chain is None:
            return None
        steps = []
        for name in chain:
            q, s = quotes.get(name), self.instruments.specs[name]
            if q is None:
                return None
            steps.append((s.base_asset, s.quote_asset, q.bid))
        return parsing.conversion_rate(spec.quote_asset, self.instruments.deposit_asset, steps)

    async def quote_to_deposit(self, symbol: str) -> float:
        """Rate turning an amount in the symbol's quote currency into the deposit currency."""
        spec = self.instruments.spec(symbol)
        rate = self.rate_from_quotes(symbol)
        if rate is not None:
            return rate
        chain = await self.instruments.conversion_chain(spec.quote_asset)
        self.quotes_version += 1  # a chain learned: the rates from the quotes at hand may be known now
        for name in chain:
            await self.ensure_quote(name)
        rate = self.rate_from_quotes(symbol)
        if rate is None:
            raise BrokerError(f"no conversion from {spec.quote_asset} to {self.instruments.deposit_asset}")
        return rate

    # ---- history
    async def _probe_server_time(self, symbol_id: int, period: int) -> None:
        to_ms = parsing.seconds_to_ms(time.time()) + DAY_MS  # an upper bound only; bars are dated by the server
        span_ms = min(7 * DAY_MS, history_span_s(periods.period_seconds(period)) * 1000)
        res = await self.link.request(
            oa.ProtoOAGetTrendbarsReq(
                ctidTraderAccountId=self.link.account_id, symbolId=symbol_id, period=period,
                fromTimestamp=to_ms - span_ms, toTimestamp=to_ms, count=1,
            )
        )
        self.note_server_time(res.timestamp)

    async def fetch_closed(
        self, symbol: str, timeframe: str, count: int | None = None, since: int | None = None
    ) -> list[Bar]:
        """Closed bars, oldest first: the last `count`, or all after `since` (s), paging backwards by from/to."""
        spec = self.instruments.spec(symbol)
        period, tf_s = periods.period_of(timeframe), periods.seconds_of(timeframe)
        # a gap's window starts AT its last known bar: an answer holding it reached down to the gap's start (no
        # second request to prove it); that bar itself is not returned
        floor_ms = parsing.seconds_to_ms(since) if since is not None else 0
        blind = self.server_ms is None or not self._session_time_known  # after an outage the last time is stale
        if blind and since is not None:
            # a gap: asked from its start up to the broker's span limit (an upper bound, as the probe's), its answer
            # dating the server's clock too: no probe first; a gap longer than that starts over below
            to_ms = floor_ms + history_span_s(tf_s) * 1000 - 1
        else:
            if blind:
                await self._probe_server_time(spec.symbol_id, period)
            assert self.server_ms is not None
            to_ms = self.server_ms + tf_s * 1000
            blind = False
        pages: list[list[Bar]] = []
        have: list[Bar] = []
        empty = 0
        while True:
            need = count - len(have) if count else 0
            span_s = min(history_span_s(tf_s), ((need or 24) + 2) * tf_s + 3 * 86_400)
            if since is not None:  # a gap: down to `since` in one request where the broker's span limit allows
                span_s = min(history_span_s(tf_s), max(span_s, (to_ms - floor_ms) // 1000 + 1))
            from_ms = max(floor_ms, to_ms - span_s * 1000)
            req = oa.ProtoOAGetTrendbarsReq(
                ctidTraderAccountId=self.link.account_id, symbolId=spec.symbol_id, period=period,
                fromTimestamp=from_ms, toTimestamp=to_ms,
            )
            if need:
                req.count = need + 1  # + the forming bar
            res = await self.link.request(req)
            self.note_server_time(res.timestamp)
            if blind:
                blind = False
                if res.timestamp > to_ms:  # the gap is longer than one window: from the server's time, as usual
                    return await self.fetch_closed(symbol, timeframe, count, since)
            page = []
            for i, tb in enumerate(res.trendbar):
                page.append(parsing.trendbar_to_bar(tb, symbol, spec.digits, timeframe=timeframe))
                if i % CONVERT_CHUNK == CONVERT_CHUNK - 1:
                    await asyncio.sleep(0)  # a long page: let an order's answer through meanwhile
            pages.append(closed_only(page, tf_s, parsing.ms_to_seconds(res.timestamp)))
            have = merge_history(pages)
            if since is not None:
                have = [b for b in have if b.time > since]
            if count and len(have) >= count:
                return have[-count:]
            if since is not None:
                # an answer may hold only the newest bars of its window: stop once we reached `since`
                # itself, or when a window reaching down to it came back empty
                if page and min(b.time for b in page) <= since:
                    return have
                if not page and from_ms <= floor_ms:
                    return have
            if page:
                empty = 0
                to_ms = parsing.seconds_to_ms(min(b.time for b in page)) - 1
            else:
                empty += 1
                if empty >= 4 or from_ms <= 0:
                    return have  # nothing older: the data starts here
                to_ms = from_ms - 1

    # ---- live bars
    async def _subscribe_trendbar(self, sub: BarSubscription) -> None:
        await self.link.request(
            oa.ProtoOASubscribeLiveTrendbarReq(
                ctidTraderAccountId=self.link.account_id,
                symbolId=self.instruments.spec(sub.symbol).symbol_id,
                period=sub.period,
            )
        )

    async def subscribe_bars(self, symbols: Iterable[str], timeframe: str,
                             since: Mapping[str, int] | None = None) -> None:
        """Deliver every closed bar of `symbols` on `timeframe` as a Bar event.

        `since[symbol]` = open time (s) of the last bar the caller already has: the bars closed after it are
        delivered first, so nothing falls between history and live.
        """
        period, tf_s = periods.period_of(timeframe), periods.seconds_of(timeframe)
        for name in symbols:
            self.instruments.spec(name)
            key = (name, timeframe)
            if since and name in since:
                self.last_bar[key] = max(self.last_bar.get(key, 0), since[name])
            sub = BarSubscription(name, timeframe, period, tf_s,
                                  LiveBarDetector(name, tf_s, last_emitted=self.last_bar.get(key)))
            sub.filling = key in self.last_bar  # set before any live bar can arrive
            self.subs[key] = sub
            self._index_subs()
            await self.subscribe_spots(name)
            await self._subscribe_trendbar(sub)
            if key in self.last_bar:
                self.link.spawn(self._gap_fill(sub))

    def _index_subs(self) -> None:
        subs_of: dict[str, list[BarSubscription]] = {}
        for (symbol, _tf), sub in self.subs.items():
            subs_of.setdefault(symbol, []).append(sub)
        self._subs_of = subs_of

    async def unsubscribe_bars(self, symbols: Iterable[str], timeframe: str) -> None:
        for name in symbols:
            sub = self.subs.pop((name, timeframe), None)
            self._index_subs()
            if sub is not None and self.link.is_open:
                with contextlib.suppress(BrokerError):
                    await self.link.request(
                        oa.ProtoOAUnsubscribeLiveTrendbarReq(
                            ctidTraderAccountId=self.link.account_id,
                            symbolId=self.instruments.spec(name).symbol_id, period=sub.period,
                        )
                    )

    async def _gap_fill(self, sub: BarSubscription) -> None:
        """Deliver the closed bars after the last delivered one from history, then the buffered live bars."""
        generation = sub.generation
        key = (sub.symbol, sub.timeframe)
        sub.filling = True
        last = self.last_bar.get(key)
        bars: list[Bar] = []
        while last is not None:
            try:
                bars = await self.fetch_closed(sub.symbol, sub.timeframe, since=last)
                break
            except BrokerError as exc:
                if generation != sub.generation or not self.link.is_open:
                    return  # keep buffering: the next session's gap fill covers these bars
                log.warning("gap fill for %s %s failed (%s); trying again", sub.symbol, sub.timeframe, exc)
                await asyncio.sleep(1.0)
        if generation != sub.generation or self.subs.get(key) is not sub:
            return  # a newer session (or subscription) owns the gap now
        sub.filling = False
        buffered, sub.buffer = sub.buffer, []
        for bar in bars + sorted(buffered, key=lambda b: b.time):
            self._deliver(bar)

    def _deliver(self, bar: Bar) -> None:
        key = (bar.symbol, bar.timeframe)
        sub = self.subs.get(key)
        if sub is not None and sub.filling:
            sub.buffer.append(bar)
            return
        last = self.last_bar.get(key)
        if last is not None and bar.time <= last:
            return
        self.last_bar[key] = bar.time
        self.link.emit(bar)

    # ---- market state
    def mark_closed(self, symbol: str, reason: str) -> None:
        """The broker refused an order for `symbol` because its market is closed."""
        if symbol in self.closed_since:
            return
        t = self.server_time or 0.0
        self.closed_since[symbol] = t
        self.link.emit(MarketStatus(symbol, False, t, reason))

    def market_closed(self, symbol: str) -> float | None:
        """The broker time since which `symbol` is known closed; None when it is not known closed."""
        return self.closed_since.get(symbol)

    def _on_tick(self, symbol: str, t: float) -> None:
        """A price at broker time `t`. The first spot after a subscription repeats the last price (even while the
        market is closed): only a tick newer than anything seen counts as the market trading."""
        prev = self._last_tick.get(symbol)
        if prev is not None and t <= prev:
            return
        self._last_tick[symbol] = t
        calendar = self.instruments.calendars.get(symbol)
        known = symbol in self.closed_since
        if not known and calendar is not None and prev is not None and self._closes_by(symbol, calendar, prev) < t:
            # the market closed and reopened between two ticks
            self.link.emit(MarketStatus(symbol, False, prev, "closed by its trading calendar"))
            self.closed_since[symbol] = prev
        since = self.closed_since.get(symbol)
        if since is not None and t > since:
            del self.closed_since[symbol]
            self.link.emit(MarketStatus(symbol, True, t, "first tick after a closed period"))

    def _closes_by(self, symbol: str, calendar: Any, prev: float) -> float:
        """The calendar's first closed instant at or after `prev` (inf: none found): `calendar.closed_between(prev, t)`
        is `t` past it. Kept per symbol while it lies ahead of the ticks: the market was open from where it was
        computed up to `prev`, so it is still the first closed instant after `prev` (one look-up per close, not per
        tick)."""
        closes = self._next_close.get(symbol)
        if closes is None or closes <= prev:
            found = calendar.next_close(prev)
            closes = self._next_close[symbol] = math.inf if found is None else found
        return closes

    # ---- events
    def on_spot(self, ev: Any) -> None:
        name = self.instruments.name_of(ev.symbolId)
        if name is None:
            return
        digits = self.instruments.specs[name].digits
        old = self.quotes.get(name)
        bid, ask = parsing.merge_quote(old.bid if old else None, old.ask if old else None, ev, digits)
        stamped = ev.HasField("timestamp")
        server_s = parsing.ms_to_seconds(ev.timestamp) if stamped else None
        if stamped:
            self.note_server_time(ev.timestamp)
        if bid is not None and ask is not None:
            self.quotes[name] = Quote(name, bid, ask, server_s or 0.0)
            self.quotes_version += 1
            waiters = self._quote_events.get(name)
            if waiters is None:
                waiters = self._quote_events[name] = asyncio.Event()
            waiters.set()
        has_bid = ev.HasField("bid")
        if server_s is not None and (has_bid or ev.HasField("ask")):
            self._on_tick(name, server_s)
        fallback = ev.bid if has_bid else (parsing.price_to_wire(bid) if bid is not None else None)
        for sub in self._subs_of.get(name, ()):
            period, detector = sub.period, sub.detector
            closed: list[Bar] = []
            seen = False
            for tb in ev.trendbar:
                if tb.period == period:
                    seen = True
                    closed += detector.on_snapshot(
                        parsing.trendbar_to_bar(tb, name, digits, fallback, sub.timeframe), server_s)
            if not seen and server_s is not None:
                closed += detector.on_server_time(server_s)
            for bar in closed:
                self._deliver(bar)
