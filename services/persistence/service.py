"""The persistence process: the durable store behind the `write` and `query` ops, sessions, the trade log.

- step `persistence.open`: open the SQLite store (WAL, synchronous=NORMAL: see store.py) and start the sink
  drain thread when sinks are configured (none: the local store is the only store);
- op `write` (WriteArgs -> WriteResult): the records of one or more tables, committed in one transaction and
  acknowledged only after the durable commit, idempotent by id; a malformed request is refused whole, a bad
  record is rejected with its reason (never silently dropped); a full disk or a locked database is an error
  reply (`store_full` / `store_busy`), so the sender keeps its records and retries;
- op `query` (QueryArgs): records back, newest first;
- step `persistence.session`: start a session, or resume the one a crash left RUNNING;
  step `persistence.close_session`: end it with the balance from the connector, the real trades and PnL
  (paper totals in a SESSION_SUMMARY event) and the reason; while it runs, the session record's totals follow
  the real trades as they are stored;
- one writer per record: trades come only through the `write` op, from their owners' outboxes (the connector's
  real fills and closes, the paper trader's openings and closes); nothing is copied from the stream;
- the stream (only these topics are subscribed to): `alert.*` -> one event per alert (not the executor's: it stores
  its own), `sys.state` changes -> events, `account` -> the balance for heartbeats, a gap in one of these topics of
  a publisher -> a STREAM_GAP event;
- every `heartbeat_interval_s` a session heartbeat record; at the UTC day boundary with close_on_day_change
  the session rolls and an alert `day_change` goes out (closing positions is the executor's business).

The decisions are in `recorder.py` (the store, sessions and the drain behind one object), `sessions.py`,
`writes.py` (the write and query ops' rules) and `stream_events.py` (events from the stream); this file owns the
sockets, the clock and the store file.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from common import bus, logs, messages, runtime, trace, wire
from common.bus import OpError, Received
from common.records import events as ev
from common.records import schema as rec
from common.sequence import Delivery
from services.persistence import sessions, stream_events, writes
from services.persistence.recorder import Recorder
from services.persistence.sessions import SessionStats
from services.persistence.sinks import SinkConfigError
from services.persistence.sinks.factory import build_sinks
from services.persistence.store import Store, StoreBusy, StoreError, StoreFull
from services.persistence.worker import DrainWorker

log = logging.getLogger("oracle.persistence")

PUBLISHERS = ("orchestrator", "connector", "preditor", "executor", "paper")
OWN_ALERT_RECORDS = ("executor",)  # publishers that store their alerts themselves, through their outbox
ALERT_EVERY_S = 60.0  # store error alerts, at most this often per kind
MAX_UNWRITTEN = 100_000  # stream records kept in memory while the store refuses writes


CHECK_EVERY_S = 1.0  # the unwritten stream records, the running session's totals and the day change checked


def at_beat(due: float, period_s: float, next_beat: float, beat_s: float) -> float:
    """A periodic job's deadline `due` (every `period_s`) moved to the first heartbeat (at `next_beat`, then every
    `beat_s`) from just before it on (a tenth of the shorter period: rounding), so that the loop wakes once for both;
    `due` itself when that heartbeat is more than a period after it (heartbeats sparser than the job)."""
    if beat_s <= 0:
        return due
    k = max(0, math.ceil((due - min(period_s, beat_s) / 10 - next_beat) / beat_s))
    beat = next_beat + k * beat_s
    return beat if beat - due <= period_s else due


def _code(exc: StoreError) -> str:
    return "store_full" if isinstance(exc, StoreFull) else "store_busy" if isinstance(exc, StoreBusy) else "store_error"


# SQLite checkpoints its WAL by itself inside the commit that grows it past 1000 pages (its fsyncs of the WAL and the
# database in that commit): at a bar close that is when the executor's records come, beside the write-ahead
# fdatasyncs of the bar's orders on the disk. After this many records written, the WAL is checkpointed here instead,
# once no write came for CHECKPOINT_QUIET_S (the bar's work done): about 1.7 WAL pages a record, so the WAL stays
# under 1000 pages at a bar's commits (a bar of 50 symbols writes some 120 records) and its fsyncs come earlier,
# never later, than SQLite's own; a burst with no quiet moment is checkpointed by SQLite as before
CHECKPOINT_AFTER_RECORDS = 250
CHECKPOINT_QUIET_S = 0.15


class WriteAnswer:
    """The answer of a write op whose records wait for the turn's commit (a bus.Deferred's future): the requests
    that arrived together are written in one transaction, each acknowledged only once it has committed."""

    def __init__(self, prep: writes.Prepared):
        self.prep = prep
        self._result: messages.WriteResult | None = None
        self._error: OpError | None = None

    def done(self) -> bool:
        return self._result is not None or self._error is not None

    def cancel(self) -> bool:  # the process is stopping before the commit: the sender keeps its records
        if not self.done():
            self._error = OpError("stopping", "persistence is stopping; send the records again")
        return True

    def answer(self, result: messages.WriteResult) -> None:
        self._result = result

    def fail(self, error: OpError) -> None:
        self._error = error

    def result(self) -> messages.WriteResult:
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    @staticmethod
    def finish(answer: WriteAnswer) -> messages.WriteResult:
        return answer.result()


class Persistence(runtime.Service):
    name = "persistence"
    status_record = messages.PersistenceStatus
    # a write op's answer waits for the commit of the loop turn's writes (a ROUTER: REQ clients are unchanged)
    concurrent_requests = True
    steps = {"persistence.open": "_open", "persistence.session": "_start_session",
             "persistence.close_session": "_close_session"}
    # only the topics recorded: the bars, signals, acks, quotes and heartbeats of the others are not decoded here;
    # a publisher numbers each topic on its own, so a gap on one of these still means lost messages of it
    subscribe_to = {p: [messages.alert_topic(""), messages.SYS_STATE_TOPIC, messages.ACCOUNT_TOPIC] for p in PUBLISHERS}

    def __init__(self, cfg, dry_run: bool = False):
        super().__init__(cfg, dry_run)
        # the preditor's topics from each of its programs (its shards, common/programs.py)
        prefixes = self.subscribe_to["preditor"]
        self.subscribe_to = {**{p: v for p, v in self.subscribe_to.items() if p != "preditor"},
                             **{p: prefixes for p in cfg.of_kind("preditor")}}
        self.recorder: Recorder | None = None
        self.db_path = cfg.path(cfg.persistence.sqlite_path)
        self.last_store_error = ""
        self._alerted_at: dict[str, float] = {}
        self.balance: float | None = None
        self.equity: float | None = None
        self._last_state = ""
        self._state_before_stop = ""
        self._stop_reason: str | None = None
        self._next_session_hb = 0.0
        self._next_day_check = 0.0
        self._unwritten: list[tuple[str, rec.Record]] = []  # stream records the store refused, retried
        self._totals_due = False  # trades were stored: the running session's totals are written again
        self._ledger: sessions.TradeLedger | None = None  # the running session's real trades (None: read them all)
        self._trades_written: set[str] = set()  # ids of the trades written since the ledger was brought up to date
        self._requesters: dict[str, bus.Requester] = {}
        self._queued: list[WriteAnswer] = []  # write ops of this loop turn, committed together in on_tick
        self._unchecked = 0  # records written since the last checkpoint of ours (CHECKPOINT_AFTER_RECORDS)
        self._last_write_at = 0.0

    # ---- lifecycle steps --------------------------------------------------------------------------
    def _open(self) -> dict:
        data_dir = self.cfg.path(self.cfg.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        p = self.cfg.persistence
        if self.recorder is None:
            try:
                sinks = build_sinks(p.sinks.model_dump())
            except SinkConfigError as exc:
                raise runtime.PermanentFailure(f"persistence sinks: {exc}") from None
            max_bytes = int(p.max_db_mb * 1024 * 1024) if p.max_db_mb else None
            try:
                store = Store.open(self.db_path, sinks=[s.name for s in sinks], busy_timeout_ms=p.busy_timeout_ms,
                                   max_bytes=max_bytes)
            except StoreError as exc:
                for s in sinks:
                    s.close()
                raise runtime.StepFailed(f"cannot open the store: {exc}") from None
            worker = DrainWorker(self.db_path, sinks).start() if sinks else None
            self.recorder = Recorder(store, worker)
            if self.rep is not None:  # after the turn's requests are served, before their answers are sent
                self.add_reader(self.rep.sock, self._commit_writes)
            self._next_day_check = 0.0  # flush what was heard before the store was open, on the next turn
            logs.event(log, logging.INFO, "store open", path=str(self.db_path),
                       sinks=",".join(s.name for s in sinks) or "none")
        return {"data_dir": str(data_dir), "store": str(self.db_path), "sinks": list(self.recorder.store.sinks)}

    def _need_recorder(self) -> Recorder:
        if self.recorder is None:
            raise OpError("not_open", "the store is not open yet (step persistence.open); retry")
        return self.recorder

    def _start_session(self) -> dict:
        recorder = self._need_recorder()
        self._commit_writes()  # what was sent before the step is written before it
        now = datetime.now(UTC)
        balance, why = self._connector_balance()
        from_config = balance is None
        if from_config:
            balance = self.cfg.paper.initial_balance
        symbols = sorted(self.cfg.connector.symbols)
        try:
            out = recorder.start_session(now, initial_balance=balance, symbols=symbols,
                                     close_on_day_change=self.cfg.close_on_day_change)
            sid = out["session"]["session_id"]
            if from_config and not out["resumed"]:
                self._event(now, stream_events.INITIAL_BALANCE_FROM_CONFIG, severity="WARNING",
                            event_id=ev.derived_id(out["session"]["id"], "balance-from-config"),
                            message=f"initial balance {balance} from paper.initial_balance: {why}",
                            data={"initial_balance": balance, "why": why})
            adopted = self._adopt_unassigned(sid)
        except StoreError as exc:
            raise runtime.StepFailed(f"cannot record the session: {exc}") from None
        self._next_session_hb = 0.0
        self._totals_due = True  # the trades adopted or stored before a crash count in the totals
        self._ledger = None
        logs.event(log, logging.INFO, "session", session_id=sid, resumed=out["resumed"], balance=balance)
        return {"session_id": sid, "resumed": out["resumed"], "initial_balance": balance,
                "balance_from": "config" if from_config else "connector", "adopted_trades": adopted,
                **({"ended": out["ended"]["session_id"]} if "ended" in out else {})}

    def _adopt_unassigned(self, session_id: str) -> int:
        """Trades written before any session existed (fills at sync, paper re-sends) join this one."""
        recorder = self._need_recorder()
        orphans = recorder.store.query("trades", session_id="", limit=None)
        if not orphans:
            return 0
        recorder.write_batch([("trades", t.model_copy(update={"session_id": session_id, "rev": t.rev + 1}))
                          for t in orphans])
        self._event(datetime.now(UTC), stream_events.TRADES_ADOPTED, message=f"{len(orphans)} trade(s) recorded before "
                    f"the session started joined session {session_id}", data={"count": len(orphans)})
        return len(orphans)

    def _close_session(self, args: dict) -> dict:
        recorder = self._need_recorder()
        self._commit_writes()  # the trades sent before the step count in the session's totals
        if recorder.session is None:
            return {"ended": False, "why": "no session is running"}
        now = datetime.now(UTC)
        session = recorder.session
        balance, why = self._connector_balance()
        if balance is None:
            balance = self.balance  # the last `account` update heard
            why += "; the balance is the last `account` update heard" if balance is not None else "; no balance known"
        reason = sessions.end_reason(args.get("reason"), self._stop_reason or "", self._state_before_stop)
        try:
            real = sessions.session_totals(recorder.store.query("trades", session_id=session.session_id,
                                                                is_paper=False, limit=None))
            paper = sessions.session_totals(recorder.store.query("trades", session_id=session.session_id,
                                                                 is_paper=True, limit=None))
            self._event(now, stream_events.SESSION_SUMMARY,
                        message=f"session {session.session_id} ended {reason.value}",
                        event_id=ev.derived_id(session.id, "summary"),
                        data={"reason": reason.value, "final_balance": balance, "balance_note": why,
                              "real": {"trades": real.trades, "closing_deals": real.closing_deals, "pnl": real.pnl},
                              "paper": {"trades": paper.trades, "pnl": paper.pnl}})
            recorder.end_session(now, reason=reason, stats=SessionStats(balance, real.trades, real.pnl))
        except StoreError as exc:
            raise runtime.StepFailed(f"cannot record the end of the session: {exc}") from None
        logs.event(log, logging.INFO, "session ended", session_id=session.session_id, reason=reason.value,
                   balance=balance, trades=real.trades, pnl=real.pnl)
        return {"ended": True, "session_id": session.session_id, "reason": reason.value, "final_balance": balance,
                "real_trades": real.trades, "real_pnl": real.pnl, "paper_trades": paper.trades,
                "paper_pnl": paper.pnl}

    # ---- asking other services (bounded waits, heartbeats keep going) ---------------------------------
    def _ask(self, service: str, op: str, args: Any, timeout_s: float) -> Any:
        req = self._requesters.get(service)
        if req is None:
            req = bus.Requester(self.ctx, self.cfg.endpoint(service, "rep"), self.name, int(timeout_s * 1000))
            self._requesters[service] = req
        return self.ask(req, op, args, int(timeout_s * 1000))

    def _connector_balance(self) -> tuple[float | None, str]:
        timeout = max(1.0, self.cfg.runtime.request_timeout_ms / 1000)
        try:
            acct = self._ask("connector", messages.OP_ACCOUNT.name, messages.NoArgs(), timeout)
        except (bus.RequestTimeout, bus.RequestFailed, wire.WireError) as exc:
            return None, f"the connector's account op failed: {exc}"
        if not math.isfinite(acct.balance):
            return None, f"the connector's account op gave no balance: {acct.balance!r}"
        self.balance = float(acct.balance)
        return self.balance, "from the connector's account op"

    # ---- ops ---------------------------------------------------------------------------------------
    def ops(self) -> dict:
        return {messages.OP_WRITE.name: self._op_write, messages.OP_QUERY.name: self._op_query}

    def _session_id(self) -> str | None:
        return self.recorder.session.session_id if self.recorder and self.recorder.session else None

    def _op_write(self, a: messages.WriteArgs) -> messages.WriteResult | bus.Deferred:
        """Check the records of every table of the request now (a malformed request is refused whole; a bad record
        is rejected with its reason); the valid ones wait for the turn's commit
        (`_commit_writes`): the write ops that arrived together are one transaction, each answered after it."""
        self._need_recorder()
        # a record sent without a session gets the running one, or keeps the one of its copy stored already (the
        # store reads it in the write's transaction, with the stored revs)
        try:
            prep = writes.prepare_write(a.tables, session_id=self._session_id())
        except writes.WriteMalformed as exc:
            raise OpError("bad_args", str(exc)) from None
        self.count("writes")
        if not prep.valid:
            return self._write_result(prep, [])
        answer = WriteAnswer(prep)
        self._queued.append(answer)
        return bus.Deferred(answer, WriteAnswer.finish, what="write")

    def _commit_writes(self) -> None:
        """Write the queued write ops' records, in one transaction when their ids differ (else in the order they
        came, one transaction per run of ops with distinct ids: each is judged as if written alone, after those
        before it); acknowledged once committed. A store error is each of its ops' error reply (their senders
        keep the records and retry)."""
        queued, self._queued = self._queued, []
        if len(queued) <= 1:  # the usual turn: one request, no ids to compare
            self._commit_group(queued)
            return
        group: list[WriteAnswer] = []
        ids: set[str] = set()
        for q in queued:
            mine = {str(r.id) for _, _, r in q.prep.valid}
            if not ids.isdisjoint(mine):
                self._commit_group(group)
                group, ids = [], set()
            group.append(q)
            ids |= mine
        self._commit_group(group)

    def _commit_group(self, group: list[WriteAnswer]) -> None:
        if not group:
            return
        recorder = self.recorder
        if recorder is None:  # closed since (cannot happen: on_stop comes after the turn's commit)
            for q in group:
                q.fail(OpError("not_open", "the store is closed; retry"))
            return
        items: list[tuple[str, rec.Record]] = []
        keep: set[int] = set()
        for q in group:
            keep.update(len(items) + i for i in q.prep.session_filled)
            items.extend((t, r) for _, t, r in q.prep.valid)
        try:
            acks = self._store_call(lambda: recorder.write_batch(items, keep_stored_session=keep))
        except OpError as err:
            for q in group:
                q.fail(err)
            return
        except Exception as exc:  # a bug: each request gets an error reply, as a handler's exception would give
            log.exception("writing %d record(s) failed", len(items))
            for q in group:
                q.fail(OpError(wire.HANDLER_ERROR, f"{type(exc).__name__}: {exc}"))
            return
        if len(group) > 1:
            self.count("writes_committed_together", len(group))
        self._unchecked += len(items)
        self._last_write_at = time.monotonic()
        start = 0
        for q in group:
            end = start + len(q.prep.valid)
            q.answer(self._write_result(q.prep, acks[start:end]))
            start = end

    def _write_result(self, prep: writes.Prepared, acks: list[dict[str, Any]]) -> messages.WriteResult:
        acked: list[str] = []
        rejected = dict(prep.rejected)
        for (rid, table, record), ack in zip(prep.valid, acks, strict=True):
            if ack["status"] != "conflict":
                acked.append(rid)
                if table == "trades" and ack["status"] in ("stored", "updated"):
                    self._trade_written(ack["id"], getattr(record, "is_paper", True))
                continue
            rejected[rid] = writes.conflict_reason(table, rid, ack["fields"])
            logs.event(log, logging.ERROR, "write rejected", table=table, id=rid, why=rejected[rid])
        self.count("records_acked", len(acked))
        if rejected:
            self.count("records_rejected", len(rejected))
        return messages.WriteResult(acked, rejected)

    def _trade_written(self, rid: str, is_paper: bool) -> None:
        """The running session's totals count the real trades: due again when one is written (or a trade they
        counted)."""
        if not is_paper or (self._ledger is not None and rid in self._ledger):
            self._totals_due = True
            self._trades_written.add(rid)

    def _store_call(self, fn):  # noqa: ANN001, ANN202 - a thunk around a store call
        """Run a store call; a full disk or a lock becomes a clear error reply (the sender keeps its records)."""
        try:
            return fn()
        except StoreFull as exc:
            self._store_failed("store_full", exc)
            raise OpError("store_full", f"{exc}; keep the records and retry") from None
        except StoreBusy as exc:
            self._store_failed("store_busy", exc)
            raise OpError("store_busy", f"{exc}; keep the records and retry") from None
        except StoreError as exc:
            self._store_failed("store_error", exc)
            raise OpError("store_error", f"{exc}; keep the records and retry") from None

    def _store_failed(self, code: str, exc: Exception) -> None:
        self.last_store_error = f"{code}: {exc}"
        self.count(code)
        now = time.monotonic()
        if now - self._alerted_at.get(code, -ALERT_EVERY_S) >= ALERT_EVERY_S:
            self._alerted_at[code] = now
            self.alert(code, "critical", f"the store refused writes: {exc}", path=str(self.db_path))

    def _op_query(self, a: messages.QueryArgs) -> messages.QueryResult:
        recorder = self._need_recorder()
        self._commit_writes()  # a query sees the writes sent before it
        try:
            filters = writes.query_filters(a.where)
            rec.model_for(a.table)
        except (ValueError, rec.RecordInvalid) as exc:
            raise OpError("bad_args", str(exc)) from None
        limit = None if a.limit <= 0 else min(a.limit, 10_000)
        try:
            found = recorder.query(a.table, **filters, limit=limit)
        except rec.RecordInvalid as exc:
            raise OpError("bad_args", str(exc)) from None
        except StoreError as exc:
            raise OpError("store_busy" if isinstance(exc, StoreBusy) else "store_error", str(exc)) from None
        return messages.QueryResult(a.table, found, len(found))

    # ---- the stream ---------------------------------------------------------------------------------
    def on_message(self, received: Received) -> None:
        env = received.envelope
        body = env.body
        try:  # before persistence.open (a restart mid-run) records wait in memory until the store is open
            self._on_gap(received)
            if isinstance(body, messages.AccountUpdate):
                self.balance, self.equity = body.balance, body.equity
            elif isinstance(body, messages.Alert) and env.src in OWN_ALERT_RECORDS:
                self.count("alerts_stored_by_their_sender")  # one event per alert: the sender's own record
            elif isinstance(body, messages.Alert):
                self._keep_write("events", stream_events.alert_event(env.src, env.epoch, env.seq, env.ts,
                                                              messages.to_wire(body), self._session_id(), env.topic))
                self.count("alerts_logged")
            elif isinstance(body, messages.SysState):
                self._sys_state(env, body)
        except StoreError as exc:
            self._store_failed(_code(exc), exc)
        except (rec.RecordInvalid, KeyError, TypeError, ValueError) as exc:
            self.count("messages_unusable")
            logs.event(log, logging.ERROR, "message not recorded", topic=env.topic, src=env.src, error=str(exc))

    def _sys_state(self, env: wire.Envelope, body: messages.SysState) -> None:
        if body.state == messages.STOPPING and self._last_state != messages.STOPPING:
            self._state_before_stop = self._last_state
        reason = sessions.stop_reason_of(body.event)
        if reason:
            self._stop_reason = reason
        if body.state != self._last_state:
            self._keep_write("events", stream_events.state_event(env.src, env.epoch, env.seq, env.ts, self._last_state,
                                                          messages.to_wire(body), self._session_id(), env.topic))
            self.count("state_changes_logged")
            self._last_state = body.state

    def _on_gap(self, received: Received) -> None:
        """Messages of a publisher went by unheard: say so (what was lost is alerts and state changes; trades and
        the services' own records come through their outboxes)."""
        env, seen = received.envelope, received.seen
        if seen.delivery is Delivery.GAP:
            what = "alerts and state changes from it may be missing"
            self._keep_write("events", stream_events.gap_event(env.src, env.epoch, env.seq, env.ts, seen.delivery.value,
                                                        seen.missed, self._session_id(), what, env.topic))
            self.count("gaps_logged")

    # ---- the loop ---------------------------------------------------------------------------------------
    def poll_timeout_ms(self) -> int:
        """Running, nothing here is due more often than the heartbeat and the once-a-second checks: sleep until the
        first of them instead of waking ten times a second (a request or a message wakes the loop at once)."""
        if self.rep is not None and self.rep.waiting:
            return 0  # write answers committed after the turn's flush (by a step, on_tick): sent on the next turn
        base = super().poll_timeout_ms()
        if self.state != messages.S_RUNNING or self.recorder is None or (self.orch and self.orch.pending is not None):
            return base  # booting: the handshake's hello and reply deadlines are checked every turn
        due = min(self._next_hb, self._next_session_hb, self._next_day_check, self._checkpoint_due()) - time.monotonic()
        return max(base, min(1000, int(due * 1000) + 1))

    def _checkpoint_due(self) -> float:
        """When the WAL is checkpointed next (CHECKPOINT_AFTER_RECORDS; inf: not due)."""
        return self._last_write_at + CHECKPOINT_QUIET_S if self._unchecked >= CHECKPOINT_AFTER_RECORDS else math.inf

    def on_tick(self, now: float) -> None:
        self._commit_writes()  # none left, normally: committed once the turn's requests were served
        if self.recorder is None:
            return
        try:
            if now >= self._checkpoint_due():
                self._unchecked = 0
                trace.mark("persistence.checkpoint", str(self.recorder.store.checkpoint()))
                self.count("checkpoints")
            if now >= self._next_session_hb:
                self._next_session_hb = self._at_beat(now, self.cfg.persistence.heartbeat_interval_s)
                self._session_heartbeat()
            if now >= self._next_day_check:
                self._next_day_check = self._at_beat(now, CHECK_EVERY_S)
                self._flush_unwritten()
                self._update_totals()
                self._day_roll()
        except StoreError as exc:
            self._store_failed(_code(exc), exc)

    def _at_beat(self, now: float, period_s: float) -> float:
        """When a periodic job runs next: in the turn of the runtime's heartbeat near `now + period_s` (one wake for
        both; run in the heartbeat's turn, the job's deadline is the heartbeat's next)."""
        return at_beat(now + period_s, period_s, self._next_hb, self.cfg.runtime.heartbeat_interval_s)

    def _keep_write(self, table: str, record: rec.Record) -> None:
        """Write a record made from the stream; when the store refuses it, keep it in memory and retry (a
        published message is not sent again)."""
        if self.recorder is not None and not self._unwritten:
            try:
                self.recorder.write(table, record)
                return
            except StoreError as exc:
                self._store_failed(_code(exc), exc)
        if len(self._unwritten) >= MAX_UNWRITTEN:
            self.count("stream_records_dropped")
            self.alert("records_dropped", "critical", f"the store refuses writes and {MAX_UNWRITTEN} records from "
                       "the stream wait in memory: the oldest is dropped", table=table)
            self._unwritten.pop(0)
        self._unwritten.append((table, record))

    def _flush_unwritten(self) -> None:
        assert self.recorder is not None
        if self._unwritten:
            self.recorder.write_batch(self._unwritten)  # StoreError: they stay for the next turn
            self.count("stream_records_retried", len(self._unwritten))
            self._unwritten = []

    def _update_totals(self) -> None:
        """The running session's record with the totals of the real trades stored so far (rev + 1 when they
        changed), so the store shows them during the session, not only at its end. The trades are read once (in
        a process, per session) into a TradeLedger, then only those written since."""
        assert self.recorder is not None
        if not self._totals_due or self.recorder.session is None:
            return
        session_id = self.recorder.session.session_id
        store = self.recorder.store
        ledger = self._ledger
        if ledger is None or ledger.session_id != session_id:
            ledger = sessions.TradeLedger.of(session_id, map(sessions.LedgerRow._make, store.trade_ledger(session_id)))
        else:
            written = store.trade_rows(sorted(self._trades_written))
            ledger.apply((sessions.LedgerRow._make(r), sid, paper) for r, sid, paper in written)
        self._ledger, self._trades_written = ledger, set()
        real = ledger.totals()
        self.recorder.update_totals(SessionStats(None, real.trades, real.pnl))
        self._totals_due = False
        self.count("session_totals")

    def _session_heartbeat(self) -> None:
        assert self.recorder is not None
        if self.recorder.session is None:
            return
        self.recorder.heartbeat(datetime.now(UTC), system_state=self.system_state or None, balance=self.balance,
                            equity=self.equity, data={"pid": self.pid, "epoch": self.epoch})
        self.count("session_heartbeats")

    def _day_roll(self) -> None:
        assert self.recorder is not None
        now = datetime.now(UTC)
        if not self.recorder.needs_day_roll(now, close_on_day_change=self.cfg.close_on_day_change):
            return
        old = self.recorder.session.session_id if self.recorder.session else ""
        out = self.recorder.roll_session(now, final_balance=self.balance)
        new = out["session"]["session_id"]
        self.count("day_rolls")
        self.alert("day_change", "info", f"UTC day changed: session {old} ended (DAY_CHANGE), {new} started",
                   old_session=old, new_session=new, balance=self.balance)

    def _event(self, now: datetime, event_type: str, event_id: uuid.UUID | None = None, **fields: Any) -> None:
        """An event of this service, bound to the current session; a derived `event_id` makes it idempotent."""
        assert self.recorder is not None
        fields.setdefault("source", self.name)
        fields.setdefault("session_id", self._session_id())
        self.recorder.write("events", ev.make_event(event_id or uuid.uuid4(), now, event_type, **fields))

    # ---- status -------------------------------------------------------------------------------------
    def health_info(self) -> dict:
        if self.recorder is None:
            return {"backlog": 0}
        try:
            unwritten = {"unwritten": len(self._unwritten)} if self._unwritten else {}
            return {"backlog": self.recorder.backlog(), **unwritten}
        except StoreError:
            return {"backlog": 0, "store_error": self.last_store_error or "reading the backlog failed"}

    def status_report(self) -> dict[str, Any]:
        if self.recorder is None:
            return {"store": messages.StoreStatus(open=False, path=str(self.db_path), last_error=self.last_store_error),
                    "session": None, "persistence": {}, "unwritten": len(self._unwritten), "balance": self.balance}
        try:
            health = self.recorder.health()
        except StoreError as exc:
            health = {"error": str(exc)}
        return {
            "store": messages.StoreStatus(open=True, path=str(self.db_path), last_error=self.last_store_error),
            "session": self.recorder.session.model_dump(mode="json") if self.recorder.session else None,
            "persistence": health,
            "unwritten": len(self._unwritten),
            "balance": self.balance,
        }

    def on_stop(self) -> None:
        for req in self._requesters.values():
            req.close()
        if self.recorder is not None:
            status = self.recorder.close(flush_s=min(2.0, self.cfg.runtime.stop_timeout_s / 3))
            logs.event(log, logging.INFO, "store closed", sinks=status)
            self.recorder = None


def main(argv: list[str] | None = None) -> int:
    return runtime.main(Persistence, argv)
