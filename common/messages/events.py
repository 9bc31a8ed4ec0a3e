"""The published records (PUB/SUB), each registered by its envelope ``type``, and the system and service
states they carry. Part of the wire's one definition, ``common/messages/``."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.messages.registry import event

# ---- system states ---------------------------------------------------------------------------

BOOTING, RUNNING, DEGRADED, HALTED, STOPPING = "BOOTING", "RUNNING", "DEGRADED", "HALTED", "STOPPING"
FAILED = "FAILED"  # a program cannot start until a person acts (common/failure.py); the others go on as they can
SYSTEM_STATES = (BOOTING, RUNNING, DEGRADED, HALTED, STOPPING, FAILED)

# service lifecycle states, as reported in heartbeats
S_WAITING, S_STEP, S_RUNNING, S_STOPPING = "WAITING", "STEP", "RUNNING", "STOPPING"


# ---- published events ------------------------------------------------------------------------


@event("hb")
@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Published by every service every second on ``hb.<service>``."""

    service: str
    pid: int
    epoch: int
    state: str
    uptime_s: float
    rss_bytes: int
    steps: list = field(default_factory=list)  # boot steps done in this epoch
    progress: dict = field(default_factory=dict)  # monotonic counters (bars_seen, signals_sent, ...)
    pending: int = 0  # work waiting; with unchanged progress this means a stall
    wire_errors: dict = field(default_factory=dict)  # malformed frames by kind
    info: dict = field(default_factory=dict)  # health facts: connected, symbols, backlog


@event("sys_state")
@dataclass(frozen=True, slots=True)
class SysState:
    """Published by the orchestrator on ``sys.state``: at every boot step and at least once a second."""

    state: str
    since_ts: int
    event: str = ""  # what just happened: "go preditor.load", "ready ...", "restart executor", ...
    services: dict = field(default_factory=dict)  # name -> service state
    issues: list = field(default_factory=list)
    halted_reason: str = ""
    failed_reason: str = ""  # "connector: <cause>; ..." for every program that failed permanently ("" when none)


@event("alert")
@dataclass(frozen=True, slots=True)
class Alert:
    """Published on ``alert.<kind>``: something a person should know."""

    kind: str
    severity: str  # info | warning | critical
    message: str
    service: str = ""
    details: dict = field(default_factory=dict)


@event("bar")
@dataclass(frozen=True, slots=True)
class Bar:
    """A closed bar on ``bar.<SYMBOL>.<TF>``; ``time`` is the bar OPEN time in Unix seconds (UTC)."""

    symbol: str
    timeframe: str
    time: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@event("signal")
@dataclass(frozen=True, slots=True)
class Signal:
    """The preditor's desired position on ``signal.<SYMBOL>``, one per closed bar."""

    symbol: str
    bar_time: int
    close: float  # the bar's close: the reference price for slippage and paper fills
    action: int
    direction: int
    intensity: int
    hmm_state: int
    virtual_pnl: float
    # the direction of the twin's decision at the bar before (published live); None when unknown: the twin's
    # first decision, or a signal read back later (``last_signals``). The executor's edge after a boot reads it.
    previous_direction: int | None = None
    # a decision of a bar that closed while the preditor was down or its bars were missing, published late in bar
    # order: paper simulates it at its bar, the executor records it but acts only on the latest position
    catch_up: bool = False


@event("ack")
@dataclass(frozen=True, slots=True)
class Ack:
    """The executor's answer to a signal on ``ack.<SYMBOL>``."""

    symbol: str
    bar_time: int
    status: str  # OK | SKIP | FAIL | WAIT_SYNC | DRY_RUN
    reason: str = ""
    details: dict = field(default_factory=dict)


@event("fill")
@dataclass(frozen=True, slots=True)
class Fill:
    """A deal executed at the broker, on ``fill.<SYMBOL>`` (once per deal)."""

    symbol: str
    ticket: int  # the position id
    client_order_id: str
    direction: int  # +1 buy, -1 sell
    volume: float  # lots
    price: float
    time: float  # Unix s, the broker's execution time
    deal_id: int
    comment: str = ""  # the order's comment: the executor's label (common/order_label.py), "" for others
    commission: float = 0.0  # charged on this deal, deposit currency (<= 0: money leaving the account)


@event("position_closed")
@dataclass(frozen=True, slots=True)
class PositionClosed:
    """A position closed, on ``closed.<SYMBOL>``; ``external`` when this system did not ask (SL, TP, manual)."""

    ticket: int
    symbol: str
    direction: int
    volume: float
    entry_price: float
    close_price: float
    gross_profit: float
    swap: float
    commission: float
    net_profit: float  # the broker's PnL, deposit currency
    time: float
    reason: str  # SL_TP | EXTERNAL | CLIENT
    external: bool
    balance: float | None = None
    label: str = ""
    full: bool = True
    comment: str = ""  # the position's order comment when the broker's event carries it ("" otherwise)
    pip_size: float | None = None  # the symbol's pip, for the close's result in pips (None: spec unknown)


@event("order_rejected")
@dataclass(frozen=True, slots=True)
class OrderRejected:
    """The broker refused an order, on ``reject.<SYMBOL>``."""

    client_order_id: str
    symbol: str
    error: str


@event("account")
@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """Balance and equity, on ``account``: equity = balance + the open positions' net unrealized PnL
    (``gross_pnl + swap + commission``; costs are signed account money, <= 0 when charged)."""

    balance: float
    equity: float
    margin: float
    free_margin: float
    currency: str
    gross_pnl: float = 0.0  # open positions, price move only
    swap: float = 0.0  # open positions, swaps charged so far
    commission: float = 0.0  # open positions, round-turn commission (opening charged + closing due)


@event("market")
@dataclass(frozen=True, slots=True)
class MarketState:
    """A symbol's market opened or closed, on ``market.<SYMBOL>`` (the broker refused an order as MARKET_CLOSED,
    or its first tick after a closed period arrived). ``time`` is the broker's time of the change (Unix s)."""

    symbol: str
    open: bool
    time: float
    reason: str = ""


@event("connection")
@dataclass(frozen=True, slots=True)
class ConnectionState:
    """The broker connection, on ``conn.state``."""

    connected: bool
    reason: str = ""


@event("paper_trade")
@dataclass(frozen=True, slots=True)
class PaperTrade:
    """A closed paper trade, on ``paper.trade.<SYMBOL>``; times are bar times."""

    id: str
    symbol: str
    direction: int
    intensity: int
    entry_time: int
    exit_time: int
    entry_price: float
    exit_price: float
    pnl: float
    pips: float
    commission: float
    hmm_state: int = -1


@event("paper_metrics")
@dataclass(frozen=True, slots=True)
class PaperMetrics:
    """Paper account metrics per symbol, on ``paper.metrics.<SYMBOL>``."""

    symbol: str
    trades: int
    pnl: float
    win_rate: float
    profit_factor: float
    max_drawdown: float
    sharpe: float
    balance: float
