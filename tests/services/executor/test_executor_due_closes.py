"""The closes due at the open (due_closes.py): one table per transition."""

import pytest

from common.messages import OrderResult
from services.executor.commands import CloseOrder
from services.executor.due_closes import DueClose, DueCloses, DueState, from_list, market_refused, refused

T0 = 1_764_972_000.0  # a Friday evening


def due(ticket: int, symbol: str = "EURUSD", state: DueState = DueState.WAITING, sent: int = 0) -> DueClose:
    return DueClose(ticket, symbol, 0.01, f"{symbol}-x-C{ticket}", "SIGNAL_WAIT", "CLOSE", 3600, T0, state, sent)


def book(*closes: DueClose) -> DueCloses:
    b = DueCloses()
    for d in closes:
        b, _ = b.add(d)
    return b


def tickets(b: DueCloses) -> list[tuple[int, str, int]]:
    return [(d.ticket, d.state.value, d.sent) for d in b.closes]


def test_refused_close_becomes_due_with_its_own_order():
    close = CloseOrder(7, "EURUSD", 0.03, "EURUSD-abc-M7", "MANUAL_CLOSE")
    d = refused(close, "MANUAL_CLOSE", None, T0)
    assert (d.ticket, d.client_order_id, d.action, d.bar_time, d.since, d.state) == (
        7, "EURUSD-abc-M7", "MANUAL_CLOSE", None, T0, DueState.WAITING)
    assert d.order == close  # sent at the open exactly as refused


# before, added, added?, after
ADD = [
    ("first", book(), due(7), True, [(7, "WAITING", 0)]),
    ("second ticket", book(due(7)), due(3), True, [(3, "WAITING", 0), (7, "WAITING", 0)]),
    ("same ticket: the first stays", book(due(7)), due(7, state=DueState.SENT), False, [(7, "WAITING", 0)]),
]


@pytest.mark.parametrize("name,before,new,added,after", ADD, ids=[r[0] for r in ADD])
def test_add(name, before, new, added, after):
    b, was_added = before.add(new)
    assert (was_added, tickets(b)) == (added, after)


# before, symbol, open tickets, after, sent now, dropped
OPENED = [
    ("sent at the open", book(due(7)), "EURUSD", {7}, [(7, "SENT", 1)], [7], []),
    ("another symbol waits", book(due(7), due(8, "USDJPY")), "USDJPY", {7, 8}, [(7, "WAITING", 0), (8, "SENT", 1)],
     [8], []),
    ("position gone: dropped", book(due(7), due(9)), "EURUSD", {9}, [(9, "SENT", 1)], [9], [7]),
    ("gone while another symbol waits", book(due(7), due(8, "USDJPY")), "USDJPY", {8}, [(8, "SENT", 1)], [8], [7]),
    ("nothing due there", book(due(7)), "GBPUSD", {7}, [(7, "WAITING", 0)], [], []),
]


@pytest.mark.parametrize("name,before,symbol,open_tickets,after,send,dropped", OPENED, ids=[r[0] for r in OPENED])
def test_opened(name, before, symbol, open_tickets, after, send, dropped):
    b, to_send, gone = before.opened(symbol, open_tickets)
    assert tickets(b) == after
    assert [d.ticket for d in to_send] == send and [d.ticket for d in gone] == dropped


# before, open tickets, closed symbols, after, sent now, dropped
SYNCED = [
    ("market not listed closed: sent", book(due(7)), {7}, set(), [(7, "SENT", 1)], [7], []),
    ("market listed closed: waits", book(due(7)), {7}, {"EURUSD"}, [(7, "WAITING", 0)], [], []),
    ("a daily break or a holiday: the same", book(due(7), due(8, "US500")), {7, 8}, {"US500"},
     [(7, "SENT", 1), (8, "WAITING", 0)], [7], []),
    ("sent by a process that died: sent again", book(due(7, state=DueState.SENT, sent=1)), {7}, set(),
     [(7, "SENT", 2)], [7], []),
    ("position gone: dropped even if closed", book(due(7), due(8)), {8}, {"EURUSD"}, [(8, "WAITING", 0)], [], [7]),
    ("nothing due", book(), {1}, set(), [], [], []),
]


@pytest.mark.parametrize("name,before,open_tickets,closed,after,send,dropped", SYNCED, ids=[r[0] for r in SYNCED])
def test_synced(name, before, open_tickets, closed, after, send, dropped):
    b, to_send, gone = before.synced(open_tickets, closed)
    assert tickets(b) == after
    assert [d.ticket for d in to_send] == send and [d.ticket for d in gone] == dropped


def ok(ticket: int) -> OrderResult:
    return OrderResult(True, "c", ticket=ticket, price=1.1, volume=0.01)


def failed(code: str) -> OrderResult:
    return OrderResult(False, "c", error="words", error_code=code, broker_code="X")


# before (7 sent at the open), answer, due again?, after
ANSWERED = [
    ("closed", ok(7), False, []),
    ("market closed again: due for the next open", failed("MARKET_CLOSED"), True, [(7, "WAITING", 1)]),
    ("already flat", failed("POSITION_NOT_FOUND"), False, []),
    ("another refusal ends it", failed("TRADING_DISABLED"), False, []),
    ("no answer ends it", "timeout: no answer from the connector", False, []),
]


@pytest.mark.parametrize("name,answer,again,after", ANSWERED, ids=[r[0] for r in ANSWERED])
def test_answered(name, answer, again, after):
    b, due_again = book(due(7, state=DueState.SENT, sent=1), due(9, "USDJPY")).answered(7, answer)
    assert due_again == again
    assert tickets(b) == [*after, (9, "WAITING", 0)]  # the other symbol's due close is untouched


def test_answer_of_an_unknown_ticket_changes_nothing():
    b = book(due(7))
    assert b.answered(3, ok(3)) == (b, False)


@pytest.mark.parametrize("before,ticket,after,dropped", [
    (book(due(7), due(8)), 7, [(8, "WAITING", 0)], 7),
    (book(due(7)), 3, [(7, "WAITING", 0)], None),
])
def test_gone(before, ticket, after, dropped):
    b, gone = before.gone(ticket)
    assert tickets(b) == after and (gone.ticket if gone else None) == dropped


@pytest.mark.parametrize("result,refused_by_market", [
    (failed("MARKET_CLOSED"), True),
    (failed("NOT_ENOUGH_MONEY"), False),
    (OrderResult(False, "c", error="MARKET_CLOSED"), False),  # words are not a code
    (ok(1), False),
    ("MARKET_CLOSED", False),
])
def test_market_refused(result, refused_by_market):
    assert market_refused(result) == refused_by_market


def test_round_trip_and_unreadable_records_are_reported():
    b = book(due(7, state=DueState.SENT, sent=2), due(8, "USDJPY"))
    assert from_list(b.to_list()) == (b, [])
    back, problems = from_list([*b.to_list(), {"ticket": "x"}])
    assert back == b and len(problems) == 1 and "unreadable due close" in problems[0]
    assert from_list(None) == (DueCloses(), [])
    assert from_list("nope")[1] == ["due_closes is not a list: 'nope'"]
