import uuid

import pytest

from common.outbox import NAMESPACE, Outbox, record_id


@pytest.mark.parametrize("key", [("signals", "EURUSD", 1483308000),
                                 ("acks", "EURUSD", 1483308000, "OPEN", "x-O", 0, 123),
                                 ("acks", "SYN01", None, "CLOSE", "", 2, 0), ("events", "é", 1.5)])
def test_record_id_is_the_uuid5_of_its_natural_key(key):
    """Ids stored by earlier versions (made with uuid.uuid5) stay the ids of the same records."""
    assert record_id(*key) == str(uuid.uuid5(NAMESPACE, "|".join(map(str, key))))


def test_record_id_is_deterministic_per_natural_key():
    assert record_id("trades", "EURUSD", 1483308000, "OPEN") == record_id("trades", "EURUSD", 1483308000, "OPEN")
    assert record_id("trades", "EURUSD", 1483308000, "OPEN") != record_id("trades", "EURUSD", 1483311600, "OPEN")
    assert record_id("trades", "x") != record_id("events", "x")


def test_records_stay_until_acknowledged_and_are_retried_with_the_same_ids():
    box = Outbox(max_batch=2)
    for i in range(3):
        box.add("trades", {"id": f"t{i}"})
    box.add("events", {"id": "e0"})
    assert box.next_batch() == {"trades": [{"id": "t0"}, {"id": "t1"}]}
    assert box.next_batch() is None  # one batch in flight at a time
    box.on_failure()  # timeout: nothing lost
    assert box.next_batch() == {"trades": [{"id": "t0"}, {"id": "t1"}]}
    box.on_reply(["t0"], {})  # partial ack: t1 is retried
    assert box.next_batch() == {"trades": [{"id": "t1"}, {"id": "t2"}]}
    box.on_reply(["t1", "t2"], {})
    assert box.next_batch() == {"events": [{"id": "e0"}]}
    box.on_reply([], {"e0": "invalid"})
    assert len(box) == 0 and box.acked == 3 and box.rejected == {"e0": "invalid"}


def test_a_batch_holds_every_tables_oldest_records_each_tables_in_order_max_batch_in_all():
    box = Outbox(max_batch=4)
    for rid, table in [("s0", "signals"), ("a0", "acks"), ("s1", "signals"), ("a1", "acks"), ("e0", "events")]:
        box.add(table, {"id": rid})
    assert box.next_batch() == {"signals": [{"id": "s0"}, {"id": "s1"}], "acks": [{"id": "a0"}, {"id": "a1"}]}
    assert box.inflight == ["s0", "a0", "s1", "a1"]
    box.on_reply(["s0", "a0"], {"s1": "invalid"})  # a1 neither: retried, ahead of the newer e0
    assert box.next_batch() == {"acks": [{"id": "a1"}], "events": [{"id": "e0"}]}


def test_adding_the_same_id_twice_keeps_one_record():
    box = Outbox()
    box.add("trades", {"id": "a", "v": 1})
    box.add("trades", {"id": "a", "v": 1})
    assert len(box) == 1


def test_a_record_without_id_is_refused():
    with pytest.raises(ValueError, match="needs a string 'id'"):
        Outbox().add("trades", {"symbol": "EURUSD"})


def test_records_handed_over_live_are_gathered_until_quiet_or_the_linger_ends():
    box = Outbox(quiet_s=0.010, linger_s=0.100)
    assert box.send_at() is None  # nothing waits
    box.add("signals", {"id": "s0"}, now=1.000)
    assert box.send_at() == 1.010  # quiet 10 ms after the last record
    box.add("signals", {"id": "s1"}, now=1.008)
    assert box.send_at() == 1.018
    for i in range(2, 20):  # a record every 8 ms: never quiet, the linger bounds the wait
        box.add("acks", {"id": f"a{i}"}, now=1.000 + 0.008 * i)
    assert box.send_at() == 1.100
    assert box.next_batch() == {"signals": [{"id": "s0"}, {"id": "s1"}],  # both tables in one batch
                                "acks": [{"id": f"a{i}"} for i in range(2, 20)]}
    assert box.send_at() is None  # in flight
    box.add("signals", {"id": "s2"}, now=2.0)  # gathered during the flight: its own wait after the reply
    box.on_reply(["s0", "s1", *(f"a{i}" for i in range(2, 20))], {})
    assert box.send_at() == 2.010


def test_a_full_batch_and_records_restored_after_a_restart_leave_at_once():
    box = Outbox(max_batch=3, quiet_s=10.0, linger_s=60.0)
    box.add("trades", {"id": "t0"}, now=0.0)
    box.add("trades", {"id": "t1"}, now=0.0)
    assert box.send_at() == 10.0
    box.add("trades", {"id": "t2"}, now=0.0)
    assert box.send_at() == 0.0  # max_batch records wait
    restored = Outbox(quiet_s=10.0, linger_s=60.0)
    restored.add("trades", {"id": "t0"})  # no time: read back from the spool, not handed over now
    assert restored.send_at() == 0.0


def test_without_gathering_a_record_leaves_at_once():
    box = Outbox()
    box.add("trades", {"id": "t0"}, now=5.0)
    assert box.send_at() == 5.0


def test_the_sender_is_woken_at_the_lingers_end_and_sends_before_in_a_pass_of_its_own_work():
    box = Outbox(quiet_s=0.030, linger_s=0.060)
    box.add("acks", {"id": "a0"}, now=1.0)
    assert box.send_at() == 1.030 and box.wake_at() == 1.060
    quick = Outbox(quiet_s=0.0, linger_s=0.060)  # no quiet time (paper: a commit's records at once): woken at once
    quick.add("trades", {"id": "t0"}, now=1.0)
    assert quick.wake_at() == quick.send_at() == 1.0
    assert Outbox().wake_at() is None


def test_a_burst_said_whole_leaves_at_once_and_the_next_records_are_gathered_again():
    box = Outbox(quiet_s=0.030, linger_s=0.060)
    box.add("signals", {"id": "s1"}, now=10.0)
    box.add("acks", {"id": "a1"}, now=10.001)
    assert box.send_at() == pytest.approx(10.031)  # gathered: quiet 30 ms after the last
    box.whole()  # the sender has them all
    assert box.send_at() == 0.0
    assert box.next_batch() == {"signals": [{"id": "s1"}], "acks": [{"id": "a1"}]}
    box.on_reply(["s1", "a1"], {})
    box.add("acks", {"id": "a2"}, now=10.5)  # a later one: a new burst, gathered again
    assert box.send_at() == pytest.approx(10.53)
    assert box.next_batch() == {"acks": [{"id": "a2"}]}
