"""The order ledger's decisions (services/connector/ledger.py), without processes: answers are values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from common.messages import OrderResult
from services.connector import journal
from services.connector.ledger import Join, LookUp, OrderLedger, Recovered, Replay, Send, deals_window
from services.connector.port import Deal, Position

T = 1_484_244_000.0  # the broker's time at the send
REQUEST = {"symbol": "EURUSD", "direction": 1, "lots": 0.1, "sl_distance": None, "tp_distance": None,
           "server_time": T}


@dataclass
class Handle:
    """The shell's handle of an order out (its deferred answer): given up on past its deadline."""

    name: str
    given_up: bool = False


def fresh(lines: list[journal.Entry] = ()) -> OrderLedger[Handle]:
    """A ledger as a restarted process builds it: from the journal's lines, replayed."""
    entries, bad = journal.replay(journal.line(e) for e in lines)
    assert bad == 0
    return OrderLedger(entries, lambda h: h.given_up)


def sent(cid: str = "c1", **request) -> journal.Entry:
    return journal.Entry(cid, "open", journal.SENT, T, {**REQUEST, **request})


def done(cid: str = "c1", ticket: int = 7) -> journal.Entry:
    res = OrderResult(True, cid, ticket=ticket, price=1.05, volume=0.1)
    return journal.Entry(cid, "open", journal.DONE, T + 1, REQUEST, dataclasses.asdict(res))


def deal(position_id: int, *, closing: bool = False, direction: int = 1, volume: float = 0.1, t: float = T + 5,
         price: float = 1.0501) -> Deal:
    return Deal(position_id * 10, position_id * 10, position_id, "EURUSD", direction, volume, price, t, closing)


def position(ticket: int, label: str) -> Position:
    return Position(ticket, "EURUSD", 1, 0.1, 1.05, T + 5, sl=1.04, tp=1.07, label=label)


# ---- an opening asked --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "journaled, out, expected",
    [
        # never asked: sent, its "sent" line journaled first
        ([], {}, Send("open:c1", journal.Entry("c1", "open", journal.SENT, T, REQUEST))),
        # the same id while it is out at the broker: joined (one order, the same answer)
        ([sent()], {"open:c1": Handle("first")}, Join(Handle("first"))),
        # out, but the shell gave up on it (its deadline passed): not joined, looked for at the broker
        ([sent()], {"open:c1": Handle("first", given_up=True)}, LookUp(sent(), "open:c1")),
        # answered before (this process or one before a restart): the journal's result, never sent again
        ([sent(), done()], {}, Replay(OrderResult(True, "c1", ticket=7, price=1.05, volume=0.1))),
        # sent before a crash, no outcome journaled: looked for at the broker first
        ([sent()], {}, LookUp(sent(), "open:c1")),
        # a later "sent" line never hides an outcome
        ([sent(), done(), sent()], {}, Replay(OrderResult(True, "c1", ticket=7, price=1.05, volume=0.1))),
        # another id's history is not this one's
        ([sent("c2"), done("c2")], {}, Send("open:c1", journal.Entry("c1", "open", journal.SENT, T, REQUEST))),
    ],
    ids=["new", "in-flight", "given-up", "after-result", "after-restart-unknown", "sent-after-done", "other-id"],
)
def test_an_opening_is_sent_joined_replayed_or_looked_up(journaled, out, expected):
    ledger = fresh(journaled)
    for key, handle in out.items():
        ledger.went_out(key, handle)
    assert ledger.ask_open("c1", REQUEST, T) == expected


@pytest.mark.parametrize(
    "result, final",
    [
        (OrderResult(True, "c1", ticket=7, price=1.05, volume=0.1), True),
        (OrderResult(False, "c1", error="bad volume", error_code="BAD_VOLUME"), True),
        (OrderResult(False, "c1", error="closed", error_code="MARKET_CLOSED"), True),
        (OrderResult(False, "c1", error="no answer", error_code="NO_CONFIRMATION"), False),
        (OrderResult(False, "c1", error="no session", error_code="NOT_CONNECTED"), False),
        (OrderResult(False, "c1", error="too fast", error_code="RATE_LIMITED"), False),
    ],
    ids=["fill", "refused", "market-closed", "unknown", "not-connected", "rate-limited"],
)
def test_the_brokers_answer_is_final_for_the_id_unless_its_outcome_is_unknown(result, final):
    ledger = fresh()
    step = ledger.ask_open("c1", REQUEST, T)
    assert isinstance(step, Send) and step.record is not None
    ledger.recorded(step.record)
    handle = Handle("order")
    ledger.went_out(step.out_key, handle)
    assert ledger.ask_open("c1", REQUEST, T + 0.5) == Join(handle)
    ledger.came_back(step.out_key, handle)
    line = ledger.settled_open("c1", result, T + 1)
    if not final:
        assert line is None
        assert ledger.ask_open("c1", REQUEST, T + 2) == LookUp(step.record, "open:c1")  # the same id may go again
        return
    assert line is not None and line.status == journal.DONE and line.request == REQUEST
    ledger.recorded(line)
    assert ledger.ask_open("c1", REQUEST, T + 2) == Replay(result)
    assert fresh([step.record, line]).ask_open("c1", REQUEST, T + 3) == Replay(result)  # after a restart too


def test_an_answer_taken_by_a_later_order_does_not_free_it():
    ledger = fresh()
    old, new = Handle("old", given_up=True), Handle("new")
    ledger.went_out("open:c1", old)
    ledger.went_out("open:c1", new)
    ledger.came_back("open:c1", old)  # the given-up one's answer arrives late
    assert ledger.ask_open("c1", REQUEST, T) == Join(new)
    assert ledger.peak == 1
    ledger.went_out("open:c2", Handle("other"))
    assert (len(ledger.out), ledger.peak) == (2, 2)


# ---- an order sent before without a known outcome -------------------------------------------------


@pytest.mark.parametrize(
    "entry, positions, deals, claimed, expected_ticket",
    [
        # its position is open, labelled with the id
        (sent(), [position(7, "c1")], [], [], 7),
        # closed already: its opening deal after the send
        (sent(), [position(8, "other")], [deal(9)], [], 9),
        # a deal another order claims is not this one's
        (sent(), [], [deal(9), deal(11)], [done("c2", ticket=9)], 11),
        # other side, other volume, before the send (60 s of tolerance), a closing deal: not this order's
        (sent(), [], [deal(9, direction=-1), deal(10, volume=0.2), deal(11, t=T - 61), deal(12, closing=True)], [],
         None),
        # no send time in the request: the deals cannot tell
        (sent(server_time=None), [], [deal(9)], [], None),
    ],
    ids=["open-position", "opening-deal", "claimed-deal", "no-match", "no-send-time"],
)
def test_an_unknown_opening_is_found_at_the_broker_or_sent_again(entry, positions, deals, claimed, expected_ticket):
    ledger = fresh([*claimed, entry])
    look = ledger.ask_open(entry.cid, REQUEST, T + 10)
    assert look == LookUp(entry, "open:c1") and ledger.can_look_up(entry)
    found, deals_tell = ledger.found_in_positions(entry, positions)
    window = deals_window(entry, T + 20, T + 30) if deals_tell else None
    if found is None and window is not None:
        assert window == (T - 3600, T + 30 + 86_400)
        found = ledger.found_in_deals(entry, deals)
    step = ledger.after_look_up(look, found, T + 40)
    if expected_ticket is None:
        assert step == Send("open:c1", None)  # its "sent" line is there already
        return
    assert isinstance(step, Recovered) and step.result.recovered and step.result.ticket == expected_ticket
    assert step.record.status == journal.DONE and step.record.result["ticket"] == expected_ticket
    ledger.recorded(step.record)
    assert ledger.ask_open(entry.cid, REQUEST, T + 50) == Replay(step.result)


# ---- closes and amendments ----------------------------------------------------------------------------


def close_sent(lots: float | None = None) -> journal.Entry:
    return journal.Entry("x1", "close", journal.SENT, T, {"ticket": 7, "lots": lots, "server_time": T})


@pytest.mark.parametrize(
    "entry, positions, deals, expected",
    [
        (close_sent(), [position(7, "c1")], [deal(7, closing=True)], None),  # still open: not executed
        (close_sent(), [], [deal(7), deal(7, closing=True, price=1.06)], 1.06),  # its closing deal
        (close_sent(), [], [deal(8, closing=True)], None),  # no closing deal of its ticket
        (close_sent(lots=0.05), [], [deal(7, closing=True)], "cannot tell"),  # a partial close: sent again
    ],
    ids=["still-open", "closed", "no-deal", "partial"],
)
def test_an_unknown_close_is_found_in_the_deals_or_sent_again(entry, positions, deals, expected):
    ledger = fresh([entry])
    look = ledger.ask_close("x1", 7, entry.request["lots"], T + 10, T + 10)
    assert look == LookUp(entry, "close-ticket:7")
    if expected == "cannot tell":
        assert not ledger.can_look_up(entry)
        return
    found, deals_tell = ledger.found_in_positions(entry, positions)
    assert found is None
    if deals_tell:
        found = ledger.found_in_deals(entry, deals)
    assert (found.price if found else None) == expected
    if found:
        assert (found.ticket, found.client_order_id, found.recovered) == (7, "x1", True)


def test_one_close_of_a_ticket_at_a_time_and_only_an_id_is_journaled():
    ledger = fresh()
    step = ledger.ask_close("", 7, None, T, T)
    assert step == Send("close-ticket:7", None)
    ledger.went_out(step.out_key, h := Handle("close"))
    assert ledger.ask_close("x1", 7, None, T, T) == Join(h)  # whoever asks
    assert ledger.ask_amend(7) == Send("amend-ticket:7", None)
    ledger.came_back(step.out_key, h)
    res = OrderResult(True, "", ticket=7, price=1.06, volume=0.1)
    assert ledger.settled_close("", 7, None, res, T + 1) == (res, None)
    named, line = ledger.settled_close("x1", 7, None, res, T + 1)
    assert named.client_order_id == "x1" and line is not None and line.status == journal.DONE
    ledger.recorded(line)
    assert ledger.ask_close("x1", 7, None, T, T + 2) == Replay(named)
    refused = OrderResult(False, "", error="gone", error_code="POSITION_NOT_FOUND")
    assert ledger.settled_close("x2", 7, None, refused, T + 3)[1] is None  # only a close done is final


def test_the_closes_asked_are_the_journals_close_lines_sent_or_done():
    res = OrderResult(True, "x1", ticket=7, price=1.06, volume=0.1)
    _, closed = OrderLedger.settled_close("x1", 7, None, res, T + 1)
    in_flight = journal.Entry("x2", "close", journal.SENT, T, {"ticket": 8, "lots": 0.05, "server_time": T})
    assert fresh([sent(), done(ticket=9), closed, in_flight]).closes_asked() == {7, 8}  # not the opening's ticket
    assert fresh().closes_asked() == set()


def test_one_amendment_of_a_ticket_at_a_time():
    ledger = fresh()
    step = ledger.ask_amend(7)
    ledger.went_out(step.out_key, h := Handle("amend"))
    assert ledger.ask_amend(7) == Join(h)
    assert ledger.ask_amend(8) == Send("amend-ticket:8", None)
    ledger.came_back(step.out_key, h)
    assert ledger.ask_amend(7) == Send("amend-ticket:7", None)
