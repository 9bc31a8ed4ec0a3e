"""The ``status`` op's result: each process's report, typed. Part of the wire's one definition, ``common/messages/``.

``ProcessStatus`` is the part every process has (built by ``common/runtime.py``); each service's record extends it
by inheritance with its own fields, keeping one flat map on the wire (the service's keys beside the common ones).
The op's result is chosen by ``service`` (``STATUS_RESULTS``); any other process decodes as ``ProcessStatus``.
Records are keyword-only so a subclass may add required fields after the common ones.

Left as plain maps (not the system's own facts, or config maps): the broker adapter's report (connector
``broker``: the adapter's ``describe()`` merged with the connection's facts), the recorder's ``health()``
(persistence ``persistence``), the stored session row (persistence ``session``), heartbeat ``info`` and the
orchestrator's ``boot_log`` events (free-form fields per event). The executor's facts are the records of its
``executor_status`` command (``TradingPosition``, ``DueAtOpen``, ``RiskStatus``) and ``MarketState``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.messages.events import MarketState
from common.messages.requests import DueAtOpen, RiskStatus, TradingPosition
from common.schema import OneOf

_RECORD = {"frozen": True, "slots": True, "kw_only": True}


@dataclass(**_RECORD)
class OutboxCounts:
    """The outbox of records for persistence: waiting, acknowledged, refused."""

    pending: int
    acked: int
    rejected: int


@dataclass(**_RECORD)
class SequenceCounts:
    """What the subscriber's sequence tracker saw (all 0 for a process that subscribes to nothing)."""

    gaps: int
    missed: int
    restarts: int
    dropped: int


@dataclass(**_RECORD)
class ProcessStatus:
    """The part of the status report every process has."""

    service: str
    pid: int
    epoch: int
    version: str
    state: str
    uptime_s: float
    rss_bytes: int
    steps: list[str]  # lifecycle steps done by this process
    progress: dict[str, int]  # monotonic counters
    wire_errors: dict[str, int]  # malformed frames by kind
    sequence: SequenceCounts
    system_state: str
    dry_run: bool
    not_implemented: list[str]
    outbox: OutboxCounts
    refused: dict[str, int] = field(default_factory=dict)  # calls refused by role ("op caller" -> count; roles.py)


# ---- orchestrator ------------------------------------------------------------------------------


@dataclass(**_RECORD)
class ServiceSummary:
    """The orchestrator's view of one service (None: not known, e.g. no heartbeat yet)."""

    state: str
    pid: int
    epoch: int
    uptime_s: float | None
    hb_age_s: float | None
    rss_bytes: int | None
    restarts: int | None  # None for the orchestrator itself: supervisord knows its past lives
    steps: list[str]
    supervisor_state: str
    info: dict  # the last heartbeat's health facts (each service's own)
    last_restart_reason: str
    wire_errors: dict[str, int]
    failure: str | None = None  # why it cannot start, in words, when it failed permanently (common/failure.py)
    counted_pid: int = 0  # the newest process ``restarts`` counts (a respawn seen by supervisord before it said hello
    # is counted while ``pid``/``epoch`` are still the old one's); 0 when none is known


@dataclass(**_RECORD)
class OrchestratorStatus(ProcessStatus):
    system: str
    since_ts: int
    halted_reason: str
    issues: list[str]
    supervisor: str  # "ok" or why supervisord cannot be asked
    services: dict[str, ServiceSummary]
    boot_log: list[dict]  # go/ready/restart events: {event, ts, ...their own fields}
    failed_reason: str = ""  # "connector: <cause>; ..." for every program that failed permanently ("" when none)
    alerts: list[str] = field(default_factory=list)  # the last warning/critical alerts heard (kept across restarts)
    refused_models: list[str] = field(default_factory=list)  # what the preditor programs' loads refused, and why


# ---- connector ---------------------------------------------------------------------------------


@dataclass(**_RECORD)
class JournalSummary:
    entries: int
    path: str


@dataclass(**_RECORD)
class OrdersInFlight:
    in_flight: int
    in_flight_peak: int


@dataclass(**_RECORD)
class LatencySummary:
    """count, p50, p90, p99, max (ms, nearest rank) of samples; the rank values None without a sample."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


@dataclass(**_RECORD)
class ConnectorStatus(ProcessStatus):
    broker: dict  # type, environment, connected, reason, auth_problem, server_time + the adapter's describe()
    subscriptions: dict[str, list[str]]  # symbol -> timeframes published
    last_bar_time: dict[str, int]  # "SYMBOL.TF" -> the last closed bar published
    journal: JournalSummary
    orders: OrdersInFlight
    bar_to_order_ms: LatencySummary


# ---- preditor ----------------------------------------------------------------------------------


@dataclass(**_RECORD)
class ModelStatus:
    """One model's twin in the preditor."""

    file: str
    timeframe: str
    model_id: str
    legacy: bool
    warm: bool
    restored: str  # what the snapshot restore did ("" before it ran)
    last_bar: int | None
    decisions: int
    signals: int
    last_bar_age_s: float | None
    error: str


@dataclass(**_RECORD)
class PreditorStatus(ProcessStatus):
    models: dict[str, ModelStatus]  # by symbol
    errors: list[str]
    pending_bars: int


# ---- executor ----------------------------------------------------------------------------------


@dataclass(**_RECORD)
class ExecutorReport(ProcessStatus):  # not ExecutorStatus: that is the command (common/commands.py)
    symbols: list[str]
    paused: bool
    halted: bool
    halt_reason: str
    stopped: bool
    synced: bool
    connected: bool | None  # None: no connection state heard yet
    positions: list[TradingPosition]
    due_closes: list[DueAtOpen]
    markets: dict[str, MarketState]
    closed_markets: list[str]
    orphans: list[str]
    modelled: list[str]
    last_decisions: dict[str, str]
    last_bar_time: dict[str, int]
    pending_signals: list[str]
    risk: RiskStatus


# ---- paper -------------------------------------------------------------------------------------


@dataclass(**_RECORD)
class TwinPosition:
    direction: int
    intensity: int
    entry_price: float
    entry_time: int | None
    floating_pnl: float


@dataclass(**_RECORD)
class PaperAccountStatus:
    balance: float
    equity: float
    trades: int
    pnl: float
    last_bar_time: int | None
    position: TwinPosition


@dataclass(**_RECORD)
class PaperStatus(ProcessStatus):
    accounts: dict[str, PaperAccountStatus]  # by symbol
    restored: bool
    state_file: str
    journal: str
    unsaved: int


# ---- persistence -------------------------------------------------------------------------------


@dataclass(**_RECORD)
class StoreStatus:
    open: bool
    path: str
    last_error: str


@dataclass(**_RECORD)
class PersistenceStatus(ProcessStatus):
    store: StoreStatus
    session: dict | None  # the session's stored row; None before one is open
    persistence: dict  # the recorder's health() (or {"error": ...}); {} while the store is closed
    unwritten: int
    balance: float | None


# the status op's result: the record of the answering service, else (a process that is none of the six) the common part
STATUS_RESULTS = OneOf("service", {
    "orchestrator": OrchestratorStatus, "connector": ConnectorStatus, "preditor": PreditorStatus,
    "executor": ExecutorReport, "paper": PaperStatus, "persistence": PersistenceStatus,
}, default=ProcessStatus)
