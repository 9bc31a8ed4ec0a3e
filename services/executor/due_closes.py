"""Closes the broker refused because the market is closed, kept until it opens. A pure state machine.

The rule (README "Closed market"): the broker is the judge of when a symbol trades; the executor keeps no calendar.
A close refused with MARKET_CLOSED (a signal's close, a manual `close` / `close_all`, the emergency close, the close
on exit) becomes **due**: kept in the state file (it survives a restart), acked FAIL MARKET_CLOSED saying it is due
at the open, and sent ONCE at the open with the same client order id (the connector treats a repeated id as the
same order):
- when `market.<SYM>` says the symbol's market is open (`opened`), or
- at sync / boot, when the positions reply does not list the symbol's market as closed (`synced`).
A due close whose position is gone (a stop, a person, another close) is dropped (`gone`, `synced`). A close sent at
the open and refused as MARKET_CLOSED again (the market was not open after all) is due again, for the next open;
any other answer ends it (`answered`). While a position has a close due, no other close of it is sent (its next
decided closes are acked SKIP MARKET_CLOSED, "already due"): one position, one close.
A daily break and a holiday are the weekend's case: the broker refuses, the close waits for the next open.

Transitions take values and return the new `DueCloses` plus what the shell must do; nothing here sends or reads a
clock (`since` is given by the caller).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from common import messages
from services.executor.acks import MARKET_CLOSED
from services.executor.commands import CloseOrder


class DueState(StrEnum):
    WAITING = "WAITING"  # the market is closed: waiting for its open
    SENT = "SENT"  # sent at the open, its answer awaited (a process that dies here sends it again at its sync)


@dataclass(frozen=True)
class DueClose:
    ticket: int
    symbol: str
    lots: float
    client_order_id: str  # the refused close's: the same order, sent at the open
    reason: str  # the close's own reason (SIGNAL_WAIT, REVERSAL, MANUAL_CLOSE, EMERGENCY_DD, CLOSE_ON_EXIT, ...)
    action: str  # the ack action of the refused close (CLOSE, CLOSE_THEN_WAIT, MANUAL_CLOSE, EMERGENCY_CLOSE, ...)
    bar_time: int | None  # the bar of the signal that decided it; None for a command, the emergency, the stop
    since: float  # when the broker refused it (Unix s)
    state: DueState = DueState.WAITING
    sent: int = 0  # times sent at an open

    @property
    def order(self) -> CloseOrder:
        return CloseOrder(self.ticket, self.symbol, self.lots, self.client_order_id, self.reason)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DueClose:
        """ValueError / KeyError / TypeError when a field is missing or wrong (the caller says which record)."""
        bar_time = data.get("bar_time")
        return cls(ticket=int(data["ticket"]), symbol=str(data["symbol"]), lots=float(data["lots"]),
                   client_order_id=str(data["client_order_id"]), reason=str(data["reason"]),
                   action=str(data["action"]), bar_time=None if bar_time is None else int(bar_time),
                   since=float(data["since"]), state=DueState(data.get("state", DueState.WAITING.value)),
                   sent=int(data.get("sent", 0)))


def refused(close: CloseOrder, action: str, bar_time: int | None, since: float) -> DueClose:
    """The due close of a close the broker refused as MARKET_CLOSED."""
    return DueClose(close.ticket, close.symbol, close.lots, close.client_order_id, close.reason, action, bar_time,
                    since)


@dataclass(frozen=True)
class DueCloses:
    closes: tuple[DueClose, ...] = ()  # sorted by ticket, one per ticket

    def for_ticket(self, ticket: int) -> DueClose | None:
        return next((d for d in self.closes if d.ticket == ticket), None)

    def symbols(self) -> set[str]:
        return {d.symbol for d in self.closes}

    def __len__(self) -> int:
        return len(self.closes)

    def to_list(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.closes]

    def _with(self, closes: Iterable[DueClose]) -> DueCloses:
        return DueCloses(tuple(sorted(closes, key=lambda d: d.ticket)))

    # ---- transitions

    def add(self, due: DueClose) -> tuple[DueCloses, bool]:
        """A close refused as MARKET_CLOSED. False: its position already has a close due (the first one stays)."""
        if self.for_ticket(due.ticket) is not None:
            return self, False
        return self._with((*self.closes, due)), True

    def opened(self, symbol: str, open_tickets: Collection[int]) -> tuple[DueCloses, list[DueClose], list[DueClose]]:
        """`market.<SYM>` says open: (book, to send now, dropped because their position is gone). `open_tickets`
        are the account's positions read after the event."""
        return self._release(lambda d: d.symbol == symbol, open_tickets)

    def synced(self, open_tickets: Collection[int], closed_symbols: Collection[str]
               ) -> tuple[DueCloses, list[DueClose], list[DueClose]]:
        """Sync / boot: (book, to send now: every due close whose market the positions reply does not list as
        closed, also one SENT by a process that died waiting for its answer; dropped: position gone)."""
        return self._release(lambda d: d.symbol not in closed_symbols, open_tickets)

    def _release(self, ready, open_tickets: Collection[int]) -> tuple[DueCloses, list[DueClose], list[DueClose]]:
        keep, send, dropped = [], [], []
        for d in self.closes:
            if d.ticket not in open_tickets:
                dropped.append(d)
            elif ready(d):
                sent = replace(d, state=DueState.SENT, sent=d.sent + 1)
                keep.append(sent)
                send.append(sent)
            else:
                keep.append(d)
        return self._with(keep), send, dropped

    def gone(self, ticket: int) -> tuple[DueCloses, DueClose | None]:
        """The position closed (a stop, a person, any close): its due close is dropped (returned, for the log)."""
        due = self.for_ticket(ticket)
        if due is None:
            return self, None
        return self._with(d for d in self.closes if d.ticket != ticket), due

    def answered(self, ticket: int, result: messages.OrderResult | str) -> tuple[DueCloses, bool]:
        """The answer to a due close sent at the open. MARKET_CLOSED again: due again, for the next open (True);
        anything else (closed, already flat, another error) ends it (False)."""
        due = self.for_ticket(ticket)
        if due is None:
            return self, False
        if market_refused(result):
            return self._with(replace(d, state=DueState.WAITING) if d.ticket == ticket else d
                              for d in self.closes), True
        return self._with(d for d in self.closes if d.ticket != ticket), False


def market_refused(result: messages.OrderResult | str) -> bool:
    """The broker refused the order because the symbol's market is closed."""
    return isinstance(result, messages.OrderResult) and not result.success and result.error_code == MARKET_CLOSED


def from_list(raw: Any) -> tuple[DueCloses, list[str]]:
    """The state file's `due_closes`; (book, problems): an unreadable record is reported, never silently dropped."""
    if raw is None:
        return DueCloses(), []
    if not isinstance(raw, list):
        return DueCloses(), [f"due_closes is not a list: {raw!r}"]
    book, problems = DueCloses(), []
    for record in raw:
        try:
            due = DueClose.from_dict(record)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"unreadable due close {record!r}: {type(exc).__name__} {exc}")
            continue
        book, _ = book.add(due)
    return book, problems
