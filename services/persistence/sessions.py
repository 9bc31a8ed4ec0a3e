"""Session lifecycle, pure: every function takes the current state and time and returns records to
write (as `(table, record)` pairs for `Store.write_batch`) plus the resulting session. No clock, no I/O.

Lifecycle: `plan_startup` (new, or recover a session a crash left RUNNING), `needs_day_roll` /
`roll_session` at the UTC day boundary when close_on_day_change is set, `end_session` with stats and a
reason. A session row is changed by writing it again with rev + 1 (the store's versioned upsert), so
ending twice or replaying a decision is harmless. Ids of events derive from the session id (uuid5).
"""

from __future__ import annotations

import bisect
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from common.records import events as ev
from common.records import schema as rec
from common.records.schema import Record, Session, SessionHeartbeat, to_utc

Write = tuple[str, Record]


class EndReason(StrEnum):
    NORMAL = "NORMAL"  # orderly shutdown
    DAY_CHANGE = "DAY_CHANGE"  # UTC day boundary with close_on_day_change
    EMERGENCY = "EMERGENCY"  # halt / emergency stop
    MANUAL = "MANUAL"  # an operator ended it
    RECOVERED = "RECOVERED"  # found RUNNING after a crash and closed instead of resumed
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class SessionStats:
    final_balance: float | None = None
    total_trades: int = 0
    total_pnl: float = 0.0


@dataclass(frozen=True)
class Plan:
    session: Session  # the session running after this plan is written
    writes: list[Write] = field(default_factory=list)
    resumed: bool = False
    ended: Session | None = None  # a session this plan closed


def short_id(session_uuid: uuid.UUID) -> str:
    """The 8-hex session id used in other tables and order comments."""
    return session_uuid.hex[:8]


def utc_day(t: datetime):  # noqa: ANN201 - datetime.date
    return to_utc(t).date()


def day_changed(session_start: datetime, now: datetime) -> bool:
    """True when `now` is on a later UTC day than the session's start."""
    return utc_day(now) > utc_day(session_start)


def needs_day_roll(session: Session, now: datetime, *, close_on_day_change: bool) -> bool:
    return close_on_day_change and session.status == "RUNNING" and day_changed(session.start_time, now)


def start_session(new_id: uuid.UUID, now: datetime, *, initial_balance: float | None,
                  symbols: Sequence[str]) -> Plan:
    session = Session(id=new_id, session_id=short_id(new_id), start_time=now, initial_balance=initial_balance,
                      symbols=list(symbols))
    event = ev.make_event(
        ev.derived_id(new_id, "started"), now, ev.SESSION_STARTED, session_id=session.session_id,
        source="persistence",
        data={"initial_balance": initial_balance, "symbols": list(symbols)},
    )
    return Plan(session, [("sessions", session), ("events", event)])


def running_totals(session: Session, stats: SessionStats) -> Plan:
    """A running session's record with its totals so far (rev + 1); writes nothing when they did not change."""
    if session.status != "RUNNING" or (session.total_trades, session.total_pnl) == (stats.total_trades,
                                                                                     stats.total_pnl):
        return Plan(session)
    updated = session.model_copy(update={"rev": session.rev + 1, "total_trades": stats.total_trades,
                                         "total_pnl": stats.total_pnl})
    return Plan(updated, [("sessions", updated)])


def end_session(session: Session, now: datetime, stats: SessionStats, reason: EndReason,
                *, end_time: datetime | None = None) -> Plan:
    """Close a running session (rev + 1). Ending a STOPPED session writes nothing."""
    if session.status == "STOPPED":
        return Plan(session)
    ended = session.model_copy(update={
        "rev": session.rev + 1, "status": "STOPPED", "end_reason": reason.value,
        "end_time": to_utc(end_time or now), "final_balance": stats.final_balance,
        "total_trades": stats.total_trades, "total_pnl": stats.total_pnl,
    })
    event = ev.make_event(
        ev.derived_id(session.id, "ended"), now, ev.SESSION_ENDED, session_id=session.session_id,
        source="persistence",
        severity="WARNING" if reason in (EndReason.EMERGENCY, EndReason.RECOVERED) else "INFO",
        data={"reason": reason.value, "final_balance": stats.final_balance,
              "total_trades": stats.total_trades, "total_pnl": stats.total_pnl},
    )
    return Plan(ended, [("sessions", ended), ("events", event)], ended=ended)


def plan_startup(
    running: Session | None,
    now: datetime,
    *,
    new_id: uuid.UUID,
    initial_balance: float | None,
    symbols: Sequence[str],
    close_on_day_change: bool,
    last_seen: datetime | None = None,
    stale_stats: SessionStats = SessionStats(),
) -> Plan:
    """Decide the session at process start.

    - nothing RUNNING: start a new session;
    - a session left RUNNING (the previous run crashed) on the same UTC day, or close_on_day_change off:
      resume it (rev + 1, recovered_count + 1) and write a SESSION_RECOVERED event;
    - a session left RUNNING from an earlier UTC day with close_on_day_change on: end it with reason
      RECOVERED at `last_seen` (its last heartbeat; else its start) and start a new session.
    """
    if running is None or running.status != "RUNNING":
        return start_session(new_id, now, initial_balance=initial_balance, symbols=symbols)
    if needs_day_roll(running, now, close_on_day_change=close_on_day_change):
        closed = end_session(running, now, stale_stats, EndReason.RECOVERED,
                             end_time=last_seen or running.start_time)
        fresh = start_session(new_id, now, initial_balance=initial_balance, symbols=symbols)
        return Plan(fresh.session, closed.writes + fresh.writes, ended=closed.ended)
    resumed = running.model_copy(
        update={"rev": running.rev + 1, "recovered_count": running.recovered_count + 1}
    )
    data: dict[str, object] = {"session_id": running.session_id, "recovered_count": resumed.recovered_count}
    if last_seen is not None:
        data["last_seen"] = last_seen.isoformat()
        data["downtime_s"] = (to_utc(now) - to_utc(last_seen)).total_seconds()
    event = ev.make_event(
        ev.derived_id(running.id, f"recovered:{resumed.rev}"), now, ev.SESSION_RECOVERED,
        session_id=running.session_id, severity="WARNING", source="persistence", data=data,
        message="previous run ended without closing its session; session resumed",
    )
    return Plan(resumed, [("sessions", resumed), ("events", event)], resumed=True)


def roll_session(session: Session, now: datetime, stats: SessionStats, *, new_id: uuid.UUID,
                 new_initial_balance: float | None, symbols: Sequence[str] | None = None) -> Plan:
    """Day change: end `session` with DAY_CHANGE and start a new one with the current balance. The
    caller closes positions first (close_on_day_change)."""
    closed = end_session(session, now, stats, EndReason.DAY_CHANGE)
    fresh = start_session(new_id, now, initial_balance=new_initial_balance,
                          symbols=session.symbols if symbols is None else symbols)
    return Plan(fresh.session, closed.writes + fresh.writes, ended=closed.ended)


def heartbeat(session: Session, now: datetime, new_id: uuid.UUID, *, system_state: str | None = None,
              balance: float | None = None, equity: float | None = None, open_positions: int | None = None,
              backlog: int | None = None, data: dict[str, object] | None = None) -> Write:
    """A session heartbeat record (write one a minute or so; the last one dates a crash)."""
    return ("session_heartbeats", SessionHeartbeat(
        id=new_id, session_id=session.session_id, timestamp=now, system_state=system_state, balance=balance,
        equity=equity, open_positions=open_positions, backlog=backlog, data=dict(data or {}),
    ))


@dataclass(frozen=True)
class Totals:
    trades: int = 0  # positions closed (a position closed in parts counts once)
    closing_deals: int = 0
    pnl: float = 0.0  # net: every deal's pnl (opening commissions included)


def session_totals(trades: Iterable[rec.Record]) -> Totals:
    facts = []
    for t in trades:
        assert isinstance(t, rec.Trade)
        facts.append(TradeFacts(str(t.id), t.action, t.pnl, t.position_id))
    return totals_of(facts)


class TradeFacts(NamedTuple):
    """What the totals need of a stored trade (the store reads them without building the whole record)."""

    id: str
    action: str
    pnl: float
    position_id: str | None


def totals_of(trades: Iterable[TradeFacts]) -> Totals:
    """Positions closed (distinct positions with a closing deal), closing deals and the PnL summed in the order
    given (newest first, as the store lists them)."""
    positions: set[str] = set()
    deals = 0
    pnl = 0.0
    for t in trades:
        pnl += t.pnl
        if t.action != "OPEN":
            deals += 1
            positions.add(t.position_id or t.id)
    return Totals(len(positions), deals, round(pnl, 8))


def end_reason(asked: str | None, stop_reason: str, state_before_stop: str) -> EndReason:
    """The reason a session ends with: the one the step was given; else EMERGENCY when the system was HALTED
    when the stop began; else the one the operator's stop carried (`stopping <REASON>` in sys.state); else
    NORMAL."""
    if asked and asked.upper() in EndReason.__members__:
        return EndReason(asked.upper())
    if state_before_stop == "HALTED":
        return EndReason.EMERGENCY
    if stop_reason and stop_reason.upper() in EndReason.__members__:
        return EndReason(stop_reason.upper())
    return EndReason.NORMAL


def stop_reason_of(state_event_text: str) -> str | None:
    """The reason in the orchestrator's `stopping <REASON>` sys.state event, if that is what it says."""
    words = state_event_text.split()
    return words[1] if len(words) >= 2 and words[0] == "stopping" else None


class LedgerRow(NamedTuple):
    """A stored trade as the running totals need it, with what orders the store's listing of them."""

    rowid: int
    timestamp: str  # the stored text (fixed width: text order is time order)
    id: str
    action: str
    pnl: float
    position_id: str | None


@dataclass
class TradeLedger:
    """The real trades of the running session, kept in memory so that its totals need no read of them all each
    time a trade is stored: `totals()` is what `totals_of` gives over the store's listing (newest first, then by
    rowid), the PnL summed in that same order (the same float). Built from the store when the session starts (or
    after a restart, or a roll); `apply` takes the stored rows of the trades written since."""

    session_id: str
    _keys: dict[str, tuple[str, int, str, float]] = field(default_factory=dict)  # id -> its key in _order
    _order: list[tuple[str, int, str, float]] = field(default_factory=list)  # (timestamp, -rowid, id, pnl) ascending
    _closed: dict[str, str] = field(default_factory=dict)  # id of a closing deal -> its position (or its own id)
    _positions: Counter[str] = field(default_factory=Counter)  # closing deals per position

    @classmethod
    def of(cls, session_id: str, rows: Iterable[LedgerRow]) -> TradeLedger:
        ledger = cls(session_id)
        ledger.apply((r, session_id, False) for r in rows)
        return ledger

    def apply(self, stored: Iterable[tuple[LedgerRow, str | None, bool]]) -> None:
        """The rows of written trades with their stored session_id and is_paper: a real trade of this session
        is (re)placed, any other left out (a trade moved to another session is dropped)."""
        for row, session_id, is_paper in stored:
            self._drop(row.id)
            if session_id != self.session_id or is_paper:
                continue
            key = (row.timestamp, -row.rowid, row.id, row.pnl)
            self._keys[row.id] = key
            bisect.insort(self._order, key)
            if row.action != "OPEN":
                position = row.position_id or row.id
                self._closed[row.id] = position
                self._positions[position] += 1

    def __contains__(self, rid: object) -> bool:
        return rid in self._keys

    def _drop(self, rid: str) -> None:
        key = self._keys.pop(rid, None)
        if key is None:
            return
        del self._order[bisect.bisect_left(self._order, key)]
        position = self._closed.pop(rid, None)
        if position is not None:
            self._positions[position] -= 1
            if not self._positions[position]:
                del self._positions[position]

    def totals(self) -> Totals:
        pnl = 0.0
        for key in reversed(self._order):  # newest first; sequential as in totals_of (not sum(): compensated
            pnl += key[3]  # from Python 3.12 on)
        return Totals(len(self._positions), len(self._closed), round(pnl, 8))
