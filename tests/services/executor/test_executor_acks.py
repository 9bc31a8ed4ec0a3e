import pytest

from common.messages import ORDER_ERROR_CODES
from services.executor.acks import (
    Ack,
    AckStatus,
    ack_already_due,
    ack_dry_run,
    ack_failed,
    ack_filled,
    ack_refused,
    ack_skip,
    ack_without_order,
    slippage_pips,
)
from services.executor.sync import Direction, SyncAction, SyncDecision


@pytest.mark.parametrize("fill,reference,side,pip_position,pips", [
    (1.10012, 1.10000, Direction.LONG, 4, 1.2),  # bought higher: against us
    (1.09990, 1.10000, Direction.LONG, 4, -1.0),  # bought lower: in our favour
    (1.09985, 1.10000, Direction.SHORT, 4, 1.5),  # sold lower: against us
    (160.030, 160.000, Direction.SHORT, 2, -3.0),
    (2650.45, 2650.00, Direction.LONG, 1, 4.5),
])
def test_slippage_pips(fill, reference, side, pip_position, pips):
    assert slippage_pips(fill, reference, side, pip_position) == pytest.approx(pips)


def test_slippage_needs_a_side():
    with pytest.raises(ValueError):
        slippage_pips(1.1, 1.1, Direction.FLAT, 4)


@pytest.mark.parametrize("action,reason,status", [
    (SyncAction.NOOP, "SYNCED", AckStatus.OK),
    (SyncAction.NOOP, "INTENSITY_IGNORED", AckStatus.OK),
    (SyncAction.WAIT_SYNC, "MISSED_ENTRY", AckStatus.WAIT_SYNC),
    (SyncAction.SKIP, "PAUSED", AckStatus.SKIP),
    (SyncAction.SKIP, "ORPHAN", AckStatus.SKIP),
])
def test_ack_without_order(action, reason, status):
    ack = ack_without_order("EURUSD", SyncDecision(action, reason, 1), bar_time=900)
    assert (ack.status, ack.reason, ack.action, ack.bar_time) == (status, reason, action.value, 900)


@pytest.mark.parametrize("action", [SyncAction.OPEN, SyncAction.CLOSE, SyncAction.CLOSE_THEN_WAIT])
def test_ack_without_order_refuses_order_decisions(action):
    with pytest.raises(ValueError):
        ack_without_order("EURUSD", SyncDecision(action, "X", 1))


def test_filled_ack_and_round_trip():
    ack = ack_filled("EURUSD", "OPEN", "EDGE", client_order_id="EURUSD-t6b400-O", ticket=123,
                     volume=0.01, fill_price=1.10012, reference_price=1.1, side=Direction.LONG,
                     pip_position=4, bar_time=900)
    assert ack.status == AckStatus.OK and ack.slippage_pips == 1.2
    data = ack.to_dict()
    assert data["status"] == "OK"
    assert Ack.from_dict(data) == ack


def test_filled_ack_without_reference_has_no_slippage():
    ack = ack_filled("EURUSD", "CLOSE", "SIGNAL_WAIT", client_order_id="EURUSD-t6b400-C", ticket=1, volume=1,
                     fill_price=1.1, reference_price=None, side=Direction.SHORT, pip_position=4, pnl=-3.2)
    assert ack.slippage_pips is None and ack.pnl == -3.2


@pytest.mark.parametrize("ack,status,reason", [
    (ack_skip("EURUSD", "OPEN", "SPREAD", "spread 3.1 pips > max 2.0"), AckStatus.SKIP, "SPREAD"),
    (ack_failed("EURUSD", "OPEN", "timeout: no answer", client_order_id="c"), AckStatus.FAIL, "CONNECTOR_ERROR"),
    (ack_dry_run("EURUSD", "OPEN", "EDGE", client_order_id="c", volume=0.01), AckStatus.DRY_RUN, "EDGE"),
])
def test_other_acks(ack, status, reason):
    assert (ack.status, ack.reason) == (status, reason)
    assert Ack.from_dict(ack.to_dict()) == ack


def test_from_dict_rejects_unknown_fields():
    data = ack_skip("EURUSD", "OPEN", "PAUSED").to_dict()
    with pytest.raises(ValueError, match="unknown ack fields"):
        Ack.from_dict({**data, "surprise": 1})


def test_wire_body_matches_the_ack_message():
    from common.messages import Ack as WireAck
    from common.messages import from_wire

    ack = ack_skip("EURUSD", "OPEN", "SPREAD", "spread 3.1 pips > max 2.0", bar_time=900)
    wire = from_wire(WireAck, ack.wire_body())
    assert (wire.symbol, wire.bar_time, wire.status, wire.reason) == ("EURUSD", 900, "SKIP", "SPREAD")
    assert wire.details == {"action": "OPEN", "detail": "spread 3.1 pips > max 2.0"}


# error code, opening?, status, reason, due at the open
REFUSALS = [
    ("BAD_VOLUME", True, AckStatus.FAIL, "BAD_VOLUME", None),
    ("BAD_STOPS", True, AckStatus.FAIL, "BAD_STOPS", None),
    ("STOPS_TOO_CLOSE", True, AckStatus.FAIL, "STOPS_TOO_CLOSE", None),
    ("POSITION_NOT_FOUND", False, AckStatus.FAIL, "POSITION_NOT_FOUND", None),
    ("NOT_ENOUGH_MONEY", True, AckStatus.FAIL, "NOT_ENOUGH_MONEY", None),
    ("MARKET_CLOSED", True, AckStatus.SKIP, "MARKET_CLOSED", None),  # an opening: not sent again
    ("MARKET_CLOSED", False, AckStatus.FAIL, "MARKET_CLOSED", True),  # a close: due at the open
    ("TRADING_DISABLED", False, AckStatus.FAIL, "TRADING_DISABLED", None),
    ("RATE_LIMITED", True, AckStatus.FAIL, "RATE_LIMITED", None),
    ("REJECTED", True, AckStatus.FAIL, "REJECTED", None),
    ("NOT_CONNECTED", True, AckStatus.FAIL, "NOT_CONNECTED", None),
    ("NO_CONFIRMATION", False, AckStatus.FAIL, "NO_CONFIRMATION", None),
    ("", True, AckStatus.FAIL, "BROKER_ERROR", None),  # a result without a code
    ("SOMETHING_NEW", True, AckStatus.FAIL, "BROKER_ERROR", None),  # outside the contract: kept in the details
]


def test_every_error_code_of_the_contract_is_in_the_table():
    assert {r[0] for r in REFUSALS} >= set(ORDER_ERROR_CODES)


@pytest.mark.parametrize("code,opening,status,reason,due", REFUSALS, ids=[f"{r[0] or 'none'}-{r[1]}" for r in REFUSALS])
def test_refused_orders(code, opening, status, reason, due):
    ack = ack_refused("EURUSD", "OPEN" if opening else "CLOSE", opening=opening, error_code=code,
                      broker_code="TRADING_X", error="the broker's words", client_order_id="cid", bar_time=900,
                      ticket=None if opening else 7, volume=0.01)
    assert (ack.status, ack.reason, ack.due_at_open) == (status, reason, due)
    details = ack.wire_body()["details"]
    assert details["broker_code"] == "TRADING_X" and "the broker's words" in details["detail"]
    assert details.get("error_code") == (code or None)
    assert Ack.from_dict(ack.to_dict()) == ack
    if due:
        assert "due at the open" in ack.detail


def test_refused_opening_with_rounded_lots_says_so():
    ack = ack_refused("EURUSD", "OPEN", opening=True, error_code="BAD_VOLUME", broker_code="", error="x",
                      client_order_id="c", volume=0.01, requested_lots=0.015, off_step="round_down")
    assert (ack.volume, ack.requested_lots, ack.off_step) == (0.01, 0.015, "round_down")
    plain = ack_refused("EURUSD", "OPEN", opening=True, error_code="BAD_VOLUME", broker_code="", error="x",
                        client_order_id="c", volume=0.01)
    assert "requested_lots" not in plain.wire_body()["details"] and "broker_code" not in plain.wire_body()["details"]


def test_already_due():
    ack = ack_already_due("EURUSD", "CLOSE", ticket=7, due_client_order_id="EURUSD-1-C7", client_order_id="x",
                          bar_time=900)
    assert (ack.status, ack.reason, ack.due_at_open, ack.ticket) == (AckStatus.SKIP, "MARKET_CLOSED", True, 7)
    assert "EURUSD-1-C7" in ack.detail
