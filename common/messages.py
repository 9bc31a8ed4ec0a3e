"""Every message on the wire, defined once.

Two registries:
- ``EVENTS``: published records, by envelope ``type`` (the PUB/SUB stream);
- ``OPS``: request operations, by ``op`` (REQ/REP), with their argument and result records.

A record is a dataclass whose field annotations are the schema (``common/schema.py``): ``from_wire``
validates a decoded map against it, nested records included, and raises :class:`SchemaError` naming
the field's path; ``to_wire`` gives the plain maps back (field names stay the wire's keys).

Topics (dotted, so SUB prefix filters work) are built by the helpers at the bottom.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.schema import SchemaError as SchemaError  # re-exported: callers name messages.SchemaError, ...
from common.schema import fields_of
from common.schema import from_wire as from_wire
from common.schema import to_wire as to_wire

EVENTS: dict[str, type] = {}
_TYPE_NAMES: dict[type, str] = {}


def event(name: str):
    def register(cls: type) -> type:
        EVENTS[name] = cls
        _TYPE_NAMES[cls] = name
        fields_of(cls)
        return cls

    return register


def type_name(record: Any) -> str:
    try:
        return _TYPE_NAMES[type(record)]
    except KeyError:
        raise TypeError(f"{type(record).__name__} is not a registered event") from None


@dataclass(frozen=True, slots=True)
class OpSpec:
    name: str
    args: type
    result: type | None  # None: a free-form map (a status report, a command's answer: each their own)
    doc: str


OPS: dict[str, OpSpec] = {}


def op(name: str, args: type, result: type | None, doc: str) -> OpSpec:
    spec = OpSpec(name, args, result, doc)
    OPS[name] = spec
    fields_of(args)
    if result is not None:
        fields_of(result)
    return spec


# ---- system states ---------------------------------------------------------------------------

BOOTING, RUNNING, DEGRADED, HALTED, STOPPING = "BOOTING", "RUNNING", "DEGRADED", "HALTED", "STOPPING"
SYSTEM_STATES = (BOOTING, RUNNING, DEGRADED, HALTED, STOPPING)

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


# ---- request operations ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoArgs:
    pass


@dataclass(frozen=True, slots=True)
class Hello:
    service: str
    pid: int
    epoch: int
    version: str
    steps: list = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Instruction:
    """The orchestrator's answer to hello/ready: ``wait``, ``go`` (with the step) or ``run``."""

    do: str
    step: str = ""
    args: dict = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Ready:
    service: str
    epoch: int
    step: str
    ok: bool = True
    result: dict = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True, slots=True)
class StepArgs:
    step: str
    args: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepResult:
    step: str
    ok: bool
    result: dict = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True, slots=True)
class StopArgs:
    reason: str = "MANUAL"


@dataclass(frozen=True, slots=True)
class WriteArgs:
    """Records for one table; each record is a map with a client-made ``id`` (a UUID)."""

    table: str
    records: list


@dataclass(frozen=True, slots=True)
class WriteResult:
    acked: list  # ids durably committed (new, or already stored with the same content)
    rejected: dict = field(default_factory=dict)  # id -> reason: invalid, never retried


@dataclass(frozen=True, slots=True)
class SymbolArgs:
    symbol: str


@dataclass(frozen=True, slots=True)
class SignalsSinceArgs:
    """Per symbol, the bar open time of the last signal already applied (exclusive); None: the last signal only."""

    since: dict


@dataclass(frozen=True, slots=True)
class SignalsSince:
    """The preditor's kept signals after each asked bar time, as wire Signals, each symbol's in bar order; per
    symbol the oldest bar it still keeps (None: none kept), so a caller sees what is no longer there."""

    signals: list
    kept_from: dict


@dataclass(frozen=True, slots=True)
class HistoryArgs:
    """Closed bars, oldest first: the last ``count`` (before ``until`` when given), or every bar after ``since``."""

    symbol: str
    timeframe: str
    count: int = 0
    since: int | None = None  # bar open time, exclusive
    until: int | None = None  # bar open time, exclusive


@dataclass(frozen=True, slots=True)
class HistoryResult:
    symbol: str
    timeframe: str
    bars: list  # [[time, open, high, low, close, volume], ...]


@dataclass(frozen=True, slots=True)
class SubscribeArgs:
    """Publish closed bars of ``symbol``/``timeframe``; bars after ``since`` (open time) are published first."""

    symbol: str
    timeframe: str
    since: int | None = None


@dataclass(frozen=True, slots=True)
class OrderOpenArgs:
    symbol: str
    direction: int  # +1 long, -1 short
    lots: float
    client_order_id: str  # idempotency key: the same id never opens a second position
    sl_distance: float | None = None  # price distance from the fill
    tp_distance: float | None = None
    comment: str = ""  # the order label (at most 100 characters)


@dataclass(frozen=True, slots=True)
class OrderCloseArgs:
    ticket: int
    lots: float | None = None  # None: the whole position
    client_order_id: str = ""


@dataclass(frozen=True, slots=True)
class OrderAmendArgs:
    ticket: int
    sl: float | None = None
    tp: float | None = None


# Why an order failed, whatever the broker: ``OrderResult.error_code``. The broker's own code and words stay in
# ``broker_code`` and ``error`` for the operator.
ORDER_ERROR_CODES = (
    "BAD_VOLUME",  # the lots are off the symbol's step or outside its limits
    "BAD_STOPS",  # a stop loss or take profit on the wrong side, or not a price
    "STOPS_TOO_CLOSE",  # a stop loss or take profit nearer to the market than the symbol allows
    "POSITION_NOT_FOUND",  # the position to close or amend is not open
    "NOT_ENOUGH_MONEY",  # the margin the order needs is not free
    "MARKET_CLOSED",  # the symbol does not trade now (weekend, daily break, holiday)
    "TRADING_DISABLED",  # the symbol or the account may not trade (close-only, disabled)
    "RATE_LIMITED",  # refused for the request rate (sent again after the window; never executed)
    "REJECTED",  # refused by the broker for another reason
    "NOT_CONNECTED",  # no broker session: nothing was sent
    "NO_CONFIRMATION",  # sent, but no answer and no trace at the broker after every attempt: outcome unknown
)


@dataclass(frozen=True, slots=True)
class OrderResult:
    success: bool
    client_order_id: str
    ticket: int | None = None
    price: float | None = None
    volume: float = 0.0  # lots
    sl: float | None = None
    tp: float | None = None
    error: str = ""  # what the broker said, in words
    recovered: bool = False  # found by reconcile after a timeout, not from this request's reply
    error_code: str = ""  # one of ORDER_ERROR_CODES when success is False
    broker_code: str = ""  # the broker's own error code (e.g. TRADING_BAD_VOLUME)


@dataclass(frozen=True, slots=True)
class CommandArgs:
    """An operator command for the executor (pause, resume, close, close_all, set_symbol_config, ...)."""

    name: str
    args: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueryArgs:
    table: str
    where: dict = field(default_factory=dict)
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Pong:
    """``ping``: who answered."""

    service: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Subscribed:
    """``subscribe``: the bars of ``symbol``/``timeframe`` are published; those after ``resumed_after`` first."""

    symbol: str
    timeframe: str
    subscribed: bool
    resumed_after: int | None = None  # bar open time the publication resumes after (None: live bars only)
    last_published: int | None = None  # open time of the last bar published for this pair


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    """``symbol_info``: a symbol's trading spec, its live quote and the quote->deposit rate."""

    symbol: str
    digits: int
    point: float
    pip_position: int
    pip_size: float
    lot_size: float  # units of the base asset in one lot (the contract size)
    min_lots: float
    step_lots: float
    max_lots: float
    min_sl_distance: float  # the nearest a stop loss may be to the market (price distance; 0 = none)
    min_tp_distance: float
    base_asset: str
    quote_asset: str
    deposit_currency: str
    quote_to_deposit: float  # one unit of the quote currency in the deposit currency
    pip_value_per_lot: float  # deposit currency per pip per lot
    bid: float | None = None
    ask: float | None = None
    spread: float | None = None
    market_open: bool = True


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """``account`` (and the account of a ``positions`` answer); the connector's broker port speaks it too.
    Costs are signed account money: equity = balance + gross_pnl + swap + commission."""

    balance: float
    equity: float  # balance + the open positions' net PnL
    margin: float
    free_margin: float
    margin_level: float  # % = equity / margin x 100 (0 when no margin is used)
    currency: str
    leverage: float
    gross_pnl: float = 0.0  # the open positions' totals
    swap: float = 0.0
    commission: float = 0.0


@dataclass(frozen=True, slots=True)
class Position:
    """An open position at the broker (``positions``); the connector's broker port speaks it too."""

    ticket: int
    symbol: str
    direction: int  # +1 long, -1 short
    volume: float  # lots
    open_price: float
    open_time: float  # Unix s
    sl: float | None = None
    tp: float | None = None
    label: str = ""
    comment: str = ""
    used_margin: float = 0.0
    current_price: float = 0.0
    gross_pnl: float = 0.0  # price move at the last quote, deposit currency
    swap: float = 0.0  # charged so far
    commission: float = 0.0  # round turn: the opening's charge and the closing's to come
    pnl: float = 0.0  # net: gross_pnl + swap + commission


@dataclass(frozen=True, slots=True)
class BookQuote:
    """A symbol's live quote in a ``positions`` answer, with its quote->deposit rate (None: not known)."""

    bid: float
    ask: float
    quote_to_deposit: float | None = None


@dataclass(frozen=True, slots=True)
class MarketClosed:
    """A symbol whose market is closed, in a ``positions`` answer: since when (broker time, Unix s)."""

    since: float
    open: bool = False


@dataclass(frozen=True, slots=True)
class Positions:
    """``positions``: the open positions, with what an order decided on them needs (one trip, not three)."""

    positions: list[Position]
    account: AccountInfo
    quotes: dict[str, BookQuote] = field(default_factory=dict)  # symbol -> live quote
    markets: dict[str, MarketClosed] = field(default_factory=dict)  # symbols of a position whose market is closed
    server_time: float | None = None  # the broker's clock (Unix s)


@dataclass(frozen=True, slots=True)
class LastSignals:
    """``last_signals``: the last signal per symbol (``previous_direction`` is None: read back, not live)."""

    signals: dict[str, Signal]


@dataclass(frozen=True, slots=True)
class VirtualPosition:
    """The twin's virtual position of one symbol."""

    symbol: str
    timeframe: str
    direction: int
    intensity: int
    entry_price: float
    entry_time: int | None
    floating_pnl: float
    realized_pnl: float
    last_bar_time: int | None
    decisions: int


@dataclass(frozen=True, slots=True)
class VirtualPositions:
    """``virtual_positions``: the twin's position per warm symbol."""

    positions: dict[str, VirtualPosition]


@dataclass(frozen=True, slots=True)
class QueryResult:
    """``query``: the records found, each a map of the table's columns."""

    table: str
    records: list
    count: int


@dataclass(frozen=True, slots=True)
class Stopping:
    """``stop``: the shutdown started; its steps in order (``service:step``)."""

    state: str
    steps: list


@dataclass(frozen=True, slots=True)
class HaltCleared:
    """``clear_halt``: the system state after it, and why it was HALTED ("" when it was not)."""

    state: str
    was_halted: str


OP_HELLO = op("hello", Hello, Instruction, "a service announces itself; answered wait, go STEP or run")
OP_READY = op("ready", Ready, Instruction, "a service reports a boot step done; answered like hello")
OP_STATUS = op("status", NoArgs, None, "the answering process's status report")
OP_STEP = op("step", StepArgs, StepResult, "run one lifecycle step now (re-handshake of a dependent)")
OP_STOP = op("stop", StopArgs, Stopping, "orchestrator: run the ordered shutdown of the whole system")
OP_CLEAR_HALT = op("clear_halt", NoArgs, HaltCleared, "orchestrator: leave HALTED after a person has decided")
OP_PING = op("ping", NoArgs, Pong, "liveness probe")
OP_HISTORY = op("history", HistoryArgs, HistoryResult, "connector: closed bars from the broker")
OP_SUBSCRIBE = op("subscribe", SubscribeArgs, Subscribed, "connector: publish closed bars of a symbol and timeframe")
OP_SYMBOL_INFO = op("symbol_info", SymbolArgs, SymbolInfo, "connector: pip size, lot size, volume limits, quote")
OP_ACCOUNT = op("account", NoArgs, AccountInfo, "connector: balance, equity, margin, free margin")
OP_POSITIONS = op("positions", NoArgs, Positions, "connector: open positions (reconcile)")
OP_ORDER_OPEN = op("order_open", OrderOpenArgs, OrderResult, "connector: market order with relative SL/TP")
OP_ORDER_CLOSE = op("order_close", OrderCloseArgs, OrderResult, "connector: close a position (or part)")
OP_ORDER_AMEND = op("order_amend", OrderAmendArgs, OrderResult, "connector: change a position's SL/TP")
OP_LAST_SIGNALS = op("last_signals", NoArgs, LastSignals, "preditor: the last signal per symbol")
OP_SIGNALS_SINCE = op("signals_since", SignalsSinceArgs, SignalsSince,
                      "preditor: the signals decided after a bar time per symbol (what paper missed while down)")
OP_VIRTUAL_POSITIONS = op("virtual_positions", NoArgs, VirtualPositions, "preditor: the twin's position per symbol")
OP_COMMAND = op("command", CommandArgs, None, "executor: an operator command (pause, resume, close, ...)")
OP_QUERY = op("query", QueryArgs, QueryResult, "persistence: read records back")
OP_WRITE = op("write", WriteArgs, WriteResult, "persistence: store records; acknowledged only after a durable commit")


# ---- topics ----------------------------------------------------------------------------------


def hb_topic(service: str) -> str:
    return f"hb.{service}"


SYS_STATE_TOPIC = "sys.state"


def alert_topic(kind: str) -> str:
    return f"alert.{kind}"


def bar_topic(symbol: str, timeframe: str) -> str:
    return f"bar.{symbol}.{timeframe}"


def signal_topic(symbol: str) -> str:
    return f"signal.{symbol}"


def ack_topic(symbol: str) -> str:
    return f"ack.{symbol}"


def fill_topic(symbol: str) -> str:
    return f"fill.{symbol}"


def closed_topic(symbol: str) -> str:
    return f"closed.{symbol}"


def reject_topic(symbol: str) -> str:
    return f"reject.{symbol}"


ACCOUNT_TOPIC = "account"
CONNECTION_TOPIC = "conn.state"


def market_topic(symbol: str) -> str:
    return f"market.{symbol}"


def paper_trade_topic(symbol: str) -> str:
    return f"paper.trade.{symbol}"


def paper_metrics_topic(symbol: str) -> str:
    return f"paper.metrics.{symbol}"
