"""Which signals make a batch (batch.py `expected`, `gathered`), and the ack's records."""

from __future__ import annotations

import pytest

from common.outbox import record_id
from services.executor import inputs
from services.executor.acks import Ack, AckStatus
from services.executor.batch import expected, gathered

H1 = 3600
T = 1_764_950_400
TF = {"EURUSD": "H1", "GBPUSD": "H1", "USDJPY": "H1", "XAUUSD": "M15"}


def test_the_symbols_decided_for_the_last_bar_of_the_timeframe_are_expected():
    handled = {"EURUSD": T - H1, "GBPUSD": T - H1, "USDJPY": T - 2 * H1, "XAUUSD": T - 900}
    # USDJPY missed the last bar (its market closed, its model not loaded): not waited for; XAUUSD is M15
    assert expected(handled, TF, "H1", T) == {"EURUSD", "GBPUSD"}
    assert expected(handled, TF, "M15", T) == {"XAUUSD"}
    # a weekend between: the last round is whatever bar came last
    assert expected({"EURUSD": T - 49 * H1, "GBPUSD": T - 49 * H1}, TF, "H1", T) == {"EURUSD", "GBPUSD"}


def test_nothing_is_expected_right_after_a_boot_and_a_symbol_without_a_known_model_is_of_no_timeframe():
    assert expected({}, TF, "H1", T) == frozenset()
    assert expected({"EURUSD": T}, TF, "H1", T) == frozenset()  # only bars before this one count
    assert expected({"SYN01": T - H1, "EURUSD": T - H1}, TF, "", T) == {"SYN01"}


@pytest.mark.parametrize(("waiting", "handled", "ready"), [
    ([("EURUSD", T)], {"EURUSD": T - H1, "GBPUSD": T - H1}, False),  # GBPUSD's is on its way
    ([("EURUSD", T), ("GBPUSD", T)], {"EURUSD": T - H1, "GBPUSD": T - H1}, True),
    ([("EURUSD", T)], {"EURUSD": T - H1, "GBPUSD": T}, True),  # GBPUSD's decided already (an earlier batch)
    ([("EURUSD", T), ("GBPUSD", T - H1)], {"EURUSD": T - H1, "GBPUSD": T - 2 * H1}, True),  # one behind: not waited
    ([("EURUSD", T), ("GBPUSD", T + H1)], {"EURUSD": T - H1, "GBPUSD": T - H1}, True),  # a later one
])
def test_a_batch_is_gathered_when_every_expected_symbol_has_its_signal_in(waiting, handled, ready):
    assert gathered(waiting, expected(handled, TF, "H1", T), handled, T) is ready


def test_the_ack_records_and_wire_body_read_every_field():
    ack = Ack("EURUSD", "OPEN", AckStatus.OK, "EDGE", bar_time=T, client_order_id="c", ticket=7, volume=0.01,
              fill_price=1.1, reference_price=1.09999, slippage_pips=0.1, due_at_open=False)
    assert ack.to_dict() == {**{f: getattr(ack, f) for f in ack.__dataclass_fields__}, "status": "OK"}
    body = ack.wire_body()
    assert body["details"] == {"action": "OPEN", "client_order_id": "c", "ticket": 7, "volume": 0.01,
                               "fill_price": 1.1, "reference_price": 1.09999, "slippage_pips": 0.1,
                               "due_at_open": False}
    record = inputs.ack_record(ack, 1.0, None, 0, 5)
    assert record["id"] == record_id("acks", "EURUSD", T, "OPEN", "c", 0, 5)
    assert record["data"] == {"detail": "", "reference_price": 1.09999, "slippage_pips": 0.1, "due_at_open": False}


def test_signals_from_two_preditor_shards_make_one_batch_once_both_spoke():
    """With the preditor in shards a bar's signals come from two processes, in any interleaving: the symbols
    expected are those decided for the bar before, whoever decides them, so the batch waits for both shards (or
    GATHER_S, after which the late shard's signals make the next batch: each signal is still decided on the
    positions of its own batch, the same decision)."""
    tf = {"EURUSD": "H1", "GBPUSD": "H1", "USDJPY": "H1", "AUDUSD": "H1"}
    shard = {"EURUSD": 0, "USDJPY": 0, "GBPUSD": 1, "AUDUSD": 1}
    handled = {s: T - H1 for s in tf}
    want = expected(handled, tf, "H1", T)
    assert want == set(tf)
    zero = [(s, T) for s in tf if shard[s] == 0]
    one = [(s, T) for s in tf if shard[s] == 1]
    assert not gathered(zero, want, handled, T) and not gathered(one, want, handled, T)
    assert not gathered([zero[0], one[0]], want, handled, T)
    assert gathered([zero[0], one[0], one[1], zero[1]], want, handled, T)


def test_an_intent_holds_its_orders_fields_as_asdict_gives_them():
    from dataclasses import asdict

    from common import messages
    from services.executor.batch import Decided
    from services.executor.commands import CloseOrder
    from services.executor.plan import OpenOrder
    from services.executor.sync import Direction

    sig = messages.Signal("EURUSD", T, 1.1, 1, 1, 1, 2, 0.5)
    close = CloseOrder(7, "EURUSD", 0.03, "cid-close", "REVERSAL")
    opening = OpenOrder("EURUSD", Direction.SHORT, 0.02, 0.0015, None, "label", "cid-open", 0.025, "round_down")
    intent = Decided(sig, "OPEN", "EDGE", True, [close], opening).intent({7: -1})
    assert intent["closes"] == [{**asdict(close), "direction": -1}]
    assert intent["open"] == {**asdict(opening), "direction": -1}
    assert type(intent["open"]["direction"]) is int
    assert list(intent["open"]) == list(asdict(opening))
