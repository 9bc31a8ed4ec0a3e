"""The paper process: the preditor's signals executed on simulated accounts with the twin's cost model.

The imperative shell around `services/paper/account.py` (README.md): one account per modelled symbol, costs from
the model file's training config (`model_meta.py`, no torch), a signal applied at its bar's close.

Signals are read 50 ms after the first of a burst arrived (after the bar's orders: ``sub_gather_first``), applied,
and committed in batches (group commit): once every account has had the signal of the newest bar applied (the
preditor sends a bar's signals one model at a time), or `COMMIT_DELAY_MAX_S` after the first uncommitted one, the
book is committed to `<data_dir>/<paper.state_file without .json>.jsonl` (`store.py`: one line appended with what
changed, one write and one fdatasync for the whole batch; the cost does not grow with the run's length), and only
then does anything leave, in the same loop pass: the trades to persistence (spooled in one write, sent at once),
`paper.trade.*` and `paper.metrics.*`. On start the last commit is restored, and a signal whose bar is not after its
account's last one is ignored, so a restarted paper trader fed the same stream (or its tail) ends with the same
trades and balance as one that never stopped. Signals missed while paper was down (or lost in a gap of the stream,
or applied but not committed when the process died) are asked again: at its warmup and on a gap, a restarted
preditor or the first message of its stream, paper asks the preditor's ``signals_since`` each account's last bar and
simulates each at its own bar, in bar order (the signals arriving meanwhile wait, so none is applied before an older
one; a signal not after the account's last bar is ignored, so nothing is simulated twice). Catch-up signals (bars
the preditor decided late, after its own restart) are simulated like the others, each at its bar. Should the
preditor not answer, the waiting signals are applied and it is asked again.

Publishes `paper.trade.<SYM>` (PaperTrade) for each closed trade and `paper.metrics.<SYM>` (PaperMetrics) for each
account a commit changed (running statistics, `stats.py`: O(1) per bar). Stores each opening and each close in the
`trades` table (`is_paper = true`, actions OPEN / CLOSE) through its outbox (`runtime.Service.persist`): kept until
persistence acknowledges it, in memory only (not spooled: the book is committed first, and the next process's
paper.load hands every record of it over again); ids are derived from the trade, so re-sending every record of
the book after a restart is a no-op at the store. Persistence's answer is taken at the loop's next wake, not in one
of its own; the heartbeat goes when a commit left nothing to store, or when the answer emptied the outbox. Paper
is the only writer of its records. A trade is logged at DEBUG; every `SUMMARY_S` the work done goes out in one INFO
line.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from common import bus, logs, messages, runtime, wire
from common.bus import Received
from common.model_meta import ModelMeta, live_only, read_models
from common.records import trades as trade_records
from common.records.trades import PaperOpening, PaperTrade
from common.sequence import Delivery
from common.timeframes import bars_per_year
from services.paper.account import PaperAccount, PaperBook, PaperStep, book_on_signal, new_account
from services.paper.stats import RunningStats
from services.paper.store import BookStore, StateError

log = logging.getLogger("oracle.paper")

COMMIT_DELAY_MAX_S = 0.2  # applied signals wait for the rest of their bar's at most this long before a commit
SUMMARY_S = 300.0  # how often the counters of the work done are logged (INFO), instead of a line per trade
SUMMARIZED = ("signals_applied", "signals_replayed", "trades", "openings", "saves")


def trade_record(trade: PaperTrade, timeframe: str | None) -> dict[str, Any]:
    """The `trades` CLOSE record of a paper trade (ids derived from the trade: a re-send is a duplicate)."""
    return trade_records.paper_trade_json(trade, timeframe=timeframe, session_id="")


def opening_record(opening: PaperOpening, timeframe: str | None) -> dict[str, Any]:
    """The `trades` OPEN record of a paper position (ids derived from the opening: a re-send is a duplicate)."""
    return trade_records.paper_opening_json(opening, timeframe=timeframe, session_id="")


def book_records(account: PaperAccount, timeframe: str | None) -> list[dict[str, Any]]:
    """Every `trades` record of an account's book: each trade's opening and close, then the open position's
    opening (re-sent after a restart: the store deduplicates them)."""
    out = []
    for trade in account.trades:
        opening = trade.opening()
        if opening is not None:
            out.append(opening_record(opening, timeframe))
        out.append(trade_record(trade, timeframe))
    position = account.position
    if not position.is_flat and position.entry_time is not None:
        out.append(opening_record(PaperOpening(account.symbol, position.direction, position.intensity,
                                               account.costs.lot_sizes[position.intensity], position.entry_time,
                                               position.entry_price), timeframe))
    return out


def trade_message(trade: PaperTrade, record_id: str) -> messages.PaperTrade:
    return messages.PaperTrade(
        id=record_id, symbol=trade.symbol, direction=trade.direction, intensity=trade.intensity,
        entry_time=trade.entry_time or 0, exit_time=trade.exit_time, entry_price=trade.entry_price,
        exit_price=trade.exit_price, pnl=trade.pnl, pips=trade.pips, commission=trade.commission,
        hmm_state=-1 if trade.hmm_state is None else trade.hmm_state)


def metrics_message(account: PaperAccount, timeframe: str, stats: RunningStats | None = None
                    ) -> messages.PaperMetrics:
    """The account's statistics; `stats` (kept bar by bar) spares walking its whole history."""
    trades, pnl, win_rate, pf, drawdown, sharpe = (stats or RunningStats.of(account)).headline(
        bars_per_year(timeframe))
    if pf is None:  # no losing trade: infinite with wins, 0 with none
        pf = math.inf if win_rate > 0 else 0.0
    return messages.PaperMetrics(symbol=account.symbol, trades=trades, pnl=round(pnl, 2), win_rate=win_rate,
                                 profit_factor=pf, max_drawdown=drawdown, sharpe=sharpe, balance=account.balance)


class Paper(runtime.Service):
    name = "paper"
    status_record = messages.PaperStatus
    steps = {"paper.load": "_load", "paper.warmup": "_warmup"}
    # hb. too: a restarted preditor (new epoch) or our late join (first message) shows within a heartbeat
    subscribe_to = {"orchestrator": [messages.SYS_STATE_TOPIC], "preditor": ["signal.", "signals.", "hb."]}
    not_implemented: list[str] = []
    # a bar's signals may come in parts (a preditor's shards, or one model at a time): read together (one loop pass,
    # not one per part) until the bar is whole (``gather_more``); paper is on no latency path (its commit waits for
    # the whole bar anyway), so even the first part waits (``sub_gather_first``): the bar's signals are read 50 ms
    # after the first arrived, once the executor and the connector have sent the bar's orders (6-16 ms after the
    # signals on 20 symbols, 12-35 on 50, BENCHMARKS.md), not beside them on the two cores nor its fdatasync beside
    # theirs on the disk
    sub_gather_ms = 50.0
    sub_gather_first = True
    outbox_quiet_ms = 0.0  # a commit hands over all its records at once: nothing more to gather for
    # persistence's answer to a commit's records is taken at the next wake (the next heartbeat at the latest), not
    # in a wake of its own: nothing waits for it (stored by persistence whenever it answered; a kill before that:
    # the next paper.load sends them again from the book)
    outbox_answer_wakes = False
    idle_poll_ms = None  # on_tick's timers are declared in poll_timeout_ms: no wake every 100 ms while idle

    def __init__(self, cfg: Any, dry_run: bool = False):
        super().__init__(cfg, dry_run)
        data_dir = cfg.path(cfg.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.state_path: Path = data_dir / cfg.paper.state_file
        self.store = BookStore(self.state_path)
        self.stats: dict[str, RunningStats] = {}
        self._unsaved: list[tuple[str, PaperStep]] = []  # applied, not committed yet: (symbol, step)
        self._unsaved_since = 0.0  # when the first of them was applied
        self._newest_bar = 0  # the newest bar time applied, and how many accounts have had it applied
        self._at_newest = 0
        self._report: dict[str, messages.PaperAccountStatus] | None = None  # the accounts' status, kept until a change
        self._summarized: dict[str, int] = {}
        self._next_summary = 0.0
        self.models: dict[str, ModelMeta] = {}
        self.book: PaperBook | None = None
        self.restored = False
        self.waiting: list[messages.Signal] = []  # signals before paper.load, or while missed ones are asked
        self._unknown_logged: set[str] = set()
        self._want_missed = False  # ask the preditor the signals after each account's last bar (signals_since)
        self._next_ask = 0.0
        self._preditors: dict[str, bus.Requester] = {}  # by preditor program (its shards)
        # one stream of signals from every preditor program (common/programs.py)
        self.preditors = cfg.of_kind("preditor")
        self.subscribe_to = {**{k: v for k, v in self.subscribe_to.items() if k != "preditor"},
                             **{p: self.subscribe_to["preditor"] for p in self.preditors}}

    # ---- state file ---------------------------------------------------------------------------
    def _restore(self) -> PaperBook | None:
        try:
            return self.store.load()
        except StateError as exc:
            raise runtime.PermanentFailure(f"{exc}; move it away to start fresh") from None

    def _commit(self) -> None:
        """Save what was applied since the last commit, then let it out (a crash before the save loses nothing
        that left)."""
        if not self._unsaved:
            return
        assert self.book is not None
        self.store.save(self.book)
        unsaved, self._unsaved = self._unsaved, []
        changed: dict[str, None] = {}
        out: list[tuple[str, Any]] = []  # published together: the I/O thread woken once
        records: list[dict[str, Any]] = []  # spooled together: one write
        for symbol, step in unsaved:
            changed[symbol] = None
            closed = step.closed
            if closed is not None:
                record = trade_record(closed, self._timeframe(symbol))
                records.append(record)
                out.append((messages.paper_trade_topic(symbol), trade_message(closed, record["id"])))
                self.count("trades")
                if log.isEnabledFor(logging.DEBUG):
                    logs.event(log, logging.DEBUG, "paper trade", symbol=symbol, pnl=round(closed.pnl, 2),
                               exit_time=closed.exit_time)
            if step.opened is not None:
                records.append(opening_record(step.opened, self._timeframe(symbol)))
                self.count("openings")
        if records:  # not spooled: made again from the book committed above by the next process's paper.load
            self.persist_many("trades", records, spool=False)
        for symbol in changed:  # once per account and commit
            out.append((messages.paper_metrics_topic(symbol),
                        metrics_message(self.book.accounts[symbol], self._timeframe(symbol), self.stats[symbol])))
        assert self.pub is not None
        self.pub.publish_many(out)
        self.count("saves")
        self.beat_if_due()

    # ---- steps --------------------------------------------------------------------------------
    def _load(self, args: dict) -> dict:
        if not self.cfg.paper.enabled:
            self.book = PaperBook({})
            return {"enabled": False, "accounts": []}
        if self.book is not None:
            self._commit()  # a load again in the same process: what was applied is saved and sent first
        metas, errors = read_models(self.cfg.path(self.cfg.preditor.models_dir))
        try:  # the preditor's load result (through the orchestrator): a model it refused gets no account
            metas, not_live = live_only(metas, args)
        except ValueError as exc:
            raise runtime.StepFailed(str(exc)) from None
        errors += not_live
        self.models = {m.symbol: m for m in metas}
        book = self._restore()
        self.restored = book is not None
        accounts: dict[str, PaperAccount] = dict(book.accounts) if book else {}
        created = []
        for symbol, meta in sorted(self.models.items()):
            if symbol not in accounts:
                accounts[symbol] = new_account(symbol, meta.costs)
                created.append(symbol)
        self.book = PaperBook(accounts)
        self._newest_bar = self._at_newest = 0
        self._report = None
        self.stats = {s: RunningStats.of(a) for s, a in accounts.items()}
        migrated = self.store.legacy
        if created or migrated:  # commit the new accounts (and a version 1 file in today's format) now
            self.store.save(self.book)
        for account in accounts.values():  # re-send every record: deterministic ids, the store deduplicates
            for record in book_records(account, self._timeframe(account.symbol)):
                self.persist("trades", record)
        return {"accounts": sorted(accounts), "created": created, "restored": self.restored,
                "migrated": migrated, "last_bar_time": self._last_bar_times(), "model_errors": errors}

    def _warmup(self) -> dict:
        assert self.book is not None, "paper.warmup before paper.load"
        # the signals decided while we did not listen (again after a restart of the preditor or the connector),
        # each simulated at its bar; one not after an account's last bar is ignored
        self._want_missed, self._next_ask = True, 0.0
        for symbol, account in sorted(self.book.accounts.items()):
            self.publish(messages.paper_metrics_topic(symbol),
                         metrics_message(account, self._timeframe(symbol), self.stats.get(symbol)))
        return {"accounts": len(self.book.accounts), "last_bar_time": self._last_bar_times()}

    def _timeframe(self, symbol: str) -> str:
        meta = self.models.get(symbol)
        return meta.timeframe if meta else "H1"

    def _last_bar_times(self) -> dict[str, int | None]:
        return {s: a.last_bar_time for s, a in sorted(self.book.accounts.items())} if self.book else {}

    # ---- signals ------------------------------------------------------------------------------
    def on_message(self, received: Received) -> None:
        body = received.envelope.body
        if received.envelope.src in self.preditors and received.seen.delivery in (
                Delivery.GAP, Delivery.NEW_EPOCH, Delivery.FIRST):
            self._want_missed = True  # lost signals (or a late join): the preditor keeps the recent ones
        if isinstance(body, messages.SignalRun):  # each simulated at its bar, as if it came alone
            self.count("signal_runs_seen")
            for sig in body.signals:
                self._on_signal(sig)
        elif isinstance(body, messages.Signal):
            self._on_signal(body)

    def _on_signal(self, body: messages.Signal) -> None:
        self.count("signals_seen")
        if body.catch_up:
            self.count("catch_up_signals_seen")
        if self.book is None or self._want_missed:  # applied after the missed ones, in bar order
            self.waiting.append(body)
            return
        self._apply(body)

    def on_tick(self, now: float) -> None:
        if self._want_missed and self.book is not None and now >= self._next_ask:
            self._ask_missed_signals(now)
        if self.book is not None and self.waiting and not self._want_missed:
            waiting, self.waiting = self.waiting, []
            for sig in sorted(waiting, key=lambda s: s.bar_time):  # stable: in bar order, as decided
                self._apply(sig)
        if self._unsaved and (self._bar_complete() or now - self._unsaved_since >= COMMIT_DELAY_MAX_S):
            self._commit()  # once per batch: every signal drained since (on_message, above)
            if self._store is not None:  # its records leave in this pass (the loop drove the outbox before on_tick;
                self._drive_outbox(time.monotonic())  # its first pass with records opens the socket to persistence)
            if not len(self.outbox):  # the batch is done (no record of it to store): the heartbeat says so now;
                self.beat_now()  # with records, it does when persistence has acknowledged them (runtime)
        if now >= self._next_summary:
            self._log_summary(now)

    def gather_more(self) -> bool:
        """A drain that completed the newest bar (every account has its signal) ends the SUB's gathering: nothing
        more of the bar is to come, so no wake at the gathering's end; the commit follows in this pass."""
        return not (self.book is not None and self._unsaved and self._bar_complete())

    def _bar_complete(self) -> bool:
        """Has every account had the signal of the newest bar applied (nothing more of that bar to wait for)?"""
        assert self.book is not None
        return self._at_newest >= len(self.book.accounts)

    def _note_applied(self, bar_time: int) -> None:
        """Count the accounts at the newest bar (an account applies a bar once: its later signals are newer)."""
        assert self.book is not None
        if bar_time > self._newest_bar:
            self._newest_bar = bar_time
            self._at_newest = sum(1 for a in self.book.accounts.values()
                                  if a.last_bar_time is not None and a.last_bar_time >= bar_time)
        elif bar_time == self._newest_bar:
            self._at_newest += 1

    def poll_timeout_ms(self) -> int:
        """Until the first of on_tick's timers (no short poll: ``idle_poll_ms`` None): the commit's delay, the next
        ask for missed signals, the next summary line."""
        due = self._next_summary
        if self._unsaved:
            due = min(due, self._unsaved_since + COMMIT_DELAY_MAX_S)
        if self._want_missed and self.book is not None:
            due = min(due, self._next_ask)
        return max(0, min(super().poll_timeout_ms(), math.ceil((due - time.monotonic()) * 1000)))

    def _log_summary(self, now: float) -> None:
        """The work done since the last summary, in one INFO line (nothing done: no line)."""
        self._next_summary = now + SUMMARY_S
        done = {k: self.progress.get(k, 0) - self._summarized.get(k, 0) for k in SUMMARIZED}
        self._summarized = {k: self.progress.get(k, 0) for k in SUMMARIZED}
        if any(done.values()):
            logs.event(log, logging.INFO, f"the last {SUMMARY_S:g} s", **{k: v for k, v in done.items() if v},
                       commits=self.store.commits, rewrites=self.store.rewrites)

    def _ask_missed_signals(self, now: float) -> None:
        """The preditor's signals after each account's last bar, ahead of those waiting (applied next). Until it
        answers (a restarted preditor answers once warm), the signals heard wait: none goes before an older one."""
        assert self.book is not None
        since = {s: a.last_bar_time for s, a in sorted(self.book.accounts.items())}
        answers = []
        for program in self.preditors:  # every shard (each answers for its own symbols); all, or none is taken
            req = self._preditors.get(program)
            if req is None:
                req = self._preditors[program] = bus.Requester(self.ctx, self.cfg.endpoint(program, "rep"), self.name,
                                                               self.cfg.runtime.request_timeout_ms)
            try:
                answers.append(self.ask(req, messages.OP_SIGNALS_SINCE.name, messages.SignalsSinceArgs(since),
                                        self.cfg.runtime.request_timeout_ms, f"signals_since {program}"))
            except (bus.RequestTimeout, bus.RequestFailed, wire.WireError) as exc:
                log.warning("signals_since from the preditor failed: %s; %d signal(s) wait, asked again", exc,
                            len(self.waiting))
                self._next_ask = now + 1.0
                return
        self._want_missed, self._next_ask = False, now + 1.0
        self.count("signals_since_asked")
        res = messages.SignalsSince([i for a in answers for i in a.signals],
                                    {k: v for a in answers for k, v in a.kept_from.items()})
        missed = []
        for item in res.signals:
            try:
                missed.append(messages.from_wire(messages.Signal, item))
            except messages.SchemaError:
                self.count("signals_since_malformed")
        for symbol, kept_from in sorted(res.kept_from.items()):
            last = since.get(symbol)
            if last is not None and kept_from is not None and kept_from > last:
                self.count("signals_since_short")
                log.warning("%s: the preditor keeps signals from bar %s on, the account's last is %s: a signal "
                            "of a bar in between (if any) is not simulated", symbol, kept_from, last)
        self.count("signals_missed", len(missed))
        self.waiting = missed + self.waiting

    def _apply(self, sig: messages.Signal) -> None:
        assert self.book is not None
        if sig.symbol not in self.book.accounts:
            if sig.symbol not in self._unknown_logged:
                self._unknown_logged.add(sig.symbol)
                log.warning("signal for %s: no model file, so no paper account (logged once)", sig.symbol)
            self.count("signals_unknown_symbol")
            return
        intensity = sig.intensity if sig.direction else 0
        try:
            self.book, step = book_on_signal(self.book, sig.symbol, sig.direction, intensity, sig.close,
                                             sig.bar_time, sig.hmm_state if sig.hmm_state >= 0 else None)
        except ValueError as exc:
            log.error("signal %s %s refused: %s", sig.symbol, sig.bar_time, exc)
            self.count("signals_refused")
            return
        if not step.applied:
            self.count("signals_replayed")
            return
        stats = self.stats[sig.symbol]
        if step.closed is not None:
            stats.add_trades((step.closed,))
        stats.add_equity(step.account.equity_curve[-1])
        # nothing leaves before the commit of this batch: a crash before it loses, never half-sends, what the
        # batch applied (the same as signals still in the socket: asked again, or replayed)
        if not self._unsaved:
            self._unsaved_since = time.monotonic()
        self._unsaved.append((sig.symbol, step))
        self._note_applied(sig.bar_time)
        self._report = None
        self.count("signals_applied")
        self.beat_if_due()  # a long batch of signals keeps the heartbeats going

    # ---- status -------------------------------------------------------------------------------
    def _accounts_report(self) -> dict[str, messages.PaperAccountStatus]:
        if self.book is None:
            return {}
        if self._report is None:
            self._report = self._make_accounts_report()
        return dict(self._report)

    def _make_accounts_report(self) -> dict[str, messages.PaperAccountStatus]:
        assert self.book is not None
        out = {}
        for symbol, a in sorted(self.book.accounts.items()):
            pnl = self.stats[symbol].pnl if symbol in self.stats else sum(t.pnl for t in a.trades)
            p = a.position
            out[symbol] = messages.PaperAccountStatus(
                balance=a.balance, equity=a.equity, trades=len(a.trades), pnl=round(pnl, 2),
                last_bar_time=a.last_bar_time,
                position=messages.TwinPosition(direction=p.direction, intensity=p.intensity, entry_price=p.entry_price,
                                               entry_time=p.entry_time, floating_pnl=p.floating_pnl))
        return out

    def status_report(self) -> dict[str, Any]:
        return {"accounts": self._accounts_report(), "restored": self.restored, "state_file": str(self.state_path),
                "journal": str(self.store.path), "unsaved": len(self._unsaved)}

    def health_info(self) -> dict:
        return {"accounts": len(self.book.accounts) if self.book else 0}

    def pending_work(self) -> int:
        return len(self.waiting) + len(self._unsaved)

    def on_stop(self) -> None:
        try:
            self._commit()  # a graceful stop keeps what the last pass applied
        except OSError as exc:
            log.error("paper book not saved at stop: %s", exc)
        self.store.close()
        for req in self._preditors.values():
            req.close()


def main(argv: list[str] | None = None) -> int:
    return runtime.main(Paper, argv)
