"""The broker port: what the connector service needs of a broker, in the domain's units.

Past this port everything speaks lots, prices, price distances and account (deposit currency) money; a broker's
own units (cTrader's volume cents, 1/100000 prices, moneyDigits, symbol ids) exist only inside its adapter
(``services/connector/ctrader/``). The adapter is chosen by ``factory.make_broker`` on ``broker.type``.

Costs are signed account money: a commission or swap charged is negative, so a position's net PnL is always
``gross_pnl + swap + commission``.

Unsolicited things reach the service through ``BrokerPort.events`` (an asyncio.Queue), in the order the broker
produced them: ``Bar`` (a closed bar, never a forming one, never twice), ``OrderFilled``, ``PositionClosed``,
``OrderRejected``, ``ConnectionStatus``, ``MarketStatus`` and ``AuthStatus``. ``OrderResult`` and
``PositionClosed`` are ``common.messages``' own records: the service publishes what the adapter built.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# one fact, one type: a bar, an order's answer, a position's close, a position and the account are the wire's
# records (plain dataclasses, no ZeroMQ), built by the adapter in the domain's units (a Bar's volume: ticks)
from common.messages import AccountInfo, Bar, OrderResult, Position, PositionClosed

# ---- errors -----------------------------------------------------------------------------------


class BrokerError(Exception):
    pass


class AuthenticationError(BrokerError):
    """The broker refused the credentials. ``needs_operator``: no retry can fix it (a refused refresh token, a
    revoked application); a person must hand in new credentials."""

    def __init__(self, code: str, description: str = "", needs_operator: bool = False) -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description
        self.needs_operator = needs_operator


class BrokerConnectionError(BrokerError):
    pass


class BrokerTimeout(BrokerError):
    pass


class BrokerRequestError(BrokerError):
    """The broker answered a request with an error."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description


class SymbolNotFoundError(BrokerError):
    pass


# ---- values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instrument:
    """A symbol's trading specification, in lots and prices."""

    symbol: str
    digits: int
    pip_position: int
    lot_units: float  # units of the base asset in one lot (100 000 for forex)
    min_lots: float
    step_lots: float
    max_lots: float
    base_asset: str = ""
    quote_asset: str = ""
    min_sl_distance: float = 0.0  # the nearest a stop loss may be to the market (price distance; 0 = none)
    min_tp_distance: float = 0.0
    calendar: Any = None  # services.connector.calendar.TradingCalendar, or None when the broker gives none

    @property
    def point(self) -> float:
        return 10.0**-self.digits

    @property
    def pip_size(self) -> float:
        return 10.0**-self.pip_position


@dataclass(frozen=True)
class Quote:
    symbol: str
    bid: float
    ask: float
    time: float = 0.0  # the broker's time of the last price (Unix s; 0 when the broker sent none)


@dataclass(frozen=True)
class BookNow:
    """The account's book at one instant, from the adapter's memory (`BrokerPort.book_now`): the open positions
    marked to the quotes at hand, the account they make, and every live quote with its quote->deposit rate
    (None: not known). It may be handed to several callers: never changed."""

    positions: tuple[Position, ...]
    account: AccountInfo
    quotes: Mapping[str, tuple[Quote, float | None]]


@dataclass(frozen=True)
class Deal:
    deal_id: int
    order_id: int
    position_id: int
    symbol: str
    direction: int  # side of the deal: +1 buy, -1 sell
    volume: float  # lots
    price: float
    time: float  # Unix s, execution
    closing: bool
    entry_price: float | None = None
    gross_profit: float = 0.0
    swap: float = 0.0
    commission: float = 0.0
    balance: float | None = None


# ---- events (items of BrokerPort.events) ------------------------------------------------------


@dataclass(frozen=True)
class OrderFilled:
    client_order_id: str
    ticket: int
    symbol: str
    direction: int
    volume: float
    price: float
    time: float
    deal_id: int
    comment: str = ""  # the order's comment (the executor's label: signal, HMM state, intensity)
    commission: float = 0.0  # charged on this deal


@dataclass(frozen=True)
class OrderRejected:
    client_order_id: str
    symbol: str
    error: str
    error_code: str = ""
    broker_code: str = ""


def position_closed(d: Deal, position_direction: int, external: bool, server_stop: bool, full: bool,
                    label: str = "", comment: str = "") -> PositionClosed:
    """The close a closing deal made: SL_TP when the server closed it at a stop, EXTERNAL when not asked by this
    client, else CLIENT. The wire's record (``pip_size`` is the service's to add: it knows the symbol's spec)."""
    reason = "SL_TP" if server_stop else ("EXTERNAL" if external else "CLIENT")
    return PositionClosed(
        ticket=d.position_id, symbol=d.symbol, direction=position_direction, volume=d.volume,
        entry_price=d.entry_price or 0.0, close_price=d.price, gross_profit=d.gross_profit, swap=d.swap,
        commission=d.commission, net_profit=round(d.gross_profit + d.swap + d.commission, 8), balance=d.balance,
        time=d.time, reason=reason, external=external or server_stop, label=label, full=full, comment=comment,
    )


@dataclass(frozen=True)
class ConnectionStatus:
    connected: bool
    reason: str = ""


@dataclass(frozen=True)
class MarketStatus:
    """A symbol's market closed (an order refused as MARKET_CLOSED) or opened (its first tick after a closure)."""

    symbol: str
    open: bool
    time: float  # the broker's time (Unix s)
    reason: str = ""


@dataclass(frozen=True)
class AuthStatus:
    """The broker session's credentials: ``ok`` False when a person must hand in new ones (``reason`` says what
    happened and what to do); ok True again once they work."""

    ok: bool
    reason: str = ""


# ---- the port ---------------------------------------------------------------------------------


class BrokerPort(Protocol):
    """What the connector service calls. Every coroutine runs on the broker's own asyncio loop."""

    events: asyncio.Queue[Any]
    on_order_sent: Callable[[str], None] | None  # called when an order for a symbol is written to the broker

    @property
    def is_connected(self) -> bool: ...

    @property
    def server_time(self) -> float | None: ...

    @property
    def symbols(self) -> Collection[str]: ...

    @property
    def auth_problem(self) -> str: ...  # why the broker refuses our credentials and what to do ("" when it does not)

    def describe(self) -> dict: ...

    # session
    async def connect(self, max_attempts: int = 1) -> None: ...

    async def close(self) -> None: ...

    async def reload_credentials(self) -> bool: ...

    # reference and market data
    def instrument(self, symbol: str) -> Instrument: ...

    def quote(self, symbol: str) -> Quote | None: ...

    def quoted_symbols(self) -> list[str]: ...

    def rate_from_quotes(self, symbol: str) -> float | None: ...

    def market_closed(self, symbol: str) -> float | None: ...

    async def ensure_quote(self, symbol: str, timeout: float = 5.0) -> Quote: ...

    async def quote_to_deposit(self, symbol: str) -> float: ...

    async def get_history(self, symbol: str, timeframe: str, count: int) -> list[Bar]: ...

    async def subscribe_bars(
        self, symbols: Iterable[str], timeframe: str, since: Mapping[str, int] | None = None
    ) -> None: ...

    async def unsubscribe_bars(self, symbols: Iterable[str], timeframe: str) -> None: ...

    # account and orders
    async def get_positions(self, refresh: bool = False) -> list[Position]: ...

    async def get_account(self, refresh: bool = False) -> AccountInfo: ...

    def book_now(self) -> BookNow | None: ...  # callable from any thread: the book in memory, consistent (None:
    # something must be fetched first: `get_positions`, `get_account`)

    async def get_deals(self, since: float, until: float | None = None, max_rows: int = 0) -> list[Deal]: ...

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
    ) -> OrderResult: ...

    async def close_position(self, ticket: int, lots: float | None = None) -> OrderResult: ...

    async def amend_position(self, ticket: int, sl: float | None = None, tp: float | None = None) -> OrderResult: ...
