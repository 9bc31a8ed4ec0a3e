"""The paper process: the preditor's signals executed on simulated accounts with the twin's cost model.

The imperative shell around `services/paper/account.py` (README.md): one account per modelled symbol, costs from
the model file's training config (`model_meta.py`, no torch), a signal applied at its bar's close.

Signals are applied as they arrive; once per loop pass (after every signal of that pass) the book is committed to
`<data_dir>/<paper.state_file>` (`store.py`: the new trades and equity points appended to a journal, a small state
file replaced atomically: the cost does not grow with the run's length), and only then does anything leave: the
trades to persistence, `paper.trade.*` and `paper.metrics.*`. On start the last commit is restored, and a signal
whose bar is not after its account's last one is ignored, so a restarted paper trader fed the same stream (or its
tail) ends with the same trades and balance as one that never stopped. A signal applied but not committed when the
process died is as lost as one still in the socket: the new process asks the preditor's last signals (first
message of its stream) and whoever replays the stream replays it.

Publishes `paper.trade.<SYM>` (PaperTrade) for each closed trade and `paper.metrics.<SYM>` (PaperMetrics) for each
account a pass changed (running statistics, `stats.py`: O(1) per bar); persists each trade in the `trades` table
with `is_paper = true` (ids derived from the trade, so re-sending every trade of the book after a restart is a
no-op at the store).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common import bus, logs, messages, runtime, wire
from common.bus import Received
from common.sequence import Delivery
from common.twin.timeframes import bars_per_year
from services.paper.account import PaperAccount, PaperBook, PaperTrade, book_on_signal, new_account
from services.paper.model_meta import ModelMeta, read_models
from services.paper.stats import RunningStats
from services.paper.store import BookStore, StateError
from services.persistence import trades as trade_records

log = logging.getLogger("oracle.paper")


def trade_record(trade: PaperTrade, timeframe: str | None) -> dict[str, Any]:
    """The `trades` row of a paper trade (the persistence module's own builder, so ids match everywhere)."""
    rec = trade_records.paper_trade({
        "symbol": trade.symbol, "timeframe": timeframe, "direction": trade.direction,
        "intensity": trade.intensity, "volume": trade.lot, "entry_time": _iso(trade.entry_time or trade.exit_time),
        "exit_time": _iso(trade.exit_time), "entry_price": trade.entry_price, "exit_price": trade.exit_price,
        "gross_pnl": trade.gross_pnl, "commission": trade.commission, "pnl_pips": trade.pips,
        "hmm_state": trade.hmm_state}, session_id="")
    return rec.model_dump(mode="json")


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(seconds))


def trade_message(trade: PaperTrade, record_id: str) -> messages.PaperTrade:
    return messages.PaperTrade(
        id=record_id, symbol=trade.symbol, direction=trade.direction, intensity=trade.intensity,
        entry_time=trade.entry_time or 0, exit_time=trade.exit_time, entry_price=trade.entry_price,
        exit_price=trade.exit_price, pnl=trade.pnl, pips=trade.pips, commission=trade.commission,
        hmm_state=-1 if trade.hmm_state is None else trade.hmm_state)


def metrics_message(account: PaperAccount, timeframe: str, stats: RunningStats | None = None
                    ) -> messages.PaperMetrics:
    """The account's statistics; `stats` (kept bar by bar) spares walking its whole history."""
    m = (stats or RunningStats.of(account)).metrics(bars_per_year(timeframe))
    pf = m.profit_factor
    if pf is None:  # no losing trade: infinite with wins, 0 with none
        pf = math.inf if m.win_rate > 0 else 0.0
    return messages.PaperMetrics(
        symbol=account.symbol, trades=m.total_trades, pnl=round(m.total_pnl, 2), win_rate=m.win_rate,
        profit_factor=pf, max_drawdown=m.max_drawdown_pct, sharpe=m.sharpe_ratio, balance=account.balance)


class Paper(runtime.Service):
    name = "paper"
    # hb. too: a restarted preditor (new epoch) or our late join (first message) shows within a heartbeat
    subscribe_to = {"orchestrator": [messages.SYS_STATE_TOPIC], "preditor": ["signal.", "hb."]}
    not_implemented = [
        "signals published while paper was down are not fetched again: after a restart (or a gap) paper asks the "
        "preditor's last signal per symbol, so the account takes the model's position at that bar; the bars in "
        "between are not simulated",
    ]

    def __init__(self, cfg: Any, dry_run: bool = False):
        super().__init__(cfg, dry_run)
        data_dir = cfg.path(cfg.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.state_path: Path = data_dir / cfg.paper.state_file
        self.store = BookStore(self.state_path)
        self.stats: dict[str, RunningStats] = {}
        self._unsaved: list[tuple[str, PaperTrade | None]] = []  # applied, not committed yet: (symbol, closed)
        self.models: dict[str, ModelMeta] = {}
        self.book: PaperBook | None = None
        self.restored = False
        self.waiting: list[messages.Signal] = []  # signals before paper.load
        self._unknown_logged: set[str] = set()
        self._want_last_signals = False
        self._next_ask = 0.0
        self._preditor: bus.Requester | None = None

    # ---- state file ---------------------------------------------------------------------------
    def _restore(self) -> PaperBook | None:
        try:
            return self.store.load()
        except StateError as exc:
            raise runtime.StepFailed(f"{exc}; move it away to start fresh") from None

    def _commit(self) -> None:
        """Save what this pass applied, then let it out (a crash before the save loses nothing that left)."""
        if not self._unsaved:
            return
        assert self.book is not None
        self.store.save(self.book)
        unsaved, self._unsaved = self._unsaved, []
        changed: dict[str, None] = {}
        for symbol, closed in unsaved:
            changed[symbol] = None
            if closed is not None:
                record = trade_record(closed, self._timeframe(symbol))
                self.persist("trades", record)
                self.publish(messages.paper_trade_topic(symbol), trade_message(closed, record["id"]))
                self.count("trades")
                logs.event(log, logging.INFO, "paper trade", symbol=symbol, pnl=round(closed.pnl, 2),
                           exit_time=closed.exit_time)
            self.beat_if_due()
        for symbol in changed:  # once per account and pass
            self.publish(messages.paper_metrics_topic(symbol),
                         metrics_message(self.book.accounts[symbol], self._timeframe(symbol), self.stats[symbol]))
        self.count("saves")

    # ---- steps --------------------------------------------------------------------------------
    def on_step(self, step: str, args: dict) -> dict:
        if step == "paper.load":
            return self._load()
        if step == "paper.warmup":
            return self._warmup()
        return super().on_step(step, args)

    def _load(self) -> dict:
        if not self.cfg.paper.enabled:
            self.book = PaperBook({})
            return {"enabled": False, "accounts": []}
        if self.book is not None:
            self._commit()  # a load again in the same process: what was applied is saved and sent first
        metas, errors = read_models(self.cfg.path(self.cfg.preditor.models_dir))
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
        self.stats = {s: RunningStats.of(a) for s, a in accounts.items()}
        migrated = self.store.legacy
        if created or migrated:  # commit the new accounts (and a version 1 file in today's format) now
            self.store.save(self.book)
        for account in accounts.values():  # re-send every trade: deterministic ids, the store deduplicates
            for trade in account.trades:
                self.persist("trades", trade_record(trade, self._timeframe(account.symbol)))
        return {"accounts": sorted(accounts), "created": created, "restored": self.restored,
                "migrated": migrated, "last_bar_time": self._last_bar_times(), "model_errors": errors}

    def _warmup(self) -> dict:
        assert self.book is not None, "paper.warmup before paper.load"
        # the preditor's last signals (again after a restart of the preditor or the connector): a signal not
        # after an account's last bar is ignored; a newer one (decided while we did not listen) is applied
        self._want_last_signals, self._next_ask = True, 0.0
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
        if received.envelope.src == "preditor" and received.seen.delivery in (
                Delivery.GAP, Delivery.NEW_EPOCH, Delivery.FIRST):
            self._want_last_signals = True  # lost signals (or a late join): the preditor keeps the last ones
        if not isinstance(body, messages.Signal):
            return
        self.count("signals_seen")
        if self.book is None:
            self.waiting.append(body)
            return
        self._apply(body)

    def on_tick(self, now: float) -> None:
        if self._want_last_signals and self.book is not None and now >= self._next_ask:
            self._want_last_signals = False
            self._ask_last_signals(now)
        if self.book is not None and self.waiting:
            waiting, self.waiting = self.waiting, []
            for sig in waiting:
                self._apply(sig)
        self._commit()  # once per loop pass: after every signal the pass drained (on_message, above)

    def _ask_last_signals(self, now: float) -> None:
        if self._preditor is None:
            self._preditor = bus.Requester(self.ctx, self.cfg.endpoint("preditor", "rep"), self.name,
                                           self.cfg.runtime.request_timeout_ms)
        try:
            raw = self._preditor.call(messages.OP_LAST_SIGNALS.name, messages.NoArgs())
        except (bus.RequestTimeout, bus.RequestFailed, wire.WireError) as exc:
            log.warning("last_signals from the preditor failed: %s; asked again", exc)
            self._want_last_signals = True  # a preditor still loading after its restart answers later
            self._next_ask = now + 2.0
            return
        self._next_ask = now + 1.0
        self.count("last_signals_asked")
        self.waiting.extend(raw.signals.values())

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
        # nothing leaves before the commit at the end of this pass: a crash before it loses, never half-sends,
        # what this pass applied (the same as signals still in the socket: asked again, or replayed)
        self._unsaved.append((sig.symbol, step.closed))
        self.count("signals_applied")
        self.beat_if_due()  # a long batch of signals keeps the heartbeats going

    # ---- status -------------------------------------------------------------------------------
    def _accounts_report(self) -> Mapping[str, Any]:
        if self.book is None:
            return {}
        out = {}
        for symbol, a in sorted(self.book.accounts.items()):
            pnl = self.stats[symbol].pnl if symbol in self.stats else sum(t.pnl for t in a.trades)
            out[symbol] = {"balance": a.balance, "equity": a.equity, "trades": len(a.trades),
                           "pnl": round(pnl, 2), "last_bar_time": a.last_bar_time,
                           "position": a.position.to_dict()}
        return out

    def status_report(self) -> dict:
        return {"accounts": self._accounts_report(), "restored": self.restored, "state_file": str(self.state_path),
                "journal": str(self.store.journal), "unsaved": len(self._unsaved)}

    def health_info(self) -> dict:
        return {"accounts": len(self.book.accounts) if self.book else 0}

    def pending_work(self) -> int:
        return len(self.waiting) + len(self._unsaved)

    def on_stop(self) -> None:
        try:
            self._commit()  # a graceful stop keeps what the last pass applied
        except OSError as exc:
            log.error("paper book not saved at stop: %s", exc)
        if self._preditor is not None:
            self._preditor.close()


def main(argv: list[str] | None = None) -> int:
    return runtime.main(Paper, argv)
