"""The executor's order desk (shell, part of service.py's `Executor`): decided orders out to the connector and
their answers back in.

It moves messages and applies what the pure modules return: a batch of decided signals takes off as a flight
(flights.py) whose requests go out together, one REQ socket each (order_lines.py); the loop drives the flights
out, and a flight whose orders are all answered lands (its acks published, the positions and the closes due at
the open updated, the state file rewritten). After a restart the intents written ahead are carried out again
(replay.py). Closes outside a signal (commands, the emergency, the close on exit) and the closes due at the open
(due_closes.py) are sent the same way and waited for.

It lives on the `Executor` (a base class of it): it reads and writes the executor's state (positions, closes due,
the state file) and uses its requests, counters and publishing (`_fetch_positions`, `_fetch_symbol`,
`_save_state`, `_emit_ack`, `_publish_acks`, `alert`, `count`, `beat_if_due`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import zmq

from common import bus, logs, messages, trace
from services.executor import flights, inputs, order_answers, replay
from services.executor.acks import Ack
from services.executor.batch import Decided
from services.executor.commands import CloseOrder, RealPosition
from services.executor.due_closes import DueClose, DueCloses
from services.executor.flights import FlightsOut, SignalDone
from services.executor.order_answers import DUE_CLOSE, OrderRequest
from services.executor.order_lines import OrderGroup
from services.executor.sync import Direction

log = logging.getLogger("oracle.executor")

ORDER_ATTEMPT_S = 5.0  # one order request's wait before it is asked again (same client order id)


class ConnectorDown(RuntimeError):
    """The connector did not answer (or refused) a request the decision needs; the signal is retried."""


class OrderDesk:
    """Orders out and their answers in; the executor's state it works on is declared here, its own made by
    `_open_desk`."""

    cfg: Any
    ctx: Any
    name: str
    dry_run: bool
    epoch: int
    halted: bool
    risk: Any  # risk.RiskState
    positions: list[RealPosition]
    pip_positions: dict[str, int]
    due: DueCloses
    last_decisions: dict[str, str]
    closed_markets: set[str]
    markets: dict[str, dict]
    _positions_fresh: bool
    _retry_at: float

    def _open_desk(self) -> None:
        """The desk's own state (the state file fills `_replay`, `_v1_intents` at load)."""
        self._flights = FlightsOut()  # batches whose orders are out
        self._flight_lines: dict[int, OrderGroup] = {}  # flight number -> its order requests at the connector
        self._order_lines: list[bus.Requester] = []  # idle REQ sockets to the connector, one per order in flight
        self._replay: list[dict] = []  # orders decided by an earlier process that died carrying them out
        self._v1_intents: list[dict] = []  # the same, written by a version-1 executor: converted when replayed
        self._last_ack_records: list[dict] = []  # for persistence, of the last orders answered (state file)
        self._opened: set[str] = set()  # symbols whose market opened with closes due there, not yet sent

    # ---- flights: a batch of signals' orders ----------------------------------------------------
    def _execute(self, batch: list[Decided], margin: float = 0.0, intents: list[dict] | None = None) -> None:
        """Carry out decided signals: the write-ahead intent, every order at once; the acks when the answers are in
        (`_drive_flights`)."""
        flight = flights.take_off(batch, positions=self.positions, due=self.due, halt_reason=self._halt_reason(),
                                  dry_run=self.dry_run, margin=margin, intents=intents)
        for counter, n in (("closes_sent", flight.closes_sent()), ("orders_sent", flight.openings_sent())):
            if n:
                self.count(counter, n)
        # the signals with no order out are done now. With no order out of the batch, their acks' records go to
        # the outbox's spool first (in the OS at once: a kill loses none) and the state's entry that names them
        # decided does not carry them (a kill before that entry: the next process evaluates the signals again, as
        # at any restart). With orders out, they are kept in the entry written ahead of the orders (fdatasynced
        # with it) and spooled right after the orders left: a kill in between leaves them to the next process
        # (the state's `acks`, handed to persistence again at load, same ids), and nothing of them is on the path
        # to the orders; the entry after the landing no longer holds them (spooled by then)
        done_now = flight.done_now()
        records = self._records(done_now)
        if not flight.orders:
            for rs in records:
                for record in rs:
                    self.persist("acks", record)
            self._finish(done_now, records, spooled=True)
            return
        number = self._flights.add(flight)
        done_records = [r for rs in records for r in rs]
        self._last_ack_records = done_records
        self._save_state(ahead=True)
        trace.mark("executor.intent_durable", str(len(flight.orders)))
        try:
            self._positions_fresh = False  # whatever the outcome, the account may change
            self._flight_lines[number] = self._group(flight.requests)
            self._flight_lines[number].pump(time.monotonic())  # out now
            trace.mark("executor.orders_out")
        finally:
            self.persist_many("acks", done_records)  # in the spool before any later entry drops them from the state
        self._emit_done(done_now, records, persist=False)

    def _halt_reason(self) -> str | None:
        """Why openings are blocked now (None: they are not)."""
        return (self.risk.halt_reason or "system HALTED") if self.halted else None

    def _drive_flights(self, now: float) -> None:
        """Take the answers that arrived; land the batches whose orders are all answered."""
        for number, group in list(self._flight_lines.items()):
            if group.pump(now):
                del self._flight_lines[number]
                self._release(group)
                self._land(number, group.final())

    def _wait_flights(self) -> None:
        """Until every batch in flight has landed (a step, a replay, a stop), heartbeats going on."""
        while self._flights:
            self._poll(self.awaited_sockets())
            self._drive_flights(time.monotonic())
            self.beat_if_due()

    def _land(self, number: int, answers: list[order_answers.Answer]) -> None:
        flight = self._flights.landed(number)
        if flight is None:
            log.error("answers for flight %d, which is not out: ignored", number)
            return
        landing = flights.land(flight, answers, positions=self.positions, pip_positions=self.pip_positions,
                               due=self.due, now=time.time())
        self.positions, self.due = landing.positions, landing.due
        for d in landing.newly_due:
            logs.event(log, logging.WARNING, "close due at the open", symbol=d.symbol, ticket=d.ticket,
                       cid=d.client_order_id, action=d.action)
        self._finish(landing.done)

    def _records(self, done: list[SignalDone]) -> list[list[dict]]:
        stamp = time.time()
        return [[inputs.ack_record(ack, stamp, d.sig, i, self.epoch) for i, ack in enumerate(d.acks)] for d in done]

    def _finish(self, done: list[SignalDone], records: list[list[dict]] | None = None, spooled: bool = False) -> None:
        """The signals are evaluated and their orders answered: that, the stances and the acks' records survive a
        crash from here on (the next process hands the records to persistence again, never decides them again).
        In the OS at once (a kill loses nothing), on the disk with the next fdatasync: no order leaves on this
        entry, and an order's answer lost with it (a power cut) leaves its intent, carried out again with the same
        client order id (the connector answers the first result) after the restart. `spooled`: the records are in
        the outbox's spool already (signals with no order out, `_execute`): not in the state too. The acks of
        orders answered are kept in the state with it (spooled before it, a kill between would leave the intent to
        be carried out again and acked a second time)."""
        for d in done:
            self.last_decisions[d.sig.symbol] = d.decided.reason
        records = self._records(done) if records is None else records
        self._last_ack_records = [] if spooled else [r for rs in records for r in rs]
        self._save_state(sync=False)
        self._emit_done(done, records, persist=not spooled)

    def _emit_done(self, done: list[SignalDone], records: list[list[dict]], persist: bool = True) -> None:
        """The signals' acks published together, in order; their records handed to persistence first (`persist`)."""
        acks: list[Ack] = []
        for d, rs in zip(done, records, strict=True):
            if len(rs) != len(d.acks):
                raise ValueError(f"{len(rs)} records for the {len(d.acks)} acks of {d.sig.symbol}")
            if persist:
                for record in rs:
                    self.persist("acks", record)
            acks += d.acks
        if acks:
            self._publish_acks(acks)

    def _replay_intents(self) -> None:
        """The orders of signals an earlier process decided and died carrying out: the same orders again, the acks
        the first process would have made (replay.py). ConnectorDown: kept, retried."""
        self._convert_v1_intents()
        again = replay.replay(self._replay, self.positions)
        self._alert_not_carried_out("unreadable_intent", "orders written ahead", again.unreadable)
        data = {s: self._fetch_symbol(s, time.time()) for s in again.opening_symbols()}
        self.positions += again.positions
        batch = [replace(o, data=data.get(o.sig.symbol)) if o.open is not None else o for o in again.batch]
        for o in batch:
            logs.event(log, logging.INFO, "orders of a signal decided before a restart", symbol=o.sig.symbol,
                       bar_time=o.sig.bar_time, closes=len(o.closes), open=o.open is not None)
        intents, self._replay = self._replay, []
        if batch:
            self._execute(batch, intents=intents)
            self._wait_flights()
        self._save_state(compact=True)  # rare (a restart): the snapshot shows the orders written ahead are done

    def _convert_v1_intents(self) -> None:
        """Orders written ahead by a version-1 executor (protocol volumes): converted to lots with their symbols'
        contract sizes (asked of the connector), then carried out like any. One that cannot be converted (the
        connector does not know its symbol) is not sent: an alert names its orders. ConnectorDown: kept, retried."""
        if not self._v1_intents:
            return
        sizes: dict[str, float | None] = {}
        for symbol in replay.v1_symbols(self._v1_intents):
            limits = self._fetch_symbol(symbol, time.time()).volume_limits
            sizes[symbol] = limits.contract_size if limits is not None else None
        converted, refused = replay.from_v1(self._v1_intents, sizes)
        for intent in converted:
            logs.event(log, logging.INFO, "version-1 orders converted to lots", reason=intent.get("reason"))
        self._alert_not_carried_out("legacy_intent", "orders written ahead by a version-1 executor", refused)
        self._replay += converted
        self._v1_intents = []
        self._save_state()

    def _alert_not_carried_out(self, kind: str, what: str, intents: list[replay.NotCarriedOut]) -> None:
        for no in intents:
            self.alert(kind, "critical", f"{what} not carried out: {no.error}; check them at the broker: "
                       f"{no.client_order_ids}", client_order_ids=no.client_order_ids)

    # ---- closes outside a signal, closes due at the open ------------------------------------------
    def _send_closes(self, closes: list[CloseOrder], action: str, sig: messages.Signal | None = None) -> list[Ack]:
        """Closes outside a signal's plan (commands, emergency, close on exit), all at once. A position with a close
        due at the open is not closed again."""
        bar_time = sig.bar_time if sig else None
        if self.dry_run:
            return [order_answers.close_dry_run(c, action, bar_time) for c in closes]
        acks: list[Ack | None] = [order_answers.already_due(c, action, bar_time, self.due) for c in closes]
        send = [c for c, ack in zip(closes, acks, strict=True) if ack is None]
        sides = order_answers.closing_sides(self.positions)
        self.count("closes_sent", len(send))
        due_before = self.due
        answers = iter(self._orders([order_answers.close_request(c.ticket, c.client_order_id) for c in send]))
        out = [ack if ack is not None else self._close_ack(c, action, sig, sides.get(c.ticket), next(answers))
               for c, ack in zip(closes, acks, strict=True)]
        if self.due != due_before:
            self._save_state()
        return out

    def _close_ack(self, c: CloseOrder, action: str, sig: messages.Signal | None, side: Direction | None,
                   answer: order_answers.Answer, bar_time: int | None = None) -> Ack:
        """The ack of a close's answer; a close the market refused is kept due at the open (the caller saves)."""
        closed = order_answers.close_answered(c, action, sig, side, answer, pip_position=self.pip_positions.get(
            c.symbol), due=self.due, now=time.time(), bar_time=bar_time)
        self.due = closed.due
        if closed.newly_due is not None:
            logs.event(log, logging.WARNING, "close due at the open", symbol=c.symbol, ticket=c.ticket,
                       cid=c.client_order_id, action=action)
        return closed.ack

    def _on_market(self, ev: messages.MarketState) -> None:
        """The connector says a symbol's market opened or closed. Opened with closes due there: they go at the next
        turn of the loop (`_release_due_at_open`)."""
        self.count("market_events")
        self.markets[ev.symbol] = {"open": ev.open, "time": ev.time, "reason": ev.reason}
        logs.event(log, logging.INFO, "market open" if ev.open else "market closed", symbol=ev.symbol,
                   time=ev.time, reason=ev.reason)
        if ev.open:
            self.closed_markets.discard(ev.symbol)
            if ev.symbol in self.due.symbols():
                self._opened.add(ev.symbol)
        else:
            self.closed_markets.add(ev.symbol)
            self._opened.discard(ev.symbol)

    def _send_due(self, dues: list[DueClose]) -> None:
        """Closes due at the open, sent now with their own client order ids; acked as DUE_CLOSE. The state (the
        dues marked SENT) is saved before they go, and again with their answers."""
        if not dues:
            return
        self._save_state()
        self.count("due_closes_sent", len(dues))
        results = self._orders([order_answers.close_request(d.ticket, d.client_order_id) for d in dues])
        sides = order_answers.closing_sides(self.positions)
        acks = []
        for d, res in zip(dues, results, strict=True):
            self.due, again = self.due.answered(d.ticket, res)
            ack = self._close_ack(d.order, DUE_CLOSE, None, sides.get(d.ticket), res, bar_time=d.bar_time)
            logs.event(log, logging.INFO if not again else logging.WARNING,
                       "due close refused again: due at the next open" if again else "due close sent at the open",
                       symbol=d.symbol, ticket=d.ticket, cid=d.client_order_id, status=ack.status.value,
                       reason=ack.reason)
            acks.append((d, ack))
        self._save_state()
        for d, ack in acks:
            # one record per sending (a due close refused again is sent again at a later open)
            self._emit_ack(ack, None, d.sent)

    def _drop_gone(self, dropped: list[DueClose]) -> None:
        for d in dropped:
            logs.event(log, logging.INFO, "due close dropped: its position is gone", symbol=d.symbol, ticket=d.ticket,
                       cid=d.client_order_id)

    def _release_due_at_sync(self) -> None:
        """Sync / boot, right after a positions answer: the closes due where that answer does not say the market is
        closed go now; those whose position is gone are dropped."""
        if not len(self.due):
            return
        if self.dry_run:
            log.warning("dry run: %d closes due at the open are kept, not sent", len(self.due))
            return
        self.due, send, dropped = self.due.synced({p.ticket for p in self.positions}, self.closed_markets)
        self._drop_gone(dropped)
        if dropped and not send:
            self._save_state()
        self._send_due(send)

    def _release_due_at_open(self, busy: set[str]) -> None:
        """`market.<SYM>` said open: that symbol's due closes go (after its orders in flight have landed)."""
        ready = sorted(s for s in self._opened if s not in busy)
        if not ready:
            return
        if self.dry_run:
            log.warning("dry run: the closes due at the open of %s are kept, not sent", ", ".join(ready))
            self._opened.difference_update(ready)
            return
        try:
            self._fetch_positions()
        except ConnectorDown as exc:
            self._retry_at = time.monotonic() + 1.0
            log.warning("closes due at the open wait for the connector: %s", exc)
            return
        self._positions_fresh = False
        tickets = {p.ticket for p in self.positions}
        send: list[DueClose] = []
        for symbol in ready:
            self._opened.discard(symbol)
            self.due, mine, dropped = self.due.opened(symbol, tickets)
            self._drop_gone(dropped)
            send += mine
        if not send:
            self._save_state()
        self._send_due(send)

    # ---- order requests --------------------------------------------------------------------------
    def _orders(self, requests: list[OrderRequest]) -> list[order_answers.Answer]:
        """Order requests outside a signal's batch (commands, emergency, close on exit), all at once; returns when
        every one is answered or `executor.order_timeout_s` has passed (order_lines.py). A string is the error."""
        if not requests:
            return []
        self._positions_fresh = False  # whatever the outcome, the account may have changed
        group = self._group(requests)
        while not group.pump(time.monotonic()):
            self._poll(group.sockets())
            self.beat_if_due()
        self._release(group)
        return group.final()

    def _open_lines(self, n: int) -> int:
        """Order lines opened ahead (at executor.load, and when a command enables a symbol): `n` in all, idle or
        out with a flight, so a flight's path never opens a socket, nor waits for its connection to the connector
        (made by ZeroMQ's I/O thread meanwhile). A line that timed out is reset, i.e. reopened, where it timed out
        (bus.Requester) and comes back to the pool ready. Returns the lines opened now."""
        out = sum(len(group.lines) for group in self._flight_lines.values())
        opened = max(0, n - len(self._order_lines) - out)
        self._order_lines += [self._new_line() for _ in range(opened)]
        return opened

    def _new_line(self) -> bus.Requester:
        return bus.Requester(self.ctx, self.cfg.endpoint("connector", "rep"), self.name,
                             self.cfg.runtime.request_timeout_ms)

    def _group(self, requests: list[OrderRequest]) -> OrderGroup:
        short = len(requests) - len(self._order_lines)
        if short > 0:  # more orders out at once than lines opened ahead: the lines opened now stay in the pool
            self.count("order_lines_opened_in_flight", short)
            self._order_lines += [self._new_line() for _ in range(short)]
        lines, self._order_lines = self._order_lines[: len(requests)], self._order_lines[len(requests):]
        return OrderGroup(lines, list(requests), time.monotonic() + self.cfg.executor.order_timeout_s,
                          ORDER_ATTEMPT_S)

    def _release(self, group: OrderGroup) -> None:
        self._order_lines += group.lines

    @staticmethod
    def _poll(sockets: list[zmq.Socket], timeout_ms: int = 50) -> None:
        if not sockets:
            time.sleep(0.02)  # a resend waits for its time
            return
        poller = zmq.Poller()
        for sock in sockets:
            poller.register(sock, zmq.POLLIN)
        poller.poll(timeout_ms)
