"""Broker-side domain values the connector service sees (no protobuf types leak past parsing.py)."""

from __future__ import annotations

from dataclasses import dataclass

from services.connector.bars import Bar

__all__ = [
    "AccountInfo",
    "Bar",
    "ConnectionStatus",
    "Deal",
    "OrderFilled",
    "OrderRejected",
    "OrderResult",
    "Position",
    "PositionClosed",
    "Quote",
]


@dataclass(frozen=True)
class Quote:
    symbol: str
    bid: float
    ask: float
    time_ms: int  # server time of the last spot event (0 when the broker sent none)


@dataclass(frozen=True)
class Position:
    ticket: int  # positionId
    symbol: str
    direction: int  # +1 long, -1 short
    volume: float  # lots
    volume_wire: int  # protocol volume (cents of a unit)
    open_price: float
    open_time: float  # Unix s
    sl: float | None = None
    tp: float | None = None
    label: str = ""
    comment: str = ""
    used_margin: float = 0.0
    current_price: float = 0.0
    pnl: float = 0.0  # unrealized, deposit currency, from the last quote


@dataclass(frozen=True)
class AccountInfo:
    balance: float
    equity: float
    margin: float
    free_margin: float
    margin_level: float  # % = equity / margin x 100 (0 when no margin is used)
    currency: str
    leverage: float


@dataclass(frozen=True)
class OrderResult:
    success: bool
    client_order_id: str
    ticket: int | None = None  # positionId
    price: float | None = None
    volume: float = 0.0  # lots
    sl: float | None = None
    tp: float | None = None
    error: str = ""
    recovered: bool = False  # found by reconcile/own record after a timeout, not from this request's reply


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


# ---- events (items of CTraderBroker.events) ----


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


@dataclass(frozen=True)
class OrderRejected:
    client_order_id: str
    symbol: str
    error: str


@dataclass(frozen=True)
class PositionClosed:
    ticket: int
    symbol: str
    direction: int  # of the position
    volume: float  # lots closed
    entry_price: float
    close_price: float
    gross_profit: float
    swap: float
    commission: float
    net_profit: float
    balance: float | None
    time: float
    reason: str  # "SL_TP" (server closed at a stop), "EXTERNAL" (not by this client), "CLIENT"
    external: bool  # True when this client did not ask for the close
    label: str = ""
    full: bool = True  # False for a partial close
    comment: str = ""  # the position's order comment, when the broker's event carries it


@dataclass(frozen=True)
class ConnectionStatus:
    connected: bool
    reason: str = ""
