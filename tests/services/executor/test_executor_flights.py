"""A flight's life as values (flights.py, order_answers.py, replay.py): take-off, answers, landing, a restart's
replay. No process, no socket, no clock: the answers and the time are given."""

from __future__ import annotations

from dataclasses import replace

import pytest

from common import messages
from services.executor import flights, replay
from services.executor.acks import ack_skip
from services.executor.batch import Decided
from services.executor.commands import CloseOrder, RealPosition
from services.executor.due_closes import DueCloses, refused
from services.executor.flights import FlightsOut
from services.executor.plan import OpenOrder
from services.executor.sync import Direction

BAR = 1_764_950_400
NOW = 1_764_954_000.0
SIG = messages.Signal("EURUSD", BAR, 1.1, 1, 1, 1, 2, 0.0)
OPEN = OpenOrder("EURUSD", Direction.LONG, 0.03, 0.00333, None, "label", "EURUSD-open")
CLOSE = CloseOrder(7, "EURUSD", 0.05, "EURUSD-close-7", "REVERSAL")
SHORT_7 = RealPosition(7, "EURUSD", Direction.SHORT, 0.05, "")


def opening(allow_open: bool = True) -> Decided:
    return Decided(SIG, "OPEN", "EDGE", allow_open, open=OPEN)


def closing() -> Decided:
    return Decided(SIG, "CLOSE_THEN_WAIT", "REVERSAL", True, closes=[CLOSE])


def filled(ticket: int, price: float = 1.10008) -> messages.OrderResult:
    return messages.OrderResult(True, "cid", ticket=ticket, price=price, volume=0.03)


def broker_refused(code: str) -> messages.OrderResult:
    return messages.OrderResult(False, "cid", error="refused", error_code=code, broker_code=f"TRADING_{code}")


def fly(decided: Decided, positions: list[RealPosition]) -> flights.Flight:
    return flights.take_off([decided], positions=positions, due=DueCloses(), halt_reason=None, dry_run=False)


# ---- take-off: what goes, what is acked at once --------------------------------------------------------------

TAKE_OFF = [
    # name, decided, positions, due, halt_reason, dry_run, ops sent, acks at take-off (status, reason)
    ("an opening goes", opening(), [], DueCloses(), None, False, ["order_open"], []),
    ("a close goes", closing(), [SHORT_7], DueCloses(), None, False, ["order_close"], []),
    ("sync never opens", opening(allow_open=False), [], DueCloses(), None, False, [],
     [("WAIT_SYNC", "SYNC_NEVER_OPENS")]),
    ("halted: the opening is skipped", opening(), [], DueCloses(), "EMERGENCY_DD", False, [], [("SKIP", "HALTED")]),
    ("dry run: nothing goes", opening(), [], DueCloses(), None, True, [], [("DRY_RUN", "EDGE")]),
    ("dry run close", closing(), [SHORT_7], DueCloses(), None, True, [], [("DRY_RUN", "REVERSAL")]),
    ("a close already due at the open", closing(), [SHORT_7],
     DueCloses().add(refused(CLOSE, "CLOSE", BAR - 3600, NOW))[0], None, False, [], [("SKIP", "MARKET_CLOSED")]),
]


@pytest.mark.parametrize("name, decided, positions, due, halt, dry, ops, now_acks", TAKE_OFF,
                         ids=[row[0] for row in TAKE_OFF])
def test_take_off(name, decided, positions, due, halt, dry, ops, now_acks):
    flight = flights.take_off([decided], positions=positions, due=due, halt_reason=halt, dry_run=dry)
    assert [r.op for r in flight.requests] == ops
    done = flight.done_now()
    assert [(a.status.value, a.reason) for d in done for a in d.acks] == now_acks
    # written ahead: exactly the signals with an order out
    assert len(flight.intents) == (1 if ops else 0)
    if ops:
        assert flight.requests[0].client_order_id in (OPEN.client_order_id, CLOSE.client_order_id)


def test_an_opening_refused_at_take_off_is_not_written_ahead():
    both = Decided(SIG, "OPEN", "EDGE", True, closes=[CLOSE], open=OPEN)
    flight = flights.take_off([both], positions=[SHORT_7], due=DueCloses(), halt_reason="DD_LIMIT", dry_run=False)
    assert [r.op for r in flight.requests] == ["order_close"]
    [intent] = flight.intents
    assert intent["open"] is None and intent["closes"][0]["direction"] == int(Direction.SHORT)
    assert flight.done_now() == []  # its close is out: the signal is acked when it lands


def test_the_requests_carry_the_orders_as_they_are():
    [req] = fly(opening(), []).requests
    assert req.args == messages.OrderOpenArgs(symbol="EURUSD", direction=1, lots=0.03, client_order_id="EURUSD-open",
                                              sl_distance=0.00333, tp_distance=None, comment="label")
    [req] = fly(closing(), [SHORT_7]).requests
    assert req.args == messages.OrderCloseArgs(ticket=7, lots=None, client_order_id="EURUSD-close-7")


# ---- landing: each answer becomes its ack ---------------------------------------------------------------------

LANDING = [
    # name, decided, positions before, answer, (status, reason), positions after (tickets), closes due after
    ("opening filled", opening(), [], filled(101), ("OK", "EDGE"), [101], []),
    ("opening filled, already listed", opening(), [RealPosition(101, "EURUSD", Direction.LONG, 0.03)],
     filled(101), ("OK", "EDGE"), [101], []),
    ("opening refused by the broker", opening(), [], broker_refused("BAD_VOLUME"), ("FAIL", "BAD_VOLUME"), [], []),
    ("opening refused: market closed", opening(), [], broker_refused("MARKET_CLOSED"), ("SKIP", "MARKET_CLOSED"),
     [], []),
    ("opening timed out", opening(), [], "timeout: no answer from the connector", ("FAIL", "CONNECTOR_ERROR"),
     [], []),
    ("opening filled without a price", opening(), [], messages.OrderResult(True, "cid", ticket=101),
     ("FAIL", "BROKER_ERROR"), [], []),
    ("close filled", closing(), [SHORT_7], filled(7, 1.1), ("OK", "REVERSAL"), [7], []),
    ("close of a position gone", closing(), [SHORT_7], broker_refused("POSITION_NOT_FOUND"), ("OK", "ALREADY_FLAT"),
     [7], []),
    ("close refused: market closed", closing(), [SHORT_7], broker_refused("MARKET_CLOSED"),
     ("FAIL", "MARKET_CLOSED"), [7], [7]),
    ("close timed out", closing(), [SHORT_7], "no answer", ("FAIL", "CONNECTOR_ERROR"), [7], []),
]


@pytest.mark.parametrize("name, decided, positions, answer, final, tickets, due", LANDING,
                         ids=[row[0] for row in LANDING])
def test_landing(name, decided, positions, answer, final, tickets, due):
    flight = fly(decided, positions)
    landing = flights.land(flight, [answer], positions=positions, pip_positions={"EURUSD": 4}, due=DueCloses(),
                           now=NOW)
    [done] = landing.done
    assert done.sig == SIG and [(a.status.value, a.reason) for a in done.acks] == [final]
    assert [p.ticket for p in landing.positions] == tickets
    assert [d.ticket for d in landing.due.closes] == due == [d.ticket for d in landing.newly_due]
    assert all(d.since == NOW for d in landing.due.closes)


def test_a_filled_opening_measures_its_slippage_and_a_close_its_side():
    landing = flights.land(fly(opening(), []), [filled(101, 1.10018)], positions=[], pip_positions={}, due=DueCloses(),
                           now=NOW)
    ack = landing.done[0].acks[0]
    assert (ack.ticket, ack.fill_price, ack.reference_price, ack.slippage_pips) == (101, 1.10018, 1.1, None)
    landing = flights.land(fly(closing(), [SHORT_7]), [filled(7, 1.1002)], positions=[SHORT_7],
                           pip_positions={"EURUSD": 4}, due=DueCloses(), now=NOW)
    assert landing.done[0].acks[0].slippage_pips == 2.0  # the close of a short is a buy: above the close is worse


def test_a_close_already_due_is_not_due_twice():
    due, _ = DueCloses().add(refused(CLOSE, "CLOSE", BAR - 3600, NOW - 60))
    flight = fly(closing(), [SHORT_7])  # taken off before the first refusal was known
    landing = flights.land(flight, [broker_refused("MARKET_CLOSED")], positions=[SHORT_7], pip_positions={}, due=due,
                           now=NOW)
    assert landing.due == due and landing.newly_due == []


def test_the_plan_ack_comes_after_the_order_acks():
    skip = ack_skip("EURUSD", "OPEN", "SPREAD", "too wide", BAR)
    decided = replace(closing(), ack=skip)
    landing = flights.land(fly(decided, [SHORT_7]), [filled(7, 1.1)], positions=[SHORT_7], pip_positions={},
                           due=DueCloses(), now=NOW)
    assert [a.reason for a in landing.done[0].acks] == ["REVERSAL", "SPREAD"]


def test_answers_must_be_one_per_order():
    with pytest.raises(ValueError, match="2 answers for the 1 orders"):
        flights.land(fly(opening(), []), [filled(1), filled(2)], positions=[], pip_positions={}, due=DueCloses(),
                     now=NOW)


def test_a_batch_acks_its_signals_in_order_those_without_orders_at_take_off():
    other = messages.Signal("GBPUSD", BAR, 1.3, 0, 0, 0, 2, 0.0)
    flat = Decided(other, "NOOP", "FLAT", True, ack=ack_skip("GBPUSD", "NOOP", "FLAT", "", BAR))
    flight = flights.take_off([opening(), flat], positions=[], due=DueCloses(), halt_reason=None, dry_run=False)
    assert [d.sig.symbol for d in flight.done_now()] == ["GBPUSD"]
    landing = flights.land(flight, [filled(101)], positions=[], pip_positions={}, due=DueCloses(), now=NOW)
    assert [d.sig.symbol for d in landing.done] == ["EURUSD"]


# ---- the flights out: duplicate and unknown answers -------------------------------------------------------------

def test_flights_out_land_once():
    out = FlightsOut()
    first = out.add(fly(opening(), []))
    second = out.add(fly(closing(), [SHORT_7]))
    other = messages.Signal("GBPUSD", BAR, 1.3, 0, 0, 0, 2, 0.0)
    assert (len(out), out.symbols(), out.margin()) == (2, {"EURUSD"}, 0.0)
    assert len(out.intents()) == 2
    assert (first, second) == (1, 2)
    assert out.landed(first) is not None
    assert out.landed(first) is None  # a duplicate answer: the flight has landed already
    assert out.landed(99) is None  # an answer for a flight that never took off
    assert out.add(flights.take_off([Decided(other, "OPEN", "EDGE", True, open=replace(OPEN, symbol="GBPUSD"))],
                                    positions=[], due=DueCloses(), halt_reason=None, dry_run=False, margin=33.0)) == 3
    assert (len(out), out.symbols(), out.margin()) == (2, {"EURUSD", "GBPUSD"}, 33.0)


# ---- a restart: the intents written ahead, carried out again ----------------------------------------------------

def test_a_restart_replays_the_same_orders_with_the_same_acks():
    both = Decided(SIG, "CLOSE_THEN_WAIT", "REVERSAL", True, closes=[CLOSE], ack=ack_skip("EURUSD", "OPEN", "X"))
    first = fly(both, [SHORT_7])
    # the process dies with the flight out; the next one reads the intents back, the position not listed yet
    again = replay.replay(first.intents, positions=[])
    assert again.positions == [SHORT_7] and again.opening_symbols() == []
    [decided] = again.batch
    assert decided == replace(both, data=None)
    second = flights.take_off(again.batch, positions=again.positions, due=DueCloses(), halt_reason=None,
                              dry_run=False, intents=first.intents)
    assert second.requests == first.requests and second.intents == first.intents
    answers = [filled(7, 1.1)]
    landed = [flights.land(f, answers, positions=[SHORT_7], pip_positions={}, due=DueCloses(), now=NOW).done
              for f in (first, second)]
    assert landed[0] == landed[1]


def test_a_replayed_opening_asks_for_its_symbol_and_known_positions_are_not_added():
    again = replay.replay(fly(opening(), []).intents + fly(closing(), [SHORT_7]).intents, positions=[SHORT_7])
    assert again.opening_symbols() == ["EURUSD"] and again.positions == []
    assert again.batch[0].open == OPEN


V1_INTENT = {"signal": messages.to_wire(SIG), "action": "OPEN", "reason": "EDGE", "allow_open": True, "closes": [],
             "open": {"symbol": "EURUSD", "direction": 1, "volume": 300000, "relative_stop_loss": 333,
                      "relative_take_profit": 0, "label": "label", "client_order_id": "EURUSD-open"}}


@pytest.mark.parametrize("sizes, converted, not_converted", [
    ({"EURUSD": 100000.0}, 1, []),
    ({"EURUSD": None}, 0, [["EURUSD-open"]]),
    ({}, 0, [["EURUSD-open"]]),
])
def test_version_1_intents(sizes, converted, not_converted):
    assert replay.v1_symbols([V1_INTENT]) == ["EURUSD"]
    done, refused_ = replay.from_v1([V1_INTENT], sizes)
    assert len(done) == converted and [r.client_order_ids for r in refused_] == not_converted
    if done:
        assert replay.replay(done, []).batch[0].open == OPEN


UNREADABLE = [
    # name, how the written intent is spoilt
    ("no signal", lambda i: {k: v for k, v in i.items() if k != "signal"}),
    ("a signal that is not one", lambda i: {**i, "signal": {"symbol": "EURUSD"}}),
    ("an opening without its stops", lambda i: {**i, "open": {"symbol": "EURUSD", "direction": 1, "lots": 0.03,
                                                              "label": "l", "client_order_id": "EURUSD-open"}}),
    ("a direction that is not one", lambda i: {**i, "open": {**i["open"], "direction": 7}}),
    ("an ack with a stranger field", lambda i: {**i, "ack": {"surprise": 1}}),
]


@pytest.mark.parametrize("name, spoil", UNREADABLE, ids=[row[0] for row in UNREADABLE])
def test_an_intent_that_cannot_be_read_is_named_not_replayed(name, spoil):
    [good] = fly(opening(), []).intents
    again = replay.replay([spoil(good), good], positions=[])
    assert [o.open for o in again.batch] == [OPEN]  # the readable one still goes
    [bad] = again.unreadable
    assert bad.client_order_ids == ["EURUSD-open"] and bad.error.startswith("unreadable")


def test_a_due_close_refused_again_at_the_open_is_not_added_again():
    from services.executor.order_answers import DUE_CLOSE, close_answered

    answered = close_answered(CLOSE, DUE_CLOSE, None, Direction.LONG, broker_refused("MARKET_CLOSED"),
                              pip_position=4, due=DueCloses(), now=NOW, bar_time=BAR)
    assert (answered.ack.status.value, answered.ack.reason, answered.ack.bar_time) == ("FAIL", "MARKET_CLOSED", BAR)
    assert answered.due == DueCloses() and answered.newly_due is None  # DueCloses.answered keeps it due
