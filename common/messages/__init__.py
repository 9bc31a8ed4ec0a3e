"""Every message on the wire, defined once: this package is that one place.

Two registries (``registry.py``):
- ``EVENTS``: published records, by envelope ``type`` (the PUB/SUB stream; the records in ``events.py``);
- ``OPS``: request operations, by ``op`` (REQ/REP), with their argument and result records (the records in
  ``requests.py``, the table of ops below; the ``status`` reports in ``status.py``).

A record is a dataclass whose field annotations are the schema (``common/schema.py``): ``from_wire``
validates a decoded map against it, nested records included, and raises :class:`SchemaError` naming
the field's path; ``to_wire`` gives the plain maps back (field names stay the wire's keys).

Topics (dotted, so SUB prefix filters work) are built by the helpers at the bottom. Callers name everything
through the package (``from common import messages``; ``messages.Bar``, ``messages.OP_HISTORY``, ...).
"""

from __future__ import annotations

from collections.abc import Callable

from common.messages.events import (
    BOOTING,
    DEGRADED,
    FAILED,
    HALTED,
    MAX_RUN,
    RUNNING,
    S_RUNNING,
    S_STEP,
    S_STOPPING,
    S_WAITING,
    STOPPING,
    SYSTEM_STATES,
    AccountUpdate,
    Ack,
    Alert,
    Bar,
    BarRun,
    ConnectionState,
    Fill,
    Heartbeat,
    MarketState,
    OrderRejected,
    PaperMetrics,
    PaperTrade,
    PositionClosed,
    Signal,
    SignalRun,
    SysState,
    run_items,
    split_run,
)
from common.messages.registry import (
    EVENTS,
    OPS,
    OpSpec,
    event,
    op,
    type_name,
)
from common.messages.requests import (
    ORDER_ERROR_CODES,
    AccountInfo,
    BookQuote,
    Closing,
    CommandArgs,
    DueAtOpen,
    HaltCleared,
    HaltReset,
    Hello,
    HistoryArgs,
    HistoryResult,
    Instruction,
    LastSignals,
    LossesReset,
    MarketClosed,
    NoArgs,
    OrderAmendArgs,
    OrderCloseArgs,
    OrderOpenArgs,
    OrderResult,
    Paused,
    Pong,
    Position,
    Positions,
    QueryArgs,
    QueryResult,
    Ready,
    Resumed,
    RiskConfigSet,
    RiskStatus,
    SignalsSince,
    SignalsSinceArgs,
    StepArgs,
    StepResult,
    StopArgs,
    Stopping,
    SubscribeArgs,
    Subscribed,
    SymbolArgs,
    SymbolConfigSet,
    SymbolInfo,
    TradingPosition,
    TradingState,
    TradingSymbol,
    VirtualPosition,
    VirtualPositions,
    WriteArgs,
    WriteResult,
)
from common.messages.status import (
    STATUS_RESULTS,
    ConnectorStatus,
    ExecutorReport,
    JournalSummary,
    LatencySummary,
    ModelStatus,
    OrchestratorStatus,
    OrdersInFlight,
    OutboxCounts,
    PaperAccountStatus,
    PaperStatus,
    PersistenceStatus,
    PreditorStatus,
    ProcessStatus,
    SequenceCounts,
    ServiceSummary,
    StoreStatus,
    TwinPosition,
)
from common.schema import OneOf
from common.schema import SchemaError as SchemaError  # re-exported: callers name messages.SchemaError, ...
from common.schema import from_wire as from_wire
from common.schema import to_wire as to_wire

# ---- request operations: the OPS table (records in requests.py) -----------------------------

OP_HELLO = op("hello", Hello, Instruction, "a service announces itself; answered wait, go STEP or run")
OP_READY = op("ready", Ready, Instruction, "a service reports a boot step done; answered like hello")
OP_STATUS = op("status", NoArgs, STATUS_RESULTS, "the answering process's status report (status.py, by service)")
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
# the executor's command results by the command's name; common/commands.py's command classes state the same
# records (`result`), and tests/common/test_commands.py checks the two agree
COMMAND_RESULTS = OneOf("command", {
    "pause": Paused, "resume": Resumed, "close": Closing, "close_all": Closing, "reset_halt": HaltReset,
    "reset_losses": LossesReset, "set_symbol_config": SymbolConfigSet, "set_risk_config": RiskConfigSet,
    "executor_status": TradingState,
})
OP_COMMAND = op("command", CommandArgs, COMMAND_RESULTS, "executor: an operator command (pause, resume, close, ...)")
OP_QUERY = op("query", QueryArgs, QueryResult, "persistence: read records back")
OP_WRITE = op("write", WriteArgs, WriteResult, "persistence: store records; acknowledged only after a durable commit")
# another host's supervisord through its agent: messages.hosts.OP_HOST_* (registered there)
from common.messages import hosts  # noqa: E402, F401, I001


# ---- topics ----------------------------------------------------------------------------------


def hb_topic(service: str) -> str:
    return f"hb.{service}"


SYS_STATE_TOPIC = "sys.state"


def alert_topic(kind: str) -> str:
    return f"alert.{kind}"


def bar_topic(symbol: str, timeframe: str) -> str:
    return f"bar.{symbol}.{timeframe}"


def bars_topic(symbol: str, timeframe: str) -> str:
    """A BarRun's topic (SUB prefix ``bars.``: apart from ``bar.``, whose subscribers read single bars)."""
    return f"bars.{symbol}.{timeframe}"


def _per_symbol(prefix: str) -> Callable[[str], str]:
    """The topic function of a per-symbol stream: `<prefix>.<SYM>` (SUB prefixes match on `<prefix>.`)."""

    def topic(symbol: str) -> str:
        return f"{prefix}.{symbol}"

    topic.__name__ = topic.__qualname__ = f"{prefix.replace('.', '_')}_topic"
    return topic


signal_topic = _per_symbol("signal")
signals_topic = _per_symbol("signals")  # a SignalRun (SUB prefix "signals." does not match "signal." nor the reverse)
ack_topic = _per_symbol("ack")
fill_topic = _per_symbol("fill")
closed_topic = _per_symbol("closed")
reject_topic = _per_symbol("reject")
market_topic = _per_symbol("market")
paper_trade_topic = _per_symbol("paper.trade")
paper_metrics_topic = _per_symbol("paper.metrics")

ACCOUNT_TOPIC = "account"
CONNECTION_TOPIC = "conn.state"


__all__ = [  # the wire's names, as callers use them: messages.<name>
    "ACCOUNT_TOPIC", "AccountInfo", "AccountUpdate", "Ack", "Alert", "BOOTING", "Bar", "BarRun", "BookQuote",
    "COMMAND_RESULTS", "CONNECTION_TOPIC", "Closing", "CommandArgs", "ConnectionState", "ConnectorStatus",
    "DEGRADED", "DueAtOpen", "EVENTS", "ExecutorReport", "FAILED", "Fill", "HALTED",
    "HaltCleared", "HaltReset", "MAX_RUN", "Heartbeat", "Hello", "HistoryArgs", "HistoryResult", "Instruction",
    "JournalSummary", "LastSignals", "LatencySummary", "LossesReset", "MarketClosed", "MarketState",
    "ModelStatus", "NoArgs", "OPS", "OP_ACCOUNT", "OP_CLEAR_HALT", "OP_COMMAND", "OP_HELLO", "OP_HISTORY",
    "OP_LAST_SIGNALS", "OP_ORDER_AMEND", "OP_ORDER_CLOSE", "OP_ORDER_OPEN", "OP_PING", "OP_POSITIONS", "OP_QUERY",
    "OP_READY", "OP_SIGNALS_SINCE", "OP_STATUS", "OP_STEP", "OP_STOP", "OP_SUBSCRIBE", "OP_SYMBOL_INFO",
    "OP_VIRTUAL_POSITIONS", "OP_WRITE", "ORDER_ERROR_CODES", "OpSpec", "OrchestratorStatus", "OrderAmendArgs",
    "OrderCloseArgs", "OrderOpenArgs", "OrderRejected", "OrderResult", "OrdersInFlight", "OutboxCounts",
    "PaperAccountStatus", "PaperMetrics", "PaperStatus", "PaperTrade", "Paused", "PersistenceStatus", "Pong",
    "Position", "PositionClosed", "Positions", "PreditorStatus", "ProcessStatus", "QueryArgs", "QueryResult",
    "RUNNING", "Ready", "Resumed", "RiskConfigSet", "RiskStatus", "STATUS_RESULTS", "STOPPING", "SYSTEM_STATES",
    "SYS_STATE_TOPIC", "S_RUNNING", "S_STEP", "S_STOPPING", "S_WAITING", "SchemaError", "SequenceCounts",
    "ServiceSummary", "Signal", "SignalRun", "SignalsSince", "SignalsSinceArgs", "StepArgs", "StepResult", "StopArgs",
    "Stopping", "StoreStatus", "SubscribeArgs", "Subscribed", "SymbolArgs", "SymbolConfigSet", "SymbolInfo",
    "SysState", "TradingPosition", "TradingState", "TradingSymbol", "TwinPosition", "VirtualPosition",
    "VirtualPositions", "WriteArgs", "WriteResult", "ack_topic", "alert_topic", "bar_topic", "bars_topic",
    "closed_topic", "event", "fill_topic", "from_wire", "hb_topic", "market_topic", "op", "paper_metrics_topic",
    "paper_trade_topic", "reject_topic", "run_items", "signal_topic", "signals_topic", "split_run", "to_wire",
    "type_name",
]
