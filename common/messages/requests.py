"""The request operations' argument and result records (REQ/REP) and the typed order errors; the ``OPS`` table
naming each op with its records is in ``common/messages/__init__.py``. Part of the wire's one definition,
``common/messages/``."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.messages.events import Ack, MarketState, Signal
from common.schema import check

# ---- the bounds of the requests' arguments (checked when a request is decoded, before any handler sees it) ----
NAME_CHARS = 64  # a symbol, timeframe, step, table, command name
TEXT_CHARS = 200  # a free text: a stop reason, a version
MAX_TIME = 10**10  # a Unix time in seconds (year 2286): bar open times, since/until
MAX_PID = 2**22  # Linux's pid_max
MAX_TICKET = 2**63 - 1  # a broker position id (int64)
MAX_ORDER_LOTS = 10_000.0  # far above any symbol's own limit (the broker's max_lots decides), below any overflow
MAX_PRICE = 1e9  # a price or a price distance
MAX_FLIGHT = 10_000  # the orders a sender sends together (a flight): far above a bar's
CLIENT_ORDER_ID_CHARS = 100
COMMENT_CHARS = 100  # the order label
MAX_WRITE_TABLES = 16  # the tables of one write (persistence knows fewer: an unknown one's records are rejected)
MAX_WRITE_RECORDS = 1_000  # the records of one write, all tables together (a sender's outbox sends 200 at most)

# ---- request operations ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoArgs:
    pass


@dataclass(frozen=True, slots=True)
class Hello:
    service: str = field(metadata=check(max_len=NAME_CHARS))
    pid: int = field(metadata=check(ge=1, le=MAX_PID))
    epoch: int = field(metadata=check(ge=0))
    version: str = field(metadata=check(max_len=TEXT_CHARS))
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
    service: str = field(metadata=check(max_len=NAME_CHARS))
    epoch: int = field(metadata=check(ge=0))
    step: str = field(metadata=check(max_len=NAME_CHARS))
    ok: bool = True
    result: dict = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True, slots=True)
class StepArgs:
    step: str = field(metadata=check(max_len=NAME_CHARS))
    args: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepResult:
    step: str
    ok: bool
    result: dict = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True, slots=True)
class StopArgs:
    reason: str = field(default="MANUAL", metadata=check(max_len=TEXT_CHARS))


@dataclass(frozen=True, slots=True)
class WriteArgs:
    """Records for one or more tables, committed in one transaction: a map table -> its records, each table's in
    the order the sender handed them over; each record is a map with a client-made ``id`` (a UUID). Persistence
    checks the rest (table names, lists, ``MAX_WRITE_RECORDS`` in all: services/persistence/writes.py)."""

    tables: dict = field(metadata=check(max_len=MAX_WRITE_TABLES))


@dataclass(frozen=True, slots=True)
class WriteResult:
    acked: list  # ids durably committed (new, or already stored with the same content)
    rejected: dict = field(default_factory=dict)  # id -> reason: invalid, never retried


@dataclass(frozen=True, slots=True)
class SymbolArgs:
    symbol: str = field(metadata=check(max_len=NAME_CHARS))


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

    symbol: str = field(metadata=check(max_len=NAME_CHARS))
    timeframe: str = field(metadata=check(max_len=NAME_CHARS))
    count: int = field(default=0, metadata=check(ge=0))
    since: int | None = field(default=None, metadata=check(ge=0, le=MAX_TIME))  # bar open time, exclusive
    until: int | None = field(default=None, metadata=check(ge=0, le=MAX_TIME))  # bar open time, exclusive


@dataclass(frozen=True, slots=True)
class HistoryResult:
    symbol: str
    timeframe: str
    bars: list  # [[time, open, high, low, close, volume], ...]


@dataclass(frozen=True, slots=True)
class SubscribeArgs:
    """Publish closed bars of ``symbol``/``timeframe``; bars after ``since`` (open time) are published first."""

    symbol: str = field(metadata=check(max_len=NAME_CHARS))
    timeframe: str = field(metadata=check(max_len=NAME_CHARS))
    since: int | None = field(default=None, metadata=check(ge=0, le=MAX_TIME))


@dataclass(frozen=True, slots=True)
class OrderOpenArgs:
    symbol: str = field(metadata=check(max_len=NAME_CHARS))
    direction: int = field(metadata=check(one_of=(1, -1)))  # +1 long, -1 short
    lots: float = field(metadata=check(gt=0, le=MAX_ORDER_LOTS))
    # idempotency key: the same id never opens a second position
    client_order_id: str = field(metadata=check(max_len=CLIENT_ORDER_ID_CHARS))
    # price distance from the fill
    sl_distance: float | None = field(default=None, metadata=check(ge=0, le=MAX_PRICE))
    tp_distance: float | None = field(default=None, metadata=check(ge=0, le=MAX_PRICE))
    comment: str = field(default="", metadata=check(max_len=COMMENT_CHARS))  # the order label
    # the orders its sender sent together with it, itself counted (its flight): the connector makes their journal
    # lines durable with one fdatasync, waiting a moment for the rest (services/connector/order_ops.py)
    flight: int = field(default=1, metadata=check(ge=1, le=MAX_FLIGHT))


@dataclass(frozen=True, slots=True)
class OrderCloseArgs:
    ticket: int = field(metadata=check(ge=1, le=MAX_TICKET))
    # None: the whole position
    lots: float | None = field(default=None, metadata=check(gt=0, le=MAX_ORDER_LOTS))
    client_order_id: str = field(default="", metadata=check(max_len=CLIENT_ORDER_ID_CHARS))
    flight: int = field(default=1, metadata=check(ge=1, le=MAX_FLIGHT))  # as OrderOpenArgs.flight


@dataclass(frozen=True, slots=True)
class OrderAmendArgs:
    ticket: int = field(metadata=check(ge=1, le=MAX_TICKET))
    sl: float | None = field(default=None, metadata=check(gt=0, le=MAX_PRICE))  # a price; None: no stop loss
    tp: float | None = field(default=None, metadata=check(gt=0, le=MAX_PRICE))


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

    name: str = field(metadata=check(max_len=NAME_CHARS))
    args: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueryArgs:
    table: str = field(metadata=check(max_len=NAME_CHARS))
    where: dict = field(default_factory=dict)
    limit: int = 100  # <= 0: no limit (the store's own cap holds)


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


# ---- the executor's command results (op ``command``): one record per command, its ``command`` field names it
# ---- (``COMMAND_RESULTS``, a schema.OneOf); common/commands.py's command classes state the same records


@dataclass(frozen=True, slots=True)
class Paused:
    """``pause``: openings refused from now on (closes go on); ``was_paused``: they already were."""

    command: str
    paused: bool
    was_paused: bool


@dataclass(frozen=True, slots=True)
class Resumed:
    """``resume``: openings allowed again, unless a halt still refuses them (``halted``: lifted by reset_halt, or
    the system's HALTED by clear_halt)."""

    command: str
    paused: bool
    halted: bool


@dataclass(frozen=True, slots=True)
class Closing:
    """``close`` (``symbol``) / ``close_all`` (``symbol`` ""): the tickets of the positions closed and the ack of
    each close, as published on ``ack.<SYMBOL>``."""

    command: str
    closing: list  # tickets, in order
    symbol: str = ""
    acks: list[Ack] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class HaltReset:
    """``reset_halt``: the executor's own halt lifted; ``was`` its reason ("" when there was none); ``halted``:
    openings still refused by the system's HALTED."""

    command: str
    halted: bool
    was: str


@dataclass(frozen=True, slots=True)
class LossesReset:
    """``reset_losses``: the loss streak and its cooldown cleared."""

    command: str
    consecutive_losses: int


@dataclass(frozen=True, slots=True)
class SymbolConfigSet:
    """``set_symbol_config``: the symbol's entry as written (the executor's config schema, hence a map)."""

    command: str
    symbol: str
    config: dict


@dataclass(frozen=True, slots=True)
class RiskConfigSet:
    """``set_risk_config``: the ``_risk`` section as written (the executor's config schema, hence a map)."""

    command: str
    risk: dict


@dataclass(frozen=True, slots=True)
class TradingSymbol:
    """A symbol in ``executor_status``: its config (lots by intensity 1-3), whether a model trades it, and the last
    sync decision on it ("" for none yet)."""

    enabled: bool
    lots: list  # [weak, moderate, strong]
    sl_usd: float
    tp_usd: float
    max_spread_pips: float
    off_step: str  # refuse | round_down
    modelled: bool
    last_decision: str = ""


@dataclass(frozen=True, slots=True)
class TradingPosition:
    """A position on the account as the executor sees it (``executor_status``)."""

    ticket: int
    symbol: str
    direction: int  # +1 long, -1 short
    lots: float
    label: str = ""


@dataclass(frozen=True, slots=True)
class DueAtOpen:
    """A close the broker refused as MARKET_CLOSED, kept to be sent once at the open (``executor_status``)."""

    ticket: int
    symbol: str
    lots: float
    client_order_id: str  # the refused close's: the same order at the open
    reason: str  # the close's own reason (SIGNAL_WAIT, MANUAL_CLOSE, EMERGENCY_DD, ...)
    action: str  # the ack action of the refused close
    bar_time: int | None  # the signal's bar; None for a command, the emergency, the stop
    since: float  # when the broker refused it (Unix s)
    state: str  # WAITING (for the open) | SENT (at the open, answer awaited)
    sent: int = 0  # times sent at an open


@dataclass(frozen=True, slots=True)
class RiskStatus:
    """The risk guard's state (``executor_status``): the session's balance and equity, the loss streak, the
    executor's own halt."""

    session_start_balance: float | None
    peak_equity: float | None
    equity: float | None
    consecutive_losses: int = 0
    cooldown_until: float | None = None
    halted: bool = False  # the executor's own halt (the system's HALTED is not here)
    halt_reason: str = ""
    recent_close_ids: list = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TradingState:
    """``executor_status``: the executor's trading state. The first fields come from the command's handler; the
    rest (from ``synced``) are the process's own facts, added by its service."""

    command: str
    paused: bool
    halted: bool  # openings refused by a halt: the executor's own (risk.halted) or the system's HALTED
    halt_reason: str  # the executor's own halt's reason ("" when none)
    consecutive_losses: int
    cooldown_until: float | None
    positions: list[TradingPosition]  # read from the connector now (the last known when it does not answer)
    orphans: list  # symbols of a position that no model trades
    modelled: list  # symbols a model trades
    symbols: dict[str, TradingSymbol]  # every configured or modelled symbol
    risk: RiskStatus
    synced: bool = False  # executor.sync ran
    connected: bool | None = None  # the broker session, as the connector said last (None: not heard)
    stopped: bool = False  # executor.stop ran
    due_closes: list[DueAtOpen] = field(default_factory=list)
    markets: dict[str, MarketState] = field(default_factory=dict)  # what the connector said last per symbol
    closed_markets: list = field(default_factory=list)  # symbols the last positions answer listed as closed
    last_bar_time: dict = field(default_factory=dict)  # symbol -> bar open time of the last signal evaluated
    pending_signals: list = field(default_factory=list)  # symbols with a signal waiting to be evaluated
