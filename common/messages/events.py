"""The published records (PUB/SUB), each registered by its envelope ``type``, and the system and service
states they carry. Part of the wire's one definition, ``common/messages/``."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.messages.registry import event
from common.schema import SchemaError, check

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


# ---- runs: the replay form (bars already closed and waiting, moved as ONE message at each hop) -------------------

MAX_RUN = 500  # bars (or signals) in one run message; a longer run is split (``split_run``)
RUN_NAME_CHARS = 64  # a run's symbol and timeframe


def split_run(items: list, limit: int = MAX_RUN) -> list[list]:
    """``items`` in consecutive chunks of at most ``limit`` (the runs a longer one is sent as), in order."""
    if limit < 1:
        raise ValueError(f"a run's limit must be at least 1, not {limit}")
    return [items[i:i + limit] for i in range(0, len(items), limit)]


def run_items(run: BarRun | SignalRun) -> list:
    """A run's bars or signals, in bar order (a reader that takes them one by one, as if each came alone)."""
    return run.bars if isinstance(run, BarRun) else run.signals


def _check_run(what: str, symbol: str, items: list, times: list[int], timeframe: str | None = None) -> None:
    if not items:
        raise SchemaError("a run holds at least one item", what)
    for i, item in enumerate(items):
        if item.symbol != symbol:
            raise SchemaError(f"symbol {item.symbol!r} in a run of {symbol!r}", f"{what}[{i}].symbol")
        if timeframe is not None and item.timeframe != timeframe:
            raise SchemaError(f"timeframe {item.timeframe!r} in a run of {timeframe!r}", f"{what}[{i}].timeframe")
        if i and times[i] <= times[i - 1]:
            raise SchemaError(f"time {times[i]} not after the one before ({times[i - 1]}): a run is in bar order",
                              f"{what}[{i}]")


@event("bars")
@dataclass(frozen=True, slots=True)
class BarRun:
    """Closed bars of one stream that were already waiting together (a history catch-up, a burst), in bar order, on
    ``bars.<SYMBOL>.<TF>``: the same bars ``bar.<SYMBOL>.<TF>`` would carry one by one, at most ``MAX_RUN``."""

    symbol: str = field(metadata=check(max_len=RUN_NAME_CHARS))
    timeframe: str = field(metadata=check(max_len=RUN_NAME_CHARS))
    bars: list[Bar] = field(metadata=check(max_len=MAX_RUN))

    def __post_init__(self) -> None:
        _check_run("bars", self.symbol, self.bars, [b.time for b in self.bars], self.timeframe)


@event("ack")
@dataclass(frozen=True, slots=True)
class Ack:
    """The executor's answer to a signal on ``ack.<SYMBOL>``."""

    symbol: str
    bar_time: int
    status: str  # OK | SKIP | FAIL | WAIT_SYNC | DRY_RUN
    reason: str = ""
    details: dict = field(default_factory=dict)


@event("signals")
@dataclass(frozen=True, slots=True)
class SignalRun:
    """The preditor's signals of a ``BarRun``'s bars, in bar order, on ``signals.<SYMBOL>``: the same signals
    ``signal.<SYMBOL>`` would carry one by one (paper simulates each at its bar; the executor records each and acts
    on the latest), at most ``MAX_RUN``."""

    symbol: str = field(metadata=check(max_len=RUN_NAME_CHARS))
    signals: list[Signal] = field(metadata=check(max_len=MAX_RUN))

    def __post_init__(self) -> None:
        _check_run("signals", self.symbol, self.signals, [s.bar_time for s in self.signals])


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
