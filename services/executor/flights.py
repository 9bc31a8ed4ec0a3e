"""Orders in flight (pure): a batch's orders from take-off to landing, and the flights out at a moment.

A batch of decided signals takes off: every order that goes is listed (its request), every order that does not go
is acked at once (dry run, sync never opens, halted, a close already due at the open), and the orders sent are
written ahead as intents (state_file.py) until the flight lands. It lands when the connector has answered all its
orders (an answer is an `OrderResult`, or the error string of an order that got none in time): each answer becomes
its ack (order_answers.py), a filled opening a position, a close the market refused a close due at the open; the
signals with an order in the flight are acked then, in their order.

Nothing here sends, waits or reads a clock: the shell (service.py) sends the requests (order_lines.py), hands the
answers in with the time, and applies what a landing returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from common import messages
from services.executor import order_answers
from services.executor.acks import Ack
from services.executor.batch import Decided
from services.executor.commands import CloseOrder, RealPosition
from services.executor.due_closes import DueClose, DueCloses
from services.executor.order_answers import Answer, OrderRequest
from services.executor.plan import OpenOrder
from services.executor.sync import Direction


@dataclass(frozen=True)
class SignalDone:
    """A decided signal whose orders are all answered (or not sent): its acks, in order."""

    decided: Decided
    acks: list[Ack]

    @property
    def sig(self) -> messages.Signal:
        return self.decided.sig


@dataclass
class Flight:
    """A batch's orders out at the connector; its signals are acked when the last answer is in."""

    batch: list[Decided]
    orders: list[tuple[int, CloseOrder | OpenOrder]]  # (index in batch, order) of the orders sent
    acks: list[list[Ack | None]]  # per signal; None: the ack of an order still out
    sides: dict[int, Direction]  # ticket -> side of its closing deal
    intents: list[dict]  # kept in the state file until the flight lands
    margin: float  # required margin of its openings
    done_at_take_off: set[int] = field(default_factory=set)  # signals with no order out: acked at take-off

    @property
    def symbols(self) -> set[str]:
        return {o.sig.symbol for o in self.batch}

    @property
    def requests(self) -> list[OrderRequest]:
        return [order_answers.close_request(order.ticket, order.client_order_id) if isinstance(order, CloseOrder)
                else order_answers.open_request(order) for _, order in self.orders]

    def closes_sent(self) -> int:
        return sum(isinstance(order, CloseOrder) for _, order in self.orders)

    def openings_sent(self) -> int:
        return sum(isinstance(order, OpenOrder) for _, order in self.orders)

    def done_now(self) -> list[SignalDone]:
        """The signals acked at take-off (no order of theirs is out)."""
        return [_done(self.batch[n], self.acks[n]) for n in sorted(self.done_at_take_off)]


def _done(o: Decided, acks: Sequence[Ack | None]) -> SignalDone:
    return SignalDone(o, [a for a in acks if a is not None] + ([o.ack] if o.ack is not None else []))


def take_off(batch: list[Decided], *, positions: Sequence[RealPosition], due: DueCloses, halt_reason: str | None,
             dry_run: bool, margin: float = 0.0, intents: list[dict] | None = None) -> Flight:
    """The flight of decided signals: the orders that go, the acks of those that do not. `intents`: the ones
    written by an earlier process (a replay) instead of new ones. `halt_reason`: openings are blocked (None: not)."""
    orders: list[tuple[int, CloseOrder | OpenOrder]] = []
    acks: list[list[Ack | None]] = []
    for n, o in enumerate(batch):
        mine: list[Ack | None] = []
        for c in o.closes:
            if dry_run:
                mine.append(order_answers.close_dry_run(c, o.action, o.sig.bar_time))
                continue
            waiting = order_answers.already_due(c, o.action, o.sig.bar_time, due)
            if waiting is not None:
                mine.append(waiting)
                continue
            orders.append((n, c))
            mine.append(None)
        if o.open is not None:
            early = order_answers.open_refusal(o, halt_reason=halt_reason, dry_run=dry_run)
            if early is None:
                orders.append((n, o.open))
            mine.append(early)
        acks.append(mine)
    if intents is None:
        # write-ahead: a crash while these orders are out carries out the same orders again (same client order
        # ids: the connector answers their first result), never decides the signals again on an account they
        # have already changed. Only the orders sent: an opening refused here (halted) stays refused.
        directions = {p.ticket: int(p.direction) for p in positions}
        sent_opens = {n for n, order in orders if isinstance(order, OpenOrder)}
        intents = [replace(batch[n], open=batch[n].open if n in sent_opens else None).intent(directions)
                   for n in sorted({n for n, _ in orders})]
    done = {n for n, mine in enumerate(acks) if None not in mine}
    return Flight(batch, orders, acks, order_answers.closing_sides(positions), intents, margin, done)


@dataclass(frozen=True)
class Landing:
    """What a flight's answers change: its signals' acks, the account's positions, the closes due at the open."""

    done: list[SignalDone]  # the signals that had an order in the flight, in batch order
    positions: list[RealPosition]  # with the openings filled
    due: DueCloses  # with the closes the market refused
    newly_due: list[DueClose]  # those closes (for the log)


def land(flight: Flight, answers: Sequence[Answer], *, positions: Sequence[RealPosition],
         pip_positions: dict[str, int], due: DueCloses, now: float) -> Landing:
    """The flight's answers, one per order in the order sent, as acks and changes. ValueError: not one per order."""
    if len(answers) != len(flight.orders):
        raise ValueError(f"{len(answers)} answers for the {len(flight.orders)} orders of the flight")
    acks = [list(mine) for mine in flight.acks]
    positions = list(positions)
    newly_due: list[DueClose] = []
    for (n, order), answer in zip(flight.orders, answers, strict=True):
        o = flight.batch[n]
        if isinstance(order, CloseOrder):
            closed = order_answers.close_answered(order, o.action, o.sig, flight.sides.get(order.ticket), answer,
                                                  pip_position=pip_positions.get(order.symbol), due=due, now=now)
            ack, due = closed.ack, closed.due
            if closed.newly_due is not None:
                newly_due.append(closed.newly_due)
        else:
            ack, opened = order_answers.open_answered(order, o, answer, positions)
            if opened is not None:
                positions.append(opened)
        acks[n][acks[n].index(None)] = ack
    done = [_done(flight.batch[n], acks[n]) for n in range(len(flight.batch)) if n not in flight.done_at_take_off]
    return Landing(done, positions, due, newly_due)


@dataclass
class FlightsOut:
    """The flights out now, by number, in take-off order. An answer for a flight that is not out (landed already,
    or never took off) is refused, never applied twice."""

    flights: dict[int, Flight] = field(default_factory=dict)
    _next: int = 1

    def add(self, flight: Flight) -> int:
        number = self._next
        self._next += 1
        self.flights[number] = flight
        return number

    def landed(self, number: int) -> Flight | None:
        """The flight `number`, taken off the list because its answers are in; None: no such flight is out."""
        return self.flights.pop(number, None)

    def __len__(self) -> int:
        return len(self.flights)

    def symbols(self) -> set[str]:
        """Symbols with an order out: their next signal waits for it."""
        return {s for f in self.flights.values() for s in f.symbols}

    def margin(self) -> float:
        """Required margin of the openings out."""
        return sum(f.margin for f in self.flights.values())

    def intents(self) -> list[dict]:
        """The orders out, as the state file keeps them."""
        return [i for f in self.flights.values() for i in f.intents]
