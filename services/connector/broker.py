"""The high-level cTrader client the connector service drives.

One `CTraderBroker` owns one Open API connection (transport.py) and the cached broker state: symbols, quotes,
positions, balance, bar subscriptions and the record of orders it placed. Unsolicited things arrive on
`broker.events` (an asyncio.Queue) as `Bar` (a closed bar), `OrderFilled`, `OrderRejected`, `PositionClosed`
and `ConnectionStatus` values, in the order the broker produced them.

A lost connection is re-established in the background with exponential back-off: re-auth, reconcile (positions
closed while down are reported from the deal list), re-subscribe, then the closed bars missed while down are
delivered in order and without duplicates before any newer live bar.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.connector import orders, parsing, proto, timeframes, units
from services.connector.bars import Bar, LiveBarDetector, closed_only, merge_history
from services.connector.models import (
    AccountInfo,
    ConnectionStatus,
    Deal,
    OrderFilled,
    OrderRejected,
    OrderResult,
    Position,
    Quote,
)
from services.connector.transport import (
    ConnectionClosed,
    ErrorResponse,
    RequestTimeout,
    Transport,
    TransportConfig,
    TransportError,
)
from services.connector.units import SymbolSpec

log = logging.getLogger(__name__)
oa = proto.oa
PT = proto.payload_type_of

ORDER_ACCEPTED, ORDER_FILLED, ORDER_REPLACED, ORDER_REJECTED, ORDER_PARTIAL_FILL = 2, 3, 4, 7, 11
POSITION_CLOSED = 2
DAY_MS = 86_400_000
# answers to the auth requests that retrying cannot fix
AUTH_ERRORS = frozenset(
    {
        "CH_CLIENT_AUTH_FAILURE",
        "CH_CLIENT_NOT_AUTHENTICATED",
        "CH_ACCESS_TOKEN_INVALID",
        "CH_OA_CLIENT_NOT_FOUND",
        "CH_CTID_TRADER_ACCOUNT_NOT_FOUND",
        "OA_AUTH_TOKEN_EXPIRED",
        "ACCOUNT_NOT_AUTHORIZED",
        "NO_ACCOUNT",
    }
)


class BrokerError(Exception):
    pass


class AuthenticationError(BrokerError):
    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}")
        self.code = code


class BrokerConnectionError(BrokerError):
    pass


class BrokerTimeout(BrokerError):
    pass


class BrokerRequestError(BrokerError):
    """The broker answered with an error (ProtoOAErrorRes / ProtoErrorRes)."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description


class SymbolNotFoundError(BrokerError):
    pass


@dataclass(frozen=True)
class BrokerConfig:
    host: str = "demo.ctraderapi.com"
    port: int = 5035
    tls: bool = True
    verify: bool = True  # False only for a local simulator
    ca_file: str | None = None
    client_id: str = ""
    client_secret: str = ""
    access_token: str = ""
    account_id: int | None = None  # ctidTraderAccountId; None = the first account of the token
    request_timeout: float = 10.0
    order_timeout: float = 10.0
    order_attempts: int = 3
    heartbeat_interval: float = 10.0
    dead_after: float = 30.0
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    ready_timeout: float = 30.0  # how long an order waits for a reconnect before giving up
    rate_limit: int = 50
    history_rate_limit: int = 5

    def transport(self) -> TransportConfig:
        return TransportConfig(
            self.host,
            self.port,
            tls=self.tls,
            verify=self.verify,
            ca_file=self.ca_file,
            request_timeout=self.request_timeout,
            heartbeat_interval=self.heartbeat_interval,
            dead_after=self.dead_after,
            rate_limit=self.rate_limit,
            history_rate_limit=self.history_rate_limit,
        )


def history_span_s(tf_seconds: int) -> int:
    """Widest from/to window we ask for in one trendbar request (our choice, below cTrader's limits)."""
    if tf_seconds <= 300:
        return 7 * 86_400
    if tf_seconds <= 3_600:
        return 35 * 86_400
    return 365 * 86_400


@dataclass
class _BarSub:
    symbol: str
    timeframe: str
    period: int
    tf_seconds: int
    detector: LiveBarDetector
    filling: bool = False  # a gap fill is due or running: live bars wait in `buffer`
    buffer: list[Bar] = field(default_factory=list)
    generation: int = 0  # bumped per session; a gap fill from an older session delivers nothing


class CTraderBroker:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.account_id: int | None = config.account_id
        self._transport: Transport | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        # reference data
        self._specs: dict[str, SymbolSpec] = {}
        self._by_id: dict[int, str] = {}
        self._assets: dict[int, str] = {}
        self._deposit_asset = ""
        self._money_digits = 2
        self._leverage = 0.0
        self._balance = 0.0
        # market state
        self._quotes: dict[str, Quote] = {}
        self._quote_events: dict[str, asyncio.Event] = {}
        self._spot_subs: set[int] = set()
        self._server_ms: int | None = None
        self._session_time_known = False  # server time seen since the current session started
        self._bar_subs: dict[str, _BarSub] = {}
        self._last_bar: dict[str, int] = {}
        # trading state
        self._positions: dict[int, Position] = {}
        # execution events counted, and the count at each position's last event: a reconcile answered after an
        # event keeps what the event said (the answer was made before it)
        self._executions = 0
        self._touched: dict[int, int] = {}
        self._reconciling: list[int] = []  # the count when each reconcile still waiting for its answer was asked
        self._own: dict[str, OrderResult] = {}
        self._inflight: dict[str, asyncio.Future[OrderResult]] = {}
        self._waiters: dict[str, asyncio.Future[OrderResult]] = {}
        self._msgid_waiter: dict[str, str] = {}
        self._closing_by_us: set[int] = set()
        self._seen_deals: set[int] = set()
        self.on_order_sent: Callable[[str], None] | None = None  # called on this loop's thread: keep it short

    # ---- lifecycle
    @property
    def is_connected(self) -> bool:
        return self._ready.is_set() and self._transport is not None and self._transport.is_open

    async def connect(self, max_attempts: int = 1) -> None:
        """Open the session (app auth, account auth, symbols, trader, reconcile) and keep it up.

        Raises AuthenticationError at once for bad credentials, BrokerConnectionError after `max_attempts`
        failed connections (0 = retry forever).
        """
        self._closing = False
        delay = self.config.reconnect_initial
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._open_session(announce=False)
                break
            except AuthenticationError:
                raise
            except (BrokerError, TransportError, OSError, TimeoutError) as exc:
                if max_attempts and attempt >= max_attempts:
                    raise BrokerConnectionError(
                        f"cannot connect to {self.config.host}:{self.config.port}: {exc}"
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.reconnect_max)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="broker-supervisor")

    async def close(self) -> None:
        self._closing = True
        self._ready.clear()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for task in list(self._background):
            task.cancel()
        if self._transport is not None:
            await self._transport.close()
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(BrokerConnectionError("closed"))

    async def _supervise(self) -> None:
        cfg = self.config
        while not self._closing:
            assert self._transport is not None
            reason = await self._transport.wait_closed()
            if self._closing:
                return
            self._ready.clear()
            self._session_time_known = False
            for fut in self._waiters.values():  # outcome unknown: the callers reconcile before any resend
                if not fut.done():
                    fut.set_exception(BrokerConnectionError(f"connection lost: {reason}"))
            log.warning("broker connection lost: %s", reason)
            self._emit(ConnectionStatus(False, str(reason or "closed")))
            delay = cfg.reconnect_initial
            while not self._closing:
                await asyncio.sleep(delay)
                try:
                    await self._open_session()
                    break
                except AuthenticationError as exc:
                    log.error("re-authentication failed: %s", exc)
                    self._emit(ConnectionStatus(False, str(exc)))
                    delay = cfg.reconnect_max
                except (BrokerError, TransportError, OSError, TimeoutError) as exc:
                    log.info("reconnect failed (%s); next try in %.1f s", exc, delay)
                    delay = min(delay * 2, cfg.reconnect_max)
                except Exception:  # never let the supervisor die: a bug here would end all reconnects
                    log.exception("unexpected error while reconnecting")
                    delay = cfg.reconnect_max

    async def _open_session(self, announce: bool = True) -> None:
        cfg = self.config
        # a snapshot from before the outage may be stale: forget it, history fills the gap instead
        for sub in self._bar_subs.values():
            sub.detector = LiveBarDetector(sub.symbol, sub.tf_seconds, last_emitted=self._last_bar.get(sub.symbol))
            sub.filling = True  # live bars wait in the buffer until the gap fill has run
            sub.generation += 1
        tr = Transport(cfg.transport(), on_event=self._on_event)
        await tr.connect()
        try:
            try:
                await tr.request(oa.ProtoOAApplicationAuthReq(clientId=cfg.client_id, clientSecret=cfg.client_secret))
                if self.account_id is None:
                    res = await tr.request(oa.ProtoOAGetAccountListByAccessTokenReq(accessToken=cfg.access_token))
                    if not res.ctidTraderAccount:
                        raise AuthenticationError("NO_ACCOUNT", "the access token has no trading account")
                    self.account_id = int(res.ctidTraderAccount[0].ctidTraderAccountId)
                await tr.request(
                    oa.ProtoOAAccountAuthReq(ctidTraderAccountId=self.account_id, accessToken=cfg.access_token)
                )
            except ErrorResponse as exc:
                if exc.code in AUTH_ERRORS:
                    raise AuthenticationError(exc.code, exc.description) from exc
                raise BrokerRequestError(exc.code, exc.description) from exc  # e.g. maintenance: retried
            self._transport = tr
            self._spot_subs = set()
            await self._load_reference_data()
            await self._refresh_trader()
            await self._reconcile(report_missing=True)
            symbols = {p.symbol for p in self._positions.values()} | set(self._bar_subs) | set(self._quotes)
            for name in sorted(symbols):
                await self._subscribe_spots(name)
            for sub in self._bar_subs.values():
                await self._request(
                    oa.ProtoOASubscribeLiveTrendbarReq(
                        ctidTraderAccountId=self.account_id,
                        symbolId=self._spec(sub.symbol).symbol_id,
                        period=sub.period,
                    )
                )
        except BaseException:
            await tr.close()
            raise
        self._ready.set()
        if announce:
            self._emit(ConnectionStatus(True))
        for sub in list(self._bar_subs.values()):
            self._spawn(self._gap_fill(sub))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _request(self, msg: Any, timeout: float | None = None) -> Any:
        tr = self._transport
        if tr is None or not tr.is_open:
            raise BrokerConnectionError("not connected")
        try:
            return await tr.request(msg, timeout)
        except ConnectionClosed as exc:
            raise BrokerConnectionError(str(exc)) from exc
        except RequestTimeout as exc:
            raise BrokerTimeout(str(exc)) from exc
        except ErrorResponse as exc:
            raise BrokerRequestError(exc.code, exc.description) from exc

    async def _wait_ready(self) -> None:
        try:
            await asyncio.wait_for(self._ready.wait(), self.config.ready_timeout)
        except TimeoutError:
            raise BrokerConnectionError("broker not connected") from None

    def _emit(self, event: Any) -> None:
        self.events.put_nowait(event)

    # ---- reference data
    async def _load_reference_data(self) -> None:
        acct = self.account_id
        try:
            res = await self._request(oa.ProtoOAAssetListReq(ctidTraderAccountId=acct))
            self._assets = {a.assetId: a.name for a in res.asset}
        except BrokerRequestError:
            self._assets = {}
        light = (await self._request(oa.ProtoOASymbolsListReq(ctidTraderAccountId=acct))).symbol
        by_id = {s.symbolId: s for s in light}
        ids = list(by_id)
        specs: dict[str, SymbolSpec] = {}
        for i in range(0, len(ids), 100):
            res = await self._request(oa.ProtoOASymbolByIdReq(ctidTraderAccountId=acct, symbolId=ids[i : i + 100]))
            for full in res.symbol:
                lt = by_id[full.symbolId]
                spec = parsing.symbol_spec(lt, full)
                spec = dataclasses.replace(
                    spec,
                    base_asset=self._assets.get(lt.baseAssetId, spec.base_asset),
                    quote_asset=self._assets.get(lt.quoteAssetId, spec.quote_asset),
                )
                specs[spec.name] = spec
        self._specs = specs
        self._by_id = {s.symbol_id: n for n, s in specs.items()}

    async def _refresh_trader(self) -> None:
        res = await self._request(oa.ProtoOATraderReq(ctidTraderAccountId=self.account_id))
        t = res.trader
        self._money_digits = t.moneyDigits if t.HasField("moneyDigits") else 2
        self._balance = units.money_from_wire(t.balance, self._money_digits)
        self._leverage = units.leverage_from_wire(t.leverageInCents) if t.HasField("leverageInCents") else 0.0
        self._deposit_asset = self._assets.get(t.depositAssetId, str(t.depositAssetId))

    def _spec(self, symbol: str) -> SymbolSpec:
        try:
            return self._specs[symbol]
        except KeyError:
            raise SymbolNotFoundError(f"unknown symbol {symbol!r}") from None

    @property
    def symbols(self) -> dict[str, SymbolSpec]:
        return dict(self._specs)

    def symbol_info(self, symbol: str) -> SymbolSpec:
        return self._spec(symbol)

    def quote(self, symbol: str) -> Quote | None:
        return self._quotes.get(symbol)

    @property
    def server_time(self) -> float | None:
        """The broker's time (s) as last seen in a spot event or trendbar answer."""
        return units.ms_to_seconds(self._server_ms) if self._server_ms is not None else None

    # ---- quotes and conversion
    async def _subscribe_spots(self, symbol: str) -> None:
        sid = self._spec(symbol).symbol_id
        if sid in self._spot_subs:
            return
        self._quote_events.setdefault(symbol, asyncio.Event())
        self._spot_subs.add(sid)  # before the await: a concurrent caller must not subscribe twice
        try:
            await self._request(
                oa.ProtoOASubscribeSpotsReq(
                    ctidTraderAccountId=self.account_id, symbolId=[sid], subscribeToSpotTimestamp=True
                )
            )
        except BaseException:
            self._spot_subs.discard(sid)
            raise

    async def _subscribe_quietly(self, symbol: str) -> None:
        with contextlib.suppress(BrokerError, TransportError):
            await self._subscribe_spots(symbol)

    async def ensure_quote(self, symbol: str, timeout: float = 5.0) -> Quote:
        """Subscribe to the symbol's spots if needed and return its latest quote."""
        await self._subscribe_spots(symbol)
        ev = self._quote_events.setdefault(symbol, asyncio.Event())
        q = self._quotes.get(symbol)
        if q is None or q.bid <= 0 or q.ask <= 0:
            await asyncio.wait_for(ev.wait(), timeout)
            q = self._quotes[symbol]
        return q

    def _rate_from_quotes(self, spec: SymbolSpec) -> float | None:
        dep = self._deposit_asset
        if spec.quote_asset == dep:
            return 1.0
        q = self._quotes.get(spec.name)
        if spec.base_asset == dep and q is not None:
            return units.quote_to_deposit_rate(spec.base_asset, spec.quote_asset, dep, q.bid)
        for other in self._specs.values():
            oq = self._quotes.get(other.name)
            if oq is None:
                continue
            if other.base_asset == spec.quote_asset and other.quote_asset == dep:
                return oq.bid
            if other.base_asset == dep and other.quote_asset == spec.quote_asset:
                return 1.0 / oq.bid
        return None

    def quoted_symbols(self) -> list[str]:
        """The symbols with a quote (spots subscribed): a few, where the broker may list thousands of symbols."""
        return list(self._quotes)

    def rate_from_quotes(self, symbol: str) -> float | None:
        """The symbol's quote->deposit rate from the quotes at hand (None: a conversion quote is missing)."""
        return self._rate_from_quotes(self._spec(symbol))

    async def quote_to_deposit(self, symbol: str) -> float:
        """Rate turning the symbol's quote currency into the deposit currency."""
        spec = self._spec(symbol)
        rate = self._rate_from_quotes(spec)
        if rate is not None:
            return rate
        await self.ensure_quote(symbol)
        rate = self._rate_from_quotes(spec)
        if rate is not None:
            return rate
        for other in self._specs.values():
            pair = {other.base_asset, other.quote_asset}
            if pair == {spec.quote_asset, self._deposit_asset}:
                await self.ensure_quote(other.name)
                rate = self._rate_from_quotes(spec)
                if rate is not None:
                    return rate
        raise BrokerError(f"no conversion from {spec.quote_asset} to {self._deposit_asset}")

    async def money_to_distance(self, symbol: str, amount: float, lots: float) -> float:
        """Price distance over which `lots` of `symbol` gains or loses `amount` of the deposit currency."""
        spec = self._spec(symbol)
        rate = await self.quote_to_deposit(symbol)
        return units.money_to_price_distance(amount, units.lots_to_volume(lots, spec.lot_size), rate)

    # ---- history
    async def _probe_server_time(self, spec: SymbolSpec, period: int) -> int:
        to_ms = units.seconds_to_ms(time.time()) + DAY_MS  # an upper bound only; bars are dated by the server
        res = await self._request(
            oa.ProtoOAGetTrendbarsReq(
                ctidTraderAccountId=self.account_id,
                symbolId=spec.symbol_id,
                period=period,
                fromTimestamp=to_ms - 7 * DAY_MS,
                toTimestamp=to_ms,
                count=1,
            )
        )
        self._note_server_time(res.timestamp)
        return int(res.timestamp)

    def _note_server_time(self, ms: int) -> None:
        if ms and (self._server_ms is None or ms > self._server_ms):
            self._server_ms = int(ms)
        if ms:
            self._session_time_known = True

    async def _fetch_closed(
        self, symbol: str, timeframe: str, count: int | None = None, since: int | None = None
    ) -> list[Bar]:
        """Closed bars, oldest first: the last `count`, or all after `since` (s), paging backwards by from/to."""
        spec = self._spec(symbol)
        period, tf_s = timeframes.period_of(timeframe), timeframes.seconds_of(timeframe)
        if self._server_ms is None or not self._session_time_known:
            await self._probe_server_time(spec, period)  # after an outage the last known time is stale
        assert self._server_ms is not None
        server_ms = self._server_ms
        to_ms = server_ms + tf_s * 1000
        floor_ms = units.seconds_to_ms(since) + 1 if since is not None else 0
        pages: list[list[Bar]] = []
        have: list[Bar] = []
        empty = 0
        while True:
            need = count - len(have) if count else 0
            span_s = min(history_span_s(tf_s), ((need or 24) + 2) * tf_s + 3 * 86_400)
            from_ms = max(floor_ms, to_ms - span_s * 1000)
            req = oa.ProtoOAGetTrendbarsReq(
                ctidTraderAccountId=self.account_id,
                symbolId=spec.symbol_id,
                period=period,
                fromTimestamp=from_ms,
                toTimestamp=to_ms,
            )
            if need:
                req.count = need + 1  # + the forming bar
            res = await self._request(req)
            self._note_server_time(res.timestamp)
            page = [parsing.trendbar_to_bar(tb, symbol, spec.digits) for tb in res.trendbar]
            pages.append(closed_only(page, tf_s, units.ms_to_seconds(res.timestamp)))
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
                to_ms = units.seconds_to_ms(min(b.time for b in page)) - 1
            else:
                empty += 1
                if empty >= 4 or from_ms <= 0:
                    return have  # nothing older: the data starts here
                to_ms = from_ms - 1

    async def get_history(self, symbol: str, timeframe: str, count: int) -> list[Bar]:
        """The last `count` CLOSED bars, oldest first (fewer only if the broker has no older data)."""
        await self._wait_ready()
        return await self._fetch_closed(symbol, timeframe, count=count)

    # ---- live bars
    async def subscribe_bars(
        self, symbols: Iterable[str], timeframe: str, since: Mapping[str, int] | None = None
    ) -> None:
        """Deliver every closed bar of `symbols` to `events` as a Bar, from live trendbars.

        `since[symbol]` = open time (s) of the last bar the caller already has (e.g. the last history bar): the
        bars closed after it are delivered first, so nothing falls between history and live.
        """
        await self._wait_ready()
        period, tf_s = timeframes.period_of(timeframe), timeframes.seconds_of(timeframe)
        for name in symbols:
            spec = self._spec(name)
            if since and name in since:
                self._last_bar[name] = max(self._last_bar.get(name, 0), since[name])
            sub = _BarSub(
                name, timeframe, period, tf_s, LiveBarDetector(name, tf_s, last_emitted=self._last_bar.get(name))
            )
            sub.filling = name in self._last_bar  # set before any live bar can arrive
            self._bar_subs[name] = sub
            await self._subscribe_spots(name)
            await self._request(
                oa.ProtoOASubscribeLiveTrendbarReq(
                    ctidTraderAccountId=self.account_id, symbolId=spec.symbol_id, period=period
                )
            )
            if name in self._last_bar:
                self._spawn(self._gap_fill(sub))

    async def unsubscribe_bars(self, symbols: Iterable[str]) -> None:
        for name in symbols:
            sub = self._bar_subs.pop(name, None)
            if sub is not None and self.is_connected:
                with contextlib.suppress(BrokerError, TransportError):
                    await self._request(
                        oa.ProtoOAUnsubscribeLiveTrendbarReq(
                            ctidTraderAccountId=self.account_id, symbolId=self._spec(name).symbol_id, period=sub.period
                        )
                    )

    async def _gap_fill(self, sub: _BarSub) -> None:
        """Deliver the closed bars after the last delivered one from history, then the buffered live bars."""
        generation = sub.generation
        sub.filling = True
        last = self._last_bar.get(sub.symbol)
        bars: list[Bar] = []
        while last is not None:
            try:
                bars = await self._fetch_closed(sub.symbol, sub.timeframe, since=last)
                break
            except (BrokerError, TransportError) as exc:
                if generation != sub.generation or not self.is_connected:
                    return  # keep buffering: the next session's gap fill covers these bars
                log.warning("gap fill for %s failed (%s); trying again", sub.symbol, exc)
                await asyncio.sleep(1.0)
        if generation != sub.generation or self._bar_subs.get(sub.symbol) is not sub:
            return  # a newer session (or subscription) owns the gap now
        sub.filling = False
        buffered, sub.buffer = sub.buffer, []
        for bar in bars + sorted(buffered, key=lambda b: b.time):
            self._deliver_bar(bar)

    def _deliver_bar(self, bar: Bar) -> None:
        sub = self._bar_subs.get(bar.symbol)
        if sub is not None and sub.filling:
            sub.buffer.append(bar)
            return
        last = self._last_bar.get(bar.symbol)
        if last is not None and bar.time <= last:
            return
        self._last_bar[bar.symbol] = bar.time
        self._emit(bar)

    # ---- events from the transport
    def _on_event(self, ptype: int, msg: Any, cid: str) -> None:
        if msg is None:
            return
        name = msg.DESCRIPTOR.name
        if name == "ProtoOASpotEvent":
            self._on_spot(msg)
        elif name == "ProtoOAExecutionEvent":
            self._on_execution(msg, cid)
        elif name in ("ProtoOAOrderErrorEvent", "ProtoOAErrorRes", "ProtoErrorRes"):
            self._on_error(msg, cid)
        elif name == "ProtoOATraderUpdatedEvent":
            self._balance = units.money_from_wire(msg.trader.balance, self._money_digits)
        elif name in (
            "ProtoOAAccountsTokenInvalidatedEvent",
            "ProtoOAClientDisconnectEvent",
            "ProtoOAAccountDisconnectEvent",
        ):
            log.warning("broker ended the session: %s", name)
            if self._transport is not None:
                self._spawn(self._transport.abort(ConnectionClosed(name)))

    def _on_spot(self, ev: Any) -> None:
        name = self._by_id.get(ev.symbolId)
        if name is None:
            return
        spec = self._specs[name]
        old = self._quotes.get(name)
        bid, ask = parsing.merge_quote(old.bid if old else None, old.ask if old else None, ev, spec.digits)
        if ev.HasField("timestamp"):
            self._note_server_time(ev.timestamp)
        if bid is not None and ask is not None:
            self._quotes[name] = Quote(name, bid, ask, ev.timestamp if ev.HasField("timestamp") else 0)
            self._quote_events.setdefault(name, asyncio.Event()).set()
        sub = self._bar_subs.get(name)
        if sub is None:
            return
        server_s = units.ms_to_seconds(ev.timestamp) if ev.HasField("timestamp") else None
        closed: list[Bar] = []
        bars = [tb for tb in ev.trendbar if tb.period == sub.period]
        for tb in bars:
            fallback = ev.bid if ev.HasField("bid") else (units.price_to_wire(bid) if bid is not None else None)
            closed += sub.detector.on_snapshot(parsing.trendbar_to_bar(tb, name, spec.digits, fallback), server_s)
        if not bars and server_s is not None:
            closed += sub.detector.on_server_time(server_s)
        for bar in closed:
            self._deliver_bar(bar)

    def _resolve(self, key: str, result: OrderResult) -> None:
        fut = self._waiters.get(key)
        if fut is not None and not fut.done():
            fut.set_result(result)

    def _on_error(self, msg: Any, cid: str) -> None:
        key = self._msgid_waiter.get(cid)
        code = getattr(msg, "errorCode", "UNKNOWN")
        desc = getattr(msg, "description", "")
        if key is not None:
            self._resolve(key, OrderResult(False, key.split(":", 1)[1], error=f"{code}: {desc}" if desc else code))
        else:
            log.warning("broker error without a waiting request: %s %s", code, desc)

    def _on_execution(self, ev: Any, cid: str) -> None:
        etype = ev.executionType
        pos = ev.position if ev.HasField("position") else None
        order = ev.order if ev.HasField("order") else None
        if pos is not None:
            name = self._by_id.get(pos.tradeData.symbolId)
            if name is not None:
                self._executions += 1
                self._touched[pos.positionId] = self._executions
                if pos.positionStatus == POSITION_CLOSED:
                    self._positions.pop(pos.positionId, None)
                elif etype != ORDER_ACCEPTED or pos.positionId in self._positions:
                    self._positions[pos.positionId] = parsing.position(pos, self._specs[name])
        client_oid = order.clientOrderId if order is not None and order.HasField("clientOrderId") else ""
        if etype == ORDER_REJECTED:
            code = ev.errorCode if ev.HasField("errorCode") else "REJECTED"
            symbol = self._by_id.get(order.tradeData.symbolId, "") if order is not None else ""
            result = OrderResult(False, client_oid, error=code)
            self._resolve(f"order:{client_oid}", result)
            key = self._msgid_waiter.get(cid)
            if key:
                self._resolve(key, result)
            self._emit(OrderRejected(client_oid, symbol, code))
            return
        if etype == ORDER_REPLACED and pos is not None:
            p = self._positions.get(pos.positionId)
            self._resolve(
                f"amend:{pos.positionId}",
                OrderResult(True, "", ticket=pos.positionId, sl=p.sl if p else None, tp=p.tp if p else None),
            )
            return
        if etype not in (ORDER_FILLED, ORDER_PARTIAL_FILL) or not ev.HasField("deal"):
            return
        name = self._by_id.get(ev.deal.symbolId)
        if name is None:
            return
        spec = self._specs[name]
        deal = parsing.deal(ev.deal, spec)
        if deal.balance is not None:
            self._balance = deal.balance
        first_time = deal.deal_id not in self._seen_deals
        self._seen_deals.add(deal.deal_id)
        if deal.closing:
            full = pos is None or pos.positionStatus == POSITION_CLOSED
            result = OrderResult(True, client_oid, ticket=deal.position_id, price=deal.price, volume=deal.volume)
            self._resolve(f"close:{deal.position_id}", result)
            if first_time:
                self._report_close(deal, ev, pos, full)
            return
        p = self._positions.get(deal.position_id)
        result = OrderResult(
            True,
            client_oid,
            ticket=deal.position_id,
            price=deal.price,
            volume=deal.volume,
            sl=p.sl if p else None,
            tp=p.tp if p else None,
        )
        if client_oid:
            self._own.setdefault(client_oid, result)
            self._resolve(f"order:{client_oid}", result)
        if spec.symbol_id not in self._spot_subs:
            self._spawn(self._subscribe_quietly(name))  # quotes for the position's PnL
        if first_time:
            self._emit(
                OrderFilled(
                    client_oid, deal.position_id, name, deal.direction, deal.volume, deal.price, deal.time,
                    deal.deal_id, pos.tradeData.comment if pos is not None else "",
                )
            )

    def _report_close(self, deal: Deal, ev: Any, pos: Any, full: bool) -> None:
        order = ev.order if ev.HasField("order") else None
        server_stop = bool(ev.isServerEvent) or (order is not None and order.orderType == parsing.STOP_LOSS_TAKE_PROFIT)
        external = deal.position_id not in self._closing_by_us
        label, comment = (pos.tradeData.label, pos.tradeData.comment) if pos is not None else ("", "")
        self._emit(parsing.position_closed(
            deal, -deal.direction, external and not server_stop, server_stop, full, label, comment
        ))
        if full:
            self._closing_by_us.discard(deal.position_id)

    # ---- account and positions
    async def _reconcile(self, report_missing: bool = False) -> None:
        asked_at = self._executions
        self._reconciling.append(asked_at)
        try:
            res = await self._request(oa.ProtoOAReconcileReq(ctidTraderAccountId=self.account_id))
        finally:
            self._reconciling.remove(asked_at)
        fresh: dict[int, Position] = {}
        for p in res.position:
            name = self._by_id.get(p.tradeData.symbolId)
            if name is not None:
                fresh[p.positionId] = parsing.position(p, self._specs[name])
        # an execution event that came while the answer was on its way is newer than the answer (an order filled
        # or a position closed meanwhile): it wins
        newer = {pid for pid, n in self._touched.items() if n > asked_at}
        for pid in newer:
            fresh.pop(pid, None)
            if pid in self._positions:
                fresh[pid] = self._positions[pid]
        missing = [p for pid, p in self._positions.items() if pid not in fresh]
        self._positions = fresh
        oldest = min(self._reconciling, default=self._executions)  # what a reconcile still out must compare with
        self._touched = {pid: n for pid, n in self._touched.items() if n > oldest}
        if report_missing and missing:
            await self._report_closed_while_away(missing)

    async def _report_closed_while_away(self, gone: list[Position]) -> None:
        """Positions that vanished between sessions: report their closing deals from the deal list."""
        since_ms = units.seconds_to_ms(min(p.open_time for p in gone))
        to_ms = (self._server_ms or units.seconds_to_ms(time.time())) + DAY_MS
        res = await self._request(
            oa.ProtoOADealListReq(ctidTraderAccountId=self.account_id, fromTimestamp=since_ms, toTimestamp=to_ms)
        )
        by_pid = {p.ticket: p for p in gone}
        for d in res.deal:
            name = self._by_id.get(d.symbolId)
            if name is None or d.positionId not in by_pid or d.dealId in self._seen_deals:
                continue
            deal = parsing.deal(d, self._specs[name])
            if not deal.closing:
                continue
            self._seen_deals.add(deal.deal_id)
            if deal.balance is not None:
                self._balance = deal.balance
            p = by_pid[d.positionId]
            external = d.positionId not in self._closing_by_us
            self._emit(parsing.position_closed(deal, p.direction, external, False, True, p.label, p.comment))
            self._closing_by_us.discard(d.positionId)

    async def get_positions(self, refresh: bool = False) -> list[Position]:
        """Open positions with current price and unrealized PnL from the last quotes."""
        if refresh:
            await self._wait_ready()
            await self._reconcile(report_missing=True)
        out = []
        for p in self._positions.values():
            q = self._quotes.get(p.symbol)
            if q is None:
                out.append(p)
                continue
            price = q.bid if p.direction > 0 else q.ask
            rate = self._rate_from_quotes(self._specs[p.symbol]) or 0.0
            pnl = units.pnl_deposit(p.open_price, price, p.direction, p.volume_wire, rate)
            out.append(dataclasses.replace(p, current_price=price, pnl=round(pnl, self._money_digits)))
        return out

    async def get_position(self, symbol: str) -> Position | None:
        for p in await self.get_positions():
            if p.symbol == symbol:
                return p
        return None

    async def get_account(self, refresh: bool = False) -> AccountInfo:
        """Balance from the broker; equity = balance + unrealized PnL; margin = the positions' used margin."""
        if refresh:
            await self._wait_ready()
            await self._refresh_trader()
        for name in {p.symbol for p in self._positions.values()}:
            if self.is_connected:
                with contextlib.suppress(BrokerError, TransportError, TimeoutError):
                    await self.ensure_quote(name)
                    await self.quote_to_deposit(name)
        positions = await self.get_positions()
        equity = self._balance + sum(p.pnl for p in positions)
        margin = sum(p.used_margin for p in positions)
        level = equity / margin * 100 if margin else 0.0
        return AccountInfo(
            balance=self._balance,
            equity=round(equity, self._money_digits),
            margin=margin,
            free_margin=round(equity - margin, self._money_digits),
            margin_level=level,
            currency=self._deposit_asset,
            leverage=self._leverage,
        )

    async def get_deals(self, since: float, until: float | None = None, max_rows: int = 0) -> list[Deal]:
        """Deals executed between `since` and `until` (Unix s, broker time)."""
        await self._wait_ready()
        to_ms = units.seconds_to_ms(until) if until is not None else (self._server_ms or 0) + DAY_MS
        req = oa.ProtoOADealListReq(
            ctidTraderAccountId=self.account_id, fromTimestamp=units.seconds_to_ms(since), toTimestamp=to_ms
        )
        if max_rows:
            req.maxRows = max_rows
        res = await self._request(req)
        return [parsing.deal(d, self._specs[self._by_id[d.symbolId]]) for d in res.deal if d.symbolId in self._by_id]

    # ---- orders
    def _waiter(self, key: str) -> asyncio.Future[OrderResult]:
        fut: asyncio.Future[OrderResult] = asyncio.get_running_loop().create_future()
        self._waiters[key] = fut
        return fut

    async def _send_and_wait(self, msg: Any, key: str, timeout: float, symbol: str = "") -> OrderResult:
        """Send a trading request; the answer is an execution/error event resolving `key`. `on_order_sent(symbol)`
        is called once it is written to the connection (after the rate limit's wait)."""
        fut = self._waiter(key)
        msg_id = uuid.uuid4().hex
        self._msgid_waiter[msg_id] = key
        try:
            tr = self._transport
            if tr is None or not tr.is_open:
                raise BrokerConnectionError("not connected")
            await tr.send(msg, msg_id)
            if symbol and self.on_order_sent is not None:
                self.on_order_sent(symbol)
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        finally:
            self._msgid_waiter.pop(msg_id, None)
            if self._waiters.get(key) is fut:
                del self._waiters[key]

    async def market_order(
        self,
        symbol: str,
        direction: int,
        lots: float,
        *,
        sl_distance: float | None = None,
        tp_distance: float | None = None,
        sl_money: float | None = None,
        tp_money: float | None = None,
        client_order_id: str | None = None,
        comment: str = "",
    ) -> OrderResult:
        """A MARKET order with relative SL/TP, idempotent by `client_order_id`.

        SL/TP: price distances, or amounts of the deposit currency (`sl_money`, converted with the symbol's
        quote->deposit rate for this volume). The id goes in both `clientOrderId` and `label`; a repeated call
        with the same id returns the first result, and a timed-out request is only resent after a reconcile
        shows no position carrying that label.
        """
        cid = orders.validate_client_order_id(client_order_id or orders.new_client_order_id())
        known = orders.existing_order(cid, self._own, self._positions.values())
        if known is not None:
            return known
        if cid in self._inflight:
            return await asyncio.shield(self._inflight[cid])
        fut: asyncio.Future[OrderResult] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._inflight[cid] = fut
        try:
            result = await self._place(
                cid, symbol, direction, lots, sl_distance, tp_distance, sl_money, tp_money, comment
            )
            fut.set_result(result)
            return result
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        finally:
            self._inflight.pop(cid, None)

    async def _place(
        self,
        cid: str,
        symbol: str,
        direction: int,
        lots: float,
        sl_distance: float | None,
        tp_distance: float | None,
        sl_money: float | None,
        tp_money: float | None,
        comment: str,
    ) -> OrderResult:
        await self._wait_ready()
        spec = self._spec(symbol)
        try:
            volume = units.normalize_volume(units.lots_to_volume(lots, spec.lot_size), spec)
        except ValueError as exc:
            return OrderResult(False, cid, error=f"TRADING_BAD_VOLUME: {exc}")
        if sl_money is not None:
            sl_distance = await self.money_to_distance(symbol, sl_money, units.volume_to_lots(volume, spec.lot_size))
        if tp_money is not None:
            tp_distance = await self.money_to_distance(symbol, tp_money, units.volume_to_lots(volume, spec.lot_size))
        req = oa.ProtoOANewOrderReq(
            ctidTraderAccountId=self.account_id,
            symbolId=spec.symbol_id,
            orderType=1,
            tradeSide=1 if direction > 0 else 2,
            volume=volume,
            label=cid,
            clientOrderId=cid,
        )
        if comment:
            req.comment = comment[:512]
        if sl_distance:
            req.relativeStopLoss = units.relative_from_distance(sl_distance, spec.digits)
        if tp_distance:
            req.relativeTakeProfit = units.relative_from_distance(tp_distance, spec.digits)
        last_error = ""
        for attempt in range(1, self.config.order_attempts + 1):
            await self._wait_ready()
            req.ctidTraderAccountId = self.account_id
            try:
                return await self._send_and_wait(req, f"order:{cid}", self.config.order_timeout, symbol)
            except (TimeoutError, RequestTimeout, BrokerConnectionError, ConnectionClosed) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "order %s attempt %d: no answer (%s); reconciling before any resend", cid, attempt, last_error
                )
            # outcome unknown: the order may exist. Look before sending again.
            await self._wait_ready()
            try:
                await self._reconcile()
            except (BrokerError, TransportError) as exc:
                last_error = str(exc)
                continue
            known = orders.existing_order(cid, self._own, self._positions.values())
            if known is not None:
                return known
        return OrderResult(
            False, cid, error=f"no confirmation after {self.config.order_attempts} attempts: {last_error}"
        )

    async def close_position(self, ticket: int, lots: float | None = None) -> OrderResult:
        """Close a position (all of it unless `lots`), sending its volume as the protocol requires."""
        await self._wait_ready()
        pos = self._positions.get(ticket)
        if pos is None:
            await self._reconcile()
            pos = self._positions.get(ticket)
            if pos is None:
                return OrderResult(False, "", ticket=ticket, error="POSITION_NOT_FOUND")
        spec = self._spec(pos.symbol)
        volume = (
            pos.volume_wire if lots is None else units.normalize_volume(units.lots_to_volume(lots, spec.lot_size), spec)
        )
        self._closing_by_us.add(ticket)
        last_error = ""
        for _ in range(self.config.order_attempts):
            await self._wait_ready()
            req = oa.ProtoOAClosePositionReq(ctidTraderAccountId=self.account_id, positionId=ticket, volume=volume)
            try:
                result = await self._send_and_wait(req, f"close:{ticket}", self.config.order_timeout, pos.symbol)
                if not result.success:
                    self._closing_by_us.discard(ticket)
                return result
            except (TimeoutError, RequestTimeout, BrokerConnectionError, ConnectionClosed) as exc:
                last_error = str(exc)
            await self._wait_ready()
            with contextlib.suppress(BrokerError, TransportError):
                await self._reconcile(report_missing=True)
            now = self._positions.get(ticket)
            if now is None or now.volume_wire < pos.volume_wire:
                return OrderResult(True, "", ticket=ticket, recovered=True)
        return OrderResult(False, "", ticket=ticket, error=f"no confirmation: {last_error}")

    async def amend_position(self, ticket: int, sl: float | None = None, tp: float | None = None) -> OrderResult:
        """Set absolute SL/TP prices on an open position (None leaves that side without protection)."""
        await self._wait_ready()
        req = oa.ProtoOAAmendPositionSLTPReq(ctidTraderAccountId=self.account_id, positionId=ticket)
        if sl is not None:
            req.stopLoss = sl
        if tp is not None:
            req.takeProfit = tp
        try:
            return await self._send_and_wait(req, f"amend:{ticket}", self.config.order_timeout)
        except (TimeoutError, RequestTimeout, BrokerConnectionError, ConnectionClosed) as exc:
            await self._wait_ready()
            await self._reconcile()
            p = self._positions.get(ticket)
            if p is not None and p.sl == sl and p.tp == tp:
                return OrderResult(True, "", ticket=ticket, sl=sl, tp=tp, recovered=True)
            return OrderResult(False, "", ticket=ticket, error=f"no confirmation: {exc}")
