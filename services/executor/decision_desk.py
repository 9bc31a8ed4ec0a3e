"""The executor's decision desk (shell, part of service.py's `Executor`): the signals waiting, decided.

The signals of a bar close are gathered into one batch (batch.py `gathered`: every symbol expected for the bar has
its signal in, or the first has waited `GATHER_S`), so one positions request and one state write serve them all.
Every signal of the batch is decided first (`plan.plan_signal` on the positions of one connector answer,
with its account and quotes; batch.py shares the account and margin between them), then all their orders go to the
order desk together as one flight (order_desk.py). A symbol with an order out waits for it. A connector that is
down fails a signal before any decision: it stays waiting, acked FAIL NO_CONNECTOR once, and is tried again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from common import messages
from common.bus import Received
from services.executor import inputs
from services.executor.acks import Ack, AckStatus, ack_skip
from services.executor.batch import Batch, Decided, expected, gathered
from services.executor.commands import RealPosition
from services.executor.order_desk import ConnectorDown
from services.executor.plan import SignalInputs, plan_signal, sync_decision
from services.executor.sync import Stance, SyncAction

log = logging.getLogger("oracle.executor")

# The longest a waiting signal waits for the other signals of its bar close (the preditor steps 20 models in some
# 6 ms): past it, what is in is decided, the rest in the next batch.
GATHER_S = 0.025
# While they are gathered, the loop naps this long between its turns: the signals arriving meanwhile are taken in
# one turn (waking the process for each costs more than deciding it)
NAP_S = 0.002


class DecisionDesk:
    """Signals waiting -> decided batches; the executor's state it works on is declared here."""

    config: Any  # symbols_config.ExecutorSymbols | None
    paused: bool
    risk: Any  # risk.RiskState
    stopped: bool
    positions: list[RealPosition]
    pending: dict[str, tuple[messages.Signal, int | None, int | None]]  # latest unevaluated per symbol
    failed_acked: set[tuple[str, int]]  # signals already acked FAIL while the connector was down
    previous: dict[str, Stance]
    handled: dict[str, int]
    last_decisions: dict[str, str]
    modelled: set[str]
    timeframes: dict[str, str]
    _symbol_data: dict[str, inputs.SymbolData]
    _positions_fresh: bool
    _positions_down: Exception | None  # the batch's positions request found the connector down (_prefetch_positions)
    _deferred: list[Received] | None  # while the batch's positions are awaited: messages read, handled after them
    _retry_at: float
    _gather_from: float | None  # when the oldest signal waiting to be decided arrived (time.monotonic)
    _expecting: tuple[tuple[str, int], frozenset[str]]  # (timeframe, bar time) -> the symbols expected for it

    def _note_waiting(self) -> None:
        """A signal is waiting: the batch's deadline starts with the first."""
        if self._gather_from is None:
            self._gather_from = time.monotonic()

    def _batch_ready(self, now: float) -> bool | None:
        """Decide the signals waiting now? True: every symbol expected for their bar has its signal in, or the first
        has waited GATHER_S (or the executor stopped); False: more are on their way; None: none can be decided
        (a symbol's signal with its order out waits for it)."""
        if self.stopped or self._gather_from is None or now - self._gather_from >= GATHER_S:
            return True
        busy = self._flights.symbols()
        waiting = [(s, sig.bar_time) for s, (sig, _seq, _epoch) in self.pending.items() if s not in busy]
        if not waiting:
            return None
        bar_time = max(t for _s, t in waiting)
        timeframe = self.timeframes.get(next(s for s, t in waiting if t == bar_time), "")
        if self._expecting[0] != (timeframe, bar_time):
            self._expecting = ((timeframe, bar_time), expected(self.handled, self.timeframes, timeframe, bar_time))
        arrived = ((s, sig.bar_time) for s, (sig, _seq, _epoch) in self.pending.items())
        return gathered(arrived, self._expecting[1], self.handled, bar_time)

    def _gather_left_s(self, now: float) -> float | None:
        """How long the loop may sleep before the gathered batch is due (None: no deadline ahead)."""
        if self._gather_from is None or not self.pending:
            return None
        left = self._gather_from + GATHER_S - now
        return left if left > 0 else None

    def _prefetch_positions(self) -> bool:
        """The positions (with the account and the quotes) for the batch being gathered, asked as soon as its first
        signal is in: the round trip overlaps the arrival of the bar's other signals instead of following the last
        one, and they are taken as they arrive while the answer is awaited (`_deferred`: the SUB socket is read
        meanwhile; its other messages are handled after the answer, as they would have been read after it). The
        batch's decisions use this answer, unless an order leaves in between (asked again then). A connector that
        is down: kept for the batch's first decision, which fails on it as it would on its own request. True when
        it asked."""
        if self._positions_fresh or self._positions_down is not None:
            return False
        self._deferred = []
        try:
            try:
                self._fetch_positions()
            except ConnectorDown as exc:
                self._positions_down = exc
                return True
            self._positions_fresh = True
            return True
        finally:
            # after the answer is taken (an order one of them sends, an emergency's closes, has it asked again)
            deferred, self._deferred = self._deferred, None
            for received in deferred:
                self.on_message(received)

    def _decide_waiting(self) -> None:
        """The signals waiting whose symbol has no order out: decided together, their orders out as one flight."""
        busy = self._flights.symbols()  # a symbol's next signal waits for its orders
        try:
            if any(s not in busy for s in self.pending):
                self._decide_batch(busy)
        finally:
            # what still waits is a symbol's signal behind its order out (decided when that lands) or one the
            # connector failed (retried at _retry_at): the next gathering starts with the next signal to arrive
            self._gather_from = None
            self._positions_fresh = False  # asked again for every batch of signals
            self._positions_down = None

    def _decide_batch(self, busy: set[str]) -> None:
        if self.stopped:
            for sig, _seq, _epoch in self.pending.values():
                self._emit_ack(ack_skip(sig.symbol, "SIGNAL", "STOPPED", "executor.stop ran", sig.bar_time), sig)
            self.pending.clear()
            return
        # every waiting signal is decided first, then all their orders go out together (one state write, orders
        # overlapping at the connector, and with those of batches still waiting for their fills): a bar closing for
        # many symbols reaches its last order as soon as its first
        in_flight = self._flights.margin()
        batch = Batch(committed_margin=in_flight)
        down: tuple[messages.Signal, ConnectorDown] | None = None
        for symbol in sorted(self.pending):
            if symbol in busy:
                continue
            sig, _seq, _epoch = self.pending[symbol]
            try:
                batch.decided.append(self._decide(sig, True, batch))
            except ConnectorDown as exc:
                down = (sig, exc)
                break
            self.pending.pop(symbol, None)
            self.failed_acked = {k for k in self.failed_acked if k[0] != symbol}
        if batch.decided:
            self._execute(batch.decided, batch.committed_margin - in_flight)
        if down is not None:
            sig, exc = down
            self._retry_at = time.monotonic() + 1.0
            self.count("connector_failures")
            key = (sig.symbol, sig.bar_time)
            if key not in self.failed_acked:  # one FAIL ack per signal; it is retried until a newer one comes
                self.failed_acked.add(key)
                self._emit_ack(Ack(sig.symbol, "SIGNAL", AckStatus.FAIL, "NO_CONNECTOR", str(exc),
                                   bar_time=sig.bar_time), sig)
            log.warning("signal %s %s waits for the connector: %s", sig.symbol, sig.bar_time, exc)

    def _evaluate(self, sig: messages.Signal, allow_open: bool) -> str:
        """Decide one signal and carry it out. ConnectorDown before any decision: nothing recorded, retried."""
        decided = self._decide(sig, allow_open, Batch())
        self._execute([decided])
        self._wait_flights()
        return decided.reason

    def _decide(self, sig: messages.Signal, allow_open: bool, batch: Batch) -> Decided:
        """Plan one signal (its orders are carried out by `_execute`, with the others of its batch). ConnectorDown
        before the decision: nothing recorded."""
        now = time.time()
        assert self.config is not None
        symbol = sig.symbol
        try:
            stance = inputs.stance(sig)
        except ValueError as exc:
            self.handled[symbol] = sig.bar_time
            return Decided(sig, "SIGNAL", "BAD_SIGNAL", allow_open,
                           ack=ack_skip(symbol, "SIGNAL", "BAD_SIGNAL", str(exc), sig.bar_time))
        if not self._positions_fresh:
            down, self._positions_down = self._positions_down, None
            if down is not None:  # the batch's positions, asked while it was gathered, found the connector down
                raise down
            self._fetch_positions()  # first: a connector that is down fails here, at once
            self._positions_fresh = True
        # The sync decision reads the positions and the symbol's spec only; the quote and the account matter
        # to an opening alone, which is planned again on the quote and account that came with the positions
        # (symbol_info / account asked only when that answer lacks them)
        data = self._symbol_data.get(symbol) or self._fetch_symbol(symbol, now)
        x = self._inputs(sig, stance, data, None, now)
        decision = sync_decision(x)
        if decision.action == SyncAction.OPEN:
            # the same decision on these inputs (it reads neither the quote nor the account: a symbol without a
            # position, so not its volume limits either), planned on them
            data = self._quoted(symbol, now)
            plan = plan_signal(self._inputs(sig, stance, data, batch.account(self._account_now, now), now), decision)
            if plan.open is not None and plan.required_margin:
                batch.committed_margin += plan.required_margin
        else:
            plan = plan_signal(x, decision)
        self.modelled.add(symbol)  # a signal proves a model
        # decided: from here on the signal is consumed whatever happens to its orders
        self.previous[symbol] = stance
        self.handled[symbol] = sig.bar_time
        self.last_decisions[symbol] = plan.decision.reason
        self.count("signals_evaluated")
        if plan.halt and plan.risk is not None:
            self._halt(plan.risk.reason, plan.risk.detail)
        return Decided(sig, plan.decision.action.value, plan.decision.reason, allow_open, list(plan.closes),
                       plan.open, data, plan.ack)

    def _inputs(self, sig: messages.Signal, stance: Stance, data: inputs.SymbolData,
                acct: inputs.AccountData | None, now: float) -> SignalInputs:
        assert self.config is not None
        return SignalInputs(
            symbol=sig.symbol, bar_time=sig.bar_time, signal=stance, previous=self.previous.get(sig.symbol),
            twin_previous=inputs.twin_previous(sig),
            positions=self.positions, modelled=True, paused=self.paused, config=self.config.symbol(sig.symbol),
            risk_limits=self.config.risk, risk=self.risk, now=now, quote=data.quote,
            volume_limits=data.volume_limits, price_data=data.price_data,
            balance=acct.balance if acct else None, free_margin=acct.free_margin if acct else None,
            leverage=acct.leverage if acct else None, min_sl_distance=data.min_sl_distance,
            min_tp_distance=data.min_tp_distance,
            action_index=sig.action if 0 <= sig.action <= 6 else None,
            hmm_state=sig.hmm_state if sig.hmm_state >= 0 else None, virtual_pnl=sig.virtual_pnl)
