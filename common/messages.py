"""Every message on the wire, defined once.

Two registries:
- ``EVENTS``: published records, by envelope ``type`` (the PUB/SUB stream);
- ``OPS``: request operations, by ``op`` (REQ/REP), with their argument and result records.

A record is a dataclass whose field annotations are the schema: ``from_wire`` validates a
decoded map against it (required fields present, primitive types right, unknown fields
ignored for forward compatibility) and raises :class:`SchemaError` naming the field.

Topics (dotted, so SUB prefix filters work) are built by the helpers at the bottom.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any


class SchemaError(ValueError):
    pass


# ---- schema machinery ------------------------------------------------------------------------

_PRIMITIVES = (int, float, str, bool, dict, list, bytes)


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    kinds: tuple[type, ...]  # accepted python types
    optional: bool  # None accepted
    required: bool  # no default
    exact: frozenset  # the same types, for the fast exact-type check


_SCHEMAS: dict[type, tuple[_FieldSpec, ...]] = {}
_MISSING = object()


def _kinds(tp: Any) -> tuple[tuple[type, ...], bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        kinds: list[type] = []
        optional = False
        for arg in typing.get_args(tp):
            if arg is type(None):
                optional = True
            else:
                kinds.extend(_kinds(arg)[0])
        return tuple(kinds), optional
    if origin is not None:
        tp = origin
    if tp is Any:
        return (object,), True
    if tp is float:
        return (float, int), False
    if tp in _PRIMITIVES:
        return (tp,), False
    raise TypeError(f"unsupported field type {tp!r}")


def _schema(cls: type) -> tuple[_FieldSpec, ...]:
    spec = _SCHEMAS.get(cls)
    if spec is None:
        hints = typing.get_type_hints(cls)
        specs = []
        for f in dataclasses.fields(cls):
            kinds, optional = _kinds(hints[f.name])
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            specs.append(_FieldSpec(f.name, kinds, optional, required, frozenset(kinds)))
        spec = _SCHEMAS[cls] = tuple(specs)
    return spec


def from_wire(cls: type, raw: Any) -> Any:
    """Validate a decoded map against ``cls`` and build the record."""
    if type(raw) is not dict:
        raise SchemaError(f"expected a map, got {type(raw).__name__}")
    values = {}
    get = raw.get
    for f in _SCHEMAS.get(cls) or _schema(cls):
        value = get(f.name, _MISSING)
        if value is _MISSING:
            if f.required:
                raise SchemaError(f"missing field '{f.name}'")
            continue
        if type(value) not in f.exact:  # the common case costs one set lookup
            if value is None:
                if not f.optional:
                    raise SchemaError(f"field '{f.name}' is null")
            elif not isinstance(value, f.kinds) or (isinstance(value, bool) and bool not in f.kinds):
                raise SchemaError(f"field '{f.name}' has type {type(value).__name__}")
        values[f.name] = value
    return cls(**values)


def to_wire(record: Any) -> Any:
    """A record as a plain map (non-dataclass values pass through)."""
    if dataclasses.is_dataclass(record):
        return {f.name: getattr(record, f.name) for f in _schema(type(record))}
    return record


EVENTS: dict[str, type] = {}
_TYPE_NAMES: dict[type, str] = {}


def event(name: str):
    def register(cls: type) -> type:
        EVENTS[name] = cls
        _TYPE_NAMES[cls] = name
        _schema(cls)
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
    result: type | None  # None: a free-form map (status reports)
    doc: str


OPS: dict[str, OpSpec] = {}


def op(name: str, args: type, result: type | None, doc: str) -> OpSpec:
    spec = OpSpec(name, args, result, doc)
    OPS[name] = spec
    _schema(args)
    if result is not None:
        _schema(result)
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


OP_HELLO = op("hello", Hello, Instruction, "a service announces itself; answered wait, go STEP or run")
OP_READY = op("ready", Ready, Instruction, "a service reports a boot step done; answered like hello")
OP_STATUS = op("status", NoArgs, None, "the answering process's status report")
OP_STEP = op("step", StepArgs, StepResult, "run one lifecycle step now (re-handshake of a dependent)")
OP_STOP = op("stop", StopArgs, None, "orchestrator: run the ordered shutdown of the whole system")
OP_CLEAR_HALT = op("clear_halt", NoArgs, None, "orchestrator: leave HALTED after a person has decided")
OP_PING = op("ping", NoArgs, None, "liveness probe")
OP_HISTORY = op("history", HistoryArgs, HistoryResult, "connector: closed bars from the broker")
OP_SUBSCRIBE = op("subscribe", SubscribeArgs, None, "connector: publish closed bars of a symbol and timeframe")
OP_SYMBOL_INFO = op("symbol_info", SymbolArgs, None, "connector: pip size, lot size, volume limits, quote->deposit")
OP_ACCOUNT = op("account", NoArgs, None, "connector: balance, equity, margin, free margin")
OP_POSITIONS = op("positions", NoArgs, None, "connector: open positions (reconcile)")
OP_ORDER_OPEN = op("order_open", OrderOpenArgs, OrderResult, "connector: market order with relative SL/TP")
OP_ORDER_CLOSE = op("order_close", OrderCloseArgs, OrderResult, "connector: close a position (or part)")
OP_ORDER_AMEND = op("order_amend", OrderAmendArgs, OrderResult, "connector: change a position's SL/TP")
OP_LAST_SIGNALS = op("last_signals", NoArgs, None, "preditor: the last signal per symbol")
OP_SIGNALS_SINCE = op("signals_since", SignalsSinceArgs, SignalsSince,
                      "preditor: the signals decided after a bar time per symbol (what paper missed while down)")
OP_VIRTUAL_POSITIONS = op("virtual_positions", NoArgs, None, "preditor: the twin's virtual position per symbol")
OP_COMMAND = op("command", CommandArgs, None, "executor: an operator command (pause, resume, close, ...)")
OP_QUERY = op("query", QueryArgs, None, "persistence: read records back")
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
