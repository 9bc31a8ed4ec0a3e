"""`CTraderBroker`: the cTrader Open API adapter behind the broker port (services/connector/port.py).

It owns the session: TLS connection, application and account authorisation with the token lifecycle, then
reference data (providers.py), the account's reconcile (execution.py), spot and trendbar subscriptions (data.py).
A lost connection is re-established in the background with exponential back-off (re-auth, reconcile, resubscribe,
then the closed bars missed meanwhile come first, in order and without duplicates).

Tokens (tokens.py): the access token is refreshed with ``ProtoOARefreshTokenReq`` before it expires (checked while
connected, and at each session start), when the broker says it is invalid (``CH_ACCESS_TOKEN_INVALID`` at account
auth, ``ProtoOAAccountsTokenInvalidatedEvent`` at any time); the new pair is stored before it is used, then the
session is opened again with it. When the broker refuses the refresh, no retry can help: an ``AuthStatus(False)``
event says what happened and what to do, and the adapter waits for a new pair (`reload_credentials`) without
hammering the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.connector.ctrader import schemas as proto
from services.connector.ctrader import spots, tokens
from services.connector.ctrader.data import MarketData
from services.connector.ctrader.execution import Execution
from services.connector.ctrader.link import Link
from services.connector.ctrader.providers import Instruments
from services.connector.ctrader.transport import ErrorResponse, Transport, TransportConfig, TransportError
from services.connector.port import (
    AccountInfo,
    AuthenticationError,
    AuthStatus,
    Bar,
    BookNow,
    BrokerConnectionError,
    BrokerError,
    BrokerRequestError,
    ConnectionStatus,
    Deal,
    Instrument,
    OrderResult,
    Position,
    Quote,
)

log = logging.getLogger(__name__)
oa = proto.oa

# answers to an account authorisation that a refreshed access token may cure
TOKEN_ERRORS = frozenset({"CH_ACCESS_TOKEN_INVALID", "OA_AUTH_TOKEN_EXPIRED"})
# answers to the authorisation requests that no retry can fix: a person must hand in credentials
AUTH_ERRORS = TOKEN_ERRORS | {
    "CH_CLIENT_AUTH_FAILURE",
    "CH_CLIENT_NOT_AUTHENTICATED",
    "CH_OA_CLIENT_NOT_FOUND",
    "CH_CTID_TRADER_ACCOUNT_NOT_FOUND",
    "ACCOUNT_NOT_AUTHORIZED",
    "NO_ACCOUNT",
}
SESSION_ENDED = ("ProtoOAAccountsTokenInvalidatedEvent", "ProtoOAClientDisconnectEvent",
                 "ProtoOAAccountDisconnectEvent")
REFRESHED = "access token refreshed: a new session uses it"
WHAT_TO_DO = ("hand in a new token pair with `oracle broker-token` (no restart needed); trading stays stopped "
              "until then")


@dataclass(frozen=True)
class CTraderConfig:
    host: str = "demo.ctraderapi.com"
    port: int = 5035
    tls: bool = True
    verify: bool = True  # False only for a simulator whose certificate is not handed to us
    ca_file: str | None = None  # a certificate (bundle) to trust, e.g. the simulator's self-signed one
    client_id: str = ""
    client_secret: str = ""
    access_token: str = ""  # the initial pair when no TokenKeeper is given (tests, tools)
    refresh_token: str = ""
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
    token_refresh_margin_s: float = 2 * 86_400  # refresh when the access token expires within this
    token_check_s: float = 60.0  # how often a connected session looks at its token's expiry
    auth_retry_s: float = 300.0  # after a refused authorisation, the next try without a new pair

    def transport(self) -> TransportConfig:
        return TransportConfig(
            self.host, self.port, tls=self.tls, verify=self.verify, ca_file=self.ca_file,
            request_timeout=self.request_timeout, heartbeat_interval=self.heartbeat_interval,
            dead_after=self.dead_after, rate_limit=self.rate_limit, history_rate_limit=self.history_rate_limit,
        )


class CTraderBroker:
    def __init__(self, config: CTraderConfig, keeper: tokens.TokenKeeper | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.tokens = keeper or tokens.TokenKeeper(tokens.TokenPair(config.access_token, config.refresh_token))
        self._clock = clock  # wall clock: token expiry is real time
        self.link = Link(config.ready_timeout)
        self.link.account_id = config.account_id
        self.instruments = Instruments(self.link)
        self.market = MarketData(self.link, self.instruments)
        self.execution = Execution(self.link, self.instruments, self.market, config.order_timeout,
                                   config.order_attempts)
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._token_watch: asyncio.Task[None] | None = None
        self._credentials_changed = asyncio.Event()
        self._session_token = ""  # the access token the current session was authorised with
        self._refreshing = False  # a ProtoOARefreshTokenReq is out
        self._auth_problem = ""  # why the broker refused us, while a person must act

    # ---- port: properties
    @property
    def events(self) -> asyncio.Queue[Any]:
        return self.link.events

    @property
    def on_order_sent(self) -> Callable[[str], None] | None:
        return self.execution.on_order_sent

    @on_order_sent.setter
    def on_order_sent(self, fn: Callable[[str], None] | None) -> None:
        self.execution.on_order_sent = fn

    @property
    def account_id(self) -> int | None:
        return self.link.account_id

    @property
    def is_connected(self) -> bool:
        return self.link.ready.is_set() and self.link.is_open

    @property
    def server_time(self) -> float | None:
        return self.market.server_time

    @property
    def symbols(self) -> Collection[str]:
        return self.instruments.specs.keys()

    @property
    def auth_problem(self) -> str:
        return self._auth_problem

    def describe(self) -> dict:
        """What may be shown about the connection (never a credential: tokens by fingerprint only)."""
        pair = self.tokens.pair
        return {"host": self.config.host, "port": self.config.port, "tls": self.config.tls,
                "verify": self.config.verify, "account_id": self.link.account_id,
                "token": tokens.fingerprint(pair.access_token), "token_expires_at": pair.expires_at}

    # ---- session
    async def connect(self, max_attempts: int = 1) -> None:
        """Open the session and keep it up. Raises AuthenticationError at once (a person must act),
        BrokerConnectionError after `max_attempts` failed connections (0 = retry forever)."""
        self._closing = False
        delay = self.config.reconnect_initial
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._open_session(announce=False)
                break
            except AuthenticationError as exc:
                self._set_auth_problem(self._auth_text(exc))
                raise
            except (BrokerError, TransportError, OSError, TimeoutError) as exc:
                if max_attempts and attempt >= max_attempts:
                    raise BrokerConnectionError(
                        f"cannot connect to {self.config.host}:{self.config.port}: {exc}"
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.reconnect_max)
        loop = asyncio.get_running_loop()
        self._supervisor = loop.create_task(self._supervise(), name="broker-supervisor")
        self._token_watch = loop.create_task(self._watch_token(), name="broker-token-watch")

    async def close(self) -> None:
        self._closing = True
        self.link.ready.clear()
        for task in (self._supervisor, self._token_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.link.cancel_background()
        if self.link.transport is not None:
            await self.link.transport.close()
        self.execution.fail_waiters("closed")

    async def reload_credentials(self) -> bool:
        """Take a token pair handed in while running (the token file); a session waiting for one retries now."""
        changed = self.tokens.reload(self._clock())
        if changed:
            log.info("a new broker token pair was handed in (%s)", tokens.fingerprint(self.tokens.pair.access_token))
            self._credentials_changed.set()
        return changed

    async def _supervise(self) -> None:
        cfg = self.config
        while not self._closing:
            assert self.link.transport is not None
            reason = await self.link.transport.wait_closed()
            if self._closing:
                return
            self.link.ready.clear()
            self.execution.fail_waiters(f"connection lost: {reason}")
            log.warning("broker connection lost: %s", reason)
            self.link.emit(ConnectionStatus(False, str(reason or "closed")))
            delay = cfg.reconnect_initial
            while not self._closing:
                if await self._pause(delay):
                    delay = cfg.reconnect_initial  # a new pair was handed in: try it now
                try:
                    await self._open_session()
                    break
                except AuthenticationError as exc:
                    self._on_auth_refused(exc)
                    delay = cfg.auth_retry_s
                except (BrokerError, TransportError, OSError, TimeoutError) as exc:
                    log.info("reconnect failed (%s); next try in %.1f s", exc, delay)
                    delay = min(delay * 2, cfg.reconnect_max)
                except Exception:  # never let the supervisor die: a bug here would end all reconnects
                    log.exception("unexpected error while reconnecting")
                    delay = cfg.reconnect_max

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds`, or less when a new token pair is handed in (then True)."""
        try:
            await asyncio.wait_for(self._credentials_changed.wait(), seconds)
        except TimeoutError:
            return False
        self._credentials_changed.clear()
        return True

    def _set_auth_problem(self, text: str) -> None:
        self._auth_problem = text
        self.link.refuse(text)

    def _auth_text(self, exc: AuthenticationError) -> str:
        return f"the broker refused the credentials ({exc}); {WHAT_TO_DO}"

    def _on_auth_refused(self, exc: AuthenticationError) -> None:
        text = self._auth_text(exc)
        if text != self._auth_problem:
            log.error("%s", text)
            self._set_auth_problem(text)
            self.link.emit(AuthStatus(False, text))

    async def _open_session(self, announce: bool = True) -> None:
        self.market.new_session()
        tr = Transport(self.config.transport(), on_event=self._on_event, read_frame=spots.read_frame_adapter)
        await tr.connect()
        try:
            await self._authorise(tr)
            self.link.transport = tr
            await self.instruments.load()
            await self.execution.refresh_trader()
            await self.execution.reconcile(report_missing=True)
            await self.market.resubscribe(p.symbol for p in self.execution.positions.values())
        except BaseException:
            await tr.close()
            raise
        self.link.ready.set()
        if announce:
            self.link.emit(ConnectionStatus(True))
        if self._auth_problem:
            self._set_auth_problem("")
            self.link.emit(AuthStatus(True, "the broker accepted the credentials"))
        self.market.start_gap_fills()

    async def _authorise(self, tr: Transport) -> None:
        """Application auth, a token refresh when due or known dead, account auth (refreshing once if the broker
        says the token is invalid)."""
        cfg = self.config
        try:
            await tr.request(oa.ProtoOAApplicationAuthReq(clientId=cfg.client_id, clientSecret=cfg.client_secret))
        except ErrorResponse as exc:
            if exc.code in AUTH_ERRORS:
                raise AuthenticationError(exc.code, exc.description, needs_operator=True) from exc
            raise BrokerRequestError(exc.code, exc.description) from exc  # e.g. maintenance: retried
        keeper = self.tokens
        refreshed = False
        if keeper.invalid or tokens.refresh_due(keeper.pair, self._clock(), cfg.token_refresh_margin_s):
            await self._refresh(tr)
            refreshed = True
        while True:
            access = keeper.pair.access_token
            try:
                if self.link.account_id is None:
                    res = await tr.request(oa.ProtoOAGetAccountListByAccessTokenReq(accessToken=access))
                    if not res.ctidTraderAccount:
                        raise AuthenticationError("NO_ACCOUNT", "the access token has no trading account",
                                                  needs_operator=True)
                    self.link.account_id = int(res.ctidTraderAccount[0].ctidTraderAccountId)
                await tr.request(oa.ProtoOAAccountAuthReq(ctidTraderAccountId=self.link.account_id,
                                                          accessToken=access))
            except ErrorResponse as exc:
                if exc.code in TOKEN_ERRORS and not refreshed and keeper.pair.refresh_token:
                    log.warning("the broker says the access token is invalid (%s); refreshing it", exc.code)
                    await self._refresh(tr)
                    refreshed = True
                    continue
                if exc.code in AUTH_ERRORS:
                    raise AuthenticationError(exc.code, exc.description, needs_operator=True) from exc
                raise BrokerRequestError(exc.code, exc.description) from exc
            self._session_token = access
            return

    async def _refresh(self, tr: Transport) -> None:
        """Trade the refresh token for a new pair; the pair is stored before it is used."""
        keeper = self.tokens
        if not keeper.pair.refresh_token:
            raise AuthenticationError("NO_REFRESH_TOKEN", "the access token must be refreshed but no refresh token "
                                      "was given (CTRADER_REFRESH_TOKEN)", needs_operator=True)
        self._refreshing = True
        try:
            res = await tr.request(oa.ProtoOARefreshTokenReq(refreshToken=keeper.pair.refresh_token))
        except ErrorResponse as exc:
            raise AuthenticationError(exc.code, f"the broker refused to refresh the access token: "
                                      f"{exc.description}", needs_operator=True) from exc
        finally:
            self._refreshing = False
        try:
            keeper.adopt_refresh(res.accessToken, res.refreshToken, float(res.expiresIn), self._clock())
        except OSError as exc:
            log.critical("the refreshed broker token could not be stored (%s): running on it, but after a restart "
                         "a new pair must be handed in", exc)
        log.info("broker access token refreshed (%s, expires in %d s)",
                 tokens.fingerprint(keeper.pair.access_token), res.expiresIn)

    async def _watch_token(self) -> None:
        """While connected: refresh a token that expires soon (between orders), then open the session again."""
        cfg = self.config
        while not self._closing:
            await asyncio.sleep(cfg.token_check_s)
            tr = self.link.transport
            if (not self.is_connected or tr is None or self.execution.orders_out
                    or not tokens.refresh_due(self.tokens.pair, self._clock(), cfg.token_refresh_margin_s)):
                continue
            try:
                await self._refresh(tr)
            except AuthenticationError as exc:
                self._on_auth_refused(exc)  # the session goes on until the old token really expires
                continue
            except (BrokerError, TransportError, TimeoutError) as exc:
                log.warning("token refresh failed (%s); trying again later", exc)
                continue
            await tr.abort(ConnectionError(REFRESHED))

    def _on_event(self, ptype: int, msg: Any, cid: str) -> None:
        if msg is None:
            return
        if ptype == spots.SPOT_EVENT:  # read by spots.py (no protobuf class)
            self.market.on_spot(msg)
            return
        if isinstance(msg, spots.OrderAccepted):  # read by spots.py too
            self.execution.on_accepted(msg.position_id, msg.symbol_id)
            return
        name = msg.DESCRIPTOR.name
        if name == "ProtoOAExecutionEvent":
            self.execution.on_execution(msg, cid)
        elif name in ("ProtoOAOrderErrorEvent", "ProtoOAErrorRes", "ProtoErrorRes"):
            self.execution.on_error(msg, cid)
        elif name == "ProtoOATraderUpdatedEvent":
            self.execution.on_trader_updated(msg)
        elif name in SESSION_ENDED:
            reason = name
            if name == "ProtoOAAccountsTokenInvalidatedEvent":
                if self._refreshing or self._session_token != self.tokens.pair.access_token:
                    # the token we are replacing by refreshing it (its answer and this event may come in one read):
                    # expected, and a new session uses the new one
                    reason = REFRESHED
                else:
                    self.tokens.invalid = True  # refresh before the next account auth
            log.warning("the broker ended the session: %s %s", name, getattr(msg, "reason", ""))
            tr = self.link.transport
            if tr is not None:
                self.link.spawn(tr.abort(ConnectionError(reason)))

    # ---- port: market data
    def instrument(self, symbol: str) -> Instrument:
        q = self.market.quotes.get(symbol)
        return self.instruments.instrument(symbol, q.bid if q else None)

    def quote(self, symbol: str) -> Quote | None:
        return self.market.quotes.get(symbol)

    def quoted_symbols(self) -> list[str]:
        """The symbols with a quote (spots subscribed): a few, where the broker may list thousands."""
        return list(self.market.quotes)

    def rate_from_quotes(self, symbol: str) -> float | None:
        return self.market.rate_from_quotes(symbol)

    def market_closed(self, symbol: str) -> float | None:
        return self.market.market_closed(symbol)

    async def ensure_quote(self, symbol: str, timeout: float = 5.0) -> Quote:
        return await self.market.ensure_quote(symbol, timeout)

    async def quote_to_deposit(self, symbol: str) -> float:
        return await self.market.quote_to_deposit(symbol)

    async def get_history(self, symbol: str, timeframe: str, count: int) -> list[Bar]:
        """The last `count` CLOSED bars, oldest first (fewer only if the broker has no older data)."""
        await self.link.wait_ready()
        return await self.market.fetch_closed(symbol, timeframe, count=count)

    async def subscribe_bars(self, symbols: Iterable[str], timeframe: str,
                             since: Mapping[str, int] | None = None) -> None:
        await self.link.wait_ready()
        await self.market.subscribe_bars(symbols, timeframe, since)

    async def unsubscribe_bars(self, symbols: Iterable[str], timeframe: str) -> None:
        await self.market.unsubscribe_bars(symbols, timeframe)

    # ---- port: account and orders
    async def get_positions(self, refresh: bool = False) -> list[Position]:
        return await self.execution.get_positions(refresh)

    async def get_account(self, refresh: bool = False) -> AccountInfo:
        return await self.execution.get_account(refresh)

    def book_now(self) -> BookNow | None:
        """Any thread: the book as the broker loop last published it (execution.py), marked to a copy of the
        quotes; None while a position's quote or rate is missing."""
        return self.execution.book_now()

    async def get_deals(self, since: float, until: float | None = None, max_rows: int = 0) -> list[Deal]:
        return await self.execution.get_deals(since, until, max_rows)

    async def market_order(self, symbol: str, direction: int, lots: float, *, sl_distance: float | None = None,
                           tp_distance: float | None = None, client_order_id: str | None = None,
                           comment: str = "") -> OrderResult:
        return await self.execution.market_order(symbol, direction, lots, sl_distance=sl_distance,
                                                 tp_distance=tp_distance, client_order_id=client_order_id,
                                                 comment=comment)

    async def close_position(self, ticket: int, lots: float | None = None) -> OrderResult:
        return await self.execution.close_position(ticket, lots)

    async def amend_position(self, ticket: int, sl: float | None = None, tp: float | None = None) -> OrderResult:
        return await self.execution.amend_position(ticket, sl, tp)
