"""The recorder: what the persistence service does, minus the sockets: one object the REP handlers call.

`service.py` owns the clock and the ids' randomness at the edge: every method that decides something
takes `now` (a timezone-aware datetime). Results are plain dicts ready for a msgpack reply.

    recorder = Recorder.open(cfg.path(cfg.persistence.sqlite_path), build_sinks(section))
    recorder.start_session(now, initial_balance=..., symbols=[...], close_on_day_change=cfg.close_on_day_change)
    recorder.write("events", {...})                      # REP op persistence.write
    recorder.health()                                    # heartbeat: backlog, parked, last errors
    recorder.end_session(now, reason=EndReason.NORMAL, final_balance=...)
    recorder.close(flush_s=5)
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from common.records import events as ev
from common.records import schema as rec
from services.persistence import sessions as ss
from services.persistence.sinks import Sink
from services.persistence.store import Store, WriteAck
from services.persistence.worker import DrainWorker


def ack_dict(ack: WriteAck) -> dict[str, Any]:
    return {"table": ack.table, "id": ack.id, "rev": ack.rev, "status": ack.status, "fields": list(ack.fields),
            "ok": ack.ok}


class NoSession(RuntimeError):
    """A session-bound write (trade, heartbeat) arrived before a session was started."""


class Recorder:
    def __init__(self, store: Store, worker: DrainWorker | None):
        self.store = store
        self.worker = worker
        self.session: rec.Session | None = None

    @classmethod
    def open(cls, db_path: str | Path, sinks: Sequence[Sink] = (), *, drain: bool = True,
             busy_timeout_ms: int = 5000) -> Recorder:
        store = Store.open(db_path, sinks=[s.name for s in sinks], busy_timeout_ms=busy_timeout_ms)
        worker = DrainWorker(db_path, sinks).start() if (drain and sinks) else None
        return cls(store, worker)

    def close(self, flush_s: float = 0.0) -> list[dict[str, Any]]:
        status = self.worker.stop(flush_s=flush_s) if self.worker else []
        self.store.close()
        return status

    # ---- generic writes -------------------------------------------------------------------------

    def write_batch(self, items: Iterable[tuple[str, Mapping[str, Any] | rec.Record]], *,
                    keep_stored_session: Collection[int] = ()) -> list[dict[str, Any]]:
        acks = self.store.write_batch(items, keep_stored_session=keep_stored_session)
        if self.worker and any(a.status in ("stored", "updated") for a in acks):
            self.worker.wake()
        return [ack_dict(a) for a in acks]

    def write(self, table: str, record: Mapping[str, Any] | rec.Record) -> dict[str, Any]:
        return self.write_batch([(table, record)])[0]

    def query(self, table: str, **filters: Any) -> list[dict[str, Any]]:
        return [rec.to_json(r) for r in self.store.query(table, **filters)]

    # ---- sessions -------------------------------------------------------------------------------

    def _apply(self, plan: ss.Plan) -> dict[str, Any]:
        self.write_batch(plan.writes)
        self.session = plan.session if plan.session.status == "RUNNING" else None
        out: dict[str, Any] = {"session": rec.to_json(plan.session), "resumed": plan.resumed}
        if plan.ended is not None:
            out["ended"] = rec.to_json(plan.ended)
        return out

    def session_stats(self, session: rec.Session, final_balance: float | None, *,
                      is_paper: bool = False) -> ss.SessionStats:
        """Totals from the trades stored for the session (real trades unless is_paper)."""
        n, pnl = self.store.trade_totals(session.session_id, is_paper=is_paper)
        return ss.SessionStats(final_balance, n, pnl)

    def start_session(self, now: datetime, *, initial_balance: float | None, symbols: Sequence[str],
                      close_on_day_change: bool) -> dict[str, Any]:
        """New session, or resume the one a crash left RUNNING (see sessions.plan_startup). Calling it
        again while this process has a session returns that session and writes nothing."""
        if self.session is not None:
            return {"session": rec.to_json(self.session), "resumed": False}
        running = self.store.running_session()
        last_seen = self.store.last_heartbeat(running.session_id) if running else None
        stale = self.session_stats(running, None) if running else ss.SessionStats()
        plan = ss.plan_startup(running, now, new_id=uuid.uuid4(), initial_balance=initial_balance,
                               symbols=symbols, close_on_day_change=close_on_day_change,
                               last_seen=last_seen, stale_stats=stale)
        return self._apply(plan)

    def needs_day_roll(self, now: datetime, *, close_on_day_change: bool) -> bool:
        return self.session is not None and ss.needs_day_roll(self.session, now,
                                                              close_on_day_change=close_on_day_change)

    def roll_session(self, now: datetime, *, final_balance: float | None) -> dict[str, Any]:
        """Day change (positions already closed): end with DAY_CHANGE, start anew at final_balance."""
        session = self._require_session()
        plan = ss.roll_session(session, now, self.session_stats(session, final_balance), new_id=uuid.uuid4(),
                               new_initial_balance=final_balance)
        return self._apply(plan)

    def update_totals(self, stats: ss.SessionStats) -> dict[str, Any]:
        """Write the running session's totals so far (a new rev when they changed)."""
        return self._apply(ss.running_totals(self._require_session(), stats))

    def end_session(self, now: datetime, *, reason: ss.EndReason | str = ss.EndReason.NORMAL,
                    final_balance: float | None = None,
                    stats: ss.SessionStats | None = None) -> dict[str, Any]:
        """End the running session; without a session it is a no-op (idempotent)."""
        if self.session is None:
            return {"session": None, "resumed": False}
        session = self.session
        plan = ss.end_session(session, now, stats or self.session_stats(session, final_balance),
                              ss.EndReason(reason))
        return self._apply(plan)

    def _require_session(self) -> rec.Session:
        if self.session is None:
            raise NoSession("no session is running (start_session first)")
        return self.session

    # ---- session-bound records ------------------------------------------------------------------

    def log_event(self, now: datetime, event_type: str, **fields: Any) -> dict[str, Any]:
        """An event with a fresh id, bound to the current session if there is one."""
        fields.setdefault("session_id", self.session.session_id if self.session else None)
        return self.write("events", ev.make_event(uuid.uuid4(), now, event_type, **fields))

    def heartbeat(self, now: datetime, **fields: Any) -> dict[str, Any]:
        fields.setdefault("backlog", self.backlog())
        return self.write_batch([ss.heartbeat(self._require_session(), now, uuid.uuid4(), **fields)])[0]

    # ---- health ---------------------------------------------------------------------------------

    def backlog(self) -> int:
        return sum(self.store.backlog(name).pending for name in self.store.sinks)

    def health(self) -> dict[str, Any]:
        """For the heartbeat: pending writes, parked records, per-sink status and the store's counters."""
        sinks = self.worker.status() if self.worker else []
        parked = {name: self.store.backlog(name).parked for name in self.store.sinks}
        return {
            "backlog": self.backlog(),
            "parked": sum(parked.values()),
            "sinks": sinks,
            "drain_error": self.worker.error if self.worker else None,
            "acks": dict(self.store.stats.acks),
            "store_errors": self.store.stats.errors,
            "session_id": self.session.session_id if self.session else None,
        }
